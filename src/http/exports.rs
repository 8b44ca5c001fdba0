//! File downloads: the users export, and a job's failed rows.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use super::AppState;
use super::caller::Authenticated;
use super::graphql::error_response;
use super::negotiate::ResponseFormat;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::jobs::failed_rows;
use crate::users::export;

/// `GET /exports/users.csv`: every user of the caller's tenant, streamed (any role).
pub async fn users_csv(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Response {
    match export::users_csv(state.db.clone(), principal.tenant).await {
        Ok(chunks) => csv_download(chunks, "users.csv"),
        Err(error) => internal_error(&error),
    }
}

/// `GET /jobs/{id}/failed-rows.csv`: a job's failed rows (a CSV job's in the file's own
/// columns), plus `errors`, streamed (any role of the job's tenant).
pub async fn failed_rows_csv(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
) -> Response {
    let not_found = || {
        error_response(
            StatusCode::NOT_FOUND,
            ResponseFormat::Json,
            ErrorCode::NotFound,
            format!(
                "no import job {id} (a revert's failed rows are in its `rows(onlyFailed: true)`)"
            ),
        )
    };
    let Some(job) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return not_found();
    };
    match failed_rows::failed_rows(state.db.clone(), principal.tenant, job).await {
        Ok(Some(chunks)) => csv_download(chunks, &format!("job-{job}-failed-rows.csv")),
        Ok(None) => not_found(),
        Err(error) => internal_error(&error),
    }
}

fn internal_error(error: &AppError) -> Response {
    tracing::error!(?error, "download failed");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        ResponseFormat::Json,
        ErrorCode::Internal,
        "internal error",
    )
}

/// A CSV file streamed as it is produced; an error midway cuts the download short.
fn csv_download(
    chunks: impl Stream<Item = AppResult<Vec<u8>>> + Send + 'static,
    name: &str,
) -> Response {
    let body = Body::from_stream(
        chunks.map(|chunk| chunk.inspect_err(|error| tracing::error!(?error, "download stopped"))),
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}
