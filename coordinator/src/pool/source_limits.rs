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
//!
//! An IPv6 source is a /64 (`client_source::source_network`), and a site
//! is often given a /48: 65,536 of them. So each /48 also has buckets of
//! its own, [`SITE_SHARE`] times a source's, which every /64 in it draws
//! on too: a site with a few subnets is unaffected, and one holder cannot
//! multiply the budget by the /64s it has.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::token_bucket::TokenBucket;
use crate::client_source::{site_network, CountedNetwork};

/// Sources tracked at once; past it, idle entries are pruned first, and a
/// new source is refused while none are idle.
const MAX_SOURCES: usize = 100_000;

/// What an IPv6 /48 may take, in units of one source's budget.
const SITE_SHARE: f64 = crate::client_source::SITE_SOURCES as f64;

/// What buckets are kept for: a source (an IPv4 address or an IPv6 /64),
/// or the IPv6 /48 holding sources.
type Holder = CountedNetwork;

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
    sources: Mutex<HashMap<Holder, SourceBuckets>>,
}

impl SourceLimits {
    pub(crate) fn new(config: SourceLimitConfig) -> Self {
        SourceLimits { config, sources: Mutex::new(HashMap::new()) }
    }

    /// Runs `take` on the buckets of `source`'s site (IPv6) and then of
    /// `source`: a refusal by the site takes nothing from the source.
    fn with_source(
        &self,
        source: IpAddr,
        now_ms: u64,
        take: impl Fn(&mut SourceBuckets) -> Result<(), u64>,
    ) -> Result<(), u64> {
        let mut sources = self.sources.lock().expect("source limits lock");
        if let Some(site) = site_network(source) {
            take(self.buckets(&mut sources, Holder::Site(site), now_ms)?)?;
        }
        take(self.buckets(&mut sources, Holder::Source(source), now_ms)?)
    }

    /// The buckets of `holder`, made full where it has none; `Err` (seconds
    /// to wait) while the table is full of busy holders.
    fn buckets<'a>(
        &self,
        sources: &'a mut HashMap<Holder, SourceBuckets>,
        holder: Holder,
        now_ms: u64,
    ) -> Result<&'a mut SourceBuckets, u64> {
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&holder) {
            sources.retain(|_, b| !Self::idle(b, now_ms));
            if sources.len() >= MAX_SOURCES {
                return Err(5);
            }
        }
        let c = self.config;
        let share = if matches!(holder, Holder::Site(_)) { SITE_SHARE } else { 1.0 };
        Ok(sources.entry(holder).or_insert_with(|| SourceBuckets {
            registrations: TokenBucket::new(
                c.registrations_per_sec * 4.0 * share,
                c.registrations_per_sec * share,
                now_ms,
            ),
            unproven_verifications: TokenBucket::new(
                c.unproven_verification_burst * share,
                c.unproven_verifications_per_sec * share,
                now_ms,
            ),
        }))
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

    /// The /64s of one /48 share the site's budget (16 sources' worth);
    /// another /48, and IPv4, are not affected.
    #[test]
    fn the_64s_of_one_48_share_its_budget() {
        let shared = limits();
        let subnet = |site: u16, n: u16| -> IpAddr { format!("2001:db8:{site:x}:{n:x}::1").parse().unwrap() };
        // Each /64 may register 4 at once; the /48 takes 64 at once.
        let taken = (0..100u16).filter(|&n| (0..4).all(|_| shared.take_registration(subnet(1, n), 0).is_ok())).count();
        assert_eq!(taken, 16, "16 /64s' worth from one /48");
        assert!(shared.take_registration(subnet(1, 500), 0).is_err(), "a fresh /64 of the same /48");
        assert!(shared.take_registration(subnet(2, 0), 0).is_ok(), "another /48");
        assert!(shared.take_registration("10.0.0.9".parse().unwrap(), 0).is_ok(), "IPv4");
        assert!(shared.take_registration(subnet(1, 500), 1000).is_ok(), "the site refills");
        // A refusal by the site took nothing from the /64.
        let fresh = limits();
        for n in 0..16u16 {
            (0..4).for_each(|_| assert!(fresh.take_registration(subnet(3, n), 0).is_ok()));
        }
        assert!(fresh.take_registration(subnet(3, 99), 0).is_err());
        assert_eq!((0..10).filter(|_| fresh.take_registration(subnet(3, 99), 250).is_ok()).count(), 4);
    }

    #[test]
    fn registrations_burst_then_refill() {
        let limits = limits();
        let a: IpAddr = "::1".parse().unwrap();
        assert_eq!((0..10).filter(|_| limits.take_registration(a, 0).is_ok()).count(), 4);
        assert!(limits.take_registration(a, 1000).is_ok());
    }
}
