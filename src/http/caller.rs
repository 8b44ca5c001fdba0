//! Who sends a request: the principal its bearer token names, taken from the request by an
//! extractor, so that no handler reads the `Authorization` header itself. (SCIM's routes,
//! whose refusals take SCIM's own shape, call [`authenticate`] in the one helper they share.)

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::graphql::error_response;
use super::negotiate::ResponseFormat;
use crate::auth::{AuthError, Principal};
use crate::error::ErrorCode;

/// The request's principal, or why its token names none. It never rejects the request:
/// a GraphQL request is answered in the format it asked for, and GraphiQL's page needs no
/// token, so the handler decides when, and how, to refuse.
pub struct Caller(Result<Principal, AuthError>);

impl Caller {
    /// The principal, or the refusal to answer with in `format`.
    pub fn principal(self, format: ResponseFormat) -> Result<Principal, Unauthorized> {
        self.0.map_err(|error| Unauthorized { error, format })
    }
}

/// A request refused for its token: HTTP 401 with the RFC 6750 challenge and a
/// GraphQL-shaped body.
pub struct Unauthorized {
    error: AuthError,
    format: ResponseFormat,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let Self { error, format } = self;
        let challenge = match error {
            AuthError::Missing => "Bearer".to_owned(),
            AuthError::Malformed => {
                format!("Bearer error=\"invalid_request\", error_description=\"{error}\"")
            }
            AuthError::Invalid(_) => {
                format!("Bearer error=\"invalid_token\", error_description=\"{error}\"")
            }
        }
        .replace(['`'], "'");
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            format,
            ErrorCode::Unauthenticated,
            error.to_string(),
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Self(authenticate(state, &parts.headers)))
    }
}

/// The request's principal; a request without one is refused with HTTP 401 (JSON).
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Unauthorized> {
        let Ok(caller) = Caller::from_request_parts(parts, state).await;
        caller.principal(ResponseFormat::Json).map(Self)
    }
}

/// The principal the `Authorization` header names.
pub(super) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, AuthError> {
    // A header that is not visible ASCII cannot hold a token: treat it as malformed.
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| AuthError::Malformed))
        .transpose()?;
    state.auth.authenticate_header(header)
}
