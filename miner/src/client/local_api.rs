//! The miner's local HTTP API: `GET /status` (JSON), `GET /` (the owner's
//! page, from `vision_web`),
//! and `POST /pause`, `/resume`, `/threads`, `/pool` (mine at another pool),
//! which need the API token when the API is bound beyond loopback.
//!
//! Without the token, a request is served only from a loopback peer naming
//! a loopback host: the peer because a `Host` header is whatever a client
//! writes, the host because a browser's page on a DNS-rebound name comes
//! from a loopback peer. Browsers are further held to the page's own
//! origin (`Origin`, `Sec-Fetch-Site`, and no form posts).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::miner_status::MinerStatus;
use super::pool_switch::{PoolSwitch, PoolSwitchError};
use super::work_dispatch::WorkDispatch;

#[derive(Clone)]
pub struct LocalApi {
    pub status: Arc<MinerStatus>,
    pub dispatch: Arc<WorkDispatch>,
    /// Required on the control routes when set.
    pub token: Option<Arc<str>>,
    /// Pool mode only: where `POST /pool` sends the owner's choice.
    pub pool_switch: Option<Arc<PoolSwitch>>,
}

pub fn router(api: LocalApi) -> Router {
    Router::new()
        .merge(vision_web::router(vision_web::Page::Miner))
        .route("/status", get(status))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/threads", post(threads))
        .route("/pool", post(switch_pool))
        .fallback(|| async { LocalApiError::NoSuchRoute })
        .layer(axum::middleware::map_response(vision_web::no_sniffing))
        .with_state(api)
}

/// Why a request to the local API was refused: the one place its statuses
/// and JSON reasons are decided.
#[derive(Debug, thiserror::Error)]
enum LocalApiError {
    #[error("requests from other sites' pages are refused")]
    CrossOrigin,
    #[error("without the --api-token this API answers loopback names, from this machine, only")]
    BadHost,
    #[error("Authorization: Bearer <api token> required")]
    Unauthorized,
    #[error("expected {0}")]
    BadJson(&'static str),
    #[error("threads must be 1-{0}")]
    BadThreads(usize),
    #[error("this miner is not mining on the CPU")]
    NoCpuBackend,
    #[error("this miner mines solo; restart it with --pool URL")]
    NotPoolMode,
    #[error(transparent)]
    PoolSwitch(#[from] PoolSwitchError),
    #[error("no such route")]
    NoSuchRoute,
}

impl LocalApiError {
    fn status_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            LocalApiError::CrossOrigin => (StatusCode::FORBIDDEN, "cross_origin"),
            LocalApiError::BadHost => (StatusCode::FORBIDDEN, "bad_host"),
            LocalApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            LocalApiError::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            LocalApiError::BadThreads(_) => (StatusCode::BAD_REQUEST, "bad_threads"),
            LocalApiError::NoCpuBackend => (StatusCode::CONFLICT, "no_cpu_backend"),
            LocalApiError::NotPoolMode => (StatusCode::CONFLICT, "not_pool_mode"),
            LocalApiError::PoolSwitch(PoolSwitchError::BadUrl(_)) => (StatusCode::BAD_REQUEST, "bad_url"),
            LocalApiError::PoolSwitch(PoolSwitchError::ListFull) => (StatusCode::CONFLICT, "too_many_pools"),
            LocalApiError::NoSuchRoute => (StatusCode::NOT_FOUND, "no_such_route"),
        }
    }
}

impl IntoResponse for LocalApiError {
    fn into_response(self) -> Response {
        let (status, reason) = self.status_and_reason();
        (status, Json(serde_json::json!({ "error": reason, "message": self.to_string() }))).into_response()
    }
}

/// Whether `host` (a Host header, or an Origin's host) names this machine's
/// loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.contains(']') { host } else { name }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The address a request came from, where the server recorded it
/// (`api_listener` always does; none is never taken for loopback).
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await.ok().map(|c| c.0)))
    }
}

/// Whether this request comes from another site's page: it carries that
/// site's `Origin`, or a browser says it is cross-site (`Sec-Fetch-Site`),
/// or it is a form post (the one kind of cross-site write an old browser
/// sends without an `Origin`; the page itself posts JSON or nothing).
fn from_another_site(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let other_origin = headers
        .get(header::ORIGIN)
        .is_some_and(|origin| origin.to_str().ok().and_then(|o| o.split_once("://")).is_none_or(|(_, o)| o != host));
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"));
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|kind| {
        let kind = kind.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        matches!(kind.as_str(), "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
    });
    other_origin || cross_site || form
}

/// A request allowed to use the control routes: never from another site's
/// page; with a token set, only with it; without one, only from this
/// machine by a loopback name ([`check_local`]).
struct Control;

impl FromRequestParts<LocalApi> for Control {
    type Rejection = LocalApiError;

    async fn from_request_parts(parts: &mut Parts, api: &LocalApi) -> Result<Self, Self::Rejection> {
        let Ok(peer) = Peer::from_request_parts(parts, api).await;
        let headers = &parts.headers;
        if from_another_site(headers) {
            return Err(LocalApiError::CrossOrigin);
        }
        match (&api.token, bearer_matches(api, headers)) {
            (None, _) => check_local(&peer, headers).map(|()| Control),
            (Some(_), true) => Ok(Control),
            (Some(_), false) => Err(LocalApiError::Unauthorized),
        }
    }
}

/// Whether the request carries the API token (false without one set).
fn bearer_matches(api: &LocalApi, headers: &HeaderMap) -> bool {
    let Some(expected) = &api.token else { return false };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|g| {
        bool::from(blake3::hash(g.as_bytes()).as_bytes().ct_eq(blake3::hash(expected.as_bytes()).as_bytes()))
    })
}

type Answer = Result<Json<serde_json::Value>, LocalApiError>;

/// Refuses a request without the token unless it comes from a loopback
/// peer and names a loopback host: another machine can write any `Host`
/// (the API bound beyond loopback), and another site's page on this
/// machine comes by a DNS-rebound name.
fn check_local(peer: &Peer, headers: &HeaderMap) -> Result<(), LocalApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let local_peer = peer.0.is_some_and(|p| p.ip().to_canonical().is_loopback());
    if !local_peer || (!host.is_empty() && !is_loopback_host(host)) {
        return Err(LocalApiError::BadHost);
    }
    Ok(())
}

/// The status (pools, errors, rates) answers this machine by a loopback
/// name, or anyone with the token.
async fn status(
    State(api): State<LocalApi>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<impl IntoResponse, LocalApiError> {
    if !bearer_matches(&api, &headers) {
        check_local(&peer, &headers)?;
    }
    Ok(Json(api.status.report(&api.dispatch)))
}

async fn pause(State(api): State<LocalApi>, _: Control) -> Answer {
    api.dispatch.set_paused(true);
    Ok(Json(serde_json::json!({ "paused": true })))
}

async fn resume(State(api): State<LocalApi>, _: Control) -> Answer {
    api.dispatch.set_paused(false);
    Ok(Json(serde_json::json!({ "paused": false })))
}

#[derive(Deserialize)]
struct ThreadsRequest {
    threads: usize,
}

/// A JSON body, or the documented `bad_json` (not axum's own text answers).
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn threads(State(api): State<LocalApi>, _: Control, body: JsonBody<ThreadsRequest>) -> Answer {
    let Json(request) = body.map_err(|_| LocalApiError::BadJson("{\"threads\": N}"))?;
    let max = crate::backend::cpu::max_threads();
    if request.threads == 0 || request.threads > max {
        return Err(LocalApiError::BadThreads(max));
    }
    if !api.dispatch.set_cpu_threads(request.threads) {
        return Err(LocalApiError::NoCpuBackend);
    }
    Ok(Json(serde_json::json!({ "threads": request.threads })))
}

#[derive(Deserialize)]
struct SwitchRequest {
    url: String,
}

/// Makes `url` the primary pool (added to the failover list when new); the
/// session moves there at once.
async fn switch_pool(State(api): State<LocalApi>, _: Control, body: JsonBody<SwitchRequest>) -> Answer {
    let switch = api.pool_switch.as_ref().ok_or(LocalApiError::NotPoolMode)?;
    let Json(request) = body.map_err(|_| LocalApiError::BadJson("{\"url\": \"http://host:port\"}"))?;
    let url = switch.request(&request.url)?;
    Ok(Json(serde_json::json!({ "switching_to": url })))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::client::work_dispatch::Device;

    /// The API as this machine's clients reach it (a loopback peer).
    fn api(token: Option<&str>) -> (Router, Arc<WorkDispatch>) {
        api_from(token, "127.0.0.1:50000")
    }

    /// The API as clients at `peer` reach it.
    fn api_from(token: Option<&str>, peer: &str) -> (Router, Arc<WorkDispatch>) {
        let (tx, _rx) = crate::client::work_dispatch::found_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        let status = Arc::new(MinerStatus::new());
        let pool_switch = Some(Arc::new(PoolSwitch::default()));
        let app = router(LocalApi { status, dispatch: dispatch.clone(), token: token.map(Arc::from), pool_switch })
            .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        (app, dispatch)
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn control_routes_need_the_token_when_one_is_set() {
        let (app, dispatch) = api(Some("secret"));
        assert_eq!(call(&app, "POST", "/pause", None, "").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "POST", "/pause", Some("wrong"), "").await.0, StatusCode::UNAUTHORIZED);
        assert!(!dispatch.is_paused());
        assert_eq!(call(&app, "POST", "/pause", Some("secret"), "").await.0, StatusCode::OK);
        assert!(dispatch.is_paused());
        let (status, report) = call(&app, "GET", "/status", None, "").await;
        assert_eq!((status, report["paused"].as_bool()), (StatusCode::OK, Some(true)));
        for key in ["accepted", "rejected", "stale", "hashrate", "devices", "connection"] {
            assert!(report.get(key).is_some(), "/status lacks {key}");
        }
        assert_eq!(call(&app, "POST", "/resume", Some("secret"), "").await.0, StatusCode::OK);
        assert!(!dispatch.is_paused());
        dispatch.stop();
    }

    /// Every answer, errors included, is marked never to be sniffed.
    #[tokio::test]
    async fn answers_are_never_sniffed() {
        let (app, dispatch) = api(None);
        for uri in ["/status", "/nope"] {
            let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{uri}");
        }
        dispatch.stop();
    }

    #[tokio::test]
    async fn threads_are_checked_and_applied() {
        let (app, dispatch) = api(None);
        assert_eq!(call(&app, "POST", "/threads", None, r#"{"threads": 0}"#).await.0, StatusCode::BAD_REQUEST);
        // Whatever is wrong with the body, the documented answer.
        for body in ["nonsense", r#"{"threads": "2"}"#, r#"{"threads": -1}"#, ""] {
            let (status, answer) = call(&app, "POST", "/threads", None, body).await;
            assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_json")), "{body}");
        }
        assert_eq!(call(&app, "POST", "/threads", None, r#"{"threads": 2}"#).await.0, StatusCode::OK);
        assert_eq!(dispatch.cpu_threads(), 2);
        assert_eq!(call(&app, "GET", "/nope", None, "").await.0, StatusCode::NOT_FOUND);
        dispatch.stop();
    }

    #[test]
    fn every_refusal_has_its_status_and_reason() {
        let table = [
            (LocalApiError::CrossOrigin, StatusCode::FORBIDDEN, "cross_origin"),
            (LocalApiError::BadHost, StatusCode::FORBIDDEN, "bad_host"),
            (LocalApiError::Unauthorized, StatusCode::UNAUTHORIZED, "unauthorized"),
            (LocalApiError::BadJson("{}"), StatusCode::BAD_REQUEST, "bad_json"),
            (LocalApiError::BadThreads(8), StatusCode::BAD_REQUEST, "bad_threads"),
            (LocalApiError::NoCpuBackend, StatusCode::CONFLICT, "no_cpu_backend"),
            (LocalApiError::NotPoolMode, StatusCode::CONFLICT, "not_pool_mode"),
            (PoolSwitchError::ListFull.into(), StatusCode::CONFLICT, "too_many_pools"),
            (LocalApiError::NoSuchRoute, StatusCode::NOT_FOUND, "no_such_route"),
        ];
        for (error, status, reason) in table {
            assert_eq!(error.status_and_reason(), (status, reason), "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_other_names() {
        for host in ["127.0.0.1:7073", "localhost:7073", "LOCALHOST", "[::1]:7073", "127.0.0.2"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:7073", "192.168.1.5:7073", "[2001:db8::1]:7073", "localhost.evil.example", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[tokio::test]
    async fn other_sites_and_rebound_names_cannot_use_the_controls() {
        let (app, dispatch) = api(None);
        let post = |headers: Vec<(&'static str, &'static str)>| {
            let mut request = Request::builder().method("POST").uri("/pause");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let app = app.clone();
            async move { app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status() }
        };
        assert_eq!(
            post(vec![("host", "127.0.0.1:7073"), ("origin", "http://evil.example")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(post(vec![("host", "evil.example:7073")]).await, StatusCode::FORBIDDEN);
        assert!(!dispatch.is_paused());
        assert_eq!(post(vec![("host", "127.0.0.1:7073"), ("origin", "http://127.0.0.1:7073")]).await, StatusCode::OK);
        assert!(dispatch.is_paused());
        // A rebound name cannot read the status (wallet, pools) either.
        let read = |host: &'static str| {
            let request = Request::get("/status").header("host", host).body(Body::empty()).unwrap();
            let app = app.clone();
            async move { app.oneshot(request).await.unwrap().status() }
        };
        assert_eq!(read("evil.example:7073").await, StatusCode::FORBIDDEN);
        assert_eq!(read("localhost:7073").await, StatusCode::OK);
        dispatch.stop();
        // With a token set too: a rebound name needs the token to read.
        let (app, dispatch) = api(Some("secret"));
        let read = |host: &'static str, token: Option<&'static str>| {
            let mut request = Request::get("/status").header("host", host);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let app = app.clone();
            async move { app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status() }
        };
        assert_eq!(read("evil.example:7073", None).await, StatusCode::FORBIDDEN);
        assert_eq!(read("evil.example:7073", Some("wrong")).await, StatusCode::FORBIDDEN);
        assert_eq!(read("rig.lan:7073", Some("secret")).await, StatusCode::OK);
        assert_eq!(read("127.0.0.1:7073", None).await, StatusCode::OK);
        dispatch.stop();
    }

    /// Another machine writes whatever `Host` it likes: without the token
    /// it is refused, whatever name it gives.
    #[tokio::test]
    async fn another_machine_needs_the_token_whatever_host_it_names() {
        let (app, dispatch) = api_from(Some("secret"), "192.168.1.50:40000");
        let send = |method: &'static str, uri: &'static str, token: Option<&'static str>| {
            let mut request = Request::builder().method(method).uri(uri).header("host", "127.0.0.1:7073");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let app = app.clone();
            async move { app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status() }
        };
        assert_eq!(send("GET", "/status", None).await, StatusCode::FORBIDDEN);
        assert_eq!(send("POST", "/pause", None).await, StatusCode::UNAUTHORIZED);
        assert!(!dispatch.is_paused());
        assert_eq!(send("GET", "/status", Some("secret")).await, StatusCode::OK);
        assert_eq!(send("POST", "/pause", Some("secret")).await, StatusCode::OK);
        assert!(dispatch.is_paused());
        dispatch.stop();
        // No recorded peer is not taken for this machine.
        let (tx, _rx) = crate::client::work_dispatch::found_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        let status = Arc::new(MinerStatus::new());
        let bare = router(LocalApi { status, dispatch: dispatch.clone(), token: None, pool_switch: None });
        let request = Request::get("/status").header("host", "127.0.0.1:7073").body(Body::empty()).unwrap();
        assert_eq!(bare.oneshot(request).await.unwrap().status(), StatusCode::FORBIDDEN);
        dispatch.stop();
        // Bound to [::], this machine's IPv4 clients arrive IPv4-mapped.
        let (app, dispatch) = api_from(None, "[::ffff:127.0.0.1]:40000");
        let request = Request::get("/status").header("host", "127.0.0.1:7073").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
        dispatch.stop();
    }

    /// A cross-site write a browser may send without an `Origin` (a form
    /// post), or one it marks cross-site, is refused even on loopback.
    #[tokio::test]
    async fn form_posts_and_cross_site_requests_cannot_use_the_controls() {
        let (app, dispatch) = api(None);
        let post = |name: &'static str, value: &'static str| {
            let request = Request::post("/pause").header("host", "127.0.0.1:7073").header(name, value);
            let app = app.clone();
            async move { app.oneshot(request.body(Body::from("x=1")).unwrap()).await.unwrap().status() }
        };
        for (name, value) in [
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-type", "multipart/form-data; boundary=x"),
            ("content-type", "Text/Plain;charset=UTF-8"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            assert_eq!(post(name, value).await, StatusCode::FORBIDDEN, "{name}: {value}");
        }
        assert!(!dispatch.is_paused());
        assert_eq!(post("sec-fetch-site", "same-origin").await, StatusCode::OK);
        assert!(dispatch.is_paused());
        dispatch.stop();
    }

    #[tokio::test]
    async fn a_pool_switch_needs_the_token_and_a_pool_url() {
        let (app, dispatch) = api(Some("secret"));
        let body = r#"{"url": "http://127.0.0.1:9"}"#;
        assert_eq!(call(&app, "POST", "/pool", None, body).await.0, StatusCode::UNAUTHORIZED);
        let (status, answer) = call(&app, "POST", "/pool", Some("secret"), r#"{"url": "gopher://x"}"#).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_url")));
        let (status, answer) = call(&app, "POST", "/pool", Some("secret"), body).await;
        assert_eq!((status, answer["switching_to"].as_str()), (StatusCode::OK, Some("http://127.0.0.1:9")));
        dispatch.stop();
    }
}
