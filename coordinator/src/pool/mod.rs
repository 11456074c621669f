//! The pool: sessions, jobs, share judgement, found blocks, stats and bans.
//!
//! [`Pool`] is the state behind the `/pool/*` routes ([`api`]). Its rules
//! take the time as an argument (`now_ms`), so they are tested without
//! sleeping. It never hashes on the async runtime: verification goes to
//! `verify_queue`, and durability waits on `group_commit`.
//!
//! - the API's request and response bodies are `vision_protocol::pool`'s.
//! - `pool_error`: [`PoolError`] (requests refused) and [`ShareRejection`]
//!   (shares judged and refused).
//! - `worker_sessions`: registration, credentials, the active set,
//!   admission; `session_bans`: when invalid shares ban a session, and the
//!   ban caps per source; `worker_names`: what a worker's display name may
//!   hold.
//! - `source_limits`: per-source registration and verification budgets.
//! - `public_reads`: the bound on storage reads unauthenticated requests
//!   may run at once.
//! - `readiness`: `GET /healthz`, and whether this coordinator's chain is
//!   behind the others' on a shared database.
//! - `job_requests`: long-polls and job issue (a live job is reused; new
//!   jobs are issued on a task of their own).
//! - `share_judgement`: the share path, from admission to the answer.
//! - `found_blocks`: recording, submitting and retrying found blocks (a
//!   block's missing share appended from its record on resume).
//! - `stats`, `admin`: figures for everyone (served from a snapshot),
//!   settings for the operator.
//! - `tracked_state`: the sessions and bans, whose writers count their
//!   changes, so the stats snapshot knows whether it is current.
//! - `stats_history`: the same figures over time, for the dashboards' charts.
//! - `recent_shares`: a session's last hour of shares, with running sums
//!   for its rate windows (so a stats build is O(sessions)).
//! - `job_book`, `vardiff`, `token_bucket`, `metrics`, `share_verifier`,
//!   `verify_queue`, `group_commit`: the parts those are built from.
//! - `metrics_export`: the counters as `/pool/metrics` JSON and `/metrics`
//!   Prometheus text.

mod admin;
pub mod api;
mod found_blocks;
mod group_commit;
mod job_book;
mod job_requests;
mod metrics;
mod metrics_export;
mod pool_error;
mod public_reads;
mod readiness;
mod recent_shares;
use public_reads::{AnswerBytes, PublicRead, PublicReads};
mod session_bans;
mod share_judgement;
mod share_verifier;
mod source_limits;
mod stats;
pub mod stats_history;
pub(crate) mod token_bucket;
mod tracked_state;
mod vardiff;
mod verify_queue;
mod worker_names;
mod worker_sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use self::group_commit::GroupCommit;
use self::job_book::{IssuedJob, JobBook, TemplateState, HEIGHTS_KEPT};
use self::metrics::PoolMetrics;
pub use self::pool_error::{PoolError, ShareRejection};
use self::source_limits::{SourceLimitConfig, SourceLimits};
use self::stats::StatsSnapshot;
use self::stats_history::StatsHistory;
use self::tracked_state::Tracked;
use self::vardiff::VardiffConfig;
use self::verify_queue::VerifyQueue;
use self::worker_sessions::SessionState;
use crate::chain::{check_address, Chain};
use crate::rewards::{RewardConfig, Rewards};
use crate::storage::{BanRecord, JobRecord, PoolSettings, PoolStore, StoreError, TemplateRecord};
pub use vision_protocol::pool::*;

/// Length of a job id: 12 bytes (`job_book::job_id`), in hex.
pub(crate) const JOB_ID_HEX: usize = 24;

/// Largest pool fee an operator may set (10%).
pub const MAX_POOL_FEE_BPS: u32 = 1000;

/// How long after a stop the pool still takes shares (of jobs given out
/// before it): those a miner had in flight, a block among them. Not for
/// good: on a chain whose tip stalls, jobs from before the stop would stay
/// current.
pub const STOPPED_SHARE_GRACE_MS: u64 = 60_000;

/// Milliseconds since the Unix epoch: the `now_ms` the pool's rules take.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Static pool configuration (from flags, env and the config file).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The address block rewards go to (the pool's wallet).
    pub pool_address: String,
    pub start_share_difficulty: u64,
    pub shares_per_sec: f64,
    pub share_burst: f64,
    pub registrations_per_sec: f64,
    /// Verifications per second that the unproven sessions of one source
    /// address may cost, and their burst.
    pub unproven_verifications_per_sec: f64,
    pub unproven_verification_burst: f64,
    /// Invalid shares that ban a session that has shown no valid work.
    pub unproven_invalid_limit: u64,
    pub ban_min_shares: u64,
    pub ban_invalid_ratio: f64,
    pub ban_duration: Duration,
    pub idle_timeout: Duration,
    /// Sessions unseen this long are forgotten (their miners register again).
    pub session_ttl: Duration,
    /// Sessions that never had a share accepted are forgotten sooner:
    /// registrations are free, and each leaves a record on disk.
    pub unproven_session_ttl: Duration,
    pub max_job_wait: Duration,
    /// Long-polls waiting at once; past it, job requests answer at once.
    pub max_long_polls: usize,
    /// Active sessions with no accepted share yet, at most (past it one seen
    /// long ago leaves the active set): registering is free, and
    /// each active session is memory (an honest one is proven within its
    /// first share).
    pub max_unproven_sessions: usize,
    pub verify_threads: usize,
    /// The CPU engine that verifies shares; `None`: the best this CPU runs.
    pub verify_engine: Option<visionx::CpuEngine>,
    pub verify_queue: usize,
    /// Storage reads that unauthenticated requests may run at once (public
    /// lists, unseen bearer tokens); see `public_reads`.
    pub public_reads: usize,
    /// The bytes of public answers not yet written to their clients, at
    /// most; see `public_reads`.
    pub public_answer_bytes: usize,
    /// How often the dashboards' charts take a sample.
    pub history_interval: Duration,
    /// Splits, fees, maturity and payouts.
    pub rewards: RewardConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_address: "vision-pool".into(),
            start_share_difficulty: 1000,
            shares_per_sec: 100.0,
            share_burst: 200.0,
            registrations_per_sec: 5.0,
            unproven_verifications_per_sec: 2.0,
            unproven_verification_burst: 20.0,
            unproven_invalid_limit: 5,
            ban_min_shares: 100,
            ban_invalid_ratio: 0.10,
            ban_duration: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            unproven_session_ttl: Duration::from_secs(6 * 3600),
            max_job_wait: Duration::from_secs(60),
            max_long_polls: 1024,
            max_unproven_sessions: 10_000,
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            verify_engine: None,
            verify_queue: 256,
            public_reads: 16,
            public_answer_bytes: 256 << 20,
            history_interval: Duration::from_secs(10),
            rewards: RewardConfig::default(),
        }
    }
}

pub struct Pool {
    config: PoolConfig,
    settings: RwLock<PoolSettings>,
    running: AtomicBool,
    /// When this coordinator saw the pool stopped (ms; 0: it started
    /// stopped, or runs): shares are taken for [`STOPPED_SHARE_GRACE_MS`] after.
    stopped_at_ms: AtomicU64,
    store: Arc<dyn PoolStore>,
    secret: [u8; 32],
    chain: Chain,
    rewards: Arc<Rewards>,
    jobs: JobBook,
    /// The active set: session id -> state.
    sessions: Tracked<HashMap<String, SessionState>>,
    /// Bans in force, by session id.
    bans: Tracked<HashMap<String, BanRecord>>,
    /// Source networks at the ban cap (and until when), and each worker's
    /// bans by source: counted from every ban in force (other
    /// coordinators' too) whenever the bans change, so registrations and
    /// unproven sessions are refused without a scan.
    ban_index: Mutex<session_bans::BanIndex>,
    /// Changes to what the figures show: sessions, bans, settings.
    state_changes: Arc<AtomicU64>,
    /// The last `/pool/stats` built, and one builder at a time.
    stats_snapshot: Mutex<Option<Arc<StatsSnapshot>>>,
    stats_builder: Arc<Semaphore>,
    sources: SourceLimits,
    long_polls: Arc<Semaphore>,
    /// Long-polls held per source network: once few slots are left, one
    /// holding its fair share already gets no more (a few addresses must
    /// not hold every slot and leave honest miners unheld).
    long_polls_by_source: crate::connection_limits::ConnectionsPerSource,
    /// Set when the server stops: long-polls answer at once (with the job
    /// they have) instead of holding the stop for their wait.
    stopping: tokio::sync::watch::Sender<bool>,
    public_reads: PublicReads,
    public_answers: AnswerBytes,
    /// Found blocks (height, hash) a retry task is seeing through: one task
    /// a block, however many resubmissions meet a storage fault.
    block_retries: Mutex<std::collections::HashSet<(u64, String)>>,
    verifier: VerifyQueue,
    commits: GroupCommit,
    metrics: PoolMetrics,
    history: StatsHistory,
    block_time_secs: u64,
    started: Instant,
    /// When stored sessions were last pruned (a full scan).
    last_session_prune_ms: AtomicU64,
    /// Active sessions not yet proven (kept with every change of the set).
    unproven_active: AtomicUsize,
    /// Jobs and duplicate keys of heights below this are no longer needed;
    /// housekeeping has pruned below `pruned_below`.
    prune_below: AtomicU64,
    pruned_below: AtomicU64,
    /// Template refreshes started, and the latest whose answer is installed:
    /// a refresh that asked the chain before another's installed answer
    /// does not undo it, whatever the heights (a tip can go down).
    refreshes_started: AtomicU64,
    refresh_installed: Mutex<u64>,
    request_refresh: job_requests::RequestRefresh,
    /// The store's clock at the last look for ban changes, and when every
    /// ban was last read (`sync_shared_state`).
    ban_clock_ms: AtomicU64,
    last_full_ban_read_ms: AtomicU64,
    /// When the store last answered `sync_shared_state` (ms): readiness.
    store_answered_ms: AtomicU64,
    /// How far the other coordinators on the store are ahead (readiness).
    lag: Mutex<readiness::Lag>,
}

impl Pool {
    pub async fn new(
        config: PoolConfig,
        defaults: PoolSettings,
        store: Arc<dyn PoolStore>,
        chain: Chain,
        block_time_secs: u64,
    ) -> Result<Arc<Self>, PoolError> {
        check_address("pool address", &config.pool_address)?;
        let settings = store.settings().await?.unwrap_or(defaults);
        let secret = store.secret();
        let bans = store.bans().await?.into_iter().map(|b| (b.session_id.clone(), b)).collect();
        let metrics = PoolMetrics::default();
        let flushing = store.clone();
        let rewards = Arc::new(
            Rewards::new(config.rewards.clone(), store.clone(), chain.clone())
                .map_err(|e| PoolError::Internal(e.to_string()))?,
        );
        let state_changes = Arc::new(AtomicU64::new(0));
        let pool = Pool {
            history: StatsHistory::new(config.history_interval),
            verifier: VerifyQueue::start(
                config.verify_threads,
                config.verify_engine,
                config.verify_queue,
                metrics.share_verifications.clone(),
            ),
            commits: GroupCommit::start(move || flushing.flush()),
            sources: SourceLimits::new(SourceLimitConfig {
                registrations_per_sec: config.registrations_per_sec,
                unproven_verifications_per_sec: config.unproven_verifications_per_sec,
                unproven_verification_burst: config.unproven_verification_burst,
            }),
            long_polls: Arc::new(Semaphore::new(config.max_long_polls.max(1))),
            // An eighth of the slots, at most the connections' share (16).
            long_polls_by_source: crate::connection_limits::ConnectionsPerSource::with_fair_share(
                usize::MAX,
                (config.max_long_polls / 8).clamp(1, crate::connection_limits::FAIR_SHARE),
            ),
            stopping: tokio::sync::watch::Sender::new(false),
            public_reads: PublicReads::new(config.public_reads),
            public_answers: AnswerBytes::new(config.public_answer_bytes),
            block_retries: Mutex::default(),
            running: AtomicBool::new(settings.running),
            stopped_at_ms: AtomicU64::new(0),
            settings: RwLock::new(settings),
            config,
            store,
            secret,
            chain,
            rewards,
            jobs: JobBook::default(),
            sessions: Tracked::new(HashMap::new(), state_changes.clone()),
            bans: Tracked::new(bans, state_changes.clone()),
            ban_index: Mutex::default(),
            state_changes,
            stats_snapshot: Mutex::new(None),
            stats_builder: Arc::new(Semaphore::new(1)),
            metrics,
            block_time_secs,
            started: Instant::now(),
            last_session_prune_ms: AtomicU64::new(0),
            unproven_active: AtomicUsize::new(0),
            prune_below: AtomicU64::new(0),
            pruned_below: AtomicU64::new(0),
            refreshes_started: AtomicU64::new(0),
            refresh_installed: Mutex::new(0),
            request_refresh: Default::default(),
            ban_clock_ms: AtomicU64::new(0),
            last_full_ban_read_ms: AtomicU64::new(0),
            // It has just answered (the settings and bans above).
            store_answered_ms: AtomicU64::new(now_ms()),
            lag: Mutex::default(),
        };
        let found = pool.store.found_blocks().await?;
        let count = |status| found.iter().filter(|b| b.status == status).count() as u64;
        pool.metrics.blocks_found.store(count(crate::storage::BlockStatus::Accepted), Ordering::Relaxed);
        pool.metrics.blocks_rejected.store(count(crate::storage::BlockStatus::Rejected), Ordering::Relaxed);
        pool.restore_jobs().await?;
        pool.recount_capped_sources(now_ms());
        // The counters start at zero now: the charts' first interval counts
        // from here, not from the sampler's first tick.
        pool.history.record(now_ms(), stats_history::PoolReading::default(), Vec::new());
        Ok(Arc::new(pool))
    }

    /// Loads the jobs of recent heights, so shares for them are still judged
    /// (accepted, stale or duplicate) after a restart.
    async fn restore_jobs(&self) -> Result<(), PoolError> {
        let mut templates: HashMap<String, Option<Arc<TemplateState>>> = HashMap::new();
        for record in self.store.jobs_from_height(0).await? {
            if let Some(job) = self.stored_job(record, &mut templates).await? {
                self.jobs.restore(job);
            }
        }
        Ok(())
    }

    /// A job this coordinator does not hold: one issued by another
    /// coordinator on the shared store (or before a restart). Loaded once,
    /// then held like the pool's own.
    /// Only a job of `session_id` on the current template is loaded: the
    /// share of any other would be refused anyway, and an id no coordinator
    /// issued to this session costs no read.
    pub(crate) async fn load_job(&self, job_id: &str, session_id: &str) -> Result<Option<Arc<IssuedJob>>, PoolError> {
        let Some(current) = self.jobs.current() else { return Ok(None) };
        if job_id.len() != JOB_ID_HEX || !job_book::job_id_is_issued(&self.secret, job_id, session_id) {
            return Ok(None);
        }
        let Some(record) = self.store.job(job_id).await? else { return Ok(None) };
        if record.session_id != session_id || record.template_id != current.id {
            return Ok(None);
        }
        let mut templates = HashMap::from([(current.id.clone(), Some(current))]);
        let Some(job) = self.stored_job(record, &mut templates).await? else { return Ok(None) };
        self.jobs.restore(job);
        Ok(self.jobs.get(job_id))
    }

    /// A stored job as the pool judges it; `None` when its template is gone.
    /// `templates` caches the templates read so far.
    async fn stored_job(
        &self,
        record: JobRecord,
        templates: &mut HashMap<String, Option<Arc<TemplateState>>>,
    ) -> Result<Option<IssuedJob>, PoolError> {
        let template = match templates.get(&record.template_id) {
            Some(cached) => cached.clone(),
            None => {
                let state = self
                    .store
                    .template(&record.template_id)
                    .await?
                    .and_then(|t| TemplateState::from_header(t.template.into(), 0, t.first_job_index).ok())
                    .map(Arc::new);
                templates.insert(record.template_id.clone(), state.clone());
                state
            }
        };
        Ok(template.map(|template| IssuedJob {
            job_id: record.job_id,
            worker_id: record.worker_id,
            session_id: record.session_id,
            template,
            share_difficulty: record.share_difficulty,
            nonces: visionx::NonceRange::new(record.nonce_start, record.nonce_end),
        }))
    }

    /// Found blocks recorded but not settled before a restart: settles each
    /// on a task of its own (resubmitting while it can still win).
    pub async fn resume_block_submissions(self: &Arc<Self>) -> Result<usize, PoolError> {
        let pending: Vec<_> = self
            .store
            .found_blocks()
            .await?
            .into_iter()
            .filter(|b| b.status == crate::storage::BlockStatus::Submitted)
            .collect();
        let count = pending.len();
        for block in pending {
            self.take_up_block(block).await;
        }
        Ok(count)
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Counts a connection the server refused (its address held too many).
    pub fn note_connection_refused(&self) {
        PoolMetrics::bump(&self.metrics.connections_refused);
    }

    /// Leave to run a public route's storage read now, or `Busy`.
    pub(crate) fn begin_public_read(&self) -> Result<PublicRead, PoolError> {
        self.public_answers
            .check_room()
            .and_then(|()| self.public_reads.try_begin())
            .inspect_err(|_| PoolMetrics::bump(&self.metrics.public_reads_shed))
    }

    /// A public read's encoded answer as a body holding its bytes' share of
    /// the budget until written, or `Busy`.
    pub(crate) fn hold_public_answer(&self, encoded: Vec<u8>) -> Result<bytes::Bytes, PoolError> {
        self.public_answers.hold(encoded).inspect_err(|_| PoolMetrics::bump(&self.metrics.public_reads_shed))
    }

    /// Leave to run a storage read for an unauthenticated caller that must
    /// not be turned away (a returning token, a metrics scrape).
    pub(crate) async fn wait_public_read(&self) -> PublicRead {
        self.public_reads.begin().await
    }

    pub fn rewards(&self) -> &Arc<Rewards> {
        &self.rewards
    }

    /// One rewards round (credit, confirm, orphan, pay) with the fee in force.
    pub async fn run_rewards_round(&self, now_ms: u64) -> Result<(), crate::rewards::RewardError> {
        let fee = self.settings().pool_fee_bps;
        let round = self.rewards.run_round(now_ms, fee).await;
        if let Some(template) = self.jobs.current() {
            let (difficulty, reward) = (template.template.header.difficulty, template.template.reward);
            let rewards = self.rewards.clone();
            let id = template.id.clone();
            rewards.refresh_estimates(&id, difficulty, reward, fee).await;
        }
        round
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings.read().expect("settings lock").clone()
    }

    fn vardiff_config(&self) -> VardiffConfig {
        let s = self.settings();
        VardiffConfig {
            target_secs: s.target_share_seconds.max(1) as f64,
            min_difficulty: s.min_share_difficulty.max(1),
            max_difficulty: s.max_share_difficulty.max(s.min_share_difficulty.max(1)),
            ..VardiffConfig::default()
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// When this coordinator started, in ms since the epoch.
    pub(crate) fn started_ms(&self) -> u64 {
        now_ms().saturating_sub(self.uptime().as_millis() as u64)
    }

    /// Fetches the chain's template for the pool address and installs it if
    /// it is new (another height or another parent), lower heights included:
    /// the node's tip is the tip (a shorter branch with more work, a node
    /// restored from a backup). A template whose fields disagree with its
    /// header, or that pays someone else, is refused.
    pub async fn refresh_template(&self) -> Result<bool, PoolError> {
        let asked = self.refreshes_started.fetch_add(1, Ordering::Relaxed) + 1;
        let template = match self.chain.template(&self.config.pool_address).await {
            Ok(template) => template,
            Err(err) => {
                PoolMetrics::bump(&self.metrics.template_failures);
                return Err(err.into());
            }
        };
        self.metrics.chain_answered_ms.store(now_ms(), Ordering::Relaxed);
        if self.jobs.is_current(&template) {
            // The latest answer is the one installed: no earlier one may undo it.
            let mut installed = self.refresh_installed.lock().expect("refresh lock");
            *installed = (*installed).max(asked);
            return Ok(false);
        }
        let refused = |refusal| {
            PoolMetrics::bump(&self.metrics.templates_refused);
            PoolError::TemplateRefused(format!("the chain's template was refused: {refusal}"))
        };
        let state = TemplateState::checked(template, &self.config.pool_address).map_err(refused)?;
        // One template per tip: the one stored for it (before a restart, or
        // by another coordinator on a shared store) keeps being mined, so
        // jobs issued on it stay current and ranges keep their numbering (a
        // fresh template of the tip differs at least in its timestamp).
        // (What the first template of a run replaces: see the prune below.)
        let stored_below = match self.jobs.current() {
            Some(_) => None,
            None => self.store.highest_template_height_below(state.template.header.height).await?,
        };
        let first_job_index = self.store.next_id().await?;
        let record = TemplateRecord { template: (&state.template).into(), first_job_index };
        let (held_id, held) = match self.store.claim_template(&state.id, &record).await {
            Ok(claimed) => claimed,
            // A template pruned with its keys, handed out again.
            Err(StoreError::Refused(why)) => {
                PoolMetrics::bump(&self.metrics.templates_refused);
                return Err(PoolError::TemplateRefused(why));
            }
            Err(err) => return Err(err.into()),
        };
        let mut state = if held_id == state.id {
            state
        } else {
            TemplateState::checked(held.template.into(), &self.config.pool_address).map_err(refused)?
        };
        state.first_job_index = held.first_job_index;
        let state = {
            let mut installed = self.refresh_installed.lock().expect("refresh lock");
            // A refresh that asked the chain later installed its answer (or
            // this one) meanwhile.
            if *installed > asked {
                return Ok(false);
            }
            if self.jobs.current().is_some_and(|c| c.id == held_id) {
                *installed = asked;
                return Ok(false);
            }
            *installed = asked;
            // Set, not raised: below a tip that went down, the keys of its
            // heights must stay (or their shares could be credited twice).
            // Never past the heights kept below the template replaced: one
            // far ahead of it (a node's glitch, or an answer forged on plain
            // HTTP) would prune every job, template and key in use; the next
            // template, if it agrees, prunes the rest. The first template of
            // a run replaces the highest stored below it (a coordinator
            // restarted more often than blocks come still prunes); with none
            // there, it prunes nothing.
            if let Some(replaced) = self.jobs.current().map(|c| c.template.header.height).or(stored_below) {
                let keep_from = state.template.header.height.min(replaced).saturating_sub(HEIGHTS_KEPT - 1);
                self.prune_below.store(keep_from, Ordering::Relaxed);
            }
            self.jobs.install(state)
        };
        tracing::info!(
            height = state.template.header.height,
            difficulty = state.template.header.difficulty,
            "new template"
        );
        // Forgetting old jobs and duplicate keys is disk work: never in the
        // way of the switch (housekeeping does it).
        Ok(true)
    }

    /// With a remote chain: no template for this long means the pool no
    /// longer knows the tip, and hands out no jobs (miners fail over)
    /// until the chain answers again.
    fn chain_silence_limit_ms(&self) -> u64 {
        (3 * self.block_time_secs * 1000).max(5_000)
    }

    /// Whether the chain is answering: always for the embedded devnet; for
    /// an upstream node, whether it answered within the silence limit.
    pub(crate) fn chain_up(&self, now: u64) -> bool {
        match self.chain {
            Chain::Devnet(_) => true,
            Chain::Upstream(_) => {
                let answered = self.metrics.chain_answered_ms.load(Ordering::Relaxed);
                answered > 0 && now.saturating_sub(answered) <= self.chain_silence_limit_ms()
            }
        }
    }

    pub fn current_height(&self) -> Option<u64> {
        self.jobs.current().map(|t| t.template.header.height)
    }

    /// The periodic housekeeping (blocking: sled scans and deletes): prunes
    /// old jobs and duplicate keys, idle sessions and sources, unused
    /// credentials and expired bans.
    pub async fn housekeeping(&self, now_ms: u64) -> Result<(), PoolError> {
        for record in self.sessions_to_touch() {
            if self.store.touch_session(&record.token_hash, record.last_seen_ms, record.proven).await?.is_none() {
                // Forgotten in the store (by another coordinator's prune):
                // its miner registers again at its next request.
                let mut sessions = self.sessions.lock();
                if sessions.remove(&record.session_id).is_some_and(|s| !s.proven) {
                    self.unproven_active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let keep_from = self.prune_below.load(Ordering::Relaxed);
        if keep_from > self.pruned_below.load(Ordering::Relaxed) {
            self.store.prune_jobs_below(keep_from).await?;
            self.store.prune_share_keys_below(keep_from).await?;
            // Only once done: a prune that failed is tried again next time,
            // not left until the chain moves.
            self.pruned_below.fetch_max(keep_from, Ordering::Relaxed);
        }
        let pruned = self.prune_idle(now_ms);
        let sources = self.sources.prune(now_ms);
        // Unused credentials are forgotten in a full scan: hourly is enough.
        let mut forgotten = (0, 0);
        let last = self.last_session_prune_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= 3_600_000 {
            self.last_session_prune_ms.store(now_ms, Ordering::Relaxed);
            forgotten = self.forget_unused_credentials(now_ms).await?;
        }
        let expired: Vec<(String, u64)> = {
            let bans = self.bans.read();
            bans.values().filter(|b| b.until_ms <= now_ms).map(|b| (b.session_id.clone(), b.until_ms)).collect()
        };
        for (session_id, until_ms) in expired {
            // (The store's record only if it is still this ban: another
            // coordinator may have banned the session again.)
            if self.lift_expired_ban(&session_id, now_ms) {
                self.store.remove_expired_ban(&session_id, until_ms).await?;
            }
        }
        let difficulty = self.jobs.current().map(|t| t.template.header.difficulty);
        match self.rewards.compact_ledger(difficulty, 200_000).await {
            Ok(report) if report.compacted > 0 => {
                tracing::info!("compacted {} old shares into per-worker aggregates", report.compacted);
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("share compaction failed: {err}"),
        }
        if pruned + sources + forgotten.0 + forgotten.1 > 0 {
            tracing::info!(
                "pruned {pruned} idle sessions, {sources} idle sources, {} stored sessions, {} workers",
                forgotten.0,
                forgotten.1
            );
        }
        Ok(())
    }

    /// Forgets stored sessions unseen for `session_ttl` (or, never proven,
    /// for `unproven_session_ttl`), then workers that no session names any
    /// more and that were last registered before `unproven_session_ttl`
    /// (a worker whose sessions are all gone is only a name; kept for days,
    /// free registrations would fill the disk with them). Returns
    /// (sessions, workers). Their miners register again if they come back;
    /// their shares and balances are untouched.
    pub async fn forget_unused_credentials(&self, now_ms: u64) -> Result<(usize, usize), PoolError> {
        let before = |ttl: Duration| now_ms.saturating_sub(ttl.as_millis() as u64);
        let sessions = self
            .store
            .prune_sessions(before(self.config.session_ttl), before(self.config.unproven_session_ttl))
            .await?;
        let workers = self.store.prune_workers_without_sessions(before(self.config.unproven_session_ttl)).await?;
        Ok((sessions, workers))
    }

    /// Test hook: the store itself, to put the books in a state no route
    /// reaches (a write the store must refuse, say).
    #[doc(hidden)]
    pub fn store_for_tests(&self) -> &Arc<dyn PoolStore> {
        &self.store
    }

    /// Store calls still running on blocking threads (a stopping server
    /// waits for none).
    pub fn store_calls_in_flight(&self) -> usize {
        self.store.calls_in_flight()
    }

    /// Makes everything durable (graceful shutdown, the storage watch).
    /// Also an error once a share's group commit has failed: an idle store
    /// may answer a flush with nothing pending without its sticky error.
    pub fn flush(&self) -> Result<(), PoolError> {
        if self.commits.has_failed() {
            return Err(PoolError::Store(StoreError::Backend("a group commit failed to make shares durable".into())));
        }
        Ok(self.store.flush()?)
    }
}
