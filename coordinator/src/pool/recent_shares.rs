//! A session's accepted shares of the last hour, with running sums for the
//! hash-rate windows (10 minutes and an hour).
//!
//! The stats snapshot reads every active session's rate, anyone can ask for
//! it, and it is built under the sessions lock: summing an hour of shares
//! per session per build made that walk O(shares). Here a read costs the
//! shares that left a window since the last [`RecentShares::expire`]
//! (nothing, right after one), so a build is O(sessions).

use std::collections::VecDeque;

/// The two windows, in milliseconds.
pub(crate) const TEN_MINUTES_MS: u64 = 600_000;
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// Sum of difficulties and count of shares in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowSum {
    pub(crate) work: u128,
    pub(crate) shares: u64,
}

impl WindowSum {
    fn add(&mut self, difficulty: u64) {
        self.work += u128::from(difficulty);
        self.shares += 1;
    }

    fn remove(&mut self, difficulty: u64) {
        self.work -= u128::from(difficulty);
        self.shares -= 1;
    }
}

/// (time ms, difficulty) of accepted shares, oldest first, at most an hour
/// old after an [`expire`](RecentShares::expire).
#[derive(Debug, Default)]
pub(crate) struct RecentShares {
    shares: VecDeque<(u64, u64)>,
    /// The latest time seen (a push, an expire): times never go back here,
    /// so a read or push with an earlier clock (a sampler that waited for
    /// the lock, a wall clock stepped back) counts at this one.
    latest: u64,
    /// Index of the first share inside the 10-minute window, as of the
    /// last expire.
    ten_minutes_from: usize,
    ten_minutes: WindowSum,
    hour: WindowSum,
}

impl RecentShares {
    /// Records a share accepted at `now`. Times never go back: a share
    /// judged after a later one (requests overlap) counts at the later time.
    pub(crate) fn push(&mut self, now: u64, difficulty: u64) {
        self.expire(now);
        let now = self.latest;
        self.shares.push_back((now, difficulty));
        self.ten_minutes.add(difficulty);
        self.hour.add(difficulty);
    }

    /// Drops what left the windows by `now` from their sums (and shares
    /// over an hour old altogether).
    pub(crate) fn expire(&mut self, now: u64) {
        self.latest = self.latest.max(now);
        let now = self.latest;
        while let Some(&(t, d)) = self.shares.get(self.ten_minutes_from) {
            if now.saturating_sub(t) <= TEN_MINUTES_MS {
                break;
            }
            self.ten_minutes.remove(d);
            self.ten_minutes_from += 1;
        }
        while let Some(&(t, d)) = self.shares.front() {
            if now.saturating_sub(t) <= HOUR_MS {
                break;
            }
            self.hour.remove(d);
            self.shares.pop_front();
            // Over an hour old is over ten minutes old: already past the cursor.
            self.ten_minutes_from -= 1;
        }
    }

    /// The windows' sums as of `now`, without changing anything: exact
    /// whenever, cheapest right after `expire(now)`.
    pub(crate) fn windows(&self, now: u64) -> (WindowSum, WindowSum) {
        let now = now.max(self.latest);
        let mut ten_minutes = self.ten_minutes;
        for &(t, d) in self.shares.range(self.ten_minutes_from..) {
            if now.saturating_sub(t) <= TEN_MINUTES_MS {
                break;
            }
            ten_minutes.remove(d);
        }
        let mut hour = self.hour;
        for &(t, d) in &self.shares {
            if now.saturating_sub(t) <= HOUR_MS {
                break;
            }
            hour.remove(d);
        }
        (ten_minutes, hour)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The windows as the plain definition reads: every share no older than
    /// the window, summed.
    fn summed(shares: &[(u64, u64)], now: u64, window: u64) -> WindowSum {
        let mut sum = WindowSum::default();
        for &(_, d) in shares.iter().filter(|(t, _)| now.saturating_sub(*t) <= window) {
            sum.add(d);
        }
        sum
    }

    #[test]
    fn shares_leave_the_ten_minute_window_then_the_hour() {
        let mut recent = RecentShares::default();
        recent.push(0, 5);
        recent.push(TEN_MINUTES_MS, 7);
        let at = |now| recent.windows(now);
        assert_eq!(at(TEN_MINUTES_MS), (WindowSum { work: 12, shares: 2 }, WindowSum { work: 12, shares: 2 }));
        assert_eq!(at(TEN_MINUTES_MS + 1).0, WindowSum { work: 7, shares: 1 });
        assert_eq!(at(HOUR_MS + 1).1, WindowSum { work: 7, shares: 1 });
        assert_eq!(at(HOUR_MS + TEN_MINUTES_MS + 1), (WindowSum::default(), WindowSum::default()));
        recent.expire(HOUR_MS + TEN_MINUTES_MS + 1);
        assert!(recent.shares.is_empty());
        assert_eq!(recent.windows(HOUR_MS + TEN_MINUTES_MS + 1), (WindowSum::default(), WindowSum::default()));
    }

    proptest! {
        /// Whatever the pushes, expires and reads, the running sums equal
        /// the windows summed from the shares kept.
        /// Clocks may step back by up to `lag` (a caller that waited for
        /// the lock): such a time counts as the latest seen.
        #[test]
        fn running_sums_equal_the_windows_summed(
            steps in prop::collection::vec(
                (0u64..400_000, 0u64..5_000, 1u64..1_000_000, any::<bool>(), any::<bool>()),
                1..300,
            ),
        ) {
            let mut recent = RecentShares::default();
            let mut all = Vec::new();
            let (mut clock, mut latest) = (1_000_000u64, 0u64);
            for (gap, lag, difficulty, push, expire) in steps {
                clock += gap;
                let now = clock - lag.min(clock);
                if push {
                    latest = latest.max(now);
                    recent.push(now, difficulty);
                    all.push((latest, difficulty));
                }
                if expire {
                    latest = latest.max(now);
                    recent.expire(now);
                    // Nothing over an hour old is kept; the cursor sits at
                    // the first share inside ten minutes.
                    prop_assert!(recent.shares.front().is_none_or(|(t, _)| latest - t <= HOUR_MS));
                    prop_assert!(recent.ten_minutes_from <= recent.shares.len());
                    if let Some(before) = recent.ten_minutes_from.checked_sub(1) {
                        prop_assert!(latest - recent.shares[before].0 > TEN_MINUTES_MS);
                    }
                    if let Some((t, _)) = recent.shares.get(recent.ten_minutes_from) {
                        prop_assert!(latest - t <= TEN_MINUTES_MS);
                    }
                }
                let (ten_minutes, hour) = recent.windows(now);
                let read_at = now.max(latest);
                prop_assert_eq!(ten_minutes, summed(&all, read_at, TEN_MINUTES_MS));
                prop_assert_eq!(hour, summed(&all, read_at, HOUR_MS));
            }
        }
    }
}
