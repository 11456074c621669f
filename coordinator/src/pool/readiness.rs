//! `GET /healthz`: whether this coordinator can serve miners now, for a
//! load balancer in front of several (readiness, not liveness: a node that
//! is down makes it 503, which a restart would not mend). Free to call:
//! memory only, no storage or chain I/O, so a flood of checks costs
//! nothing and cannot itself make the coordinator look down. A pool the
//! operator stopped is stopped on every coordinator alike, so it stays
//! ready (`running: false`): the balancer must still reach `/pool/start`.
//!
//! On a shared store every coordinator notes the height it mines each
//! second and reads the others' ([`Pool::look_for_tips_ahead`]). One that
//! most of the live others have been [`BEHIND_BY`]+ heights ahead of for
//! [`BEHIND_FOR_MS`] is *behind*: its node lags, work on its tip can never
//! make a block (and once the others prune those heights, its shares are
//! refused as stale), so it is not ready and answers job requests 503
//! until its node catches up. A majority, so that one coordinator whose
//! node is on a branch of its own, far ahead, cannot take the others down
//! (with two coordinators, the other one is the majority; coordinators
//! sharing one node vote alike).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{Pool, PoolError};

/// The store must have answered this coordinator's once-a-second look at
/// the shared settings within this long (ms).
const STORE_SILENCE_LIMIT_MS: u64 = 10_000;

/// Heights under the others' tip at which a coordinator is behind: one
/// is a block still spreading between nodes.
pub(crate) const BEHIND_BY: u64 = 2;
/// How long it must stay so (ms): a block found through one coordinator
/// reaches the others' nodes within a moment, and a tip that goes down
/// (a reorg) is followed by every coordinator whose chain answers within a
/// look or two.
pub(crate) const BEHIND_FOR_MS: u64 = 5_000;
/// Coordinators that noted their tip within this long count (well under
/// [`BEHIND_FOR_MS`], by more than a look: one stopped or restarted, under
/// a new name, stops counting before it can hold another back). A
/// coordinator whose chain is silent notes nothing.
const TIPS_LIVE: Duration = Duration::from_secs(3);

/// What a ready coordinator reports.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    /// The height of the template it hands out.
    pub(crate) height: u64,
    /// Whether the operator has the pool running (jobs are 503 otherwise).
    pub(crate) running: bool,
    /// How long ago the store last answered (ms).
    pub(crate) store_answered_ms_ago: u64,
}

/// Where the other coordinators stood at the last look.
#[derive(Debug, Default)]
pub(crate) struct Lag {
    /// The height most live others mine at or above (0: no others).
    majority_height: u64,
    /// Since when (ms) that has been [`BEHIND_BY`]+ above this one's tip
    /// (0: it is not).
    behind_since_ms: u64,
}

impl Lag {
    /// Takes in a look: this coordinator at `height`, `majority_height`
    /// the height most live others reach.
    fn observe(&mut self, height: u64, majority_height: u64, now: u64) {
        self.majority_height = majority_height;
        if height.checked_add(BEHIND_BY).is_none_or(|h| majority_height < h) {
            self.behind_since_ms = 0;
        } else if self.behind_since_ms == 0 {
            self.behind_since_ms = now.max(1);
        }
    }

    /// Whether a coordinator at `height` now is behind: under the
    /// others' tip at the last look, and for [`BEHIND_FOR_MS`].
    fn behind(&self, height: u64, now: u64) -> bool {
        self.behind_since_ms > 0
            && now.saturating_sub(self.behind_since_ms) >= BEHIND_FOR_MS
            && height.checked_add(BEHIND_BY).is_some_and(|h| self.majority_height >= h)
    }
}

/// The highest height that more than half of `others` mine at or above.
fn majority_height(others: &mut [u64]) -> u64 {
    others.sort_unstable_by(|a, b| b.cmp(a));
    others.get(others.len() / 2).copied().unwrap_or(0)
}

impl Pool {
    /// Ready with a template from a chain that answers and a store that
    /// answered lately, and not behind; otherwise [`PoolError::NotReady`]
    /// with every reason.
    pub(crate) fn readiness(&self, now: u64) -> Result<Readiness, PoolError> {
        let mut reasons: Vec<String> = Vec::new();
        let height = self.current_height();
        if height.is_none() {
            reasons.push("no block template yet".into());
        } else if !self.chain_up(now) {
            reasons.push("the chain has not answered lately".into());
        }
        let store_answered_ms_ago = now.saturating_sub(self.store_answered_ms.load(Ordering::Relaxed));
        if store_answered_ms_ago > STORE_SILENCE_LIMIT_MS {
            reasons.push("the store has not answered lately".into());
        }
        if let Err(PoolError::NotReady(behind)) = self.refuse_if_behind(now) {
            reasons.push(behind);
        }
        match height {
            Some(height) if reasons.is_empty() => {
                Ok(Readiness { height, running: self.running.load(Ordering::Relaxed), store_answered_ms_ago })
            }
            _ => Err(PoolError::NotReady(reasons.join("; "))),
        }
    }

    /// [`PoolError::NotReady`] while this coordinator is behind the others:
    /// its tip, as of now, under theirs at the last look, for long enough.
    pub(crate) fn refuse_if_behind(&self, now: u64) -> Result<(), PoolError> {
        let Some(height) = self.current_height() else { return Ok(()) };
        let lag = self.lag.lock().expect("lag lock");
        if lag.behind(height, now) {
            return Err(PoolError::NotReady(format!(
                "this coordinator's chain node is behind: it mines height {height}, most other coordinators {}",
                lag.majority_height
            )));
        }
        Ok(())
    }

    /// Notes this coordinator's tip in the store and reads the others'
    /// (`sync_shared_state`, every second).
    pub(crate) async fn look_for_tips_ahead(&self, now: u64) -> Result<(), PoolError> {
        // A tip its chain no longer vouches for is no vote.
        let Some(height) = self.current_height().filter(|_| self.chain_up(now)) else { return Ok(()) };
        let mut others = self.store.exchange_tips(&self.rewards.coordinator_name(), height, TIPS_LIVE).await?;
        let majority = majority_height(&mut others);
        // Judged against the tip as of now (a refresh may have moved it),
        // and timed from the answer (the store may have been slow).
        let Some(height) = self.current_height() else { return Ok(()) };
        let now = now.max(super::now_ms());
        let was_behind = self.refuse_if_behind(now).is_err();
        self.lag.lock().expect("lag lock").observe(height, majority, now);
        match (was_behind, self.refuse_if_behind(now)) {
            (false, Err(behind)) => tracing::warn!("{behind}; no jobs until it catches up"),
            (true, Ok(())) => tracing::info!("caught up with the other coordinators' tip"),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_means_two_under_the_others_for_long_enough() {
        let mut lag = Lag::default();
        // One under: a block spreading.
        lag.observe(10, 11, 1_000);
        assert!(!lag.behind(10, 1_000 + BEHIND_FOR_MS));
        // Two under: behind once it has lasted.
        lag.observe(10, 12, 2_000);
        assert!(!lag.behind(10, 2_000 + BEHIND_FOR_MS - 1));
        assert!(lag.behind(10, 2_000 + BEHIND_FOR_MS));
        // A step that leaves it two under keeps the clock running.
        lag.observe(11, 13, 3_000);
        assert!(lag.behind(11, 2_000 + BEHIND_FOR_MS));
        // Caught up between looks: not behind at once.
        assert!(!lag.behind(12, 2_000 + BEHIND_FOR_MS));
        // A look that finds it level starts the clock afresh next time.
        lag.observe(13, 13, 7_000);
        assert!(!lag.behind(13, 8_000));
        lag.observe(13, 15, 8_000);
        assert!(!lag.behind(13, 8_000 + BEHIND_FOR_MS - 1));
        // Nobody else: never behind.
        lag.observe(13, 0, 20_000);
        assert!(!lag.behind(13, 30_000));
        // Heights at the edge of u64 (a hostile node's) do not overflow.
        lag.observe(u64::MAX, u64::MAX, 40_000);
        assert!(!lag.behind(u64::MAX, 50_000));
    }

    #[test]
    fn the_majority_height_is_the_highest_more_than_half_the_others_reach() {
        let table: &[(&[u64], u64)] = &[
            (&[], 0),
            (&[9], 9),
            // Both of two must be ahead.
            (&[9, 3], 3),
            (&[9, 9], 9),
            // One far ahead of three holds no one back.
            (&[90, 5, 5], 5),
            (&[90, 9, 5], 9),
            (&[9, 9, 5, 5], 5),
            (&[9, 9, 9, 5], 9),
        ];
        for (others, expected) in table {
            assert_eq!(majority_height(&mut others.to_vec()), *expected, "{others:?}");
        }
    }
}
