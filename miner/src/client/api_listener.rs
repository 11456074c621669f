//! The local API's accept loop (our own, as the coordinator's, rather than
//! `axum::serve`, which has no limits): the status page must never cost the
//! miner what it mines with. Connections from other machines past
//! [`ApiLimits::connections`], or past [`ApiLimits::per_address`] from one
//! address, are closed at once (file descriptors are what the pool
//! requests need); this machine's own (loopback, an SSH tunnel's too) have
//! slots of their own, [`ApiLimits::loopback_connections`], so no one on
//! the network can take the owner's. (An address is a whole IPv6 address,
//! not its /64: a home network is one /64.) Headers must arrive within
//! [`ApiLimits::header_timeout`] (an idle keep-alive connection is closed
//! then too); a connection lives at most [`ApiLimits::lifetime`] (the page
//! reconnects). Each request carries its peer's address (`ConnectInfo`),
//! which `local_api` checks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service as _;

/// What the local API lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Open connections from other machines in all.
    pub connections: usize,
    /// Open connections from one other machine (a browser opens up to six).
    pub per_address: usize,
    /// Open connections from this machine (loopback), apart from the rest.
    pub loopback_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long one connection may stay open.
    pub lifetime: Duration,
}

impl ApiLimits {
    pub const DEFAULT: ApiLimits = ApiLimits {
        connections: 32,
        per_address: 8,
        loopback_connections: 32,
        header_timeout: Duration::from_secs(10),
        lifetime: Duration::from_secs(120),
    };
}

/// A connection counted against its address; dropping it frees the slot.
struct AddressSlot {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressSlot {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, address: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = open.lock().expect("address counts lock");
        let count = counts.entry(address).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot { address, open: open.clone() })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().expect("address counts lock");
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// The address a peer is counted under: an IPv4-mapped one as IPv4.
fn counted_address(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Serves `router` on `listener` within `limits`, until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: ApiLimits) {
    let open = Arc::new(Semaphore::new(limits.connections.max(1)));
    let loopback = Arc::new(Semaphore::new(limits.loopback_connections.max(1)));
    let per_address = Arc::new(Mutex::new(HashMap::new()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut accept_failures = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: pause, do not spin.
                accept_failures += 1;
                if accept_failures.is_power_of_two() {
                    tracing::warn!("status API: accept failed ({accept_failures} times so far): {err}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = peer.ip().to_canonical().is_loopback();
        let Ok(slot) = (if local { &loopback } else { &open }).clone().try_acquire_owned() else {
            tracing::debug!("status API: closing a connection from {peer}: every slot is taken");
            continue;
        };
        let address_slot = if local {
            None
        } else {
            let Some(address_slot) = AddressSlot::take(&per_address, counted_address(peer.ip()), limits.per_address)
            else {
                tracing::debug!("status API: closing a connection from {peer}: too many open from that address");
                continue;
            };
            Some(address_slot)
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut router = router.clone();
            async move { router.call(request).await }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            tokio::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                () = tokio::time::sleep(limits.lifetime) => {
                    // Ends after the request in progress, if any.
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(limits: ApiLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        tokio::spawn(serve(listener, router, limits));
        addr
    }

    /// The answer to one `GET /` on `stream`, or "" if it was closed.
    async fn get(stream: &mut TcpStream) -> String {
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }

    /// Whether the server closed `stream` (it reads end-of-file).
    async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    }

    /// This machine's connections have slots of their own (none of the
    /// network's count against them), and a slot freed is taken again.
    #[tokio::test]
    async fn connections_past_the_limits_are_closed_and_slots_come_back() {
        let limits = ApiLimits { loopback_connections: 3, connections: 1, per_address: 1, ..ApiLimits::DEFAULT };
        let addr = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert!(get(&mut stream).await.ends_with("127.0.0.1"), "a request carries its peer");
            held.push(stream);
        }
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut fourth, Duration::from_secs(5)).await, "a fourth is closed");
        held.pop();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut again).await.starts_with("HTTP/1.1 200"), "a freed slot is taken again");
    }

    /// Other machines are counted per address (a whole IPv6 one: the
    /// machines of one home network share a /64).
    #[test]
    fn other_machines_are_counted_per_address() {
        let open = Arc::new(Mutex::new(HashMap::new()));
        let take = |ip: &str| AddressSlot::take(&open, counted_address(ip.parse().unwrap()), 2);
        let held = [take("192.168.1.9"), take("192.168.1.9")];
        assert!(held.iter().all(Option::is_some) && take("192.168.1.9").is_none());
        assert!(take("::ffff:192.168.1.9").is_none(), "an IPv4-mapped address is its IPv4 one");
        assert!(take("192.168.1.10").is_some(), "another address");
        let v6 = [take("2001:db8:0:1::1"), take("2001:db8:0:1::1")];
        assert!(v6.iter().all(Option::is_some) && take("2001:db8:0:1::1").is_none(), "one IPv6 address");
        assert!(take("2001:db8:0:1::2").is_some(), "another machine of the same /64");
        drop(held);
        let again = take("192.168.1.9");
        assert!(again.is_some(), "slots come back");
        assert_eq!(open.lock().unwrap().get(&counted_address("192.168.1.9".parse().unwrap())), Some(&1));
        drop((again, v6));
        assert!(open.lock().unwrap().is_empty(), "an address without connections is forgotten");
    }

    #[tokio::test]
    async fn a_client_that_sends_no_whole_headers_is_dropped() {
        let limits = ApiLimits { header_timeout: Duration::from_millis(300), ..ApiLimits::DEFAULT };
        let addr = start(limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut silent, Duration::from_secs(3)).await, "headers never came");
        let mut trickling = TcpStream::connect(addr).await.unwrap();
        trickling.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(closed(&mut trickling, Duration::from_secs(3)).await, "headers never ended");
        // Kept alive after an answer, and then silent.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut idle).await.starts_with("HTTP/1.1 200"));
        assert!(closed(&mut idle, Duration::from_secs(3)).await, "an idle kept-alive connection");
    }

    #[tokio::test]
    async fn no_connection_outlives_its_lifetime() {
        let limits = ApiLimits { lifetime: Duration::from_millis(600), ..ApiLimits::DEFAULT };
        let addr = start(limits).await;
        // A keep-alive client that keeps asking is let go at its lifetime.
        let mut busy = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if !get(&mut busy).await.starts_with("HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "a connection outlived its lifetime");
    }
}
