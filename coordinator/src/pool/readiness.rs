//! `GET /healthz`: whether this coordinator can serve miners now, for a
//! load balancer in front of several (readiness, not liveness: a node that
//! is down makes it 503, which a restart would not mend). Free to call:
//! memory only, no storage or chain I/O, so a flood of checks costs
//! nothing and cannot itself make the coordinator look down. A pool the
//! operator stopped is stopped on every coordinator alike, so it stays
//! ready (`running: false`): the balancer must still reach `/pool/start`.
//!
//! On a shared store a coordinator whose node lags is *behind*: other
//! coordinators claimed a tip [`BEHIND_BY`]+ heights above its own since it
//! claimed its own. Work on its tip can never make a block (and once the
//! others prune those heights, its shares are refused as stale), so it is
//! not ready and answers job requests 503 until its node catches up.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Pool, PoolError};

/// The store must have answered this coordinator's once-a-second look at
/// the shared settings within this long (ms).
const STORE_SILENCE_LIMIT_MS: u64 = 10_000;

/// Heights under the others' tip at which a coordinator is behind: one
/// is a block still spreading between nodes.
pub(crate) const BEHIND_BY: u64 = 2;
/// Others' claims count this long (ms): a coordinator stays behind while
/// they keep claiming, but one that claimed far ahead and went quiet (a
/// node on a branch of its own) stops holding the others back.
const TIP_CLAIM_WINDOW_MS: u64 = 60_000;

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

impl Pool {
    /// Ready with a template from a chain that answers and a store that
    /// answered lately; otherwise [`PoolError::NotReady`] with every reason.
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
        if let Some(behind) = self.behind() {
            reasons.push(behind);
        }
        match height {
            Some(height) if reasons.is_empty() => {
                Ok(Readiness { height, running: self.running.load(Ordering::Relaxed), store_answered_ms_ago })
            }
            _ => Err(PoolError::NotReady(reasons.join("; "))),
        }
    }

    /// Why this coordinator is behind the others, if it is.
    pub(crate) fn behind(&self) -> Option<String> {
        let height = self.current_height()?;
        let above = self.tip_claimed_above.load(Ordering::Relaxed);
        (above >= height + BEHIND_BY)
            .then(|| format!("this coordinator's chain node is behind: it mines height {height}, others mine {above}"))
    }

    /// Reads the highest tip claimed since this coordinator claimed its own
    /// (`sync_shared_state`, every second).
    pub(crate) async fn look_for_tips_ahead(&self) -> Result<(), PoolError> {
        let claimed = self.tip_claimed_ms.load(Ordering::Relaxed);
        if claimed == 0 {
            return Ok(());
        }
        let highest = self.store.highest_tip_claimed_after(claimed, TIP_CLAIM_WINDOW_MS).await?;
        let was_behind = self.behind().is_some();
        // A claim of its own meanwhile starts the look afresh: this answer
        // is about the tip before it.
        if self.tip_claimed_ms.load(Ordering::Relaxed) == claimed {
            self.tip_claimed_above.store(highest.unwrap_or(0), Ordering::Relaxed);
        }
        match (was_behind, self.behind()) {
            (false, Some(behind)) => tracing::warn!("{behind}: not ready, no jobs until it catches up"),
            (true, None) => tracing::info!("caught up with the other coordinators' tip"),
            _ => {}
        }
        Ok(())
    }
}
