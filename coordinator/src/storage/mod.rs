//! Durable pool state behind a small trait.
//!
//! [`SledStore`] is the embedded default. Pools that outgrow one machine will
//! run several coordinators on a shared PostgreSQL: that is a second
//! implementation of [`PoolStore`], and nothing outside this module may touch
//! sled's pool trees directly.
//!
//! Accepted shares are an append-only ledger in acceptance order (the payout
//! split reads it); a share and its duplicate key are written in one
//! transaction, so a crash can neither lose the key of a credited share nor
//! credit a share twice.

mod sled_store;

use serde::{Deserialize, Serialize};

pub use sled_store::SledStore;

use crate::chain::BlockTemplate;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Backend(String),
    #[error("storage: corrupt record in {tree}: {message}")]
    Corrupt { tree: &'static str, message: String },
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        StoreError::Backend(err.to_string())
    }
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub wallet_address: String,
    pub worker_name: Option<String>,
    pub version: Option<String>,
    pub token: String,
    pub registered_at_ms: u64,
}

/// An accepted share, as the payout split needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub worker_id: String,
    pub wallet_address: String,
    /// The template the share hashed (a digest depends only on it and the
    /// nonce, so (template, nonce) is the duplicate key).
    pub template_id: String,
    pub job_id: String,
    pub nonce: u64,
    pub share_difficulty: u64,
    pub height: u64,
    pub time_ms: u64,
    pub is_block: bool,
}

/// A job handed to a worker, kept so a restarted pool still knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub worker_id: String,
    pub template_id: String,
    pub height: u64,
    pub share_difficulty: u64,
    pub nonce_start: u64,
    pub nonce_end: u64,
}

/// A block the pool found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBlockRecord {
    pub height: u64,
    pub hash: String,
    pub worker_id: String,
    pub wallet_address: String,
    pub time_ms: u64,
    /// Whether the chain accepted it.
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Operator settings that survive restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    pub pool_name: String,
    pub pool_fee_bps: u32,
    pub target_share_seconds: u64,
    pub min_share_difficulty: u64,
    pub max_share_difficulty: u64,
    pub running: bool,
}

/// What appending a share did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written at this ledger position (not yet durable: see [`PoolStore::flush`]).
    Appended(u64),
    /// The same (template, nonce) was credited before.
    Duplicate,
}

/// Everything the pool persists.
pub trait PoolStore: Send + Sync + 'static {
    fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError>;
    fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError>;
    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError>;

    /// Appends an accepted share unless its (template, nonce) key exists, atomically.
    fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError>;
    fn is_duplicate(&self, template_id: &str, nonce: u64) -> Result<bool, StoreError>;
    /// Up to `limit` shares from ledger position `from` on, in order.
    fn shares_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError>;
    fn share_count(&self) -> Result<u64, StoreError>;

    /// Ban until `until_ms` (epoch ms).
    fn put_ban(&self, worker_id: &str, until_ms: u64) -> Result<(), StoreError>;
    fn remove_ban(&self, worker_id: &str) -> Result<bool, StoreError>;
    fn bans(&self) -> Result<Vec<(String, u64)>, StoreError>;

    fn put_template(&self, template_id: &str, template: &BlockTemplate) -> Result<(), StoreError>;
    fn template(&self, template_id: &str) -> Result<Option<BlockTemplate>, StoreError>;
    fn put_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// Jobs of heights >= `height`.
    fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError>;
    /// Forgets jobs (and templates) of heights below `height`.
    fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError>;

    fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError>;
    fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError>;

    fn settings(&self) -> Result<Option<PoolSettings>, StoreError>;
    fn put_settings(&self, settings: &PoolSettings) -> Result<(), StoreError>;

    /// A number never returned before, by this store, across restarts.
    fn next_id(&self) -> Result<u64, StoreError>;
    /// A 32-byte secret created once per pool (job ids, tokens, share keys).
    fn secret(&self) -> Result<[u8; 32], StoreError>;

    /// Makes every write so far durable (blocks for an fsync).
    fn flush(&self) -> Result<(), StoreError>;
}
