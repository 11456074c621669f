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
//! Not carried: what of an orphan's credit had already been paid out
//! (flagged for the operator; each wallet's weight shrinks by the part it
//! was paid), orphans of PPLNS or SOLO (a PPLNS window overlaps the next
//! block's anyway), orphans recorded before rounds were carried (they
//! never wait, and ended their rounds as they did then), and blocks
//! recorded before ledger positions were (they sort after every credit
//! that could take them, so `block_maturity` never lets them wait). An
//! orphan left
//! waiting when the operator switches to PPLNS or SOLO is taken by the
//! next credit all the same, without its weights (a PPLNS window is the
//! ledger's last N, which holds its recent shares; SOLO pays no rounds):
//! its wait ends there (`EndedBy`), so PROP coming back later does not pay
//! it, and should it come back on the chain it is credited again.

use std::collections::BTreeMap;

use super::reward_split::{PayoutScheme, RewardWindow, SplitKind, WalletWeight};
use crate::storage::{BlockCredit, BlockRef, BlockRewardRecord, Expectation, RewardStatus, RewardUpdate, RoundCarry};

/// Whether a block with `record` (none: accepted, not yet credited) ends a
/// PROP round, so that the next round starts after it. An orphan that was
/// never credited and waits for (or had) its round carried does not: its
/// round goes on. (One recorded before rounds were carried, or under
/// another scheme, did end one, as it was then.)
pub(crate) fn ends_round(record: Option<&BlockRewardRecord>) -> bool {
    record.is_none_or(|r| r.credit.is_some() || matches!(r.round_carry, None | Some(RoundCarry::EndedBy(_))))
}

/// Whether an orphan credited with `credit` (none: never credited) has its
/// round carried to the next block under `scheme` ([`wait_for_carry`]).
pub(crate) fn carries_round(scheme: PayoutScheme, credit: Option<&BlockCredit>) -> bool {
    scheme == PayoutScheme::Prop && credit.is_none_or(|c| c.scheme == PayoutScheme::Prop)
}

/// Marks a block just orphaned (`record`, with the reason noted) as
/// waiting for its round to be carried, where `scheme` carries it.
/// `unrecovered`: per wallet, what of its credit could not be taken back
/// (paid out already); that part of its weight is not carried, so no
/// share is paid twice.
pub(crate) fn wait_for_carry(
    record: &mut BlockRewardRecord,
    scheme: PayoutScheme,
    unrecovered: &BTreeMap<String, u64>,
) {
    if !carries_round(scheme, record.credit.as_ref()) || record.status != RewardStatus::Orphaned {
        return;
    }
    let weights = match &record.credit {
        None => None,
        Some(credit) => {
            // A wallet also paid fees (the pool-fee or foundation address
            // mining) has what it was paid charged to its miner part first.
            let mut owed: BTreeMap<&str, u64> = BTreeMap::new();
            for entry in credit.split.entries.iter().filter(|e| e.kind == SplitKind::Miner) {
                *owed.entry(entry.recipient.as_str()).or_default() += entry.amount;
            }
            let window = unpaid_part(&credit.window, |wallet| {
                let owed = owed.get(wallet).copied().unwrap_or(0);
                (owed, unrecovered.get(wallet).copied().unwrap_or(0).min(owed))
            });
            if window.weights.is_empty() && !credit.window.weights.is_empty() {
                return; // all of it was paid out
            }
            Some(window)
        }
    };
    record.round_carry = Some(RoundCarry::Waiting(weights));
}

/// `window` with each wallet's weight cut to the part of its credit that
/// was taken back: `owed_and_short(wallet)` gives what it was credited and
/// what of that was paid out already.
fn unpaid_part(window: &RewardWindow, owed_and_short: impl Fn(&str) -> (u64, u64)) -> RewardWindow {
    let weights: Vec<WalletWeight> = window
        .weights
        .iter()
        .filter_map(|w| {
            let (owed, short) = owed_and_short(&w.wallet);
            let difficulty = match short {
                0 => w.difficulty,
                // floor(weight x kept / owed), exact and without overflow
                // (weights may pass 64 bits); never more than the weight.
                _ => {
                    let (owed, kept) = (u128::from(owed.max(1)), u128::from(owed.saturating_sub(short)));
                    w.difficulty / owed * kept + w.difficulty % owed * kept / owed
                }
            };
            (difficulty > 0).then(|| WalletWeight { difficulty, ..w.clone() })
        })
        .collect();
    let sum: u128 = weights.iter().map(|w| w.difficulty).sum();
    let shares = weights.iter().map(|w| w.shares).sum();
    RewardWindow { first: window.first, last: window.last, shares, difficulty_sum: sum, target: sum, weights }
}

/// Whether `record` is an orphan whose round the next credit must take
/// (under PROP; a credit by another scheme, after the operator switched,
/// takes it too, without its weights: it ends the wait).
pub(crate) fn awaits_carry(record: &BlockRewardRecord) -> bool {
    record.status == RewardStatus::Orphaned && matches!(record.round_carry, Some(RoundCarry::Waiting(_)))
}

/// The weights a waiting orphan's round adds to the credit that takes it
/// (none for one never credited: its shares are in that credit's range).
pub(crate) fn waiting_weights(record: &BlockRewardRecord) -> Option<&RewardWindow> {
    match &record.round_carry {
        Some(RoundCarry::Waiting(weights)) => weights.as_ref(),
        _ => None,
    }
}

/// The block whose credit took `record`'s round, if one did.
pub(crate) fn round_paid_by(record: &BlockRewardRecord) -> Option<&BlockRef> {
    match &record.round_carry {
        Some(RoundCarry::PaidBy(by)) => Some(by),
        _ => None,
    }
}

/// Takes the rounds of `orphans` (each [`awaits_carry`]) into `window`,
/// the window of block `by`'s credit by `scheme`, and into that credit's
/// `update`: each orphan's record marked as paid (or, by another scheme,
/// ended) by `by`, applied only while the store holds the record as read,
/// so of two credits taking one round (two coordinators on a shared store)
/// one does. Returns the orphans taken, oldest first. Only PROP adds their
/// weights: under PPLNS `by`'s window is the last N of the ledger, which
/// holds the orphans' recent shares, and SOLO pays no rounds.
pub(crate) fn carry_rounds(
    window: &mut RewardWindow,
    orphans: &[BlockRewardRecord],
    by: &BlockRef,
    scheme: PayoutScheme,
    now_ms: u64,
    update: &mut RewardUpdate,
) -> Vec<BlockRef> {
    let mut taken = Vec::with_capacity(orphans.len());
    for orphan in orphans {
        let mut record = orphan.clone();
        if scheme == PayoutScheme::Prop {
            if let Some(weights) = waiting_weights(orphan) {
                window.absorb(weights);
            }
            record.round_carry = Some(RoundCarry::PaidBy(by.clone()));
            record.note("round carried", format!("its PROP round is paid by block {}", by.height), now_ms);
        } else {
            record.round_carry = Some(RoundCarry::EndedBy(by.clone()));
            let reason =
                format!("its PROP round ends with block {}, credited by {scheme}, which carries none", by.height);
            record.note("round ended", reason, now_ms);
        }
        taken.push(BlockRef { height: orphan.height, hash: orphan.hash.clone() });
        update.expects.push(Expectation::block(orphan.height, &orphan.hash, Some(orphan)));
        update.blocks.push(record);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

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
        wait_for_carry(&mut record, PayoutScheme::Prop, &BTreeMap::new());
        record
    }

    fn carried_weights(record: &BlockRewardRecord) -> Vec<(String, u128)> {
        match &record.round_carry {
            Some(RoundCarry::Waiting(Some(w))) => w.weights.iter().map(|w| (w.wallet.clone(), w.difficulty)).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn which_blocks_end_a_round_and_which_orphans_are_carried() {
        use PayoutScheme::*;
        let prop = credited(10, Prop, window(&[("a", 5)], 0, 0));
        let flagged = |mut r: BlockRewardRecord| {
            r.operator_flag = Some("pays another wallet".into());
            r
        };
        let uncredited = BlockRewardRecord::pending(10, "h10", 0);
        let all_paid: BTreeMap<String, u64> = [("a".to_string(), u64::MAX)].into();
        let none_paid = BTreeMap::new();
        // (what, record, what was paid out already, ends a round once
        // marked under PROP, carried under PROP)
        type Case<'a> = (&'a str, Option<BlockRewardRecord>, &'a BTreeMap<String, u64>, bool, bool);
        let cases: Vec<Case> = vec![
            ("accepted, not yet credited", None, &none_paid, true, false),
            ("credited and on the chain", Some(prop.clone()), &none_paid, true, false),
            ("orphaned after its credit", Some(orphaned(prop.clone())), &none_paid, true, true),
            ("orphaned before its credit", Some(orphaned(uncredited.clone())), &none_paid, false, true),
            ("orphaned, paying another wallet", Some(flagged(orphaned(uncredited))), &none_paid, false, true),
            ("orphaned after all of it was paid out", Some(orphaned(prop.clone())), &all_paid, true, false),
            (
                "orphaned, credited by PPLNS",
                Some(orphaned(credited(10, Pplns, window(&[], 0, 0)))),
                &none_paid,
                true,
                false,
            ),
        ];
        for (what, record, paid, ends, carried) in cases {
            let Some(record) = record else {
                assert_eq!(ends_round(None), ends, "{what}: ends a round");
                continue;
            };
            // Recorded before rounds were carried (or under another
            // scheme): ends its round and never waits, as it did then.
            assert!(ends_round(Some(&record)), "{what}: an old record ends its round");
            assert!(!awaits_carry(&record), "{what}: an old record");
            for scheme in [Pplns, Solo] {
                let mut marked = record.clone();
                wait_for_carry(&mut marked, scheme, paid);
                assert_eq!(marked.round_carry, None, "{what}: PROP only");
            }
            let mut marked = record.clone();
            wait_for_carry(&mut marked, Prop, paid);
            assert_eq!(ends_round(Some(&marked)), ends, "{what}: ends a round");
            assert_eq!(awaits_carry(&marked), carried, "{what}: carried");
            for scheme in [Prop, Pplns, Solo] {
                let by = BlockRef { height: 11, hash: "h11".into() };
                let mut update = RewardUpdate::default();
                carry_rounds(&mut RewardWindow::default(), &[marked.clone()], &by, scheme, 0, &mut update);
                let paid = update.blocks;
                assert!(!awaits_carry(&paid[0]), "{what}: carried once, by {scheme}");
                // PROP pays the round (a return is flagged); another scheme
                // only ends it (a return is credited again).
                assert_eq!(round_paid_by(&paid[0]).is_some(), scheme == Prop, "{what}: paid by {scheme}");
                let ended = ends || scheme != Prop;
                assert_eq!(ends_round(Some(&paid[0])), ended, "{what}: ends a round once taken by {scheme}");
            }
        }
    }

    /// What was paid out of an orphan's credit before it left the chain is
    /// not carried: each wallet's weight shrinks with the part of its
    /// credit that could not be taken back.
    #[test]
    fn the_part_paid_out_already_is_not_carried() {
        let record = orphaned(credited(10, PayoutScheme::Prop, window(&[("alice", 6), ("bob", 2)], 0, 9)));
        // 1000 less 1% to the foundation: alice 742, bob 247 (floored).
        let split = &record.credit.as_ref().unwrap().split;
        let credit_of = |w: &str| split.entries.iter().filter(|e| e.recipient == w).map(|e| e.amount).sum::<u64>();
        assert_eq!((credit_of("alice"), credit_of("bob")), (742, 247));
        // (what was paid out already, the weights carried)
        type Case = (Vec<(&'static str, u64)>, Vec<(&'static str, u128)>);
        let cases: Vec<Case> = vec![
            (vec![], vec![("alice", 6), ("bob", 2)]),
            (vec![("alice", 371), ("foundation", 10)], vec![("alice", 3), ("bob", 2)]),
            (vec![("bob", 247)], vec![("alice", 6)]),
            (vec![("alice", 742), ("bob", 247)], vec![]),
            // More than its credit (its fees too, were it a fee address).
            (vec![("bob", 10_000)], vec![("alice", 6)]),
        ];
        for (paid, carried) in cases {
            let paid: BTreeMap<String, u64> = paid.into_iter().map(|(w, a)| (w.to_string(), a)).collect();
            let mut marked = record.clone();
            wait_for_carry(&mut marked, PayoutScheme::Prop, &paid);
            let expected: Vec<(String, u128)> = carried.iter().map(|(w, d)| (w.to_string(), *d)).collect();
            assert_eq!(carried_weights(&marked), expected, "paid out {paid:?}");
            assert_eq!(awaits_carry(&marked), !carried.is_empty(), "paid out {paid:?}");
        }
    }

    #[test]
    fn a_fee_address_that_mines_has_its_payout_charged_to_its_miner_part_first() {
        // The foundation mines too: its entry holds its fee (10) and the
        // dust; its miner entry 742.
        let record = orphaned(credited(10, PayoutScheme::Prop, window(&[("foundation", 6_000), ("bob", 2_000)], 0, 9)));
        let paid: BTreeMap<String, u64> = [("foundation".to_string(), 742)].into();
        let mut marked = record.clone();
        wait_for_carry(&mut marked, PayoutScheme::Prop, &paid);
        assert_eq!(carried_weights(&marked), vec![("bob".to_string(), 2_000)]);
    }

    #[test]
    fn weights_past_64_bits_are_cut_exactly() {
        // Times the part kept (hundreds), past 128 bits.
        let heavy = 3u128 << 122;
        let record = orphaned(credited(10, PayoutScheme::Prop, window(&[("alice", heavy), ("bob", 1 << 122)], 0, 9)));
        let alice =
            record.credit.as_ref().unwrap().split.entries.iter().find(|e| e.recipient == "alice").unwrap().amount;
        let paid: BTreeMap<String, u64> = [("alice".to_string(), alice / 3)].into();
        let mut marked = record.clone();
        wait_for_carry(&mut marked, PayoutScheme::Prop, &paid);
        let (wallet, cut) = carried_weights(&marked)[0].clone();
        assert_eq!(wallet, "alice");
        // heavy x kept / owed, as floating point sees it: no wrap-around.
        let expected = heavy as f64 * (alice - alice / 3) as f64 / alice as f64;
        assert!((cut as f64 / expected - 1.0).abs() < 1e-12, "{cut} against {expected}");
    }

    #[test]
    fn carried_rounds_merge_their_weights_and_name_the_block_that_pays_them() {
        let by = BlockRef { height: 30, hash: "h30".into() };
        let mut own = window(&[("bob", 4)], 20, 29);
        let orphans = [
            waiting(orphaned(credited(10, PayoutScheme::Prop, window(&[("alice", 6), ("bob", 1)], 0, 9)))),
            waiting(orphaned(BlockRewardRecord::pending(15, "h15", 0))),
        ];
        let mut pplns = own.clone();
        carry_rounds(&mut pplns, &orphans, &by, PayoutScheme::Pplns, 7, &mut RewardUpdate::default());
        assert_eq!(pplns, own, "PPLNS adds no weights: its window is the ledger's last N");
        let mut update = RewardUpdate::default();
        let taken = carry_rounds(&mut own, &orphans, &by, PayoutScheme::Prop, 7, &mut update);
        let marked = update.blocks;
        let weights: Vec<(&str, u128, u64)> =
            own.weights.iter().map(|w| (w.wallet.as_str(), w.difficulty, w.shares)).collect();
        assert_eq!(weights, vec![("alice", 6, 1), ("bob", 5, 2)]);
        assert_eq!((own.first, own.last, own.shares, own.difficulty_sum, own.target), (Some(0), Some(29), 3, 11, 11));
        assert_eq!(taken.iter().map(|b| b.height).collect::<Vec<_>>(), vec![10, 15]);
        for record in &marked {
            assert_eq!(round_paid_by(record), Some(&by));
            assert!(!awaits_carry(record), "carried once");
            assert_eq!(record.history.last().map(|c| c.at_ms), Some(7));
        }
    }

    /// Two credits decided on one read (two coordinators on a shared
    /// store, each crediting a block of its own) cannot both take one
    /// orphan's round: the second finds the orphan's record changed and
    /// applies nothing.
    #[test]
    fn of_two_credits_taking_one_round_the_second_applies_nothing() {
        use crate::storage::{BalanceBucket, BalanceDelta, PoolStore, SledStore, StoreError};
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let store = SledStore::open(&db).unwrap();
            let orphan = waiting(orphaned(credited(10, PayoutScheme::Prop, window(&[("alice", 6)], 0, 9))));
            let stored = RewardUpdate { blocks: vec![orphan.clone()], ..RewardUpdate::default() };
            store.apply_reward_update(&stored).await.unwrap();
            let read = store.block_reward(10, "h10").await.unwrap().expect("the orphan's record");
            let credit_by = |height: u64| {
                let by = BlockRef { height, hash: format!("h{height}") };
                let mut window = window(&[("bob", 4)], 20, 29);
                let mut update = RewardUpdate::default();
                carry_rounds(&mut window, std::slice::from_ref(&read), &by, PayoutScheme::Prop, 7, &mut update);
                // What the credit pays alice for her carried round.
                update.balances.push(BalanceDelta::new("alice", BalanceBucket::Immature, 60));
                update
            };
            let (first, second) = (credit_by(30), credit_by(31));
            store.apply_reward_update(&first).await.unwrap();
            let refused = store.apply_reward_update(&second).await;
            assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
            let now = store.block_reward(10, "h10").await.unwrap().unwrap();
            assert_eq!(round_paid_by(&now).map(|b| b.height), Some(30), "paid by the first credit only");
            let alice = store.balance("alice").await.unwrap().expect("alice's balance");
            assert_eq!(alice.immature, 60, "paid once: {alice:?}");
        });
    }
}
