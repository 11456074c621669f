//! Keeps the share ledger bounded: shares older than any reward window can
//! still need are folded into per-worker aggregates (`pool_share_aggregates`).
//!
//! What "can still need" means, by scheme: PPLNS keeps the last
//! [`PPLNS_KEEP_FACTOR`] windows' worth of difficulty at the current network
//! difficulty (a later block's window is at most that, unless difficulty
//! jumps more than that much); PROP keeps the round since the last credited
//! block; SOLO keeps nothing once blocks are credited. While any found block
//! is not yet credited (one orphaned before its credit included, while it is
//! watched for coming back), nothing is compacted. Duplicate keys are pruned by
//! height elsewhere (`PoolStore::prune_share_keys_below`).

use super::reward_split::{pplns_target, PayoutScheme};
use super::window_tally::WindowRule;
use super::{RewardError, Rewards};
use crate::storage::BlockStatus;

/// PPLNS keeps this many windows of difficulty behind the ledger's end.
pub(crate) const PPLNS_KEEP_FACTOR: u128 = 4;
/// Shares folded per transaction.
const CHUNK: usize = 5_000;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionReport {
    pub compacted: usize,
    /// The lowest position still in the ledger after it.
    pub floor: u64,
}

impl Rewards {
    /// Folds up to `max` shares no window can need into aggregates.
    pub async fn compact_ledger(
        &self,
        network_difficulty: Option<u64>,
        max: usize,
    ) -> Result<CompactionReport, RewardError> {
        let below = self.compaction_boundary(network_difficulty).await?;
        let mut compacted = 0;
        while compacted < max {
            let n = self.store.compact_shares_below(below, CHUNK.min(max - compacted)).await?;
            if n == 0 {
                break;
            }
            compacted += n;
        }
        Ok(CompactionReport { compacted, floor: self.store.ledger_floor().await? })
    }

    /// The first ledger position some window may still need.
    async fn compaction_boundary(&self, network_difficulty: Option<u64>) -> Result<u64, RewardError> {
        let floor = self.store.ledger_floor().await?;
        // Settled blocks (all credited) are not read.
        let open = self.open_blocks(None).await?;
        // (A block orphaned before its credit is uncredited too while it is
        // read: should it come back on the chain within the watch depth, it
        // is credited over the window ending at its share. One credited
        // before its orphaning keeps its credit's window; one flagged for the
        // operator never comes back.)
        let uncredited = open.found.iter().any(|b| match b.status {
            BlockStatus::Submitted => true,
            BlockStatus::Accepted => open
                .records
                .get(&(b.height, b.hash.clone()))
                .is_none_or(|record| record.credit.is_none() && record.operator_flag.is_none()),
            BlockStatus::Rejected => false,
        });
        if uncredited {
            return Ok(floor);
        }
        let end = self.store.ledger_len().await?;
        Ok(match self.config.scheme {
            PayoutScheme::Solo => end,
            PayoutScheme::Prop => open.last_round_end().map_or(floor, |p| p + 1),
            PayoutScheme::Pplns => {
                let Some(difficulty) = network_difficulty else { return Ok(floor) };
                let keep = pplns_target(difficulty, self.config.pplns_window_factor) * PPLNS_KEEP_FACTOR;
                // Kept up to date, not read whole: housekeeping runs every
                // few seconds and the kept window can be millions of shares.
                let mut tally = self.keep_tally.lock().await;
                tally.fit(&*self.store, WindowRule::LastUnits(keep)).await?;
                if tally.is_full() {
                    tally.start()
                } else {
                    floor
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chain::devnet::{DevnetChain, DevnetConfig};
    use crate::chain::Chain;
    use crate::rewards::RewardConfig;
    use crate::storage::{PoolStore, ShareRecord, SledStore};

    fn share(height: u64, nonce: u64, worker: usize) -> ShareRecord {
        ShareRecord {
            worker_id: format!("rig{worker}"),
            session_id: format!("s{worker}"),
            wallet_address: format!("land1w{worker}"),
            template_id: format!("t{height}"),
            job_id: "j".into(),
            nonce,
            share_difficulty: 10,
            height,
            time_ms: nonce,
            is_block: false,
        }
    }

    /// PPLNS rewards (windows of twice the network difficulty) on a
    /// temporary sled database.
    fn pplns_rewards() -> (sled::Db, Arc<SledStore>, Rewards) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = Arc::new(SledStore::open(&db).unwrap());
        let chain = Chain::Devnet(Arc::new(DevnetChain::open(&db, DevnetConfig::default()).unwrap()));
        let config = RewardConfig { pplns_window_factor: 2.0, ..RewardConfig::default() };
        let rewards = Rewards::new(config, store.clone(), chain).unwrap();
        (db, store, rewards)
    }

    /// A block orphaned before its credit may come back on the chain and is
    /// then credited over the window ending at its share: nothing is
    /// compacted while it is watched. Once credited, its window is recorded
    /// and the ledger compacts again.
    #[tokio::test]
    async fn a_block_orphaned_before_its_credit_holds_the_ledger() {
        use crate::rewards::reward_split::RewardWindow;
        use crate::storage::{BlockRewardRecord, RewardStatus, RewardUpdate};
        let (_db, store, rewards) = pplns_rewards();
        for n in 0..2_000 {
            store.append_share(&share(n / 100, n, (n % 3) as usize)).await.unwrap();
        }
        let found = crate::storage::test_found_block(5, "h5", BlockStatus::Accepted, 1_500);
        store.put_found_block(&found).await.unwrap();
        let mut record = BlockRewardRecord { status: RewardStatus::Orphaned, ..BlockRewardRecord::pending(5, "h5", 1) };
        let write =
            |record: &BlockRewardRecord| RewardUpdate { blocks: vec![record.clone()], ..RewardUpdate::default() };
        store.apply_reward_update(&write(&record)).await.unwrap();
        // Network difficulty 1,000: 800 shares are all any window needs.
        let report = rewards.compact_ledger(Some(1_000), usize::MAX).await.unwrap();
        assert_eq!(report, CompactionReport { compacted: 0, floor: 0 }, "held while it may come back");
        record.credit = Some(crate::storage::test_block_credit(PayoutScheme::Pplns, RewardWindow::default()));
        store.apply_reward_update(&write(&record)).await.unwrap();
        let report = rewards.compact_ledger(Some(1_000), usize::MAX).await.unwrap();
        assert_eq!(report, CompactionReport { compacted: 1_200, floor: 1_200 }, "credited before its orphaning");
    }

    /// Millions of shares: the ledger and its duplicate keys stay bounded by
    /// what the windows need, and the aggregates account for every share.
    #[tokio::test]
    async fn two_million_shares_compact_to_what_the_window_needs() {
        let (db, store, rewards) = pplns_rewards();
        // Network difficulty 1,000: a window is 2,000 difficulty = 200 shares;
        // 4 windows are kept.
        const TOTAL: u64 = 2_000_000;
        const PER_HEIGHT: u64 = 10_000;
        let mut compacted = 0;
        for n in 0..TOTAL {
            let height = n / PER_HEIGHT;
            store.append_share(&share(height, n, (n % 7) as usize)).await.unwrap();
            if (n + 1) % PER_HEIGHT == 0 {
                // What housekeeping does as heights pass.
                store.prune_share_keys_below(height.saturating_sub(2)).await.unwrap();
                compacted += rewards.compact_ledger(Some(1_000), usize::MAX).await.unwrap().compacted;
            }
        }
        assert_eq!(store.ledger_len().await.unwrap(), TOTAL, "positions keep counting");
        let left = store.shares_from(0, 10_000).await.unwrap();
        assert_eq!(left.len(), 800, "four windows of 200 shares are kept");
        assert_eq!(left[0].0, TOTAL - 800);
        assert_eq!(compacted as u64, TOTAL - 800);
        assert_eq!(store.ledger_floor().await.unwrap(), TOTAL - 800);
        let aggregates = store.share_aggregates().await.unwrap();
        assert_eq!(aggregates.len(), 7);
        assert_eq!(aggregates.iter().map(|a| a.shares).sum::<u64>(), TOTAL - 800);
        assert_eq!(aggregates.iter().map(|a| a.difficulty_sum).sum::<u128>(), u128::from(TOTAL - 800) * 10);
        // Duplicate keys: only the last heights' remain.
        assert!(store.credited(0, "t0", 0).await.unwrap().is_none());
        assert!(store.credited(199, "t199", TOTAL - 1).await.unwrap().is_some());
        // The floor survives a reopen with an empty-looking ledger start.
        drop(rewards);
        let reopened = SledStore::open(&db).unwrap();
        assert_eq!(reopened.ledger_len().await.unwrap(), TOTAL);
    }
}
