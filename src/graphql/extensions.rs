//! Schema-wide policies that every operation passes through, whatever the transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextRequest, NextSubscribe,
};
use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};
use futures_util::stream::{BoxStream, StreamExt};

use crate::error::{AppError, ErrorCode};

/// Gives every error an `extensions.code`, and makes sure no internal detail reaches a client.
///
/// Errors raised as [`AppError`] carry their own code. Any other error with a source (a
/// database error passed on with `?`, say) is internal: it is logged and replaced by a
/// generic message. Errors without a source come from the GraphQL engine itself (syntax,
/// validation, limits, argument coercion) and are the client's to fix.
pub struct ErrorPolicy;

impl ExtensionFactory for ErrorPolicy {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorPolicy)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorPolicy {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors.iter_mut().for_each(apply_policy);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                response.errors.iter_mut().for_each(apply_policy);
                response
            })
            .boxed()
    }
}

fn apply_policy(error: &mut ServerError) {
    let extensions = error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    if let Some(app_error) = error
        .source
        .as_ref()
        .and_then(|s| s.downcast_ref::<AppError>())
    {
        set_app_error(&mut error.message, extensions, app_error);
    } else if extensions.get("code").is_some() {
        // Already classified where it was raised.
    } else if error.source.is_some() {
        tracing::error!(error = %error.message, path = ?error.path, "internal error in resolver");
        error.message = "internal error".to_owned();
        extensions.set("code", ErrorCode::Internal.as_str());
    } else {
        extensions.set("code", ErrorCode::BadUserInput.as_str());
    }
}

fn set_app_error(message: &mut String, extensions: &mut ErrorExtensionValues, error: &AppError) {
    extensions.set("code", error.code().as_str());
    match error {
        AppError::Internal(inner) => {
            tracing::error!(error = ?inner, "internal error");
            *message = "internal error".to_owned();
        }
        AppError::BadUserInput { field_errors, .. } | AppError::Conflict { field_errors, .. }
            if !field_errors.is_empty() =>
        {
            if let AppError::Conflict { .. } = error
                && let Some(field) = &field_errors[0].field
            {
                extensions.set("field", field.as_str());
            }
            let value = serde_json::to_value(field_errors)
                .ok()
                .and_then(|json| Value::from_json(json).ok());
            if let Some(value) = value {
                extensions.set("fieldErrors", value);
            }
        }
        _ => {}
    }
}

/// Set when an operation reaches execution; the HTTP layer uses it to tell a request error
/// (no `data` entry, HTTP 400 under `application/graphql-response+json`) from a field error.
#[derive(Default)]
pub struct ExecutionMarker(AtomicBool);

impl ExecutionMarker {
    pub fn executed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub struct ExecutionTracker;

impl ExtensionFactory for ExecutionTracker {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ExecutionTracker)
    }
}

#[async_trait::async_trait]
impl Extension for ExecutionTracker {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(marker) = ctx.data_opt::<Arc<ExecutionMarker>>() {
            marker.0.store(true, Ordering::Release);
        }
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::error::FieldError;

    struct Query;

    #[Object]
    impl Query {
        /// A database error passed on with a bare `?`.
        async fn leaky(&self) -> async_graphql::Result<bool> {
            Err(sea_orm::DbErr::Custom(
                "UNIQUE constraint failed: users.email at /srv/roster.db".into(),
            ))?
        }

        async fn internal(&self) -> Result<bool, AppError> {
            Err(AppError::internal(anyhow::anyhow!("disk full at /var/lib")))
        }

        async fn invalid(&self) -> Result<bool, AppError> {
            Err(AppError::invalid_fields(vec![
                FieldError::new("user.email", "INVALID_FORMAT", "not an email address"),
                FieldError::new("user.phone", "INVALID_FORMAT", "not an E.164 number"),
            ]))
        }

        async fn conflict(&self) -> Result<bool, AppError> {
            Err(AppError::conflict(vec![FieldError::new(
                "user.email",
                "TAKEN",
                "email already used",
            )]))
        }
    }

    async fn first_error(query: &str) -> Json {
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(ErrorPolicy)
            .finish();
        let response = serde_json::to_value(schema.execute(query).await).unwrap();
        response["errors"][0].clone()
    }

    #[tokio::test]
    async fn database_errors_never_reach_the_client() {
        for query in ["{ leaky }", "{ internal }"] {
            let error = first_error(query).await;
            assert_eq!(error["message"], "internal error", "{query}");
            assert_eq!(error["extensions"]["code"], "INTERNAL", "{query}");
            let text = error.to_string();
            assert!(!text.contains("UNIQUE") && !text.contains("/srv") && !text.contains("/var"));
        }
    }

    #[tokio::test]
    async fn bad_input_names_every_field() {
        let error = first_error("{ invalid }").await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
        assert_eq!(error["message"], "invalid input: user.email, user.phone");
        assert_eq!(
            error["extensions"]["fieldErrors"],
            json!([
                { "field": "user.email", "code": "INVALID_FORMAT", "message": "not an email address" },
                { "field": "user.phone", "code": "INVALID_FORMAT", "message": "not an E.164 number" }
            ])
        );
    }

    #[tokio::test]
    async fn conflicts_name_their_field() {
        let error = first_error("{ conflict }").await;
        assert_eq!(error["extensions"]["code"], "CONFLICT");
        assert_eq!(error["extensions"]["field"], "user.email");
    }

    #[tokio::test]
    async fn engine_errors_are_the_clients_to_fix() {
        let error = first_error("{ nope }").await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
    }
}
