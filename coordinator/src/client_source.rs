//! Which client a request counts as, for every per-source limit and ban.
//!
//! Without trusted proxies, the TCP peer. Behind a reverse proxy every peer
//! is the proxy, so `--trusted-proxy` names the proxies whose
//! `X-Forwarded-For` is believed: the client is the rightmost address in it
//! that is not itself a trusted proxy (each proxy appends the peer it saw, so
//! anything left of that was written by the client and proves nothing). A
//! header from any other peer is ignored. Whatever the address, it counts as
//! its `source_network`.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

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

/// How many sources an IPv6 site (/48) counts as, for every per-source
/// limit, budget and cap kept per site too.
pub(crate) const SITE_SOURCES: usize = 16;

/// What a per-client count is kept for: a source ([`source_network`]) or
/// the IPv6 /48 holding sources ([`site_network`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CountedNetwork {
    Source(IpAddr),
    Site(Ipv6Addr),
}

impl CountedNetwork {
    /// What `ip` is counted under: its source, and for IPv6 its site.
    pub(crate) fn of(ip: IpAddr) -> (CountedNetwork, Option<CountedNetwork>) {
        (CountedNetwork::Source(source_network(ip)), site_network(ip).map(CountedNetwork::Site))
    }
}

/// The IPv6 /48 holding `ip` (one site's allocation: budgets kept per /48
/// too stop one holder counting as 65,536 sources), `None` for IPv4 (as
/// [`source_network`] reads it).
pub(crate) fn site_network(ip: IpAddr) -> Option<Ipv6Addr> {
    match source_network(ip) {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => Some(Ipv6Addr::from(v6.to_bits() & !((1u128 << 80) - 1))),
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks.into())
    }

    /// Whether `ip` is one of the configured proxies.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The source of a request from `peer` with `headers`.
    pub(crate) fn source(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        source_network(self.client(peer, headers))
    }

    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Every X-Forwarded-For header, in order, as one list of hops, each
        // read on its own (a byte the client wrote spoils only its own hop).
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Ok(ip) if self.trusts(ip) => client = ip,
                Ok(ip) => return ip,
                // Garbage where an address should be: believe nothing further
                // left, and count the request as the last proxy's.
                Err(_) => return client,
            }
        }
        client
    }
}

/// A hop as proxies write it: an address, or one with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &[u8]) -> Result<IpAddr, ()> {
    let hop = std::str::from_utf8(hop).map_err(drop)?.trim();
    hop.parse::<IpAddr>().or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip())).map_err(drop)
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
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "2001:db8:ff::/48".parse().unwrap()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (peer, X-Forwarded-For headers, the source)
        let cases: &[(&str, &[&str], &str)] = &[
            // No proxies involved: the peer, whatever it claims.
            ("198.51.100.1", &["203.0.113.9"], "198.51.100.1"),
            // One proxy: the address it saw.
            ("10.0.0.2", &["203.0.113.9"], "203.0.113.9"),
            // A client's own forgery left of it proves nothing.
            ("10.0.0.2", &["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
            // Two proxies (one header each, or one list): past both.
            ("10.0.0.2", &["203.0.113.9, 10.1.1.1"], "203.0.113.9"),
            ("10.0.0.2", &["203.0.113.9", "10.1.1.1"], "203.0.113.9"),
            // No header, or only proxies in it: the nearest proxy's.
            ("10.0.0.2", &[], "10.0.0.2"),
            ("10.0.0.2", &["10.9.9.9"], "10.9.9.9"),
            // Garbage: the last proxy believed.
            ("10.0.0.2", &["203.0.113.9, not-an-ip"], "10.0.0.2"),
            ("10.0.0.2", &["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
            // Hops with ports, as some load balancers write them.
            ("10.0.0.2", &["203.0.113.9:4711"], "203.0.113.9"),
            ("10.0.0.2", &["[2001:db8:1:2::77]:4711"], "2001:db8:1:2::"),
            // IPv6 proxies and clients (counted by /64); mapped IPv4 peers.
            ("2001:db8:ff::1", &["2001:db8:1:2::77"], "2001:db8:1:2::"),
            ("::ffff:10.0.0.2", &["203.0.113.9"], "203.0.113.9"),
        ];
        for (peer, headers, expected) in cases {
            let mut map = HeaderMap::new();
            for value in *headers {
                map.append("x-forwarded-for", value.parse().unwrap());
            }
            assert_eq!(proxies.source(ip(peer), &map), ip(expected), "{peer} {headers:?}");
        }
        assert_eq!(TrustedProxies::default().source(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        // A byte that is no text in the client's own part spoils only that
        // hop: the one the proxy appended still names the client.
        let mut map = HeaderMap::new();
        map.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"1.2.3.4\xff, 203.0.113.9").unwrap());
        assert_eq!(proxies.source(ip("10.0.0.2"), &map), ip("203.0.113.9"));
    }
}
