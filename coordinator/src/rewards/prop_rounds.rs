//! PROP's rounds across orphaned blocks.
//!
//! Under PROP a block pays the round of shares since the pool's previous
//! block. A block that leaves the chain pays nothing, so its round is not
//! over: it is carried into the next block the pool credits (as NOMP's
//! orphan merge does), rather than paid to nobody.
//! - Orphaned after its credit, the round had ended at it (the next block's
//!   round starts after it): its window's weights are merged into the next
//!   credit's window. Its shares may be compacted by then; the weights are
//!   in its record.
//! - Orphaned before its credit, its round never ended: the next credit's
//!   round starts where the orphan's did.
//!
//! An orphan's record says where its round is ([`RoundCarry`]): waiting,
//! set when it is orphaned, then paid by the later block whose credit took
//! it, written in the same atomic update as that credit. Should the orphan
//! come back on the chain after that, its round is not paid again: the
//! block is flagged for the operator instead of credited.
//!
//! Not carried: an orphan whose credits had already been paid out (flagged:
//! its miners were paid), orphans of PPLNS or SOLO (a PPLNS window overlaps
//! the next block's anyway), and orphans recorded before rounds were
//! carried (they never wait).

use super::reward_split::{PayoutScheme, RewardWindow};
use crate::storage::{BlockRef, BlockRewardRecord, RewardStatus, RoundCarry};

/// Whether a block with `record` (none: accepted, not yet credited) ends a
/// PROP round, so that the next round starts after it. An orphan that was
/// never credited does not: its round goes on.
pub(crate) fn ends_round(record: Option<&BlockRewardRecord>) -> bool {
    record.is_none_or(|r| r.credit.is_some())
}

/// Marks a block just orphaned (`record`, with the reason noted) as
/// waiting for its round to be carried, where `scheme` carries it.
pub(crate) fn wait_for_carry(record: &mut BlockRewardRecord, scheme: PayoutScheme) {
    let carried = scheme == PayoutScheme::Prop
        && record.status == RewardStatus::Orphaned
        && match &record.credit {
            None => true,
            Some(credit) => credit.scheme == PayoutScheme::Prop && record.operator_flag.is_none(),
        };
    if carried {
        record.round_carry = Some(RoundCarry::Waiting);
    }
}

/// Whether `record` is an orphan whose round the next credit under `scheme`
/// must take.
pub(crate) fn awaits_carry(record: &BlockRewardRecord, scheme: PayoutScheme) -> bool {
    scheme == PayoutScheme::Prop
        && record.status == RewardStatus::Orphaned
        && record.round_carry == Some(RoundCarry::Waiting)
}

/// The block whose credit took `record`'s round, if one did.
pub(crate) fn round_paid_by(record: &BlockRewardRecord) -> Option<&BlockRef> {
    match &record.round_carry {
        Some(RoundCarry::PaidBy(by)) => Some(by),
        _ => None,
    }
}

/// Takes the rounds of `orphans` (each [`awaits_carry`]) into `window`,
/// the window of block `by`'s credit. Returns the orphans taken (oldest
/// first) and their records marked as paid by `by`, for the same update.
pub(crate) fn carry_rounds(
    window: &mut RewardWindow,
    orphans: &[BlockRewardRecord],
    by: &BlockRef,
    now_ms: u64,
) -> (Vec<BlockRef>, Vec<BlockRewardRecord>) {
    let mut taken = Vec::with_capacity(orphans.len());
    let mut marked = Vec::with_capacity(orphans.len());
    for orphan in orphans {
        if let Some(credit) = &orphan.credit {
            window.absorb(&credit.window);
        }
        let mut record = orphan.clone();
        record.round_carry = Some(RoundCarry::PaidBy(by.clone()));
        record.note("round carried", format!("its PROP round is paid by block {}", by.height), now_ms);
        taken.push(BlockRef { height: orphan.height, hash: orphan.hash.clone() });
        marked.push(record);
    }
    (taken, marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::reward_split::WalletWeight;

    fn window(weights: &[(&str, u128)], first: u64, last: u64) -> RewardWindow {
        let sum = weights.iter().map(|(_, d)| d).sum();
        RewardWindow {
            first: Some(first),
            last: Some(last),
            shares: weights.len() as u64,
            difficulty_sum: sum,
            target: sum,
            weights: weights
                .iter()
                .map(|(w, d)| WalletWeight { wallet: (*w).into(), difficulty: *d, shares: 1 })
                .collect(),
        }
    }

    fn credited(height: u64, scheme: PayoutScheme, window: RewardWindow) -> BlockRewardRecord {
        BlockRewardRecord {
            credit: Some(crate::storage::test_block_credit(scheme, window)),
            ..BlockRewardRecord::pending(height, &format!("h{height}"), 0)
        }
    }

    fn orphaned(mut record: BlockRewardRecord) -> BlockRewardRecord {
        record.status = RewardStatus::Orphaned;
        record
    }

    fn waiting(mut record: BlockRewardRecord) -> BlockRewardRecord {
        wait_for_carry(&mut record, PayoutScheme::Prop);
        record
    }

    #[test]
    fn which_blocks_end_a_round_and_which_orphans_are_carried() {
        use PayoutScheme::*;
        let prop = credited(10, Prop, window(&[("a", 5)], 0, 0));
        let flagged = |mut r: BlockRewardRecord| {
            r.operator_flag = Some("paid out".into());
            r
        };
        let uncredited = BlockRewardRecord::pending(10, "h10", 0);
        // (what, record, ends a round, carried under PROP)
        let cases: Vec<(&str, Option<BlockRewardRecord>, bool, bool)> = vec![
            ("accepted, not yet credited", None, true, false),
            ("credited and on the chain", Some(prop.clone()), true, false),
            ("orphaned after its credit", Some(orphaned(prop.clone())), true, true),
            ("orphaned before its credit", Some(orphaned(uncredited.clone())), false, true),
            ("orphaned, paying another wallet", Some(flagged(orphaned(uncredited))), false, true),
            ("orphaned after its credits were paid out", Some(flagged(orphaned(prop.clone()))), true, false),
            ("orphaned, credited by PPLNS", Some(orphaned(credited(10, Pplns, window(&[], 0, 0)))), true, false),
        ];
        for (what, record, ends, carried) in cases {
            assert_eq!(ends_round(record.as_ref()), ends, "{what}: ends a round");
            let Some(mut record) = record else { continue };
            for scheme in [Pplns, Solo, Prop] {
                let mut marked = record.clone();
                wait_for_carry(&mut marked, scheme);
                assert_eq!(awaits_carry(&marked, Prop), carried && scheme == Prop, "{what}: carried under {scheme}");
                assert!(!awaits_carry(&marked, Pplns) && !awaits_carry(&marked, Solo), "{what}: PROP only");
            }
            // Recorded before rounds were carried: never waits.
            assert!(!awaits_carry(&record, Prop), "{what}: an old record");
            wait_for_carry(&mut record, Prop);
            let (_, paid) =
                carry_rounds(&mut RewardWindow::default(), &[record], &BlockRef { height: 11, hash: "h11".into() }, 0);
            assert!(!awaits_carry(&paid[0], Prop), "{what}: carried once");
        }
    }

    #[test]
    fn carried_rounds_merge_their_weights_and_name_the_block_that_pays_them() {
        let by = BlockRef { height: 30, hash: "h30".into() };
        let mut own = window(&[("bob", 4)], 20, 29);
        let orphans = [
            waiting(orphaned(credited(10, PayoutScheme::Prop, window(&[("alice", 6), ("bob", 1)], 0, 9)))),
            waiting(orphaned(BlockRewardRecord::pending(15, "h15", 0))),
        ];
        let (taken, marked) = carry_rounds(&mut own, &orphans, &by, 7);
        let weights: Vec<(&str, u128, u64)> =
            own.weights.iter().map(|w| (w.wallet.as_str(), w.difficulty, w.shares)).collect();
        assert_eq!(weights, vec![("alice", 6, 1), ("bob", 5, 2)]);
        assert_eq!((own.first, own.last, own.shares, own.difficulty_sum, own.target), (Some(0), Some(29), 3, 11, 11));
        assert_eq!(taken.iter().map(|b| b.height).collect::<Vec<_>>(), vec![10, 15]);
        for record in &marked {
            assert_eq!(round_paid_by(record), Some(&by));
            assert!(!awaits_carry(record, PayoutScheme::Prop), "carried once");
            assert_eq!(record.history.last().map(|c| c.at_ms), Some(7));
        }
    }
}
