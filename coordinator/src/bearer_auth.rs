//! Bearer credentials: reading `Authorization: Bearer <token>`, comparing
//! tokens without leaking their content or length through timing, and
//! making a guess at the operator's tokens (admin, node) cost time.
//!
//! A source that presents a wrong admin or node token draws on a bucket of
//! [`GUESSES`], refilled at one every [`GUESS_REFILL_SECS`]; while its
//! bucket is empty, what it presents is not even compared (429
//! `rate_limited`), so no token is found by trying at line rate, however
//! short. A source is what `client_source` counts (an IPv4 address, an IPv6
//! /64); each IPv6 /48 also has a bucket of [`SITE_SHARE`] sources' worth,
//! which its /64s draw on too. Sources that never guess wrong are never
//! tracked. The check, the comparison and the count are one step under one
//! lock, so guesses sent at once cannot slip past the count. Past
//! [`MAX_GUESSERS`] tracked, the most rested one is forgotten for a newcomer
//! (a guesser with many addresses gains a few guesses; no one is locked
//! out). Time is the process's monotonic clock: a step of the wall clock
//! neither frees nor holds anyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;
use crate::client_source::CountedNetwork;
use crate::pool::token_bucket::TokenBucket;

/// Wrong credentials a source may present before it must wait.
pub(crate) const GUESSES: f64 = 10.0;
/// One more wrong credential allowed every this many seconds.
pub(crate) const GUESS_REFILL_SECS: f64 = 6.0;
/// What an IPv6 /48 may guess, in sources' worth.
const SITE_SHARE: f64 = crate::client_source::SITE_SOURCES as f64;
/// Guessers (sources and sites) tracked at once: about 100 bytes each.
const MAX_GUESSERS: usize = 100_000;
/// Guessers looked at to choose the one forgotten when the table is full.
const EVICTION_SAMPLE: usize = 64;
/// How far into the table a sample may start.
const EVICTION_WINDOW: usize = 4096;
/// Rested guessers (full buckets) are forgotten this often.
const PRUNE_EVERY_MS: u64 = 60_000;

/// Who a wrong guess is counted against.
type Guesser = CountedNetwork;

/// Wrong credentials per source: see the module's doc.
pub(crate) struct CredentialGuesses {
    epoch: Instant,
    table: Mutex<GuessTable>,
}

#[derive(Default)]
struct GuessTable {
    buckets: HashMap<Guesser, TokenBucket>,
    pruned_at_ms: u64,
}

impl Default for CredentialGuesses {
    fn default() -> Self {
        CredentialGuesses { epoch: Instant::now(), table: Mutex::default() }
    }
}

/// Who `source` is for wrong guesses: itself (as `client_source` counts
/// it), and for IPv6 its /48.
fn guessers(source: IpAddr) -> (Guesser, Option<Guesser>) {
    CountedNetwork::of(source)
}

impl CredentialGuesses {
    /// Milliseconds on this limiter's clock (monotonic, from its start).
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Checks the bearer token of `headers` against `expected` (any of
    /// them), for a request from `source` (`None`: untracked, in-process),
    /// at `now_ms` ([`Self::now_ms`]). `what` names the credential in the
    /// answers.
    pub(crate) fn check(
        &self,
        source: Option<IpAddr>,
        headers: &HeaderMap,
        expected: &[&str],
        what: &str,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let given =
            bearer(headers).ok_or_else(|| ApiError::unauthorized(format!("missing Authorization: Bearer <{what}>")))?;
        let right = || expected.iter().any(|expected| tokens_match(given, expected));
        let Some(source) = source else {
            return if right() { Ok(()) } else { Err(ApiError::forbidden(format!("wrong {what}"))) };
        };
        let (source, site) = guessers(source);
        let mut table = self.table.lock().expect("credential guesses lock");
        for guesser in [Some(source), site].into_iter().flatten() {
            if let Some(Err(secs)) = table.buckets.get(&guesser).map(|bucket| bucket.has_token(now_ms)) {
                let whose = match guesser {
                    Guesser::Source(_) => "this address",
                    Guesser::Site(_) => "this address's network (its IPv6 /48)",
                };
                return Err(ApiError::retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many wrong credentials from {whose}; retry in {secs}s"),
                    secs,
                ));
            }
        }
        if right() {
            return Ok(());
        }
        if now_ms.saturating_sub(table.pruned_at_ms) >= PRUNE_EVERY_MS {
            table.pruned_at_ms = now_ms;
            table.buckets.retain(|_, bucket| !bucket.is_full(now_ms));
        }
        for (guesser, share) in [(Some(source), 1.0), (site, SITE_SHARE)] {
            let Some(guesser) = guesser else { continue };
            if table.buckets.len() >= MAX_GUESSERS && !table.buckets.contains_key(&guesser) {
                Self::forget_the_most_rested(&mut table.buckets, [Some(source), site], now_ms);
            }
            let bucket = table
                .buckets
                .entry(guesser)
                .or_insert_with(|| TokenBucket::new(GUESSES * share, share / GUESS_REFILL_SECS, now_ms));
            // (Checked above: a token is there.)
            let _ = bucket.try_take(now_ms);
        }
        Err(ApiError::forbidden(format!("wrong {what}")))
    }

    /// Makes room: of a sample taken at a random place in the table, the
    /// guesser closest to a full bucket (the least owed), never one of the
    /// request's own (`keep`).
    fn forget_the_most_rested(table: &mut HashMap<Guesser, TokenBucket>, keep: [Option<Guesser>; 2], now_ms: u64) {
        let mut offset = [0u8; 4];
        // (No randomness: the start of the table, still a sample.)
        let offset = getrandom::fill(&mut offset).map_or(0, |()| u32::from_le_bytes(offset) as usize);
        // (Bounded: skipping costs a step per entry, under the lock.)
        let skip = offset % table.len().saturating_sub(EVICTION_SAMPLE).clamp(1, EVICTION_WINDOW);
        let most_rested = table
            .iter()
            .skip(skip)
            .filter(|(guesser, _)| !keep.contains(&Some(**guesser)))
            .take(EVICTION_SAMPLE)
            .max_by(|a, b| a.1.fullness(now_ms).total_cmp(&b.1.fullness(now_ms)))
            .map(|(guesser, _)| *guesser);
        if let Some(guesser) = most_rested {
            table.remove(&guesser);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().expect("credential guesses lock").buckets.len()
    }
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Whether `given` equals `expected`, in constant time (digests are
/// compared, so neither content nor length leaks).
pub(crate) fn tokens_match(given: &str, expected: &str) -> bool {
    let (a, b) = (blake3::hash(given.as_bytes()), blake3::hash(expected.as_bytes()));
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn a_guesser_waits_and_is_not_even_compared_meanwhile() {
        let guesses = CredentialGuesses::default();
        let (guesser, other): (IpAddr, IpAddr) = ("203.0.113.7".parse().unwrap(), "198.51.100.1".parse().unwrap());
        let status = |source, token, now| {
            guesses
                .check(Some(source), &with_token(token), &["right-token"], "admin token", now)
                .err()
                .map(|e| e.status)
        };
        for _ in 0..GUESSES as usize {
            assert_eq!(status(guesser, "wrong", 0), Some(StatusCode::FORBIDDEN));
        }
        assert_eq!(status(guesser, "wrong", 0), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(status(guesser, "right-token", 0), Some(StatusCode::TOO_MANY_REQUESTS), "not even compared");
        assert_eq!(status(other, "right-token", 0), None, "another source is not held");
        let refill = (GUESS_REFILL_SECS * 1000.0) as u64;
        assert_eq!(status(guesser, "right-token", refill), None, "one more try after the refill");
        assert_eq!(status(guesser, "wrong", refill), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(guesser, "wrong", refill), Some(StatusCode::TOO_MANY_REQUESTS));
        // An IPv6 source is its /64, and the /64s of one /48 share 16
        // sources' worth; no credential is no guess.
        let v6 = |n: u16| -> IpAddr { format!("2001:db8:5:{n:x}::1").parse().unwrap() };
        let held = |n| status(v6(n), "wrong", 0) == Some(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!((0..20).filter(|_| !held(0)).count(), 10, "one /64");
        assert_eq!(status("2001:db8:5:0::99".parse().unwrap(), "right-token", 0), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(status(v6(1), "right-token", 0), None, "another /64 of the /48");
        let wrong_before_the_site_holds = (1..100).map(|n| (0..10).filter(|_| !held(n)).count()).sum::<usize>();
        assert_eq!(wrong_before_the_site_holds + 10, 160, "the /48: 16 sources' worth");
        assert_eq!(status(v6(500), "right-token", 0), Some(StatusCode::TOO_MANY_REQUESTS), "a fresh /64 of it");
        let none = guesses.check(Some(other), &HeaderMap::new(), &["right-token"], "admin token", 0);
        assert_eq!(none.unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(status(other, "right-token", 0), None);
    }

    /// However many addresses guess, the table stays bounded and no
    /// newcomer is refused for want of room: the most rested is forgotten.
    #[test]
    fn a_full_table_forgets_the_most_rested_and_locks_no_one_out() {
        let guesses = CredentialGuesses::default();
        let wrong = with_token("wrong");
        for n in 0..MAX_GUESSERS as u32 {
            let source = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let answer = guesses.check(Some(source), &wrong, &["right-token"], "admin token", 0);
            assert_eq!(answer.unwrap_err().status, StatusCode::FORBIDDEN);
        }
        assert_eq!(guesses.tracked(), MAX_GUESSERS);
        let newcomer: IpAddr = "192.0.2.1".parse().unwrap();
        let right = guesses.check(Some(newcomer), &with_token("right-token"), &["right-token"], "admin token", 0);
        assert!(right.is_ok(), "{right:?}");
        let answer = guesses.check(Some(newcomer), &wrong, &["right-token"], "admin token", 0);
        assert_eq!(answer.unwrap_err().status, StatusCode::FORBIDDEN, "counted, not refused");
        assert_eq!(guesses.tracked(), MAX_GUESSERS);
        // An IPv6 newcomer takes two places (its /64 and its /48); making
        // the second never forgets the first, and it is held as anyone.
        let v6: IpAddr = "2001:db8:9::1".parse().unwrap();
        let held = (0..20)
            .filter(|_| {
                let answer = guesses.check(Some(v6), &wrong, &["right-token"], "admin token", 0);
                answer.unwrap_err().status == StatusCode::TOO_MANY_REQUESTS
            })
            .count();
        assert_eq!(held, 10, "10 wrong, then held");
        assert_eq!(guesses.tracked(), MAX_GUESSERS);
        // Rested guessers are forgotten once a minute.
        let _ = guesses.check(Some(newcomer), &wrong, &["right-token"], "admin token", 600_000);
        assert_eq!(guesses.tracked(), 1, "only the newcomer, who just guessed");
    }

    #[test]
    fn bearer_tokens_are_read_and_compared() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd") && !tokens_match("ab", "abc"));
    }
}
