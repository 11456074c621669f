//! How long to wait before asking a server again, pool and solo mode
//! alike: exponential backoff with jitter after failures, a server's
//! `Retry-After` (never under a second), and the tries a found block gets.

use std::time::Duration;

use super::pool_client::ApiFailure;

/// A factor in [0.75, 1.25) from the OS's randomness: miners that lost
/// their pool together must not all come back in the same instant.
fn jitter() -> f64 {
    let mut random = [0u8; 2];
    // (No randomness is no reason to stop: the middle of the range.)
    let draw = getrandom::fill(&mut random).map_or(500, |()| u16::from_le_bytes(random) % 1000);
    0.75 + f64::from(draw) / 2000.0
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s ... up to 30 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = (0.5 * 2f64.powi(failures.min(8) as i32)).min(30.0);
    Duration::from_secs_f64(base * jitter())
}

/// The shortest wait a pool's `Retry-After` (or a ban's length) is taken to
/// mean: `0` from a broken or hostile pool must not make every rig ask
/// again in a tight loop.
pub(crate) const MIN_RETRY_WAIT: Duration = Duration::from_secs(1);

/// The wait a pool's `Retry-After: secs` asks for, at least [`MIN_RETRY_WAIT`],
/// and up to a quarter more: rigs refused together (one address over the
/// pool's connection limit, a pool restarting) must not all ask again in
/// the same instant.
pub(crate) fn retry_after(secs: u64) -> Duration {
    Duration::from_secs(secs).max(MIN_RETRY_WAIT).mul_f64(1.0 + (jitter() - 0.75) / 2.0)
}

/// Tries at sending a found block to a pool after the first, while its
/// height is current (then it waits with the other shares for the pool's
/// next answer). Solo blocks are tried for as long as their template is.
pub(crate) const MAX_BLOCK_SUBMIT_RETRIES: u32 = 8;

/// How long to wait before sending a block again after `failure`, the
/// `failures`th in a row: the Retry-After a busy server named, else backoff.
pub(crate) fn wait_before_retry(failure: &ApiFailure, failures: u32) -> Duration {
    match failure {
        ApiFailure::RetryAfter { retry_after_secs, .. } => retry_after(*retry_after_secs),
        _ => backoff(failures),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits a server asked for are never shorter, and spread out: a
    /// hundred rigs refused together do not come back together.
    #[test]
    fn a_retry_after_is_honoured_and_spread() {
        let waits: Vec<Duration> = (0..100).map(|_| retry_after(5)).collect();
        assert!(waits.iter().all(|w| (Duration::from_secs(5)..Duration::from_secs_f64(6.25)).contains(w)), "{waits:?}");
        let distinct: std::collections::HashSet<_> = waits.iter().map(|w| w.as_millis() / 50).collect();
        assert!(distinct.len() > 10, "spread over the quarter: {waits:?}");
        assert!(retry_after(0) >= MIN_RETRY_WAIT);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(650));
        assert!(backoff(3) >= Duration::from_secs(3) && backoff(3) <= Duration::from_secs(5));
        assert!(backoff(50) <= Duration::from_secs_f64(30.0 * 1.25));
    }

    #[test]
    fn a_block_waits_what_a_busy_server_asks_else_backs_off() {
        let busy = ApiFailure::RetryAfter { retry_after_secs: 0, message: String::new(), maybe_processed: false };
        assert!((MIN_RETRY_WAIT..MIN_RETRY_WAIT.mul_f64(1.25)).contains(&wait_before_retry(&busy, 5)));
        let busy = ApiFailure::RetryAfter { retry_after_secs: 9, message: String::new(), maybe_processed: false };
        assert!((Duration::from_secs(9)..Duration::from_secs_f64(9.0 * 1.25)).contains(&wait_before_retry(&busy, 1)));
        let down = ApiFailure::Unavailable("503".into());
        assert!(wait_before_retry(&down, 0) <= Duration::from_millis(650));
    }
}
