//! The web pages of the Vision mining software: the coordinator's dashboard
//! (pool hosts and miners) and the miner's page (its owner), embedded in the
//! binaries as static files.
//!
//! Layout:
//! - `static/coordinator/`: the dashboard served at the coordinator's `/`.
//! - `static/miner/`: the page served at the miner's local API `/`.
//! - `static/common/`: the stylesheet and the chart and formatting helpers
//!   both pages share.
//! - `static/vendor/uplot/`: uPlot, the charting library, vendored unmodified.
//!
//! The pages are plain HTML and JavaScript with no build step and no network
//! beyond their own server: every figure they show comes from that server's
//! documented JSON API (`docs/API.md`), which stays the source of truth. This
//! crate only serves files; it must not compute figures or hold secrets (the
//! admin token a host types stays in the browser's session storage).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../static/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Files under `/assets/` for both pages.
const SHARED: &[Asset] = &[
    asset!("base.css", "common/base.css", CSS),
    asset!("charts.js", "common/charts.js", JS),
    asset!("uPlot.iife.min.js", "vendor/uplot/uPlot.iife.min.js", JS),
    asset!("uPlot.min.css", "vendor/uplot/uPlot.min.css", CSS),
];

const COORDINATOR: &[Asset] = &[asset!("dashboard.js", "coordinator/dashboard.js", JS)];
const MINER: &[Asset] = &[asset!("miner.js", "miner/miner.js", JS)];

const COORDINATOR_PAGE: &[u8] = include_bytes!("../static/coordinator/index.html");
const MINER_PAGE: &[u8] = include_bytes!("../static/miner/index.html");

/// Scripts only from our own server (no inline script can run), no frames,
/// requests only to the same origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Which page a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Coordinator,
    Miner,
}

impl Page {
    fn html(self) -> &'static [u8] {
        match self {
            Page::Coordinator => COORDINATOR_PAGE,
            Page::Miner => MINER_PAGE,
        }
    }

    fn own_assets(self) -> &'static [Asset] {
        match self {
            Page::Coordinator => COORDINATOR,
            Page::Miner => MINER,
        }
    }

    /// The asset called `name`, if this page serves one.
    pub fn asset(self, name: &str) -> Option<&'static Asset> {
        SHARED.iter().chain(self.own_assets()).find(|a| a.name == name)
    }
}

/// Our own files may change with any new binary: revalidate them. The
/// vendored library's name is its version's: cache it for a day.
fn cache_control(name: &str) -> &'static str {
    if name.starts_with("uPlot") {
        "public, max-age=86400"
    } else {
        "no-cache"
    }
}

fn respond(content_type: &'static str, body: &'static [u8], cache: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn not_found() -> Response {
    let body = r#"{"error":"no_such_asset","message":"no such asset"}"#;
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Marks every answer of a server (its JSON and errors too, some of which
/// quote what a client sent) as never to be sniffed into another type: a
/// layer for the whole router, `axum::middleware::map_response(no_sniffing)`.
pub async fn no_sniffing(mut response: Response) -> Response {
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /` (the page) and `GET /assets/{name}` (its files). Merge it into a
/// server's router; it takes no state.
pub fn router<S: Clone + Send + Sync + 'static>(page: Page) -> Router<S> {
    Router::new()
        .route("/", get(move || async move { respond("text/html; charset=utf-8", page.html(), "no-cache") }))
        .route(
            "/assets/{name}",
            get(move |axum::extract::Path(name): axum::extract::Path<String>| async move {
                match page.asset(&name) {
                    Some(asset) => respond(asset.content_type, asset.body, cache_control(asset.name)),
                    None => not_found(),
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(page: Page, uri: &str) -> (StatusCode, String, String) {
        let app: Router = router(page);
        let response = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, kind.unwrap_or_default(), String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn each_page_references_only_assets_it_serves() {
        for page in [Page::Coordinator, Page::Miner] {
            let (status, kind, html) = get(page, "/").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/html"));
            let referenced: Vec<&str> =
                html.split("/assets/").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
            assert!(referenced.len() >= 4, "{page:?} references {referenced:?}");
            for name in referenced {
                let (status, kind, _) = get(page, &format!("/assets/{name}")).await;
                assert_eq!(status, StatusCode::OK, "{page:?} /assets/{name}");
                assert!(kind.starts_with("text/"), "{name}: {kind}");
            }
            // No inline script: the policy would block it.
            assert!(!html.contains("<script>") && !html.contains("onclick="), "{page:?} has inline script");
        }
    }

    #[tokio::test]
    async fn unknown_assets_and_the_other_pages_files_are_404() {
        assert_eq!(get(Page::Miner, "/assets/dashboard.js").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(Page::Coordinator, "/assets/miner.js").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(Page::Coordinator, "/assets/..%2FCargo.toml").await.0, StatusCode::NOT_FOUND);
    }
}
