//! GraphQL over HTTP: our own handler in front of the schema, so that content negotiation,
//! status codes, authentication and per-request data follow the GraphQL-over-HTTP spec.

use std::sync::Arc;

use async_graphql::http::MultipartOptions;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{ParseRequestError, Request as GraphQLRequest, Variables};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

use super::AppState;
use super::caller::Caller;
use super::negotiate::{Accepted, BodyKind, ResponseFormat, body_kind, negotiate};
use crate::auth::Principal;
use crate::error::ErrorCode;
use crate::graphql::{ExecutionMarker, request_data};
use crate::jobs::graphql::users_variable::{self, DecodedUsers};

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    let format = match negotiate(&headers, true) {
        Accepted::Html => return super::graphiql::page(),
        Accepted::NotAcceptable => return not_acceptable(),
        Accepted::Graphql(format) => format,
    };
    let principal = match caller.principal(format) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    let params: GetParams = match serde_urlencoded::from_str(query.0.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(e) => return bad_request(format, format!("invalid query string: {e}")),
    };
    let request = match params.into_request() {
        Ok(request) => request,
        Err(message) => return bad_request(format, message),
    };
    if is_mutation(&request, state.limits.max_tokens) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format,
            ErrorCode::BadUserInput,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let timeout = state.http.request_timeout;
    execute(&state, principal, request, format, timeout).await
}

pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match negotiate(&headers, false) {
        Accepted::Graphql(format) => format,
        _ => return not_acceptable(),
    };
    let principal = match caller.principal(format) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    let Some(kind) = body_kind(&headers) else {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            ErrorCode::BadUserInput,
            "send the request as `Content-Type: application/json` (UTF-8), or as \
             `multipart/form-data` for file uploads",
        );
    };
    let (limit, setting, timeout) = match kind {
        BodyKind::Json => (
            state.http.max_body,
            "ROSTER_MAX_BODY",
            state.http.request_timeout,
        ),
        BodyKind::Multipart(_) => (
            state.http.max_upload,
            "ROSTER_MAX_UPLOAD",
            state.http.upload_timeout,
        ),
    };
    if content_length(&headers).is_some_and(|len| len > limit) {
        return too_large(format, limit, setting);
    }
    let request = match kind {
        BodyKind::Json => read_json(body, limit).await,
        BodyKind::Multipart(content_type) => read_multipart(body, &content_type, limit).await,
    };
    match request {
        Ok(request) => execute(&state, principal, request, format, timeout).await,
        Err(BodyError::TooLarge) => too_large(format, limit, setting),
        Err(BodyError::Stalled) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            format,
            ErrorCode::Timeout,
            format!(
                "the request body stalled for longer than {} (ROSTER_BODY_TIMEOUT); nothing \
                 was written",
                humantime::format_duration(state.http.body_timeout)
            ),
        ),
        Err(BodyError::Invalid(message)) => bad_request(format, message),
    }
}

async fn execute(
    state: &AppState,
    principal: Principal,
    mut request: GraphQLRequest,
    format: ResponseFormat,
    timeout: std::time::Duration,
) -> Response {
    let marker = Arc::new(ExecutionMarker::default());
    request_data(&mut request.data, principal, &state.db, &state.queue);
    request.data.insert(marker.clone());

    // Parsing and validation run inside the execution's first poll, without yielding: on a
    // task of its own the execution is timed from here, so even a request stuck validating
    // is answered at its deadline (the document limits keep that work small anyway). The
    // task ends with the request: at the deadline, or when the client goes away.
    let schema = state.schema.clone();
    let mut execution = AbortOnDrop(tokio::spawn(async move { schema.execute(request).await }));
    let response = match tokio::time::timeout(timeout, &mut execution.0).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::error!(%error, "the execution of a request ended abnormally");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format,
                ErrorCode::Internal,
                "internal error",
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format,
                ErrorCode::Timeout,
                format!(
                    "the request took longer than {} and was stopped",
                    humantime::format_duration(timeout)
                ),
            );
        }
    };

    // A request error (unparsable, invalid, bad variables) never reached execution: the
    // response then has no `data` entry at all, and under the new media type answers 400.
    let executed = marker.executed();
    let mut body = Map::new();
    if executed {
        body.insert("data".into(), to_json(&response.data));
    }
    if !response.errors.is_empty() {
        body.insert("errors".into(), to_json(&response.errors));
    }
    if !response.extensions.is_empty() {
        body.insert("extensions".into(), to_json(&response.extensions));
    }
    let status = if !executed && format == ResponseFormat::GraphQLResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut http = json_response(status, format, &Json::Object(body));
    http.headers_mut().extend(response.http_headers);
    http
}

/// A task that is stopped (at its next await) when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn to_json(value: &impl serde::Serialize) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// The parameters of a GraphQL request.
struct PostParams {
    query: String,
    operation_name: Option<String>,
    variables: Option<Variables>,
    extensions: Option<Map<String, Json>>,
    /// The users of an `importUsers` request, read apart from `variables`.
    users: Option<DecodedUsers>,
}

/// A POST body as read. `variables` stays raw JSON text until it is parsed once, straight
/// into GraphQL values: a 100,000-user `importUsers` request is never held twice, as JSON
/// and as GraphQL values.
#[derive(Deserialize)]
struct PostBody<'a> {
    query: Option<Json>,
    #[serde(rename = "operationName")]
    operation_name: Option<Json>,
    #[serde(borrow)]
    variables: Option<&'a RawValue>,
    extensions: Option<Json>,
}

impl PostParams {
    /// Reads a POST body, naming what is wrong with it.
    fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let body: PostBody = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data if !object => not_an_object(),
            serde_json::error::Category::Data => format!("invalid request body: {e}"),
            _ => format!("the body is not valid JSON: {e}"),
        })?;
        let mut users = None;
        let variables = match body.variables.map(RawValue::get) {
            None => None,
            Some(text) if text.starts_with('{') => {
                match import_users(body.query.as_ref(), body.operation_name.as_ref(), text) {
                    Some((variables, decoded)) => {
                        users = Some(decoded);
                        Some(variables)
                    }
                    None => Some(
                        serde_json::from_str::<Variables>(text)
                            .map_err(|e| format!("invalid `variables`: {e}"))?,
                    ),
                }
            }
            Some(_) => return Err(parameter_not_an_object("variables")),
        };
        let params = Self::checked(body.query, body.operation_name, variables, body.extensions)?;
        Ok(Self { users, ..params })
    }

    /// Takes the parameters of a body already read as JSON (a GET's query string).
    fn from_json(body: Json) -> Result<Self, String> {
        let Json::Object(mut body) = body else {
            return Err(not_an_object());
        };
        let variables = match body.remove("variables") {
            None | Some(Json::Null) => None,
            Some(Json::Object(map)) => Some(Variables::from_json(Json::Object(map))),
            Some(_) => return Err(parameter_not_an_object("variables")),
        };
        Self::checked(
            body.remove("query"),
            body.remove("operationName"),
            variables,
            body.remove("extensions"),
        )
    }

    /// Takes the parameters in the types the spec demands, naming the one that is not:
    /// a numeric `query`, an array of `variables` or a missing `query` is a 400.
    fn checked(
        query: Option<Json>,
        operation_name: Option<Json>,
        variables: Option<Variables>,
        extensions: Option<Json>,
    ) -> Result<Self, String> {
        let query = match query {
            Some(Json::String(query)) => query,
            None | Some(Json::Null) => return Err("the `query` parameter is missing".into()),
            Some(_) => return Err("the `query` parameter must be a string".into()),
        };
        let operation_name = match operation_name {
            None | Some(Json::Null) => None,
            Some(Json::String(name)) => Some(name),
            Some(_) => return Err("the `operationName` parameter must be a string".into()),
        };
        let extensions = match extensions {
            None | Some(Json::Null) => None,
            Some(Json::Object(map)) => Some(map),
            Some(_) => return Err(parameter_not_an_object("extensions")),
        };
        Ok(Self {
            query,
            operation_name,
            variables,
            extensions,
            users: None,
        })
    }

    fn into_request(self) -> Result<GraphQLRequest, String> {
        let mut request = GraphQLRequest::new(self.query);
        request.operation_name = self.operation_name;
        if let Some(variables) = self.variables {
            request.variables = variables;
        }
        if let Some(users) = self.users {
            request.data.insert(users);
        }
        for (key, value) in self.extensions.unwrap_or_default() {
            let value = async_graphql::Value::from_json(value)
                .map_err(|e| format!("invalid `extensions`: {e}"))?;
            request.extensions.insert(key, value);
        }
        Ok(request)
    }
}

/// The variables of an `importUsers` request with its users read one by one, when the
/// body is one (see [`users_variable`](crate::jobs::graphql::users_variable)).
fn import_users(
    query: Option<&Json>,
    operation_name: Option<&Json>,
    variables: &str,
) -> Option<(Variables, DecodedUsers)> {
    let Some(Json::String(query)) = query else {
        return None;
    };
    let operation_name = match operation_name {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name.as_str()),
        Some(_) => return None,
    };
    let name = users_variable::users_variable(query, operation_name)?;
    users_variable::decode(variables, &name)
}

fn not_an_object() -> String {
    "the body must be a JSON object with a `query` string".into()
}

fn parameter_not_an_object(name: &str) -> String {
    format!("the `{name}` parameter must be a JSON object")
}

/// GET carries the same parameters URL-encoded, `variables` and `extensions` as JSON text.
#[derive(Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl GetParams {
    fn into_request(self) -> Result<GraphQLRequest, String> {
        let json = |name: &str, text: Option<String>| -> Result<Json, String> {
            match text.filter(|t| !t.is_empty()) {
                None => Ok(Json::Null),
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| format!("the `{name}` parameter is not JSON: {e}")),
            }
        };
        let mut body = Map::new();
        body.insert("query".into(), self.query.map_or(Json::Null, Json::String));
        body.insert(
            "operationName".into(),
            self.operation_name.map_or(Json::Null, Json::String),
        );
        body.insert("variables".into(), json("variables", self.variables)?);
        body.insert("extensions".into(), json("extensions", self.extensions)?);
        PostParams::from_json(Json::Object(body))?.into_request()
    }
}

/// Bodies larger than this are read on a blocking thread.
const BLOCKING_BODY: usize = 256 * 1024;

enum BodyError {
    TooLarge,
    /// No data came for `ROSTER_BODY_TIMEOUT`.
    Stalled,
    Invalid(String),
}

impl BodyError {
    /// The limit or the stall behind a failed read of the body, if either was.
    fn of_read(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        if has_in_chain::<http_body_util::LengthLimitError>(error) {
            Some(Self::TooLarge)
        } else if has_in_chain::<tower_http::timeout::TimeoutError>(error) {
            Some(Self::Stalled)
        } else {
            None
        }
    }
}

async fn read_json(body: Body, limit: usize) -> Result<GraphQLRequest, BodyError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(&e))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(BodyError::Invalid(
            "batched requests are not supported: send one operation per request".into(),
        ));
    }
    if bytes.is_empty() {
        return Err(BodyError::Invalid("the request body is empty".into()));
    }
    let bytes_len = bytes.len();
    let read = move || PostParams::from_slice(&bytes).and_then(PostParams::into_request);
    // Reading a large body (an `importUsers` of many users) takes a while: off the runtime.
    let request = if bytes_len > BLOCKING_BODY {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| BodyError::Invalid(format!("cannot read the request body: {e}")))?
    } else {
        read()
    };
    request.map_err(BodyError::Invalid)
}

async fn read_multipart(
    body: Body,
    content_type: &str,
    limit: usize,
) -> Result<GraphQLRequest, BodyError> {
    // The multipart parser reports a failed read in its own words, whatever the cause: the
    // limit being hit or the body stalling is noted here, as the body is read, so that it
    // answers 413 or 408 all the same.
    let cause = Arc::new(std::sync::Mutex::new(None));
    let noted = cause.clone();
    let limited = Body::new(http_body_util::Limited::new(body, limit));
    let reader = limited
        .into_data_stream()
        .map_err(move |error| {
            if let Some(reason) = BodyError::of_read(&error)
                && let Ok(mut cause) = noted.lock()
            {
                *cause = Some(reason);
            }
            std::io::Error::other(error)
        })
        .into_async_read();
    let options = MultipartOptions::default()
        .max_file_size(limit)
        .max_num_files(16);
    let received = async_graphql::http::receive_body(Some(content_type), reader, options).await;
    let noted = cause.lock().ok().and_then(|mut cause| cause.take());
    received.map_err(|e| {
        noted.unwrap_or_else(|| match e {
            ParseRequestError::PayloadTooLarge => BodyError::TooLarge,
            ParseRequestError::UnsupportedBatch => BodyError::Invalid(
                "batched requests are not supported: send one operation per request".into(),
            ),
            other => BodyError::Invalid(format!("invalid multipart request: {other}")),
        })
    })
}

fn body_error(error: &axum::Error) -> BodyError {
    BodyError::of_read(error)
        .unwrap_or_else(|| BodyError::Invalid(format!("cannot read the request body: {error}")))
}

/// Whether an error, somewhere in its chain, is an `E`.
fn has_in_chain<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether the operation a GET would run is a mutation (which GET must never run). A
/// document longer than `max_tokens` is not parsed: the schema refuses it before it runs.
fn is_mutation(request: &GraphQLRequest, max_tokens: usize) -> bool {
    if crate::graphql::count_tokens(&request.query, max_tokens).is_none() {
        return false;
    }
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false; // execution reports the syntax error
    };
    let operation = match &document.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => request.operation_name.as_deref().and_then(|name| {
            ops.iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, op)| op)
        }),
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}

fn bad_request(format: ResponseFormat, message: impl Into<String>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format,
        ErrorCode::BadUserInput,
        message,
    )
}

/// 413, naming the limit and the setting that raises it.
fn too_large(format: ResponseFormat, limit: usize, setting: &str) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format,
        ErrorCode::BadUserInput,
        format!("the request body is larger than the limit of {limit} bytes ({setting})"),
    )
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        ResponseFormat::Json,
        ErrorCode::BadUserInput,
        "accept application/graphql-response+json or application/json",
    )
}

/// A response carrying one error and no `data`, for failures before GraphQL runs.
pub fn error_response(
    status: StatusCode,
    format: ResponseFormat,
    code: ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = json!({
        "errors": [{ "message": message.into(), "extensions": { "code": code.as_str() } }]
    });
    json_response(status, format, &body)
}

fn json_response(status: StatusCode, format: ResponseFormat, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body.to_string(),
    )
        .into_response()
}
