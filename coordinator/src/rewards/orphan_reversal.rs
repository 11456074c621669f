//! A block that left the chain: its credits taken back, from `confirmed`
//! first, then from payouts set aside (a retry must not pay a reward the
//! pool no longer has); what was paid out, or is being sent, cannot be,
//! and is flagged for the operator. What is being sent is marked on its
//! batch (`PayoutOutput::orphaned`) where the round is not carried: should
//! the chain refuse the batch, that part is taken back then
//! (`payout_sender`) instead of set aside. What could not be taken back is
//! returned, so that only the rest of a PROP round is carried
//! (`prop_rounds`: there the carried round's cut stands for it).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::{RewardError, Rewards};
use crate::chain::ChainBlock;
use crate::storage::{
    BalanceBucket, BalanceDelta, BlockRewardRecord, Expectation, PayoutStatus, RewardStatus, RewardUpdate,
};

impl Rewards {
    /// Left the chain: its credits are taken back, from `confirmed` first,
    /// then from payouts the chain refused and that wait set aside (a retry
    /// must not pay a reward the pool no longer has); what was paid out, or
    /// is being sent, cannot be, and is flagged for the operator. Returns
    /// that, per wallet. Unless `carried` (its PROP round goes on to the
    /// next block, cut by what is returned), what is being sent is marked
    /// on its batches, to be taken back should the chain refuse them.
    pub(super) async fn orphan(
        &self,
        record: &mut BlockRewardRecord,
        chain_block: &ChainBlock,
        carried: bool,
        update: &mut RewardUpdate,
        now_ms: u64,
    ) -> Result<BTreeMap<String, u64>, RewardError> {
        let Some(credit) = record.credit.as_ref() else { return Ok(BTreeMap::new()) };
        // Per recipient (one wallet may hold several entries: a miner who is
        // also the fee address).
        let mut owed: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in &credit.split.entries {
            *owed.entry(entry.recipient.as_str()).or_default() += entry.amount;
        }
        let mut shortfalls = Vec::new();
        let mut in_flight = Vec::new();
        let mut unrecovered = BTreeMap::new();
        for (recipient, amount) in owed {
            if credit.confirmed {
                let read = self.store.balance(recipient).await?;
                // What is taken back, and flagged as paid out, holds only
                // while the balance is as read (another coordinator may be
                // confirming a block of this wallet's meanwhile).
                update.expects.push(Expectation::balance(recipient, read.as_ref()));
                let balance = read.unwrap_or_default();
                let taken = amount.min(balance.confirmed);
                if taken > 0 {
                    update.balances.push(BalanceDelta::new(recipient, BalanceBucket::Confirmed, -i128::from(taken)));
                }
                let mut short = amount - taken;
                if short > 0 && balance.set_aside > 0 {
                    let want = short.min(balance.set_aside);
                    short -= self.take_back_set_aside(recipient, want, record.height, update, now_ms).await?;
                }
                if short > 0 {
                    shortfalls.push(format!("{recipient} {short}"));
                    unrecovered.insert(recipient.to_string(), short);
                }
                if short > 0 && balance.sending > 0 && !carried {
                    let marked = self.mark_in_flight(recipient, short.min(balance.sending), update).await?;
                    if marked > 0 {
                        in_flight.push(format!("{recipient} {marked}"));
                    }
                }
            } else {
                update.balances.push(BalanceDelta::new(recipient, BalanceBucket::Immature, -i128::from(amount)));
            }
        }
        record.change(
            RewardStatus::Orphaned,
            format!("height {} now holds block {}; credits reversed", record.height, chain_block.hash),
            now_ms,
        );
        self.metrics.blocks_orphaned.fetch_add(1, Ordering::Relaxed);
        if !shortfalls.is_empty() {
            let mut flag = format!(
                "orphaned after its credits were paid out (or while being sent); not recovered: {}",
                shortfalls.join(", ")
            );
            if !in_flight.is_empty() {
                flag.push_str(&format!(
                    " (being sent: {}; taken back should the chain refuse it)",
                    in_flight.join(", ")
                ));
            }
            tracing::error!(height = record.height, "{flag}");
            record.note("flagged", flag.clone(), now_ms);
            record.operator_flag = Some(flag);
            self.metrics.orphans_after_payout.fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::warn!(height = record.height, "block orphaned; credits reversed");
        }
        Ok(unrecovered)
    }

    /// Marks up to `want` of what `wallet`'s `sending` batches pay it as
    /// orphaned credit, in `update` (each batch expected as read, so a
    /// sender's step decided on it before cannot write back an unmarked
    /// copy). Returns what was marked. A batch this update already changes
    /// (two recipients of the block in one batch) is marked on that copy.
    async fn mark_in_flight(&self, wallet: &str, want: u64, update: &mut RewardUpdate) -> Result<u64, RewardError> {
        let mut left = want;
        for read in self.store.payouts_sending().await? {
            if left == 0 {
                break;
            }
            if !read.outputs.iter().any(|o| o.address == wallet) {
                continue;
            }
            let batch = match update.payouts.iter().position(|p| p.id == read.id) {
                Some(at) => &mut update.payouts[at],
                None => {
                    update.expects.push(Expectation::payout(&read));
                    update.payouts.push(read);
                    update.payouts.last_mut().expect("just pushed")
                }
            };
            for output in batch.outputs.iter_mut().filter(|o| o.address == wallet) {
                let mark = left.min(output.amount - output.orphaned);
                output.orphaned += mark;
                left -= mark;
            }
        }
        Ok(want - left)
    }

    /// Takes up to `want` of `wallet`'s set-aside money back into `update`,
    /// from its set-aside payouts of one output (newest first): each is
    /// reduced, under a fresh key, or removed when nothing is left of it.
    /// The new key makes an operator's retry read before this (on another
    /// coordinator) fail its expectation rather than send the old amount.
    /// Returns what was taken. (A key conflict, where the chain's receipt
    /// under the batch's key differed and money may have moved, is left
    /// whole to the operator, as is a batch of several payees.)
    async fn take_back_set_aside(
        &self,
        wallet: &str,
        want: u64,
        height: u64,
        update: &mut RewardUpdate,
        now_ms: u64,
    ) -> Result<u64, RewardError> {
        let mut left = want;
        for mut batch in self.store.payouts_newest(SET_ASIDE_SEARCHED, Some(wallet), None).await? {
            if left == 0 {
                break;
            }
            let alone = matches!(batch.outputs.as_slice(), [only] if only.address == wallet);
            let key_conflict = batch.reason.as_deref().is_some_and(|r| r.starts_with("key_conflict"));
            if batch.status != PayoutStatus::SetAside || !alone || key_conflict {
                continue;
            }
            update.expects.push(Expectation::payout(&batch));
            let take = left.min(batch.outputs[0].amount);
            left -= take;
            update.balances.push(BalanceDelta::new(wallet, BalanceBucket::SetAside, -i128::from(take)));
            batch.outputs[0].amount -= take;
            tracing::warn!(payout = batch.id, height, "set-aside payout reduced by {take}: its block was orphaned");
            if batch.outputs[0].amount == 0 {
                update.payouts_removed.push(batch.id);
            } else {
                let before = batch.reason.take().unwrap_or_default();
                batch.reason = Some(format!("{before} (reduced by {take}: block {height} was orphaned)"));
                batch.idempotency_key = self.payout_key(batch.id)?;
                batch.updated_ms = now_ms;
                update.payouts.push(batch);
            }
        }
        Ok(want - left)
    }
}

/// Set-aside payouts of one wallet read when an orphan takes money back
/// (newest first): a wallet has a few, each waiting on the operator.
const SET_ASIDE_SEARCHED: usize = 1000;
