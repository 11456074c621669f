//! Slots per source address (open connections; held long-polls, through
//! the pool): one client (or one address) cannot hold every slot the
//! server has, and a few cannot together:
//! once slots run short, a source that already holds [`FAIR_SHARE`] gets no
//! more, and the rest stay for sources holding few (a miner needs one or
//! two).
//!
//! An IPv6 source is its /64; the /48 holding it (one site's allocation,
//! given away free by tunnel brokers) is counted too, and may hold
//! [`SITE_SOURCES`] times a source's slots: one holder cannot count as
//! 65,536 sources.
//!
//! A refused connection is told why ([`RefusalAnswers`]): its first request
//! gets `503 too_many_connections` with a `Retry-After`, so a miner backs
//! off (or fails over) knowing the cause instead of seeing the pool hang up.
//! Those answers have slots of their own, few (in all and per source) and
//! short-lived (a client that does not send its request within 2 s is
//! closed): past them a refused connection is closed at once, so what
//! refusals may hold is bounded, on top of `max_connections`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::api_error::ApiError;
use crate::client_source::{CountedNetwork, SITE_SOURCES};

/// Connections any source may open even when slots run short.
pub(crate) const FAIR_SHARE: usize = 16;

type OpenCounts = Arc<Mutex<HashMap<CountedNetwork, usize>>>;

/// Counts open connections by source (and IPv6 site); a slot is given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionsPerSource {
    limit: usize,
    /// What a source may hold once slots run short.
    fair_share: usize,
    open: OpenCounts,
}

/// One open connection of a source; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    source: CountedNetwork,
    site: Option<CountedNetwork>,
    open: OpenCounts,
}

impl ConnectionsPerSource {
    pub(crate) fn new(limit: usize) -> Self {
        Self::with_fair_share(limit, FAIR_SHARE)
    }

    /// With another share than [`FAIR_SHARE`] (fewer slots in all).
    pub(crate) fn with_fair_share(limit: usize, fair_share: usize) -> Self {
        ConnectionsPerSource { limit: limit.max(1), fair_share: fair_share.max(1), open: Arc::default() }
    }

    /// A slot for one more connection from `source`, unless it (or its
    /// IPv6 site, at [`SITE_SOURCES`] times the figures) has `limit` open,
    /// or `scarce` (few of the server's slots are free) and it holds its
    /// fair share already.
    pub(crate) fn try_acquire(&self, source: IpAddr, scarce: bool) -> Option<SourceSlot> {
        let (source, site) = CountedNetwork::of(source);
        let mut open = self.open.lock().expect("connections lock");
        let full = |network: CountedNetwork, times: usize| {
            let count = open.get(&network).copied().unwrap_or(0);
            count >= self.limit.saturating_mul(times) || (scarce && count >= self.fair_share.saturating_mul(times))
        };
        if full(source, 1) || site.is_some_and(|site| full(site, SITE_SOURCES)) {
            return None;
        }
        for network in std::iter::once(source).chain(site) {
            *open.entry(network).or_insert(0) += 1;
        }
        Some(SourceSlot { source, site, open: self.open.clone() })
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
        for network in std::iter::once(self.source).chain(self.site) {
            if let Some(count) = open.get_mut(&network) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&network);
                }
            }
        }
    }
}

/// Of the refused connections answered at once, those from one source: one
/// address cannot take every answer slot.
const REFUSAL_ANSWERS_PER_SOURCE: usize = 4;
/// Refused connections answered at once, at most; more are just closed. An
/// IPv6 site (a /48: [`SITE_SOURCES`] sources' worth) holds at most a
/// quarter of them.
pub(crate) const REFUSAL_ANSWERS: usize = 4 * SITE_SOURCES * REFUSAL_ANSWERS_PER_SOURCE;
/// A refused request's body is read (so that closing after the answer does
/// not reset the connection under it), up to what any route takes and
/// for this long.
const REFUSAL_BODY_BYTES: usize = crate::server::MAX_BODY_BYTES;
const REFUSAL_BODY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a refused connection has to send its request's head.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long answering one refused connection may take in all.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(5);
/// What a refused client is asked to wait before trying again.
pub(crate) const REFUSAL_RETRY_AFTER_SECS: u64 = 5;

/// Answers refused connections `503 too_many_connections` and closes them,
/// a bounded number at a time.
#[derive(Debug)]
pub(crate) struct RefusalAnswers {
    slots: Arc<Semaphore>,
    per_source: ConnectionsPerSource,
}

impl RefusalAnswers {
    pub(crate) fn new(slots: usize) -> Self {
        let per_source = ConnectionsPerSource::with_fair_share(REFUSAL_ANSWERS_PER_SOURCE, REFUSAL_ANSWERS_PER_SOURCE);
        RefusalAnswers { slots: Arc::new(Semaphore::new(slots)), per_source }
    }

    /// Answers `stream`'s first request with the refusal (then closes it),
    /// or closes it now when the answer slots (in all, or `source`'s) are
    /// taken. Returns at once.
    pub(crate) fn answer(&self, stream: TcpStream, peer: SocketAddr, source: IpAddr) {
        let slots = self.per_source.try_acquire(source, false).zip(self.slots.clone().try_acquire_owned().ok());
        let Some(slots) = slots else {
            tracing::debug!("closing a connection from {peer}: too many open from that address");
            return;
        };
        tracing::debug!("refusing a connection from {peer}: too many open from that address");
        let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| async {
            let body = axum::body::Body::new(request.into_body());
            let _ = tokio::time::timeout(REFUSAL_BODY_TIMEOUT, axum::body::to_bytes(body, REFUSAL_BODY_BYTES)).await;
            let message = "too many connections open from your address; close some, or retry shortly";
            let refusal = ApiError::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                message,
                REFUSAL_RETRY_AFTER_SECS,
            );
            Ok::<_, Infallible>(refusal.into_response())
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(REFUSAL_HEADER_TIMEOUT).keep_alive(false);
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _slots = slots;
            // A client that sends nothing (or trickles) is closed unanswered.
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, connection).await;
        });
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

    /// The /64s of one IPv6 /48 share the site's slots (16 times a
    /// source's), in all and once slots run short; another site's are its own.
    #[test]
    fn the_sources_of_one_ipv6_site_are_capped_together() {
        let limits = ConnectionsPerSource::with_fair_share(2, 1);
        let in_site = |site: u16, n: u16| -> IpAddr { format!("2001:db8:{site:x}:{n:x}::1").parse().unwrap() };
        let mut held = Vec::new();
        for n in 0..SITE_SOURCES as u16 {
            held.push(limits.try_acquire(in_site(1, n), false).expect("a source's own slots"));
            held.push(limits.try_acquire(in_site(1, n), false).expect("a source's own slots"));
            assert!(limits.try_acquire(in_site(1, n), false).is_none(), "past the source's limit");
        }
        assert!(limits.try_acquire(in_site(1, 999), false).is_none(), "past the site's limit, from a fresh /64");
        assert!(limits.try_acquire(in_site(2, 0), false).is_some(), "another site");
        held.truncate(SITE_SOURCES);
        assert!(
            limits.try_acquire(in_site(1, 999), true).is_none(),
            "the site at its fair share while slots are short"
        );
        held.pop();
        assert!(limits.try_acquire(in_site(1, 999), true).is_some(), "below it again");
        let v4: Vec<_> = (0..40).map(|n| limits.try_acquire(format!("10.0.{n}.1").parse().unwrap(), true)).collect();
        assert!(v4.iter().all(Option::is_some), "IPv4 sources have no site");
        drop((held, v4));
        assert_eq!(limits.sources(), 0, "nothing open, nothing kept");
    }

    /// Over real loopback sockets: a refused client that asks gets the
    /// reason and a Retry-After, after a body of many reads; once the answer
    /// slots are taken, in all or by one source, the next is closed at once,
    /// unanswered. (Whether the body was read cannot be seen here: a Linux
    /// client keeps an answer it received even when a reset follows, which
    /// Windows' does not.)
    #[tokio::test]
    async fn refused_connections_are_told_why_while_answer_slots_last() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let refused = async |refusals: &RefusalAnswers, source: IpAddr| {
            let client = TcpStream::connect(addr).await.unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            refusals.answer(stream, peer, source);
            client
        };
        let closed_at_once = async |mut client: TcpStream| {
            let read = tokio::time::timeout(Duration::from_secs(1), client.read(&mut [0u8; 1])).await;
            matches!(read, Ok(Ok(0)) | Ok(Err(_)))
        };
        let answer_to = async |mut client: TcpStream, request: &[u8]| {
            client.write_all(request).await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer)).await.unwrap().unwrap();
            answer
        };

        let refusals = RefusalAnswers::new(1);
        let asking = refused(&refusals, a).await;
        // The one answer slot is held while the first client is answered.
        assert!(closed_at_once(refused(&refusals, b).await).await, "past the answer slots");
        // A body of many reads, behind its head.
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(60_000));
        let request =
            format!("POST /pool/share HTTP/1.1\r\nHost: pool\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let answer = answer_to(asking, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 5\r\n"), "{answer}");
        assert!(answer.contains(r#""error":"too_many_connections""#), "{answer}");
        // The slot is back once the answer is done.
        let answer = answer_to(refused(&refusals, b).await, b"GET /pool/stats HTTP/1.1\r\nHost: pool\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

        // One source holds at most its share of the slots.
        let refusals = RefusalAnswers::new(REFUSAL_ANSWERS);
        let mut held = Vec::new();
        for _ in 0..REFUSAL_ANSWERS_PER_SOURCE {
            held.push(refused(&refusals, a).await);
        }
        assert!(closed_at_once(refused(&refusals, a).await).await, "past one source's share");
        let answer = answer_to(refused(&refusals, b).await, b"GET / HTTP/1.1\r\nHost: pool\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "another source is still answered: {answer}");

        // One IPv6 site, from as many /64s as it likes, holds a quarter.
        let refusals = RefusalAnswers::new(REFUSAL_ANSWERS);
        let mut held = Vec::new();
        for n in 0..REFUSAL_ANSWERS / 4 {
            let source = format!("2001:db8:7:{:x}::1", n / REFUSAL_ANSWERS_PER_SOURCE).parse().unwrap();
            held.push(refused(&refusals, source).await);
        }
        let fresh_in_site = "2001:db8:7:ffff::1".parse().unwrap();
        assert!(closed_at_once(refused(&refusals, fresh_in_site).await).await, "past the site's share");
        let answer = answer_to(refused(&refusals, b).await, b"GET / HTTP/1.1\r\nHost: pool\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "a source outside the site is still answered: {answer}");
    }
}
