//! The pool's HTTP API (`/pool/*`, `/metrics` and `/healthz`); fields are documented in
//! `docs/API.md`. Handlers are thin: they authenticate, call [`Pool`], and
//! time themselves for the metrics. Who may call what:
//! - anyone: register, stats, history, blocks, balances, payouts, worker,
//!   metrics, healthz;
//! - a session's bearer token: job, share;
//! - the admin token: configure, start, stop, mode, bans, unban, payout retry.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use tower_http::timeout::TimeoutLayer;

use super::stats_history::HistoryRange;
use super::{
    now_ms, BansResponse, ConfigureRequest, ModeResponse, Pool, PoolSettingsView, RegisterRequest, ShareRequest,
    UnbanResponse,
};
use crate::api_error::{ApiError, AppJson, AppPath, AppQuery};
use crate::bearer_auth::{bearer, CredentialGuesses};
use crate::client_source::TrustedProxies;
use crate::rewards::SetAsideOutcome;

/// What the pool routes share.
#[derive(Clone)]
pub struct PoolApiState {
    pub pool: Arc<Pool>,
    /// Admin bearer token; `None` turns the admin routes off.
    pub admin_token: Option<Arc<str>>,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Wrong admin (and node) tokens per source: guessing costs time.
    pub(crate) credential_guesses: Arc<CredentialGuesses>,
}

/// The pool routes. Each request must finish within `request_timeout`
/// (408 otherwise); a job request may also wait out its long-poll.
pub fn router(state: PoolApiState, request_timeout: Duration) -> Router {
    let long_poll_timeout = request_timeout + state.pool.config().max_job_wait;
    Router::new()
        .route("/pool/register", post(register))
        .route("/pool/share", post(share))
        .route("/pool/stats", get(stats))
        .route("/pool/blocks", get(blocks))
        .route("/pool/blocks/{height}", get(block_detail))
        .route("/pool/balances/{wallet}", get(balance))
        .route("/pool/payouts", get(payouts))
        .route("/pool/payouts/{id}/retry", post(retry_payout))
        .route("/pool/payouts/{id}/paid", post(mark_payout_paid))
        .route("/pool/workers/{id}", get(worker))
        .route("/pool/workers/{id}/history", get(worker_history))
        .route("/pool/history", get(history))
        .route("/healthz", get(healthz))
        .route("/pool/metrics", get(super::metrics_export::metrics_json))
        .route("/metrics", get(super::metrics_export::metrics_prometheus))
        .route("/pool/configure", post(configure))
        .route("/pool/start", post(start))
        .route("/pool/stop", post(stop))
        .route("/pool/mode", get(mode))
        .route("/pool/bans", get(bans))
        .route("/pool/bans/{id}", delete(unban))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .route(
            "/pool/job",
            get(job).layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, long_poll_timeout)),
        )
        .with_state(state)
}

type Source = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The source a request's limits and bans are kept under.
fn source_ip(state: &PoolApiState, source: Source, headers: &HeaderMap) -> Option<IpAddr> {
    source.map(|Extension(ConnectInfo(addr))| state.trusted_proxies.source(addr.ip(), headers))
}

async fn session_of(state: &PoolApiState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <worker_token>"))?;
    Ok(state.pool.authenticate(token, now_ms()).await?)
}

/// A request carrying the admin token, checked before anything else is
/// read (a source guessing wrong tokens is held: `bearer_auth`).
struct Admin;

impl axum::extract::FromRequestParts<PoolApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &PoolApiState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.admin_token else {
            return Err(ApiError::not_found("admin_disabled", "admin routes are off: no admin token configured"));
        };
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| state.trusted_proxies.source(peer.ip(), &parts.headers));
        let guesses = &state.credential_guesses;
        guesses.check(source, &parts.headers, &[expected], "admin token", guesses.now_ms()).map(|()| Admin)
    }
}

async fn register(
    State(state): State<PoolApiState>,
    source: Source,
    headers: HeaderMap,
    AppJson(request): AppJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (pool, source) = (state.pool.clone(), source_ip(&state, source, &headers));
    let presented = bearer(&headers).map(str::to_owned);
    // Run to its end though the client hang up (or the request time out):
    // cut between binding the worker id and storing the session, the id
    // would stay bound to a token nobody holds, and never be renamed.
    let registering = async move { pool.register(request, source, presented.as_deref(), now_ms()).await };
    Ok(AppJson(to_the_end("a registration", registering).await??))
}

#[derive(Debug, Deserialize)]
struct JobQuery {
    /// Long-poll: wait up to this many seconds for a newer job.
    wait: Option<u64>,
}

async fn job(
    State(state): State<PoolApiState>,
    source: Source,
    headers: HeaderMap,
    AppQuery(query): AppQuery<JobQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let session_id = session_of(&state, &headers).await?;
    if let Some(wait) = query.wait {
        state.pool.admit(&session_id, now_ms())?;
        // Refused at once, not after the wait.
        state.pool.refuse_if_behind(now_ms())?;
        let source = source_ip(&state, source, &headers);
        state.pool.wait_for_new_template(&session_id, source, Duration::from_secs(wait)).await;
    }
    let started = Instant::now();
    let job = state.pool.job_for(&session_id, now_ms()).await?;
    state.pool.record_job_latency(started.elapsed());
    Ok(AppJson(job))
}

async fn share(
    State(state): State<PoolApiState>,
    source: Source,
    headers: HeaderMap,
    AppJson(request): AppJson<ShareRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let session_id = session_of(&state, &headers).await?;
    let response = state.pool.judge_share(session_id, source_ip(&state, source, &headers), request, now_ms()).await?;
    state.pool.record_share_latency(started.elapsed());
    Ok(AppJson(response))
}

async fn stats(State(state): State<PoolApiState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let snapshot = state.pool.stats_snapshot(now_ms()).await?;
    // Gzipped once where the snapshot is built; sent as it is to clients
    // that take gzip (browsers), plain to the rest.
    let (body, encoding) =
        if accepts_gzip(&headers) { (snapshot.gzip.clone(), Some("gzip")) } else { (snapshot.json.clone(), None) };
    let mut response =
        ([(header::CONTENT_TYPE, "application/json"), (header::VARY, "accept-encoding")], body).into_response();
    if let Some(encoding) = encoding {
        response.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static(encoding));
    }
    Ok(response)
}

/// Whether `Accept-Encoding` names gzip (or `*`) with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let values = headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok());
    values.flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let weight = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && weight > 0.0
    })
}

/// Lists answer at most this many entries unless `?limit=` says otherwise.
const DEFAULT_LIST_LIMIT: usize = 1000;
/// The most blocks one request may ask for (a block's summary is small).
const MAX_LIST_LIMIT: usize = 10_000;
/// The most payout batches one request may ask for: a batch carries up to
/// 500 outputs, so ten thousand could be hundreds of megabytes.
const MAX_PAYOUT_LIST_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

fn list_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request("bad_query", format!("limit must be 1-{max}"))),
    }
}

async fn blocks(State(state): State<PoolApiState>, AppQuery(query): AppQuery<ListQuery>) -> Result<Response, ApiError> {
    let limit = list_limit(query.limit, MAX_LIST_LIMIT)?;
    public_read(&state, move |pool| async move { Ok(pool.rewards().block_summaries(limit).await?) }).await
}

async fn block_detail(
    State(state): State<PoolApiState>,
    AppPath(height): AppPath<String>,
) -> Result<Response, ApiError> {
    let height: u64 = height.parse().map_err(|_| ApiError::bad_request("bad_height", "height must be a u64"))?;
    public_read(&state, move |pool| async move {
        pool.rewards()
            .block_detail(height)
            .await?
            .ok_or_else(|| ApiError::not_found("unknown_block", format!("the pool found no block at height {height}")))
    })
    .await
}

async fn balance(State(state): State<PoolApiState>, AppPath(wallet): AppPath<String>) -> Result<Response, ApiError> {
    crate::chain::check_address("wallet", &wallet)?;
    public_read(&state, move |pool| async move { Ok(pool.rewards().balance_view(&wallet).await?) }).await
}

#[derive(Debug, Deserialize)]
struct PayoutsQuery {
    wallet: Option<String>,
    /// Batches with ids below this one: the next page of a long history.
    before: Option<u64>,
    limit: Option<usize>,
}

async fn payouts(
    State(state): State<PoolApiState>,
    AppQuery(query): AppQuery<PayoutsQuery>,
) -> Result<Response, ApiError> {
    if let Some(wallet) = &query.wallet {
        crate::chain::check_address("wallet", wallet)?;
    }
    let limit = list_limit(query.limit, MAX_PAYOUT_LIST_LIMIT)?;
    public_read(&state, move |pool| async move {
        Ok(pool.rewards().payout_views(query.wallet.as_deref(), query.before, limit).await?)
    })
    .await
}

/// Runs a public read, and encodes its answer, on a task of its own that
/// holds the read's permit to the end. A client hanging up drops only the
/// wait: the permit is given back when the store's scan and the encoding
/// are done, so no more than `public_reads` of them run at once however
/// often clients hang up (the scans share the blocking threads that fetch
/// templates and submit blocks).
async fn public_read<T, F>(state: &PoolApiState, read: impl FnOnce(Arc<Pool>) -> F) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let permit = state.pool.begin_public_read()?;
    let encoded = encode_holding(permit, read(state.pool.clone())).await?;
    let body = state.pool.hold_public_answer(encoded)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `read`'s answer as JSON, from a task that holds `permit` until both are
/// done, whether or not anyone still waits for it.
async fn encode_holding<P, T, F>(permit: P, read: F) -> Result<Vec<u8>, ApiError>
where
    P: Send + 'static,
    T: Serialize + Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    tokio::spawn(async move {
        let value = read.await?;
        // A list can be megabytes of JSON: encoded off the runtime.
        let encoded = tokio::task::spawn_blocking(move || serde_json::to_vec(&value)).await;
        drop(permit);
        match encoded {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(err)) => Err(ApiError::internal(format!("encoding a public read: {err}"))),
            Err(err) => Err(ApiError::internal(format!("encoding a public read: {err}"))),
        }
    })
    .await
    .map_err(|err| ApiError::internal(format!("a public read: {err}")))?
}

/// Admin: sends a set-aside payout again (once the payee's problem is fixed).
async fn retry_payout(
    State(state): State<PoolApiState>,
    _: Admin,
    AppPath(id): AppPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = payout_id(&id)?;
    let rewards = state.pool.rewards().clone();
    let outcome =
        to_the_end("an operator's payout retry", async move { rewards.retry_set_aside(id, now_ms()).await }).await??;
    set_aside_answer(id, outcome, "sending")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkPaidRequest {
    /// The chain's id of the transfer that paid the batch.
    transfer_id: String,
}

/// Admin: records a set-aside payout as paid, by the transfer the operator
/// found on the chain (nothing is sent).
async fn mark_payout_paid(
    State(state): State<PoolApiState>,
    _: Admin,
    AppPath(id): AppPath<String>,
    AppJson(request): AppJson<MarkPaidRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id = payout_id(&id)?;
    let rewards = state.pool.rewards().clone();
    let outcome = to_the_end("an operator's payout record", async move {
        rewards.mark_set_aside_paid(id, &request.transfer_id, now_ms()).await
    })
    .await??;
    set_aside_answer(id, outcome, "paid")
}

fn payout_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| ApiError::bad_request("bad_id", "a payout id is a u64"))
}

/// Runs `change` (`what` it is, for the log) to its end, though the client
/// hang up (or the request time out) part-way: an operator's change of
/// money, a registration's binding of a worker id.
async fn to_the_end<T: Send + 'static>(
    what: &str,
    change: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(change).await.map_err(|err| ApiError::internal(format!("{what}: {err}")))
}

fn set_aside_answer(id: u64, outcome: SetAsideOutcome, status: &str) -> Result<impl IntoResponse, ApiError> {
    match outcome {
        SetAsideOutcome::Done => Ok(AppJson(serde_json::json!({"id": id, "status": status}))),
        SetAsideOutcome::NotFound => Err(ApiError::not_found("unknown_payout", format!("no payout {id}"))),
        SetAsideOutcome::NotSetAside => {
            Err(ApiError::conflict("not_set_aside", format!("payout {id} is not set aside")))
        }
        SetAsideOutcome::NotKeyConflict => Err(ApiError::conflict(
            "not_key_conflict",
            format!("payout {id} was set aside because the chain refused it: nothing was paid (retry it instead)"),
        )),
        SetAsideOutcome::TransferNotUnderKey => Err(ApiError::conflict(
            "transfer_not_under_key",
            format!(
                "the chain holds no transfer of that id under payout {id}'s key (its reason names the one it holds)"
            ),
        )),
        SetAsideOutcome::BadTransferId => Err(ApiError::bad_request(
            "bad_transfer_id",
            "a transfer id is 1-128 visible ASCII characters (the chain's id of the transfer)",
        )),
    }
}

async fn worker(
    State(state): State<PoolApiState>,
    AppPath(id): AppPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = state.pool.stats_snapshot(now_ms()).await?;
    let worker = snapshot.stats.workers.iter().find(|w| w.worker_id == id).cloned();
    worker.map(AppJson).ok_or_else(|| ApiError::not_found("unknown_worker", format!("no active worker {id:?}")))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    range: Option<String>,
}

/// The pool's figures over time (`range`: `10m`, `1h` or `24h`, default `1h`).
async fn history(
    State(state): State<PoolApiState>,
    AppQuery(query): AppQuery<HistoryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let range = HistoryRange::parse(query.range.as_deref().unwrap_or("1h"))
        .ok_or_else(|| ApiError::bad_request("bad_query", "range must be 10m, 1h or 24h"))?;
    Ok(AppJson(state.pool.history().pool(range, now_ms())))
}

async fn worker_history(
    State(state): State<PoolApiState>,
    AppPath(id): AppPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .pool
        .history()
        .worker(&id)
        .map(AppJson)
        .ok_or_else(|| ApiError::not_found("unknown_worker", format!("no active worker {id:?}")))
}

async fn configure(
    State(state): State<PoolApiState>,
    _: Admin,
    AppJson(request): AppJson<ConfigureRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(PoolSettingsView::from(&state.pool.configure(request).await?)))
}

async fn start(State(state): State<PoolApiState>, _: Admin) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(PoolSettingsView::from(&state.pool.set_running(true).await?)))
}

async fn stop(State(state): State<PoolApiState>, _: Admin) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(PoolSettingsView::from(&state.pool.set_running(false).await?)))
}

/// `GET /healthz`: 200 with the template's height while this coordinator
/// can serve miners, else 503 `not_ready` saying why (no I/O: free).
async fn healthz(State(state): State<PoolApiState>) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(state.pool.readiness(now_ms())?))
}

async fn mode(State(state): State<PoolApiState>, _: Admin) -> Result<impl IntoResponse, ApiError> {
    let settings = state.pool.settings();
    Ok(AppJson(ModeResponse { running: settings.running, settings: PoolSettingsView::from(&settings) }))
}

async fn bans(State(state): State<PoolApiState>, _: Admin) -> Result<impl IntoResponse, ApiError> {
    Ok(AppJson(BansResponse { bans: state.pool.bans(now_ms()) }))
}

/// `DELETE /pool/bans/{id}`: `id` is a session id, or a worker id (all its sessions).
async fn unban(
    State(state): State<PoolApiState>,
    _: Admin,
    AppPath(id): AppPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    match state.pool.unban(&id).await? {
        0 => Err(ApiError::not_found("not_banned", format!("{id:?} is not banned"))),
        sessions => Ok(AppJson(UnbanResponse { unbanned: id, sessions })),
    }
}

#[cfg(test)]
mod gzip_tests {
    use super::*;

    #[test]
    fn gzip_is_taken_where_it_is_named_with_a_weight() {
        let table = [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("*", true),
            ("GZIP", true),
            ("identity", false),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("deflate, *;q=0", false),
            ("", false),
        ];
        for (value, taken) in table {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            assert_eq!(accepts_gzip(&headers), taken, "{value:?}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}

#[cfg(test)]
mod public_read_tests {
    use super::super::public_reads::PublicReads;
    use super::*;

    /// A client hanging up mid-read must not free the read's permit while
    /// the read still runs: that is what bounds the scans running at once.
    #[tokio::test]
    async fn a_public_read_holds_its_permit_after_the_client_hangs_up() {
        let reads = PublicReads::new(1);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let permit = reads.try_begin().unwrap();
        let request = tokio::spawn(encode_holding(permit, async move {
            finished.await.ok();
            Ok::<_, ApiError>(vec![7u8])
        }));
        tokio::task::yield_now().await; // the read starts
        request.abort(); // the client hangs up
        assert!(request.await.unwrap_err().is_cancelled());
        assert!(reads.try_begin().is_err(), "the read still runs, so its permit is still held");
        finish.send(()).unwrap();
        for _ in 0..200 {
            if reads.try_begin().is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the permit was not given back once the read ended");
    }

    #[tokio::test]
    async fn a_public_read_answers_its_json() {
        let reads = PublicReads::new(1);
        let bytes = encode_holding(reads.try_begin().unwrap(), async { Ok(vec![1u64, 2]) }).await.unwrap();
        assert_eq!(bytes, b"[1,2]");
        let err = encode_holding(reads.try_begin().unwrap(), async {
            Err::<u8, _>(ApiError::not_found("unknown_block", "none"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.into_response().status(), StatusCode::NOT_FOUND);
        assert!(reads.try_begin().is_ok());
    }
}
