//! Routes, middleware and the shared application state.

mod admin;
mod caller;
mod exports;
mod graphiql;
mod graphql;
mod negotiate;
mod ops;
mod scim;
pub mod serve;
mod ws;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::middleware;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Authenticator;
use crate::config::HttpConfig;
use crate::graphql::RosterSchema;

/// What every handler may reach. Cheap to clone: each part is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub schema: RosterSchema,
    pub auth: Arc<Authenticator>,
    pub http: Arc<HttpConfig>,
    pub metrics: PrometheusHandle,
    pub queue: crate::jobs::Queue,
    pub limits: crate::config::QueryLimits,
    pub scim: Arc<crate::config::ScimConfig>,
}

pub fn router(state: AppState) -> anyhow::Result<Router> {
    let cors = cors_layer(&state.http.cors_origins)?;
    let router = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(ws::subscribe))
        .route(
            &format!("{}/{{name}}", graphiql::ASSETS),
            get(graphiql::asset),
        )
        .route("/admin", get(admin::page))
        .route(&format!("{}/{{name}}", admin::ASSETS), get(admin::asset))
        .route("/exports/users.csv", get(exports::users_csv))
        .route("/jobs/{id}/failed-rows.csv", get(exports::failed_rows_csv))
        .merge(scim::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn(ops::record_metrics))
        .layer(middleware::from_fn_with_state(
            state.http.body_timeout,
            ops::body_timeout,
        ))
        .layer(ops::trace_layer())
        .with_state(state);
    Ok(match cors {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

fn cors_layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o.trim()).with_context(|| format!("invalid CORS origin {o:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT]),
    ))
}
