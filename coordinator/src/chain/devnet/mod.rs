//! The embedded devnet: a single-node chain in sled, so a pool runs on a
//! fresh machine with nothing else installed.
//!
//! Blocks are checked with the full VisionX verification. Difficulty
//! retargets with LWMA (`super::lwma`) towards the configured block time. Each block pays its
//! miner a reward that matures after `coinbase_maturity` blocks. Transfers
//! move spendable funds from addresses the node holds keys for, once per
//! idempotency key. Transfers settle in the node's ledger immediately (a
//! devnet simplification: they are not carried in blocks, and `tx_root`
//! commits to the height only).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::watch;
use visionx::{FastEngine, Params, PowEngine};

use vision_protocol::HeaderFields;

mod reorganisation;

use super::lwma::lwma;
use super::{
    check_address, Balance, BlockSubmission, BlockTemplate, ChainBlock, ChainError, SubmitOutcome, TransferReceipt,
    TransferRequest,
};
use crate::blocking_calls::BlockingCalls;

/// How the devnet behaves.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    pub chain_id: String,
    /// Difficulty of the first blocks, before LWMA has history.
    pub start_difficulty: u64,
    pub block_time_secs: u64,
    pub block_reward: u64,
    pub coinbase_maturity: u64,
    /// Addresses the node holds keys for (it may send from them).
    pub key_addresses: Vec<String>,
    /// LWMA window in blocks.
    pub lwma_window: u64,
    pub params: Params,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            chain_id: "devnet".into(),
            start_difficulty: 1000,
            block_time_secs: 30,
            block_reward: 50_000_000_000,
            coinbase_maturity: 10,
            key_addresses: Vec::new(),
            lwma_window: 45,
            params: Params::CONSENSUS,
        }
    }
}

/// What a submission meets (test hooks, [`DevnetChain::inject`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitFault {
    /// Fails as if the node were unreachable (a transient failure).
    Unreachable,
    /// The chain refuses it (`injected_rejection`).
    Reject,
    /// Applied, but answered as if the node were unreachable (a lost answer).
    LoseAnswer,
}

/// One movement of funds for an address.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    /// Positive for credits.
    amount: i128,
    /// Spendable once the chain's tip height reaches this.
    spendable_at_height: u64,
    coinbase: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTransfer {
    request_digest: String,
    receipt: TransferReceipt,
}

pub struct DevnetChain {
    config: DevnetConfig,
    db: sled::Db,
    blocks: sled::Tree,
    ledger: sled::Tree,
    transfers: sled::Tree,
    /// Serialises block and transfer writes (validate, then apply).
    write_lock: Mutex<()>,
    /// The height the next block will have; changes on every new block.
    next_height: watch::Sender<u64>,
    /// Submissions still to fail, or to reject (test hooks).
    failing_submits: AtomicU32,
    rejecting_submits: AtomicU32,
    /// Submissions to apply whose answer is then lost (test hook).
    losing_answers: AtomicU32,
    /// Milliseconds each submission takes extra (test hook).
    submit_delay_ms: AtomicU32,
    /// Addresses transfers may not pay (test hook: a payee the chain refuses).
    refused_payees: Mutex<HashSet<String>>,
    /// Test hook: receipts name another payee than the transfer paid.
    misreporting: std::sync::atomic::AtomicBool,
    /// Test hook: transfers fail as if the node were unreachable.
    holding_transfers: std::sync::atomic::AtomicBool,
    /// What the last reorganisation took off the chain (test hook), kept
    /// on disk so a restarted node can still undo it (`reorganisation`).
    reorganised: sled::Tree,
    /// Calls running on blocking threads (they hold the chain's database).
    calls: BlockingCalls,
}

/// A block as the devnet stores it: its own shape, apart from the wire's
/// `ChainBlock`, so neither can change the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredBlock {
    height: u64,
    hash: String,
    parent_hash: String,
    timestamp: u64,
    difficulty: u64,
    tx_root: String,
    miner: String,
    nonce: u64,
    reward: u64,
    /// The ledger key of its coinbase (hex), so a reorganisation can take
    /// the reward back.
    #[serde(default)]
    coinbase_key: Option<String>,
}

fn encode_block(b: &ChainBlock, coinbase_key: Option<&[u8]>) -> Vec<u8> {
    let stored = StoredBlock {
        height: b.height,
        hash: b.hash.clone(),
        parent_hash: b.parent_hash.clone(),
        timestamp: b.timestamp,
        difficulty: b.difficulty,
        tx_root: b.tx_root.clone(),
        miner: b.miner.clone(),
        nonce: b.nonce,
        reward: b.reward,
        coinbase_key: coinbase_key.map(hex::encode),
    };
    serde_json::to_vec(&stored).expect("blocks serialise")
}

fn decode_block(bytes: &[u8]) -> Result<ChainBlock, ChainError> {
    let b: StoredBlock = serde_json::from_slice(bytes).map_err(storage)?;
    Ok(ChainBlock {
        height: b.height,
        hash: b.hash,
        parent_hash: b.parent_hash,
        timestamp: b.timestamp,
        difficulty: b.difficulty,
        tx_root: b.tx_root,
        miner: b.miner,
        nonce: b.nonce,
        reward: b.reward,
    })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn storage(err: impl std::fmt::Display) -> ChainError {
    ChainError::Unavailable(format!("devnet storage: {err}"))
}

impl DevnetChain {
    /// Runs `call` on a blocking thread, counted (`BlockingCalls`): for
    /// anything that hashes, scans, takes the write lock or fsyncs.
    pub(crate) async fn on_blocking_thread<T: Send + 'static>(
        self: &Arc<Self>,
        call: impl FnOnce(&DevnetChain) -> Result<T, ChainError> + Send + 'static,
    ) -> Result<T, ChainError> {
        self.calls
            .run(self.clone(), move |chain: &Arc<DevnetChain>| call(chain))
            .await
            .map_err(|e| ChainError::Unavailable(e.to_string()))?
    }

    /// Blocking calls still running (a stopping server waits for none).
    pub fn calls_in_flight(&self) -> usize {
        self.calls.in_flight()
    }

    pub fn open(db: &sled::Db, config: DevnetConfig) -> Result<Self, ChainError> {
        config.params.validate().map_err(|e| ChainError::invalid("bad_params", e.to_string()))?;
        let blocks = db.open_tree("devnet_blocks").map_err(storage)?;
        let ledger = db.open_tree("devnet_ledger").map_err(storage)?;
        let transfers = db.open_tree("devnet_transfers").map_err(storage)?;
        let reorganised = db.open_tree("devnet_reorganised").map_err(storage)?;
        let chain = DevnetChain {
            config,
            db: db.clone(),
            blocks,
            ledger,
            transfers,
            write_lock: Mutex::new(()),
            next_height: watch::channel(0).0,
            failing_submits: AtomicU32::new(0),
            rejecting_submits: AtomicU32::new(0),
            losing_answers: AtomicU32::new(0),
            submit_delay_ms: AtomicU32::new(0),
            refused_payees: Mutex::new(HashSet::new()),
            misreporting: std::sync::atomic::AtomicBool::new(false),
            holding_transfers: std::sync::atomic::AtomicBool::new(false),
            reorganised,
            calls: BlockingCalls::default(),
        };
        let next = chain.tip()?.map_or(0, |b| b.height + 1);
        chain.next_height.send_replace(next);
        Ok(chain)
    }

    pub fn config(&self) -> &DevnetConfig {
        &self.config
    }

    /// Notified with the next block's height whenever the tip changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.next_height.subscribe()
    }

    pub fn tip(&self) -> Result<Option<ChainBlock>, ChainError> {
        match self.blocks.last().map_err(storage)? {
            Some((_, v)) => Ok(Some(decode_block(&v)?)),
            None => Ok(None),
        }
    }

    /// The last `n` blocks, oldest first.
    fn recent_blocks(&self, n: u64) -> Result<Vec<ChainBlock>, ChainError> {
        let mut blocks: Vec<ChainBlock> = self
            .blocks
            .iter()
            .rev()
            .take(n as usize)
            .map(|item| {
                let (_, v) = item.map_err(storage)?;
                decode_block(&v)
            })
            .collect::<Result<_, _>>()?;
        blocks.reverse();
        Ok(blocks)
    }

    /// LWMA: the difficulty-weighted, recency-weighted solve time of the last
    /// window of blocks, scaled to the target block time.
    pub fn next_difficulty(&self) -> Result<u64, ChainError> {
        let blocks = self.recent_blocks(self.config.lwma_window + 1)?;
        Ok(lwma(&blocks, self.config.block_time_secs, self.config.start_difficulty))
    }

    fn tx_root(&self, height: u64) -> String {
        let mut sha = Sha256::new();
        sha.update(b"vision-devnet-tx-root");
        sha.update(self.config.chain_id.as_bytes());
        sha.update(height.to_le_bytes());
        hex::encode(sha.finalize())
    }

    /// A template paying `address`.
    pub fn template(&self, address: &str) -> Result<BlockTemplate, ChainError> {
        check_address("address", address)?;
        let tip = self.tip()?;
        let (height, parent_hash, parent_time) = match &tip {
            Some(tip) => (tip.height + 1, tip.hash.clone(), tip.timestamp),
            None => (0, hex::encode([0u8; 32]), 0),
        };
        let header = HeaderFields {
            chain_id: self.config.chain_id.clone(),
            height,
            parent_hash,
            timestamp: now_secs().max(parent_time + 1),
            difficulty: self.next_difficulty()?,
            tx_root: self.tx_root(height),
            miner: address.to_string(),
        };
        let input = header.pow_input(&self.config.params).map_err(storage)?;
        Ok(BlockTemplate {
            header,
            epoch: input.epoch(),
            epoch_seed: hex::encode(input.epoch_seed()),
            pow_message: hex::encode(input.header()),
            params: self.config.params,
            reward: self.config.block_reward,
        })
    }

    /// Validates a solved block with the full VisionX check and appends it.
    /// Blocking (one hash and an fsync): call it off the async runtime. The
    /// hash runs without the write lock; the tip is checked again under it.
    pub fn submit(&self, block: &BlockSubmission) -> Result<SubmitOutcome, ChainError> {
        let reject = |reason: &str| Ok(SubmitOutcome { accepted: false, hash: None, reason: Some(reason.to_string()) });
        let take = |counter: &AtomicU32| counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if take(&self.failing_submits).is_ok() {
            return Err(ChainError::Unavailable("devnet: injected submit failure (test hook)".into()));
        }
        if take(&self.rejecting_submits).is_ok() {
            return reject("injected_rejection");
        }
        let delay = self.submit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(u64::from(delay)));
        }
        let tip = self.tip()?;
        let (height, parent_hash, parent_time) = match &tip {
            Some(tip) => (tip.height + 1, tip.hash.clone(), tip.timestamp),
            None => (0, hex::encode([0u8; 32]), 0),
        };
        let h = &block.header;
        if h.chain_id != self.config.chain_id {
            return reject("wrong_chain");
        }
        if h.height != height {
            return reject(if h.height < height { "stale_height" } else { "unknown_parent" });
        }
        let parent = visionx::parse_hash32("parent_hash", &h.parent_hash);
        if parent.as_ref().map(hex::encode).ok().as_deref() != Some(parent_hash.as_str()) {
            return reject("wrong_parent");
        }
        if h.difficulty != self.next_difficulty()? {
            return reject("wrong_difficulty");
        }
        if visionx::parse_hash32("tx_root", &h.tx_root).map(hex::encode).ok() != Some(self.tx_root(height)) {
            return reject("wrong_tx_root");
        }
        if check_address("miner", &h.miner).is_err() {
            return reject("bad_miner_address");
        }
        if h.timestamp <= parent_time || h.timestamp > now_secs() + 120 {
            return reject("bad_timestamp");
        }
        // Both hashes parsed in the checks above.
        let header = h.header().map_err(storage)?;
        let input = header.pow_input(&self.config.params).map_err(storage)?;
        let digest = FastEngine::new().hash(&input, block.nonce);
        if !digest.meets_difficulty(h.difficulty) {
            return reject("insufficient_work");
        }
        let stored = ChainBlock {
            height,
            hash: digest.to_hex(),
            parent_hash,
            timestamp: h.timestamp,
            difficulty: h.difficulty,
            tx_root: hex::encode(header.tx_root),
            miner: h.miner.clone(),
            nonce: block.nonce,
            reward: self.config.block_reward,
        };
        let coinbase = LedgerEntry {
            amount: i128::from(self.config.block_reward),
            spendable_at_height: height + self.config.coinbase_maturity,
            coinbase: true,
        };
        let ledger_key = self.ledger_key(&h.miner)?;
        let block_bytes = encode_block(&stored, Some(&ledger_key));
        let entry_bytes = serde_json::to_vec(&coinbase).map_err(storage)?;

        let _guard = self.write_lock.lock().expect("devnet write lock");
        // Another block may have landed while we hashed.
        if self.tip()?.map(|t| t.hash) != tip.map(|t| t.hash) {
            return reject("stale_height");
        }
        (&self.blocks, &self.ledger)
            .transaction(|(blocks, ledger)| {
                blocks.insert(&height.to_be_bytes()[..], block_bytes.as_slice())?;
                ledger.insert(ledger_key.as_slice(), entry_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.db.flush().map_err(storage)?;
        self.next_height.send_replace(height + 1);
        if take(&self.losing_answers).is_ok() {
            return Err(ChainError::Unavailable("devnet: answer lost after applying (test hook)".into()));
        }
        Ok(SubmitOutcome { accepted: true, hash: Some(stored.hash), reason: None })
    }

    /// Test hook: the next `count` submissions meet `fault`.
    #[doc(hidden)]
    pub fn inject(&self, fault: SubmitFault, count: u32) {
        let counter = match fault {
            SubmitFault::Unreachable => &self.failing_submits,
            SubmitFault::Reject => &self.rejecting_submits,
            SubmitFault::LoseAnswer => &self.losing_answers,
        };
        counter.store(count, Ordering::SeqCst);
    }

    /// Test hook: every submission takes `ms` milliseconds longer (a slow node).
    #[doc(hidden)]
    pub fn delay_submits(&self, ms: u32) {
        self.submit_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Test hook: transfers paying `address` are refused (`refused_payee`),
    /// as a chain refuses an address it considers invalid.
    #[doc(hidden)]
    pub fn refuse_payments_to(&self, address: &str) {
        self.refused_payees.lock().expect("refused payees lock").insert(address.to_string());
    }

    /// Test hook: undoes [`DevnetChain::refuse_payments_to`].
    #[doc(hidden)]
    pub fn allow_payments_to(&self, address: &str) {
        self.refused_payees.lock().expect("refused payees lock").remove(address);
    }

    /// Test hook: from now on (while `on`), a new transfer pays as asked but
    /// its receipt names `land1elsewhere` as the first output's payee, as a
    /// faulty or dishonest node might.
    #[doc(hidden)]
    pub fn misreport_transfers(&self, on: bool) {
        self.misreporting.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: while `on`, every transfer fails as if the node were
    /// unreachable (a batch stays `sending`, retried round after round).
    #[doc(hidden)]
    pub fn hold_transfers(&self, on: bool) {
        self.holding_transfers.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The first receipt of `key` (a 409 if it paid a different request).
    fn replay(&self, key: &str, request_digest: &str) -> Result<Option<TransferReceipt>, ChainError> {
        let Some(bytes) = self.transfers.get(key.as_bytes()).map_err(storage)? else { return Ok(None) };
        let stored: StoredTransfer = serde_json::from_slice(&bytes).map_err(storage)?;
        if stored.request_digest != request_digest {
            return Err(ChainError::Conflict(format!("idempotency key {key:?} was used for a different transfer")));
        }
        Ok(Some(TransferReceipt { replayed: true, ..stored.receipt }))
    }

    /// The receipt of the transfer made with `idempotency_key`, if any.
    pub fn transfer_by_key(&self, idempotency_key: &str) -> Result<Option<TransferReceipt>, ChainError> {
        match self.transfers.get(idempotency_key.as_bytes()).map_err(storage)? {
            Some(bytes) => {
                let stored: StoredTransfer = serde_json::from_slice(&bytes).map_err(storage)?;
                Ok(Some(TransferReceipt { replayed: true, ..stored.receipt }))
            }
            None => Ok(None),
        }
    }

    pub fn block(&self, height: u64) -> Result<ChainBlock, ChainError> {
        let bytes = self.blocks.get(height.to_be_bytes()).map_err(storage)?;
        let bytes = bytes.ok_or_else(|| ChainError::NotFound(format!("no block at height {height}")))?;
        decode_block(&bytes)
    }

    fn ledger_key(&self, address: &str) -> Result<Vec<u8>, ChainError> {
        let mut key = address.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&self.db.generate_id().map_err(storage)?.to_be_bytes());
        Ok(key)
    }

    pub fn balance(&self, address: &str) -> Result<Balance, ChainError> {
        check_address("address", address)?;
        let tip_height = self.tip()?.map(|b| b.height);
        let mut prefix = address.as_bytes().to_vec();
        prefix.push(0);
        let (mut spendable, mut immature) = (0i128, 0i128);
        for item in self.ledger.scan_prefix(&prefix) {
            let (_, v) = item.map_err(storage)?;
            let entry: LedgerEntry = serde_json::from_slice(&v).map_err(storage)?;
            let mature = !entry.coinbase || tip_height.is_some_and(|t| t >= entry.spendable_at_height);
            if mature {
                spendable += entry.amount;
            } else {
                immature += entry.amount;
            }
        }
        Ok(Balance {
            address: address.to_string(),
            spendable: u64::try_from(spendable.max(0)).unwrap_or(u64::MAX),
            immature: u64::try_from(immature.max(0)).unwrap_or(u64::MAX),
        })
    }

    pub fn transfer(&self, request: &TransferRequest) -> Result<TransferReceipt, ChainError> {
        if self.holding_transfers.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ChainError::Unavailable("transfers held (test hook)".into()));
        }
        check_address("from", &request.from)?;
        if !self.config.key_addresses.iter().any(|a| a == &request.from) {
            return Err(ChainError::invalid("no_key", format!("this node holds no key for {}", request.from)));
        }
        let key = &request.idempotency_key;
        if key.is_empty() || key.len() > 128 {
            return Err(ChainError::invalid("bad_idempotency_key", "idempotency_key must be 1-128 bytes"));
        }
        if request.outputs.is_empty() || request.outputs.len() > 10_000 {
            return Err(ChainError::invalid("bad_outputs", "a transfer has 1-10000 outputs"));
        }
        let request_digest = hex::encode(Sha256::digest(serde_json::to_vec(request).map_err(storage)?));
        // A key seen before answers as it did, whatever would be checked now
        // (a payee refused since cannot turn a made transfer into a refusal).
        if let Some(receipt) = self.replay(key, &request_digest)? {
            return Ok(receipt);
        }
        let mut total: u64 = 0;
        let refused = self.refused_payees.lock().expect("refused payees lock").clone();
        for output in &request.outputs {
            check_address("outputs.address", &output.address)?;
            if refused.contains(&output.address) {
                return Err(ChainError::invalid(
                    "refused_payee",
                    format!("the chain refuses payments to {}", output.address),
                ));
            }
            if output.amount == 0 {
                return Err(ChainError::invalid("bad_outputs", "output amounts must be positive"));
            }
            total = total
                .checked_add(output.amount)
                .ok_or_else(|| ChainError::invalid("bad_outputs", "the outputs overflow"))?;
        }

        let _guard = self.write_lock.lock().expect("devnet write lock");
        if let Some(receipt) = self.replay(key, &request_digest)? {
            return Ok(receipt);
        }
        let available = self.balance(&request.from)?.spendable;
        if available < total {
            return Err(ChainError::Conflict(format!(
                "insufficient funds: {} has {available} spendable, the transfer needs {total}",
                request.from
            )));
        }
        let receipt = TransferReceipt {
            transfer_id: request_digest[..32].to_string(),
            total,
            replayed: false,
            from: request.from.clone(),
            outputs: request.outputs.clone(),
        };
        let mut entries = vec![(
            self.ledger_key(&request.from)?,
            LedgerEntry { amount: -i128::from(total), spendable_at_height: 0, coinbase: false },
        )];
        for output in &request.outputs {
            entries.push((
                self.ledger_key(&output.address)?,
                LedgerEntry { amount: i128::from(output.amount), spendable_at_height: 0, coinbase: false },
            ));
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, e)| Ok((k, serde_json::to_vec(&e).map_err(storage)?)))
            .collect::<Result<_, ChainError>>()?;
        let stored =
            serde_json::to_vec(&StoredTransfer { request_digest, receipt: receipt.clone() }).map_err(storage)?;
        (&self.ledger, &self.transfers)
            .transaction(|(ledger, transfers)| {
                for (k, v) in &entries {
                    ledger.insert(k.as_slice(), v.as_slice())?;
                }
                transfers.insert(key.as_bytes(), stored.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.db.flush().map_err(storage)?;
        if self.misreporting.load(std::sync::atomic::Ordering::Relaxed) {
            let mut told = receipt;
            told.outputs[0].address = "land1elsewhere".into();
            return Ok(told);
        }
        Ok(receipt)
    }
}
