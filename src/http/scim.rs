//! `/scim/v2`: the SCIM 2.0 routes. The same bearer tokens as GraphQL: any role reads, an
//! admin writes, everything within the token's tenant. Bodies are `application/scim+json`
//! both ways; every error is a SCIM error body.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::AppState;
use super::caller::authenticate;
use crate::auth::{AuthError, Principal, Role};
use crate::scim::service::{self, Context, MAX_RESULTS};
use crate::scim::{ScimError, ScimResult, ScimType};
use crate::scim::{bulk, projection, schemas};
use crate::telemetry::SCIM_REQUESTS;

const MEDIA_TYPE: &str = "application/scim+json";
/// The largest request body (`bulk.maxPayloadSize` too): a user is a few kilobytes; a bulk
/// request or a PATCH of many group members is the largest thing a provider sends.
pub const MAX_BODY: usize = 1024 * 1024;

mod groups;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas_list))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Users/.search", post(search_users))
        .merge(groups::routes())
        .route("/scim/v2/Bulk", post(run_bulk))
        .route("/scim/v2/.search", post(search_everything))
        .route("/scim/v2/{*rest}", axum::routing::any(unknown))
}

/// `POST /.search` across resource types: not served (501, as RFC 7644 §3.4.3 allows).
async fn search_everything() -> Response {
    error_response(&ScimError::status(
        501,
        "searching several resource types at once is not supported: POST /Users/.search or /Groups/.search",
    ))
}

/// Any other path under `/scim/v2`: a SCIM 404, so a client reads it as one.
async fn unknown(Path(rest): Path<String>) -> Response {
    error_response(&ScimError::not_found(format!(
        "no SCIM endpoint {rest}: Roster serves ServiceProviderConfig, ResourceTypes, Schemas, Users and Groups"
    )))
}

/// The answer of one operation: a status and a resource (or nothing, for 204).
struct Answer {
    status: StatusCode,
    body: Option<Json>,
}

impl Answer {
    fn ok(body: Json) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(body),
        }
    }
}

/// Authenticates, runs `op`, counts it in `roster_scim_requests_total` and writes its
/// answer or its SCIM error.
async fn answer<F, Fut>(
    state: &AppState,
    headers: &HeaderMap,
    op: &'static str,
    write: bool,
    run: F,
) -> Response
where
    F: FnOnce(Principal, String) -> Fut,
    Fut: Future<Output = ScimResult<Answer>>,
{
    let result = match authenticate(state, headers) {
        Err(error) => Err(Unauthorized(error)),
        Ok(principal) if write && !principal.role.satisfies(Role::Admin) => {
            Ok(Err(ScimError::status(
                403,
                "writing needs the admin role; this token is a viewer's",
            )))
        }
        Ok(principal) => Ok(run(principal, base_url(headers)).await),
    };
    let response = match result {
        Err(Unauthorized(error)) => {
            let mut response = error_response(&ScimError::status(401, error.to_string()));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Ok(Ok(answer)) => match answer.body {
            Some(body) => {
                let mut response = if answer.status == StatusCode::NOT_MODIFIED {
                    answer.status.into_response()
                } else {
                    scim_json(answer.status, &body)
                };
                // One resource's version is its entity tag (RFC 7644 §3.14).
                if body.get("id").is_some()
                    && let Some(version) = body["meta"]["version"].as_str()
                    && let Ok(version) = HeaderValue::from_str(version)
                {
                    response.headers_mut().insert(header::ETAG, version);
                }
                // A new resource's address, as RFC 7644 §3.3 asks.
                if answer.status == StatusCode::CREATED
                    && let Some(location) = body["meta"]["location"].as_str()
                    && let Ok(location) = HeaderValue::from_str(location)
                {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
            }
            None => answer.status.into_response(),
        },
        Ok(Err(error)) => error_response(&error),
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(SCIM_REQUESTS, "op" => op, "status" => status).increment(1);
    response
}

struct Unauthorized(AuthError);

/// The `If-Match` header, when sent.
fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A resource `GET` found, or 304 when `If-None-Match` names its version (its body is
/// then only where `answer` reads the `ETag` from).
fn unless_unchanged(headers: &HeaderMap, resource: Json) -> Answer {
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .zip(resource["meta"]["version"].as_str())
        .is_some_and(|(tags, version)| crate::scim::matches(tags, version));
    if unchanged {
        // Sent without its body, but with its `ETag` (RFC 9110 §15.4.5).
        Answer {
            status: StatusCode::NOT_MODIFIED,
            body: Some(resource),
        }
    } else {
        Answer::ok(resource)
    }
}

/// `https://host/scim/v2`, from the request (a proxy's `X-Forwarded-Proto` respected).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}/scim/v2")
}

fn scim_json(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ScimError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    scim_json(status, &error.body())
}

/// A JSON request body of at most [`MAX_BODY`] bytes.
fn json_body(headers: &HeaderMap, body: &Bytes) -> ScimResult<Json> {
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = kind
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != MEDIA_TYPE && essence != "application/json" {
            return Err(ScimError::status(
                415,
                format!("send {MEDIA_TYPE} (or application/json), not {essence}"),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|error| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not JSON: {error}"),
        )
    })
}

/// Reads a body up to [`MAX_BODY`]; a larger one is refused before it is parsed.
async fn read_body(body: Body) -> ScimResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ScimError::status(
            413,
            format!("the body is larger than {MAX_BODY} bytes; nothing was written"),
        )
    })
}

fn context<'a>(state: &'a AppState, principal: &'a Principal, base: &'a str) -> Context<'a> {
    Context {
        db: &state.db,
        tenant: &principal.tenant,
        base,
        source: &state.scim.scim_source,
    }
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    answer(&state, &headers, "discovery", false, |_, base| async move {
        Ok(Answer::ok(schemas::service_provider_config(
            &base,
            MAX_RESULTS as usize,
            bulk::MAX_OPERATIONS,
            MAX_BODY,
        )))
    })
    .await
}

fn list_of(resources: Vec<Json>) -> Json {
    json!({
        "schemas": [crate::scim::LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

fn by_id(resources: Vec<Json>, id: &str, what: &str) -> ScimResult<Answer> {
    resources
        .into_iter()
        .find(|r| r["id"].as_str() == Some(id))
        .map(Answer::ok)
        .ok_or_else(|| ScimError::not_found(format!("no {what} {id}")))
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap) -> Response {
    answer(&state, &headers, "discovery", false, |_, base| async move {
        Ok(Answer::ok(list_of(schemas::resource_types(&base))))
    })
    .await
}

async fn resource_type(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(&state, &headers, "discovery", false, |_, base| async move {
        by_id(schemas::resource_types(&base), &id, "resource type")
    })
    .await
}

async fn schemas_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    answer(&state, &headers, "discovery", false, |_, base| async move {
        Ok(Answer::ok(list_of(schemas::schemas(&base))))
    })
    .await
}

async fn schema(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(&state, &headers, "discovery", false, |_, base| async move {
        by_id(schemas::schemas(&base), &id, "schema")
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

/// The parameters of a query string; one they cannot be read from (a parameter sent twice,
/// text that is not UTF-8) is an `invalidValue` naming what went wrong, answered and counted
/// as every other SCIM error, not axum's plain-text 400.
fn query<T>(params: Result<Query<T>, QueryRejection>) -> ScimResult<T> {
    params.map(|Query(params)| params).map_err(|rejection| {
        let text = rejection.body_text();
        let reason = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ScimError::bad(
            ScimType::InvalidValue,
            format!("the query string: {reason}"),
        )
    })
}

fn number(name: &str, value: Option<&str>) -> ScimResult<Option<i64>> {
    value
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    format!("{name}: {v:?} is not a number"),
                )
            })
        })
        .transpose()
}

async fn list_users(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "list_users",
        false,
        |principal, base| async move {
            let params = query(params)?;
            let cx = context(state, &principal, &base);
            let start = number("startIndex", params.start_index.as_deref())?;
            let count = number("count", params.count.as_deref())?;
            let mut list = service::list(&cx, params.filter.as_deref(), start, count).await?;
            if let Some(resources) = list["Resources"].as_array_mut() {
                for resource in resources {
                    projection::project(
                        resource,
                        params.attributes.as_deref(),
                        params.excluded_attributes.as_deref(),
                    );
                }
            }
            Ok(Answer::ok(list))
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Projection {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    projection: Result<Query<Projection>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "get_user",
        false,
        |principal, base| async move {
            let projection = query(projection)?;
            let cx = context(state, &principal, &base);
            let mut found = unless_unchanged(headers, service::get(&cx, &id).await?);
            if found.status == StatusCode::OK
                && let Some(user) = found.body.as_mut()
            {
                projection::project(
                    user,
                    projection.attributes.as_deref(),
                    projection.excluded_attributes.as_deref(),
                );
            }
            Ok(found)
        },
    )
    .await
}

async fn create_user(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "create_user",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            let user = service::create(&cx, &body).await?;
            Ok(Answer {
                status: StatusCode::CREATED,
                body: Some(user),
            })
        },
    )
    .await
}

async fn replace_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "replace_user",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            Ok(Answer::ok(
                service::replace(&cx, &id, &body, if_match(headers).as_deref()).await?,
            ))
        },
    )
    .await
}

async fn patch_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "patch_user",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            Ok(Answer::ok(
                service::patch(&cx, &id, &body, if_match(headers).as_deref()).await?,
            ))
        },
    )
    .await
}

async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "delete_user",
        true,
        |principal, base| async move {
            let cx = context(state, &principal, &base);
            service::deactivate(&cx, &id, if_match(headers).as_deref()).await?;
            Ok(Answer {
                status: StatusCode::NO_CONTENT,
                body: None,
            })
        },
    )
    .await
}

/// A `SearchRequest` body (RFC 7644 §3.4.3) as the query parameters of a list.
fn search_params(body: &Json) -> ScimResult<ListParams> {
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let field = |name: &str| {
        body.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    };
    let schemas_ok = field("schemas")
        .and_then(Json::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(SEARCH)));
    if !schemas_ok {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("schemas: must hold {SEARCH}"),
        ));
    }
    let text = |name: &str| match field(name) {
        Some(Json::String(text)) => Some(text.clone()),
        Some(Json::Number(number)) => Some(number.to_string()),
        Some(Json::Array(items)) => Some(
            items
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    };
    Ok(ListParams {
        filter: text("filter"),
        start_index: text("startIndex"),
        count: text("count"),
        attributes: text("attributes"),
        excluded_attributes: text("excludedAttributes"),
    })
}

async fn search_users(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "list_users",
        false,
        |principal, base| async move {
            let params = search_params(&json_body(headers, &read_body(body).await?)?)?;
            let cx = context(state, &principal, &base);
            let start = number("startIndex", params.start_index.as_deref())?;
            let count = number("count", params.count.as_deref())?;
            let mut list = service::list(&cx, params.filter.as_deref(), start, count).await?;
            project_all(&mut list, &params);
            Ok(Answer::ok(list))
        },
    )
    .await
}

fn project_all(list: &mut Json, params: &ListParams) {
    if let Some(resources) = list["Resources"].as_array_mut() {
        for resource in resources {
            projection::project(
                resource,
                params.attributes.as_deref(),
                params.excluded_attributes.as_deref(),
            );
        }
    }
}

/// `POST /Bulk`: every operation's result, synchronously; a body over
/// `bulk.maxPayloadSize` or with more than `bulk.maxOperations` operations is 413 and runs
/// nothing.
async fn run_bulk(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (state, headers) = (&state, &headers);
    answer(state, headers, "bulk", true, |principal, base| async move {
        let body = json_body(headers, &read_body(body).await?)?;
        let cx = context(state, &principal, &base);
        Ok(Answer::ok(bulk::run(&cx, &body).await?))
    })
    .await
}
