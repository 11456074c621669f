//! The pool API (`/pool/*`): what a coordinator serves to miners, to
//! dashboards and to its operator.

use serde::{Deserialize, Serialize};
use visionx::Params;

use crate::node::BlockSubmission;

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

/// What the chain did with a found block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBlockStatus {
    /// Recorded and being submitted (or retried after a transient failure).
    Submitted,
    Accepted,
    /// Refused by the chain, or could no longer win.
    Rejected,
}

/// One entry of `GET /pool/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBlockView {
    pub height: u64,
    /// The block's digest (its id on the chain), hex.
    pub hash: String,
    pub template_id: String,
    pub nonce: u64,
    pub worker_id: String,
    pub session_id: String,
    pub wallet_address: String,
    pub time_ms: u64,
    pub status: FoundBlockStatus,
    pub reason: Option<String>,
    pub attempts: u32,
    pub updated_ms: u64,
    pub submission: BlockSubmission,
}

/// `GET /pool/blocks`: every found block, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlocksResponse {
    pub blocks: Vec<FoundBlockView>,
}

/// One entry of `GET /pool/bans`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BanView {
    pub session_id: String,
    pub worker_id: String,
    pub banned_until_ms: u64,
    pub reason: String,
}
