//! Open connections per source address: one client (or one address) cannot
//! hold every connection slot the server has. Also what a "source address"
//! is, for every per-source limit and ban: [`source_network`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The address a client is counted under: an IPv4 address as it is (an
/// IPv4-mapped IPv6 one as IPv4), an IPv6 address as its /64, the block one
/// subscriber gets (so one host cannot be a new source per address of its
/// block, dodging the limits and bans kept per source).
pub(crate) fn source_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

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
    fn a_source_is_an_ipv4_address_or_an_ipv6_64() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
        ];
        for (ip, network) in cases {
            assert_eq!(source_network(ip.parse().unwrap()), network.parse::<IpAddr>().unwrap(), "{ip}");
        }
    }

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
