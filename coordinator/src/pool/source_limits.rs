//! Limits per source address: registrations, and the verification budget
//! of sessions that have not yet shown valid work.
//!
//! A session is *unproven* until one of its shares is accepted. Hashing a
//! share is the expensive thing a client can make the pool do, and
//! registering is free, so every unproven session of one source draws on
//! one shared budget: a flood of fresh sessions with forged shares costs
//! the pool a bounded number of hashes per second per source, and proven
//! sessions (honest miners, also behind the same address) are unaffected.
//! Entries are made only for requests that passed validation and are
//! forgotten once their buckets are full again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::token_bucket::TokenBucket;

/// Sources tracked at once; past it, idle entries are pruned first, and a
/// new source is refused while none are idle.
const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceLimitConfig {
    pub(crate) registrations_per_sec: f64,
    pub(crate) unproven_verifications_per_sec: f64,
    pub(crate) unproven_verification_burst: f64,
}

struct SourceBuckets {
    registrations: TokenBucket,
    unproven_verifications: TokenBucket,
}

/// What a source ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) retry_after_secs: u64,
}

pub(crate) struct SourceLimits {
    config: SourceLimitConfig,
    sources: Mutex<HashMap<IpAddr, SourceBuckets>>,
}

impl SourceLimits {
    pub(crate) fn new(config: SourceLimitConfig) -> Self {
        SourceLimits { config, sources: Mutex::new(HashMap::new()) }
    }

    fn with_source(
        &self,
        source: IpAddr,
        now_ms: u64,
        f: impl FnOnce(&mut SourceBuckets) -> Result<(), u64>,
    ) -> Result<(), u64> {
        let c = self.config;
        let mut sources = self.sources.lock().expect("source limits lock");
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, b| !Self::idle(b, now_ms));
            if sources.len() >= MAX_SOURCES {
                return Err(5);
            }
        }
        let buckets = sources.entry(source).or_insert_with(|| SourceBuckets {
            registrations: TokenBucket::new(c.registrations_per_sec * 4.0, c.registrations_per_sec, now_ms),
            unproven_verifications: TokenBucket::new(
                c.unproven_verification_burst,
                c.unproven_verifications_per_sec,
                now_ms,
            ),
        });
        f(buckets)
    }

    fn idle(buckets: &SourceBuckets, now_ms: u64) -> bool {
        buckets.registrations.is_full(now_ms) && buckets.unproven_verifications.is_full(now_ms)
    }

    pub(crate) fn take_registration(&self, source: IpAddr, now_ms: u64) -> Result<(), Exhausted> {
        self.with_source(source, now_ms, |b| b.registrations.try_take(now_ms))
            .map_err(|retry_after_secs| Exhausted { retry_after_secs })
    }

    pub(crate) fn take_unproven_verification(&self, source: IpAddr, now_ms: u64) -> Result<(), Exhausted> {
        self.with_source(source, now_ms, |b| b.unproven_verifications.try_take(now_ms))
            .map_err(|retry_after_secs| Exhausted { retry_after_secs })
    }

    /// Forgets sources whose buckets are full again; returns how many.
    pub(crate) fn prune(&self, now_ms: u64) -> usize {
        let mut sources = self.sources.lock().expect("source limits lock");
        let before = sources.len();
        sources.retain(|_, b| !Self::idle(b, now_ms));
        before - sources.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.sources.lock().expect("source limits lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SourceLimits {
        SourceLimits::new(SourceLimitConfig {
            registrations_per_sec: 1.0,
            unproven_verifications_per_sec: 2.0,
            unproven_verification_burst: 3.0,
        })
    }

    #[test]
    fn each_source_has_its_own_budget_and_idle_ones_are_forgotten() {
        let limits = limits();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limits.take_unproven_verification(a, 0).is_ok());
        }
        assert_eq!(limits.take_unproven_verification(a, 0), Err(Exhausted { retry_after_secs: 1 }));
        assert!(limits.take_unproven_verification(b, 0).is_ok(), "another source is not affected");
        assert!(limits.take_unproven_verification(a, 500).is_ok(), "refills at 2/s");
        assert_eq!(limits.prune(300), 0, "still refilling");
        assert_eq!(limits.len(), 2);
        assert_eq!(limits.prune(10_000), 2);
        assert_eq!(limits.len(), 0);
    }

    #[test]
    fn registrations_burst_then_refill() {
        let limits = limits();
        let a: IpAddr = "::1".parse().unwrap();
        assert_eq!((0..10).filter(|_| limits.take_registration(a, 0).is_ok()).count(), 4);
        assert!(limits.take_registration(a, 1000).is_ok());
    }
}
