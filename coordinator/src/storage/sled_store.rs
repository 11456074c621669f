use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use std::collections::{BTreeMap, HashMap};

use super::{
    AppendOutcome, BalanceRecord, BanChanges, BanRecord, BlockRewardRecord, CoordinatorRules, Credit, Expectation,
    FoundBlockRecord, JobRecord, LeaseTerms, PayoutRecord, PayoutStatus, PoolSettings, PoolStore, RewardUpdate,
    SessionRecord, ShareAggregate, ShareRecord, StoreError, TemplateRecord, WorkerRecord, BAN_CHANGES_KEPT_MS,
};
use crate::blocking_calls::BlockingCalls;

/// `pool_meta` key of the lowest uncompacted ledger position (u64 BE).
const LEDGER_FLOOR: &str = "ledger_floor";
/// `pool_meta` key of the height duplicate keys were pruned to (u64 BE).
const SHARE_KEYS_PRUNED_BELOW: &str = "share_keys_pruned_below";
/// Set once the indexes of payouts (by wallet, still sending) and of
/// confirmed balances hold every record. (v1 marked the wallet index alone,
/// in builds of one day: v2 builds all three again.)
const PAYOUT_INDEX_BUILT: &str = "payout_index_v2";

/// The pool's sled trees, with the store's operations as blocking calls.
#[derive(Clone)]
pub(crate) struct SledTrees {
    db: sled::Db,
    workers: sled::Tree,
    /// token hash -> SessionRecord.
    sessions: sled::Tree,
    /// position BE -> ShareRecord.
    shares: sled::Tree,
    /// height BE ++ keyed hash(template, nonce) -> position BE ++ session id.
    share_keys: sled::Tree,
    bans: sled::Tree,
    /// time (ms BE) ++ session id -> nothing: a log of ban puts and
    /// removals, kept [`BAN_CHANGES_KEPT_MS`].
    ban_changes: sled::Tree,
    blocks: sled::Tree,
    meta: sled::Tree,
    /// height BE ++ job id -> JobRecord.
    jobs: sled::Tree,
    /// template id -> (height BE ++ TemplateRecord JSON).
    templates: sled::Tree,
    /// height BE ++ parent hash -> template id: the one template of a tip.
    template_tips: sled::Tree,
    /// job id -> height BE (the key of its `jobs` entry).
    job_heights: sled::Tree,
    /// height BE ++ hash -> BlockRewardRecord.
    block_rewards: sled::Tree,
    /// wallet -> BalanceRecord.
    balances: sled::Tree,
    /// payout id BE -> PayoutRecord.
    payouts: sled::Tree,
    /// wallet, 0, payout id (big-endian) -> nothing: a wallet's payouts
    /// without a scan of all of them. Entries of removed batches stay (a
    /// read checks the batch); they are a few bytes each.
    payout_index: sled::Tree,
    /// payout id -> nothing, for the batches still `sending`.
    payouts_sending: sled::Tree,
    /// wallet -> nothing, for the balances with a confirmed part above zero.
    balances_confirmed: sled::Tree,
    /// worker id -> ShareAggregate (compacted shares).
    share_aggregates: sled::Tree,
    /// The next ledger position. Appends take it under this lock and commit
    /// before releasing it, so positions commit in order (no gaps a reader
    /// could page past).
    next_position: Arc<Mutex<u64>>,
    /// Duplicate keys below this height may have been forgotten: a share
    /// there needs its template still stored. Raised, and templates below
    /// it removed, under `next_position`'s lock, so an append sees both or
    /// neither.
    share_keys_pruned_below: Arc<AtomicU64>,
    /// Held by a prune of share keys throughout.
    prune_lock: Arc<Mutex<()>>,
    /// The height a prune in progress forgets below (0: none). A template
    /// is claimed under this lock, and one below it waits for the prune: it
    /// could otherwise keep its place while its keys are forgotten.
    pruning_below: Arc<Mutex<u64>>,
    /// template id -> height BE: templates pruned with their keys, never
    /// claimed again (kept 1,000 heights).
    pruned_templates: sled::Tree,
    /// Coordinator name -> (the height it mines, when it said so): kept
    /// in memory, as sled lets one process open the data directory (a
    /// process's pools share it; after a restart they say so again).
    coordinator_tips: Arc<Mutex<CoordinatorTips>>,
    /// Read once at open: it keys every share, so it must not cost a read per share.
    secret: [u8; 32],
}

/// The pool's secret, created on first open (kept across restarts).
fn load_or_create_secret(db: &sled::Db, meta: &sled::Tree) -> Result<[u8; 32], StoreError> {
    if meta.get("secret")?.is_none() {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Backend(format!("no OS randomness: {e}")))?;
        // Another opener may have raced us: keep whichever landed first.
        let _ = meta.compare_and_swap("secret", None as Option<&[u8]>, Some(&fresh[..]))?;
        db.flush()?;
    }
    let stored = meta.get("secret")?.ok_or_else(|| StoreError::Backend("pool secret vanished".into()))?;
    stored.as_ref().try_into().map_err(|_| StoreError::Corrupt { tree: "pool_meta", message: "secret".into() })
}

/// Coordinator name -> (the height it mines, when it said so).
type CoordinatorTips = HashMap<String, (u64, std::time::Instant)>;

/// A binding registered again at `at_ms`: the same record, its
/// registration time moved on (never back).
fn registered_again(held: WorkerRecord, at_ms: u64) -> WorkerRecord {
    WorkerRecord { registered_at_ms: held.registered_at_ms.max(at_ms), ..held }
}

/// sled's clock for the ban log: this machine's (one coordinator).
fn clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ban_transaction_error(err: TransactionError<()>) -> StoreError {
    match err {
        TransactionError::Storage(e) => e.into(),
        TransactionError::Abort(()) => StoreError::Backend("ban update aborted".into()),
    }
}

fn be_u64(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt { tree, message: "expected 8 bytes".into() })
}

impl SledTrees {
    /// Opens (or creates) the pool's trees in `db`.
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let meta = db.open_tree("pool_meta")?;
        let shares = db.open_tree("pool_shares")?;
        // Compaction may have removed every share: the floor remembers
        // where the ledger had got to.
        let floor = meta.get(LEDGER_FLOOR)?.map(|v| be_u64("pool_meta", &v)).transpose()?.unwrap_or(0);
        let next_position = match shares.last()? {
            Some((key, _)) => be_u64("pool_shares", &key)? + 1,
            None => 0,
        }
        .max(floor);
        let share_keys_pruned_below =
            meta.get(SHARE_KEYS_PRUNED_BELOW)?.map(|v| be_u64("pool_meta", &v)).transpose()?.unwrap_or(0);
        let payouts = db.open_tree("pool_payouts")?;
        let payout_index = db.open_tree("pool_payouts_by_wallet")?;
        let payouts_sending = db.open_tree("pool_payouts_sending")?;
        let balances = db.open_tree("pool_balances")?;
        let balances_confirmed = db.open_tree("pool_balances_confirmed")?;
        if meta.get(PAYOUT_INDEX_BUILT)?.is_none() {
            // A data directory from before the indexes: built once, here.
            for value in payouts.iter().values() {
                let payout: PayoutRecord = decode("pool_payouts", &value?)?;
                for output in &payout.outputs {
                    payout_index.insert(payout_index_key(&output.address, payout.id), &[][..])?;
                }
                if payout.status == PayoutStatus::Sending {
                    payouts_sending.insert(payout.id.to_be_bytes(), &[][..])?;
                }
            }
            for value in balances.iter().values() {
                let balance: BalanceRecord = decode("pool_balances", &value?)?;
                if balance.confirmed > 0 {
                    balances_confirmed.insert(balance.wallet.as_bytes(), &[][..])?;
                }
            }
            meta.insert(PAYOUT_INDEX_BUILT, &[1u8][..])?;
        }
        Ok(SledTrees {
            secret: load_or_create_secret(db, &meta)?,
            db: db.clone(),
            workers: db.open_tree("pool_workers")?,
            sessions: db.open_tree("pool_sessions")?,
            shares,
            share_keys: db.open_tree("pool_share_keys")?,
            bans: db.open_tree("pool_bans")?,
            ban_changes: db.open_tree("pool_ban_changes")?,
            blocks: db.open_tree("pool_found_blocks")?,
            meta,
            jobs: db.open_tree("pool_jobs")?,
            templates: db.open_tree("pool_templates")?,
            template_tips: db.open_tree("pool_template_tips")?,
            job_heights: db.open_tree("pool_job_heights")?,
            block_rewards: db.open_tree("pool_block_rewards")?,
            payouts,
            payout_index,
            payouts_sending,
            balances,
            balances_confirmed,
            share_aggregates: db.open_tree("pool_share_aggregates")?,
            next_position: Arc::new(Mutex::new(next_position)),
            share_keys_pruned_below: Arc::new(AtomicU64::new(share_keys_pruned_below)),
            prune_lock: Arc::new(Mutex::new(())),
            pruning_below: Arc::new(Mutex::new(0)),
            pruned_templates: db.open_tree("pool_pruned_templates")?,
            coordinator_tips: Arc::default(),
        })
    }

    fn share_key(&self, height: u64, template_id: &str, nonce: u64) -> Vec<u8> {
        super::share_key(&self.secret, height, template_id, nonce)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

fn decode<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { tree, message: e.to_string() })
}

/// The wallet index of payout batches: wallet ++ 0 ++ batch id BE.
fn payout_index_key(wallet: &str, id: u64) -> Vec<u8> {
    let mut key = wallet.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Found blocks and their reward records: height BE ++ hash.
fn block_key(height: u64, hash: &str) -> Vec<u8> {
    let mut key = height.to_be_bytes().to_vec();
    key.extend_from_slice(hash.as_bytes());
    key
}

/// Why a transaction gave up (sled's abort payload).
#[derive(Debug)]
enum Abort {
    /// A stored record did not decode.
    Corrupt(String),
    /// The update would break a rule of the books.
    Refused(String),
    /// What the update was decided on has changed.
    Conflict(String),
}

/// A transaction's result as the store's.
fn transaction_result(tree: &'static str, result: Result<(), TransactionError<Abort>>) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Storage(e)) => Err(e.into()),
        Err(TransactionError::Abort(Abort::Corrupt(message))) => Err(StoreError::Corrupt { tree, message }),
        Err(TransactionError::Abort(Abort::Refused(message))) => Err(StoreError::Refused(message)),
        Err(TransactionError::Abort(Abort::Conflict(message))) => Err(StoreError::Conflict(message)),
    }
}

fn decode_credit(bytes: &[u8]) -> Result<Credit, StoreError> {
    Ok(Credit {
        position: be_u64("pool_share_keys", bytes)?,
        session_id: String::from_utf8_lossy(&bytes[8..]).into_owned(),
    })
}

impl SledTrees {
    fn bind_worker(&self, worker: &WorkerRecord) -> Result<WorkerRecord, StoreError> {
        let key = worker.worker_id.as_bytes();
        let mut current: Option<sled::IVec> = None;
        loop {
            let next = match &current {
                None => worker.clone(),
                Some(bytes) => registered_again(decode("pool_workers", bytes)?, worker.registered_at_ms),
            };
            // A prune compares the whole record: the new time makes it keep
            // the binding, whichever of the two goes first.
            match self.workers.compare_and_swap(key, current.as_deref(), Some(encode(&next)))? {
                Ok(()) => return Ok(next),
                Err(changed) => current = changed.current,
            }
        }
    }

    fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.workers.insert(worker.worker_id.as_bytes(), encode(worker))?;
        Ok(())
    }

    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError> {
        self.workers.get(worker_id.as_bytes())?.map(|v| decode("pool_workers", &v)).transpose()
    }

    fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.insert(session.token_hash.as_bytes(), encode(session))?;
        Ok(())
    }

    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions.get(token_hash.as_bytes())?.map(|v| decode("pool_sessions", &v)).transpose()
    }

    fn touch_session(&self, token_hash: &str, seen_ms: u64, proven: bool) -> Result<Option<SessionRecord>, StoreError> {
        let key = token_hash.as_bytes();
        let mut current = self.sessions.get(key)?;
        loop {
            let Some(stored) = current else { return Ok(None) };
            let mut session: SessionRecord = decode("pool_sessions", &stored)?;
            session.last_seen_ms = session.last_seen_ms.max(seen_ms);
            session.proven |= proven;
            match self.sessions.compare_and_swap(key, Some(&stored), Some(encode(&session)))? {
                Ok(()) => return Ok(Some(session)),
                Err(changed) => current = changed.current,
            }
        }
    }

    fn prune_sessions(&self, seen_before_ms: u64, unproven_seen_before_ms: u64) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for item in self.sessions.iter() {
            let (key, value) = item?;
            let session: SessionRecord = decode("pool_sessions", &value)?;
            let cutoff = if session.proven { seen_before_ms } else { seen_before_ms.max(unproven_seen_before_ms) };
            // Only the record read: one touched meanwhile stays.
            if session.last_seen_ms < cutoff
                && self.sessions.compare_and_swap(&key, Some(value), None::<&[u8]>)?.is_ok()
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    fn prune_workers_without_sessions(&self, registered_before_ms: u64) -> Result<usize, StoreError> {
        let mut named = std::collections::HashSet::new();
        for value in self.sessions.iter().values() {
            named.insert(decode::<SessionRecord>("pool_sessions", &value?)?.worker_id);
        }
        let mut pruned = 0;
        for item in self.workers.iter() {
            let (key, value) = item?;
            let worker: WorkerRecord = decode("pool_workers", &value)?;
            // Only the record read: one registered again meanwhile (its time moved on, or a new owner) stays.
            if worker.registered_at_ms < registered_before_ms
                && !named.contains(&worker.worker_id)
                && self.workers.compare_and_swap(&key, Some(value), None::<&[u8]>)?.is_ok()
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError> {
        let key = self.share_key(share.height, &share.template_id, share.nonce);
        let value = encode(share);
        let mut next = self.next_position.lock().expect("ledger position lock");
        if share.height < self.share_keys_pruned_below.load(Ordering::Relaxed)
            && !self.templates.contains_key(share.template_id.as_bytes())?
        {
            return Ok(AppendOutcome::TemplateGone);
        }
        let position = *next;
        let mut credit = position.to_be_bytes().to_vec();
        credit.extend_from_slice(share.session_id.as_bytes());
        let result = (&self.shares, &self.share_keys).transaction(|(shares, keys)| {
            if let Some(existing) = keys.get(&key)? {
                return Ok(Some(existing));
            }
            keys.insert(key.as_slice(), credit.as_slice())?;
            shares.insert(&position.to_be_bytes()[..], value.as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(None)
        });
        match result {
            Ok(None) => {
                *next += 1;
                Ok(AppendOutcome::Appended(position))
            }
            Ok(Some(existing)) => Ok(AppendOutcome::Duplicate(decode_credit(&existing)?)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Backend("share append aborted".into())),
        }
    }

    fn credited(&self, height: u64, template_id: &str, nonce: u64) -> Result<Option<Credit>, StoreError> {
        self.share_keys.get(self.share_key(height, template_id, nonce))?.map(|v| decode_credit(&v)).transpose()
    }

    fn shares_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.shares
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                Ok((be_u64("pool_shares", &k)?, decode("pool_shares", &v)?))
            })
            .collect()
    }

    fn ledger_len(&self) -> u64 {
        *self.next_position.lock().expect("ledger position lock")
    }

    fn prune_share_keys_below(&self, height: u64) -> Result<usize, StoreError> {
        let _prune = self.prune_lock.lock().expect("prune lock");
        *self.pruning_below.lock().expect("pruning lock") = height;
        let pruned = self.prune_share_keys_holding_lock(height);
        *self.pruning_below.lock().expect("pruning lock") = 0;
        pruned
    }

    fn prune_share_keys_holding_lock(&self, height: u64) -> Result<usize, StoreError> {
        {
            let _appends = self.next_position.lock().expect("ledger position lock");
            if height > self.share_keys_pruned_below.load(Ordering::Relaxed) {
                self.meta.insert(SHARE_KEYS_PRUNED_BELOW, &height.to_be_bytes()[..])?;
                self.share_keys_pruned_below.store(height, Ordering::Relaxed);
            }
            self.prune_templates_below(height)?;
        }
        for item in self.pruned_templates.iter() {
            let (key, value) = item?;
            if be_u64("pool_pruned_templates", &value)?.saturating_add(1_000) < height {
                self.pruned_templates.remove(key)?;
            }
        }
        // On disk before any key goes; not under the appends' lock (they
        // run on the runtime's threads).
        self.db.flush()?;
        let mut pruned = 0;
        for key in self.share_keys.range(..height.to_be_bytes()).keys() {
            self.share_keys.remove(key?)?;
            pruned += 1;
        }
        Ok(pruned)
    }

    fn shares_back_from(&self, last: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.shares
            .range(..=last.to_be_bytes())
            .rev()
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                Ok((be_u64("pool_shares", &k)?, decode("pool_shares", &v)?))
            })
            .collect()
    }

    fn ledger_floor(&self) -> Result<u64, StoreError> {
        let stored = self.meta.get(LEDGER_FLOOR)?.map(|v| be_u64("pool_meta", &v)).transpose()?.unwrap_or(0);
        // Nothing below the first share left is in the ledger either.
        let first = self.shares.first()?.map(|(k, _)| be_u64("pool_shares", &k)).transpose()?;
        Ok(first.map_or(self.ledger_len(), |f| f.max(stored)).max(stored))
    }

    fn compact_shares_below(&self, below: u64, max: usize) -> Result<usize, StoreError> {
        let floor = self.ledger_floor()?;
        let below = below.min(self.ledger_len());
        if below <= floor || max == 0 {
            return Ok(0);
        }
        let batch: Vec<(u64, ShareRecord)> =
            self.shares_from(floor, max)?.into_iter().filter(|(p, _)| *p < below).collect();
        let new_floor = batch.last().map_or(below, |(p, _)| p + 1);
        let folded = ShareAggregate::fold(&batch);
        let result = (&self.shares, &self.share_aggregates, &self.meta).transaction(|(shares, aggregates, meta)| {
            for (position, _) in &batch {
                shares.remove(&position.to_be_bytes()[..])?;
            }
            for (worker, add) in &folded {
                let merged = match aggregates.get(worker.as_bytes())? {
                    Some(bytes) => {
                        let mut old: ShareAggregate = serde_json::from_slice(&bytes).map_err(|e| {
                            ConflictableTransactionError::Abort(Abort::Corrupt(format!("corrupt aggregate: {e}")))
                        })?;
                        old.absorb(add);
                        old
                    }
                    None => add.clone(),
                };
                aggregates.insert(worker.as_bytes(), encode(&merged))?;
            }
            meta.insert(LEDGER_FLOOR, &new_floor.to_be_bytes()[..])?;
            Ok::<_, ConflictableTransactionError<Abort>>(())
        });
        transaction_result("pool_share_aggregates", result)?;
        Ok(batch.len())
    }

    fn share_aggregates(&self) -> Result<Vec<ShareAggregate>, StoreError> {
        self.share_aggregates.iter().values().map(|v| decode("pool_share_aggregates", &v?)).collect()
    }

    fn apply_reward_update(&self, update: &RewardUpdate) -> Result<(), StoreError> {
        // Net movements per wallet and part, so a wallet is read once.
        let mut deltas: BTreeMap<&str, Vec<(super::BalanceBucket, i128)>> = BTreeMap::new();
        for delta in &update.balances {
            deltas.entry(delta.wallet.as_str()).or_default().push((delta.bucket, delta.amount));
        }
        let blocks: Vec<(Vec<u8>, Vec<u8>)> =
            update.blocks.iter().map(|b| (block_key(b.height, &b.hash), encode(b))).collect();
        let payouts: Vec<([u8; 8], Vec<u8>)> = update.payouts.iter().map(|p| (p.id.to_be_bytes(), encode(p))).collect();
        let index_keys: Vec<Vec<u8>> =
            update.payouts.iter().flat_map(|p| p.outputs.iter().map(|o| payout_index_key(&o.address, p.id))).collect();
        let trees = (
            &self.block_rewards,
            &self.balances,
            &self.payouts,
            &self.payout_index,
            &self.payouts_sending,
            &self.balances_confirmed,
        );
        let result = trees.transaction(|(blocks_tree, balances, payouts_tree, index, sending, confirmed)| {
            let corrupt = |e: serde_json::Error| ConflictableTransactionError::Abort(Abort::Corrupt(e.to_string()));
            for expectation in &update.expects {
                let holds = match expectation {
                    Expectation::Block { height, hash, .. } => {
                        let stored: Option<BlockRewardRecord> = match blocks_tree.get(block_key(*height, hash))? {
                            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(corrupt)?),
                            None => None,
                        };
                        expectation.holds_for_block(stored.as_ref())
                    }
                    Expectation::Payout { id, .. } => {
                        let stored: Option<PayoutRecord> = match payouts_tree.get(id.to_be_bytes())? {
                            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(corrupt)?),
                            None => None,
                        };
                        expectation.holds_for_payout(stored.as_ref())
                    }
                    // One coordinator's own store: no one else sends its batches.
                    Expectation::Lease { .. } => true,
                    Expectation::Balance { wallet, .. } => {
                        let stored: Option<BalanceRecord> = match balances.get(wallet.as_bytes())? {
                            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(corrupt)?),
                            None => None,
                        };
                        expectation.holds_for_balance(stored.as_ref())
                    }
                };
                if !holds {
                    return Err(ConflictableTransactionError::Abort(Abort::Conflict(format!("{expectation:?}"))));
                }
            }
            for (wallet, moves) in &deltas {
                let mut record: BalanceRecord = match balances.get(wallet.as_bytes())? {
                    Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                        ConflictableTransactionError::Abort(Abort::Corrupt(format!("corrupt balance: {e}")))
                    })?,
                    None => BalanceRecord { wallet: wallet.to_string(), ..BalanceRecord::default() },
                };
                for (bucket, amount) in moves {
                    let part = record.bucket_mut(*bucket);
                    let next = i128::from(*part) + amount;
                    *part = u64::try_from(next).map_err(|_| {
                        ConflictableTransactionError::Abort(Abort::Refused(format!(
                            "{wallet}: {bucket:?} would become {next}"
                        )))
                    })?;
                }
                balances.insert(wallet.as_bytes(), encode(&record))?;
                if record.confirmed > 0 {
                    confirmed.insert(wallet.as_bytes(), &[][..])?;
                } else {
                    confirmed.remove(wallet.as_bytes())?;
                }
            }
            for (key, value) in &blocks {
                blocks_tree.insert(key.as_slice(), value.as_slice())?;
            }
            for id in &update.payouts_removed {
                payouts_tree.remove(&id.to_be_bytes()[..])?;
                sending.remove(&id.to_be_bytes()[..])?;
            }
            for ((key, value), payout) in payouts.iter().zip(&update.payouts) {
                payouts_tree.insert(&key[..], value.as_slice())?;
                if payout.status == PayoutStatus::Sending {
                    sending.insert(&key[..], &[][..])?;
                } else {
                    sending.remove(&key[..])?;
                }
            }
            for key in &index_keys {
                index.insert(key.as_slice(), &[][..])?;
            }
            Ok::<_, ConflictableTransactionError<Abort>>(())
        });
        transaction_result("pool_balances", result)
    }

    fn block_rewards(&self) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.block_rewards.iter().values().map(|v| decode("pool_block_rewards", &v?)).collect()
    }

    fn block_rewards_from(&self, height: u64) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.block_rewards.range(height.to_be_bytes()..).values().map(|v| decode("pool_block_rewards", &v?)).collect()
    }

    fn block_reward(&self, height: u64, hash: &str) -> Result<Option<BlockRewardRecord>, StoreError> {
        self.block_rewards.get(block_key(height, hash))?.map(|v| decode("pool_block_rewards", &v)).transpose()
    }

    fn balance(&self, wallet: &str) -> Result<Option<BalanceRecord>, StoreError> {
        self.balances.get(wallet.as_bytes())?.map(|v| decode("pool_balances", &v)).transpose()
    }

    fn balances(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        self.balances.iter().values().map(|v| decode("pool_balances", &v?)).collect()
    }

    fn balances_confirmed(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        let mut found = Vec::new();
        for wallet in self.balances_confirmed.iter().keys() {
            if let Some(balance) = self.balances.get(wallet?)? {
                let balance: BalanceRecord = decode("pool_balances", &balance)?;
                if balance.confirmed > 0 {
                    found.push(balance);
                }
            }
        }
        Ok(found)
    }

    fn payouts(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        self.payouts.iter().values().map(|v| decode("pool_payouts", &v?)).collect()
    }

    fn payouts_newest(
        &self,
        limit: usize,
        wallet: Option<&str>,
        before: Option<u64>,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        let below = before.unwrap_or(u64::MAX).to_be_bytes();
        let Some(wallet) = wallet else {
            let newest = self.payouts.range(..below).values().rev().take(limit);
            return newest.map(|v| decode("pool_payouts", &v?)).collect();
        };
        let mut prefix = wallet.as_bytes().to_vec();
        prefix.push(0);
        // (No batch has id u64::MAX: ids count up from 0.)
        let end = payout_index_key(wallet, before.unwrap_or(u64::MAX));
        let mut found = Vec::new();
        for key in self.payout_index.range(prefix.clone()..end).keys().rev() {
            if found.len() == limit {
                break;
            }
            let id = be_u64("pool_payouts_by_wallet", &key?[prefix.len()..])?;
            // A batch removed since (split per payee) or rewritten without this payee is skipped.
            if let Some(payout) = self.payout(id)?.filter(|p| p.outputs.iter().any(|o| o.address == wallet)) {
                found.push(payout);
            }
        }
        Ok(found)
    }

    fn payouts_sending(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        let mut found = Vec::new();
        for key in self.payouts_sending.iter().keys() {
            let id = be_u64("pool_payouts_sending", &key?)?;
            if let Some(payout) = self.payout(id)?.filter(|p| p.status == PayoutStatus::Sending) {
                found.push(payout);
            }
        }
        Ok(found)
    }

    fn payout(&self, id: u64) -> Result<Option<PayoutRecord>, StoreError> {
        self.payouts.get(id.to_be_bytes())?.map(|v| decode("pool_payouts", &v)).transpose()
    }

    fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        let change = self.ban_change_key(&ban.session_id)?;
        (&self.bans, &self.ban_changes)
            .transaction(|(bans, changes)| {
                bans.insert(ban.session_id.as_bytes(), encode(ban))?;
                changes.insert(change.as_slice(), &[][..])?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(ban_transaction_error)
    }

    fn remove_expired_ban(&self, session_id: &str, until_ms: u64) -> Result<bool, StoreError> {
        let change = self.ban_change_key(session_id)?;
        (&self.bans, &self.ban_changes)
            .transaction(|(bans, changes)| {
                let stored = bans.get(session_id.as_bytes())?;
                let ran_out = stored
                    .and_then(|v| serde_json::from_slice::<BanRecord>(&v).ok())
                    .is_some_and(|ban| ban.until_ms == until_ms);
                if ran_out {
                    bans.remove(session_id.as_bytes())?;
                    changes.insert(change.as_slice(), &[][..])?;
                }
                Ok::<_, ConflictableTransactionError<()>>(ran_out)
            })
            .map_err(ban_transaction_error)
    }

    fn remove_ban(&self, session_id: &str) -> Result<bool, StoreError> {
        let change = self.ban_change_key(session_id)?;
        (&self.bans, &self.ban_changes)
            .transaction(|(bans, changes)| {
                changes.insert(change.as_slice(), &[][..])?;
                Ok::<_, ConflictableTransactionError<()>>(bans.remove(session_id.as_bytes())?.is_some())
            })
            .map_err(ban_transaction_error)
    }

    /// The log key of a change to `session_id`'s ban now (time BE ++ id),
    /// after trimming the log of changes older than it keeps.
    fn ban_change_key(&self, session_id: &str) -> Result<Vec<u8>, StoreError> {
        let now = clock_ms();
        for key in self.ban_changes.range(..now.saturating_sub(BAN_CHANGES_KEPT_MS).to_be_bytes()).keys() {
            self.ban_changes.remove(key?)?;
        }
        let mut key = now.to_be_bytes().to_vec();
        key.extend_from_slice(session_id.as_bytes());
        Ok(key)
    }

    fn bans(&self) -> Result<Vec<BanRecord>, StoreError> {
        self.bans.iter().values().map(|v| decode("pool_bans", &v?)).collect()
    }

    fn ban_changes_since(&self, since_ms: u64) -> Result<BanChanges, StoreError> {
        let now_ms = clock_ms();
        let mut changed = std::collections::BTreeSet::new();
        for key in self.ban_changes.range(since_ms.to_be_bytes()..).keys() {
            let key = key?;
            changed.insert(String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned());
        }
        let mut changes = BanChanges { now_ms, ..BanChanges::default() };
        for session_id in changed {
            match self.bans.get(session_id.as_bytes())? {
                Some(value) => changes.bans.push(decode("pool_bans", &value)?),
                None => changes.lifted.push(session_id),
            }
        }
        Ok(changes)
    }

    fn claim_template(
        &self,
        template_id: &str,
        template: &TemplateRecord,
    ) -> Result<(String, TemplateRecord), StoreError> {
        let height = template.template.height;
        let _pruning = loop {
            let pruning = self.pruning_below.lock().expect("pruning lock");
            if height >= *pruning {
                break pruning;
            }
            // Below a prune in progress: after it.
            drop(pruning);
            drop(self.prune_lock.lock().expect("prune lock"));
        };
        if self.pruned_templates.contains_key(template_id.as_bytes())? {
            return Err(StoreError::Refused(format!(
                "template {template_id} was pruned with its shares' keys: waiting for another"
            )));
        }
        let mut tip = template.template.height.to_be_bytes().to_vec();
        tip.extend_from_slice(template.template.parent_hash.as_bytes());
        let mut value = template.template.height.to_be_bytes().to_vec();
        value.extend_from_slice(&encode(template));
        let result = (&self.templates, &self.template_tips).transaction(|(templates, tips)| {
            if let Some(held) = tips.get(&tip)? {
                if let Some(stored) = templates.get(&held)? {
                    return Ok(Some((held.to_vec(), stored.to_vec())));
                }
            }
            // Stored before the tip index existed (an older data directory):
            // it keeps its range numbering, and now holds its tip.
            if let Some(stored) = templates.get(template_id.as_bytes())? {
                tips.insert(tip.as_slice(), template_id.as_bytes())?;
                return Ok(Some((template_id.as_bytes().to_vec(), stored.to_vec())));
            }
            tips.insert(tip.as_slice(), template_id.as_bytes())?;
            templates.insert(template_id.as_bytes(), value.as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(None)
        });
        match result {
            Ok(None) => Ok((template_id.to_string(), template.clone())),
            Ok(Some((id, stored))) => Ok((
                String::from_utf8_lossy(&id).into_owned(),
                decode("pool_templates", stored.get(8..).unwrap_or_default())?,
            )),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Backend("template claim aborted".into())),
        }
    }

    fn exchange_tips(&self, name: &str, height: u64, live: std::time::Duration) -> Vec<u64> {
        let now = std::time::Instant::now();
        let mut tips = self.coordinator_tips.lock().expect("coordinator tips lock");
        tips.insert(name.to_string(), (height, now));
        tips.retain(|_, (_, seen)| now.duration_since(*seen) < std::time::Duration::from_secs(86_400));
        tips.iter()
            .filter(|(n, (_, seen))| *n != name && now.duration_since(*seen) < live)
            .map(|(_, (h, _))| *h)
            .collect()
    }

    fn highest_template_height_below(&self, height: u64) -> Result<Option<u64>, StoreError> {
        let below = self.template_tips.range(..height.to_be_bytes()).next_back().transpose()?;
        below.map(|(tip, _)| be_u64("pool_template_tips", &tip)).transpose()
    }

    fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, StoreError> {
        match self.templates.get(template_id.as_bytes())? {
            Some(v) if v.len() > 8 => Ok(Some(decode("pool_templates", &v[8..])?)),
            Some(_) => Err(StoreError::Corrupt { tree: "pool_templates", message: "short record".into() }),
            None => Ok(None),
        }
    }

    fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut key = job.height.to_be_bytes().to_vec();
        key.extend_from_slice(job.job_id.as_bytes());
        self.jobs.insert(key, encode(job))?;
        self.job_heights.insert(job.job_id.as_bytes(), &job.height.to_be_bytes()[..])?;
        Ok(())
    }

    fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let Some(height) = self.job_heights.get(job_id.as_bytes())? else { return Ok(None) };
        let mut key = height.to_vec();
        key.extend_from_slice(job_id.as_bytes());
        self.jobs.get(key)?.map(|v| decode("pool_jobs", &v)).transpose()
    }

    fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs.range(height.to_be_bytes()..).values().map(|v| decode("pool_jobs", &v?)).collect()
    }

    fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError> {
        for key in self.jobs.range(..height.to_be_bytes()).keys() {
            let key = key?;
            self.job_heights.remove(key.get(8..).unwrap_or_default())?;
            self.jobs.remove(key)?;
        }
        // Templates go with their keys (`prune_share_keys_below`).
        Ok(())
    }

    /// Forgets templates below `height`, remembering them as pruned.
    fn prune_templates_below(&self, height: u64) -> Result<(), StoreError> {
        for key in self.template_tips.range(..height.to_be_bytes()).keys() {
            self.template_tips.remove(key?)?;
        }
        for item in self.templates.iter() {
            let (key, value) = item?;
            let template_height = be_u64("pool_templates", &value)?;
            if template_height < height {
                self.pruned_templates.insert(&key, &template_height.to_be_bytes()[..])?;
                self.templates.remove(key)?;
            }
        }
        Ok(())
    }

    fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError> {
        let key = block_key(block.height, &block.hash);
        let mut current = self.blocks.get(&key)?;
        loop {
            let merged = match &current {
                Some(bytes) => block.written_over(&decode("pool_found_blocks", bytes)?),
                None => block.clone(),
            };
            match self.blocks.compare_and_swap(&key, current, Some(encode(&merged)))? {
                Ok(()) => return Ok(()),
                Err(conflict) => current = conflict.current,
            }
        }
    }

    fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocks.iter().values().map(|v| decode("pool_found_blocks", &v?)).collect()
    }

    fn found_blocks_newest(&self, limit: usize) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocks.iter().values().rev().take(limit).map(|v| decode("pool_found_blocks", &v?)).collect()
    }

    fn found_blocks_from(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocks.range(height.to_be_bytes()..).values().map(|v| decode("pool_found_blocks", &v?)).collect()
    }

    fn found_blocks_at(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocks.scan_prefix(height.to_be_bytes()).values().map(|v| decode("pool_found_blocks", &v?)).collect()
    }

    fn settings(&self) -> Result<Option<PoolSettings>, StoreError> {
        self.meta.get("settings")?.map(|v| decode("pool_meta", &v)).transpose()
    }

    fn put_settings(&self, settings: &PoolSettings, expected: Option<&PoolSettings>) -> Result<(), StoreError> {
        let stored = self.meta.get("settings")?;
        let read: Option<PoolSettings> = stored.as_ref().map(|v| decode("pool_meta", v)).transpose()?;
        let conflict = || StoreError::Conflict("the pool's settings changed since they were read".into());
        if read.as_ref() != expected {
            return Err(conflict());
        }
        // Swapped against the bytes read: equal settings may be encoded
        // apart (a record from an older version).
        self.meta.compare_and_swap("settings", stored, Some(encode(settings)))?.map_err(|_| conflict())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// [`PoolStore`] on sled, in the coordinator's data directory. Point reads
/// and writes run inline (sled answers them from its cache in
/// microseconds); scans, prunes, compaction and reward updates (many
/// records in one transaction) go to tokio's blocking pool,
/// so a large tree never stalls a runtime thread.
#[derive(Clone)]
pub struct SledStore {
    trees: SledTrees,
    /// Flushes that succeeded (`PoolStore::commits`), shared by clones.
    flushes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Calls running on the blocking pool (`PoolStore::calls_in_flight`).
    calls: BlockingCalls,
}

impl SledStore {
    /// Opens (or creates) the pool's trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(SledStore { trees: SledTrees::open(db)?, flushes: Default::default(), calls: Default::default() })
    }

    /// Opens a sled database at `path` (for tests and tools), waiting a
    /// moment for a lock this process has just let go of.
    pub fn open_path(path: &Path) -> Result<Self, StoreError> {
        Self::open(&crate::data_directory::open_waiting_for_lock(&sled::Config::new().path(path))?)
    }

    /// Runs `op` on the blocking pool.
    async fn blocking<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&SledTrees) -> Result<T, StoreError> + Send + 'static,
    {
        // Counted until the trees are let go: a call whose task was cut
        // short still holds the database.
        self.calls.run(self.trees.clone(), op).await.map_err(|e| StoreError::Backend(format!("storage task: {e}")))?
    }
}

#[async_trait::async_trait]
impl PoolStore for SledStore {
    async fn bind_worker(&self, worker: &WorkerRecord) -> Result<WorkerRecord, StoreError> {
        self.trees.bind_worker(worker)
    }
    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.trees.put_worker(worker)
    }
    async fn worker(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError> {
        self.trees.worker(worker_id)
    }
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.trees.put_session(session)
    }
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.trees.session(token_hash)
    }
    async fn touch_session(
        &self,
        token_hash: &str,
        seen_ms: u64,
        proven: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.trees.touch_session(token_hash, seen_ms, proven)
    }
    async fn prune_sessions(&self, seen_before_ms: u64, unproven_seen_before_ms: u64) -> Result<usize, StoreError> {
        self.blocking(move |t| t.prune_sessions(seen_before_ms, unproven_seen_before_ms)).await
    }
    async fn prune_workers_without_sessions(&self, registered_before_ms: u64) -> Result<usize, StoreError> {
        self.blocking(move |t| t.prune_workers_without_sessions(registered_before_ms)).await
    }
    async fn append_share(&self, share: &ShareRecord) -> Result<AppendOutcome, StoreError> {
        self.trees.append_share(share)
    }
    async fn credited(&self, height: u64, template_id: &str, nonce: u64) -> Result<Option<Credit>, StoreError> {
        self.trees.credited(height, template_id, nonce)
    }
    async fn shares_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.blocking(move |t| t.shares_from(from, limit)).await
    }
    async fn ledger_len(&self) -> Result<u64, StoreError> {
        Ok(self.trees.ledger_len())
    }
    async fn prune_share_keys_below(&self, height: u64) -> Result<usize, StoreError> {
        self.blocking(move |t| t.prune_share_keys_below(height)).await
    }
    async fn shares_back_from(&self, last: u64, limit: usize) -> Result<Vec<(u64, ShareRecord)>, StoreError> {
        self.blocking(move |t| t.shares_back_from(last, limit)).await
    }
    async fn ledger_floor(&self) -> Result<u64, StoreError> {
        self.trees.ledger_floor()
    }
    async fn compact_shares_below(&self, below: u64, max: usize) -> Result<usize, StoreError> {
        self.blocking(move |t| t.compact_shares_below(below, max)).await
    }
    async fn share_aggregates(&self) -> Result<Vec<ShareAggregate>, StoreError> {
        self.blocking(|t| t.share_aggregates()).await
    }
    async fn apply_reward_update(&self, update: &RewardUpdate) -> Result<(), StoreError> {
        // A PPLNS credit touches every wallet of its window, a payout batch
        // hundreds of outputs: a transaction too big for a runtime thread.
        let update = update.clone();
        self.blocking(move |t| t.apply_reward_update(&update)).await
    }
    async fn block_rewards(&self) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.blocking(|t| t.block_rewards()).await
    }
    async fn block_rewards_from(&self, height: u64) -> Result<Vec<BlockRewardRecord>, StoreError> {
        self.blocking(move |t| t.block_rewards_from(height)).await
    }
    async fn block_reward(&self, height: u64, hash: &str) -> Result<Option<BlockRewardRecord>, StoreError> {
        self.trees.block_reward(height, hash)
    }
    async fn balance(&self, wallet: &str) -> Result<Option<BalanceRecord>, StoreError> {
        self.trees.balance(wallet)
    }
    async fn balances(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        self.blocking(|t| t.balances()).await
    }
    async fn balances_confirmed(&self) -> Result<Vec<BalanceRecord>, StoreError> {
        self.blocking(|t| t.balances_confirmed()).await
    }
    async fn payouts(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        self.blocking(|t| t.payouts()).await
    }
    async fn payouts_newest(
        &self,
        limit: usize,
        wallet: Option<&str>,
        before: Option<u64>,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        let wallet = wallet.map(str::to_string);
        self.blocking(move |t| t.payouts_newest(limit, wallet.as_deref(), before)).await
    }
    async fn payout(&self, id: u64) -> Result<Option<PayoutRecord>, StoreError> {
        self.trees.payout(id)
    }
    /// sled is opened by one process at a time (its file lock): no other
    /// coordinator can hold a batch.
    async fn claim_payout(
        &self,
        id: u64,
        _holder: &str,
        _terms: LeaseTerms,
    ) -> Result<Option<PayoutRecord>, StoreError> {
        Ok(self.trees.payout(id)?.filter(|p| p.status == PayoutStatus::Sending))
    }
    async fn payouts_sending(&self) -> Result<Vec<PayoutRecord>, StoreError> {
        self.blocking(|t| t.payouts_sending()).await
    }
    async fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        self.trees.put_ban(ban)
    }
    async fn remove_ban(&self, session_id: &str) -> Result<bool, StoreError> {
        self.trees.remove_ban(session_id)
    }
    async fn remove_expired_ban(&self, session_id: &str, until_ms: u64) -> Result<bool, StoreError> {
        self.trees.remove_expired_ban(session_id, until_ms)
    }
    async fn bans(&self) -> Result<Vec<BanRecord>, StoreError> {
        self.blocking(|t| t.bans()).await
    }
    async fn ban_changes_since(&self, since_ms: u64) -> Result<BanChanges, StoreError> {
        self.blocking(move |t| t.ban_changes_since(since_ms)).await
    }
    async fn claim_template(
        &self,
        template_id: &str,
        template: &TemplateRecord,
    ) -> Result<(String, TemplateRecord), StoreError> {
        // It may wait for a prune of share keys: never on a runtime thread.
        let (template_id, template) = (template_id.to_string(), template.clone());
        self.blocking(move |t| t.claim_template(&template_id, &template)).await
    }
    async fn exchange_tips(&self, name: &str, height: u64, live: std::time::Duration) -> Result<Vec<u64>, StoreError> {
        Ok(self.trees.exchange_tips(name, height, live))
    }
    async fn highest_template_height_below(&self, height: u64) -> Result<Option<u64>, StoreError> {
        self.trees.highest_template_height_below(height)
    }
    async fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, StoreError> {
        self.trees.template(template_id)
    }
    async fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.trees.put_job(job)
    }
    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.trees.job(job_id)
    }
    async fn jobs_from_height(&self, height: u64) -> Result<Vec<JobRecord>, StoreError> {
        self.blocking(move |t| t.jobs_from_height(height)).await
    }
    async fn prune_jobs_below(&self, height: u64) -> Result<(), StoreError> {
        self.blocking(move |t| t.prune_jobs_below(height)).await
    }
    async fn put_found_block(&self, block: &FoundBlockRecord) -> Result<(), StoreError> {
        self.trees.put_found_block(block)
    }
    async fn found_blocks(&self) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocking(|t| t.found_blocks()).await
    }
    async fn found_blocks_newest(&self, limit: usize) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocking(move |t| t.found_blocks_newest(limit)).await
    }
    async fn found_blocks_from(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.blocking(move |t| t.found_blocks_from(height)).await
    }
    async fn found_blocks_at(&self, height: u64) -> Result<Vec<FoundBlockRecord>, StoreError> {
        self.trees.found_blocks_at(height)
    }
    async fn settings(&self) -> Result<Option<PoolSettings>, StoreError> {
        self.trees.settings()
    }
    async fn put_settings(&self, settings: &PoolSettings, expected: Option<&PoolSettings>) -> Result<(), StoreError> {
        self.trees.put_settings(settings, expected)
    }
    async fn meet_coordinators(
        &self,
        _name: &str,
        _rules: &serde_json::Value,
        _live: std::time::Duration,
    ) -> Result<Vec<CoordinatorRules>, StoreError> {
        // The data directory is locked by the one coordinator using it.
        Ok(Vec::new())
    }
    async fn next_id(&self) -> Result<u64, StoreError> {
        // Every millionth id, sled makes its id counter durable (an fsync):
        // off the runtime's threads.
        self.blocking(|trees| trees.next_id()).await
    }
    fn secret(&self) -> [u8; 32] {
        self.trees.secret
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.trees.flush()?;
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    async fn flush_off_runtime(&self) -> Result<(), StoreError> {
        self.blocking(|t| t.flush()).await?;
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn calls_in_flight(&self) -> usize {
        self.calls.in_flight()
    }
    fn commits(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    //! What only sled has: indexes built at open for a data directory from
    //! before them. Everything else is in `tests/store_suite.rs`, against
    //! both backends.
    use super::*;
    use crate::storage::{BalanceBucket, BalanceDelta, PayoutOutput};

    fn payout(id: u64, wallets: &[&str], status: PayoutStatus) -> PayoutRecord {
        PayoutRecord {
            id,
            status,
            outputs: wallets.iter().map(|w| PayoutOutput::new(w, 5)).collect(),
            idempotency_key: format!("k{id}"),
            reason: None,
            created_ms: id,
            updated_ms: id,
            transfer_id: None,
            attempts: 1,
        }
    }

    fn ids(payouts: Vec<PayoutRecord>) -> Vec<u64> {
        payouts.into_iter().map(|p| p.id).collect()
    }

    #[test]
    fn indexes_are_built_at_open_for_an_older_data_directory() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledTrees::open(&db).unwrap();
        let update = RewardUpdate {
            payouts: vec![
                payout(1, &["a"], PayoutStatus::Paid),
                payout(2, &["a", "b"], PayoutStatus::Sending),
                payout(3, &["b"], PayoutStatus::Paid),
            ],
            balances: vec![
                BalanceDelta::new("a", BalanceBucket::Confirmed, 5),
                BalanceDelta::new("b", BalanceBucket::Immature, 7),
            ],
            ..RewardUpdate::default()
        };
        store.apply_reward_update(&update).unwrap();
        for tree in ["pool_payouts_by_wallet", "pool_payouts_sending", "pool_balances_confirmed"] {
            db.open_tree(tree).unwrap().clear().unwrap();
        }
        db.open_tree("pool_meta").unwrap().remove(PAYOUT_INDEX_BUILT).unwrap();
        assert!(store.payouts_newest(10, Some("b"), None).unwrap().is_empty(), "the indexes are gone");
        let reopened = SledTrees::open(&db).unwrap();
        assert_eq!(ids(reopened.payouts_newest(10, Some("b"), None).unwrap()), [3, 2]);
        assert_eq!(ids(reopened.payouts_newest(10, Some("a"), None).unwrap()), [2, 1]);
        assert_eq!(ids(reopened.payouts_sending().unwrap()), [2]);
        let payable: Vec<String> = reopened.balances_confirmed().unwrap().into_iter().map(|b| b.wallet).collect();
        assert_eq!(payable, ["a"]);
    }

    /// A template stored before the tip index keeps its range numbering when
    /// it is claimed again after the upgrade, and then holds its tip.
    #[test]
    fn a_template_from_before_the_tip_index_keeps_its_numbering() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledTrees::open(&db).unwrap();
        let record = |first_job_index| TemplateRecord {
            template: crate::storage::StoredTemplate {
                chain_id: "c".into(),
                height: 3,
                parent_hash: "p".into(),
                timestamp: 1,
                difficulty: 1,
                tx_root: String::new(),
                miner: "m".into(),
                epoch: 0,
                epoch_seed: String::new(),
                pow_message: String::new(),
                params: visionx::Params::CONSENSUS,
                reward: 1,
            },
            first_job_index,
        };
        let mut old = 3u64.to_be_bytes().to_vec();
        old.extend_from_slice(&encode(&record(40)));
        db.open_tree("pool_templates").unwrap().insert("t", old).unwrap();
        assert_eq!(store.claim_template("t", &record(99)).unwrap(), ("t".into(), record(40)));
        assert_eq!(store.claim_template("u", &record(120)).unwrap().0, "t", "and it holds its tip");
    }
}
