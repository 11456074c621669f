//! Bearer credentials: reading `Authorization: Bearer <token>` and comparing
//! tokens without leaking their content or length through timing.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

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
