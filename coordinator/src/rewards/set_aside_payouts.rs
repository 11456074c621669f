//! The operator's two ways out for a set-aside payout batch (admin routes):
//! send it again under a new key (the payee's problem was fixed, or the
//! chain shows it was not paid), or record it paid (the operator found its
//! transfer on the chain: a `key_conflict` whose node paid other than it
//! said). Each applies once: it expects the batch as it was read, set aside.

use super::payout_sender::move_outputs;
use super::{RewardError, Rewards};
use crate::storage::{BalanceBucket, Expectation, PayoutRecord, PayoutStatus, RewardUpdate};

/// The longest transfer id kept with a batch (the chain's, or the operator's).
pub(super) const MAX_TRANSFER_ID_BYTES: usize = 128;

/// What an operator's action on a set-aside payout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAsideOutcome {
    Done,
    NotFound,
    NotSetAside,
}

/// Why an operator's transfer id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a transfer id is 1-{MAX_TRANSFER_ID_BYTES} visible ASCII characters (the chain's id of the transfer)")]
pub struct BadTransferId;

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
        let key = self.payout_key(id)?;
        self.change_set_aside(id, now_ms, "retried by the operator", |batch, update| {
            move_outputs(update, &batch.outputs, BalanceBucket::SetAside, BalanceBucket::Sending);
            batch.status = PayoutStatus::Sending;
            batch.idempotency_key = key;
        })
        .await
    }

    /// The operator's word that a set-aside payout was paid, by the chain's
    /// transfer `transfer_id`: its amounts move from set aside to paid, and
    /// nothing is sent (its payees get payouts again from the next round).
    pub async fn mark_set_aside_paid(
        &self,
        id: u64,
        transfer_id: &str,
        now_ms: u64,
    ) -> Result<Result<SetAsideOutcome, BadTransferId>, RewardError> {
        if !is_plain_transfer_id(transfer_id) {
            return Ok(Err(BadTransferId));
        }
        let outcome = self
            .change_set_aside(id, now_ms, "marked paid by the operator", |batch, update| {
                move_outputs(update, &batch.outputs, BalanceBucket::SetAside, BalanceBucket::Paid);
                batch.status = PayoutStatus::Paid;
                batch.transfer_id = Some(transfer_id.to_string());
            })
            .await?;
        if outcome == SetAsideOutcome::Done {
            self.metrics.payouts_paid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Ok(outcome))
    }

    /// Applies `change` to set-aside batch `id` (and its balances), once,
    /// with `reason`, durably; within a round's lock, so no round decides
    /// on the batch meanwhile.
    async fn change_set_aside(
        &self,
        id: u64,
        now_ms: u64,
        reason: &str,
        change: impl FnOnce(&mut PayoutRecord, &mut RewardUpdate),
    ) -> Result<SetAsideOutcome, RewardError> {
        let _round = self.round.lock().await;
        let Some(mut batch) = self.store.payout(id).await? else {
            return Ok(SetAsideOutcome::NotFound);
        };
        if batch.status != PayoutStatus::SetAside {
            return Ok(SetAsideOutcome::NotSetAside);
        }
        let mut update = RewardUpdate { expects: vec![Expectation::payout(&batch)], ..RewardUpdate::default() };
        change(&mut batch, &mut update);
        batch.reason = Some(reason.into());
        batch.updated_ms = now_ms;
        update.payouts.push(batch);
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        tracing::info!(payout = id, "set-aside payout {reason}");
        Ok(SetAsideOutcome::Done)
    }
}
