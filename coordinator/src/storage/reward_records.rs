//! What the reward path stores: balances, payouts, the credit recorded with
//! each block, and the aggregates compacted shares leave behind.
//!
//! Every change to money is one [`RewardUpdate`], applied atomically: the
//! block or payout records it rewrites and the balance movements it makes,
//! all or nothing.

use serde::{Deserialize, Serialize};

use crate::rewards::reward_split::{PayoutScheme, RewardSplit, RewardWindow};

/// A wallet's money at the pool, in base units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRecord {
    pub wallet: String,
    /// Credited from blocks still waiting for their confirmations.
    pub immature: u64,
    /// Credited from confirmed blocks, not yet paid.
    pub confirmed: u64,
    /// In a payout batch sent (or about to be sent) to the chain.
    pub sending: u64,
    pub paid: u64,
    /// In payouts the chain refused; not retried until the operator acts.
    pub set_aside: u64,
}

/// One of a balance's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceBucket {
    Immature,
    Confirmed,
    Sending,
    Paid,
    SetAside,
}

impl BalanceRecord {
    pub fn bucket_mut(&mut self, bucket: BalanceBucket) -> &mut u64 {
        match bucket {
            BalanceBucket::Immature => &mut self.immature,
            BalanceBucket::Confirmed => &mut self.confirmed,
            BalanceBucket::Sending => &mut self.sending,
            BalanceBucket::Paid => &mut self.paid,
            BalanceBucket::SetAside => &mut self.set_aside,
        }
    }
}

/// Adds `amount` (negative: takes it) to one part of a wallet's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceDelta {
    pub wallet: String,
    pub bucket: BalanceBucket,
    pub amount: i128,
}

impl BalanceDelta {
    pub fn new(wallet: &str, bucket: BalanceBucket, amount: i128) -> Self {
        BalanceDelta { wallet: wallet.to_string(), bucket, amount }
    }
}

/// What a block was credited with, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCredit {
    pub scheme: PayoutScheme,
    /// The pool fee in force when it was credited (a re-split keeps it).
    pub pool_fee_bps: u32,
    pub window: RewardWindow,
    pub split: RewardSplit,
    /// The balance part the split sits in: `Immature` until the block is
    /// confirmed, then `Confirmed`.
    pub confirmed: bool,
    pub credited_ms: u64,
    /// PROP: orphaned blocks whose rounds this window holds too (their
    /// weights merged in), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_rounds: Vec<BlockRef>,
}

/// Where the PROP round of an orphaned block is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundCarry {
    /// Unpaid: the next block credited takes it, adding these weights to
    /// its window (its window's, less what was paid out before it was
    /// orphaned); none for a block never credited, whose shares the next
    /// round's range holds.
    Waiting(Option<RewardWindow>),
    /// Taken by this later block's PROP credit (so it is not paid again
    /// should the orphan come back).
    PaidBy(BlockRef),
    /// Ended, unpaid as a round, by this later block credited by another
    /// scheme after the operator switched (a PPLNS window is the ledger's
    /// last N; SOLO pays no rounds). Should the orphan come back, it is
    /// credited again.
    EndedBy(BlockRef),
}

/// A found block, by the key its records share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub height: u64,
    pub hash: String,
}

/// A payout batch's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Written before the chain is asked; resolved by its idempotency key.
    Sending,
    Paid,
    /// The chain refused it; its amounts wait for the operator.
    SetAside,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOutput {
    pub address: String,
    pub amount: u64,
    /// Of `amount`, credit of blocks orphaned while this output was being
    /// sent (`orphan_reversal`): should the chain refuse it, this part is
    /// taken back instead of set aside, so no retry pays it. (Absent from
    /// records without any, and from those of older versions.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub orphaned: u64,
}

impl PayoutOutput {
    pub fn new(address: &str, amount: u64) -> Self {
        PayoutOutput { address: address.to_string(), amount, orphaned: 0 }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One payout batch: one transfer on the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    pub id: u64,
    pub status: PayoutStatus,
    pub outputs: Vec<PayoutOutput>,
    /// The chain's once-only key for this transfer.
    pub idempotency_key: String,
    pub reason: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The chain's id of the transfer, once paid.
    pub transfer_id: Option<String>,
    /// Times it was sent to the chain.
    pub attempts: u32,
}

impl PayoutRecord {
    pub fn total(&self) -> u64 {
        self.outputs.iter().map(|o| o.amount).sum()
    }

    /// What of the batch was credit of blocks orphaned while it was being sent.
    pub fn orphaned(&self) -> u64 {
        self.outputs.iter().map(|o| o.orphaned).sum()
    }
}

/// Compacted shares of one worker: what is kept of shares older than any
/// reward window can need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareAggregate {
    pub worker_id: String,
    pub wallet_address: String,
    pub shares: u64,
    pub difficulty_sum: u128,
    pub first_position: u64,
    pub last_position: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl ShareAggregate {
    /// Folds ledger shares (in position order) into one aggregate per worker.
    pub fn fold(shares: &[(u64, super::ShareRecord)]) -> std::collections::BTreeMap<String, ShareAggregate> {
        let mut folded = std::collections::BTreeMap::new();
        for (position, share) in shares {
            let entry = folded.entry(share.worker_id.clone()).or_insert_with(|| ShareAggregate {
                worker_id: share.worker_id.clone(),
                wallet_address: share.wallet_address.clone(),
                first_position: *position,
                first_ms: share.time_ms,
                ..ShareAggregate::default()
            });
            entry.shares += 1;
            entry.difficulty_sum += u128::from(share.share_difficulty);
            entry.last_position = *position;
            entry.last_ms = entry.last_ms.max(share.time_ms);
        }
        folded
    }

    /// Adds `later`, an aggregate of the same worker's later shares.
    pub fn absorb(&mut self, later: &ShareAggregate) {
        self.shares += later.shares;
        self.difficulty_sum += later.difficulty_sum;
        self.last_position = later.last_position;
        self.last_ms = self.last_ms.max(later.last_ms);
        self.wallet_address.clone_from(&later.wallet_address);
    }
}

/// Where a found block stands on the way to its reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardStatus {
    /// On the chain, waiting for its confirmations (credits are immature).
    Pending,
    /// Deep enough: credits are payable.
    Confirmed,
    /// Left the chain: credits nothing (reversed if it had).
    Orphaned,
}

/// A change of a block's reward status: what, why, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: String,
    pub reason: String,
    pub at_ms: u64,
}

/// A block's reward lifecycle, kept apart from its submission record
/// (`FoundBlockRecord`, owned by the submission path) so neither writer can
/// overwrite the other's state. Keyed like it, by height and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRewardRecord {
    pub height: u64,
    pub hash: String,
    pub status: RewardStatus,
    pub confirmations: u64,
    /// The split it was credited with (set once it is credited).
    pub credit: Option<BlockCredit>,
    pub history: Vec<StatusChange>,
    /// Since when it has been pending longer than expected.
    pub overdue_since_ms: Option<u64>,
    /// Something the operator must look at (an orphan whose credits were
    /// already paid out).
    pub operator_flag: Option<String>,
    /// PROP, an orphan: where its round is (`rewards::prop_rounds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_carry: Option<RoundCarry>,
    pub updated_ms: u64,
}

impl BlockRewardRecord {
    /// A new record of a block: pending, no confirmations, no credit yet.
    pub fn pending(height: u64, hash: &str, now_ms: u64) -> Self {
        BlockRewardRecord {
            height,
            hash: hash.to_string(),
            status: RewardStatus::Pending,
            confirmations: 0,
            credit: None,
            history: Vec::new(),
            overdue_since_ms: None,
            operator_flag: None,
            round_carry: None,
            updated_ms: now_ms,
        }
    }

    /// Moves to `status`, recording why and when.
    pub fn change(&mut self, status: RewardStatus, reason: impl Into<String>, now_ms: u64) {
        self.status = status;
        self.note(status_name(status), reason, now_ms);
    }

    /// Records an event in the history (bounded: the first and the latest kept).
    pub fn note(&mut self, status: &str, reason: impl Into<String>, now_ms: u64) {
        const KEPT: usize = 32;
        if self.history.len() >= KEPT {
            self.history.remove(1);
        }
        self.history.push(StatusChange { status: status.to_string(), reason: reason.into(), at_ms: now_ms });
        self.updated_ms = now_ms;
    }
}

pub fn status_name(status: RewardStatus) -> &'static str {
    match status {
        RewardStatus::Pending => "pending",
        RewardStatus::Confirmed => "confirmed",
        RewardStatus::Orphaned => "orphaned",
    }
}

/// How a payout batch is leased to one sender at a time
/// ([`super::PoolStore::claim_payout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// How long a fresh claim holds the batch.
    pub lease_ms: u64,
    /// The least of its lease a holder must have left to claim the batch
    /// again (a retry: time for a whole send's node calls; just before a
    /// transfer: the calls left), so that no other coordinator takes the
    /// batch over while they may still land.
    pub send_ms: u64,
    /// How much later than any other coordinator its last holder may claim
    /// the batch once the lease has run out.
    pub handover_ms: u64,
}

/// What an update was decided on. It applies only while the store still
/// holds this, so two coordinators reading the same state cannot both act
/// on it (credit one block twice, settle one batch twice): the second gets
/// [`super::StoreError::Conflict`] and nothing of its update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The block's reward record is exactly this (`None`: it has none yet).
    Block { height: u64, hash: String, record: Option<Box<BlockRewardRecord>> },
    /// The batch is in this status under this key, with this much of it
    /// orphaned while being sent (`None`: there is no such batch).
    Payout { id: u64, state: Option<(PayoutStatus, String, u64)> },
    /// The batch is still leased by `holder` ([`super::PoolStore::claim_payout`]):
    /// what a sender decided is not applied once another coordinator has
    /// taken the batch over (a stalled sender must not split or settle a
    /// batch the other is sending). A store without leases (one
    /// coordinator's own) always meets it.
    Lease { id: u64, holder: String },
    /// The wallet's confirmed and set-aside amounts are as read (a wallet
    /// without a balance has zero): what an orphan's reversal took back,
    /// and flagged as paid out, was decided on them.
    Balance { wallet: String, confirmed: u64, set_aside: u64 },
}

impl Expectation {
    /// The expectation that a block's record is still `read`.
    pub fn block(height: u64, hash: &str, read: Option<&BlockRewardRecord>) -> Self {
        Expectation::Block { height, hash: hash.to_string(), record: read.cloned().map(Box::new) }
    }

    /// The expectation that `batch` is still in the status and under the
    /// key it was read with, and no more of it was marked orphaned since (a
    /// sender's step must not write back a copy without the mark).
    pub fn payout(batch: &PayoutRecord) -> Self {
        Expectation::Payout {
            id: batch.id,
            state: Some((batch.status, batch.idempotency_key.clone(), batch.orphaned())),
        }
    }

    /// Whether a block's stored record meets it (for expectations of blocks).
    pub fn holds_for_block(&self, stored: Option<&BlockRewardRecord>) -> bool {
        match self {
            Expectation::Block { record, .. } => record.as_deref() == stored,
            _ => false,
        }
    }

    /// Whether a stored batch meets it (for expectations of payouts).
    pub fn holds_for_payout(&self, stored: Option<&PayoutRecord>) -> bool {
        match self {
            Expectation::Payout { state, .. } => {
                state.as_ref().map(|(s, k, o)| (*s, k.as_str(), *o))
                    == stored.map(|p| (p.status, p.idempotency_key.as_str(), p.orphaned()))
            }
            _ => false,
        }
    }

    /// Whether a wallet's stored balance meets it (for expectations of balances).
    pub fn holds_for_balance(&self, stored: Option<&BalanceRecord>) -> bool {
        match self {
            Expectation::Balance { confirmed, set_aside, .. } => {
                stored.map_or((0, 0), |b| (b.confirmed, b.set_aside)) == (*confirmed, *set_aside)
            }
            _ => false,
        }
    }

    /// The expectation that `wallet`'s balance is still `read`.
    pub fn balance(wallet: &str, read: Option<&BalanceRecord>) -> Self {
        let (confirmed, set_aside) = read.map_or((0, 0), |b| (b.confirmed, b.set_aside));
        Expectation::Balance { wallet: wallet.to_string(), confirmed, set_aside }
    }
}

/// One atomic change of reward state.
#[derive(Debug, Clone, Default)]
pub struct RewardUpdate {
    /// What it was decided on (checked first, in the same transaction).
    pub expects: Vec<Expectation>,
    pub blocks: Vec<BlockRewardRecord>,
    pub payouts: Vec<PayoutRecord>,
    /// Payout ids to forget (a refused batch split into smaller ones).
    pub payouts_removed: Vec<u64>,
    pub balances: Vec<BalanceDelta>,
}
