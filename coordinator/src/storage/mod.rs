//! Durable pool state behind a small trait.
//!
//! [`SledStore`] is the embedded default. Pools that outgrow one machine run
//! several coordinators on one PostgreSQL database: [`PgStore`], the second
//! implementation of [`PoolStore`]. Nothing outside this module touches
//! sled's trees or the database's tables directly, and both pass one
//! behaviour suite (`coordinator/tests/store_suite.rs`).
//!
//! Accepted shares are an append-only ledger. Positions are dense and given
//! out in commit order (a reader paging by position never skips a share
//! that commits later), and a share is written together with its duplicate
//! key in one transaction, so a crash can neither lose the key of a
//! credited share nor credit a share twice. Writes become durable on
//! [`PoolStore::flush`]; the pool acknowledges only after that.

mod pg_schema;
mod pg_share_appender;
mod pg_store;
mod reward_records;
mod sled_store;

use serde::{Deserialize, Serialize};

pub use pg_schema::schema_version;
pub use pg_store::{ClientCertificate, DatabaseTls, PgStore};
pub use reward_records::{
    status_name, BalanceBucket, BalanceDelta, BalanceRecord, BlockCredit, BlockRef, BlockRewardRecord, Expectation,
    LeaseTerms, PayoutOutput, PayoutRecord, PayoutStatus, RewardStatus, RewardUpdate, RoundCarry, ShareAggregate,
    StatusChange,
};
pub use sled_store::SledStore;

use vision_protocol::pool::PoolSettingsView;
use vision_protocol::HeaderFields;

use crate::chain::{BlockSubmission, BlockTemplate};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Backend(String),
    #[error("storage: corrupt record in {tree}: {message}")]
    Corrupt { tree: &'static str, message: String },
    /// An update would break a rule of the books (a balance below zero):
    /// nothing of it was applied.
    #[error("storage: refused an update: {0}")]
    Refused(String),
    /// What an update was decided on has changed since it was read
    /// (another coordinator acted first): nothing of it was applied.
    #[error("storage: changed meanwhile: {0}")]
    Conflict(String),
    /// The group commit's flush that was to make this write durable failed
    /// (logged once, where it failed): nothing was acknowledged.
    #[error("storage: flushing to disk failed; nothing was acknowledged")]
    FlushFailed,
}

/// `err` with its causes ("error connecting to server: Connection refused"):
/// the PostgreSQL client and its pool keep the reason in the sources.
pub(crate) fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        StoreError::Backend(err.to_string())
    }
}

/// A worker id, bound to one wallet for good by its first registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub wallet_address: String,
    pub worker_name: Option<String>,
    /// When the id was last registered (bound, or bound again).
    pub registered_at_ms: u64,
    /// Hash of the token of the registration that bound the id: only its
    /// holder may rename the worker (anyone can open a session of a public
    /// id and wallet, so "a session of this worker" proves nothing).
    pub owner_token_hash: String,
}

/// One registration of a worker: the credential a miner works under.
///
/// Only the hash of the bearer token is stored; every registration makes a
/// new session, so knowing a worker's public id and wallet gives no one a
/// credential of another's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public, stable name of the session (a prefix of the token hash).
    pub session_id: String,
    /// blake3 of the bearer token, hex.
    pub token_hash: String,
    pub worker_id: String,
    pub wallet_address: String,
    pub version: Option<String>,
    /// The address it registered from.
    pub source: Option<String>,
    pub created_ms: u64,
    /// Last time the session was seen, to within a day (sessions unseen
    /// for long are pruned).
    pub last_seen_ms: u64,
    /// Has had a share accepted (it no longer draws on its source's budget
    /// for unproven sessions).
    #[serde(default)]
    pub proven: bool,
}

/// An accepted share, as the payout split needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub worker_id: String,
    pub session_id: String,
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

/// Who a (template, nonce) was credited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub position: u64,
    pub session_id: String,
}

/// A job handed to a session, kept so a restarted pool still knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub worker_id: String,
    pub session_id: String,
    pub template_id: String,
    pub height: u64,
    pub share_difficulty: u64,
    pub nonce_start: u64,
    pub nonce_end: u64,
}

/// A template as stored: its own shape, so the wire type can change without
/// making stored templates unreadable (and the other way round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTemplate {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: visionx::Params,
    pub reward: u64,
}

impl From<&BlockTemplate> for StoredTemplate {
    fn from(t: &BlockTemplate) -> Self {
        let h = &t.header;
        StoredTemplate {
            chain_id: h.chain_id.clone(),
            height: h.height,
            parent_hash: h.parent_hash.clone(),
            timestamp: h.timestamp,
            difficulty: h.difficulty,
            tx_root: h.tx_root.clone(),
            miner: h.miner.clone(),
            epoch: t.epoch,
            epoch_seed: t.epoch_seed.clone(),
            pow_message: t.pow_message.clone(),
            params: t.params,
            reward: t.reward,
        }
    }
}

impl From<StoredTemplate> for BlockTemplate {
    fn from(t: StoredTemplate) -> Self {
        BlockTemplate {
            header: HeaderFields {
                chain_id: t.chain_id,
                height: t.height,
                parent_hash: t.parent_hash,
                timestamp: t.timestamp,
                difficulty: t.difficulty,
                tx_root: t.tx_root,
                miner: t.miner,
            },
            epoch: t.epoch,
            epoch_seed: t.epoch_seed,
            pow_message: t.pow_message,
            params: t.params,
            reward: t.reward,
        }
    }
}

/// A template the pool issued jobs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub template: StoredTemplate,
    /// The job counter when the template was first installed: job ranges of
    /// this template are numbered from it, so they never overlap, restarts
    /// included.
    pub first_job_index: u64,
}

/// What the chain did with a found block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    /// Recorded and being submitted (or retried after a transient failure).
    Submitted,
    /// The chain accepted it.
    Accepted,
    /// The chain refused it, or it could no longer win.
    Rejected,
}

/// A block the pool found: recorded before it is submitted, so the chain
/// never holds a pool block the pool has no record of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBlockRecord {
    pub height: u64,
    /// The block's digest (its id on the chain), hex.
    pub hash: String,
    pub template_id: String,
    pub nonce: u64,
    pub worker_id: String,
    pub session_id: String,
    pub wallet_address: String,
    pub time_ms: u64,
    pub status: BlockStatus,
    /// Why it was rejected, or the last transient failure.
    pub reason: Option<String>,
    pub attempts: u32,
    pub updated_ms: u64,
    /// What is sent to the chain (kept for retries after a restart).
    pub submission: BlockSubmission,
    /// The ledger position of the block's own share (where its reward
    /// window ends). Absent from records written before rewards existed.
    #[serde(default)]
    pub share_position: Option<u64>,
    /// The pool fee in force when it was found (its split uses it).
    #[serde(default)]
    pub pool_fee_bps: Option<u32>,
    /// The block's own share, as it is (or is to be) in the ledger: a
    /// coordinator killed between writing the record and appending the
    /// share appends it on restart, so the block's window still ends at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareRecord>,
}

impl FoundBlockRecord {
    /// What writing `self` leaves where `stored` is. Who found the block and
    /// what was sent stay as first recorded; the chain's answer is never
    /// undone by a later write (a coordinator retrying a block another one
    /// settled, a share path recording its block again): `submitted` does
    /// not replace a settled status, nor `rejected` an `accepted` one
    /// (`rejected` becomes `accepted` when the chain turns out to hold the
    /// block). A known share position and share are kept, and the larger
    /// attempt count.
    pub fn written_over(&self, stored: &FoundBlockRecord) -> FoundBlockRecord {
        let rank = |status: BlockStatus| match status {
            BlockStatus::Submitted => 0,
            BlockStatus::Rejected => 1,
            BlockStatus::Accepted => 2,
        };
        let mut merged = stored.clone();
        if rank(self.status) >= rank(stored.status) {
            merged.status = self.status;
            merged.reason = self.reason.clone();
            merged.updated_ms = self.updated_ms;
        }
        merged.share_position = stored.share_position.or(self.share_position);
        merged.share = stored.share.clone().or_else(|| self.share.clone());
        merged.attempts = stored.attempts.max(self.attempts);
        merged
    }
}

/// Another coordinator on the same store, and the reward rules it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorRules {
    pub name: String,
    /// As JSON.
    pub rules: String,
    pub seen_secs_ago: u64,
}

/// A banned session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub session_id: String,
    pub worker_id: String,
    /// The address the banned session worked from: new registrations of the
    /// same worker id from there are refused while the ban lasts.
    pub source: Option<String>,
    pub until_ms: u64,
    pub reason: String,
}

/// Bans put or lifted since a time, as [`PoolStore::ban_changes_since`]
/// answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BanChanges {
    /// The store's clock when the changes were read (ms since the epoch):
    /// the next look asks from a little before it.
    pub now_ms: u64,
    /// The bans in force among those changed.
    pub bans: Vec<BanRecord>,
    /// Sessions whose ban was lifted (changed, and no longer stored).
    pub lifted: Vec<String>,
}

/// How long the log of ban changes is kept (ms): far longer than any look
/// back ([`PoolStore::ban_changes_since`]).
pub const BAN_CHANGES_KEPT_MS: u64 = 3_600_000;

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

impl From<&PoolSettings> for PoolSettingsView {
    fn from(s: &PoolSettings) -> Self {
        PoolSettingsView {
            pool_name: s.pool_name.clone(),
            pool_fee_bps: s.pool_fee_bps,
            target_share_seconds: s.target_share_seconds,
            min_share_difficulty: s.min_share_difficulty,
            max_share_difficulty: s.max_share_difficulty,
            running: s.running,
        }
    }
}

/// The duplicate key of (template, nonce) at `height`, the same in every
/// store: the height (big-endian, so keys of old heights prune as a range)
/// and a hash keyed with the pool secret (nobody can foresee a key).
fn share_key(secret: &[u8; 32], height: u64, template_id: &str, nonce: u64) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new_keyed(secret);
    hasher.update(b"share");
    hasher.update(template_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(&nonce.to_le_bytes());
    let mut key = height.to_be_bytes().to_vec();
    key.extend_from_slice(hasher.finalize().as_bytes());
    key
}

/// What appending a share did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written at this ledger position (not yet durable: see [`PoolStore::flush`]).
    Appended(u64),
    /// The same (template, nonce) was credited before, to this credit.
    Duplicate(Credit),
    /// Refused: the share is below the height the duplicate keys were
    /// pruned to and its template is gone (pruned by this coordinator or
    /// another on a shared store, which may be ahead of this one's chain).
    /// Its key may have been forgotten, so crediting it could credit it
    /// twice: it is stale.
    TemplateGone,
}

/// Everything the pool persists.
#[async_trait::async_trait]
pub trait PoolStore: Send + Sync + 'static {
    /// Binds `worker.worker_id` to its wallet unless it is bound already,
    /// atomically; returns the binding that holds (the existing one, if
    /// any, with its `registered_at_ms` moved on to this registration's: a
    /// prune of workers racing the registration keeps it).
    async fn bind_worker(&self, worker: &WorkerRecord) -> Result<WorkerRecord, StoreError>;
    /// Overwrites a bound worker's record (same wallet; a rename).
    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError>;
    async fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError>;

    /// Stores a new session (a registration's).
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Moves a stored session's `last_seen_ms` on to `seen_ms` (never back)
    /// and marks it `proven` if asked (never unmarks it); returns the record
    /// now stored. Inserts nothing: `None` when none is stored, so a late
    /// write can never bring back a session a prune forgot (nor one whose
    /// worker was pruned after it), and coordinators touching one session
    /// cannot undo each other's changes.
    async fn touch_session(
        &self,
        token_hash: &str,
        seen_ms: u64,
        proven: bool,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// A stored session, as it is (tools and tests; the pool touches).
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Forgets sessions last seen before `seen_before_ms`, and those never
    /// `proven` last seen before `unproven_seen_before_ms`; returns how many.
    async fn prune_sessions(&self, seen_before_ms: u64, unproven_seen_before_ms: u64) -> Result<usize, StoreError>;
    /// Forgets workers registered before `registered_before_ms` that no
    /// stored session names (their ids are free to bind again, and their
    /// names and owners go with them); returns how many. Shares and
    /// balances name their worker and wallet themselves: nothing the
    /// rewards need is here.
    async fn prune_workers_without_sessions(&self, registered_before_ms: u64) -> Result<usize, StoreError>;

    /// Appends an accepted share unless its (template, nonce) key exists,
    /// atomically. Below the height keys were pruned to, only while the
    /// share's template is still stored ([`AppendOutcome::TemplateGone`]):
    /// a template stored there was claimed after the prune (a tip that went
    /// down; a pruned one is never stored again, or counts as gone), so
    /// its keys are whole. Dropping the future does
    /// not undo an append that has begun: the share may be in the ledger
    /// without an answer.
    async fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError>;
    /// Who `(template_id, nonce)` at `height` was credited to, if anyone.
    async fn credited(&self, height: u64, template_id: &str, nonce: u64) -> Result<Option<Credit>, StoreError>;
    /// Up to `limit` shares from ledger position `from` on, in order.
    async fn shares_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError>;
    /// Ledger positions given out so far (kept as a number, never a scan).
    async fn ledger_len(&self) -> Result<u64, StoreError>;
    /// Forgets duplicate keys of heights below `height`, with the templates
    /// of those heights (remembered as pruned, so never claimed again): no
    /// share of them can be judged any more.
    /// First raises the height keys were pruned to (never lowers it: keys
    /// forgotten stay forgotten), so a share of a forgotten key is refused
    /// rather than credited again, even one sent through a coordinator
    /// whose chain is behind the pruner's.
    async fn prune_share_keys_below(&self, height: u64) -> Result<usize, StoreError>;
    /// Up to `limit` shares at positions <= `last`, newest first.
    async fn shares_back_from(&self, last: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError>;
    /// The lowest ledger position not compacted (shares below it live on
    /// only in [`PoolStore::share_aggregates`]).
    async fn ledger_floor(&self) -> Result<u64, StoreError>;
    /// Folds up to `max` shares from the floor up to (not including)
    /// `below` into per-worker aggregates, atomically; returns how many.
    async fn compact_shares_below(&self, below: u64, max: usize) -> Result<usize, StoreError>;
    async fn share_aggregates(&self) -> Result<Vec<ShareAggregate>, StoreError>;

    /// Applies one change of reward state (block records, payout records,
    /// balance movements) atomically; refuses it whole if a balance part
    /// would go below zero, or (`Conflict`) if one of its expectations no
    /// longer holds.
    async fn apply_reward_update(&self, update: &RewardUpdate) -> Result<(), StoreError>;
    /// Every block's reward record, in height order.
    async fn block_rewards(&self) -> Result<Vec<BlockRewardRecord>, StoreError>;
    /// Reward records of heights >= `height`, in height order.
    async fn block_rewards_from(&self, height: u64) -> Result<Vec<BlockRewardRecord>, StoreError>;
    /// The reward record of one block, if it has one.
    async fn block_reward(&self, height: u64, hash: &str) -> Result<Option<BlockRewardRecord>, StoreError>;
    async fn balance(&self, wallet: &str) -> Result<Option<BalanceRecord>, StoreError>;
    async fn balances(&self) -> Result<Vec<BalanceRecord>, StoreError>;
    /// The balances with a confirmed (payable) part above zero, without a
    /// scan of every wallet the pool ever credited.
    async fn balances_confirmed(&self) -> Result<Vec<BalanceRecord>, StoreError>;
    /// Every payout batch, oldest first.
    async fn payouts(&self) -> Result<Vec<PayoutRecord>, StoreError>;
    /// Up to `limit` payout batches, newest first; with `wallet`, those
    /// paying it; with `before`, only ids below it (the next page). Reads
    /// what it returns, not the whole history (the API's lists are open to
    /// anyone).
    async fn payouts_newest(
        &self,
        limit: usize,
        wallet: Option<&str>,
        before: Option<u64>,
    ) -> Result<Vec<PayoutRecord>, StoreError>;
    async fn payout(&self, id: u64) -> Result<Option<PayoutRecord>, StoreError>;
    /// The batches still `sending`, oldest first (without a scan of all).
    async fn payouts_sending(&self) -> Result<Vec<PayoutRecord>, StoreError>;
    /// Claims batch `id` for `holder` for `terms.lease_ms` from now (the
    /// store's clock), if it is still `sending` and no other holder's lease
    /// runs. Its holder claims it again (retries) while at least
    /// `terms.send_ms` of its lease is left, without extending it: renewed,
    /// one coordinator whose node keeps failing its transfers would hold
    /// the batch (and with it every payout) for as long as it runs. Once a
    /// lease has run out, its last holder may claim the batch again only
    /// `terms.handover_ms` after any other coordinator may, so another gets
    /// it first. Returns the batch as stored now, to be sent as it is
    /// (never an older copy, whose key may have been replaced).
    /// Coordinators on a shared store send a batch one at a time; the
    /// chain's idempotency key and [`Expectation`]s keep it paid once even
    /// when a lease runs out mid-send.
    async fn claim_payout(&self, id: u64, holder: &str, terms: LeaseTerms) -> Result<Option<PayoutRecord>, StoreError>;

    async fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError>;
    async fn remove_ban(&self, session_id: &str) -> Result<bool, StoreError>;
    /// Removes `session_id`'s ban only if it is the one that ran out at
    /// `until_ms`: another coordinator may have banned the session again
    /// since. Returns whether it did.
    async fn remove_expired_ban(&self, session_id: &str, until_ms: u64) -> Result<bool, StoreError>;
    async fn bans(&self) -> Result<Vec<BanRecord>, StoreError>;
    /// The bans put or lifted at or after `since_ms` by the store's clock
    /// (a put or removal logs the change, with the store's time, in the
    /// same transaction; the log is kept [`BAN_CHANGES_KEPT_MS`]). A change
    /// committed late may carry a time a little before a look that missed
    /// it: callers look back a few seconds, and read everything now and then.
    async fn ban_changes_since(&self, since_ms: u64) -> Result<BanChanges, StoreError>;

    /// Stores `template` as the template of its tip (height and parent)
    /// unless one is stored for that tip already; returns the id and record
    /// that hold. Every coordinator on a shared store so mines one template
    /// per tip, and its job ranges, numbered from the record's
    /// `first_job_index` with ids from [`PoolStore::next_id`], never overlap.
    /// A template pruned with its keys is refused ([`StoreError::Refused`]).
    async fn claim_template(
        &self,
        template_id: &str,
        template: &TemplateRecord,
    ) -> Result<(String, TemplateRecord), StoreError>;
    /// Notes that coordinator `name` mines `height` now (by the store's
    /// clock), and returns the heights the other coordinators noted within
    /// `live` (readiness: a coordinator most of them are ahead of is behind).
    async fn exchange_tips(&self, name: &str, height: u64, live: std::time::Duration) -> Result<Vec<u64>, StoreError>;
    /// The highest height below `height` a template is stored for (`None`:
    /// none is), by whichever coordinator: what a coordinator's first
    /// template of a run, at `height`, replaces for pruning. (Below it: a
    /// far template stored in a glitch must not lift the cap of the next
    /// run's first template, though it claims that very tip again.)
    async fn highest_template_height_below(&self, height: u64) -> Result<Option<u64>, StoreError>;
    async fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, StoreError>;
    async fn put_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// One job by id (a job another coordinator issued, say).
    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Jobs of heights >= `height`.
    async fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError>;
    /// Forgets jobs of heights below `height` (their templates go with their
    /// keys, in [`PoolStore::prune_share_keys_below`]).
    async fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError>;

    /// Inserts or updates a found block (keyed by height and hash), by
    /// [`FoundBlockRecord::written_over`] what is stored, atomically.
    async fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError>;
    async fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError>;
    /// Up to `limit` found blocks, highest first (reads only those).
    async fn found_blocks_newest(&self, limit: usize) -> Result<Vec<FoundBlockRecord>, StoreError>;
    /// Found blocks of heights >= `height`, in height order.
    async fn found_blocks_from(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError>;
    /// The found blocks at `height` (one, unless the pool found rivals).
    async fn found_blocks_at(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError>;

    async fn settings(&self) -> Result<Option<PoolSettings>, StoreError>;
    /// Stores `settings` only while the stored ones are `expected` (`None`:
    /// none are stored yet), else [`StoreError::Conflict`]: an operator's
    /// change through one coordinator never undoes another's made since it
    /// read them.
    async fn put_settings(&self, settings: &PoolSettings, expected: Option<&PoolSettings>) -> Result<(), StoreError>;

    /// Returns the other coordinators seen within `live` whose reward rules
    /// differ from `rules`; when there are none, notes that coordinator
    /// `name` runs with `rules` now (by the store's clock). A store that one
    /// coordinator has to itself (sled) has none.
    async fn meet_coordinators(
        &self,
        name: &str,
        rules: &serde_json::Value,
        live: std::time::Duration,
    ) -> Result<Vec<CoordinatorRules>, StoreError>;

    /// A number never returned before, by this store, across restarts.
    async fn next_id(&self) -> Result<u64, StoreError>;
    /// A 32-byte secret created once per pool (job ids, share keys); read
    /// when the store opens.
    fn secret(&self) -> [u8; 32];

    /// Makes every write so far durable. Blocking (an fsync): called from
    /// the group-commit thread or `spawn_blocking`, never on the runtime.
    /// A store whose writes are durable when they return does nothing.
    fn flush(&self) -> Result<(), StoreError>;

    /// [`PoolStore::flush`] from async code: on a blocking thread where it
    /// fsyncs, counted in [`PoolStore::calls_in_flight`].
    async fn flush_off_runtime(&self) -> Result<(), StoreError>;

    /// `sled` or `postgres`, for the metrics.
    fn backend(&self) -> &'static str;

    /// Calls still running on blocking threads, holding the store's files
    /// (a stopping server waits for none, so the data directory can be
    /// opened again when it returns). None for a store without any.
    fn calls_in_flight(&self) -> usize {
        0
    }
    /// Commits that made writes durable since this process opened the
    /// store, for the metrics: sled's flushes (one for many writes, the
    /// group commit) or PostgreSQL's share-append batches (one transaction
    /// for many shares). Against accepted shares, how well they group.
    fn commits(&self) -> u64;
}

/// A credit for unit tests: `window` split from a reward of 1000, 1% to
/// "foundation", no pool fee.
#[cfg(test)]
pub(crate) fn test_block_credit(
    scheme: crate::rewards::reward_split::PayoutScheme,
    window: crate::rewards::reward_split::RewardWindow,
) -> BlockCredit {
    let fees = crate::rewards::reward_split::FeeSchedule {
        foundation_bps: 100,
        foundation_address: "foundation".into(),
        pool_fee_bps: 0,
        pool_fee_address: "host".into(),
    };
    let split = crate::rewards::reward_split::split_reward(1_000, &fees, &window);
    BlockCredit { scheme, pool_fee_bps: 0, window, split, confirmed: false, credited_ms: 0, carried_rounds: Vec::new() }
}

/// A found block for unit tests: accepted, found by worker "w".
#[cfg(test)]
pub(crate) fn test_found_block(height: u64, hash: &str, status: BlockStatus, position: u64) -> FoundBlockRecord {
    let header = HeaderFields {
        chain_id: "c".into(),
        height,
        parent_hash: String::new(),
        timestamp: 0,
        difficulty: 1,
        tx_root: String::new(),
        miner: "m".into(),
    };
    FoundBlockRecord {
        height,
        hash: hash.into(),
        template_id: "t".into(),
        nonce: 0,
        worker_id: "w".into(),
        session_id: "s".into(),
        wallet_address: "a".into(),
        time_ms: height,
        status,
        reason: None,
        attempts: 1,
        updated_ms: height,
        submission: BlockSubmission { header, nonce: 0 },
        share_position: Some(position),
        pool_fee_bps: None,
        share: None,
    }
}

#[cfg(test)]
mod error_text_tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server")]
    struct Connecting(#[source] std::io::Error);

    #[test]
    fn causes_are_said_once_each() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(with_causes(&Connecting(refused)), "error connecting to server: Connection refused");
        let plain = std::io::Error::other("disk full");
        assert_eq!(with_causes(&plain), "disk full");
    }
}
