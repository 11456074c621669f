//! The pool session: where work comes from and where found nonces go.
//!
//! Pool mode long-polls the active pool for jobs, hands them to the
//! devices, and submits shares with the miner's measured hash rate. Network
//! errors and 5xx back off exponentially with jitter, growing with each
//! round of the failover list while every pool is down; 429/503 wait the
//! Retry-After (1 s to a minute); two failures in a row of either kind (or
//! unusable jobs) fail over to the next pool that has neither banned nor
//! refused the miner, and the primary pool (the first, or one the owner
//! switched to through the local API, `pool_switch`) is tried again every
//! `failback` interval. A long-poll held until a new job is followed at
//! once; a pool that answers at once is asked again at a pace (`job_pace`).
//! Shares that cannot be sent wait in a bounded queue and are resubmitted while their
//! job's height is still current; a block is sent again at once (after the
//! pool's Retry-After or a backoff) rather than wait there. A watchdog stops hashing work older than
//! several block times. (Solo mode is `solo_session`.)
//! Nothing here ends the process except what a person must fix: a refused
//! wallet or a ban, once no pool is left to mine at.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use visionx::{Found, Target};

use super::found_submitter::{drain_found, submit_found};
use super::job_pace::{JobPace, MIN_JOB_POLL};
use super::miner_status::MinerStatus;
use super::pool_client::{ApiFailure, PoolClient};
use super::pool_switch::{PoolSwitch, MAX_POOLS};
use super::retry_policy::{backoff, retry_after, wait_before_retry, MAX_BLOCK_SUBMIT_RETRIES};
use super::work_dispatch::{FoundReceiver, Work, WorkDispatch};

/// The longest a failback check of the primary pool may take: a healthy
/// pool answers a registration and a job request in well under a second.
const FAILBACK_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Why a find was not taken, and whether its request went out at all.
struct SendFailure {
    failure: ApiFailure,
    /// The share request was sent (its answer may be what failed).
    sent: bool,
}

/// A find that could not be sent yet.
struct WaitingShare {
    work: Arc<Work>,
    found: Found,
    /// An earlier try may have been credited with its answer lost.
    maybe_credited: bool,
}

/// Shares kept while no pool answers.
const MAX_PENDING: usize = 1024;
/// Failures in a row on one pool before moving to the next.
const FAILURES_BEFORE_FAILOVER: u32 = 2;
/// The longest ban a pool's Retry-After is taken to mean (a year).
const MAX_BAN_SECS: u64 = 365 * 86_400;
/// The longest block time a pool's jobs may announce (a day).
const MAX_BLOCK_TIME_SECS: u64 = 86_400;

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
}

/// The longest a pool-mode block waits between tries.
const MAX_BLOCK_RETRY_WAIT: Duration = Duration::from_secs(2);

/// Failures since a pool last answered with a job.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Failures {
    /// In a row on the pool in use: [`FAILURES_BEFORE_FAILOVER`] move on.
    on_pool: u32,
    /// In a row on any pool: with every pool down, waits grow with each
    /// round of the failover list rather than staying near a second.
    streak: u32,
    /// The pool in use said 401 (it forgot the session, a restart) and was
    /// registered with again at once; a second 401 is a failure to wait on.
    registered_again: bool,
}

/// What to do after a pool was unavailable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    /// Ask the same pool again after the wait.
    Same(Duration),
    /// Move to the next pool, after the wait (none in the first round).
    Next(Duration),
}

impl Failures {
    /// Whole rounds of a failover list of `pools` that failed.
    fn rounds(&self, pools: usize) -> u32 {
        let pools = u32::try_from(pools.max(1)).unwrap_or(u32::MAX);
        self.streak / FAILURES_BEFORE_FAILOVER.saturating_mul(pools)
    }

    /// Counts one more failure of the pool in use (`asked`: its
    /// `Retry-After`), where another pool is there to move to or not.
    fn unavailable(&mut self, pools: usize, can_move: bool, asked: Option<u64>) -> Retry {
        self.streak = self.streak.saturating_add(1);
        self.on_pool = self.on_pool.saturating_add(1);
        let rounds = self.rounds(pools);
        if can_move && self.on_pool >= FAILURES_BEFORE_FAILOVER {
            self.on_pool = 0;
            return Retry::Next(if rounds == 0 { Duration::ZERO } else { backoff(rounds) });
        }
        let backoff = backoff(self.on_pool + rounds);
        Retry::Same(asked.map_or(backoff, retry_after))
    }
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

    /// Waits `wait`, or less if the owner asks for another pool meanwhile.
    async fn pause(&self, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.switch.notify.notified() => {}
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
        }
    }

    fn queue(&self, work: Arc<Work>, found: Found, maybe_credited: bool) {
        let mut pending = self.pending.lock().expect("pending lock");
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
            self.status.update(|c| c.dropped += 1);
        }
        pending.push_back(WaitingShare { work, found, maybe_credited });
        let n = pending.len();
        self.status.update(|c| c.pending = n);
    }

    /// Sends one find to the pool that issued its job. A share the pool
    /// could not take now waits in the queue for the next job answer; a
    /// find that meets the network difficulty (a block) is sent again here,
    /// after the pool's Retry-After or a backoff, while no job at a later
    /// height has come: held for the next job answer, it would wait out a
    /// long-poll that only a new block (making it stale) may end.
    ///
    /// `maybe_credited`: an earlier try may have been credited with its
    /// answer lost (it timed out, or the pool failed after taking it).
    async fn submit(&self, work: Arc<Work>, found: Found, mut maybe_credited: bool) {
        let Some(pool) = work.pool else { return };
        let is_block = Target::from_difficulty(work.network_difficulty).is_met_by(&found.digest);
        let mut failures = 0u32;
        loop {
            let failure = match self.submit_once(pool, &work, &found, maybe_credited).await {
                Ok(()) => return,
                Err(failure) => failure,
            };
            // A share sent and met by a timeout or a 5xx may have been
            // taken; busy, rate-limited, without our session, never sent
            // (no token) or never connected: not.
            maybe_credited |= failure.sent && matches!(failure.failure, ApiFailure::Unavailable(_));
            let failure = failure.failure;
            let height_current = self.dispatch.current_work().is_none_or(|w| w.height <= work.height);
            let retryable = failure.is_transient() || matches!(failure, ApiFailure::Unauthorized);
            if !is_block || !retryable || !height_current || failures >= MAX_BLOCK_SUBMIT_RETRIES {
                return self.queue(work, found, maybe_credited);
            }
            failures += 1;
            // Short, whatever the pool asks: one request is no load, a
            // block goes stale with the next one, and a stopping miner
            // gets a try or two in within its grace.
            let wait = wait_before_retry(&failure, failures).min(MAX_BLOCK_RETRY_WAIT);
            tracing::warn!("could not submit a block ({failure}); retrying in {:.1}s", wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// One try at sending a find: `Err` with what failed when it should be
    /// sent again (the pool unreachable, busy, or without our session).
    /// `maybe_credited`: an earlier try may have been credited with its
    /// answer lost.
    async fn submit_once(
        &self,
        pool: usize,
        work: &Work,
        found: &Found,
        maybe_credited: bool,
    ) -> Result<(), SendFailure> {
        let token = self.token(pool).await.map_err(|failure| SendFailure { failure, sent: false })?;
        let rate = self.status.meter.rates(None).h60s;
        match self.pool(pool).share(&token, &work.id, found.nonce, &found.digest.to_hex(), rate).await {
            // Credited before: counted then, unless that answer was lost. (A
            // device restarted on the same job, after a pause or a thread
            // change, finds its earlier shares again.)
            Ok(answer)
                if answer.accepted && answer.reason.as_deref() == Some("already_credited") && !maybe_credited =>
            {
                Ok(())
            }
            Ok(answer) if answer.accepted => {
                self.status.update(|c| {
                    c.accepted += 1;
                    if answer.is_block {
                        c.blocks += 1;
                        tracing::info!("block found at height {} (nonce {})", work.height, found.nonce);
                    }
                });
                // Vardiff moved: take the next job now rather than at the end
                // of the long-poll. (Only an answer about the job being mined
                // says so: one about an older job, or another template's
                // cap, would ask for the job already held.)
                let still_mined = self.dispatch.current_work().is_some_and(|w| w.pool == work.pool && w.id == work.id);
                if still_mined && answer.share_difficulty != work.share_difficulty {
                    self.refresh.notify_one();
                }
                Ok(())
            }
            Ok(answer) => {
                let reason = answer.reason.unwrap_or_default();
                tracing::info!("share rejected: {reason}");
                self.status.update(|c| if reason == "stale" { c.stale += 1 } else { c.rejected += 1 });
                Ok(())
            }
            Err(ApiFailure::Unauthorized) => {
                self.forget_token(pool, &token);
                Err(SendFailure { failure: ApiFailure::Unauthorized, sent: true })
            }
            Err(failure) if failure.is_transient() => Err(SendFailure { failure, sent: true }),
            Err(failure) => {
                tracing::warn!("share refused: {failure}");
                self.status.update(|c| c.rejected += 1);
                Ok(())
            }
        }
    }

    /// Resubmits queued shares whose job height is still current; drops the rest.
    fn flush_pending(self: &Arc<Self>, height: u64) {
        let queued: Vec<WaitingShare> = self.pending.lock().expect("pending lock").drain(..).collect();
        self.status.update(|c| c.pending = 0);
        let (current, old): (Vec<_>, Vec<_>) = queued.into_iter().partition(|w| w.work.height >= height);
        if !old.is_empty() {
            self.status.update(|c| c.dropped += old.len() as u64);
        }
        if current.is_empty() {
            return;
        }
        tracing::info!("resubmitting {} shares kept while the pool was unreachable", current.len());
        // A block goes on its own task: its retries must not hold the
        // shares behind it until they are stale.
        let (blocks, shares): (Vec<_>, Vec<_>) = current
            .into_iter()
            .partition(|w| Target::from_difficulty(w.work.network_difficulty).is_met_by(&w.found.digest));
        for waiting in blocks {
            let ctx = self.clone();
            tokio::spawn(async move { ctx.submit(waiting.work, waiting.found, waiting.maybe_credited).await });
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            for waiting in shares {
                ctx.submit(waiting.work, waiting.found, waiting.maybe_credited).await;
            }
        });
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

    /// The pool after `pool` in the failover list that has neither refused
    /// this miner nor banned it (for a while yet), if any.
    fn next_usable(&self, pool: usize) -> Option<usize> {
        let count = self.pool_count();
        let now = Instant::now();
        let refused = self.refused.lock().expect("refused lock");
        let bans = self.banned_until.lock().expect("bans lock");
        (1..count)
            .map(|step| (pool + step) % count)
            .find(|&p| refused[p].is_none() && bans[p].is_none_or(|until| until <= now))
    }

    /// The ban with the most time left, among pools banning the miner now.
    fn longest_ban(&self) -> Option<SessionEnd> {
        let now = Instant::now();
        let bans = self.banned_until.lock().expect("bans lock");
        let (pool, until) = bans.iter().enumerate().filter_map(|(i, b)| b.map(|u| (i, u))).max_by_key(|&(_, u)| u)?;
        let secs = until.checked_duration_since(now)?.as_secs().max(1);
        drop(bans);
        Some(SessionEnd::Banned { url: self.pool(pool).url.clone(), secs })
    }

    /// Reacts to a failure (for a 401, the caller has forgotten the token
    /// that got it); Err ends the session.
    async fn on_failure(&self, pool: usize, failure: ApiFailure, failures: &mut Failures) -> Result<(), SessionEnd> {
        let url = self.pool(pool).url.clone();
        self.status.connection(|c| {
            c.connected = false;
            c.last_error = Some(failure.to_string());
        });
        let (asked, message) = match failure {
            // (The caller forgot the token that got it.) The pool forgot
            // the session (a restart): register again now; again and
            // again, it is a pool to wait for.
            ApiFailure::Unauthorized if !failures.registered_again => {
                failures.registered_again = true;
                return Ok(());
            }
            ApiFailure::Unauthorized => (None, "the pool keeps forgetting this worker".to_string()),
            ApiFailure::Banned { secs } => {
                // (Bounded: an absurd Retry-After must not overflow the clock;
                // at least a second, or a ban of 0 s would be a tight loop.)
                let secs = secs.clamp(1, MAX_BAN_SECS);
                self.banned_until.lock().expect("bans lock")[pool] = Some(Instant::now() + Duration::from_secs(secs));
                match self.next_usable(pool) {
                    Some(next) => {
                        failures.on_pool = 0;
                        self.switch_to(next, &format!("banned for {secs}s"));
                        return Ok(());
                    }
                    // Banned (or refused) everywhere: a person must look (exit code 4).
                    None => return Err(SessionEnd::Banned { url, secs }),
                }
            }
            ApiFailure::Refused { reason, message } => {
                self.refused.lock().expect("refused lock")[pool] = Some(format!("{url}: {reason}: {message}"));
                match self.next_usable(pool) {
                    Some(next) => {
                        failures.on_pool = 0;
                        self.switch_to(next, &format!("refused: {reason}"));
                        return Ok(());
                    }
                    None => {
                        // Some pool banned the miner: that is what to wait out (exit code 4).
                        if let Some(ban) = self.longest_ban() {
                            return Err(ban);
                        }
                        let refused = self.refused.lock().expect("refused lock");
                        let all: Vec<String> = refused.iter().flatten().cloned().collect();
                        return Err(SessionEnd::Refused(format!("every pool refused this miner: {}", all.join("; "))));
                    }
                }
            }
            // A pool that keeps saying "later" (its chain is down, it is
            // stopped) is as good as down: the next pool may have work.
            ApiFailure::RetryAfter { retry_after_secs, message } => (Some(retry_after_secs), message),
            ApiFailure::Unavailable(message) | ApiFailure::Unreachable(message) => (None, message),
        };
        let next = self.next_usable(pool);
        match (failures.unavailable(self.pool_count(), next.is_some(), asked), next) {
            (Retry::Next(wait), Some(next)) => {
                if !wait.is_zero() {
                    tracing::warn!("every pool failed; trying the next in {:.1}s", wait.as_secs_f64());
                    self.status.connection(|c| c.retry_in_secs = Some(wait.as_secs().max(1)));
                    self.pause(wait).await;
                }
                self.switch_to(next, &message);
            }
            (Retry::Same(wait), _) | (Retry::Next(wait), None) => {
                tracing::warn!("{url}: {message}; retrying in {:.1}s", wait.as_secs_f64());
                self.status.connection(|c| c.retry_in_secs = Some(wait.as_secs().max(1)));
                self.pause(wait).await;
            }
        }
        Ok(())
    }

    /// Whether the primary pool, not banning us, answers with work that can
    /// be mined (a failback check).
    async fn primary_is_back(self: &Arc<Self>, primary: usize) -> bool {
        let banned = self.banned_until.lock().expect("bans lock")[primary].is_some_and(|u| u > Instant::now());
        if banned {
            return false;
        }
        // On a task of its own: a slow registration cut short by the
        // check's bound still stores its token for the next check, rather
        // than leave a session at the pool and open another each time.
        let registration = {
            let ctx = self.clone();
            tokio::spawn(async move { ctx.token(primary).await })
        };
        let Ok(Ok(token)) = registration.await else { return false };
        match self.pool(primary).job(&token, None).await {
            Ok(job) => Work::from_pool_job(&job, primary).is_ok(),
            // It forgot us (a restart, an expired session): register afresh
            // at the next check.
            Err(ApiFailure::Unauthorized) => {
                self.forget_token(primary, &token);
                false
            }
            Err(_) => false,
        }
    }

    async fn jobs(self: &Arc<Self>) -> Result<(), SessionEnd> {
        let mut failures = Failures::default();
        let mut last_failback = Instant::now();
        let mut pace = JobPace::new(Instant::now());
        // A share answer's "vardiff moved" that brought back the job being
        // mined is not acted on again for a while: a pool whose answers
        // keep naming another difficulty (ours past its job cap on one
        // template, a bridge with another scale) would get a job request
        // for every share.
        let mut refresh_quiet_until: Option<Instant> = None;
        loop {
            self.stop_stale_work();
            if self.take_switch_request() {
                failures = Failures::default();
            }
            let active = self.active.load(Ordering::Relaxed);
            let primary = self.primary.load(Ordering::Relaxed);
            if active != primary && last_failback.elapsed() >= self.session.failback {
                last_failback = Instant::now();
                // Bounded: no long-poll is open on the pool mined at while
                // the primary is asked, so a primary that takes connections
                // and never answers must not hold back its new blocks.
                let back = tokio::time::timeout(FAILBACK_PROBE_TIMEOUT, self.primary_is_back(primary)).await;
                if back == Ok(true) {
                    self.switch_to(primary, "the primary pool is back");
                    failures = Failures::default();
                    continue;
                }
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
            let (answer, long_polled) = if mining_here {
                tokio::select! {
                    answer = api.job(&token, Some(wait)) => (answer, true),
                    () = refresh => (api.job(&token, None).await, false),
                    () = self.switch.notify.notified() => continue,
                }
            } else {
                (api.job(&token, None).await, false)
            };
            let job = match answer {
                Ok(job) => job,
                Err(failure) => {
                    if failure == ApiFailure::Unauthorized {
                        self.forget_token(active, &token);
                    }
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
                self.on_failure(active, failure, &mut failures).await?;
                continue;
            }
            failures = Failures::default();
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
                    self.flush_pending(job.height);
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
            self.flush_pending(job.height);
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
            // Stopping: one more try for the shares that waited for a pool.
            let waiting: Vec<WaitingShare> = ctx.pending.lock().expect("pending lock").drain(..).collect();
            for w in waiting {
                ctx.submit(w.work, w.found, w.maybe_credited).await;
            }
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
    use super::super::retry_policy::MIN_RETRY_WAIT;
    use super::*;

    /// Shares sent at once that all meet a 401 register once: the others
    /// take the token that registration got, and a late 401 for the old
    /// token does not throw the new one away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_register_once() {
        use std::sync::atomic::AtomicU64;
        let registrations = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/pool/register",
            axum::routing::post({
                let registrations = registrations.clone();
                move || {
                    let n = registrations.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        // A pool slow to answer: every caller is waiting by then.
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let session = PoolSession {
            pools: vec![PoolClient::new(&url, None).unwrap()],
            wallet: "land1w".into(),
            worker_id: "land1w.rig".into(),
            worker_name: "rig".into(),
            long_poll: Duration::from_secs(1),
            failback: Duration::from_secs(60),
        };
        let (found, _found_rx) = super::super::work_dispatch::found_channel();
        let ctx = PoolContext::new(
            session,
            Arc::new(PoolSwitch::new(None)),
            WorkDispatch::start(Vec::new(), found),
            Arc::new(MinerStatus::new()),
        );
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

    #[test]
    fn with_every_pool_down_waits_grow_with_each_round_of_the_list() {
        let mut failures = Failures::default();
        let mut steps = Vec::new();
        for _ in 0..40 {
            steps.push(failures.unavailable(2, true, None));
        }
        // Each pool is tried twice, then the next; the first round moves at once.
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(matches!(step, Retry::Next(_)), i % 2 == 1, "step {i}: {step:?}");
        }
        assert_eq!(steps[1], Retry::Next(Duration::ZERO));
        let wait = |step: &Retry| match step {
            Retry::Same(wait) | Retry::Next(wait) => *wait,
        };
        assert!(wait(&steps[0]) <= Duration::from_millis(1250), "{:?}", steps[0]);
        assert!(wait(&steps[3]) > Duration::ZERO, "the second round waits before moving: {:?}", steps[3]);
        assert!(wait(&steps[38]) >= Duration::from_secs(20), "a long outage backs off: {:?}", steps[38]);
        assert!(steps.iter().all(|s| wait(s) <= Duration::from_secs_f64(30.0 * 1.25)));
    }

    #[test]
    fn a_retry_after_of_zero_still_waits() {
        for asked in [0, 1] {
            let mut failures = Failures::default();
            assert_eq!(failures.unavailable(1, false, Some(asked)), Retry::Same(MIN_RETRY_WAIT));
        }
        let mut failures = Failures::default();
        assert_eq!(failures.unavailable(1, false, Some(7)), Retry::Same(Duration::from_secs(7)));
        // One pool only: never "next", however many failures.
        assert!((0..10).all(|_| matches!(failures.unavailable(1, false, None), Retry::Same(_))));
    }
}
