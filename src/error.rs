//! The one error type of the API and its mapping to `extensions.code`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The machine-readable class of an error, sent as `extensions.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    Timeout,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Timeout => "TIMEOUT",
            Self::Internal => "INTERNAL",
        }
    }
}

/// One bad field of an input, as `extensions.fieldErrors[]` and `ImportRow.errors[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Input path, e.g. `user.phone` or `user.attributes[2].value`.
    pub field: Option<String>,
    /// Stable machine-readable reason, e.g. `INVALID_FORMAT`.
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("this operation needs the {0} role")]
    Forbidden(&'static str),
    #[error("{message}")]
    BadUserInput {
        message: String,
        field_errors: Vec<FieldError>,
    },
    #[error("{0}")]
    NotFound(String),
    /// The input clashes with what is stored (a taken email, say); each clash is named.
    #[error("{message}")]
    Conflict {
        message: String,
        field_errors: Vec<FieldError>,
    },
    /// SQLite's write lock stayed taken by another transaction for all of the busy
    /// timeout; the write was not made. Keeps the database's error for the log.
    #[error(
        "the database stayed busy with another write for {} (on SQLite a dryRun or atomic \
         job holds it until the job ends); nothing was written, try again",
        humantime::format_duration(crate::db::SQLITE_BUSY_TIMEOUT)
    )]
    Busy(Arc<sea_orm::DbErr>),
    /// Never shown: logged with its whole chain, answered with a generic message.
    #[error("internal error")]
    Internal(Arc<anyhow::Error>),
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::BadUserInput { .. } => ErrorCode::BadUserInput,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Busy(_) => ErrorCode::Timeout,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// A bad request with every offending field named; the message lists them.
    pub fn invalid_fields(field_errors: Vec<FieldError>) -> Self {
        let names: Vec<&str> = field_errors
            .iter()
            .filter_map(|e| e.field.as_deref())
            .collect();
        let message = if names.is_empty() {
            "invalid input".to_owned()
        } else {
            format!("invalid input: {}", names.join(", "))
        };
        Self::BadUserInput {
            message,
            field_errors,
        }
    }

    /// A clash with stored data; the message is that of the first clash.
    pub fn conflict(field_errors: Vec<FieldError>) -> Self {
        let message = field_errors
            .first()
            .map_or_else(|| "conflict".to_owned(), |e| e.message.clone());
        Self::Conflict {
            message,
            field_errors,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field_errors: Vec::new(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(error.into()))
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(error: sea_orm::DbErr) -> Self {
        if crate::db::is_busy(&error) {
            tracing::warn!(%error, "the database stayed busy");
            return Self::Busy(Arc::new(error));
        }
        Self::Internal(Arc::new(error.into()))
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(error: sea_orm::TransactionError<AppError>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
