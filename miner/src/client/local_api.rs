//! The miner's local HTTP API: `GET /status` (JSON), `GET /` (the owner's
//! page, from `vision_web`),
//! and `POST /pause`, `/resume`, `/threads`, `/pool` (mine at another pool),
//! which need the API token when the API is bound beyond loopback.

use std::sync::Arc;

use axum::extract::State;
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
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_such_route", "no such route") })
        .with_state(api)
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": reason, "message": message }))).into_response()
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

/// `None` when allowed, else the 401 or 403 to send. Browsers are held to
/// their own origin: a request another site's page makes (it carries that
/// site's `Origin`) is refused, and without a token, where the API is only
/// on loopback, so is a `Host` that is not loopback (a DNS-rebound name).
fn refuse(api: &LocalApi, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin.to_str().ok().and_then(|o| o.split_once("://")).is_some_and(|(_, o)| o == host);
        if !same {
            return Some(error(StatusCode::FORBIDDEN, "cross_origin", "requests from other sites' pages are refused"));
        }
    }
    let Some(expected) = &api.token else {
        return (!host.is_empty() && !is_loopback_host(host)).then(|| {
            error(
                StatusCode::FORBIDDEN,
                "bad_host",
                "without --api-token the control routes answer loopback names only",
            )
        });
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        bool::from(blake3::hash(g.as_bytes()).as_bytes().ct_eq(blake3::hash(expected.as_bytes()).as_bytes()))
    });
    (!ok).then(|| error(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization: Bearer <api token> required"))
}

async fn status(State(api): State<LocalApi>) -> impl IntoResponse {
    Json(api.status.report(&api.dispatch))
}

async fn pause(State(api): State<LocalApi>, headers: HeaderMap) -> Response {
    if let Some(denied) = refuse(&api, &headers) {
        return denied;
    }
    api.dispatch.set_paused(true);
    Json(serde_json::json!({ "paused": true })).into_response()
}

async fn resume(State(api): State<LocalApi>, headers: HeaderMap) -> Response {
    if let Some(denied) = refuse(&api, &headers) {
        return denied;
    }
    api.dispatch.set_paused(false);
    Json(serde_json::json!({ "paused": false })).into_response()
}

#[derive(Deserialize)]
struct ThreadsRequest {
    threads: usize,
}

async fn threads(State(api): State<LocalApi>, headers: HeaderMap, body: Option<Json<ThreadsRequest>>) -> Response {
    if let Some(denied) = refuse(&api, &headers) {
        return denied;
    }
    let Some(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"threads\": N}");
    };
    let max = std::thread::available_parallelism().map_or(1, |n| n.get()) * 4;
    if request.threads == 0 || request.threads > max {
        return error(StatusCode::BAD_REQUEST, "bad_threads", &format!("threads must be 1-{max}"));
    }
    if !api.dispatch.set_cpu_threads(request.threads) {
        return error(StatusCode::CONFLICT, "no_cpu_backend", "this miner is not mining on the CPU");
    }
    Json(serde_json::json!({ "threads": request.threads })).into_response()
}

#[derive(Deserialize)]
struct SwitchRequest {
    url: String,
}

/// Makes `url` the primary pool (added to the failover list when new); the
/// session moves there at once.
async fn switch_pool(State(api): State<LocalApi>, headers: HeaderMap, body: Option<Json<SwitchRequest>>) -> Response {
    if let Some(denied) = refuse(&api, &headers) {
        return denied;
    }
    let Some(switch) = &api.pool_switch else {
        return error(StatusCode::CONFLICT, "not_pool_mode", "this miner mines solo; restart it with --pool URL");
    };
    let Some(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"url\": \"http://host:port\"}");
    };
    match switch.request(&request.url) {
        Ok(url) => Json(serde_json::json!({ "switching_to": url })).into_response(),
        Err(err @ PoolSwitchError::BadUrl(_)) => error(StatusCode::BAD_REQUEST, "bad_url", &err.to_string()),
        Err(err @ PoolSwitchError::ListFull) => error(StatusCode::CONFLICT, "too_many_pools", &err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::client::work_dispatch::Device;

    fn api(token: Option<&str>) -> (Router, Arc<WorkDispatch>) {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        let status = Arc::new(MinerStatus::new());
        let pool_switch = Some(Arc::new(PoolSwitch::default()));
        (router(LocalApi { status, dispatch: dispatch.clone(), token: token.map(Arc::from), pool_switch }), dispatch)
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

    #[tokio::test]
    async fn threads_are_checked_and_applied() {
        let (app, dispatch) = api(None);
        assert_eq!(call(&app, "POST", "/threads", None, r#"{"threads": 0}"#).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "POST", "/threads", None, "nonsense").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "POST", "/threads", None, r#"{"threads": 2}"#).await.0, StatusCode::OK);
        assert_eq!(dispatch.cpu_threads(), 2);
        assert_eq!(call(&app, "GET", "/nope", None, "").await.0, StatusCode::NOT_FOUND);
        dispatch.stop();
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
