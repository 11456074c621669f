//! The pool session: where work comes from and where found nonces go.
//!
//! Pool mode long-polls the active pool for jobs (not after a failure, until
//! the pool answers again: a hung pool is failed over within one plain
//! request's timeout), hands them to the devices, and submits shares with
//! the miner's measured hash rate. A
//! long-poll held until a new job is followed at once; a pool that answers
//! at once is asked again at a pace (`job_pace`). A watchdog stops hashing
//! work older than several block times. (Solo mode is `solo_session`.)
//! Nothing here ends the process except what a person must fix: a refused
//! wallet, once no pool is left to mine at. Banned by every pool (by some,
//! and refused by the rest), the miner stops hashing and waits the soonest
//! ban out, then mines there again; with `--exit-on-ban` it ends instead.
//!
//! - this module: the session's state (`PoolContext`), registration, the
//!   job loop, and the owner's pool switch (`pool_switch`).
//! - `pool_failover`: which pool to mine at. Network errors and 5xx back off
//!   exponentially with jitter, growing with each round of the failover
//!   list while every pool is down; 429/503 wait the Retry-After (1 s to a
//!   minute, plus up to a quarter; the backoff once that is longer); two failures in a row of either kind (or unusable jobs) fail
//!   over to the next pool that has neither banned nor refused the miner,
//!   and the primary pool (the first, or one the owner switched to through
//!   the local API) is tried again every `failback` interval.
//! - `share_submission`: sending finds. Shares that cannot be sent wait in
//!   a bounded queue and are resubmitted while their job's height is still
//!   current; a block is sent again at once (after the pool's Retry-After
//!   or a backoff) rather than wait there.

mod pool_failover;
mod share_submission;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::found_submitter::{drain_found, submit_found};
use super::job_pace::{JobPace, MIN_JOB_POLL};
use super::miner_status::MinerStatus;
use super::pool_client::{ApiFailure, PoolClient};
use super::pool_switch::{PoolSwitch, MAX_POOLS};
use super::work_dispatch::{FoundReceiver, Work, WorkDispatch};
use pool_failover::Failures;
use share_submission::WaitingShare;

/// The longest a failback check of the primary pool may take: a healthy
/// pool answers a registration and a job request in well under a second.
const FAILBACK_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest block time a pool's jobs may announce (a day).
const MAX_BLOCK_TIME_SECS: u64 = 86_400;
/// A failback check on its task: the primary pool it asks about, and
/// whether that pool is back. Dropped (the session ends, the miner fails
/// over), the check stops: it starts no registration with the primary
/// after (one under way goes on, on its own task: see `primary_is_back`).
struct FailbackCheck {
    primary: usize,
    task: tokio::task::JoinHandle<bool>,
}

impl Drop for FailbackCheck {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The primary pool of `check`, once it has ended and found it back (then
/// `check` is cleared; also when not back). Pending while there is none:
/// a `select!` branch beside a long-poll. (Cancel-safe: the check stays
/// until it has ended.)
async fn check_ended(check: &mut Option<FailbackCheck>) -> Option<usize> {
    let Some(running) = check.as_mut() else { return std::future::pending().await };
    let back = (&mut running.task).await.unwrap_or(false);
    let primary = running.primary;
    *check = None;
    back.then_some(primary)
}

/// Why mining stopped for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionEnd {
    /// Every pool (or the node, solo) refused this miner; the message says why.
    #[error("{0}")]
    Refused(String),
    #[error("banned by {url} for {secs} more seconds")]
    Banned { url: String, secs: u64 },
}

pub struct PoolSession {
    pub pools: Vec<PoolClient>,
    pub wallet: String,
    pub worker_id: String,
    pub worker_name: String,
    pub long_poll: Duration,
    pub failback: Duration,
    /// Banned by every pool: end the session (exit code 4) rather than
    /// stop hashing and wait the soonest ban out.
    pub exit_on_ban: bool,
}
struct PoolContext {
    session: PoolSession,
    /// The failover list: the configured pools, then any the owner added
    /// through the local API (indexes never change: work names its pool by one).
    pools: Mutex<Vec<Arc<PoolClient>>>,
    /// The pool failed back to (the first configured, or the owner's choice).
    primary: AtomicUsize,
    switch: Arc<PoolSwitch>,
    tokens: Mutex<Vec<Option<String>>>,
    refused: Mutex<Vec<Option<String>>>,
    /// Until when each pool has banned this miner.
    banned_until: Mutex<Vec<Option<Instant>>>,
    active: AtomicUsize,
    pending: Mutex<VecDeque<WaitingShare>>,
    /// Resubmissions of what waited for a pool (`flush_pending`): a stop
    /// waits for them within its grace, as for the shares found.
    resubmissions: Mutex<tokio::task::JoinSet<()>>,
    /// Pools whose waiting shares go again once their short Retry-After
    /// has passed (`flush_after`).
    flushes_due: Mutex<std::collections::HashSet<usize>>,
    /// The session is stopping (`finish_waiting`): no more waves.
    stopping: std::sync::atomic::AtomicBool,
    dispatch: Arc<WorkDispatch>,
    status: Arc<MinerStatus>,
    block_time: Mutex<Duration>,
    /// When the pool last answered a job request (with a new job or the
    /// same one): the stale-work watchdog counts from it.
    job_answered: Mutex<Instant>,
    /// Cuts a long-poll short: the pool announced a new share difficulty.
    refresh: Notify,
    /// One registration at a time with each pool (`token`), by pool index:
    /// a primary slow to register (a failback check) holds up no other.
    registering: Vec<tokio::sync::Semaphore>,
}

impl PoolContext {
    fn new(
        mut session: PoolSession,
        switch: Arc<PoolSwitch>,
        dispatch: Arc<WorkDispatch>,
        status: Arc<MinerStatus>,
    ) -> Arc<Self> {
        let pools: Vec<Arc<PoolClient>> = std::mem::take(&mut session.pools).into_iter().map(Arc::new).collect();
        let count = pools.len();
        switch.set_listed(pools.iter().map(|p| p.url.clone()).collect());
        Arc::new(PoolContext {
            session,
            pools: Mutex::new(pools),
            primary: AtomicUsize::new(0),
            switch,
            tokens: Mutex::new(vec![None; count]),
            refused: Mutex::new(vec![None; count]),
            banned_until: Mutex::new(vec![None; count]),
            active: AtomicUsize::new(0),
            pending: Mutex::new(VecDeque::new()),
            resubmissions: Mutex::new(tokio::task::JoinSet::new()),
            flushes_due: Mutex::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            dispatch,
            status,
            block_time: Mutex::new(Duration::from_secs(30)),
            job_answered: Mutex::new(Instant::now()),
            refresh: Notify::new(),
            // (Pools are added through the local API up to MAX_POOLS.)
            registering: (0..count.max(MAX_POOLS)).map(|_| tokio::sync::Semaphore::new(1)).collect(),
        })
    }

    fn pool(&self, index: usize) -> Arc<PoolClient> {
        self.pools.lock().expect("pools lock")[index].clone()
    }

    fn pool_count(&self) -> usize {
        self.pools.lock().expect("pools lock").len()
    }

    /// Shows the failover list and which pools are primary and in use.
    fn publish_pools(&self) {
        let urls: Vec<String> = self.pools.lock().expect("pools lock").iter().map(|p| p.url.clone()).collect();
        let (primary, active) = (self.primary.load(Ordering::Relaxed), self.active.load(Ordering::Relaxed));
        self.status.connection(|c| {
            c.url = urls[active].clone();
            c.pools = urls;
            c.primary = primary;
            c.active = active;
        });
    }

    /// The owner asked for another pool: make it the primary (adding it to
    /// the failover list when new) and go there now.
    fn take_switch_request(&self) -> bool {
        let Some(requested) = self.switch.take() else { return false };
        let index = {
            let mut pools = self.pools.lock().expect("pools lock");
            match pools.iter().position(|p| p.url == requested.url) {
                Some(index) => index,
                None if pools.len() >= MAX_POOLS => {
                    tracing::warn!("not switching to {}: the failover list is full ({MAX_POOLS})", requested.url);
                    return false;
                }
                None => {
                    pools.push(Arc::new(requested));
                    self.tokens.lock().expect("tokens lock").push(None);
                    self.refused.lock().expect("refused lock").push(None);
                    self.banned_until.lock().expect("bans lock").push(None);
                    pools.len() - 1
                }
            }
        };
        self.refused.lock().expect("refused lock")[index] = None;
        self.primary.store(index, Ordering::Relaxed);
        self.switch_to(index, "asked to by the owner");
        // Nothing of the previous pool's state stands for the new one.
        self.status.connection(|c| {
            c.connected = false;
            c.last_error = None;
            c.retry_in_secs = None;
            c.height = None;
            c.share_difficulty = None;
            c.network_difficulty = None;
            c.job_id = None;
        });
        self.publish_pools();
        true
    }

    /// Waits `wait`, or less if the owner asks for another pool meanwhile;
    /// false when cut short so.
    async fn pause(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.switch.notify.notified() => false,
        }
    }

    async fn token(&self, pool: usize) -> Result<String, ApiFailure> {
        if let Some(token) = self.tokens.lock().expect("tokens lock")[pool].clone() {
            return Ok(token);
        }
        // One registration at a time: shares sent at once that all met a
        // 401 must not each open a session (and spend the address's
        // registration budget); those behind take the token it got.
        let turn = self.registering.get(pool).ok_or(ApiFailure::Unauthorized)?;
        let _turn = turn.acquire().await.map_err(|_| ApiFailure::Unauthorized)?;
        if let Some(token) = self.tokens.lock().expect("tokens lock")[pool].clone() {
            return Ok(token);
        }
        let s = &self.session;
        let client = self.pool(pool);
        let registered = match client.register(&s.worker_id, &s.wallet, &s.worker_name).await {
            // A 401 to a registration is not the pool forgetting a token
            // (there is none yet): something in front of it wants a login.
            Err(ApiFailure::Unauthorized) => {
                return Err(ApiFailure::Unavailable(format!(
                    "{} answered a registration with 401 (a proxy that wants a login?)",
                    client.url
                )))
            }
            answer => answer?,
        };
        tracing::info!(
            "registered with {} (pool fee {:.2}%, foundation fee {:.2}%)",
            client.url,
            f64::from(registered.pool_fee_bps) / 100.0,
            f64::from(registered.foundation_fee_bps) / 100.0
        );
        self.tokens.lock().expect("tokens lock")[pool] = Some(registered.worker_token.clone());
        Ok(registered.worker_token)
    }

    /// Forgets `pool`'s token after it answered 401 to `used`, unless a
    /// newer one has replaced it meanwhile.
    fn forget_token(&self, pool: usize, used: &str) {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        if tokens[pool].as_deref() == Some(used) {
            tokens[pool] = None;
        }
    }

    fn switch_to(&self, pool: usize, why: &str) {
        let previous = self.active.swap(pool, Ordering::Relaxed);
        if previous != pool {
            tracing::warn!("switching from {} to {}: {why}", self.pool(previous).url, self.pool(pool).url);
            // The last pool's error is not this one's.
            self.status.connection(|c| {
                c.connected = false;
                c.last_error = None;
                c.retry_in_secs = None;
            });
        }
    }
    /// Goes back to `primary` (a failback check's answer: the primary pool
    /// is back) while it is still the primary and not the pool mined at;
    /// returns whether it did.
    fn fail_back(&self, primary: Option<usize>) -> bool {
        let still_primary_and_away =
            |&p: &usize| p == self.primary.load(Ordering::Relaxed) && p != self.active.load(Ordering::Relaxed);
        let Some(primary) = primary.filter(still_primary_and_away) else { return false };
        self.switch_to(primary, "the primary pool is back");
        true
    }

    fn stop_stale_work(&self) {
        let limit = self.block_time.lock().expect("block time lock").saturating_mul(4);
        if let Some(work) = self.dispatch.current_work() {
            let answered = *self.job_answered.lock().expect("job answered lock");
            if work.received.max(answered).elapsed() > limit {
                tracing::warn!(
                    "no new job for {}s (4 block times): stopping stale work until the pool answers",
                    limit.as_secs()
                );
                self.dispatch.set_work(None);
            }
        }
    }
    async fn jobs(self: &Arc<Self>) -> Result<(), SessionEnd> {
        let mut failures = Failures::default();
        let mut last_failback = Instant::now();
        // A failover starts the wait for the next look at the primary: the
        // pool that just failed is not asked again at once.
        let mut mined_at = self.active.load(Ordering::Relaxed);
        let mut pace = JobPace::new(Instant::now());
        // A share answer's "vardiff moved" that brought back the job being
        // mined is not acted on again for a while: a pool whose answers
        // keep naming another difficulty (ours past its job cap on one
        // template, a bridge with another scale) would get a job request
        // for every share.
        let mut refresh_quiet_until: Option<Instant> = None;
        // A request failed: the next does not long-poll, so a hung pool (it
        // takes connections, answers nothing) is found out within one plain
        // request's timeout, not a second long-poll's.
        let mut retry_plain = false;
        // Long-polls failed at this pool since one was answered: while any
        // did, plain answers do not clear the failures, so a pool whose
        // long-polls keep failing (a proxy cutting held requests short) is
        // failed over as before.
        let mut long_polls_failed = 0u32;
        // The failback check under way, of the primary pool it asks about.
        let mut failback_check: Option<FailbackCheck> = None;
        'jobs: loop {
            self.stop_stale_work();
            if self.take_switch_request() {
                failures = Failures::default();
                (retry_plain, long_polls_failed) = (false, 0);
            }
            let active = self.active.load(Ordering::Relaxed);
            let primary = self.primary.load(Ordering::Relaxed);
            if active != mined_at {
                mined_at = active;
                last_failback = Instant::now();
                long_polls_failed = 0;
                // Its answer is of before the move: the pool just left is
                // not asked again at once.
                failback_check = None;
            }
            // A check that ended while no long-poll was open.
            if failback_check.as_ref().is_some_and(|check| check.task.is_finished())
                && self.fail_back(check_ended(&mut failback_check).await)
            {
                failures = Failures::default();
                continue;
            }
            if active != primary && failback_check.is_none() && last_failback.elapsed() >= self.session.failback {
                last_failback = Instant::now();
                // On a task of its own, beside the long-poll at the pool
                // mined at: a primary that takes connections and never
                // answers must not hold back that pool's new blocks. (Bounded
                // all the same: one check at a time.)
                let ctx = self.clone();
                let check = tokio::spawn(async move {
                    tokio::time::timeout(FAILBACK_PROBE_TIMEOUT, ctx.primary_is_back(primary)).await == Ok(true)
                });
                failback_check = Some(FailbackCheck { primary, task: check });
            }
            let api = self.pool(active);
            self.status.connection(|c| c.mode = "pool".into());
            self.publish_pools();
            let token = match self.token(active).await {
                Ok(token) => token,
                Err(failure) => {
                    self.on_failure(active, failure, &mut failures).await?;
                    continue;
                }
            };
            let mining_here = self.dispatch.current_work().is_some_and(|w| w.pool == Some(active));
            let mut wait = self.session.long_poll;
            if active != primary {
                wait = wait.min(self.session.failback);
            }
            let asked = Instant::now();
            let quiet_until = refresh_quiet_until;
            let refresh = async move {
                if let Some(until) = quiet_until {
                    tokio::time::sleep_until(until.into()).await;
                }
                self.refresh.notified().await;
            };
            // (`long_poll_ok`: a long-poll was open, answered or cut short
            // by a vardiff refresh: either way not failing.)
            let (answer, long_polled, long_poll_ok) = if mining_here && !retry_plain {
                let long_poll = api.job(&token, Some(wait));
                tokio::pin!(long_poll, refresh);
                loop {
                    tokio::select! {
                        answer = &mut long_poll => break (answer, true, true),
                        () = &mut refresh => break (api.job(&token, None).await, false, true),
                        () = self.switch.notify.notified() => continue 'jobs,
                        back = check_ended(&mut failback_check) => {
                            if self.fail_back(back) {
                                failures = Failures::default();
                                continue 'jobs;
                            }
                            // Not back: the long-poll goes on.
                        }
                    }
                }
            } else {
                (api.job(&token, None).await, false, false)
            };
            let job = match answer {
                Ok(job) => job,
                Err(failure) => {
                    if failure == ApiFailure::Unauthorized {
                        self.forget_token(active, &token);
                    }
                    retry_plain = true;
                    // (What a proxy cutting held requests short answers; a
                    // 401, a ban or a refusal are the pool's word.)
                    long_polls_failed += u32::from(long_polled && failure.is_transient());
                    self.on_failure(active, failure, &mut failures).await?;
                    continue;
                }
            };
            // The pool answers a repeated request with the same job while
            // it still fits: keep hashing where we are.
            let same_job = self.dispatch.current_work().is_some_and(|w| w.pool == Some(active) && w.id == job.job_id);
            let work = if same_job { None } else { Some(Work::from_pool_job(&job, active)) };
            if let Some(Err(message)) = work {
                // Not an answer to mine on: the stale-work watchdog keeps
                // counting, and a pool sending only these is failed over.
                let failure = ApiFailure::Unavailable(format!("an unusable job: {message}"));
                tracing::error!("{}: {failure}", api.url);
                retry_plain = true;
                self.on_failure(active, failure, &mut failures).await?;
                continue;
            }
            retry_plain = false;
            if long_poll_ok {
                long_polls_failed = 0;
            }
            if long_polls_failed == 0 {
                failures = Failures::default();
            }
            self.refused.lock().expect("refused lock")[active] = None;
            // Any usable answer, the same job included (a pool back after a
            // blip, one that forgot the session): connected again.
            self.status.connection(|c| {
                c.connected = true;
                c.last_error = None;
                c.retry_in_secs = None;
            });
            if job.block_time_secs > 0 {
                // Bounded: the watchdog multiplies it.
                let secs = job.block_time_secs.min(MAX_BLOCK_TIME_SECS);
                *self.block_time.lock().expect("block time lock") = Duration::from_secs(secs);
            }
            *self.job_answered.lock().expect("job answered lock") = Instant::now();
            let Some(Ok(work)) = work else {
                // Back after an outage on the same job: what waited goes now.
                if !self.pending.lock().expect("pending lock").is_empty() {
                    self.flush_pending(job.height, active);
                }
                // A pool that did not hold a long-poll (past its limit, or a
                // proxy's) is not asked again at once; after a request that
                // did not ask it to wait, the long-poll goes now (pausing
                // there would leave a new block unheard).
                if long_polled {
                    self.pause(JobPace::after_same_job(wait, asked.elapsed())).await;
                } else {
                    refresh_quiet_until = Some(Instant::now() + MIN_JOB_POLL);
                }
                continue;
            };
            let changed_height = self.dispatch.current_work().is_none_or(|w| w.height != job.height);
            if changed_height {
                tracing::info!("new job at height {} (share difficulty {})", job.height, job.share_difficulty);
            }
            self.status.connection(|c| {
                c.height = Some(job.height);
                c.share_difficulty = Some(job.share_difficulty);
                c.network_difficulty = Some(job.network_difficulty);
                c.job_id = Some(job.job_id.clone());
            });
            self.dispatch.set_work(Some(Arc::new(work)));
            // A "vardiff moved" stored for the job just replaced is answered
            // by this one: taken, so it does not cut the next long-poll.
            let stale_refresh = self.refresh.notified();
            tokio::pin!(stale_refresh);
            stale_refresh.as_mut().enable();
            self.flush_pending(job.height, active);
            refresh_quiet_until = None;
            // (Only a long-poll can have been held: any other answer is "at once".)
            let answered_in = if long_polled { asked.elapsed() } else { Duration::ZERO };
            self.pause(pace.after_new_job(Instant::now(), answered_in)).await;
        }
    }
}

/// Runs pool mode until a fatal end or `shutdown`; found nonces arrive on
/// `found`. On `shutdown` the shares already found (and those waiting for a
/// pool) are sent before it returns, for at most 5 s (`SHUTDOWN_GRACE`).
pub async fn run_pool(
    session: PoolSession,
    switch: Arc<PoolSwitch>,
    dispatch: Arc<WorkDispatch>,
    status: Arc<MinerStatus>,
    found: FoundReceiver,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SessionEnd> {
    let ctx = PoolContext::new(session, switch, dispatch, status);
    let drain = Arc::new(Notify::new());
    let submitter = {
        let (ctx, drain) = (ctx.clone(), drain.clone());
        tokio::spawn(async move {
            submit_found(found, drain, |work, f| {
                let ctx = ctx.clone();
                async move { ctx.submit(work, f, false).await }
            })
            .await;
            ctx.finish_waiting().await;
        })
    };
    let result = tokio::select! {
        result = ctx.jobs() => result,
        () = shutdown => Ok(()),
    };
    if result.is_ok() {
        tracing::info!("stopping: sending the shares already found");
        drain_found(&ctx.dispatch, &drain, submitter).await;
    } else {
        submitter.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the loopback pool of [`registering_pool`] was asked.
    #[derive(Default)]
    struct PoolCalls {
        registrations: std::sync::atomic::AtomicU64,
        /// Shares credited (each after a slow 300 ms); a nonce credited
        /// before is answered `already_credited`.
        shares: std::sync::atomic::AtomicU64,
        credited: Mutex<std::collections::HashSet<u64>>,
        /// Share requests still to be answered 429, Retry-After 1 s.
        busy: std::sync::atomic::AtomicU64,
        /// Share requests still to be answered 503 `storage_unavailable`,
        /// Retry-After 1 s, after their credit (the store failed to confirm
        /// it) or before it.
        fail_after_credit: std::sync::atomic::AtomicU64,
        fail_before_credit: std::sync::atomic::AtomicU64,
    }

    /// A pool context on a pool at loopback that registers (slowly: every
    /// caller is waiting by then) and takes shares (slowly too), counting
    /// both; it has no job route.
    async fn registering_pool() -> (Arc<PoolContext>, Arc<PoolCalls>, tokio::task::JoinHandle<()>) {
        registering_pool_then(&[]).await
    }

    /// As [`registering_pool`], with the pools at `others` after it in the
    /// failover list.
    async fn registering_pool_then(others: &[&str]) -> (Arc<PoolContext>, Arc<PoolCalls>, tokio::task::JoinHandle<()>) {
        let calls = Arc::new(PoolCalls::default());
        let shares = calls.clone();
        let app = axum::Router::new()
            .route(
                "/pool/share",
                axum::routing::post(
                    move |axum::Json(share): axum::Json<vision_protocol::pool::ShareRequest>| async move {
                        use axum::response::IntoResponse;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let once = |n: &std::sync::atomic::AtomicU64| {
                            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
                        };
                        if once(&shares.busy) {
                            let busy = serde_json::json!({"error": "rate_limited", "message": "too many shares"});
                            let code = axum::http::StatusCode::TOO_MANY_REQUESTS;
                            return (code, [("retry-after", "1")], axum::Json(busy)).into_response();
                        }
                        let failed = || {
                            let failed = serde_json::json!({"error": "storage_unavailable", "message": "flush failed"});
                            let code = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                            (code, [("retry-after", "1")], axum::Json(failed)).into_response()
                        };
                        if once(&shares.fail_before_credit) {
                            return failed();
                        }
                        let credited_before = !shares.credited.lock().unwrap().insert(share.nonce);
                        if !credited_before {
                            shares.shares.fetch_add(1, Ordering::SeqCst);
                        }
                        if once(&shares.fail_after_credit) {
                            return failed();
                        }
                        axum::Json(vision_protocol::pool::ShareResponse {
                            accepted: true,
                            is_block: false,
                            reason: credited_before.then(|| "already_credited".to_string()),
                            share_difficulty: 1,
                            block_hash: None,
                            block_status: None,
                            block_reason: None,
                        })
                        .into_response()
                    },
                ),
            )
            .route(
                "/pool/register",
                axum::routing::post({
                    let calls = calls.clone();
                    move || {
                        let registrations = &calls.registrations;
                        let n = registrations.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            axum::Json(vision_protocol::pool::RegisterResponse {
                                worker_id: "land1w.rig".into(),
                                worker_token: format!("token-{n}"),
                                session_id: format!("s{n}"),
                                worker_name: None,
                                pool_fee_bps: 0,
                                foundation_fee_bps: 0,
                                foundation_address: String::new(),
                                pool_name: "test".into(),
                            })
                        }
                    }
                }),
            );
        let (url, server) = serve(app).await;
        let urls: Vec<&str> = std::iter::once(url.as_str()).chain(others.iter().copied()).collect();
        (context_of(&urls), calls, server)
    }

    /// `app` served on loopback: its URL, and the server's task.
    async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }

    /// A pool context of the pools at `urls`, no device.
    fn context_of(urls: &[&str]) -> Arc<PoolContext> {
        let session = PoolSession {
            pools: urls.iter().map(|url| PoolClient::new(url, None).unwrap()).collect(),
            wallet: "land1w".into(),
            worker_id: "land1w.rig".into(),
            worker_name: "rig".into(),
            long_poll: Duration::from_secs(1),
            failback: Duration::from_secs(60),
            exit_on_ban: false,
        };
        let (found, _found_rx) = super::super::work_dispatch::found_channel();
        let dispatch = WorkDispatch::start(Vec::new(), found);
        PoolContext::new(session, Arc::new(PoolSwitch::new(None)), dispatch, Arc::new(MinerStatus::new()))
    }

    /// After a switch the status shows no error of the pool left behind
    /// (it showed the new pool's URL with the old pool's error).
    #[tokio::test]
    async fn a_switch_forgets_the_last_pools_error() {
        let ctx = context_of(&["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        ctx.status.connection(|c| {
            c.last_error = Some("connection refused".into());
            c.retry_in_secs = Some(3);
        });
        ctx.switch_to(0, "no move");
        assert_eq!(ctx.status.connection(|c| c.retry_in_secs), Some(3), "the same pool keeps its error");
        ctx.switch_to(1, "failover");
        assert_eq!(ctx.status.connection(|c| (c.last_error.clone(), c.retry_in_secs)), (None, None));
        ctx.dispatch.stop();
    }

    /// A primary pool that refused this miner is not asked again by the
    /// failback check (it would register there every interval, forever)
    /// until the refusal is cleared (the owner's switch).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_primary_is_not_asked_by_the_failback_check() {
        let (ctx, calls, server) = registering_pool().await;
        let registrations = &calls.registrations;
        ctx.refused.lock().unwrap()[0] = Some("bad_wallet".into());
        assert!(!ctx.primary_is_back(0).await);
        assert_eq!(registrations.load(Ordering::SeqCst), 0, "not asked");
        ctx.refused.lock().unwrap()[0] = None;
        // (It registers, then finds no job route: not back.)
        assert!(!ctx.primary_is_back(0).await);
        assert_eq!(registrations.load(Ordering::SeqCst), 1, "asked once the refusal is cleared");
        ctx.dispatch.stop();
        server.abort();
    }

    /// A failback check finding a registration with the primary still under
    /// way (a silent primary takes its whole timeout, past the check's
    /// bound) does not queue another behind it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failback_check_does_not_queue_a_registration_behind_one_under_way() {
        let (ctx, calls, server) = registering_pool().await;
        let registering = {
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.token(0).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ctx.primary_is_back(0).await, "not back while registering");
        // (It did not wait for that registration: one would, in its turn.)
        assert!(!registering.is_finished(), "answered at once");
        registering.await.unwrap().unwrap();
        assert_eq!(calls.registrations.load(Ordering::SeqCst), 1, "one registration, not two");
        ctx.dispatch.stop();
        server.abort();
    }

    /// A stop waits for the resubmissions under way (the shares that waited
    /// for a pool, sent again when it came back): their answers are in
    /// before it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_waits_for_the_resubmissions_under_way() {
        let (ctx, calls, server) = registering_pool().await;
        ctx.pending.lock().unwrap().extend(waiting_shares(0, 3));
        ctx.flush_pending(5, 0);
        assert!(ctx.pending.lock().unwrap().is_empty(), "all under way");
        ctx.finish_waiting().await;
        assert_eq!(calls.shares.load(Ordering::SeqCst), 3, "every resubmission answered before the stop ends");
        assert_eq!(ctx.status.update(|c| c.accepted), 3);
        ctx.dispatch.stop();
        server.abort();
    }

    /// `count` shares found at height 5 on a job of `pool`, waiting.
    fn waiting_shares(pool: usize, count: u64) -> impl Iterator<Item = WaitingShare> {
        let params = visionx::Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..visionx::Params::CONSENSUS };
        let work = Arc::new(Work {
            id: "j".into(),
            height: 5,
            input: Arc::new(visionx::PowInput::new([1; 32], 5, b"waited".to_vec(), params).unwrap()),
            target: visionx::Target(0),
            share_difficulty: 1,
            network_difficulty: u64::MAX,
            nonces: visionx::NonceRange::new(0, 100),
            pool: Some(pool),
            received: std::time::Instant::now(),
        });
        (0..count).map(move |nonce| WaitingShare {
            work: work.clone(),
            found: visionx::Found { nonce, digest: visionx::Digest([0xff; 32]) },
            maybe_credited: false,
            waits: 0,
            due: false,
        })
    }

    /// A pool's answer sends the shares that waited for it, not those of
    /// another pool (down, each would wait out a connection's timeout at
    /// every answer from the pool failed over to): they wait for theirs.
    /// Older shares of any pool are dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_shares_go_when_their_own_pool_answers() {
        let (ctx, calls, server) = registering_pool_then(&["http://127.0.0.1:1"]).await;
        ctx.pending.lock().unwrap().extend(waiting_shares(0, 3).chain(waiting_shares(1, 2)));
        ctx.flush_pending(5, 0);
        assert_eq!(ctx.pending.lock().unwrap().len(), 2, "the other pool's wait");
        assert_eq!(ctx.status.update(|c| c.pending), 2);
        ctx.join_resubmissions().await;
        assert_eq!(calls.shares.load(Ordering::SeqCst), 3, "this pool's shares sent");
        ctx.flush_pending(6, 0);
        assert!(ctx.pending.lock().unwrap().is_empty(), "a later height: the other pool's are stale");
        assert_eq!(ctx.status.update(|c| (c.pending, c.dropped)), (0, 2));
        ctx.dispatch.stop();
        server.abort();
    }

    /// A share that cannot be sent because the pool refused or banned this
    /// miner (its registration answered so) is dropped, not kept to
    /// register there again at every job answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_share_the_pool_will_not_take_is_dropped_not_kept() {
        let app = axum::Router::new().route(
            "/pool/register",
            axum::routing::post(|| async {
                let reason = serde_json::json!({"error": "banned", "message": "banned"});
                (axum::http::StatusCode::FORBIDDEN, [("retry-after", "60")], axum::Json(reason))
            }),
        );
        let (banning, server) = serve(app).await;
        let ctx = context_of(&[&banning]);
        let share = waiting_shares(0, 1).next().unwrap();
        ctx.submit(share.work, share.found, false).await;
        assert!(ctx.pending.lock().unwrap().is_empty(), "not kept");
        assert_eq!(ctx.status.update(|c| c.dropped), 1);
        ctx.dispatch.stop();
        server.abort();
    }

    /// A share the pool answers "too many, retry in 1 s" is sent again
    /// after that wait while its height is current (three times at most),
    /// not held for the pool's next job answer (which, coming with a new
    /// block, dropped it as stale); and it waits in the queue, not in a
    /// found-submitter slot (the submit returns at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_share_the_pool_was_too_busy_for_is_sent_again_after_its_wait() {
        let (ctx, calls, server) = registering_pool().await;
        // Shares waiting for the pool's job answer (not told to wait) stay
        // for it: a wave sends only those told to wait.
        ctx.pending.lock().unwrap().extend(waiting_shares(0, 3));
        for (round, (busy, taken, waiting)) in [(2, 1, 3), (4, 0, 4)].into_iter().enumerate() {
            calls.busy.store(busy, Ordering::SeqCst);
            let taken_before = calls.shares.load(Ordering::SeqCst);
            // (Another nonce than those waiting, and than the last round's.)
            let share = waiting_shares(0, 5).nth(3 + round).unwrap();
            ctx.dispatch.set_work(Some(share.work.clone()));
            let started = std::time::Instant::now();
            ctx.submit(share.work, share.found, false).await;
            assert!(started.elapsed() < Duration::from_millis(900), "the Retry-After not waited out in the slot");
            // Up to three waits of about a second, and the slow pool's answers.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let settled = || {
                calls.busy.load(Ordering::SeqCst) == 0
                    && calls.shares.load(Ordering::SeqCst) - taken_before == taken
                    && ctx.pending.lock().unwrap().len() == waiting
            };
            while !settled() {
                assert!(std::time::Instant::now() < deadline, "busy {busy} times: never settled");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // No fifth try: the share waits for the pool's next job answer.
            tokio::time::sleep(Duration::from_millis(1_800)).await;
            assert!(settled(), "busy {busy} times: sent once too often");
        }
        ctx.dispatch.stop();
        server.abort();
    }

    /// A share the pool credited and then answered 503 `storage_unavailable`
    /// (its store failed to confirm) is counted accepted when its next try
    /// is answered `already_credited`; and a copy of a share waiting while
    /// another copy is counted (a device picked up again found it twice)
    /// is not sent again, so it is not counted twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_share_credited_before_a_503_is_counted_once() {
        let (ctx, calls, server) = registering_pool().await;
        let mut shares = waiting_shares(0, 2);
        let settled = async |nonce: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !calls.credited.lock().unwrap().contains(&nonce) || !ctx.pending.lock().unwrap().is_empty() {
                assert!(std::time::Instant::now() < deadline, "never sent again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ctx.join_resubmissions().await;
        };
        // Credited, answered 503: its next try, `already_credited`, counts it.
        calls.fail_after_credit.store(1, Ordering::SeqCst);
        let share = shares.next().unwrap();
        ctx.dispatch.set_work(Some(share.work.clone()));
        ctx.submit(share.work, share.found, false).await;
        settled(0).await;
        assert_eq!(calls.shares.load(Ordering::SeqCst), 1, "credited once");
        assert_eq!(ctx.status.update(|c| (c.accepted, c.dropped)), (1, 0), "counted once");

        // Answered 503 before its credit, then found again and taken: the
        // copy waiting is not sent (it would come back `already_credited`,
        // and be counted again).
        calls.fail_before_credit.store(1, Ordering::SeqCst);
        let share = shares.next().unwrap();
        ctx.submit(share.work.clone(), share.found, false).await;
        assert_eq!(ctx.pending.lock().unwrap().len(), 1, "the first copy waits");
        ctx.submit(share.work, share.found, false).await;
        settled(1).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        ctx.join_resubmissions().await;
        assert_eq!(ctx.status.update(|c| (c.accepted, c.pending, c.dropped)), (2, 0, 0), "counted once");
        ctx.dispatch.stop();
        server.abort();
    }

    /// Shares sent at once that all meet a 401 register once: the others
    /// take the token that registration got, and a late 401 for the old
    /// token does not throw the new one away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_register_once() {
        let (ctx, calls, server) = registering_pool().await;
        let registrations = &calls.registrations;
        let asking: Vec<_> = (0..8)
            .map(|_| {
                let ctx = ctx.clone();
                tokio::spawn(async move { ctx.token(0).await.unwrap() })
            })
            .collect();
        for asked in asking {
            assert_eq!(asked.await.unwrap(), "token-1");
        }
        assert_eq!(registrations.load(Ordering::SeqCst), 1, "one registration for eight at once");
        ctx.forget_token(0, "token-0");
        assert_eq!(ctx.token(0).await.unwrap(), "token-1", "a 401 for an older token keeps the new one");
        ctx.forget_token(0, "token-1");
        assert_eq!(ctx.token(0).await.unwrap(), "token-2");
        ctx.dispatch.stop();
        server.abort();
    }
}
