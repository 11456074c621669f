//! The pool's HTTP API (`/pool/*` and `/metrics`); fields are documented in
//! `docs/API.md`. Handlers are thin: they authenticate, call [`Pool`], and
//! time themselves for the metrics.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::metrics::PoolMetrics;
use super::{ConfigureRequest, Pool, RegisterRequest, ShareRequest};
use crate::api_error::{ApiError, AppJson, AppQuery};

/// What the pool routes share.
#[derive(Clone)]
pub struct PoolApiState {
    pub pool: Arc<Pool>,
    /// Admin bearer token; `None` turns the admin routes off.
    pub admin_token: Option<Arc<str>>,
}

pub fn router(state: PoolApiState) -> Router {
    Router::new()
        .route("/pool/register", post(register))
        .route("/pool/job", get(job))
        .route("/pool/share", post(share))
        .route("/pool/stats", get(stats))
        .route("/pool/blocks", get(blocks))
        .route("/pool/workers/{id}", get(worker))
        .route("/pool/metrics", get(metrics_json))
        .route("/metrics", get(metrics_prometheus))
        .route("/pool/configure", post(configure))
        .route("/pool/start", post(start))
        .route("/pool/stop", post(stop))
        .route("/pool/mode", get(mode))
        .route("/pool/bans", get(bans))
        .route("/pool/bans/{worker_id}", delete(unban))
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn worker_of(state: &PoolApiState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <worker_token>"))?;
    state.pool.authenticate(token)
}

fn require_admin(state: &PoolApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::not_found("admin_disabled", "admin routes are off: no admin token configured"));
    };
    let given = bearer(headers).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <admin token>"))?;
    // Compare digests so neither content nor length leaks through timing.
    let (a, b) = (blake3::hash(given.as_bytes()), blake3::hash(expected.as_bytes()));
    if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong admin token"))
    }
}

async fn register(
    State(state): State<PoolApiState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    AppJson(request): AppJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ip = connect.map(|axum::Extension(ConnectInfo(addr))| addr.ip());
    Ok(AppJson(state.pool.register(request, ip)?))
}

#[derive(Debug, Deserialize)]
struct JobQuery {
    /// Long-poll: wait up to this many seconds for a newer job.
    wait: Option<u64>,
}

async fn job(
    State(state): State<PoolApiState>,
    headers: HeaderMap,
    AppQuery(query): AppQuery<JobQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let worker_id = worker_of(&state, &headers)?;
    let job = state.pool.job(&worker_id, query.wait.map(Duration::from_secs)).await?;
    if query.wait.is_none() {
        state.pool.metrics.job_latency.record(started.elapsed());
    }
    Ok(AppJson(job))
}

async fn share(
    State(state): State<PoolApiState>,
    headers: HeaderMap,
    AppJson(request): AppJson<ShareRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let worker_id = worker_of(&state, &headers)?;
    let response = state.pool.submit_share(&worker_id, request).await?;
    state.pool.metrics.share_latency.record(started.elapsed());
    Ok(AppJson(response))
}

async fn stats(State(state): State<PoolApiState>) -> impl IntoResponse {
    AppJson(state.pool.stats())
}

async fn blocks(State(state): State<PoolApiState>) -> Result<impl IntoResponse, ApiError> {
    let mut blocks = state.pool.found_blocks()?;
    blocks.reverse();
    Ok(AppJson(serde_json::json!({ "blocks": blocks })))
}

async fn worker(State(state): State<PoolApiState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    state
        .pool
        .worker(&id)
        .map(AppJson)
        .ok_or_else(|| ApiError::not_found("unknown_worker", format!("no active worker {id:?}")))
}

fn metrics_value(pool: &Pool) -> Result<serde_json::Value, ApiError> {
    let m = &pool.metrics;
    Ok(serde_json::json!({
        "ledger_shares": pool.ledger_shares()?,
        "shares": {
            "valid": PoolMetrics::get(&m.shares_valid),
            "invalid": PoolMetrics::get(&m.shares_invalid),
            "stale": PoolMetrics::get(&m.shares_stale),
            "duplicate": PoolMetrics::get(&m.shares_duplicate),
            "rate_limited": PoolMetrics::get(&m.shares_rate_limited),
            "busy": PoolMetrics::get(&m.shares_busy),
        },
        "blocks_found": PoolMetrics::get(&m.blocks_found),
        "jobs_served": PoolMetrics::get(&m.jobs_served),
        "verification": {
            "queue_depth": pool.verify_queue_depth(),
            "queue_capacity": pool.config().verify_queue,
            "threads": pool.config().verify_threads,
            "latency": m.verify_latency.summary(),
        },
        "share_response": m.share_latency.summary(),
        "job_response": m.job_latency.summary(),
        "uptime_seconds": pool.uptime().as_secs(),
    }))
}

async fn metrics_json(State(state): State<PoolApiState>) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(metrics_value(&state.pool)?))
}

async fn metrics_prometheus(State(state): State<PoolApiState>) -> impl IntoResponse {
    let pool = &state.pool;
    let m = &pool.metrics;
    let stats = pool.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "vision_pool_shares_total",
        "counter",
        "Shares judged, by outcome.",
        &[
            ("{outcome=\"valid\"}", PoolMetrics::get(&m.shares_valid) as f64),
            ("{outcome=\"invalid\"}", PoolMetrics::get(&m.shares_invalid) as f64),
            ("{outcome=\"stale\"}", PoolMetrics::get(&m.shares_stale) as f64),
            ("{outcome=\"duplicate\"}", PoolMetrics::get(&m.shares_duplicate) as f64),
            ("{outcome=\"rate_limited\"}", PoolMetrics::get(&m.shares_rate_limited) as f64),
            ("{outcome=\"busy\"}", PoolMetrics::get(&m.shares_busy) as f64),
        ],
    );
    metric(
        "vision_pool_blocks_found_total",
        "counter",
        "Blocks the pool found and the chain accepted.",
        &[("", PoolMetrics::get(&m.blocks_found) as f64)],
    );
    metric(
        "vision_pool_jobs_served_total",
        "counter",
        "Jobs handed to workers.",
        &[("", PoolMetrics::get(&m.jobs_served) as f64)],
    );
    metric(
        "vision_pool_verify_queue_depth",
        "gauge",
        "Shares waiting for or in verification.",
        &[("", pool.verify_queue_depth() as f64)],
    );
    for (name, help, summary) in [
        (
            "vision_pool_verify_latency_ms",
            "Share verification latency (queue wait plus hash), recent samples.",
            m.verify_latency.summary(),
        ),
        ("vision_pool_share_response_ms", "POST /pool/share response time, recent samples.", m.share_latency.summary()),
        (
            "vision_pool_job_response_ms",
            "GET /pool/job response time without long-poll, recent samples.",
            m.job_latency.summary(),
        ),
    ] {
        metric(
            name,
            "summary",
            help,
            &[("{quantile=\"0.5\"}", summary.p50_ms), ("{quantile=\"0.99\"}", summary.p99_ms)],
        );
    }
    metric("vision_pool_workers_active", "gauge", "Workers in the active set.", &[("", stats.workers_active as f64)]);
    metric(
        "vision_pool_workers_online",
        "gauge",
        "Workers with a recent accepted share.",
        &[("", stats.workers_online as f64)],
    );
    metric(
        "vision_pool_hashrate_10m",
        "gauge",
        "Effective hash rate from accepted shares, 10-minute window (H/s).",
        &[("", stats.hashrate.effective_10m)],
    );
    metric("vision_pool_height", "gauge", "Height of the current job.", &[("", stats.height.unwrap_or(0) as f64)]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn configure(
    State(state): State<PoolApiState>,
    headers: HeaderMap,
    AppJson(request): AppJson<ConfigureRequest>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    Ok(AppJson(state.pool.configure(request)?))
}

async fn start(State(state): State<PoolApiState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    Ok(AppJson(state.pool.set_running(true)?))
}

async fn stop(State(state): State<PoolApiState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    Ok(AppJson(state.pool.set_running(false)?))
}

async fn mode(State(state): State<PoolApiState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    let settings = state.pool.settings();
    Ok(AppJson(serde_json::json!({ "running": settings.running, "settings": settings })))
}

async fn bans(State(state): State<PoolApiState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    let bans: Vec<serde_json::Value> = state
        .pool
        .bans()
        .into_iter()
        .map(|(worker_id, until)| serde_json::json!({ "worker_id": worker_id, "banned_until_ms": until }))
        .collect();
    Ok(AppJson(serde_json::json!({ "bans": bans })))
}

async fn unban(
    State(state): State<PoolApiState>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    if state.pool.unban(&worker_id)? {
        Ok(AppJson(serde_json::json!({ "unbanned": worker_id })))
    } else {
        Err(ApiError::not_found("not_banned", format!("{worker_id:?} is not banned")))
    }
}
