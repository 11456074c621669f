//! A found block's way to a payable reward: credited when the chain has
//! accepted it (immature), confirmed after `confirmations` blocks, orphaned
//! if it leaves the chain. Each step is one atomic store update, so a crash
//! at any point leaves either the step done or not done, never half.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use super::prop_rounds::{awaits_carry, carry_rounds, ends_round, round_paid_by, wait_for_carry};
use super::reward_split::{pplns_target, pplns_window, split_reward, whole_window, PayoutScheme, WindowShare};
use super::settled_blocks::settled_after;
use super::{CrashPoint, RewardError, Rewards};
use crate::chain::{ChainBlock, ChainError};
use crate::storage::{
    BalanceBucket, BalanceDelta, BlockCredit, BlockRef, BlockRewardRecord, BlockStatus, Expectation, FoundBlockRecord,
    RewardStatus, RewardUpdate, ShareRecord, StoreError,
};

/// PROP's open round as a credit sees it: where it starts, and the
/// orphans' rounds waiting to be carried.
#[derive(Clone, Copy)]
struct Round<'a> {
    start: u64,
    carry: &'a [BlockRewardRecord],
}

/// Where a block stands after a round's step on it, as the next blocks'
/// PROP rounds need to know.
enum Stepped {
    /// Not credited: the chain is behind it, or shows no block at its
    /// height though past it (`unshown`: counted as overdue, as a node that
    /// prunes or lies holds it up for good), or an earlier block holds it up.
    Uncredited { unshown: bool },
    /// Its record as the store now holds it.
    Recorded {
        record: Box<BlockRewardRecord>,
        overdue: bool,
        /// Its credit took the rounds waiting to be carried.
        took_carry: bool,
    },
}

impl Stepped {
    fn unchanged(record: BlockRewardRecord, overdue: bool) -> Self {
        Stepped::Recorded { record: Box::new(record), overdue, took_carry: false }
    }
}

impl Rewards {
    /// Credits, confirms and orphans found blocks, in ledger order.
    pub(super) async fn advance_blocks(&self, now_ms: u64, pool_fee_bps: u32) -> Result<(), RewardError> {
        let Some(mut tip) = self.chain.tip().await? else { return Ok(()) };
        if !self.tip_is_in_its_chain(&tip).await? {
            // (Replicas behind a load balancer may answer the two asks from
            // different heights: once more before the round waits.)
            let Some(again) = self.chain.tip().await? else { return Ok(()) };
            if !self.tip_is_in_its_chain(&again).await? {
                tracing::warn!(
                    tip = again.height,
                    "the node's tip is not in its own chain (no block of that hash at that height): rewards wait"
                );
                return Ok(());
            }
            tip = again;
        }
        // Depths count from the lower of this tip and a second answer: one
        // stray answer (a glitch claiming a far greater height, even one in
        // its own chain) neither confirms blocks, which are then paid, nor
        // ends their orphan watch. (One more request a round. Far answers
        // for a while confirm nothing either: `holds_last_confirmation`;
        // but they end the watch of blocks already confirmed.)
        let Some(second) = self.chain.tip().await? else { return Ok(()) };
        let depth_height = tip.height.min(second.height);
        // Settled blocks are not read (`settled_blocks`); what this round
        // settles counts from the next one on.
        let open = self.open_blocks(Some(depth_height)).await?;
        let settled = settled_after(&open, depth_height, self.config.orphan_watch_depth, self.config.confirmations);
        let mut found = open.found;
        found.sort_by_key(|b| (b.share_position.unwrap_or(u64::MAX), b.height));
        let mut records: HashMap<(u64, String), BlockRewardRecord> = open.records;
        // PROP rounds end at each credited block (`prop_rounds`); orphans'
        // rounds wait in `carry` for the next credit.
        let mut round_start = open.settled.last_round_end.map_or(0, |p| p + 1);
        let mut carry: Vec<BlockRewardRecord> = Vec::new();
        // The furthest ledger position of a credited block, or of a settled
        // one that ended a round: a block first credited below it would take
        // a PROP round a later block has already ended (and paid).
        let rounds_ended_through = found
            .iter()
            .filter(|b| records.get(&(b.height, b.hash.clone())).is_some_and(|r| r.credit.is_some()))
            .filter_map(|b| b.share_position)
            .chain(open.settled.last_round_end)
            .max();
        // A block still being submitted (or not yet credited) may yet end a
        // round: later blocks wait for it.
        let mut blocked = false;
        let mut overdue = 0;
        let watched = self.config.confirmations.saturating_add(self.config.orphan_watch_depth);
        for block in &found {
            match block.status {
                // Rejected on a node's word, yet the chain may hold it (the
                // found blocks' review then records it accepted): under PROP
                // later blocks wait, or one would take its round first.
                BlockStatus::Rejected => {
                    if self.config.scheme == PayoutScheme::Prop
                        && !blocked
                        && confirmations(depth_height, block.height) < watched
                    {
                        // Held, or no answer: wait. Another block there, or none: rejected.
                        blocked = match self.chain.block(block.height).await {
                            Ok(on_chain) => on_chain.hash.eq_ignore_ascii_case(&block.hash),
                            Err(ChainError::NotFound(_)) => false,
                            Err(_) => true,
                        };
                    }
                    continue;
                }
                BlockStatus::Submitted => {
                    blocked = true;
                    continue;
                }
                BlockStatus::Accepted => {}
            }
            let key = (block.height, block.hash.clone());
            // The fee in force when the block was found, if it was recorded.
            let fee = block.pool_fee_bps.unwrap_or(pool_fee_bps);
            let crediting = !records.get(&key).is_some_and(|r| r.status != RewardStatus::Orphaned);
            // A credited block's round ended at it, whether or not this
            // round's step on it goes through.
            let mut ended_round = !crediting && ends_round(records.get(&key));
            let round = Round { start: round_start, carry: &carry };
            let round_ended = self.config.scheme == PayoutScheme::Prop
                && block.share_position.zip(rounds_ended_through).is_some_and(|(at, ended)| at < ended);
            let step = match records.remove(&key) {
                None if !blocked && round_ended => self.flag_round_ended(block, now_ms).await,
                None if !blocked => self.credit_block(block, None, depth_height, round, now_ms, fee).await,
                None => Ok(Stepped::Uncredited { unshown: false }),
                Some(record) if !blocked && self.is_back_on_chain(block, &record, depth_height).await => {
                    if round_paid_by(&record).is_some() {
                        self.flag_return_after_carry(block, record, now_ms).await
                    } else {
                        self.credit_block(block, Some(record), depth_height, round, now_ms, fee).await
                    }
                }
                Some(record) => self.follow_block(block, record, depth_height, now_ms).await,
            };
            // One block failing (its write refused) holds up neither the
            // others' maturity nor payouts; when its credit failed, later
            // blocks wait to be credited, as their PROP round may depend on it.
            match step {
                // Its round may yet end at it (PROP), or not: later blocks wait.
                Ok(Stepped::Uncredited { unshown }) => {
                    overdue += u64::from(unshown);
                    blocked |= self.config.scheme == PayoutScheme::Prop;
                }
                Ok(Stepped::Recorded { record, overdue: is_overdue, took_carry }) => {
                    overdue += u64::from(is_overdue);
                    if took_carry {
                        carry.clear();
                    }
                    ended_round |= ends_round(Some(&record));
                    if awaits_carry(&record) {
                        carry.push(*record);
                    }
                }
                Err(RewardError::Chain(err)) => return Err(err.into()),
                // Another coordinator on the shared store moved it first:
                // what it wrote is read next round.
                Err(RewardError::Store(StoreError::Conflict(_))) => {
                    tracing::debug!(height = block.height, "block moved on by another coordinator");
                    blocked |= crediting;
                }
                Err(err) => {
                    tracing::error!(height = block.height, "rewards of this block are stuck (retrying): {err}");
                    blocked |= crediting;
                }
            }
            // (Blocks come in ledger order: the start only moves on.)
            if ended_round {
                round_start = block.share_position.map_or(round_start, |p| p.saturating_add(1));
            }
        }
        self.metrics.blocks_overdue.store(overdue, Ordering::Relaxed);
        self.mark_settled(settled);
        Ok(())
    }

    /// Writes a newly accepted block's credit: its window (with the PROP
    /// rounds carried to it), its split of the reward the chain actually
    /// holds, immature balances. `depth_height`: the tip depths count from.
    async fn credit_block(
        &self,
        block: &FoundBlockRecord,
        orphaned: Option<BlockRewardRecord>,
        depth_height: u64,
        round: Round<'_>,
        now_ms: u64,
        pool_fee_bps: u32,
    ) -> Result<Stepped, RewardError> {
        let on_chain = match self.chain.block(block.height).await {
            Ok(b) => Some(b),
            Err(ChainError::NotFound(_)) => None,
            Err(err) => return Err(err.into()),
        };
        // Applied only while the record is as read: of coordinators on a
        // shared store crediting this block at once, one does.
        let expected = Expectation::block(block.height, &block.hash, orphaned.as_ref());
        // A block back on the chain keeps the window it was credited over
        // (its shares may be compacted since), split again.
        let mut earlier = None;
        let mut record = match orphaned {
            Some(mut record) => {
                record.status = RewardStatus::Pending;
                record.overdue_since_ms = None;
                record.round_carry = None;
                earlier = record.credit.take();
                record.note("returned", "back on the chain after a reorganisation", now_ms);
                record
            }
            None => {
                let mut record = BlockRewardRecord::pending(block.height, &block.hash, now_ms);
                let finder = format!("found by {}", block.worker_id);
                record.note("submitted", finder, block.time_ms);
                record.note("accepted", "the chain accepted it", block.updated_ms.max(block.time_ms));
                record
            }
        };
        let mut update = RewardUpdate { expects: vec![expected], ..RewardUpdate::default() };
        let mut took_carry = false;
        match on_chain {
            Some(chain_block)
                if chain_block.hash.eq_ignore_ascii_case(&block.hash)
                    && chain_block.miner != self.config.pool_address =>
            {
                let reason = format!(
                    "the chain's block pays {}, not the pool's wallet: nothing to share",
                    crate::chain::node_text(&chain_block.miner)
                );
                tracing::error!(height = block.height, "{reason}");
                record.change(RewardStatus::Orphaned, reason.clone(), now_ms);
                record.operator_flag = Some(reason);
                // A returning block keeps what it was credited with.
                record.credit = earlier;
                self.wait_for_carry(block, &mut record, &BTreeMap::new());
            }
            Some(chain_block) if chain_block.hash.eq_ignore_ascii_case(&block.hash) => {
                let (scheme, mut window, pool_fee_bps, mut carried_rounds) = match earlier {
                    Some(c) => (c.scheme, c.window, c.pool_fee_bps, c.carried_rounds),
                    None => (
                        self.config.scheme,
                        self.window_for(block, self.config.scheme, round.start).await?,
                        pool_fee_bps,
                        Vec::new(),
                    ),
                };
                if !round.carry.is_empty() {
                    let by = BlockRef { height: block.height, hash: block.hash.clone() };
                    let taken = carry_rounds(&mut window, round.carry, &by, scheme, now_ms, &mut update);
                    let heights: Vec<String> = taken.iter().map(|b| b.height.to_string()).collect();
                    // Under another scheme the rounds end here, unpaid as rounds.
                    if scheme == PayoutScheme::Prop {
                        let reason = format!("pays the PROP rounds of orphaned blocks {}", heights.join(", "));
                        record.note("round carried", reason, now_ms);
                        carried_rounds.extend(taken);
                    } else {
                        let reason =
                            format!("ends the PROP rounds of orphaned blocks {} ({scheme})", heights.join(", "));
                        record.note("round ended", reason, now_ms);
                    }
                    took_carry = true;
                }
                let split = split_reward(chain_block.reward, &self.fees(pool_fee_bps), &window);
                for entry in &split.entries {
                    update.balances.push(BalanceDelta::new(
                        &entry.recipient,
                        BalanceBucket::Immature,
                        i128::from(entry.amount),
                    ));
                }
                record.confirmations = confirmations(depth_height, block.height);
                record.note(
                    "pending",
                    format!(
                        "credited {} base units by {scheme} over {} shares ({:.0}% of the window)",
                        chain_block.reward,
                        window.shares,
                        window.coverage() * 100.0
                    ),
                    now_ms,
                );
                record.credit = Some(BlockCredit {
                    scheme,
                    pool_fee_bps,
                    window,
                    split,
                    confirmed: false,
                    credited_ms: now_ms,
                    carried_rounds,
                });
            }
            Some(chain_block) => {
                record.change(
                    RewardStatus::Orphaned,
                    format!("height {} holds block {} before it was credited", block.height, chain_block.hash),
                    now_ms,
                );
                record.credit = earlier;
                self.wait_for_carry(block, &mut record, &BTreeMap::new());
                self.metrics.blocks_orphaned.fetch_add(1, Ordering::Relaxed);
            }
            // The chain is (for now) shorter than the block: look again next round.
            None if depth_height < block.height => return Ok(Stepped::Uncredited { unshown: false }),
            None => {
                // Past its height yet no block there: a node that prunes, or lies.
                tracing::warn!(
                    height = block.height,
                    tip = depth_height,
                    "the chain shows no block at this height; not credited yet"
                );
                return Ok(Stepped::Uncredited { unshown: true });
            }
        }
        update.blocks.push(record.clone());
        self.store.apply_reward_update(&update).await?;
        self.crash_point(CrashPoint::CreditBlock);
        self.flush().await?;
        tracing::info!(height = block.height, "block credited (immature)");
        Ok(Stepped::Recorded { record: Box::new(record), overdue: false, took_carry })
    }

    /// A PROP orphan back on the chain after a later block's credit took
    /// its round: crediting it would pay the round twice, so its reward
    /// stays in the pool's wallet and the operator is told (once: a flagged
    /// block is not looked at again).
    async fn flag_return_after_carry(
        &self,
        block: &FoundBlockRecord,
        mut record: BlockRewardRecord,
        now_ms: u64,
    ) -> Result<Stepped, RewardError> {
        let expected = Expectation::block(block.height, &block.hash, Some(&record));
        let paid_by = round_paid_by(&record).map_or(0, |b| b.height);
        let flag = format!(
            "back on the chain after block {paid_by} paid its PROP round: not credited, its reward stays in the pool's wallet"
        );
        tracing::error!(height = block.height, "{flag}");
        record.note("flagged", flag.clone(), now_ms);
        record.operator_flag = Some(flag);
        let update = RewardUpdate { expects: vec![expected], blocks: vec![record.clone()], ..RewardUpdate::default() };
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        Ok(Stepped::unchanged(record, false))
    }

    /// A block met uncredited below a round a later block has ended (it
    /// was rejected, on one node's word, then accepted: two coordinators'
    /// nodes disagreed): under PROP that block paid its round, so it is
    /// flagged for the operator, not credited (its shares would be paid
    /// twice). Written only while it has no record: of coordinators at it
    /// on a shared store, one does.
    async fn flag_round_ended(&self, block: &FoundBlockRecord, now_ms: u64) -> Result<Stepped, RewardError> {
        let mut record = BlockRewardRecord::pending(block.height, &block.hash, now_ms);
        record.note("submitted", format!("found by {}", block.worker_id), block.time_ms);
        record.note("accepted", "the chain accepted it", block.updated_ms.max(block.time_ms));
        let flag = "accepted after a later block ended its PROP round (a node had called it rejected): not \
                    credited, its reward stays in the pool's wallet"
            .to_string();
        tracing::error!(height = block.height, "{flag}");
        record.change(RewardStatus::Orphaned, flag.clone(), now_ms);
        record.operator_flag = Some(flag);
        let update = RewardUpdate {
            expects: vec![Expectation::block(block.height, &block.hash, None)],
            blocks: vec![record.clone()],
            ..RewardUpdate::default()
        };
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        Ok(Stepped::unchanged(record, false))
    }

    /// The window a block's reward is split over, by `scheme`.
    async fn window_for(
        &self,
        block: &FoundBlockRecord,
        scheme: PayoutScheme,
        round_start: u64,
    ) -> Result<super::reward_split::RewardWindow, RewardError> {
        let position = match block.share_position {
            Some(p) => Some(p),
            None => self.store.credited(block.height, &block.template_id, block.nonce).await?.map(|c| c.position),
        };
        let finder = || WindowShare {
            position: position.unwrap_or(0),
            wallet: block.wallet_address.clone(),
            difficulty: block.submission.header.difficulty.max(1),
        };
        let Some(position) = position else {
            // A block recorded before share positions were: its finder's alone.
            return Ok(whole_window([finder()]));
        };
        let window = self.window_at(position, block, scheme, round_start).await?;
        // No shares left to split over (compacted, say): the finder's, rather
        // than the foundation taking the miners' part as dust.
        Ok(if window.weights.is_empty() { whole_window([finder()]) } else { window })
    }

    async fn window_at(
        &self,
        position: u64,
        block: &FoundBlockRecord,
        scheme: PayoutScheme,
        round_start: u64,
    ) -> Result<super::reward_split::RewardWindow, RewardError> {
        let finder = || WindowShare {
            position,
            wallet: block.wallet_address.clone(),
            difficulty: block.submission.header.difficulty.max(1),
        };
        let by_wallet = |(p, s): (u64, ShareRecord)| WindowShare {
            position: p,
            wallet: s.wallet_address,
            difficulty: s.share_difficulty,
        };
        Ok(match scheme {
            PayoutScheme::Solo => whole_window([finder()]),
            PayoutScheme::Pplns => {
                let target = pplns_target(block.submission.header.difficulty, self.config.pplns_window_factor);
                pplns_window(self.pplns_shares(position, target).await?.into_iter().map(by_wallet), target)
            }
            PayoutScheme::Prop => {
                whole_window(self.round_shares(round_start, position).await?.into_iter().map(by_wallet))
            }
        })
    }

    /// Moves a credited block on: confirmations (counted from
    /// `depth_height`), confirmed, orphaned, overdue (whether it is pending
    /// past its expected time).
    async fn follow_block(
        &self,
        block: &FoundBlockRecord,
        mut record: BlockRewardRecord,
        depth_height: u64,
        now_ms: u64,
    ) -> Result<Stepped, RewardError> {
        let watching = match record.status {
            RewardStatus::Pending => true,
            RewardStatus::Confirmed => {
                record.confirmations < self.config.confirmations.saturating_add(self.config.orphan_watch_depth)
            }
            RewardStatus::Orphaned => false,
        };
        if !watching || record.credit.is_none() {
            return Ok(Stepped::unchanged(record, false));
        }
        let expected = Expectation::block(block.height, &block.hash, Some(&record));
        let on_chain = match self.chain.block(block.height).await {
            Ok(b) => Some(b),
            Err(ChainError::NotFound(_)) => None,
            Err(err) => return Err(err.into()),
        };
        let mut update = RewardUpdate { expects: vec![expected], ..RewardUpdate::default() };
        match on_chain {
            Some(chain_block) if !chain_block.hash.eq_ignore_ascii_case(&block.hash) => {
                let carried = block.share_position.is_some()
                    && super::prop_rounds::carries_round(self.config.scheme, record.credit.as_ref());
                let unrecovered = self.orphan(&mut record, &chain_block, carried, &mut update, now_ms).await?;
                self.wait_for_carry(block, &mut record, &unrecovered);
            }
            Some(chain_block) => {
                let depth = confirmations(depth_height, block.height);
                let confirming = record.status == RewardStatus::Pending && depth >= self.config.confirmations;
                // (Held: its depth is not believed either; it may turn overdue.)
                let held = confirming && !self.holds_last_confirmation(block).await?;
                if held {
                    tracing::warn!(
                        height = block.height,
                        tip = depth_height,
                        "the node's tip is past this block's confirmations, but it holds no block at the last: \
                         not confirmed yet"
                    );
                }
                let mut changed = false;
                if confirming && !held {
                    self.confirm(&mut record, &chain_block, &mut update, depth, now_ms);
                    changed = true;
                } else if !held && depth != record.confirmations {
                    record.confirmations = depth;
                    record.updated_ms = now_ms;
                    changed = true;
                }
                changed |= self.mark_overdue(&mut record, block, now_ms);
                if !changed {
                    let overdue = is_overdue(&record);
                    return Ok(Stepped::unchanged(record, overdue));
                }
            }
            // Not on the chain right now (a shorter chain mid-reorganisation):
            // nothing to decide yet.
            None => {
                let overdue = is_overdue(&record);
                return Ok(Stepped::unchanged(record, overdue));
            }
        }
        let overdue = is_overdue(&record);
        update.blocks.push(record.clone());
        self.store.apply_reward_update(&update).await?;
        self.flush().await?;
        Ok(Stepped::unchanged(record, overdue))
    }

    /// Flags a block pending longer than `overdue_factor` x its expected
    /// confirmation time (once, with a warning). Returns whether it changed.
    fn mark_overdue(&self, record: &mut BlockRewardRecord, block: &FoundBlockRecord, now_ms: u64) -> bool {
        if record.status != RewardStatus::Pending || record.overdue_since_ms.is_some() {
            return false;
        }
        let expected_ms =
            self.config.confirmations.max(1).saturating_mul(self.config.block_time_secs.saturating_mul(1000));
        let limit = expected_ms.saturating_mul(self.config.overdue_factor.max(1));
        if now_ms.saturating_sub(block.time_ms) <= limit {
            return false;
        }
        tracing::warn!(
            height = record.height,
            confirmations = record.confirmations,
            "block pending for {}s, more than {}x its expected confirmation time",
            now_ms.saturating_sub(block.time_ms) / 1000,
            self.config.overdue_factor
        );
        record.overdue_since_ms = Some(now_ms);
        record.note(
            "overdue",
            format!(
                "{} of {} confirmations after {}s",
                record.confirmations,
                self.config.confirmations,
                now_ms.saturating_sub(block.time_ms) / 1000
            ),
            now_ms,
        );
        true
    }

    /// Pending -> confirmed: immature credits become payable, re-split if the
    /// chain's reward differs from the one credited.
    fn confirm(
        &self,
        record: &mut BlockRewardRecord,
        chain_block: &ChainBlock,
        update: &mut RewardUpdate,
        depth: u64,
        now_ms: u64,
    ) {
        let Some(credit) = record.credit.as_mut() else { return };
        for entry in &credit.split.entries {
            update.balances.push(BalanceDelta::new(
                &entry.recipient,
                BalanceBucket::Immature,
                -i128::from(entry.amount),
            ));
        }
        let mut reason = format!("{depth} confirmations");
        if chain_block.reward != credit.split.reward {
            reason.push_str(&format!(
                "; the chain's reward is {} (credited {}), split again",
                chain_block.reward, credit.split.reward
            ));
            credit.split = split_reward(chain_block.reward, &self.fees(credit.pool_fee_bps), &credit.window);
        }
        for entry in &credit.split.entries {
            update.balances.push(BalanceDelta::new(
                &entry.recipient,
                BalanceBucket::Confirmed,
                i128::from(entry.amount),
            ));
        }
        credit.confirmed = true;
        record.confirmations = depth;
        record.overdue_since_ms = None;
        record.change(RewardStatus::Confirmed, reason, now_ms);
        self.metrics.blocks_confirmed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(height = record.height, "block confirmed");
    }

    /// Marks a block just orphaned as waiting for its PROP round to be
    /// carried (`prop_rounds`). A block recorded before ledger positions
    /// were sorts after every credit that could take it: it never waits.
    fn wait_for_carry(
        &self,
        block: &FoundBlockRecord,
        record: &mut BlockRewardRecord,
        unrecovered: &BTreeMap<String, u64>,
    ) {
        if block.share_position.is_some() {
            wait_for_carry(record, self.config.scheme, unrecovered);
        }
    }

    /// Whether the node holds its own tip: its block at the tip's height
    /// has the tip's hash. Every depth a round counts comes from the tip,
    /// so a glitch reporting one far ahead would confirm (and pay) blocks
    /// early and end their orphan watch; such a round waits for the next
    /// (one request a round).
    async fn tip_is_in_its_chain(&self, tip: &ChainBlock) -> Result<bool, RewardError> {
        match self.chain.block(tip.height).await {
            Ok(b) => Ok(b.hash.eq_ignore_ascii_case(&tip.hash)),
            // (A block found meanwhile moves the tip, not the block at its height.)
            Err(ChainError::NotFound(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether the chain holds the block of `block`'s last confirmation: a
    /// tip far ahead, even one the node holds and answers twice, confirms
    /// nothing where the blocks between are missing.
    async fn holds_last_confirmation(&self, block: &FoundBlockRecord) -> Result<bool, RewardError> {
        if self.config.confirmations <= 1 {
            // (The block itself: just read.)
            return Ok(true);
        }
        match self.chain.block(block.height.saturating_add(self.config.confirmations - 1)).await {
            Ok(_) => Ok(true),
            Err(ChainError::NotFound(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// An orphaned block the chain holds again (a reorganisation undone),
    /// within the watch depth and not flagged (what was paid of a flagged
    /// one is the operator's to settle).
    async fn is_back_on_chain(&self, block: &FoundBlockRecord, record: &BlockRewardRecord, depth_height: u64) -> bool {
        record.status == RewardStatus::Orphaned
            && record.operator_flag.is_none()
            && confirmations(depth_height, block.height)
                < self.config.confirmations.saturating_add(self.config.orphan_watch_depth)
            && self.chain.block(block.height).await.is_ok_and(|b| b.hash.eq_ignore_ascii_case(&block.hash))
    }
}

/// Blocks from `height` to the tip at `tip_height`, the block itself
/// counting one.
fn confirmations(tip_height: u64, height: u64) -> u64 {
    tip_height.saturating_add(1).saturating_sub(height)
}

fn is_overdue(record: &BlockRewardRecord) -> bool {
    record.overdue_since_ms.is_some() && record.status == RewardStatus::Pending
}
