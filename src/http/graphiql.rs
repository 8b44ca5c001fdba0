//! GraphiQL for admins, served whole by the server: the page, its script, and GraphiQL's
//! browser bundles (`vendor/graphiql`, embedded at build time), so that it works on a
//! network without the internet. The page sends the token pasted into it on every request
//! and on the subscriptions' WebSocket.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Where the assets are served: `{ASSETS}/{name}`.
pub const ASSETS: &str = "/graphiql/assets";

/// One embedded file (of this page, or of another page served the same way).
pub(super) struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub(super) const JS: &str = "text/javascript; charset=utf-8";
pub(super) const CSS: &str = "text/css; charset=utf-8";

static FILES: &[Asset] = &[
    Asset {
        name: "graphiql.min.js",
        content_type: JS,
        body: include_bytes!("../../vendor/graphiql/graphiql.min.js"),
    },
    Asset {
        name: "graphiql.min.css",
        content_type: CSS,
        body: include_bytes!("../../vendor/graphiql/graphiql.min.css"),
    },
    Asset {
        name: "react.production.min.js",
        content_type: JS,
        body: include_bytes!("../../vendor/graphiql/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: JS,
        body: include_bytes!("../../vendor/graphiql/react-dom.production.min.js"),
    },
    Asset {
        name: "roster-graphiql.js",
        content_type: JS,
        body: include_bytes!("graphiql/roster-graphiql.js"),
    },
    Asset {
        name: "roster-graphiql.css",
        content_type: CSS,
        body: include_bytes!("graphiql/roster-graphiql.css"),
    },
];

/// The GraphiQL page; public, since it only calls the API with the token the user pastes.
pub fn page() -> Response {
    Html(include_str!("graphiql/page.html")).into_response()
}

/// `GET /graphiql/assets/{name}`: an embedded file, cacheable for a day.
pub async fn asset(Path(name): Path<String>) -> Response {
    serve(FILES, &name, "public, max-age=86400")
}

/// The file of `files` called `name`, with `cache_control`, or 404.
pub(super) fn serve(files: &[Asset], name: &str, cache_control: &'static str) -> Response {
    match files.iter().find(|asset| asset.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, cache_control),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
