//! Rewards: from a block the chain accepted to money in miners' wallets.
//!
//! One task runs a round every `poll_interval` ([`Rewards::run_round`]),
//! after checking that every live coordinator on the store runs the same
//! reward rules ([`Rewards::meet_coordinators`]; a difference fails the round):
//! 1. `block_maturity`: credits each newly accepted block (its window of
//!    shares and split, as *immature* balance), follows it on the chain until
//!    it has `confirmations` (then *confirmed*, payable) or leaves the chain
//!    (*orphaned*: credits reversed, `orphan_reversal`; under PROP its round
//!    carried into the next credit, `prop_rounds`), and flags blocks
//!    pending too long.
//! 2. `payout_sender`: reconciles payout batches left `sending` (by their
//!    idempotency key) before anything else, then pays confirmed balances
//!    past the threshold in one batch.
//!
//! `set_aside_payouts` holds the operator's actions on a batch set aside
//! (sent again under a new key, or recorded paid by a transfer found on
//! the chain).
//! `reward_split` is the arithmetic (pure); `share_compaction` folds shares
//! no window can need any more into per-worker aggregates (housekeeping);
//! `window_tally` keeps the windows that are looked at every round (the
//! estimates', compaction's) up to date without reading them whole, and
//! `settled_blocks` keeps rounds from reading blocks that can no longer change.
//! Every change of money is one atomic `RewardUpdate` in the store; this
//! module never holds a lock across an await, and one round runs at a time.

mod block_maturity;
mod ledger_windows;
mod orphan_reversal;
mod payout_estimate;
mod payout_sender;
mod prop_rounds;
pub mod reward_split;
mod reward_views;
mod set_aside_payouts;
mod settled_blocks;
mod share_compaction;
mod window_tally;

use self::window_tally::{TallyKey, WindowTally};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::reward_split::{FeeSchedule, PayoutScheme};
use crate::chain::{Chain, ChainError};
use crate::storage::{PoolStore, StoreError};

pub use self::set_aside_payouts::SetAsideOutcome;
pub use self::share_compaction::CompactionReport;

/// The foundation's cut of every block, in basis points (1%): the least
/// configuration may set.
pub const FOUNDATION_FEE_BPS: u32 = 100;
/// Where the foundation's cut goes unless configured otherwise.
pub const DEFAULT_FOUNDATION_ADDRESS: &str = "vision-foundation";

/// Where a test may have the coordinator kill itself with SIGKILL
/// (`VISION_CRASH_AT`), to prove that no point loses or doubles money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A found block is recorded; its share is not yet in the ledger.
    BlockRecorded,
    /// A found block's share is appended (not yet durable, on sled); the
    /// record does not yet say where.
    BlockShareAppended,
    /// A found block's record and share are durable; the chain has not been
    /// asked.
    BlockShareNoted,
    /// A block's credit is written but not yet flushed.
    CreditBlock,
    /// A payout batch is durable as `sending`; the chain has not been asked.
    AfterSending,
    /// The chain has made the transfer; the batch is not yet `paid`.
    AfterTransfer,
}

impl CrashPoint {
    pub fn parse(name: &str) -> Option<CrashPoint> {
        match name {
            "block_recorded" => Some(CrashPoint::BlockRecorded),
            "block_share_appended" => Some(CrashPoint::BlockShareAppended),
            "block_share_noted" => Some(CrashPoint::BlockShareNoted),
            "credit_block" => Some(CrashPoint::CreditBlock),
            "after_sending" => Some(CrashPoint::AfterSending),
            "after_transfer" => Some(CrashPoint::AfterTransfer),
            _ => None,
        }
    }
}

/// How rewards are shared and paid.
#[derive(Debug, Clone)]
pub struct RewardConfig {
    pub scheme: PayoutScheme,
    /// PPLNS's N, as a multiple of the block's network difficulty.
    pub pplns_window_factor: f64,
    /// Blocks on top (the block itself counting one) before a block's
    /// reward is payable.
    pub confirmations: u64,
    /// Blocks past `confirmations` a credited block is still watched for a
    /// reorganisation; deeper, it is settled and rounds stop reading it.
    pub orphan_watch_depth: u64,
    /// Confirmed balances at least this large are paid (base units).
    pub payout_threshold: u64,
    pub foundation_address: String,
    /// At least [`FOUNDATION_FEE_BPS`].
    pub foundation_fee_bps: u32,
    /// Where the pool fee goes. When it is the pool's own wallet the fee
    /// simply stays there (it is never sent).
    pub pool_fee_address: String,
    /// The wallet block rewards land in and payouts are sent from.
    pub pool_address: String,
    pub block_time_secs: u64,
    pub poll_interval: Duration,
    /// A block pending longer than this many times its expected
    /// confirmation time is overdue.
    pub overdue_factor: u64,
    /// Outputs in one payout batch at most.
    pub max_payout_outputs: usize,
    /// Test hook: kill the process here.
    pub crash_at: Option<CrashPoint>,
    /// How this coordinator shows itself to others on a shared database
    /// (host, bind address, data directory; a random part per process is
    /// added, so replicas with the same settings stay apart).
    pub coordinator_name: String,
}

impl RewardConfig {
    /// What must be the same on every coordinator of one pool, or blocks
    /// would be credited by whichever one got to them (the pool fee is
    /// shared through the store's settings).
    pub fn rules(&self) -> serde_json::Value {
        serde_json::json!({
            "scheme": self.scheme.to_string(),
            "pplns_window_factor": self.pplns_window_factor,
            "confirmations": self.confirmations,
            "payout_threshold": self.payout_threshold,
            "foundation_address": self.foundation_address,
            "foundation_fee_bps": self.foundation_fee_bps,
            "pool_fee_address": self.pool_fee_address,
            "pool_address": self.pool_address,
            "max_payout_outputs": self.max_payout_outputs,
            "orphan_watch_depth": self.orphan_watch_depth,
        })
    }
}

/// How long a coordinator counts as running after it last told the others
/// its rules (it does every [`RULES_HEARTBEAT`], and at each rewards round).
pub const RULES_LIVE: Duration = Duration::from_secs(30);
/// How often a running coordinator tells the others its rules.
pub const RULES_HEARTBEAT: Duration = Duration::from_secs(10);

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            scheme: PayoutScheme::Pplns,
            pplns_window_factor: 2.0,
            confirmations: 10,
            orphan_watch_depth: 100,
            payout_threshold: 100_000_000,
            foundation_address: DEFAULT_FOUNDATION_ADDRESS.into(),
            foundation_fee_bps: FOUNDATION_FEE_BPS,
            pool_fee_address: "vision-pool".into(),
            pool_address: "vision-pool".into(),
            block_time_secs: 30,
            poll_interval: Duration::from_secs(5),
            overdue_factor: 3,
            max_payout_outputs: 500,
            crash_at: None,
            coordinator_name: "coordinator".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Another running coordinator of this pool has other reward rules.
    #[error("{0}")]
    RulesDiffer(String),
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct RewardMetrics {
    pub(crate) blocks_confirmed: AtomicU64,
    pub(crate) blocks_orphaned: AtomicU64,
    /// Pending blocks past their expected confirmation time (a gauge).
    pub(crate) blocks_overdue: AtomicU64,
    /// Orphans whose credits had been paid out already (operator flagged).
    pub(crate) orphans_after_payout: AtomicU64,
    pub(crate) payouts_paid: AtomicU64,
    pub(crate) payouts_set_aside: AtomicU64,
}

/// A snapshot of `RewardMetrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RewardCounters {
    pub blocks_confirmed: u64,
    pub blocks_orphaned: u64,
    pub blocks_overdue: u64,
    pub orphans_after_payout: u64,
    pub payouts_paid: u64,
    pub payouts_set_aside: u64,
}

pub struct Rewards {
    config: RewardConfig,
    store: Arc<dyn PoolStore>,
    chain: Chain,
    metrics: RewardMetrics,
    /// One round at a time (the maturity pass and the payout pass read
    /// balances they then move).
    round: tokio::sync::Mutex<()>,
    /// Names this pool in idempotency keys, so two pools on one chain never collide.
    payout_tag: String,
    /// Names this process in payout leases (random per start).
    instance: String,
    /// Estimated payouts per worker, from the last round.
    estimates: Mutex<HashMap<String, u64>>,
    /// What they were computed from: ledger length, template id, pool fee.
    estimate_basis: Mutex<Option<(u64, String, u32)>>,
    /// The window the estimates are split over, by worker, kept up to date.
    estimate_tally: tokio::sync::Mutex<WindowTally>,
    /// The window compaction must keep ([`share_compaction`]'s bound).
    keep_tally: tokio::sync::Mutex<WindowTally>,
    /// Found blocks below this are settled: rounds do not read them.
    settled: Mutex<settled_blocks::SettledBlocks>,
}

impl Rewards {
    pub fn new(config: RewardConfig, store: Arc<dyn PoolStore>, chain: Chain) -> Result<Self, RewardError> {
        let secret = store.secret();
        let tag = blake3::keyed_hash(&secret, b"payout idempotency keys");
        Ok(Rewards {
            config,
            store,
            chain,
            metrics: RewardMetrics::default(),
            round: tokio::sync::Mutex::new(()),
            payout_tag: tag.to_hex()[..16].to_string(),
            instance: {
                let mut random = [0u8; 8];
                getrandom::fill(&mut random).map_err(|e| StoreError::Backend(format!("no OS randomness: {e}")))?;
                hex::encode(random)
            },
            estimates: Mutex::new(HashMap::new()),
            estimate_basis: Mutex::new(None),
            estimate_tally: tokio::sync::Mutex::new(WindowTally::new(TallyKey::WorkerId)),
            keep_tally: tokio::sync::Mutex::new(WindowTally::new(TallyKey::Nothing)),
            settled: Mutex::default(),
        })
    }

    pub fn config(&self) -> &RewardConfig {
        &self.config
    }

    pub(crate) fn fees(&self, pool_fee_bps: u32) -> FeeSchedule {
        FeeSchedule {
            foundation_bps: self.config.foundation_fee_bps,
            foundation_address: self.config.foundation_address.clone(),
            pool_fee_bps,
            pool_fee_address: self.config.pool_fee_address.clone(),
        }
    }

    pub fn counters(&self) -> RewardCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let m = &self.metrics;
        RewardCounters {
            blocks_confirmed: get(&m.blocks_confirmed),
            blocks_orphaned: get(&m.blocks_orphaned),
            blocks_overdue: get(&m.blocks_overdue),
            orphans_after_payout: get(&m.orphans_after_payout),
            payouts_paid: get(&m.payouts_paid),
            payouts_set_aside: get(&m.payouts_set_aside),
        }
    }

    /// One round: blocks first (credit, confirm, orphan), then payouts.
    /// `pool_fee_bps` is the operator's fee in force, for blocks credited now.
    pub async fn run_round(&self, now_ms: u64, pool_fee_bps: u32) -> Result<(), RewardError> {
        let _round = self.round.lock().await;
        self.meet_coordinators().await?;
        self.advance_blocks(now_ms, pool_fee_bps).await?;
        self.send_payouts(now_ms).await
    }

    /// This coordinator's name among the others on the store (its host,
    /// `--bind` and `--data-dir`, and this run's instance).
    pub(crate) fn coordinator_name(&self) -> String {
        format!("{} #{}", self.config.coordinator_name, self.instance)
    }

    /// Tells the other coordinators on the store this one's rules, and
    /// fails while one seen lately runs with others: nothing is credited or
    /// paid by this one under mixed rules.
    pub async fn meet_coordinators(&self) -> Result<(), RewardError> {
        let name = self.coordinator_name();
        let rules = self.config.rules();
        let others = self.store.meet_coordinators(&name, &rules, RULES_LIVE).await?;
        let Some(other) = others.first() else { return Ok(()) };
        Err(RewardError::RulesDiffer(format!(
            "coordinator {} (seen {} s ago) shares this pool's database with other reward rules: {} against ours, {}; \
             give every coordinator the same reward flags (a stopped one counts for {} s)",
            other.name,
            other.seen_secs_ago,
            other.rules,
            rules,
            RULES_LIVE.as_secs()
        )))
    }

    /// Makes the writes so far durable, off the runtime.
    async fn flush(&self) -> Result<(), RewardError> {
        Ok(self.store.flush_off_runtime().await?)
    }

    /// The test hook: dies here, as `kill -9` would have it, when asked to.
    pub(crate) fn crash_point(&self, point: CrashPoint) {
        if self.config.crash_at == Some(point) {
            tracing::warn!("crash point {point:?} reached: killing this process (VISION_CRASH_AT)");
            #[cfg(unix)]
            // SAFETY: kill(2) on our own pid; no memory is touched.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            std::process::abort();
        }
    }
}
