//! Slots per source address (open connections; held long-polls, through
//! the pool): one client (or one address) cannot hold every slot the
//! server has, and a few cannot together:
//! once slots run short, a source that already holds [`FAIR_SHARE`] gets no
//! more, and the rest stay for sources holding few (a miner needs one or
//! two).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections any source may open even when slots run short.
pub(crate) const FAIR_SHARE: usize = 16;

/// Counts open connections by source; a slot is given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionsPerSource {
    limit: usize,
    /// What a source may hold once slots run short.
    fair_share: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of a source; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    source: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionsPerSource {
    pub(crate) fn new(limit: usize) -> Self {
        Self::with_fair_share(limit, FAIR_SHARE)
    }

    /// With another share than [`FAIR_SHARE`] (fewer slots in all).
    pub(crate) fn with_fair_share(limit: usize, fair_share: usize) -> Self {
        ConnectionsPerSource { limit: limit.max(1), fair_share: fair_share.max(1), open: Arc::default() }
    }

    /// A slot for one more connection from `source`, unless it has `limit`
    /// open, or `scarce` (few of the server's slots are free) and it holds
    /// its fair share already.
    pub(crate) fn try_acquire(&self, source: IpAddr, scarce: bool) -> Option<SourceSlot> {
        let mut open = self.open.lock().expect("connections lock");
        let count = open.entry(source).or_insert(0);
        if *count >= self.limit || (scarce && *count >= self.fair_share) {
            return None;
        }
        *count += 1;
        Some(SourceSlot { source, open: self.open.clone() })
    }

    /// Sources with connections open (the map holds no others).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open.lock().expect("connections lock").len()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_is_capped_and_slots_come_back() {
        let limits = ConnectionsPerSource::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limits.try_acquire(a, false).unwrap();
        let _second = limits.try_acquire(a, false).unwrap();
        assert!(limits.try_acquire(a, false).is_none(), "a third connection from one source");
        assert!(limits.try_acquire(b, false).is_some(), "other sources are not affected");
        drop(first);
        assert!(limits.try_acquire(a, false).is_some(), "a closed connection frees its slot");
        drop(limits.try_acquire(b, false));
        assert_eq!(limits.sources(), 1, "sources with nothing open are forgotten");
    }

    /// Slots running short: sources holding their fair share wait for their
    /// own connections to close; others still get in.
    #[test]
    fn when_slots_run_short_heavy_sources_get_no_more() {
        let limits = ConnectionsPerSource::new(256);
        let (heavy, light): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..FAIR_SHARE + 4).map(|_| limits.try_acquire(heavy, false).unwrap()).collect();
        assert!(limits.try_acquire(heavy, true).is_none(), "past its fair share while slots are short");
        assert!(limits.try_acquire(heavy, false).is_some(), "plenty of slots: up to its limit");
        let light_held: Vec<_> = (0..FAIR_SHARE).map(|_| limits.try_acquire(light, true).unwrap()).collect();
        assert!(limits.try_acquire(light, true).is_none());
        drop((held, light_held));
        assert!(limits.try_acquire(heavy, true).is_some(), "its connections closed: room again");
        assert!(limits.try_acquire("10.0.0.3".parse().unwrap(), true).is_some());
        assert_eq!(limits.sources(), 0, "sources with nothing open are forgotten");
    }
}
