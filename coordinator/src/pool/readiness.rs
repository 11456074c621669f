//! `GET /healthz`: whether this coordinator can serve miners now, for a
//! load balancer in front of several (readiness, not liveness: a node that
//! is down makes it 503, which a restart would not mend). Free to call:
//! atomics only, no storage or chain I/O, so a flood of checks costs
//! nothing and cannot itself make the coordinator look down. A pool the
//! operator stopped is stopped on every coordinator alike, so it stays
//! ready (`running: false`): the balancer must still reach `/pool/start`.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Pool, PoolError};

/// The store must have answered this coordinator's once-a-second look at
/// the shared settings within this long (ms).
const STORE_SILENCE_LIMIT_MS: u64 = 10_000;

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
        let mut reasons = Vec::new();
        let height = self.current_height();
        if height.is_none() {
            reasons.push("no block template yet");
        } else if !self.chain_up(now) {
            reasons.push("the chain has not answered lately");
        }
        let store_answered_ms_ago = now.saturating_sub(self.store_answered_ms.load(Ordering::Relaxed));
        if store_answered_ms_ago > STORE_SILENCE_LIMIT_MS {
            reasons.push("the store has not answered lately");
        }
        match height {
            Some(height) if reasons.is_empty() => {
                Ok(Readiness { height, running: self.running.load(Ordering::Relaxed), store_answered_ms_ago })
            }
            _ => Err(PoolError::NotReady(reasons.join("; "))),
        }
    }
}
