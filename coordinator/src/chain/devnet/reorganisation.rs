//! Test hooks that rewrite the devnet's chain: a tip replaced, a
//! reorganisation some blocks deep, and that reorganisation undone. What a
//! reorganisation took off the chain is kept in the database (in the same
//! transaction as the new blocks), so a test may restart the node before
//! undoing it.

use sha2::{Digest as _, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{encode_block, storage, DevnetChain, LedgerEntry, StoredBlock};
use crate::chain::{ChainBlock, ChainError};

/// A block a reorganisation removed, as stored, with its coinbase entry
/// (key, bytes).
type RemovedBlock = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

/// The key of the last reorganisation's removed blocks.
const LAST: &[u8] = b"last";

impl DevnetChain {
    /// Test hook: replaces the tip with another block at the same height (a
    /// one-block reorganisation), so work on the old tip has a dead parent.
    /// Only the block changes; the replaced block's coinbase stays.
    #[doc(hidden)]
    pub fn replace_tip(&self) -> Result<ChainBlock, ChainError> {
        let _guard = self.write_lock.lock().expect("devnet write lock");
        let tip = self.tip()?.ok_or_else(|| ChainError::NotFound("no tip to replace".into()))?;
        let replacement = ChainBlock {
            hash: hex::encode(Sha256::digest(format!("replaced {}", tip.hash))),
            miner: "devnet-replacement".into(),
            ..tip
        };
        let stored: StoredBlock = match self.blocks.get(tip.height.to_be_bytes()).map_err(storage)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(storage)?,
            None => return Err(ChainError::NotFound("no tip to replace".into())),
        };
        let old_coinbase = stored.coinbase_key.as_deref().and_then(|k| hex::decode(k).ok());
        let bytes = encode_block(&replacement, old_coinbase.as_deref());
        self.blocks.insert(replacement.height.to_be_bytes(), bytes).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        self.next_height.send_replace(replacement.height + 1);
        Ok(replacement)
    }

    /// Test hook: a reorganisation `depth` blocks deep. The top `depth`
    /// blocks leave the chain with their coinbases, and `depth + 1` other
    /// blocks (paying `devnet-reorg`) take their place, so the chain ends one
    /// block longer. Returns the new blocks.
    #[doc(hidden)]
    pub fn reorganise(&self, depth: u64) -> Result<Vec<ChainBlock>, ChainError> {
        let _guard = self.write_lock.lock().expect("devnet write lock");
        let tip = self.tip()?.ok_or_else(|| ChainError::NotFound("no blocks to reorganise".into()))?;
        let depth = depth.min(tip.height + 1);
        let first = tip.height + 1 - depth;
        let removed = self.removed_blocks(first, tip.height)?;
        let removed_coinbases: Vec<Vec<u8>> =
            removed.iter().filter_map(|(_, c)| c.as_ref().map(|(k, _)| k.clone())).collect();
        let (mut parent_hash, mut parent_time) = match first.checked_sub(1) {
            Some(below) => {
                let parent = self.block(below)?;
                (parent.hash, parent.timestamp)
            }
            None => (hex::encode([0u8; 32]), 0),
        };
        let mut new_blocks = Vec::new();
        let mut writes = Vec::new();
        for height in first..=tip.height + 1 {
            let block = ChainBlock {
                height,
                hash: hex::encode(Sha256::digest(format!("reorg {height} {parent_hash}"))),
                parent_hash: parent_hash.clone(),
                timestamp: parent_time + self.config.block_time_secs,
                difficulty: tip.difficulty,
                tx_root: self.tx_root(height),
                miner: "devnet-reorg".into(),
                nonce: 0,
                reward: self.config.block_reward,
            };
            let coinbase_key = self.ledger_key(&block.miner)?;
            let coinbase = LedgerEntry {
                amount: i128::from(block.reward),
                spendable_at_height: height + self.config.coinbase_maturity,
                coinbase: true,
            };
            writes.push((
                height,
                encode_block(&block, Some(&coinbase_key)),
                coinbase_key,
                serde_json::to_vec(&coinbase).map_err(storage)?,
            ));
            (parent_hash, parent_time) = (block.hash.clone(), block.timestamp);
            new_blocks.push(block);
        }
        let saved = serde_json::to_vec(&removed).map_err(storage)?;
        (&self.blocks, &self.ledger, &self.reorganised)
            .transaction(|(blocks, ledger, reorganised)| {
                reorganised.insert(LAST, saved.as_slice())?;
                for key in &removed_coinbases {
                    ledger.remove(key.as_slice())?;
                }
                for (height, block, coinbase_key, coinbase) in &writes {
                    blocks.insert(&height.to_be_bytes()[..], block.as_slice())?;
                    ledger.insert(coinbase_key.as_slice(), coinbase.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.db.flush().map_err(storage)?;
        self.next_height.send_replace(tip.height + 2);
        Ok(new_blocks)
    }

    /// Blocks `first..=last` as stored, each with its coinbase entry.
    fn removed_blocks(&self, first: u64, last: u64) -> Result<Vec<RemovedBlock>, ChainError> {
        let mut removed = Vec::new();
        for height in first..=last {
            let Some(bytes) = self.blocks.get(height.to_be_bytes()).map_err(storage)? else { continue };
            let stored: StoredBlock = serde_json::from_slice(&bytes).map_err(storage)?;
            let key = stored.coinbase_key.as_deref().and_then(|k| hex::decode(k).ok());
            let coinbase = match key {
                Some(key) => self.ledger.get(&key).map_err(storage)?.map(|entry| (key, entry.to_vec())),
                None => None,
            };
            removed.push((bytes.to_vec(), coinbase));
        }
        Ok(removed)
    }

    /// Test hook: undoes the last [`DevnetChain::reorganise`]: the blocks it
    /// removed (and their coinbases) are the chain again from their height.
    #[doc(hidden)]
    pub fn restore_reorganised(&self) -> Result<(), ChainError> {
        let _guard = self.write_lock.lock().expect("devnet write lock");
        let saved: Vec<RemovedBlock> = match self.reorganised.get(LAST).map_err(storage)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(storage)?,
            None => Vec::new(),
        };
        let Some((first_bytes, _)) = saved.first() else {
            return Err(ChainError::NotFound("no reorganisation to undo".into()));
        };
        let first: StoredBlock = serde_json::from_slice(first_bytes).map_err(storage)?;
        let tip = self.tip()?.map_or(first.height, |t| t.height);
        let current = self.removed_blocks(first.height, tip)?;
        (&self.blocks, &self.ledger, &self.reorganised)
            .transaction(|(blocks, ledger, reorganised)| {
                reorganised.remove(LAST)?;
                for height in first.height..=tip {
                    blocks.remove(&height.to_be_bytes()[..])?;
                }
                for (_, coinbase) in &current {
                    if let Some((key, _)) = coinbase {
                        ledger.remove(key.as_slice())?;
                    }
                }
                for (offset, (block, coinbase)) in saved.iter().enumerate() {
                    blocks.insert(&(first.height + offset as u64).to_be_bytes()[..], block.as_slice())?;
                    if let Some((key, entry)) = coinbase {
                        ledger.insert(key.as_slice(), entry.as_slice())?;
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.db.flush().map_err(storage)?;
        self.next_height.send_replace(first.height + saved.len() as u64);
        Ok(())
    }
}
