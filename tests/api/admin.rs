//! The admin page: a public shell whose every file comes from the server itself.

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn the_admin_page_and_its_assets_are_served_publicly() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.get("/admin").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("Roster admin"), "{page}");
    let sources: Vec<&str> = page
        .split(['"', '\''])
        .filter(|part| part.starts_with('/') || part.contains("://"))
        .filter(|part| *part != "/graphql")
        .collect();
    assert!(
        sources.iter().all(|s| s.starts_with("/admin/assets/")),
        "the page loads only its own assets: {sources:?}"
    );
    let mut types = Vec::new();
    for source in &sources {
        let response = app.get(source).await;
        assert_eq!(response.status(), 200, "{source}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        types.push(content_type.split(';').next().unwrap().to_owned());
        // The page's script changes with the server: no browser keeps an old one.
        assert_eq!(response.headers()["cache-control"], "no-cache", "{source}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{source}");
    }
    types.sort();
    assert_eq!(types, ["text/css", "text/javascript"], "{sources:?}");

    for missing in ["/admin/assets/nothing.js", "/admin/assets/graphiql.min.js"] {
        assert_eq!(app.get(missing).await.status(), 404, "{missing}");
    }
}
