//! Who gets what of a block: the window of shares a reward is split over
//! (PPLNS, PROP or SOLO) and the split itself, fees first.
//!
//! Pure functions over integers: amounts are base units (`u64`), weights
//! are share difficulty (`u128`, so sums never overflow). Every split adds
//! up to the reward exactly: each miner gets the floor of its due, and the
//! rounding dust goes to the foundation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Basis points in a whole.
const BPS: u128 = 10_000;

/// How a block's miners' part is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutScheme {
    /// Pay per last N shares: the last N units of share difficulty before
    /// the block (N = a factor x the block's network difficulty).
    #[default]
    Pplns,
    /// Proportional: the round's shares, since the pool's previous block.
    Prop,
    /// The finder takes the miners' part.
    Solo,
}

impl PayoutScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutScheme::Pplns => "pplns",
            PayoutScheme::Prop => "prop",
            PayoutScheme::Solo => "solo",
        }
    }
}

impl fmt::Display for PayoutScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payout scheme name that is none of `pplns`, `prop`, `solo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payout scheme {0:?}: use pplns, prop or solo")]
pub struct UnknownPayoutScheme(pub String);

impl FromStr for PayoutScheme {
    type Err = UnknownPayoutScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pplns" => Ok(PayoutScheme::Pplns),
            "prop" => Ok(PayoutScheme::Prop),
            "solo" => Ok(PayoutScheme::Solo),
            other => Err(UnknownPayoutScheme(other.to_string())),
        }
    }
}

/// The fees taken from every block before the miners' part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub foundation_bps: u32,
    pub foundation_address: String,
    pub pool_fee_bps: u32,
    pub pool_fee_address: String,
}

/// One accepted share as a window sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowShare {
    pub position: u64,
    pub wallet: String,
    pub difficulty: u64,
}

/// A wallet's weight in a window: the share difficulty it counts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletWeight {
    pub wallet: String,
    pub difficulty: u128,
    pub shares: u64,
}

/// The shares a block's reward is split over, as recorded with the block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RewardWindow {
    /// First and last ledger position in it (none when empty).
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub shares: u64,
    /// The difficulty counted: at most `target` (PPLNS counts the share
    /// that crosses N in part).
    pub difficulty_sum: u128,
    /// PPLNS's N; for PROP and SOLO the window's own sum.
    pub target: u128,
    /// Per wallet, sorted by wallet.
    pub weights: Vec<WalletWeight>,
}

impl RewardWindow {
    /// How much of N the window holds, 0-1 (below 1 for a young pool).
    pub fn coverage(&self) -> f64 {
        if self.target == 0 {
            0.0
        } else {
            self.difficulty_sum as f64 / self.target as f64
        }
    }

    /// Adds the shares of `other`, a window over other shares (an orphaned
    /// block's PROP round carried into the next): weights add up per wallet,
    /// and the window spans both.
    pub fn absorb(&mut self, other: &RewardWindow) {
        self.first = self.first.into_iter().chain(other.first).min();
        self.last = self.last.into_iter().chain(other.last).max();
        self.shares += other.shares;
        self.difficulty_sum += other.difficulty_sum;
        self.target += other.target;
        let mut by_wallet: BTreeMap<String, (u128, u64)> = BTreeMap::new();
        for w in self.weights.iter().chain(&other.weights) {
            let entry = by_wallet.entry(w.wallet.clone()).or_default();
            entry.0 += w.difficulty;
            entry.1 += w.shares;
        }
        self.weights = by_wallet
            .into_iter()
            .map(|(wallet, (difficulty, shares))| WalletWeight { wallet, difficulty, shares })
            .collect();
    }
}

/// Accumulates shares into per-wallet weights.
#[derive(Default)]
struct WindowBuilder {
    window: RewardWindow,
    by_wallet: BTreeMap<String, (u128, u64)>,
}

impl WindowBuilder {
    fn add(&mut self, share: &WindowShare, weight: u128) {
        let w = &mut self.window;
        w.first = Some(w.first.map_or(share.position, |f| f.min(share.position)));
        w.last = Some(w.last.map_or(share.position, |l| l.max(share.position)));
        w.shares += 1;
        w.difficulty_sum += weight;
        let entry = self.by_wallet.entry(share.wallet.clone()).or_default();
        entry.0 += weight;
        entry.1 += 1;
    }

    fn finish(mut self, target: Option<u128>) -> RewardWindow {
        self.window.target = target.unwrap_or(self.window.difficulty_sum);
        self.window.weights = self
            .by_wallet
            .into_iter()
            .map(|(wallet, (difficulty, shares))| WalletWeight { wallet, difficulty, shares })
            .collect();
        self.window
    }
}

/// PPLNS's N for a block of `network_difficulty`: `factor` x it, at least 1.
pub fn pplns_target(network_difficulty: u64, factor: f64) -> u128 {
    let n = (network_difficulty as f64 * factor).ceil();
    if n.is_finite() && n >= 1.0 {
        n as u128
    } else {
        1
    }
}

/// The last `target` units of share difficulty, walking back from the
/// block's own share (`newest_first`). The share that crosses `target`
/// counts with the part that fills it; a shorter history is taken whole.
pub fn pplns_window(newest_first: impl IntoIterator<Item = WindowShare>, target: u128) -> RewardWindow {
    let mut builder = WindowBuilder::default();
    for share in newest_first {
        let room = target - builder.window.difficulty_sum;
        if room == 0 {
            break;
        }
        builder.add(&share, u128::from(share.difficulty).min(room));
    }
    builder.finish(Some(target))
}

/// Every share given, at full weight (PROP's round, SOLO's single share).
pub fn whole_window(shares: impl IntoIterator<Item = WindowShare>) -> RewardWindow {
    let mut builder = WindowBuilder::default();
    for share in shares {
        builder.add(&share, u128::from(share.difficulty));
    }
    builder.finish(None)
}

/// What an entry of a split pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    Foundation,
    PoolFee,
    Miner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntry {
    pub recipient: String,
    pub kind: SplitKind,
    pub amount: u64,
}

/// A reward split: the entries add up to `reward` exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardSplit {
    pub reward: u64,
    pub foundation_fee: u64,
    pub pool_fee: u64,
    /// Rounding left over from the miners' part (part of the foundation entry).
    pub dust: u64,
    pub entries: Vec<SplitEntry>,
}

fn fee(reward: u64, bps: u32) -> u64 {
    // bps <= 10_000, so this never exceeds `reward`.
    (u128::from(reward) * u128::from(bps.min(10_000)) / BPS) as u64
}

/// Splits `reward`: the foundation fee, the pool fee, then the miners' part
/// in proportion to each wallet's weight in `window` (floored); the dust,
/// and the whole miners' part of an empty window, go to the foundation.
/// Entries of zero are left out; miners come in wallet order.
pub fn split_reward(reward: u64, fees: &FeeSchedule, window: &RewardWindow) -> RewardSplit {
    let foundation_fee = fee(reward, fees.foundation_bps);
    let pool_fee = fee(reward, fees.pool_fee_bps).min(reward - foundation_fee);
    let miners_part = reward - foundation_fee - pool_fee;
    // Weights past 64 bits are scaled down so `part * weight` fits in u128.
    let sum: u128 = window.weights.iter().map(|w| w.difficulty).sum();
    let shift = (128 - sum.leading_zeros()).saturating_sub(64);
    let total: u128 = window.weights.iter().map(|w| w.difficulty >> shift).sum();
    let mut miners = Vec::new();
    let mut paid = 0u64;
    for weight in &window.weights {
        // weight <= total, so the quotient is at most miners_part.
        let Some(due) = (u128::from(miners_part) * (weight.difficulty >> shift)).checked_div(total) else { break };
        let amount = due as u64;
        paid += amount;
        if amount > 0 {
            miners.push(SplitEntry { recipient: weight.wallet.clone(), kind: SplitKind::Miner, amount });
        }
    }
    let dust = miners_part - paid;
    let mut entries = Vec::with_capacity(miners.len() + 2);
    if foundation_fee + dust > 0 {
        entries.push(SplitEntry {
            recipient: fees.foundation_address.clone(),
            kind: SplitKind::Foundation,
            amount: foundation_fee + dust,
        });
    }
    if pool_fee > 0 {
        entries.push(SplitEntry {
            recipient: fees.pool_fee_address.clone(),
            kind: SplitKind::PoolFee,
            amount: pool_fee,
        });
    }
    entries.extend(miners);
    RewardSplit { reward, foundation_fee, pool_fee, dust, entries }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fees(foundation_bps: u32, pool_fee_bps: u32) -> FeeSchedule {
        FeeSchedule {
            foundation_bps,
            foundation_address: "foundation".into(),
            pool_fee_bps,
            pool_fee_address: "host".into(),
        }
    }

    fn share(position: u64, wallet: &str, difficulty: u64) -> WindowShare {
        WindowShare { position, wallet: wallet.into(), difficulty }
    }

    fn amount_of(split: &RewardSplit, kind: SplitKind, recipient: &str) -> u64 {
        split.entries.iter().filter(|e| e.kind == kind && e.recipient == recipient).map(|e| e.amount).sum()
    }

    #[test]
    fn a_worked_example_adds_up() {
        // The example in docs/API.md: 50 LAND, 1% foundation, 1% pool fee,
        // three wallets weighing 5, 3 and 1 in a window of N = 9.
        let newest_first = [share(12, "carol", 1), share(11, "bob", 3), share(10, "alice", 5), share(9, "zed", 4)];
        let window = pplns_window(newest_first, 9);
        assert_eq!((window.first, window.last, window.shares, window.difficulty_sum), (Some(10), Some(12), 3, 9));
        let split = split_reward(5_000_000_000, &fees(100, 100), &window);
        assert_eq!(split.foundation_fee, 50_000_000);
        assert_eq!(split.pool_fee, 50_000_000);
        // The miners' part 4,900,000,000: 5/9, 3/9, 1/9 floored.
        assert_eq!(amount_of(&split, SplitKind::Miner, "alice"), 2_722_222_222);
        assert_eq!(amount_of(&split, SplitKind::Miner, "bob"), 1_633_333_333);
        assert_eq!(amount_of(&split, SplitKind::Miner, "carol"), 544_444_444);
        assert_eq!(split.dust, 1);
        assert_eq!(amount_of(&split, SplitKind::Foundation, "foundation"), 50_000_001);
        assert_eq!(split.entries.iter().map(|e| e.amount).sum::<u64>(), 5_000_000_000);
    }

    #[test]
    fn the_share_that_crosses_n_counts_in_part() {
        let window = pplns_window([share(3, "a", 4), share(2, "b", 10), share(1, "c", 7)], 9);
        assert_eq!(window.difficulty_sum, 9);
        assert_eq!(window.shares, 2);
        assert_eq!(
            window.weights,
            vec![
                WalletWeight { wallet: "a".into(), difficulty: 4, shares: 1 },
                WalletWeight { wallet: "b".into(), difficulty: 5, shares: 1 },
            ]
        );
        assert_eq!(window.coverage(), 1.0);
    }

    #[test]
    fn a_young_pool_splits_the_whole_miners_part_over_the_shares_it_has() {
        let window = pplns_window([share(1, "lone", 3)], 1_000);
        assert!((window.coverage() - 0.003).abs() < 1e-12);
        let split = split_reward(1_000_000, &fees(100, 250), &window);
        assert_eq!(amount_of(&split, SplitKind::Miner, "lone"), 1_000_000 - 10_000 - 25_000);
    }

    #[test]
    fn schemes_parse_and_print() {
        for scheme in [PayoutScheme::Pplns, PayoutScheme::Prop, PayoutScheme::Solo] {
            assert_eq!(scheme.as_str().parse::<PayoutScheme>(), Ok(scheme));
        }
        assert!("pps".parse::<PayoutScheme>().is_err());
        assert_eq!(pplns_target(1000, 2.0), 2000);
        assert_eq!(pplns_target(3, 0.5), 2);
        assert_eq!(pplns_target(0, 2.0), 1);
    }

    #[test]
    fn huge_weights_are_scaled_not_overflowed() {
        let heavy = |wallet: &str, difficulty: u128| WalletWeight { wallet: wallet.into(), difficulty, shares: 1 };
        let window =
            RewardWindow { weights: vec![heavy("a", 3 << 100), heavy("b", 1 << 100)], ..RewardWindow::default() };
        let split = split_reward(u64::MAX, &fees(100, 0), &window);
        assert_eq!(split.entries.iter().map(|e| u128::from(e.amount)).sum::<u128>(), u128::from(u64::MAX));
        let miners_part = u64::MAX - u64::MAX / 100;
        assert_eq!(amount_of(&split, SplitKind::Miner, "a"), (u128::from(miners_part) * 3 / 4) as u64);
    }

    #[test]
    fn an_empty_window_leaves_the_miners_part_to_the_foundation() {
        let split = split_reward(1000, &fees(100, 0), &RewardWindow::default());
        assert_eq!(
            split.entries,
            vec![SplitEntry { recipient: "foundation".into(), kind: SplitKind::Foundation, amount: 1000 }]
        );
    }

    fn shares_strategy() -> impl Strategy<Value = Vec<(u8, u64)>> {
        prop::collection::vec((0u8..6, 1u64..1_000_000), 0..60)
    }

    proptest! {
        #[test]
        fn splits_add_up_and_nobody_gets_more_than_their_due(
            raw in shares_strategy(),
            reward in 0u64..=u64::MAX / 2,
            foundation_bps in 100u32..=10_000,
            pool_fee_bps in 0u32..=1000,
            target in 1u128..50_000_000,
        ) {
            let newest_first: Vec<WindowShare> = raw
                .iter()
                .enumerate()
                .map(|(i, (w, d))| share(1000 - i as u64, &format!("w{w}"), *d))
                .collect();
            let window = pplns_window(newest_first.clone(), target);
            let split = split_reward(reward, &fees(foundation_bps, pool_fee_bps), &window);
            prop_assert_eq!(split.entries.iter().map(|e| u128::from(e.amount)).sum::<u128>(), u128::from(reward));
            prop_assert!(split.entries.iter().all(|e| e.amount > 0));
            let miners_part = reward - split.foundation_fee - split.pool_fee;
            let total: u128 = window.weights.iter().map(|w| w.difficulty).sum();
            prop_assert!(total < 1 << 64, "the strategy stays below the scaling");
            for weight in &window.weights {
                let due = u128::from(miners_part) * weight.difficulty / total;
                let got = amount_of(&split, SplitKind::Miner, &weight.wallet);
                prop_assert_eq!(u128::from(got), due, "{} gets the floor of its due", &weight.wallet);
            }
            // The foundation gets its fee plus the dust, never less than its fee.
            let foundation = amount_of(&split, SplitKind::Foundation, "foundation");
            prop_assert_eq!(foundation, split.foundation_fee + split.dust);
            prop_assert!(u128::from(split.dust) < window.weights.len().max(1) as u128 || total == 0);
            prop_assert!(split.foundation_fee >= (u128::from(reward) / 100) as u64);
            // Window boundaries: the counted difficulty is min(target, all of it),
            // every share before the crossing one is whole, and no share after it counts.
            let all: u128 = newest_first.iter().map(|s| u128::from(s.difficulty)).sum();
            prop_assert_eq!(window.difficulty_sum, all.min(target));
            let mut before = 0u128;
            let mut counted = 0u64;
            for s in &newest_first {
                if before >= target { break; }
                before += u128::from(s.difficulty);
                counted += 1;
            }
            prop_assert_eq!(window.shares, counted);
            prop_assert!(window.coverage() <= 1.0);
        }

        /// A round carried into the next block's counts as if both rounds
        /// had been one: the same window, so the same split.
        #[test]
        fn a_carried_round_counts_as_if_the_rounds_were_one(
            earlier in shares_strategy(),
            later in shares_strategy(),
            reward in 0u64..=u64::MAX / 2,
        ) {
            let shares = |raw: &[(u8, u64)], from: u64| -> Vec<WindowShare> {
                raw.iter().enumerate().map(|(i, (w, d))| share(from + i as u64, &format!("w{w}"), *d)).collect()
            };
            let (earlier, later) = (shares(&earlier, 0), shares(&later, 1_000));
            let mut carried = whole_window(later.clone());
            carried.absorb(&whole_window(earlier.clone()));
            let one = whole_window(earlier.into_iter().chain(later));
            prop_assert_eq!(&carried, &one);
            let split = split_reward(reward, &fees(100, 200), &carried);
            prop_assert_eq!(split.entries.iter().map(|e| u128::from(e.amount)).sum::<u128>(), u128::from(reward));
        }

        #[test]
        fn a_lone_miner_gets_everything_but_the_fees(
            difficulties in prop::collection::vec(1u64..1_000_000, 1..40),
            reward in 0u64..=u64::MAX / 2,
            pool_fee_bps in 0u32..=1000,
            target in 1u128..10_000_000,
        ) {
            let newest_first: Vec<WindowShare> =
                difficulties.iter().enumerate().map(|(i, d)| share(i as u64, "lone", *d)).collect();
            for window in [pplns_window(newest_first.clone(), target), whole_window(newest_first.clone())] {
                let split = split_reward(reward, &fees(100, pool_fee_bps), &window);
                let expected = reward - reward / 100 - (u128::from(reward) * u128::from(pool_fee_bps) / 10_000) as u64;
                prop_assert_eq!(amount_of(&split, SplitKind::Miner, "lone"), expected);
                prop_assert_eq!(split.dust, 0);
            }
        }
    }
}
