//! The reward records as the API shows them (`vision_protocol::pool`
//! views): blocks with their status and split, balances, payouts.

use std::collections::HashMap;

use vision_protocol::pool::{
    BalanceView, BlockDetail, BlockState, BlockSummary, PayoutOutputView, PayoutView, SplitEntryView, StatusChangeView,
    SubmissionState, WalletPartView, WindowView,
};

use super::reward_split::SplitKind;
use super::{RewardError, Rewards};
use crate::storage::{BlockRewardRecord, BlockStatus, FoundBlockRecord, PayoutRecord, PayoutStatus, RewardStatus};

fn state_of(block: &FoundBlockRecord, record: Option<&BlockRewardRecord>) -> BlockState {
    match (block.status, record.map(|r| r.status)) {
        (BlockStatus::Rejected, _) => BlockState::Rejected,
        (_, Some(RewardStatus::Confirmed)) => BlockState::Confirmed,
        (_, Some(RewardStatus::Orphaned)) => BlockState::Orphaned,
        _ => BlockState::Pending,
    }
}

fn summary(block: &FoundBlockRecord, record: Option<&BlockRewardRecord>) -> BlockSummary {
    let orphan_reason = record
        .filter(|r| r.status == RewardStatus::Orphaned)
        .and_then(|r| r.history.iter().rev().find(|c| c.status == "orphaned"))
        .map(|c| c.reason.clone());
    BlockSummary {
        height: block.height,
        hash: block.hash.clone(),
        status: state_of(block, record),
        confirmations: record.map_or(0, |r| r.confirmations),
        reward: record.and_then(|r| r.credit.as_ref()).map_or(0, |c| c.split.reward),
        finder: block.worker_id.clone(),
        finder_wallet: block.wallet_address.clone(),
        time_ms: block.time_ms,
        submission: match block.status {
            BlockStatus::Submitted => SubmissionState::Submitted,
            BlockStatus::Accepted => SubmissionState::Accepted,
            BlockStatus::Rejected => SubmissionState::Rejected,
        },
        reason: orphan_reason.or_else(|| block.reason.clone()),
        overdue: record.is_some_and(|r| r.overdue_since_ms.is_some() && r.status == RewardStatus::Pending),
        operator_flag: record.and_then(|r| r.operator_flag.clone()),
        round_paid_by: record.and_then(super::prop_rounds::round_paid_by).map(|b| b.height),
        session_id: block.session_id.clone(),
        template_id: block.template_id.clone(),
        nonce: block.nonce,
        attempts: block.attempts,
        updated_ms: record.map_or(block.updated_ms, |r| r.updated_ms.max(block.updated_ms)),
    }
}

fn kind_name(kind: SplitKind) -> &'static str {
    match kind {
        SplitKind::Foundation => "foundation",
        SplitKind::PoolFee => "pool_fee",
        SplitKind::Miner => "miner",
    }
}

fn payout_view(p: &PayoutRecord) -> PayoutView {
    PayoutView {
        id: p.id,
        status: match p.status {
            PayoutStatus::Sending => "sending",
            PayoutStatus::Paid => "paid",
            PayoutStatus::SetAside => "set_aside",
        }
        .into(),
        outputs: p.outputs.iter().map(|o| PayoutOutputView { address: o.address.clone(), amount: o.amount }).collect(),
        total: p.outputs.iter().map(|o| o.amount).sum(),
        reason: p.reason.clone(),
        time_ms: p.created_ms,
        updated_ms: p.updated_ms,
        idempotency_key: (p.status != PayoutStatus::Sending).then(|| p.idempotency_key.clone()),
        transfer_id: p.transfer_id.clone(),
        attempts: p.attempts,
    }
}

impl Rewards {
    /// Up to `limit` found blocks, newest first. Two reads (those blocks,
    /// then the reward records from the oldest of them up), whatever the
    /// limit: the route is open to anyone, and a pool's history only grows.
    pub async fn block_summaries(&self, limit: usize) -> Result<Vec<BlockSummary>, RewardError> {
        let found = self.store.found_blocks_newest(limit).await?;
        let Some(oldest) = found.iter().map(|b| b.height).min() else { return Ok(Vec::new()) };
        let records: HashMap<(u64, String), BlockRewardRecord> =
            self.store.block_rewards_from(oldest).await?.into_iter().map(|r| ((r.height, r.hash.clone()), r)).collect();
        let mut blocks: Vec<BlockSummary> =
            found.iter().map(|b| summary(b, records.get(&(b.height, b.hash.clone())))).collect();
        blocks.sort_by_key(|b| std::cmp::Reverse((b.height, b.time_ms)));
        Ok(blocks)
    }

    /// The block found at `height` (the one the chain took, if several were).
    pub async fn block_detail(&self, height: u64) -> Result<Option<BlockDetail>, RewardError> {
        let mut candidates: Vec<FoundBlockRecord> = self.store.found_blocks_at(height).await?;
        candidates.sort_by_key(|b| (b.status == BlockStatus::Rejected, std::cmp::Reverse(b.time_ms)));
        let Some(block) = candidates.into_iter().next() else { return Ok(None) };
        let record = self.store.block_reward(block.height, &block.hash).await?;
        let record = record.as_ref();
        let s = summary(&block, record);
        let credit = record.and_then(|r| r.credit.as_ref());
        let window = credit.map(|c| WindowView {
            first: c.window.first,
            last: c.window.last,
            shares: c.window.shares,
            difficulty_sum: c.window.difficulty_sum,
            target: c.window.target,
            coverage: c.window.coverage(),
            carried_rounds: c.carried_rounds.iter().map(|b| b.height).collect(),
        });
        let wallets = credit.map_or_else(Vec::new, |c| {
            let total: u128 = c.window.weights.iter().map(|w| w.difficulty).sum();
            c.window
                .weights
                .iter()
                .map(|w| WalletPartView {
                    wallet: w.wallet.clone(),
                    difficulty: w.difficulty,
                    shares: w.shares,
                    fraction: if total == 0 { 0.0 } else { w.difficulty as f64 / total as f64 },
                    amount: c
                        .split
                        .entries
                        .iter()
                        .filter(|e| e.kind == SplitKind::Miner && e.recipient == w.wallet)
                        .map(|e| e.amount)
                        .sum(),
                })
                .collect()
        });
        Ok(Some(BlockDetail {
            height: s.height,
            hash: s.hash,
            status: s.status,
            confirmations: s.confirmations,
            reward: s.reward,
            scheme: credit.map(|c| c.scheme.to_string()),
            window,
            split: credit.map_or_else(Vec::new, |c| {
                c.split
                    .entries
                    .iter()
                    .map(|e| SplitEntryView {
                        recipient: e.recipient.clone(),
                        kind: kind_name(e.kind).into(),
                        amount: e.amount,
                    })
                    .collect()
            }),
            foundation_fee: credit.map_or(0, |c| c.split.foundation_fee),
            pool_fee: credit.map_or(0, |c| c.split.pool_fee),
            dust: credit.map_or(0, |c| c.split.dust),
            wallets,
            finder: s.finder,
            finder_wallet: s.finder_wallet,
            time_ms: s.time_ms,
            reason: s.reason,
            overdue: s.overdue,
            operator_flag: s.operator_flag,
            round_paid_by: s.round_paid_by,
            history: record.map_or_else(Vec::new, |r| {
                r.history
                    .iter()
                    .map(|c| StatusChangeView { status: c.status.clone(), reason: c.reason.clone(), at_ms: c.at_ms })
                    .collect()
            }),
        }))
    }

    pub async fn balance_view(&self, wallet: &str) -> Result<BalanceView, RewardError> {
        let b = self.store.balance(wallet).await?.unwrap_or_default();
        Ok(BalanceView {
            wallet: wallet.to_string(),
            immature: b.immature,
            confirmed: b.confirmed,
            paid: b.paid,
            threshold: self.config.payout_threshold,
            sending: b.sending,
            set_aside: b.set_aside,
        })
    }

    /// Up to `limit` payout batches, newest first; with `wallet`, those
    /// paying it (through the store's wallet index, not a scan); with
    /// `before`, the page after the batch of that id.
    pub async fn payout_views(
        &self,
        wallet: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PayoutView>, RewardError> {
        Ok(self.store.payouts_newest(limit, wallet, before).await?.iter().map(payout_view).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payout_key_is_shown_once_the_batch_is_settled() {
        let batch = |status| PayoutRecord {
            id: 1,
            status,
            outputs: Vec::new(),
            idempotency_key: "tag-payout-1-abc".into(),
            reason: None,
            created_ms: 0,
            updated_ms: 0,
            transfer_id: None,
            attempts: 1,
        };
        let shown = |status| payout_view(&batch(status)).idempotency_key;
        assert_eq!(shown(PayoutStatus::Sending), None);
        assert_eq!(shown(PayoutStatus::Paid).as_deref(), Some("tag-payout-1-abc"));
        assert_eq!(shown(PayoutStatus::SetAside).as_deref(), Some("tag-payout-1-abc"));
    }
}
