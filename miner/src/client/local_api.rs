//! The miner's local HTTP API: `GET /status` (JSON), `GET /` (a small page),
//! and `POST /pause`, `/resume`, `/threads`, which need the API token when
//! the API is bound beyond loopback.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::miner_status::MinerStatus;
use super::work_dispatch::WorkDispatch;

#[derive(Clone)]
pub struct LocalApi {
    pub status: Arc<MinerStatus>,
    pub dispatch: Arc<WorkDispatch>,
    /// Required on the control routes when set.
    pub token: Option<Arc<str>>,
}

pub fn router(api: LocalApi) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/threads", post(threads))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_such_route", "no such route") })
        .with_state(api)
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": reason, "message": message }))).into_response()
}

/// `None` when allowed, else the 401 to send.
fn refuse(api: &LocalApi, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &api.token else { return None };
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

async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

const STATUS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>vision-miner</title>
<style>body{font:15px system-ui,sans-serif;margin:2em;max-width:46em}td{padding:.2em .8em}h1{font-size:1.3em}
.ok{color:#080}.bad{color:#b00}</style></head>
<body><h1>vision-miner</h1><table id="t"></table><h2>Devices</h2><table id="d"></table>
<script>
const fmt = r => r >= 1e6 ? (r/1e6).toFixed(2)+' MH/s' : r >= 1e3 ? (r/1e3).toFixed(2)+' kH/s' : r.toFixed(1)+' H/s';
async function refresh() {
  try {
    const s = await (await fetch('/status')).json();
    const c = s.connection;
    const rows = [
      ['hash rate (10s / 60s / 15m)', fmt(s.hashrate.h10s)+' / '+fmt(s.hashrate.h60s)+' / '+fmt(s.hashrate.h15m)],
      ['shares', 'accepted '+s.accepted+', rejected '+s.rejected+', stale '+s.stale+', blocks '+s.blocks],
      [c.mode === 'solo' ? 'node' : 'pool', '<span class="'+(c.connected?'ok':'bad')+'">'+c.url+'</span>'+(c.last_error?' ('+c.last_error+')':'')],
      ['height / share difficulty', (c.height ?? '-')+' / '+(c.share_difficulty ?? '-')],
      ['uptime', s.uptime_secs+' s'+(s.paused?' (paused)':'')],
    ];
    document.getElementById('t').innerHTML = rows.map(r => '<tr><td>'+r[0]+'</td><td>'+r[1]+'</td></tr>').join('');
    document.getElementById('d').innerHTML = s.devices.map(d => '<tr><td>'+d.name+'</td><td>'+(d.disabled?'disabled':fmt(d.hashrate.h10s))+'</td></tr>').join('');
  } catch (e) {}
}
refresh(); setInterval(refresh, 2000);
</script></body></html>"#;

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
        (router(LocalApi { status, dispatch: dispatch.clone(), token: token.map(Arc::from) }), dispatch)
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
}
