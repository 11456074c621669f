//! Bans: when invalid shares ban a session, and what the bans in force
//! come to for new registrations and unproven sessions.
//!
//! Invalid-share accounting is per session ([`BanPolicy`]): an outsider
//! who registers an honest worker's id gets a session of their own, whose
//! garbage bans only that session, and new registrations of that worker id
//! from that source address. A ban is stored before it is in force (every
//! coordinator on the database reads it). A source with
//! [`MAX_BANS_PER_SOURCE`] bans in force (an IPv6 /48 with
//! [`MAX_BANS_PER_SITE`]) may not register at all until some run out, and
//! its unproven sessions may not work, so its bans stop at about that many.
//! What the bans come to is worked out once whenever they change
//! ([`BanIndex`]), never by a scan per request.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::metrics::PoolMetrics;
use super::{Pool, PoolError, ShareRejection};
use crate::client_source::{CountedNetwork, SITE_SOURCES};
use crate::storage::BanRecord;

/// Bans in force from one source network past which it may not register.
pub(crate) const MAX_BANS_PER_SOURCE: usize = 16;
/// The same for an IPv6 site (/48): a holder of one cannot earn bans
/// through its 65,536 /64s, each a stored record every coordinator reads.
pub(crate) const MAX_BANS_PER_SITE: usize = SITE_SOURCES * MAX_BANS_PER_SOURCE;

/// What the bans in force come to, worked out whenever they change
/// ([`Pool::recount_capped_sources`]) so that no request scans them.
#[derive(Debug, Default)]
pub(crate) struct BanIndex {
    /// Source networks and IPv6 sites at their ban cap, and until when.
    capped: std::collections::HashMap<CountedNetwork, u64>,
    /// The latest ban of each worker id from each source (as stored).
    by_worker: std::collections::HashMap<(String, String), u64>,
}

/// The ban rule's counters for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BanCounts {
    /// Shares judged that count (accepted, or refused for a reason that counts).
    pub(crate) judged: u64,
    pub(crate) invalid: u64,
}

/// When invalid shares ban a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BanPolicy {
    pub(crate) min_shares: u64,
    pub(crate) invalid_ratio: f64,
    pub(crate) unproven_invalid_limit: u64,
}

impl BanPolicy {
    /// A session that has not shown valid work is banned after a few invalid
    /// shares (each cost the pool a hash, and it has earned no benefit of the
    /// doubt). One that has is banned once its invalid ratio passes the limit
    /// over enough shares, or as soon as its invalid shares outrun the ratio
    /// by that same few (one cheap valid share buys little).
    pub(crate) fn is_due(&self, counts: BanCounts, proven: bool) -> bool {
        let (judged, invalid) = (counts.judged as f64, counts.invalid as f64);
        if !proven {
            return counts.invalid >= self.unproven_invalid_limit;
        }
        let over_ratio = counts.judged >= self.min_shares && invalid > self.invalid_ratio * judged;
        over_ratio || invalid >= self.unproven_invalid_limit as f64 + self.invalid_ratio * judged
    }
}

impl Pool {
    fn ban_policy(&self) -> BanPolicy {
        BanPolicy {
            min_shares: self.config.ban_min_shares,
            invalid_ratio: self.config.ban_invalid_ratio,
            unproven_invalid_limit: self.config.unproven_invalid_limit.max(1),
        }
    }

    /// Until when `source` (its network: an IPv6 /64) may not register at
    /// all, nor work through an unproven session, if [`MAX_BANS_PER_SOURCE`]
    /// of its sessions are banned (or [`MAX_BANS_PER_SITE`] of its /48's): each ban is a stored record every
    /// coordinator reads, and a session costs nothing to open, so an
    /// address that keeps earning bans is stopped before its bans fill the
    /// store. (The operator can lift them.) Read from what
    /// [`Self::recount_capped_sources`] worked out: no scan per request.
    pub(super) fn capped_until(&self, source: IpAddr, now: u64) -> Option<u64> {
        let (network, site) = CountedNetwork::of(source);
        let mut index = self.ban_index.lock().expect("ban index lock");
        let mut until = None;
        for counted in std::iter::once(network).chain(site) {
            match index.capped.get(&counted).copied() {
                Some(at) if at > now => until = until.max(Some(at)),
                Some(_) => {
                    // Enough of its bans ran out.
                    index.capped.remove(&counted);
                }
                None => {}
            }
        }
        until
    }

    /// Whether any network is at its ban cap (the usual answer, no, lets
    /// a request skip the look at its session's source).
    pub(super) fn any_source_capped(&self) -> bool {
        !self.ban_index.lock().expect("ban index lock").capped.is_empty()
    }

    /// Works out, in one pass over the bans in force, which source
    /// networks are at the ban cap and until when. Run when bans change
    /// (this coordinator writes one, a session earning it with several
    /// refused shares; an operator lifts some; another coordinator's
    /// arrive) and at start, never on the request path.
    pub(crate) fn recount_capped_sources(&self, now: u64) {
        // The bans stay read until the count is written: two recounts at
        // once cannot leave the older count last. (Lock order: bans, then
        // the ban index; nothing takes them the other way.)
        let bans = self.bans.read();
        let mut by_network: std::collections::HashMap<CountedNetwork, Vec<u64>> = std::collections::HashMap::new();
        let mut by_worker: std::collections::HashMap<(String, String), u64> = std::collections::HashMap::new();
        for ban in bans.values().filter(|b| b.until_ms > now) {
            let Some(source) = ban.source.as_deref() else { continue };
            let latest = by_worker.entry((ban.worker_id.clone(), source.to_string())).or_default();
            *latest = (*latest).max(ban.until_ms);
            if let Ok(from) = source.parse::<IpAddr>() {
                let (network, site) = CountedNetwork::of(from);
                for counted in std::iter::once(network).chain(site) {
                    by_network.entry(counted).or_default().push(ban.until_ms);
                }
            }
        }
        let capped = by_network
            .into_iter()
            .filter_map(|(network, mut until)| {
                let cap = match network {
                    CountedNetwork::Source(_) => MAX_BANS_PER_SOURCE,
                    CountedNetwork::Site(_) => MAX_BANS_PER_SITE,
                };
                // Open again once enough of them have run out.
                until.sort_unstable();
                (until.len() >= cap).then(|| (network, until[until.len() - cap]))
            })
            .collect();
        *self.ban_index.lock().expect("ban index lock") = BanIndex { capped, by_worker };
        drop(bans);
    }

    /// Until when a session of `worker_id` from `source` is banned, if one is.
    pub(super) fn banned_registration(&self, worker_id: &str, source: Option<IpAddr>, now: u64) -> Option<u64> {
        let key = (worker_id.to_string(), source?.to_string());
        let index = self.ban_index.lock().expect("ban index lock");
        index.by_worker.get(&key).copied().filter(|&until| until > now)
    }

    /// Lifts `session_id`'s ban if it has run out by `now` (a change the
    /// figures show), in memory: the store's record is housekeeping's to
    /// remove. Returns whether it did.
    pub(crate) fn lift_expired_ban(&self, session_id: &str, now: u64) -> bool {
        {
            let mut bans = self.bans.lock();
            // (A ban put since it was read is not the one that ran out.)
            if bans.get(session_id).is_none_or(|b| b.until_ms > now) {
                return false;
            }
            bans.remove(session_id);
        }
        if let Some(session) = self.sessions.lock().get_mut(session_id) {
            session.ban_lifted();
        }
        true
    }

    /// Counts a refused share against its session, banning it when the
    /// policy says so.
    pub(crate) async fn count_rejection(
        &self,
        session_id: &str,
        source: Option<IpAddr>,
        rejection: ShareRejection,
        now: u64,
    ) -> Result<(), PoolError> {
        let metric = match rejection {
            ShareRejection::Stale => &self.metrics.shares_stale,
            ShareRejection::Duplicate => &self.metrics.shares_duplicate,
            _ => &self.metrics.shares_invalid,
        };
        PoolMetrics::bump(metric);
        let policy = self.ban_policy();
        let due = {
            let mut sessions = self.sessions.lock();
            let Some(session) = sessions.get_mut(session_id) else { return Ok(()) };
            match rejection {
                ShareRejection::Stale => session.counts.stale += 1,
                ShareRejection::Duplicate => session.counts.duplicate += 1,
                _ => session.counts.rejected += 1,
            }
            if !rejection.counts_toward_ban() {
                return Ok(());
            }
            session.ban_counts.judged += 1;
            session.ban_counts.invalid += 1;
            policy
                .is_due(session.ban_counts, session.proven)
                .then(|| (session.record.worker_id.clone(), session.record.source.clone(), session.banned.clone()))
        };
        if let Some((worker_id, registered_from, flag)) = due {
            let ban = BanRecord {
                session_id: session_id.to_string(),
                worker_id,
                source: source.map(|s| s.to_string()).or(registered_from),
                until_ms: now + self.config.ban_duration.as_millis() as u64,
                reason: format!("invalid shares ({})", rejection.reason()),
            };
            // Stored first, then in force here with nothing awaited between:
            // a refused write (or a client hanging up) leaves no session
            // refused by a ban no one can see or lift. (A write done and
            // then cancelled is read back within a minute, `sync_bans`.)
            self.store.put_ban(&ban).await?;
            tracing::warn!(session = session_id, worker = %ban.worker_id, "banned: {}", ban.reason);
            PoolMetrics::bump(&self.metrics.bans);
            let from_somewhere = ban.source.is_some();
            self.bans.lock().insert(session_id.to_string(), ban);
            // Queued shares of the session are skipped from now on.
            flag.store(true, Ordering::Relaxed);
            if from_somewhere {
                self.recount_capped_sources(now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ban_rule_spares_honest_ratios_and_stops_unproven_forgers_early() {
        let policy = BanPolicy { min_shares: 100, invalid_ratio: 0.1, unproven_invalid_limit: 5 };
        let table = [
            (BanCounts { judged: 4, invalid: 4 }, false, false),
            (BanCounts { judged: 5, invalid: 5 }, false, true),
            (BanCounts { judged: 5, invalid: 4 }, true, false),
            (BanCounts { judged: 6, invalid: 5 }, true, false),
            (BanCounts { judged: 10, invalid: 6 }, true, true),
            (BanCounts { judged: 100, invalid: 10 }, true, false),
            (BanCounts { judged: 100, invalid: 11 }, true, true),
            (BanCounts { judged: 1000, invalid: 50 }, true, false),
            (BanCounts { judged: 1000, invalid: 101 }, true, true),
        ];
        for (counts, proven, due) in table {
            assert_eq!(policy.is_due(counts, proven), due, "{counts:?} proven={proven}");
        }
    }
}
