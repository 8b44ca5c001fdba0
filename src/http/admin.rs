//! The admin page: import a CSV file (preview, dry run, the real import with its live
//! progress, failed rows, retry, cancel and revert), the tenant's jobs, and compliance at a
//! glance. A public shell of plain HTML, CSS and JavaScript embedded in the binary, served
//! as GraphiQL's page is; everything it shows comes from the public GraphQL API and the
//! failed-rows route, with the token pasted into it (the same one GraphiQL keeps).

use axum::extract::Path;
use axum::response::{Html, IntoResponse, Response};

use super::graphiql::{Asset, CSS, JS, serve};

/// Where the assets are served: `{ASSETS}/{name}`.
pub const ASSETS: &str = "/admin/assets";

static FILES: &[Asset] = &[
    Asset {
        name: "admin.js",
        content_type: JS,
        body: include_bytes!("admin/admin.js"),
    },
    Asset {
        name: "admin.css",
        content_type: CSS,
        body: include_bytes!("admin/admin.css"),
    },
];

/// `GET /admin`: the page; public, since it only calls the API with the token pasted into it.
pub async fn page() -> Response {
    Html(include_str!("admin/page.html")).into_response()
}

/// `GET /admin/assets/{name}`: an embedded file, fetched again on each load (`no-cache`):
/// the page's own script changes with the server, and is small.
pub async fn asset(Path(name): Path<String>) -> Response {
    serve(FILES, &name, "no-cache")
}
