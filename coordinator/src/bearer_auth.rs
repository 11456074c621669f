//! Bearer credentials: reading `Authorization: Bearer <token>`, comparing
//! tokens without leaking their content or length through timing, and
//! making a guess at the operator's tokens (admin, node) cost time.
//!
//! A source that presents a wrong admin or node token draws on a bucket of
//! [`GUESSES`], refilled at one every [`GUESS_REFILL_SECS`]; while its
//! bucket is empty, what it presents is not even compared (429
//! `rate_limited`), so no token is found by trying at line rate, however
//! short. Sources that never guess wrong are never tracked. A source is its
//! IPv4 address or its IPv6 /48 (one holder's allocation).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;
use crate::pool::token_bucket::TokenBucket;

/// Wrong credentials a source may present before it must wait.
pub(crate) const GUESSES: f64 = 10.0;
/// One more wrong credential allowed every this many seconds.
pub(crate) const GUESS_REFILL_SECS: f64 = 6.0;
/// Sources with wrong guesses tracked at once; past it (idle ones pruned
/// first) new sources' credentials are refused for a while rather than
/// compared untracked.
const MAX_GUESSING_SOURCES: usize = 10_000;

/// Wrong credentials per source: see the module's doc.
#[derive(Default)]
pub(crate) struct CredentialGuesses {
    sources: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// What a source's wrong guesses are counted under.
fn guesser(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 80) - 1))),
        v4 => v4,
    }
}

impl CredentialGuesses {
    /// Checks the bearer token of `headers` against `expected` (any of
    /// them), for a request from `source` (`None`: untracked, in-process).
    /// `what` names the credential in the answers.
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
        let source = source.map(guesser);
        if let Some(source) = source {
            self.may_guess(source, now_ms).map_err(|secs| {
                ApiError::retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many wrong credentials from this address; retry in {secs}s"),
                    secs,
                )
            })?;
        }
        if expected.iter().any(|expected| tokens_match(given, expected)) {
            return Ok(());
        }
        if let Some(source) = source {
            self.guessed_wrong(source, now_ms);
        }
        Err(ApiError::forbidden(format!("wrong {what}")))
    }

    fn may_guess(&self, source: IpAddr, now_ms: u64) -> Result<(), u64> {
        let mut sources = self.sources.lock().expect("credential guesses lock");
        if let Some(bucket) = sources.get(&source) {
            return bucket.has_token(now_ms);
        }
        if sources.len() >= MAX_GUESSING_SOURCES {
            sources.retain(|_, bucket| !bucket.is_full(now_ms));
            if sources.len() >= MAX_GUESSING_SOURCES {
                return Err(GUESS_REFILL_SECS as u64);
            }
        }
        Ok(())
    }

    fn guessed_wrong(&self, source: IpAddr, now_ms: u64) {
        let mut sources = self.sources.lock().expect("credential guesses lock");
        if sources.len() >= MAX_GUESSING_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, bucket| !bucket.is_full(now_ms));
        }
        let bucket =
            sources.entry(source).or_insert_with(|| TokenBucket::new(GUESSES, 1.0 / GUESS_REFILL_SECS, now_ms));
        let _ = bucket.try_take(now_ms);
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
        // The /64s of one /48 are one guesser; no credential is no guess.
        let v6 = |n: u16| -> IpAddr { format!("2001:db8:5:{n:x}::1").parse().unwrap() };
        for n in 0..GUESSES as u16 {
            assert_eq!(status(v6(n), "wrong", 0), Some(StatusCode::FORBIDDEN));
        }
        assert_eq!(status(v6(99), "wrong", 0), Some(StatusCode::TOO_MANY_REQUESTS));
        let none = guesses.check(Some(other), &HeaderMap::new(), &["right-token"], "admin token", 0);
        assert_eq!(none.unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(status(other, "right-token", 0), None);
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
