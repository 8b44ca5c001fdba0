//! File downloads: the users export.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::AppState;
use super::graphql::{authenticate, error_response, unauthorized};
use super::negotiate::ResponseFormat;
use crate::error::ErrorCode;
use crate::users::export;

/// `GET /exports/users.csv`: every user of the caller's tenant, streamed (any role).
pub async fn users_csv(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(principal) => principal,
        Err(error) => return unauthorized(ResponseFormat::Json, &error),
    };
    let chunks = match export::users_csv(state.db.clone(), principal.tenant).await {
        Ok(chunks) => chunks,
        Err(error) => {
            tracing::error!(?error, "users export failed");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                ResponseFormat::Json,
                ErrorCode::Internal,
                "internal error",
            );
        }
    };
    let body =
        Body::from_stream(chunks.map(|chunk| {
            chunk.inspect_err(|error| tracing::error!(?error, "users export stopped"))
        }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"users.csv\""),
    );
    response
}
