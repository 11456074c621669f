//! The pool API (`/pool/*`): what a coordinator serves to miners, to
//! dashboards and to its operator.

use serde::{Deserialize, Serialize};
use visionx::Params;

/// `POST /pool/register` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// A new credential for a new session: send it as `Authorization: Bearer`.
    pub worker_token: String,
    /// The session's public id (bans and the admin API name sessions by it).
    pub session_id: String,
    /// The worker's name in effect (a rename needs the Bearer token of an
    /// earlier session of the same worker).
    pub worker_name: Option<String>,
    pub pool_fee_bps: u32,
    pub foundation_fee_bps: u32,
    /// Where the foundation's fee goes.
    #[serde(default)]
    pub foundation_address: String,
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
    pub params: Params,
    pub network_difficulty: u64,
    pub share_difficulty: u64,
    pub nonce_start: u64,
    pub nonce_end: u64,
    /// The pool's target block time, for the miner's job-age watchdog (0:
    /// not said).
    #[serde(default)]
    pub block_time_secs: u64,
}

/// `POST /pool/share` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// True only when the chain accepted the share as a block.
    pub is_block: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The share difficulty the worker's next job will have.
    pub share_difficulty: u64,
    /// For a share that met the network target: its block's hash...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// ...and what the chain did with it: `accepted`, `rejected`, or
    /// `submitted` (the chain was unreachable; the pool keeps retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
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

impl ShareCounts {
    pub fn add(&mut self, other: &ShareCounts) {
        self.accepted += other.accepted;
        self.stale += other.stale;
        self.rejected += other.rejected;
        self.duplicate += other.duplicate;
    }
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

impl Hashrate {
    pub fn add(&mut self, other: &Hashrate) {
        self.effective_10m += other.effective_10m;
        self.shares_10m += other.shares_10m;
        self.effective_1h += other.effective_1h;
        self.shares_1h += other.shares_1h;
        if let Some(r) = other.reported {
            self.reported = Some(self.reported.unwrap_or(0.0) + r);
        }
    }
}

/// A worker id's figures, over its active sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStats {
    pub worker_id: String,
    pub worker_name: Option<String>,
    pub wallet_address: String,
    pub shares: ShareCounts,
    pub hashrate: Hashrate,
    /// The share difficulty of its most recently active session.
    pub share_difficulty: u64,
    pub last_share_ms: Option<u64>,
    pub online: bool,
    pub blocks_found: u64,
    /// Active sessions (registrations) of this worker id.
    pub sessions: usize,
    /// Base units a block found now would pay it (PPLNS and PROP).
    #[serde(default)]
    pub estimated_payout: Option<u64>,
    /// Set while one of its sessions is banned.
    #[serde(default)]
    pub ban: Option<WorkerBan>,
}

/// Why and until when a worker is banned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBan {
    pub reason: String,
    pub until_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStats {
    pub pool_name: String,
    pub pool_fee_bps: u32,
    pub foundation_fee_bps: u32,
    /// The mandatory foundation fee's address, and the host's fee address.
    pub foundation_address: String,
    pub pool_fee_address: String,
    /// `pplns`, `prop` or `solo`.
    pub payout_scheme: String,
    pub payout_threshold: u64,
    pub confirmations: u64,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureRequest {
    pub pool_name: Option<String>,
    pub pool_fee_bps: Option<u32>,
    pub target_share_seconds: Option<u64>,
    pub min_share_difficulty: Option<u64>,
    pub max_share_difficulty: Option<u64>,
}

/// `GET /pool/bans` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BansResponse {
    pub bans: Vec<BanView>,
}

/// `DELETE /pool/bans/{id}` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnbanResponse {
    /// The session id or worker id given.
    pub unbanned: String,
    /// How many sessions' bans were lifted.
    pub sessions: usize,
}

/// The operator's settings, as `POST /pool/configure`, `/pool/start`,
/// `/pool/stop` answer them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettingsView {
    pub pool_name: String,
    pub pool_fee_bps: u32,
    pub target_share_seconds: u64,
    pub min_share_difficulty: u64,
    pub max_share_difficulty: u64,
    pub running: bool,
}

/// `GET /pool/mode` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeResponse {
    pub running: bool,
    pub settings: PoolSettingsView,
}

/// Where a found block stands (`GET /pool/blocks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockState {
    /// Being submitted, or on the chain waiting for its confirmations.
    Pending,
    /// Deep enough: its reward is payable.
    Confirmed,
    /// Left the chain: it credits nothing.
    Orphaned,
    /// Refused by the chain, or could no longer win.
    Rejected,
}

/// What the chain said to the pool's submission of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionState {
    /// Recorded and being submitted (or retried after a transient failure).
    Submitted,
    Accepted,
    Rejected,
}

/// One entry of `GET /pool/blocks` (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockSummary {
    pub height: u64,
    /// The block's digest (its id on the chain), hex.
    pub hash: String,
    pub status: BlockState,
    pub confirmations: u64,
    /// Base units: the chain's reward once credited, else the template's.
    pub reward: u64,
    /// The worker id whose share was the block.
    pub finder: String,
    pub finder_wallet: String,
    /// When the share was found.
    pub time_ms: u64,
    pub submission: SubmissionState,
    /// Why it was rejected or orphaned (or the last transient failure).
    pub reason: Option<String>,
    /// Pending longer than the pool expects (several confirmation times).
    pub overdue: bool,
    /// Something the operator must look at (an orphan already paid out).
    pub operator_flag: Option<String>,
    /// PROP, an orphan: the height of the block whose credit paid its round.
    #[serde(default)]
    pub round_paid_by: Option<u64>,
    pub session_id: String,
    pub template_id: String,
    pub nonce: u64,
    pub attempts: u32,
    pub updated_ms: u64,
}

/// A block's window of shares (`GET /pool/blocks/{height}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowView {
    /// First and last ledger position in it.
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub shares: u64,
    /// Share difficulty counted (PPLNS counts the share crossing N in part).
    pub difficulty_sum: u128,
    /// PPLNS's N (for PROP and SOLO, the window's own sum).
    pub target: u128,
    /// `difficulty_sum / target`, 0-1.
    pub coverage: f64,
    /// PROP: heights of orphaned blocks whose rounds this window holds too.
    #[serde(default)]
    pub carried_rounds: Vec<u64>,
}

/// One entry of a block's split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntryView {
    pub recipient: String,
    /// `foundation`, `pool_fee` or `miner`.
    pub kind: String,
    pub amount: u64,
}

/// A wallet's part of a block, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletPartView {
    pub wallet: String,
    /// Its share difficulty in the window, and its fraction of the window.
    pub difficulty: u128,
    pub shares: u64,
    pub fraction: f64,
    pub amount: u64,
}

/// A change of a block's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChangeView {
    pub status: String,
    pub reason: String,
    pub at_ms: u64,
}

/// `GET /pool/blocks/{height}`: who got what of a block, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDetail {
    pub height: u64,
    pub hash: String,
    pub status: BlockState,
    pub confirmations: u64,
    pub reward: u64,
    /// `pplns`, `prop` or `solo` (absent until credited).
    pub scheme: Option<String>,
    pub window: Option<WindowView>,
    /// Adds up to `reward` exactly.
    pub split: Vec<SplitEntryView>,
    pub foundation_fee: u64,
    pub pool_fee: u64,
    /// Rounding left from the miners' part (in the foundation's entry).
    pub dust: u64,
    pub wallets: Vec<WalletPartView>,
    pub finder: String,
    pub finder_wallet: String,
    pub time_ms: u64,
    pub reason: Option<String>,
    pub overdue: bool,
    pub operator_flag: Option<String>,
    /// PROP, an orphan: the height of the block whose credit paid its round.
    #[serde(default)]
    pub round_paid_by: Option<u64>,
    pub history: Vec<StatusChangeView>,
}

/// `GET /pool/balances/{wallet}` (base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    pub wallet: String,
    /// From blocks waiting for their confirmations.
    pub immature: u64,
    /// Payable, not yet paid.
    pub confirmed: u64,
    pub paid: u64,
    /// Payouts are made once `confirmed` reaches this.
    pub threshold: u64,
    /// In a payout batch being sent.
    pub sending: u64,
    /// In payouts the chain refused (see `/pool/payouts`).
    pub set_aside: u64,
}

/// What a payout batch paid, or is to pay, one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOutputView {
    pub address: String,
    pub amount: u64,
}

/// One entry of `GET /pool/payouts` (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutView {
    pub id: u64,
    /// `sending`, `paid` or `set_aside`.
    pub status: String,
    pub outputs: Vec<PayoutOutputView>,
    /// The outputs' amounts summed (base units).
    #[serde(default)]
    pub total: u64,
    pub reason: Option<String>,
    /// When the batch was made.
    pub time_ms: u64,
    pub updated_ms: u64,
    /// The chain transfer's key, once the batch is settled (`paid` or
    /// `set_aside`); withheld while `sending`, when the key could still
    /// make a transfer.
    pub idempotency_key: Option<String>,
    pub transfer_id: Option<String>,
    pub attempts: u32,
}

/// One entry of `GET /pool/bans`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BanView {
    pub session_id: String,
    pub worker_id: String,
    pub banned_until_ms: u64,
    pub reason: String,
}

/// One point of `GET /pool/history`: the interval of `span_ms` that ends at
/// `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolSample {
    pub time_ms: u64,
    pub span_ms: u64,
    /// Effective hash rate over the interval: accepted share difficulty / seconds.
    pub hashrate: f64,
    /// What the miners reported, summed (at the interval's end).
    pub reported_hashrate: f64,
    /// Shares judged in the interval, by outcome.
    pub accepted: u64,
    pub stale: u64,
    pub invalid: u64,
    /// Workers online at the interval's end.
    pub workers_online: u64,
}

/// `GET /pool/history?range=10m|1h|24h`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolHistory {
    pub range: String,
    /// The sampling interval; a point covers one or more of them.
    pub interval_ms: u64,
    /// Oldest first; at most 360.
    pub samples: Vec<PoolSample>,
}

/// One point of `GET /pool/workers/{id}/history`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkerSample {
    pub time_ms: u64,
    /// The pool's 10-minute estimate then, and the shares behind it.
    pub effective_10m: f64,
    pub shares_10m: u64,
    pub reported_hashrate: Option<f64>,
    /// Shares accepted in the interval.
    pub accepted: u64,
}

/// `GET /pool/workers/{id}/history`: the last hour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerHistory {
    pub worker_id: String,
    pub interval_ms: u64,
    pub samples: Vec<WorkerSample>,
}
