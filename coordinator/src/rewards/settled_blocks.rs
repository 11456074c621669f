//! Which found blocks a rewards round must still read.
//!
//! A pool's found blocks and their reward records (each with its whole
//! split) only accumulate; reading all of them every round would make a
//! round cost the pool's history. A block is *settled* once nothing a round
//! does can change it: rejected, orphaned, or confirmed and no longer
//! watched for a reorganisation (and an orphan whose PROP round waits, once
//! a credit has taken it: `prop_rounds`). Rounds read from the lowest height that is
//! not settled, never above the reorganisation watch depth below the tip (a
//! block found after a rejected rival, or after a reorganisation, is always
//! at or above it). The height is kept in memory: the first round after a
//! start reads everything once.
//!
//! PROP's rounds end at each credited block, in ledger order; the settled
//! blocks' last such position is carried, and a round whose unsettled blocks
//! do not all come after it in the ledger (only after a deep reorganisation)
//! reads everything instead.

use std::collections::HashMap;

use super::prop_rounds::{awaits_carry, ends_round};
use super::{RewardError, Rewards};
use crate::storage::{BlockRewardRecord, BlockStatus, FoundBlockRecord, RewardStatus};

/// What the rounds so far have settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SettledBlocks {
    /// Every found block below this height is settled.
    pub(crate) below: u64,
    /// The highest ledger position of a block below `below` that ended a
    /// PROP round ([`ends_round`]).
    pub(crate) last_round_end: Option<u64>,
}

/// The found blocks a round reads, with their records.
pub(crate) struct OpenBlocks {
    /// The settled part this read starts after.
    pub(crate) settled: SettledBlocks,
    pub(crate) found: Vec<FoundBlockRecord>,
    pub(crate) records: HashMap<(u64, String), BlockRewardRecord>,
}

impl OpenBlocks {
    /// The ledger position of the last block that ended a PROP round,
    /// settled ones included (where the current round starts after).
    pub(crate) fn last_round_end(&self) -> Option<u64> {
        let open = self.found.iter().filter(|b| self.ends_round(b)).filter_map(|b| b.share_position);
        open.chain(self.settled.last_round_end).max()
    }

    fn ends_round(&self, block: &FoundBlockRecord) -> bool {
        block.status == BlockStatus::Accepted && ends_round(self.records.get(&(block.height, block.hash.clone())))
    }
}

/// Whether `block` (with `record`, as read) can still change in a round.
fn is_open(block: &FoundBlockRecord, record: Option<&BlockRewardRecord>, watched_confirmations: u64) -> bool {
    match (block.status, record) {
        (BlockStatus::Rejected, _) => false,
        (BlockStatus::Submitted, _) | (BlockStatus::Accepted, None) => true,
        (BlockStatus::Accepted, Some(r)) => match r.status {
            RewardStatus::Pending => true,
            RewardStatus::Confirmed => r.confirmations < watched_confirmations,
            // Back on the chain is checked while within the watch depth,
            // which the cap below keeps reading; a PROP round waits for the
            // next credit however long that takes.
            RewardStatus::Orphaned => awaits_carry(r),
        },
    }
}

/// The settled part after a round that read `open` with the chain's tip at
/// `tip_height`: blocks stop being read once settled and deeper than the
/// reorganisation watch (`watch_depth` blocks below the tip).
pub(crate) fn settled_after(open: &OpenBlocks, tip_height: u64, watch_depth: u64, confirmations: u64) -> SettledBlocks {
    let watched_confirmations = confirmations.saturating_add(watch_depth);
    let mut below = tip_height.saturating_sub(watched_confirmations);
    for block in &open.found {
        if is_open(block, open.records.get(&(block.height, block.hash.clone())), watched_confirmations) {
            below = below.min(block.height);
        }
    }
    // Below what was settled before only when the tip went back (a deep
    // reorganisation): those blocks are read again, and the carried
    // position then makes the next round read everything.
    let newly_settled =
        open.found.iter().filter(|b| b.height < below && open.ends_round(b)).filter_map(|b| b.share_position);
    SettledBlocks { below, last_round_end: newly_settled.chain(open.settled.last_round_end).max() }
}

impl Rewards {
    /// The found blocks not yet settled and their records; everything when
    /// the carried PROP round start would not hold for them. With the
    /// chain's current tip, never from above its watch depth (the settled
    /// height was worked out with the previous round's tip, which may have
    /// been higher).
    pub(crate) async fn open_blocks(&self, tip_height: Option<u64>) -> Result<OpenBlocks, RewardError> {
        let mut settled = *self.settled.lock().expect("settled blocks lock");
        if let Some(tip) = tip_height {
            let watched = self.config.confirmations.saturating_add(self.config.orphan_watch_depth);
            settled.below = settled.below.min(tip.saturating_sub(watched));
        }
        let found = self.store.found_blocks_from(settled.below).await?;
        let inverted = settled
            .last_round_end
            .is_some_and(|last| found.iter().any(|b| b.share_position.is_some_and(|p| p <= last)));
        let (settled, found) =
            if inverted { (SettledBlocks::default(), self.store.found_blocks().await?) } else { (settled, found) };
        let records = self
            .store
            .block_rewards_from(settled.below)
            .await?
            .into_iter()
            .map(|r| ((r.height, r.hash.clone()), r))
            .collect();
        Ok(OpenBlocks { settled, found, records })
    }

    /// Every found block below this height is settled (as of the last round).
    pub(crate) fn settled_below(&self) -> u64 {
        self.settled.lock().expect("settled blocks lock").below
    }

    /// Records what a round has settled (see [`settled_after`]).
    pub(crate) fn mark_settled(&self, settled: SettledBlocks) {
        *self.settled.lock().expect("settled blocks lock") = settled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::reward_split::{PayoutScheme, RewardWindow};

    fn block(height: u64, status: BlockStatus, position: u64) -> FoundBlockRecord {
        crate::storage::test_found_block(height, &format!("h{height}"), status, position)
    }

    /// A record credited by PROP.
    fn record(height: u64, status: RewardStatus, confirmations: u64) -> BlockRewardRecord {
        BlockRewardRecord {
            status,
            confirmations,
            credit: Some(crate::storage::test_block_credit(PayoutScheme::Prop, RewardWindow::default())),
            ..BlockRewardRecord::pending(height, &format!("h{height}"), 0)
        }
    }

    /// Watch depth 100, 10 confirmations: blocks deeper than 110 below the
    /// tip may settle, and only those.
    #[test]
    fn rounds_stop_reading_blocks_once_settled_and_deep() {
        use BlockStatus::*;
        use PayoutScheme::{Pplns, Prop};
        use RewardStatus as R;
        // (what, scheme, blocks as (height, status, record and whether it
        // was credited), tip, reads start at)
        type Case = (&'static str, PayoutScheme, Vec<(u64, BlockStatus, Option<(R, u64, bool)>)>, u64, u64);
        let cases: &[Case] = &[
            ("nothing found: up to the watch depth", Pplns, vec![], 1_000, 890),
            (
                "all settled: up to the watch depth",
                Pplns,
                vec![(100, Accepted, Some((R::Confirmed, 110, true)))],
                1_000,
                890,
            ),
            (
                "a confirmed block still watched",
                Pplns,
                vec![(800, Accepted, Some((R::Confirmed, 109, true)))],
                1_000,
                800,
            ),
            ("a pending block", Pplns, vec![(100, Accepted, Some((R::Pending, 3, true)))], 1_000, 100),
            ("an uncredited block", Pplns, vec![(100, Accepted, None)], 1_000, 100),
            ("a block still being submitted", Pplns, vec![(50, Submitted, None)], 1_000, 50),
            (
                "rejected and orphaned blocks settle",
                Pplns,
                vec![
                    (60, Rejected, None),
                    (70, Accepted, Some((R::Orphaned, 0, true))),
                    (80, Accepted, Some((R::Orphaned, 0, false))),
                ],
                1_000,
                890,
            ),
            (
                "a PROP orphan waits for its round to be carried",
                Prop,
                vec![(70, Accepted, Some((R::Orphaned, 0, true)))],
                1_000,
                70,
            ),
            ("an uncredited PROP orphan too", Prop, vec![(80, Accepted, Some((R::Orphaned, 0, false)))], 1_000, 80),
            ("a young chain", Pplns, vec![(5, Rejected, None)], 20, 0),
        ];
        for (what, scheme, blocks, tip, below) in cases {
            let open = OpenBlocks {
                settled: SettledBlocks::default(),
                found: blocks.iter().enumerate().map(|(i, (h, s, _))| block(*h, *s, i as u64)).collect(),
                records: blocks
                    .iter()
                    .filter_map(|(h, _, r)| {
                        r.map(|(s, c, credited)| {
                            let mut record = record(*h, s, c);
                            if !credited {
                                record.credit = None;
                            }
                            super::super::prop_rounds::wait_for_carry(&mut record, *scheme, &Default::default());
                            ((*h, format!("h{h}")), record)
                        })
                    })
                    .collect(),
            };
            assert_eq!(settled_after(&open, *tip, 100, 10).below, *below, "{what}");
        }
    }

    #[test]
    fn the_settled_part_carries_prop_s_round_start_and_follows_the_tip_back() {
        let mut orphan = record(62, RewardStatus::Orphaned, 0);
        orphan.credit = None;
        let by = crate::storage::BlockRef { height: 950, hash: "h950".into() };
        orphan.round_carry = Some(crate::storage::RoundCarry::PaidBy(by));
        let open = OpenBlocks {
            settled: SettledBlocks { below: 50, last_round_end: Some(40) },
            found: vec![
                block(60, BlockStatus::Accepted, 70),
                block(61, BlockStatus::Rejected, 75),
                block(62, BlockStatus::Accepted, 80),
                block(950, BlockStatus::Accepted, 900),
            ],
            records: [(60, RewardStatus::Confirmed, 500), (950, RewardStatus::Pending, 1)]
                .into_iter()
                .map(|(h, s, c)| ((h, format!("h{h}")), record(h, s, c)))
                .chain([((62, "h62".to_string()), orphan)])
                .collect(),
        };
        assert_eq!(open.last_round_end(), Some(900));
        let settled = settled_after(&open, 1_000, 100, 10);
        // 60, 61 and 62 (its round carried) settle; 950 is pending: reads
        // start there. 62 was never credited, so its round never ended there.
        assert_eq!(settled, SettledBlocks { below: 890, last_round_end: Some(70) });
        // A tip gone far back (a deep reorganisation) reads from its watch
        // depth again, so blocks found there since are never skipped.
        let again = OpenBlocks { settled, found: Vec::new(), records: HashMap::new() };
        assert_eq!(settled_after(&again, 500, 100, 10).below, 390);
    }
}
