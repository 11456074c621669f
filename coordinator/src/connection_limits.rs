//! Open connections per source address: one client (or one address) cannot
//! hold every connection slot the server has.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections by source; a slot is given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionsPerSource {
    limit: usize,
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
        ConnectionsPerSource { limit: limit.max(1), open: Arc::default() }
    }

    /// A slot for one more connection from `source`, unless it has `limit` open.
    pub(crate) fn try_acquire(&self, source: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock().expect("connections lock");
        let count = open.entry(source).or_insert(0);
        if *count >= self.limit {
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
        let first = limits.try_acquire(a).unwrap();
        let _second = limits.try_acquire(a).unwrap();
        assert!(limits.try_acquire(a).is_none(), "a third connection from one source");
        assert!(limits.try_acquire(b).is_some(), "other sources are not affected");
        drop(first);
        assert!(limits.try_acquire(a).is_some(), "a closed connection frees its slot");
        drop(limits.try_acquire(b));
        assert_eq!(limits.sources(), 1, "sources with nothing open are forgotten");
    }
}
