//! SCIM 2.0 (RFC 7643 schemas, RFC 7644 protocol) over the same domain services as the
//! GraphQL API: a SCIM `User` is a Roster user, read from and written to the same tables by
//! the same import decision (validation, approver rules, tenants, learning tracks). No HTTP
//! here: `crate::http::scim` serves it.

pub mod bulk;
pub mod filter;
pub mod group;
pub mod patch;
pub mod projection;
pub mod query;
pub mod schemas;
pub mod service;
pub mod user;
pub mod validate;

use crate::error::{AppError, FieldError};

pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ROSTER_USER: &str = "urn:roster:params:scim:schemas:extension:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` of a 400 (RFC 7644 §3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    InvalidSyntax,
    InvalidPath,
    InvalidValue,
    NoTarget,
    Mutability,
    Uniqueness,
    TooMany,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::InvalidValue => "invalidValue",
            Self::NoTarget => "noTarget",
            Self::Mutability => "mutability",
            Self::Uniqueness => "uniqueness",
            Self::TooMany => "tooMany",
        }
    }
}

/// A SCIM error: its HTTP status, `scimType` and a `detail` naming every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: if scim_type == ScimType::Uniqueness {
                409
            } else {
                400
            },
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: 404,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// The error body (RFC 7644 §3.12).
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = serde_json::json!(scim_type.as_str());
        }
        body
    }

    /// Several problems of one kind, each on its own clause.
    pub fn many(scim_type: ScimType, problems: &[String]) -> Self {
        Self::bad(scim_type, problems.join("; "))
    }
}

/// A user's version (`meta.version`, the `ETag`): its `updatedAt` in microseconds, which
/// every write of the user moves.
pub fn user_version(updated_at: &chrono::DateTime<chrono::Utc>) -> String {
    format!("W/\"{}\"", updated_at.timestamp_micros())
}

/// Whether an `If-Match`/`If-None-Match` value (`*`, or entity tags separated by commas)
/// names `version`. Weak and strong tags compare alike.
pub fn matches(header: &str, version: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    header.trim() == "*" || header.split(',').any(|tag| opaque(tag) == opaque(version))
}

/// 412: the resource is no longer at the version `If-Match` named; nothing was written.
pub fn changed(what: &str) -> ScimError {
    ScimError::status(
        412,
        format!("{what} changed since the version If-Match names; nothing was written"),
    )
}

/// The domain's errors in SCIM terms, each bad field named by its SCIM attribute.
impl From<AppError> for ScimError {
    fn from(error: AppError) -> Self {
        let named = |errors: &[FieldError]| -> Vec<String> {
            errors
                .iter()
                .map(|e| match &e.field {
                    Some(field) => format!("{}: {}", user::scim_name(field), e.message),
                    None => e.message.clone(),
                })
                .collect()
        };
        match error {
            AppError::BadUserInput {
                message,
                field_errors,
            } if field_errors.is_empty() => Self::bad(ScimType::InvalidValue, message),
            AppError::BadUserInput { field_errors, .. } => {
                Self::many(ScimType::InvalidValue, &named(&field_errors))
            }
            AppError::Conflict {
                message,
                field_errors,
            } if field_errors
                .iter()
                .any(|e| e.code == crate::users::import::VERSION_CHANGED) =>
            {
                changed(message.trim_end_matches(" changed since it was read"))
            }
            AppError::Conflict { field_errors, .. } => {
                Self::many(ScimType::Uniqueness, &named(&field_errors))
            }
            AppError::NotFound(message) => Self::not_found(message),
            AppError::Unauthenticated(message) => Self::status(401, message),
            AppError::Forbidden(role) => {
                Self::status(403, format!("this operation needs the {role} role"))
            }
            AppError::Internal(error) => {
                tracing::error!(?error, "SCIM request failed");
                Self::status(500, "internal error")
            }
            AppError::Busy(error) => {
                tracing::error!(?error, "SCIM request failed");
                Self::status(500, "internal error")
            }
        }
    }
}

impl From<sea_orm::DbErr> for ScimError {
    fn from(error: sea_orm::DbErr) -> Self {
        AppError::from(error).into()
    }
}

pub type ScimResult<T> = Result<T, ScimError>;
