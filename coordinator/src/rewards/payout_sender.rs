//! Payouts: confirmed balances past the threshold, paid in one batch per
//! round through the chain's transfer API, exactly once.
//!
//! A batch is written `sending` (its amounts moved from `confirmed` to
//! `sending`) and made durable before the chain is asked; it becomes `paid`
//! after. A batch found `sending` (a crash, a lost answer, a node that was
//! down) is first looked up on the chain by its idempotency key, and sent
//! again with the same key only if the chain has no such transfer: the
//! chain never pays a key twice. A batch the chain refuses is split into
//! one batch per payee, and a payee refused alone is set aside with the
//! chain's reason, so one bad address never holds up the others.

use std::sync::atomic::Ordering;

use super::set_aside_payouts::{is_plain_transfer_id, MAX_TRANSFER_ID_BYTES};
use super::{CrashPoint, RewardError, Rewards};
use crate::chain::{ChainError, TransferOutput, TransferReceipt, TransferRequest};
use crate::storage::{
    BalanceBucket, BalanceDelta, Expectation, LeaseTerms, PayoutOutput, PayoutRecord, PayoutStatus, RewardUpdate,
    StoreError,
};

/// How long a coordinator holds a batch it is sending: longer than one
/// claim's calls to the node can take (a lookup by key, the transfer, a
/// lookup again after a refusal: three requests of up to
/// [`crate::chain::upstream::REQUEST_TIMEOUT`] each), with room to spare.
/// Shorter, another coordinator could take over a batch whose transfer is
/// still on its way and, on a refusal, split it under new keys while the
/// first transfer lands. The batches of a holder that dies wait this long.
const PAYOUT_LEASE_MS: u64 = 5 * crate::chain::upstream::REQUEST_TIMEOUT.as_millis() as u64;

/// The least of its lease a holder must have left to send a batch again:
/// a whole send's node calls (three of up to the request timeout each),
/// with room to spare. (A retry late in its lease would leave its transfer
/// on its way when another coordinator takes the batch over.)
const PAYOUT_SEND_MS: u64 = 3 * crate::chain::upstream::REQUEST_TIMEOUT.as_millis() as u64 + 30_000;
const _: () = assert!(PAYOUT_LEASE_MS > PAYOUT_SEND_MS);

/// How much later than any other coordinator the last holder of a batch
/// whose lease ran out may claim it again: a batch left `sending` by a
/// coordinator whose node fails its transfers (lagging, or its token
/// without write rights) goes to another, whose node may pay, rather than
/// back to it, lease after lease.
const PAYOUT_HANDOVER_MS: u64 = crate::chain::upstream::REQUEST_TIMEOUT.as_millis() as u64;

const PAYOUT_LEASE: LeaseTerms =
    LeaseTerms { lease_ms: PAYOUT_LEASE_MS, send_ms: PAYOUT_SEND_MS, handover_ms: PAYOUT_HANDOVER_MS };

/// The least of its lease a holder must have left at the claim just before
/// a transfer: what is left of a send (the transfer and a lookup after a
/// refusal), with room to spare. (The lookup before it has used up to a
/// request's time of [`PAYOUT_SEND_MS`].)
const PAYOUT_TRANSFER_MS: u64 = 2 * crate::chain::upstream::REQUEST_TIMEOUT.as_millis() as u64 + 30_000;
const _: () =
    assert!(PAYOUT_TRANSFER_MS + crate::chain::upstream::REQUEST_TIMEOUT.as_millis() as u64 <= PAYOUT_SEND_MS);

const PAYOUT_TRANSFER_LEASE: LeaseTerms = LeaseTerms { send_ms: PAYOUT_TRANSFER_MS, ..PAYOUT_LEASE };

/// Refusals that name a payee. Any other refusal (our credential, our key,
/// a reason the node does not say) keeps the batch `sending`, logged, and
/// sets nobody aside.
const PAYEE_FAULTS: [&str; 2] = ["refused_payee", "bad_address"];

impl Rewards {
    /// Settles batches left `sending`, then pays what is due.
    pub(super) async fn send_payouts(&self, now_ms: u64) -> Result<(), RewardError> {
        let mut queue: Vec<PayoutRecord> = self.store.payouts_sending().await?;
        // Oldest first (popped from the end): the longest-waiting payees first.
        queue.reverse();
        let reconciling = !queue.is_empty();
        while let Some(read) = queue.pop() {
            // Sent as it is stored now; none when another coordinator on the
            // shared store holds it, or it is no longer sending.
            let Some(batch) = self.claim(read.id).await? else {
                continue;
            };
            let step = match self.chain.transfer_by_key(&batch.idempotency_key).await? {
                Some(receipt) => self.settle(batch, &receipt, now_ms).await.map(|()| Vec::new()),
                None => self.send(batch, now_ms).await,
            };
            queue.extend(settled_elsewhere(step)?);
        }
        if reconciling && !self.store.payouts_sending().await?.is_empty() {
            // Still unsettled (the chain is down or short of funds): nothing
            // new is sent until it is.
            return Ok(());
        }
        if let Some(batch) = self.new_batch(now_ms).await? {
            let mut queue = vec![batch];
            while let Some(read) = queue.pop() {
                if let Some(batch) = self.claim(read.id).await? {
                    queue.extend(settled_elsewhere(self.send(batch, now_ms).await)?);
                }
            }
        }
        Ok(())
    }

    /// Writes a `sending` batch of every balance past the threshold that the
    /// pool wallet can cover, durably; none when nothing is due.
    async fn new_batch(&self, now_ms: u64) -> Result<Option<PayoutRecord>, RewardError> {
        let mut due: Vec<(String, u64)> = self
            .store
            .balances_confirmed()
            .await?
            .into_iter()
            .filter(|b| {
                b.confirmed >= self.config.payout_threshold.max(1)
                    && b.wallet != self.config.pool_address
                    && b.set_aside == 0
            })
            .map(|b| (b.wallet, b.confirmed))
            .collect();
        if due.is_empty() {
            return Ok(None);
        }
        due.sort();
        let mut available = self.chain.balance(&self.config.pool_address).await?.spendable;
        let mut outputs = Vec::new();
        for (wallet, amount) in due {
            if outputs.len() >= self.config.max_payout_outputs {
                break;
            }
            if amount <= available {
                available -= amount;
                outputs.push(PayoutOutput::new(&wallet, amount));
            }
        }
        if outputs.is_empty() {
            tracing::info!("payouts are due but the pool wallet's spendable funds do not cover one yet");
            return Ok(None);
        }
        let id = self.store.next_id().await?;
        let batch = PayoutRecord {
            id,
            status: PayoutStatus::Sending,
            idempotency_key: self.payout_key(id)?,
            outputs,
            reason: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            transfer_id: None,
            attempts: 0,
        };
        // A fresh id: only the balances can conflict (they refuse to go below zero).
        let mut update =
            RewardUpdate { expects: vec![Expectation::Payout { id, state: None }], ..RewardUpdate::default() };
        move_outputs(&mut update, &batch.outputs, BalanceBucket::Confirmed, BalanceBucket::Sending);
        update.payouts.push(batch.clone());
        match self.store.apply_reward_update(&update).await {
            Ok(()) => {}
            // The balances changed since they were read (on a shared store,
            // another coordinator batched them first), or the database broke
            // a deadlock with this write: next round reads again.
            Err(StoreError::Refused(why) | StoreError::Conflict(why)) => {
                tracing::info!("payout batch not written, balances changed meanwhile: {why}");
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        }
        self.flush().await?;
        self.crash_point(CrashPoint::AfterSending);
        Ok(Some(batch))
    }

    /// What a step on a batch this coordinator claimed was decided on: the
    /// batch as read, still leased here. Once another coordinator has taken
    /// it over (this one stalled past its lease), nothing this one decided
    /// applies: it must not split under new keys, or settle, a batch the
    /// other may be sending under its key.
    fn held(&self, batch: &PayoutRecord) -> Vec<Expectation> {
        vec![Expectation::payout(batch), Expectation::Lease { id: batch.id, holder: self.instance.clone() }]
    }

    /// Batch `id` as stored now, leased to this coordinator; none while
    /// another's lease runs, or for a while after its own ran out
    /// ([`crate::storage::PoolStore::claim_payout`]).
    async fn claim(&self, id: u64) -> Result<Option<PayoutRecord>, RewardError> {
        Ok(self.store.claim_payout(id, &self.instance, PAYOUT_LEASE).await?)
    }

    /// Whether `batch`, claimed by this coordinator, is still its to send
    /// now: claimed again, unchanged, with a transfer's time left.
    async fn still_held(&self, batch: &PayoutRecord) -> Result<bool, RewardError> {
        let now = self.store.claim_payout(batch.id, &self.instance, PAYOUT_TRANSFER_LEASE).await?;
        Ok(now.as_ref() == Some(batch))
    }

    /// The once-only key of batch `id`: this pool's tag, the id, and a random
    /// part (so nobody can foresee, and take, the next key).
    pub(super) fn payout_key(&self, id: u64) -> Result<String, RewardError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StoreError::Backend(format!("no OS randomness: {e}")))?;
        Ok(format!("{}-payout-{id}-{}", self.payout_tag, hex::encode(random)))
    }

    /// Sends a `sending` batch. Returns batches to send next (the payees of
    /// a refused batch, one per batch).
    async fn send(&self, mut batch: PayoutRecord, now_ms: u64) -> Result<Vec<PayoutRecord>, RewardError> {
        // On disk before money moves. sled shows a write to reads before it
        // is durable, and keeps showing it after its flush failed (a full
        // disk): a batch sent then is one a restart forgets, and pays again.
        // This flush fails while that write is not on disk (and costs
        // nothing when nothing is pending).
        self.flush().await?;
        // Still this coordinator's, as claimed, with the rest of a send's
        // time left (the transfer, a lookup after it): claimed again, since a holder that stalled after its claim
        // (a paused VM) must not send a batch that another has taken over,
        // and may have split under new keys while a payee was refused.
        if !self.still_held(&batch).await? {
            tracing::warn!(
                payout = batch.id,
                "payout not sent: no longer held here as claimed (taken over, changed, or too little of the \
                 lease left after a slow node); a later round claims it again"
            );
            return Ok(Vec::new());
        }
        let request = TransferRequest {
            from: self.config.pool_address.clone(),
            outputs: batch
                .outputs
                .iter()
                .map(|o| TransferOutput { address: o.address.clone(), amount: o.amount })
                .collect(),
            idempotency_key: batch.idempotency_key.clone(),
        };
        batch.attempts += 1;
        match self.chain.transfer(request).await {
            Ok(receipt) => {
                self.crash_point(CrashPoint::AfterTransfer);
                self.settle(batch, &receipt, now_ms).await?;
                Ok(Vec::new())
            }
            Err(ChainError::Invalid { reason, message }) if PAYEE_FAULTS.contains(&reason) => {
                // Refused, unless an earlier send of this very batch landed.
                match self.chain.transfer_by_key(&batch.idempotency_key).await? {
                    Some(receipt) => {
                        self.settle(batch, &receipt, now_ms).await?;
                        Ok(Vec::new())
                    }
                    None => self.refused(batch, reason, &message, now_ms).await,
                }
            }
            Err(err) => {
                // Unreachable, short of funds, or the like: the same batch,
                // same key, next round.
                tracing::warn!(payout = batch.id, "payout not sent yet (will retry): {err}");
                batch.reason = Some(err.public_reason());
                batch.updated_ms = now_ms;
                let expects = self.held(&batch);
                self.store
                    .apply_reward_update(&RewardUpdate { expects, payouts: vec![batch], ..Default::default() })
                    .await?;
                Ok(Vec::new())
            }
        }
    }

    async fn mark_paid(
        &self,
        mut batch: PayoutRecord,
        receipt: &TransferReceipt,
        now_ms: u64,
    ) -> Result<(), RewardError> {
        let mut update = RewardUpdate { expects: self.held(&batch), ..RewardUpdate::default() };
        move_outputs(&mut update, &batch.outputs, BalanceBucket::Sending, BalanceBucket::Paid);
        batch.status = PayoutStatus::Paid;
        batch.reason = None;
        batch.transfer_id = Some(stored_transfer_id(&receipt.transfer_id));
        batch.updated_ms = now_ms;
        let (id, total, outputs) = (batch.id, batch.total(), batch.outputs.len());
        update.payouts.push(batch);
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        self.metrics.payouts_paid.fetch_add(1, Ordering::Relaxed);
        tracing::info!(payout = id, "paid {total} base units to {outputs} wallets");
        Ok(())
    }

    /// Settles a batch by the chain's receipt for its key: paid when the
    /// receipt is for this batch's transfer ([`receipt_differs`]); otherwise
    /// the key holds someone else's transfer, or the node says it paid
    /// other than asked, and the batch is set aside for the operator, once.
    async fn settle(&self, batch: PayoutRecord, receipt: &TransferReceipt, now_ms: u64) -> Result<(), RewardError> {
        let Some(difference) = receipt_differs(&batch, receipt, &self.config.pool_address) else {
            return self.mark_paid(batch, receipt, now_ms).await;
        };
        let shown = stored_transfer_id(&receipt.transfer_id);
        let message = format!(
            "the chain's receipt under this batch's key ({shown:?}) {difference}; not marked paid (check the \
             transfer on the chain before retrying: it may have moved money)"
        );
        self.refused_alone(batch, "key_conflict", &message, now_ms).await
    }

    /// The chain refused the transfer (nothing of it was paid). A batch of
    /// several payees is split into one batch each, under new keys; a single
    /// payee is set aside with the chain's reason.
    async fn refused(
        &self,
        batch: PayoutRecord,
        reason: &str,
        message: &str,
        now_ms: u64,
    ) -> Result<Vec<PayoutRecord>, RewardError> {
        if batch.outputs.len() <= 1 {
            self.refused_alone(batch, reason, message, now_ms).await?;
            return Ok(Vec::new());
        }
        tracing::warn!(payout = batch.id, "the chain refused a batch ({reason}: {message}); sending it payee by payee");
        let mut next = Vec::new();
        for output in &batch.outputs {
            let id = self.store.next_id().await?;
            next.push(PayoutRecord {
                id,
                idempotency_key: self.payout_key(id)?,
                outputs: vec![output.clone()],
                reason: Some(format!("split from payout {} that the chain refused: {reason}", batch.id)),
                attempts: 0,
                created_ms: now_ms,
                updated_ms: now_ms,
                ..batch.clone()
            });
        }
        let update = RewardUpdate {
            expects: self.held(&batch),
            payouts_removed: vec![batch.id],
            payouts: next.clone(),
            ..RewardUpdate::default()
        };
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        Ok(next)
    }

    /// Sets a batch aside with its reason: its amounts wait in `set_aside`,
    /// less the credit of blocks orphaned while it was being sent
    /// ([`PayoutOutput::orphaned`]), which is taken back (a batch of nothing
    /// else goes). Not on a key conflict: money may have moved under the
    /// key, and the operator settles that batch whole.
    async fn refused_alone(
        &self,
        mut batch: PayoutRecord,
        reason: &str,
        message: &str,
        now_ms: u64,
    ) -> Result<(), RewardError> {
        let mut update = RewardUpdate { expects: self.held(&batch), ..RewardUpdate::default() };
        let taken_back = if reason == "key_conflict" { 0 } else { batch.orphaned() };
        if taken_back > 0 {
            for output in &mut batch.outputs {
                update.balances.push(BalanceDelta::new(
                    &output.address,
                    BalanceBucket::Sending,
                    -i128::from(output.amount),
                ));
                output.amount -= output.orphaned;
                output.orphaned = 0;
                update.balances.push(BalanceDelta::new(
                    &output.address,
                    BalanceBucket::SetAside,
                    i128::from(output.amount),
                ));
            }
            batch.outputs.retain(|o| o.amount > 0);
            tracing::warn!(payout = batch.id, "{taken_back} of a refused payout taken back: its block was orphaned");
        } else {
            move_outputs(&mut update, &batch.outputs, BalanceBucket::Sending, BalanceBucket::SetAside);
        }
        if batch.outputs.is_empty() {
            update.payouts_removed.push(batch.id);
            self.store.apply_reward_update(&update).await?;
            return self.flush().await;
        }
        tracing::warn!(payout = batch.id, "payout set aside ({reason}: {message})");
        batch.status = PayoutStatus::SetAside;
        batch.reason = Some(match taken_back {
            0 => format!("{reason}: {message}"),
            _ => format!("{reason}: {message} (reduced by {taken_back}: credit of a block orphaned while it was sent)"),
        });
        batch.updated_ms = now_ms;
        update.payouts.push(batch);
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        self.metrics.payouts_set_aside.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A step of the payout queue; a batch another coordinator settled
/// meanwhile (its expectation failed) is done, not an error. Loud: with
/// leases and fresh reads it should not happen.
fn settled_elsewhere(step: Result<Vec<PayoutRecord>, RewardError>) -> Result<Vec<PayoutRecord>, RewardError> {
    match step {
        Err(RewardError::Store(StoreError::Conflict(what))) => {
            tracing::warn!("a payout batch changed while this coordinator sent it (another settled it?): {what}");
            Ok(Vec::new())
        }
        other => other,
    }
}

/// How a receipt differs from what `batch` asked the chain to pay, if it
/// does. A receipt that names its outputs must name exactly the batch's
/// (as a set: one output per payee) from the pool's address; one without
/// them (a node older than those fields) is held to the total only.
fn receipt_differs(batch: &PayoutRecord, receipt: &TransferReceipt, pool_address: &str) -> Option<String> {
    if receipt.total != batch.total() {
        return Some(format!("is for {} base units, the batch for {}", receipt.total, batch.total()));
    }
    if receipt.outputs.is_empty() && receipt.from.is_empty() {
        return None;
    }
    if receipt.from != pool_address {
        return Some(format!("pays from {:?}, not the pool's address", crate::chain::node_text(&receipt.from)));
    }
    let mut asked: Vec<(&str, u64)> = batch.outputs.iter().map(|o| (o.address.as_str(), o.amount)).collect();
    let mut paid: Vec<(&str, u64)> = receipt.outputs.iter().map(|o| (o.address.as_str(), o.amount)).collect();
    asked.sort_unstable();
    paid.sort_unstable();
    if asked != paid {
        let unasked = paid.iter().filter(|p| !asked.contains(p)).count();
        let unpaid = asked.iter().filter(|a| !paid.contains(a)).count();
        return Some(format!("names {unasked} outputs the batch did not ask for and misses {unpaid} it did"));
    }
    None
}

/// A receipt's transfer id as stored and shown with its batch: visible
/// ASCII, at most [`MAX_TRANSFER_ID_BYTES`]. (The money moved whatever the
/// id looks like: an odd one is kept cut and marked, not held against the
/// batch.)
pub(super) fn stored_transfer_id(id: &str) -> String {
    if is_plain_transfer_id(id) {
        return id.to_string();
    }
    tracing::warn!(len = id.len(), "the chain named an odd transfer id: kept cut, as visible ASCII");
    let kept: String =
        id.chars().map(|c| if c.is_ascii_graphic() { c } else { '?' }).take(MAX_TRANSFER_ID_BYTES - 1).collect();
    format!("{kept}~")
}

/// Moves each output's amount from one part of its payee's balance to another.
pub(super) fn move_outputs(
    update: &mut RewardUpdate,
    outputs: &[PayoutOutput],
    from: BalanceBucket,
    to: BalanceBucket,
) {
    for output in outputs {
        update.balances.push(BalanceDelta::new(&output.address, from, -i128::from(output.amount)));
        update.balances.push(BalanceDelta::new(&output.address, to, i128::from(output.amount)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(outputs: &[(&str, u64)]) -> PayoutRecord {
        PayoutRecord {
            id: 1,
            status: PayoutStatus::Sending,
            outputs: outputs.iter().map(|&(a, amount)| PayoutOutput::new(a, amount)).collect(),
            idempotency_key: "k".into(),
            reason: None,
            created_ms: 0,
            updated_ms: 0,
            transfer_id: None,
            attempts: 1,
        }
    }

    fn receipt(from: &str, outputs: &[(&str, u64)], total: u64) -> TransferReceipt {
        TransferReceipt {
            transfer_id: "t".into(),
            total,
            replayed: false,
            from: from.into(),
            outputs: outputs.iter().map(|&(a, amount)| TransferOutput { address: a.into(), amount }).collect(),
        }
    }

    /// A transfer id is kept as it is when short, visible text; otherwise
    /// cut, its invisible characters shown as `?`, and marked with `~`.
    #[test]
    fn odd_transfer_ids_are_kept_cut_and_marked() {
        let cases = [
            ("ab12".to_string(), "ab12".to_string()),
            ("t".repeat(128), "t".repeat(128)),
            ("t".repeat(129), format!("{}~", "t".repeat(127))),
            ("t\nx".to_string(), "t?x~".to_string()),
            (String::new(), "~".to_string()),
        ];
        for (id, kept) in cases {
            assert_eq!(stored_transfer_id(&id), kept, "{id:?}");
        }
    }

    #[test]
    fn a_receipt_pays_the_batch_only_when_it_names_what_was_asked() {
        let asked = batch(&[("land1a", 5), ("land1b", 7)]);
        let cases: &[(&str, TransferReceipt, bool)] = &[
            ("the same outputs", receipt("pool", &[("land1a", 5), ("land1b", 7)], 12), true),
            ("in another order", receipt("pool", &[("land1b", 7), ("land1a", 5)], 12), true),
            ("an old node: the total only", receipt("", &[], 12), true),
            ("an old node, another total", receipt("", &[], 13), false),
            ("amounts swapped between payees", receipt("pool", &[("land1a", 7), ("land1b", 5)], 12), false),
            ("a payee replaced", receipt("pool", &[("land1a", 5), ("land1x", 7)], 12), false),
            ("a payee missing", receipt("pool", &[("land1a", 12)], 12), false),
            ("an extra payee", receipt("pool", &[("land1a", 5), ("land1b", 6), ("land1c", 1)], 12), false),
            ("a payee twice", receipt("pool", &[("land1a", 5), ("land1a", 7)], 12), false),
            ("from another wallet", receipt("other", &[("land1a", 5), ("land1b", 7)], 12), false),
            ("outputs but no payer", receipt("", &[("land1a", 5), ("land1b", 7)], 12), false),
            ("a total that is not the outputs'", receipt("pool", &[("land1a", 5), ("land1b", 7)], 11), false),
            (
                "an odd transfer id: the money moved all the same",
                TransferReceipt {
                    transfer_id: "t\n".repeat(500),
                    ..receipt("pool", &[("land1a", 5), ("land1b", 7)], 12)
                },
                true,
            ),
        ];
        for (case, receipt, pays) in cases {
            let differs = receipt_differs(&asked, receipt, "pool");
            assert_eq!(differs.is_none(), *pays, "{case}: {differs:?}");
        }
    }
}
