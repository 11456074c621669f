//! The pool: workers, jobs, share judgement, stats and bans.
//!
//! [`Pool`] is the state behind the `/pool/*` routes ([`api`]). It never
//! hashes on the async runtime: verification goes to [`verify_queue`], and
//! durability waits on [`group_commit`].

pub mod api;
pub mod group_commit;
pub mod job_book;
pub mod metrics;
pub mod token_bucket;
pub mod vardiff;
pub mod verify_queue;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use visionx::Digest;

use self::group_commit::GroupCommit;
use self::job_book::{JobBook, PoolJob, TemplateState, HEIGHTS_KEPT};
use self::metrics::PoolMetrics;
use self::token_bucket::TokenBucket;
use self::vardiff::{Vardiff, VardiffConfig};
use self::verify_queue::VerifyQueue;
use crate::api_error::ApiError;
use crate::chain::{check_address, Chain};
use crate::share_verifier::{ShareClaim, Verdict};
use crate::storage::{AppendOutcome, FoundBlockRecord, JobRecord, PoolSettings, PoolStore, ShareRecord, WorkerRecord};

/// The foundation's cut of every block, in basis points (1%).
pub const FOUNDATION_FEE_BPS: u32 = 100;
/// Largest pool fee an operator may set (10%).
pub const MAX_POOL_FEE_BPS: u32 = 1000;

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
    pub ban_min_shares: u64,
    pub ban_invalid_ratio: f64,
    pub ban_duration: Duration,
    pub idle_timeout: Duration,
    pub max_job_wait: Duration,
    pub verify_threads: usize,
    pub verify_queue: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_address: "vision-pool".into(),
            start_share_difficulty: 1000,
            shares_per_sec: 100.0,
            share_burst: 200.0,
            registrations_per_sec: 5.0,
            ban_min_shares: 100,
            ban_invalid_ratio: 0.10,
            ban_duration: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
            max_job_wait: Duration::from_secs(60),
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            verify_queue: 256,
        }
    }
}

/// Counts of a worker's (or the pool's) shares.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareCounts {
    pub accepted: u64,
    pub stale: u64,
    /// Invalid: bad digest, low difficulty, out of range, unknown job.
    pub rejected: u64,
    pub duplicate: u64,
}

/// Effective hash rate from accepted share difficulty, beside the miner's own figure.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Hashrate {
    pub effective_10m: f64,
    /// Shares behind the 10-minute estimate (its uncertainty is about 1/sqrt(n)).
    pub shares_10m: u64,
    pub effective_1h: f64,
    pub shares_1h: u64,
    /// What the miner reported with its last share, if anything.
    pub reported: Option<f64>,
}

struct WorkerState {
    record: WorkerRecord,
    counts: ShareCounts,
    /// Accepted shares of the last hour: (time ms, difficulty).
    recent: VecDeque<(u64, u64)>,
    vardiff: Vardiff,
    bucket: TokenBucket,
    reported_hashrate: Option<f64>,
    last_share_ms: Option<u64>,
    last_seen_ms: u64,
    /// When the worker entered the active set (a young worker's rate is
    /// averaged over its time here, not the whole window).
    active_since_ms: u64,
    /// The template version of the worker's last job (for long-polling).
    last_template_version: u64,
    blocks_found: u64,
}

impl WorkerState {
    fn hashrate(&self, now: u64) -> Hashrate {
        let window = |ms: u64| {
            let (sum, n) = self
                .recent
                .iter()
                .filter(|(t, _)| now.saturating_sub(*t) <= ms)
                .fold((0u128, 0u64), |(s, n), (_, d)| (s + u128::from(*d), n + 1));
            let span_ms = ms.min(now.saturating_sub(self.active_since_ms)).max(1000);
            (sum as f64 / (span_ms as f64 / 1000.0), n)
        };
        let (effective_10m, shares_10m) = window(600_000);
        let (effective_1h, shares_1h) = window(3_600_000);
        Hashrate { effective_10m, shares_10m, effective_1h, shares_1h, reported: self.reported_hashrate }
    }
}

/// `POST /pool/register` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub worker_id: String,
    pub wallet_address: String,
    #[serde(default)]
    pub worker_name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub worker_id: String,
    pub worker_token: String,
    pub pool_fee_bps: u32,
    pub foundation_fee_bps: u32,
    pub pool_name: String,
}

/// `GET /pool/job` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResponse {
    pub job_id: String,
    pub chain_id: String,
    pub height: u64,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: JobParams,
    pub network_difficulty: u64,
    pub share_difficulty: u64,
    pub nonce_start: u64,
    pub nonce_end: u64,
    /// The pool's target block time, for the miner's job-age watchdog.
    pub block_time_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct JobParams {
    pub dataset_mb: u32,
    pub scratch_mb: u32,
    pub mix_iters: u32,
    pub reads_per_iter: u32,
    pub write_every: u32,
    pub epoch_blocks: u64,
}

/// `POST /pool/share` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    pub job_id: String,
    pub nonce: u64,
    pub digest: String,
    #[serde(default)]
    pub hashrate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShareResponse {
    pub accepted: bool,
    pub is_block: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The share difficulty the worker's next job will have.
    pub share_difficulty: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStats {
    pub worker_id: String,
    pub worker_name: Option<String>,
    pub wallet_address: String,
    pub shares: ShareCounts,
    pub hashrate: Hashrate,
    pub share_difficulty: u64,
    pub last_share_ms: Option<u64>,
    pub online: bool,
    pub blocks_found: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStats {
    pub pool_name: String,
    pub pool_fee_bps: u32,
    pub foundation_fee_bps: u32,
    pub running: bool,
    pub height: Option<u64>,
    pub network_difficulty: Option<u64>,
    pub workers_online: usize,
    pub workers_active: usize,
    pub shares: ShareCounts,
    pub hashrate: Hashrate,
    pub blocks_found: u64,
    pub workers: Vec<WorkerStats>,
}

/// `POST /pool/configure` body: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureRequest {
    pub pool_name: Option<String>,
    pub pool_fee_bps: Option<u32>,
    pub target_share_seconds: Option<u64>,
    pub min_share_difficulty: Option<u64>,
    pub max_share_difficulty: Option<u64>,
}

pub struct Pool {
    config: PoolConfig,
    settings: RwLock<PoolSettings>,
    running: AtomicBool,
    store: Arc<dyn PoolStore>,
    secret: [u8; 32],
    chain: Chain,
    jobs: JobBook,
    workers: Mutex<HashMap<String, WorkerState>>,
    /// Token -> worker id, for every registered worker (active or not).
    tokens: RwLock<HashMap<String, String>>,
    bans: Mutex<HashMap<String, u64>>,
    registrations: Mutex<HashMap<IpAddr, TokenBucket>>,
    verifier: VerifyQueue,
    commits: GroupCommit,
    pub metrics: PoolMetrics,
    block_time_secs: u64,
    started: Instant,
}

fn rejected(reason: &str, share_difficulty: u64) -> ShareResponse {
    ShareResponse { accepted: false, is_block: false, reason: Some(reason.into()), share_difficulty, block_hash: None }
}

fn check_id(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if value.is_empty() || value.len() > max || !value.chars().all(ok) {
        return Err(ApiError::bad_request(
            "bad_field",
            format!("{field} must be 1-{max} ASCII letters, digits, '_', '-', '.' or ':'"),
        ));
    }
    Ok(())
}

impl Pool {
    pub fn new(
        config: PoolConfig,
        defaults: PoolSettings,
        store: Arc<dyn PoolStore>,
        chain: Chain,
        block_time_secs: u64,
    ) -> Result<Arc<Self>, ApiError> {
        check_address("pool address", &config.pool_address)?;
        let settings = store.settings()?.unwrap_or(defaults);
        let secret = store.secret()?;
        let tokens = store.workers()?.into_iter().map(|w| (w.token, w.worker_id)).collect();
        let bans = store.bans()?.into_iter().collect();
        let pool = Pool {
            verifier: VerifyQueue::start(config.verify_threads, config.verify_queue),
            commits: GroupCommit::start(store.clone()),
            running: AtomicBool::new(settings.running),
            settings: RwLock::new(settings),
            config,
            store,
            secret,
            chain,
            jobs: JobBook::default(),
            workers: Mutex::new(HashMap::new()),
            tokens: RwLock::new(tokens),
            bans: Mutex::new(bans),
            registrations: Mutex::new(HashMap::new()),
            metrics: PoolMetrics::default(),
            block_time_secs,
            started: Instant::now(),
        };
        let found = pool.store.found_blocks()?.iter().filter(|b| b.accepted).count() as u64;
        pool.metrics.blocks_found.store(found, Ordering::Relaxed);
        pool.restore_jobs()?;
        Ok(Arc::new(pool))
    }

    /// Loads the jobs of recent heights, so shares for them are still judged
    /// (accepted, stale or duplicate) after a restart.
    fn restore_jobs(&self) -> Result<(), ApiError> {
        let mut templates: HashMap<String, Option<Arc<TemplateState>>> = HashMap::new();
        for record in self.store.jobs_from_height(0)? {
            let template = match templates.get(&record.template_id) {
                Some(cached) => cached.clone(),
                None => {
                    let state = self
                        .store
                        .template(&record.template_id)?
                        .and_then(|t| TemplateState::new(t, 0).ok())
                        .map(Arc::new);
                    templates.insert(record.template_id.clone(), state.clone());
                    state
                }
            };
            let Some(template) = template else { continue };
            self.jobs.restore(PoolJob {
                job_id: record.job_id,
                worker_id: record.worker_id,
                template,
                share_difficulty: record.share_difficulty,
                nonces: visionx::NonceRange::new(record.nonce_start, record.nonce_end),
            });
        }
        Ok(())
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
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

    /// Accepted shares in the durable ledger.
    pub fn ledger_shares(&self) -> Result<u64, ApiError> {
        Ok(self.store.share_count()?)
    }

    pub fn verify_queue_depth(&self) -> usize {
        self.verifier.depth()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Fetches the chain's template for the pool address and installs it if new.
    pub async fn refresh_template(&self) -> Result<bool, ApiError> {
        let template = self.chain.template(&self.config.pool_address).await?;
        let changed = self
            .jobs
            .set_template(template)
            .map_err(|e| ApiError::internal(format!("chain sent a bad template: {e}")))?;
        let Some(state) = changed else { return Ok(false) };
        self.store.put_template(&state.id, &state.template)?;
        self.store.prune_jobs_below(state.template.height.saturating_sub(HEIGHTS_KEPT - 1))?;
        Ok(true)
    }

    pub fn current_height(&self) -> Option<u64> {
        self.jobs.current().map(|t| t.template.height)
    }

    // --- workers -----------------------------------------------------------

    fn token_for(&self, worker_id: &str, wallet: &str) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(b"worker-token");
        hasher.update(worker_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(wallet.as_bytes());
        hex::encode(hasher.finalize().as_bytes())
    }

    pub fn register(&self, request: RegisterRequest, ip: Option<IpAddr>) -> Result<RegisterResponse, ApiError> {
        let now = now_ms();
        if let Some(ip) = ip {
            let mut limits = self.registrations.lock().expect("registration lock");
            let per_sec = self.config.registrations_per_sec;
            let bucket = limits.entry(ip).or_insert_with(|| TokenBucket::new(per_sec * 4.0, per_sec, now));
            if let Err(wait) = bucket.try_take(now) {
                return Err(ApiError::retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many registrations from this address",
                    wait,
                ));
            }
        }
        check_id("worker_id", &request.worker_id, 64)?;
        check_address("wallet_address", &request.wallet_address)?;
        let text_ok = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= 64 && !s.chars().any(char::is_control));
        if !text_ok(&request.worker_name) || !text_ok(&request.version) {
            return Err(ApiError::bad_request(
                "bad_field",
                "worker_name and version are at most 64 printable characters",
            ));
        }
        let existing = self.store.worker(&request.worker_id)?;
        if let Some(existing) = &existing {
            if existing.wallet_address != request.wallet_address {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "worker_id_taken",
                    "this worker_id is registered with another wallet; pick another worker_id",
                ));
            }
        }
        let token = self.token_for(&request.worker_id, &request.wallet_address);
        let record = WorkerRecord {
            worker_id: request.worker_id.clone(),
            wallet_address: request.wallet_address.clone(),
            worker_name: request.worker_name.or(existing.as_ref().and_then(|e| e.worker_name.clone())),
            version: request.version,
            token: token.clone(),
            registered_at_ms: existing.as_ref().map_or(now, |e| e.registered_at_ms),
        };
        self.store.put_worker(&record)?;
        self.tokens.write().expect("tokens lock").insert(token.clone(), record.worker_id.clone());
        self.ensure_active(&record.worker_id, Some(record.clone()))?;
        let settings = self.settings();
        Ok(RegisterResponse {
            worker_id: record.worker_id,
            worker_token: token,
            pool_fee_bps: settings.pool_fee_bps,
            foundation_fee_bps: FOUNDATION_FEE_BPS,
            pool_name: settings.pool_name,
        })
    }

    /// The worker a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<String, ApiError> {
        let worker_id = self.tokens.read().expect("tokens lock").get(token).cloned();
        let worker_id = worker_id.ok_or_else(|| ApiError::unauthorized("unknown worker token; register first"))?;
        self.ensure_active(&worker_id, None)?;
        Ok(worker_id)
    }

    /// Puts a worker in the active set (loading it from the store if it was pruned).
    fn ensure_active(&self, worker_id: &str, record: Option<WorkerRecord>) -> Result<(), ApiError> {
        let now = now_ms();
        let mut workers = self.workers.lock().expect("workers lock");
        if let Some(state) = workers.get_mut(worker_id) {
            state.last_seen_ms = now;
            if let Some(record) = record {
                state.record = record;
            }
            return Ok(());
        }
        let record = match record {
            Some(r) => r,
            None => self.store.worker(worker_id)?.ok_or_else(|| ApiError::unauthorized("unknown worker"))?,
        };
        let vardiff_config = self.vardiff_config();
        workers.insert(
            worker_id.to_string(),
            WorkerState {
                record,
                counts: ShareCounts::default(),
                recent: VecDeque::new(),
                vardiff: Vardiff::new(self.config.start_share_difficulty, now, &vardiff_config),
                bucket: TokenBucket::new(self.config.share_burst, self.config.shares_per_sec, now),
                reported_hashrate: None,
                last_share_ms: None,
                last_seen_ms: now,
                active_since_ms: now,
                last_template_version: 0,
                blocks_found: 0,
            },
        );
        Ok(())
    }

    /// Drops workers idle longer than the timeout from the active set
    /// (their registration and credited shares stay). Returns how many.
    pub fn prune_idle(&self) -> usize {
        let cutoff = now_ms().saturating_sub(self.config.idle_timeout.as_millis() as u64);
        let mut workers = self.workers.lock().expect("workers lock");
        let before = workers.len();
        workers.retain(|_, w| w.last_seen_ms >= cutoff);
        before - workers.len()
    }

    /// Ban state of a worker: `Some(until_ms)` while banned (expired bans are lifted).
    fn banned_until(&self, worker_id: &str) -> Result<Option<u64>, ApiError> {
        let now = now_ms();
        let mut bans = self.bans.lock().expect("bans lock");
        match bans.get(worker_id).copied() {
            Some(until) if until > now => Ok(Some(until)),
            Some(_) => {
                bans.remove(worker_id);
                self.store.remove_ban(worker_id)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Whether `worker_id` may work now: the pool runs and the worker is not banned.
    fn admit(&self, worker_id: &str) -> Result<(), ApiError> {
        if !self.running.load(Ordering::Relaxed) {
            return Err(ApiError::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "pool_stopped",
                "the pool is stopped",
                5,
            ));
        }
        if let Some(until) = self.banned_until(worker_id)? {
            let secs = until.saturating_sub(now_ms()).div_ceil(1000);
            let message = format!("worker banned for {secs} more seconds");
            return Err(ApiError::retry_later(StatusCode::FORBIDDEN, "banned", message, secs));
        }
        Ok(())
    }

    // --- jobs --------------------------------------------------------------

    /// A job for `worker_id`; with `wait`, waits up to that long for a
    /// template newer than the worker's last job before answering.
    pub async fn job(&self, worker_id: &str, wait: Option<Duration>) -> Result<JobResponse, ApiError> {
        self.admit(worker_id)?;
        if let Some(wait) = wait.map(|w| w.min(self.config.max_job_wait)) {
            let seen = self.workers.lock().expect("workers lock").get(worker_id).map_or(0, |w| w.last_template_version);
            let mut versions = self.jobs.subscribe();
            let _ = tokio::time::timeout(wait, versions.wait_for(|v| *v > seen)).await;
        }
        if self.jobs.current().is_none() {
            self.refresh_template().await?;
        }
        let job_index = self.store.next_id()?;
        let job_id = hex::encode(&blake3::keyed_hash(&self.secret, &job_index.to_le_bytes()).as_bytes()[..12]);
        let now = now_ms();
        let vardiff_config = self.vardiff_config();
        let share_difficulty = {
            let mut workers = self.workers.lock().expect("workers lock");
            let worker = workers.get_mut(worker_id).ok_or_else(|| ApiError::unauthorized("unknown worker"))?;
            worker.vardiff.on_job_request(now, &vardiff_config);
            worker.last_seen_ms = now;
            worker.vardiff.difficulty()
        };
        let job = self.jobs.issue(job_id, job_index, worker_id, share_difficulty).ok_or_else(|| {
            ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "no_template", "no block template yet", 1)
        })?;
        self.store.put_job(&JobRecord {
            job_id: job.job_id.clone(),
            worker_id: job.worker_id.clone(),
            template_id: job.template.id.clone(),
            height: job.template.template.height,
            share_difficulty: job.share_difficulty,
            nonce_start: job.nonces.start,
            nonce_end: job.nonces.end,
        })?;
        if let Some(worker) = self.workers.lock().expect("workers lock").get_mut(worker_id) {
            worker.last_template_version = job.template.version;
        }
        PoolMetrics::bump(&self.metrics.jobs_served);
        Ok(self.job_response(&job))
    }

    fn job_response(&self, job: &PoolJob) -> JobResponse {
        let t = &job.template.template;
        let p = t.params;
        JobResponse {
            job_id: job.job_id.clone(),
            chain_id: t.chain_id.clone(),
            height: t.height,
            epoch: t.epoch,
            epoch_seed: t.epoch_seed.clone(),
            pow_message: t.pow_message.clone(),
            params: JobParams {
                dataset_mb: p.dataset_mb,
                scratch_mb: p.scratch_mb,
                mix_iters: p.mix_iters,
                reads_per_iter: p.reads_per_iter,
                write_every: p.write_every,
                epoch_blocks: p.epoch_blocks,
            },
            network_difficulty: t.difficulty,
            share_difficulty: job.share_difficulty,
            nonce_start: job.nonces.start,
            nonce_end: job.nonces.end,
            block_time_secs: self.block_time_secs,
        }
    }

    // --- shares ------------------------------------------------------------

    /// Judges a share: cheap checks first, then recomputation off the
    /// runtime, then a durable append before the answer.
    pub async fn submit_share(&self, worker_id: &str, request: ShareRequest) -> Result<ShareResponse, ApiError> {
        self.admit(worker_id)?;
        let now = now_ms();
        let current_difficulty = {
            let mut workers = self.workers.lock().expect("workers lock");
            let worker = workers.get_mut(worker_id).ok_or_else(|| ApiError::unauthorized("unknown worker"))?;
            worker.last_seen_ms = now;
            if let Some(rate) = request.hashrate.filter(|r| r.is_finite() && *r >= 0.0) {
                worker.reported_hashrate = Some(rate);
            }
            if let Err(wait) = worker.bucket.try_take(now) {
                drop(workers);
                PoolMetrics::bump(&self.metrics.shares_rate_limited);
                return Err(ApiError::retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many shares; raise your share difficulty or slow down",
                    wait,
                ));
            }
            worker.vardiff.difficulty()
        };

        let Some(job) = self.jobs.get(&request.job_id).filter(|j| j.worker_id == worker_id) else {
            return self.reject(worker_id, "unknown_job", current_difficulty);
        };
        if self.current_height().is_some_and(|h| job.template.template.height < h) {
            return self.reject(worker_id, "stale", current_difficulty);
        }
        if !job.nonces.contains(request.nonce) {
            return self.reject(worker_id, "out_of_range", current_difficulty);
        }
        let Ok(claimed_digest) = request.digest.parse::<Digest>() else {
            return self.reject(worker_id, "bad_digest", current_difficulty);
        };
        if self.store.is_duplicate(&job.template.id, request.nonce)? {
            return self.reject(worker_id, "duplicate", current_difficulty);
        }

        let claim = ShareClaim {
            input: job.template.input.clone(),
            nonce: request.nonce,
            claimed_digest,
            share_difficulty: job.share_difficulty,
            network_difficulty: job.template.template.difficulty,
        };
        let verdict = self.verifier.submit(claim).map_err(|_| {
            PoolMetrics::bump(&self.metrics.shares_busy);
            ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", "share verification queue is full", 1)
        })?;
        let (verdict, verify_time) = verdict.await.map_err(ApiError::internal)?;
        self.metrics.verify_latency.record(verify_time);
        let (digest, is_block) = match verdict {
            Verdict::BadDigest => return self.reject(worker_id, "bad_digest", current_difficulty),
            Verdict::LowDifficulty => return self.reject(worker_id, "low_difficulty", current_difficulty),
            Verdict::Accepted { digest, is_block } => (digest, is_block),
        };

        let wallet = self.wallet_of(worker_id)?;
        let record = ShareRecord {
            worker_id: worker_id.to_string(),
            wallet_address: wallet.clone(),
            template_id: job.template.id.clone(),
            job_id: job.job_id.clone(),
            nonce: request.nonce,
            share_difficulty: job.share_difficulty,
            height: job.template.template.height,
            time_ms: now,
            is_block,
        };
        if self.store.append_share(&record)? == AppendOutcome::Duplicate {
            return self.reject(worker_id, "duplicate", current_difficulty);
        }
        self.commits.durable().await;

        let vardiff_config = self.vardiff_config();
        let next_difficulty = {
            let mut workers = self.workers.lock().expect("workers lock");
            let worker = workers.get_mut(worker_id).ok_or_else(|| ApiError::unauthorized("unknown worker"))?;
            worker.counts.accepted += 1;
            worker.recent.push_back((now, job.share_difficulty));
            while worker.recent.front().is_some_and(|(t, _)| now.saturating_sub(*t) > 3_600_000) {
                worker.recent.pop_front();
            }
            worker.last_share_ms = Some(now);
            worker.vardiff.on_share(now, job.share_difficulty, &vardiff_config);
            worker.vardiff.difficulty()
        };
        PoolMetrics::bump(&self.metrics.shares_valid);

        let mut block_hash = None;
        if is_block {
            block_hash = Some(digest.to_hex());
            self.submit_block(&job, request.nonce, worker_id, &wallet).await?;
        }
        Ok(ShareResponse { accepted: true, is_block, reason: None, share_difficulty: next_difficulty, block_hash })
    }

    fn wallet_of(&self, worker_id: &str) -> Result<String, ApiError> {
        let workers = self.workers.lock().expect("workers lock");
        workers
            .get(worker_id)
            .map(|w| w.record.wallet_address.clone())
            .ok_or_else(|| ApiError::unauthorized("unknown worker"))
    }

    async fn submit_block(&self, job: &PoolJob, nonce: u64, worker_id: &str, wallet: &str) -> Result<(), ApiError> {
        let outcome = self.chain.submit(job.template.template.solved(nonce)).await;
        let (accepted, hash, reason) = match outcome {
            Ok(o) => (o.accepted, o.hash, o.reason),
            Err(e) => (false, None, Some(e.to_string())),
        };
        let record = FoundBlockRecord {
            height: job.template.template.height,
            hash: hash.unwrap_or_default(),
            worker_id: worker_id.to_string(),
            wallet_address: wallet.to_string(),
            time_ms: now_ms(),
            accepted,
            reason: reason.clone(),
        };
        self.store.put_found_block(&record)?;
        self.commits.durable().await;
        if accepted {
            PoolMetrics::bump(&self.metrics.blocks_found);
            if let Some(worker) = self.workers.lock().expect("workers lock").get_mut(worker_id) {
                worker.blocks_found += 1;
            }
            tracing::info!(height = record.height, hash = %record.hash, worker = worker_id, "block found");
            if let Err(err) = self.refresh_template().await {
                tracing::warn!("refreshing the template after a block failed: {}", err.message);
            }
        } else {
            tracing::warn!(height = record.height, "block rejected by the chain: {}", reason.unwrap_or_default());
        }
        Ok(())
    }

    /// Counts a rejection, bans a worker whose invalid ratio is too high,
    /// and answers the share.
    fn reject(&self, worker_id: &str, reason: &str, share_difficulty: u64) -> Result<ShareResponse, ApiError> {
        let metric = match reason {
            "stale" => &self.metrics.shares_stale,
            "duplicate" => &self.metrics.shares_duplicate,
            _ => &self.metrics.shares_invalid,
        };
        PoolMetrics::bump(metric);
        let ban = {
            let mut workers = self.workers.lock().expect("workers lock");
            let Some(worker) = workers.get_mut(worker_id) else { return Ok(rejected(reason, share_difficulty)) };
            match reason {
                "stale" => worker.counts.stale += 1,
                "duplicate" => worker.counts.duplicate += 1,
                _ => worker.counts.rejected += 1,
            }
            let c = worker.counts;
            let total = c.accepted + c.stale + c.rejected + c.duplicate;
            let invalid = c.rejected + c.duplicate;
            total >= self.config.ban_min_shares && invalid as f64 > self.config.ban_invalid_ratio * total as f64
        };
        if ban {
            let until = now_ms() + self.config.ban_duration.as_millis() as u64;
            self.store.put_ban(worker_id, until)?;
            self.bans.lock().expect("bans lock").insert(worker_id.to_string(), until);
            if let Some(worker) = self.workers.lock().expect("workers lock").get_mut(worker_id) {
                worker.counts = ShareCounts::default();
            }
            tracing::warn!(worker = worker_id, "banned for an invalid share ratio above the limit");
        }
        Ok(rejected(reason, share_difficulty))
    }

    // --- stats -------------------------------------------------------------

    fn worker_stats(&self, worker: &WorkerState, now: u64, online_window_ms: u64) -> WorkerStats {
        WorkerStats {
            worker_id: worker.record.worker_id.clone(),
            worker_name: worker.record.worker_name.clone(),
            wallet_address: worker.record.wallet_address.clone(),
            shares: worker.counts,
            hashrate: worker.hashrate(now),
            share_difficulty: worker.vardiff.difficulty(),
            last_share_ms: worker.last_share_ms,
            online: worker.last_share_ms.is_some_and(|t| now.saturating_sub(t) <= online_window_ms),
            blocks_found: worker.blocks_found,
        }
    }

    fn online_window_ms(&self) -> u64 {
        // Online: an accepted share within 3x the expected share interval.
        3 * self.settings().target_share_seconds.max(1) * 1000
    }

    pub fn stats(&self) -> PoolStats {
        let now = now_ms();
        let settings = self.settings();
        let window = self.online_window_ms();
        let workers: Vec<WorkerStats> = {
            let workers = self.workers.lock().expect("workers lock");
            let mut list: Vec<WorkerStats> = workers.values().map(|w| self.worker_stats(w, now, window)).collect();
            list.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
            list
        };
        let mut shares = ShareCounts::default();
        let mut hashrate = Hashrate::default();
        for w in &workers {
            shares.accepted += w.shares.accepted;
            shares.stale += w.shares.stale;
            shares.rejected += w.shares.rejected;
            shares.duplicate += w.shares.duplicate;
            hashrate.effective_10m += w.hashrate.effective_10m;
            hashrate.shares_10m += w.hashrate.shares_10m;
            hashrate.effective_1h += w.hashrate.effective_1h;
            hashrate.shares_1h += w.hashrate.shares_1h;
            if let Some(r) = w.hashrate.reported {
                hashrate.reported = Some(hashrate.reported.unwrap_or(0.0) + r);
            }
        }
        let template = self.jobs.current();
        PoolStats {
            pool_name: settings.pool_name,
            pool_fee_bps: settings.pool_fee_bps,
            foundation_fee_bps: FOUNDATION_FEE_BPS,
            running: self.running.load(Ordering::Relaxed),
            height: template.as_ref().map(|t| t.template.height),
            network_difficulty: template.as_ref().map(|t| t.template.difficulty),
            workers_online: workers.iter().filter(|w| w.online).count(),
            workers_active: workers.len(),
            shares,
            hashrate,
            blocks_found: PoolMetrics::get(&self.metrics.blocks_found),
            workers,
        }
    }

    pub fn worker(&self, worker_id: &str) -> Option<WorkerStats> {
        let now = now_ms();
        let window = self.online_window_ms();
        self.workers.lock().expect("workers lock").get(worker_id).map(|w| self.worker_stats(w, now, window))
    }

    pub fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, ApiError> {
        Ok(self.store.found_blocks()?)
    }

    // --- admin -------------------------------------------------------------

    pub fn configure(&self, request: ConfigureRequest) -> Result<PoolSettings, ApiError> {
        let mut next = self.settings();
        if let Some(name) = request.pool_name {
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(ApiError::bad_request("bad_field", "pool_name is 1-64 printable characters"));
            }
            next.pool_name = name;
        }
        if let Some(fee) = request.pool_fee_bps {
            if fee > MAX_POOL_FEE_BPS {
                return Err(ApiError::bad_request(
                    "bad_fee",
                    format!("pool_fee_bps must be 0-{MAX_POOL_FEE_BPS} (0-10%)"),
                ));
            }
            next.pool_fee_bps = fee;
        }
        if let Some(secs) = request.target_share_seconds {
            if !(1..=3600).contains(&secs) {
                return Err(ApiError::bad_request("bad_field", "target_share_seconds must be 1-3600"));
            }
            next.target_share_seconds = secs;
        }
        if let Some(min) = request.min_share_difficulty {
            next.min_share_difficulty = min.max(1);
        }
        if let Some(max) = request.max_share_difficulty {
            next.max_share_difficulty = max;
        }
        if next.max_share_difficulty < next.min_share_difficulty {
            return Err(ApiError::bad_request("bad_field", "max_share_difficulty is below min_share_difficulty"));
        }
        self.store.put_settings(&next)?;
        self.store.flush()?;
        *self.settings.write().expect("settings lock") = next.clone();
        let vardiff_config = self.vardiff_config();
        for worker in self.workers.lock().expect("workers lock").values_mut() {
            worker.vardiff.apply_bounds(&vardiff_config);
        }
        Ok(next)
    }

    pub fn set_running(&self, running: bool) -> Result<PoolSettings, ApiError> {
        let mut next = self.settings();
        next.running = running;
        self.store.put_settings(&next)?;
        self.store.flush()?;
        *self.settings.write().expect("settings lock") = next.clone();
        self.running.store(running, Ordering::Relaxed);
        Ok(next)
    }

    pub fn bans(&self) -> Vec<(String, u64)> {
        let now = now_ms();
        let bans = self.bans.lock().expect("bans lock");
        let mut list: Vec<(String, u64)> =
            bans.iter().filter(|(_, u)| **u > now).map(|(w, u)| (w.clone(), *u)).collect();
        list.sort();
        list
    }

    pub fn unban(&self, worker_id: &str) -> Result<bool, ApiError> {
        let removed = self.bans.lock().expect("bans lock").remove(worker_id).is_some();
        let stored = self.store.remove_ban(worker_id)?;
        self.store.flush()?;
        Ok(removed || stored)
    }

    /// Makes everything durable (graceful shutdown).
    pub fn flush(&self) -> Result<(), ApiError> {
        Ok(self.store.flush()?)
    }
}
