//! The GraphQL face of attribute changes.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use sea_orm::DatabaseConnection;

use super::{AttributeChange, ChangeResult, describe};
use crate::auth::{Role, RoleGuard, principal};
use crate::error::{AppError, AppResult, FieldError};
use crate::graphql::FieldErrorView;
use crate::users::graphql::{AttributeInput, User, UserLookup};
use crate::users::lookup::UserKey;
use crate::users::profile::RawAttribute;

/// Attributes to set and to remove for one user.
#[derive(InputObject)]
pub struct UserAttributesChange {
    pub user: UserLookup,
    /// Set or replace these attributes; one with a `null` value is removed.
    pub set: Option<Vec<AttributeInput>>,
    /// Remove the attributes of these names.
    pub unset: Option<Vec<String>>,
}

/// What became of one change.
#[derive(SimpleObject)]
pub struct AttributeChangeResult {
    /// The lookup as given: `id:…`, `email:…` or `externalId:<source>/<id>`.
    pub lookup_key: String,
    pub success: bool,
    /// The user, when found.
    pub user: Option<User>,
    /// Why the change failed: `user` (not found), `set[i].value`, `unset[i]`, …
    pub errors: Vec<FieldErrorView>,
}

impl From<ChangeResult> for AttributeChangeResult {
    fn from(result: ChangeResult) -> Self {
        Self {
            success: result.success(),
            lookup_key: result.lookup_key,
            user: result.user.map(User::from),
            errors: result
                .errors
                .into_iter()
                .map(FieldErrorView::from)
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct AttributeChangePayload {
    /// One result per change, in the order sent.
    pub results: Vec<AttributeChangeResult>,
    pub succeeded: i32,
    pub failed: i32,
}

/// The user of one entry of a bulk call, or the problems of its lookup (which fail that
/// entry alone), and the `lookupKey` it is reported under.
pub fn entry_lookup(lookup: &UserLookup) -> (Result<UserKey, Vec<FieldError>>, String) {
    let user = lookup.key("user");
    let lookup_key = user
        .as_ref()
        .map_or_else(|_| "invalid lookup".to_owned(), describe);
    let user = user.map_err(|error| match error {
        AppError::BadUserInput { field_errors, .. } => field_errors,
        other => vec![FieldError::new("user", "INVALID", other.to_string())],
    });
    (user, lookup_key)
}

#[derive(Default)]
pub struct AttributesMutation;

#[Object]
impl AttributesMutation {
    /// Sets and removes attributes of many users (up to 10,000 changes). Each change
    /// succeeds or fails alone; a change that alters nothing succeeds and writes nothing.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_user_attributes(
        &self,
        ctx: &Context<'_>,
        changes: Vec<UserAttributesChange>,
    ) -> AppResult<AttributeChangePayload> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let changes = changes
            .into_iter()
            .map(|change| {
                let (user, lookup_key) = entry_lookup(&change.user);
                AttributeChange {
                    user,
                    lookup_key,
                    set: change
                        .set
                        .unwrap_or_default()
                        .into_iter()
                        .map(RawAttribute::from)
                        .collect(),
                    unset: change.unset.unwrap_or_default(),
                }
            })
            .collect();
        let results = super::set_user_attributes(db, &principal.tenant, changes).await?;
        let succeeded = results.iter().filter(|r| r.success()).count();
        let failed = results.len() - succeeded;
        Ok(AttributeChangePayload {
            results: results.into_iter().map(Into::into).collect(),
            succeeded: i32::try_from(succeeded).unwrap_or(i32::MAX),
            failed: i32::try_from(failed).unwrap_or(i32::MAX),
        })
    }
}
