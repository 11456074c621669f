//! Running sums of a window at the end of the ledger, so that "what would a
//! block found now pay" and "how far back may the ledger be compacted" cost
//! the shares that entered or left the window since the last look, not a
//! read of the whole window every time.
//!
//! A window of millions of shares, read whole every few seconds, is both
//! slow and, through sled's cache, memory that only grows. Here each share
//! is read about twice in its life: once when it enters (at the end of the
//! ledger, where pages are hot) and once when it leaves (at the window's
//! start, in order). Memory is one entry per key (worker or wallet).
//!
//! The window is PPLNS's (the newest shares up to `target` units, the share
//! that crosses it counted in part) or PROP's (every share from a start).
//! [`WindowTally::reward_window`] gives exactly what
//! [`super::reward_split::pplns_window`] and
//! [`super::reward_split::whole_window`] give for the same shares.

use std::collections::{BTreeMap, VecDeque};

use super::reward_split::{RewardWindow, WalletWeight};
use crate::storage::{PoolStore, ShareRecord, StoreError};

/// Shares read from the ledger at a time.
const PAGE: usize = 4096;

/// Which field of a share a tally sums by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TallyKey {
    WorkerId,
    /// One sum for everything (only the window's bounds are wanted).
    Nothing,
}

impl TallyKey {
    fn of(self, share: &ShareRecord) -> String {
        match self {
            TallyKey::WorkerId => share.worker_id.clone(),
            TallyKey::Nothing => String::new(),
        }
    }
}

/// Where a window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowRule {
    /// PPLNS: the newest shares reaching this many units.
    LastUnits(u128),
    /// PROP: every share from this position on.
    From(u64),
}

/// The sums of the shares at positions `start..end`.
#[derive(Debug)]
pub(crate) struct WindowTally {
    key: TallyKey,
    start: u64,
    end: u64,
    sum: u128,
    /// Per key: (difficulty, shares).
    by_key: BTreeMap<String, (u128, u64)>,
    /// The shares at `start..`, read ahead (a page at most) for when they leave.
    leaving: VecDeque<(u64, String, u64)>,
    /// Target of the last fit (PPLNS), for the crossing share's part.
    target: Option<u128>,
}

impl WindowTally {
    /// An empty tally at the ledger's end (the first [`WindowTally::fit`] reads the window).
    pub(crate) fn new(key: TallyKey) -> Self {
        WindowTally { key, start: 0, end: 0, sum: 0, by_key: BTreeMap::new(), leaving: VecDeque::new(), target: None }
    }

    /// Brings the window up to the ledger's end and fits its start to `rule`.
    pub(crate) async fn fit(&mut self, store: &dyn PoolStore, rule: WindowRule) -> Result<(), StoreError> {
        let floor = store.ledger_floor().await?;
        let len = store.ledger_len().await?;
        if len < self.end || self.start < floor {
            // The ledger is not what this tally saw (a restore, or
            // compaction past the window): count afresh.
            *self = WindowTally::new(self.key);
        }
        if self.end == 0 && self.start == 0 && len > 0 {
            (self.start, self.end) = (len, len);
        }
        self.catch_up(store, len).await?;
        match rule {
            WindowRule::From(first) => {
                self.target = None;
                let first = first.max(floor).min(self.end);
                self.extend_back(store, floor.max(first), None).await?;
                while self.start < first {
                    self.drop_oldest(store).await?;
                }
            }
            WindowRule::LastUnits(target) => {
                self.target = Some(target);
                self.extend_back(store, floor, Some(target)).await?;
                while self.start < self.end {
                    let oldest = self.oldest(store).await?.2;
                    if self.sum - u128::from(oldest) < target {
                        break;
                    }
                    self.drop_oldest(store).await?;
                }
            }
        }
        Ok(())
    }

    /// The first position in the window (the ledger's end when empty).
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Whether the window holds its whole target (PPLNS), not just all there is.
    pub(crate) fn is_full(&self) -> bool {
        self.target.is_some_and(|t| self.sum >= t)
    }

    /// The window as a split sees it, keyed by this tally's key (reads the
    /// oldest share when it counts in part).
    pub(crate) async fn reward_window(&mut self, store: &dyn PoolStore) -> Result<RewardWindow, StoreError> {
        let mut weights = self.by_key.clone();
        let mut counted = self.sum;
        if let Some(target) = self.target.filter(|t| self.sum > *t) {
            let excess = self.sum - target;
            let (_, key, _) = self.oldest(store).await?;
            if let Some(w) = weights.get_mut(&key) {
                w.0 -= excess;
            }
            counted = target;
        }
        let shares = weights.values().map(|w| w.1).sum();
        Ok(RewardWindow {
            first: (self.start < self.end).then_some(self.start),
            last: self.end.checked_sub(1).filter(|_| self.start < self.end),
            shares,
            difficulty_sum: counted,
            target: self.target.unwrap_or(counted),
            weights: weights
                .into_iter()
                .map(|(wallet, (difficulty, shares))| WalletWeight { wallet, difficulty, shares })
                .collect(),
        })
    }

    fn add(&mut self, key: String, difficulty: u64) {
        let entry = self.by_key.entry(key).or_default();
        entry.0 += u128::from(difficulty);
        entry.1 += 1;
        self.sum += u128::from(difficulty);
    }

    /// Counts the shares appended since the last look.
    async fn catch_up(&mut self, store: &dyn PoolStore, len: u64) -> Result<(), StoreError> {
        while self.end < len {
            let page = store.shares_from(self.end, PAGE).await?;
            let mut read = 0;
            for (position, share) in page.into_iter().take_while(|(p, _)| *p < len) {
                if position != self.end {
                    return Err(gap(self.end, position));
                }
                self.add(self.key.of(&share), share.share_difficulty);
                self.end += 1;
                read += 1;
            }
            if read == 0 {
                return Err(gap(self.end, len));
            }
        }
        Ok(())
    }

    /// Counts older shares, down to `floor`, until `target` is reached (or
    /// all of them when there is none).
    async fn extend_back(&mut self, store: &dyn PoolStore, floor: u64, target: Option<u128>) -> Result<(), StoreError> {
        while self.start > floor && target.is_none_or(|t| self.sum < t) {
            let page = store.shares_back_from(self.start - 1, PAGE).await?;
            let mut read = 0;
            for (position, share) in page {
                if position < floor || target.is_some_and(|t| self.sum >= t) {
                    break;
                }
                if position + 1 != self.start {
                    return Err(gap(self.start - 1, position));
                }
                self.add(self.key.of(&share), share.share_difficulty);
                // The read-ahead starts at `start`: it is read again from there.
                self.leaving.clear();
                self.start = position;
                read += 1;
            }
            if read == 0 {
                break; // compacted below here, or the ledger's first share
            }
        }
        Ok(())
    }

    /// The share at `start`: (position, key, difficulty).
    async fn oldest(&mut self, store: &dyn PoolStore) -> Result<(u64, String, u64), StoreError> {
        if self.leaving.is_empty() {
            let page = store.shares_from(self.start, PAGE).await?;
            for (position, share) in page.into_iter().take_while(|(p, _)| *p < self.end) {
                if position != self.start + self.leaving.len() as u64 {
                    return Err(gap(self.start + self.leaving.len() as u64, position));
                }
                self.leaving.push_back((position, self.key.of(&share), share.share_difficulty));
            }
        }
        self.leaving.front().cloned().ok_or_else(|| gap(self.start, self.end))
    }

    async fn drop_oldest(&mut self, store: &dyn PoolStore) -> Result<(), StoreError> {
        let (_, key, difficulty) = self.oldest(store).await?;
        self.leaving.pop_front();
        if let Some(entry) = self.by_key.get_mut(&key) {
            entry.0 -= u128::from(difficulty);
            entry.1 -= 1;
            if entry.1 == 0 {
                self.by_key.remove(&key);
            }
        }
        self.sum -= u128::from(difficulty);
        self.start += 1;
        Ok(())
    }
}

fn gap(expected: u64, found: u64) -> StoreError {
    StoreError::Corrupt {
        tree: "pool_shares",
        message: format!("the ledger skips from position {expected} to {found}"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rewards::reward_split::{pplns_window, whole_window, WindowShare};
    use crate::storage::SledStore;

    fn share(n: u64, worker: u8, difficulty: u64) -> ShareRecord {
        ShareRecord {
            worker_id: format!("rig{worker}"),
            session_id: format!("s{worker}"),
            wallet_address: format!("land1w{worker}"),
            template_id: "t".into(),
            job_id: "j".into(),
            nonce: n,
            share_difficulty: difficulty,
            height: 1,
            time_ms: n,
            is_block: false,
        }
    }

    /// The window read whole, as the split functions see it.
    async fn reference(store: &SledStore, rule: WindowRule) -> RewardWindow {
        let floor = store.ledger_floor().await.unwrap();
        let all = store.shares_from(floor, usize::MAX).await.unwrap();
        let as_window = |(position, s): &(u64, ShareRecord)| WindowShare {
            position: *position,
            wallet: s.worker_id.clone(),
            difficulty: s.share_difficulty,
        };
        match rule {
            WindowRule::LastUnits(target) => pplns_window(all.iter().rev().map(as_window), target),
            WindowRule::From(first) => whole_window(all.iter().filter(|(p, _)| *p >= first).map(as_window)),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(Vec<(u8, u64)>),
        Fit(WindowRule),
        Compact(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => prop::collection::vec((0u8..4, 1u64..20), 0..40).prop_map(Step::Append),
            3 => (1u128..300).prop_map(|t| Step::Fit(WindowRule::LastUnits(t))),
            1 => (0u64..200).prop_map(|p| Step::Fit(WindowRule::From(p))),
            1 => (0u64..200).prop_map(Step::Compact),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever appends, target changes, round starts and compactions
        /// come between looks, the running window equals the window read whole.
        #[test]
        fn the_running_window_equals_the_window_read_whole(steps in prop::collection::vec(step(), 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let store = SledStore::open(&db).unwrap();
            let mut tally = WindowTally::new(TallyKey::WorkerId);
            let mut n = 0;
            for step in steps {
                match step {
                    Step::Append(shares) => {
                        for (worker, difficulty) in shares {
                            store.append_share(&share(n, worker, difficulty)).await.unwrap();
                            n += 1;
                        }
                    }
                    Step::Compact(below) => {
                        store.compact_shares_below(below, usize::MAX).await.unwrap();
                    }
                    Step::Fit(rule) => {
                        tally.fit(&store, rule).await.unwrap();
                        let running = tally.reward_window(&store).await.unwrap();
                        prop_assert_eq!(running, reference(&store, rule).await, "{:?}", rule);
                        if let WindowRule::LastUnits(target) = rule {
                            let whole = reference(&store, rule).await.difficulty_sum == target;
                            prop_assert_eq!(tally.is_full(), whole);
                        }
                    }
                }
            }
            Ok(())
            })?;
        }
    }
}
