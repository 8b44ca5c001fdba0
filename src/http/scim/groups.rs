//! `/scim/v2/Groups`: the routes of groups, which are tags (see `crate::scim::group`).

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};

use super::{
    Answer, ListParams, Projection, answer, context, if_match, json_body, number, project_all,
    query, read_body, search_params, unless_unchanged,
};
use crate::http::AppState;
use crate::scim::group;
use crate::scim::projection;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/.search", post(search_groups))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
}

async fn list_groups(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "list_groups",
        false,
        |principal, base| async move {
            let params = query(params)?;
            let cx = context(state, &principal, &base);
            let start = number("startIndex", params.start_index.as_deref())?;
            let count = number("count", params.count.as_deref())?;
            let mut list = group::list(&cx, params.filter.as_deref(), start, count).await?;
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

async fn get_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    projection: Result<Query<Projection>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "get_group",
        false,
        |principal, base| async move {
            let projection = query(projection)?;
            let cx = context(state, &principal, &base);
            let mut found = unless_unchanged(headers, group::get(&cx, &id).await?);
            if found.status == StatusCode::OK
                && let Some(group) = found.body.as_mut()
            {
                projection::project(
                    group,
                    projection.attributes.as_deref(),
                    projection.excluded_attributes.as_deref(),
                );
            }
            Ok(found)
        },
    )
    .await
}

async fn create_group(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "create_group",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            Ok(Answer {
                status: StatusCode::CREATED,
                body: Some(group::create(&cx, &body).await?),
            })
        },
    )
    .await
}

async fn replace_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "replace_group",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            Ok(Answer::ok(
                group::replace(&cx, &id, &body, if_match(headers).as_deref()).await?,
            ))
        },
    )
    .await
}

async fn patch_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "patch_group",
        true,
        |principal, base| async move {
            let body = json_body(headers, &read_body(body).await?)?;
            let cx = context(state, &principal, &base);
            Ok(Answer::ok(
                group::patch(&cx, &id, &body, if_match(headers).as_deref()).await?,
            ))
        },
    )
    .await
}

async fn delete_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "delete_group",
        true,
        |principal, base| async move {
            let cx = context(state, &principal, &base);
            group::delete(&cx, &id, if_match(headers).as_deref()).await?;
            Ok(Answer {
                status: StatusCode::NO_CONTENT,
                body: None,
            })
        },
    )
    .await
}

async fn search_groups(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (state, headers) = (&state, &headers);
    answer(
        state,
        headers,
        "list_groups",
        false,
        |principal, base| async move {
            let params = search_params(&json_body(headers, &read_body(body).await?)?)?;
            let cx = context(state, &principal, &base);
            let start = number("startIndex", params.start_index.as_deref())?;
            let count = number("count", params.count.as_deref())?;
            let mut list = group::list(&cx, params.filter.as_deref(), start, count).await?;
            project_all(&mut list, &params);
            Ok(Answer::ok(list))
        },
    )
    .await
}
