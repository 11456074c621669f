//! The operator's two ways out for a set-aside payout batch (admin routes):
//! send it again under a new key (the payee's problem was fixed, or the
//! chain shows it was not paid), or record it paid (a `key_conflict` whose
//! transfer under its key the operator found on the chain, and names by
//! its id). Each applies once: it expects the batch as it was read, set
//! aside.

use super::payout_sender::{move_outputs, stored_transfer_id};
use super::{RewardError, Rewards};
use crate::storage::{BalanceBucket, Expectation, PayoutRecord, PayoutStatus, RewardUpdate};

/// The longest transfer id kept with a batch.
pub(super) const MAX_TRANSFER_ID_BYTES: usize = 128;

/// What an operator's action on a set-aside payout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAsideOutcome {
    Done,
    NotFound,
    NotSetAside,
    /// Recording it paid: it was set aside for another reason than a
    /// `key_conflict` (the chain refused it: nothing was paid).
    NotKeyConflict,
    /// Recording it paid: the chain holds no transfer of that id under the
    /// batch's key.
    TransferNotUnderKey,
    /// Recording it paid: the transfer id is not 1-128 visible ASCII
    /// characters.
    BadTransferId,
}

/// Whether `id` may be stored as a transfer id as it is: visible ASCII, at
/// most [`MAX_TRANSFER_ID_BYTES`].
pub(super) fn is_plain_transfer_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_TRANSFER_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Rewards {
    /// The operator's retry of a set-aside payout (the payee's problem was
    /// fixed): it goes back to `sending` under a new key and is sent in the
    /// next round (set aside again if the chain still refuses it).
    pub async fn retry_set_aside(&self, id: u64, now_ms: u64) -> Result<SetAsideOutcome, RewardError> {
        let _round = self.round.lock().await;
        let mut batch = match self.set_aside(id).await? {
            Ok(batch) => batch,
            Err(outcome) => return Ok(outcome),
        };
        let mut update = RewardUpdate { expects: vec![Expectation::payout(&batch)], ..RewardUpdate::default() };
        move_outputs(&mut update, &batch.outputs, BalanceBucket::SetAside, BalanceBucket::Sending);
        batch.status = PayoutStatus::Sending;
        batch.idempotency_key = self.payout_key(id)?;
        self.apply_set_aside_change(batch, update, "retried by the operator", now_ms).await
    }

    /// The operator's word that a `key_conflict` batch was paid, by the
    /// chain's transfer `transfer_id`, which the chain must hold under the
    /// batch's key (the receipt the batch was set aside on, paid other than
    /// the node reported, say): its amounts move from set aside to paid,
    /// and nothing is sent (its payees get payouts again from the next
    /// round). A batch the chain refused was not paid, and is not taken.
    pub async fn mark_set_aside_paid(
        &self,
        id: u64,
        transfer_id: &str,
        now_ms: u64,
    ) -> Result<SetAsideOutcome, RewardError> {
        if !is_plain_transfer_id(transfer_id) {
            return Ok(SetAsideOutcome::BadTransferId);
        }
        let _round = self.round.lock().await;
        let mut batch = match self.set_aside(id).await? {
            Ok(batch) => batch,
            Err(outcome) => return Ok(outcome),
        };
        if !batch.reason.as_deref().is_some_and(|r| r.starts_with("key_conflict")) {
            return Ok(SetAsideOutcome::NotKeyConflict);
        }
        let receipt = self.chain.transfer_by_key(&batch.idempotency_key).await?;
        if receipt.is_none_or(|r| stored_transfer_id(&r.transfer_id) != transfer_id) {
            return Ok(SetAsideOutcome::TransferNotUnderKey);
        }
        let mut update = RewardUpdate { expects: vec![Expectation::payout(&batch)], ..RewardUpdate::default() };
        move_outputs(&mut update, &batch.outputs, BalanceBucket::SetAside, BalanceBucket::Paid);
        batch.status = PayoutStatus::Paid;
        batch.transfer_id = Some(transfer_id.to_string());
        let outcome = self.apply_set_aside_change(batch, update, "marked paid by the operator", now_ms).await?;
        self.metrics.payouts_paid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(outcome)
    }

    /// Batch `id` as stored, if it is set aside; else why not.
    async fn set_aside(&self, id: u64) -> Result<Result<PayoutRecord, SetAsideOutcome>, RewardError> {
        Ok(match self.store.payout(id).await? {
            None => Err(SetAsideOutcome::NotFound),
            Some(batch) if batch.status != PayoutStatus::SetAside => Err(SetAsideOutcome::NotSetAside),
            Some(batch) => Ok(batch),
        })
    }

    /// Writes the changed `batch` with `update` (which expects it as read),
    /// durably, with `reason`.
    async fn apply_set_aside_change(
        &self,
        mut batch: PayoutRecord,
        mut update: RewardUpdate,
        reason: &str,
        now_ms: u64,
    ) -> Result<SetAsideOutcome, RewardError> {
        let id = batch.id;
        batch.reason = Some(reason.into());
        batch.updated_ms = now_ms;
        update.payouts.push(batch);
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        tracing::info!(payout = id, "set-aside payout {reason}");
        Ok(SetAsideOutcome::Done)
    }
}
