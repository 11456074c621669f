//! A bound on the storage reads that anyone may start.
//!
//! The public routes (blocks, balances, payouts, metrics) and a bearer token
//! the pool has not seen since it started each read the store. With
//! PostgreSQL they take connections from the pool that also serves rewards,
//! payouts and registrations, so a flood of them must not be able to take all
//! of it. At most `limit` such reads run at once: the public lists (blocks,
//! balances, payouts) answer `503 busy` past it (they are cheap to retry,
//! and nothing is lost), metrics scrapes wait their turn, and token lookups
//! wait theirs, for up to 2 s (a miner back after a
//! restart must get in; a flood of made-up tokens must not hold it long).
//! Shares themselves never wait here: their appends and duplicate checks use
//! connections of their own (`PgStore`'s share path).
//!
//! What those reads answer is bounded too, once encoded: the bytes of
//! public answers not yet written to their clients ([`AnswerBytes`]). A
//! client that asks for a long list and reads slowly (or not at all, until
//! `write_deadline` closes it) holds its answer's share of the budget, so
//! many of them cannot fill the server's memory; past the budget, lists
//! answer `503 busy`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::PoolError;

/// Permits for reads started by unauthenticated requests.
#[derive(Debug, Clone)]
pub(crate) struct PublicReads {
    permits: Arc<Semaphore>,
}

/// Held while a public read runs.
#[must_use = "the read counts only while this is held"]
pub(crate) struct PublicRead {
    _permit: OwnedSemaphorePermit,
}

impl PublicReads {
    pub(crate) fn new(limit: usize) -> Self {
        PublicReads { permits: Arc::new(Semaphore::new(limit.max(1))) }
    }

    /// A permit now, or `Busy` if `limit` reads are running.
    pub(crate) fn try_begin(&self) -> Result<PublicRead, PoolError> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(PublicRead { _permit: permit }),
            Err(_) => Err(PoolError::Busy("too many reads in flight; retry shortly")),
        }
    }

    /// A permit once one is free (the caller's request timeout bounds the wait).
    pub(crate) async fn begin(&self) -> PublicRead {
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        // Never closed: the semaphore lives as long as `self`.
        PublicRead { _permit: permit.expect("public read permits are never closed") }
    }
}

/// The budget of public answers' bytes in flight, a permit per KiB.
#[derive(Debug, Clone)]
pub(crate) struct AnswerBytes {
    kib: Arc<Semaphore>,
}

/// An encoded answer and its share of the budget, given back when the last
/// `Bytes` of it is dropped: once hyper has written it, or the connection
/// is gone.
struct HeldAnswer {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for HeldAnswer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AnswerBytes {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        AnswerBytes { kib: Arc::new(Semaphore::new((budget_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS))) }
    }

    /// `Busy` when the budget is spent, before a read that could not be sent
    /// is even started (an answer of any size needs at least a KiB).
    pub(crate) fn check_room(&self) -> Result<(), PoolError> {
        match self.kib.available_permits() {
            0 => Err(PoolError::Busy("too many answers being sent; retry shortly")),
            _ => Ok(()),
        }
    }

    /// `bytes` as a body holding its share of the budget, or `Busy` while
    /// the answers being written hold too much of it.
    pub(crate) fn hold(&self, bytes: Vec<u8>) -> Result<Bytes, PoolError> {
        let kib = u32::try_from(bytes.len().div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        match Arc::clone(&self.kib).try_acquire_many_owned(kib) {
            Ok(permit) => Ok(Bytes::from_owner(HeldAnswer { bytes, _permit: permit })),
            Err(_) => Err(PoolError::Busy("too many answers being sent; retry shortly")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer holds its KiB of the budget while any part of it is still
    /// to be written (hyper holds slices of it), and gives them back after;
    /// an answer past what is left, or past the whole budget, is busy.
    #[test]
    fn answers_hold_their_bytes_of_the_budget_until_written() {
        let budget = AnswerBytes::new(4 * 1024);
        let first = budget.hold(vec![1; 3 * 1024]).unwrap();
        assert!(matches!(budget.hold(vec![2; 1025]), Err(PoolError::Busy(_))), "2 KiB past the 1 left");
        let tail = first.slice(2048..);
        drop(first);
        assert!(matches!(budget.hold(vec![2; 1025]), Err(PoolError::Busy(_))), "a slice is still being written");
        let small = budget.hold(vec![3; 10]).expect("a KiB is left");
        assert_eq!(&small[..], &[3; 10]);
        drop((tail, small));
        assert!(budget.hold(vec![2; 4 * 1024]).is_ok(), "all given back");
        assert!(matches!(budget.hold(vec![0; 4 * 1024 + 1]), Err(PoolError::Busy(_))), "past the whole budget");
        let all = budget.hold(vec![0; 4 * 1024]).unwrap();
        assert!(matches!(budget.check_room(), Err(PoolError::Busy(_))), "spent: shed before the read");
        drop(all);
        assert!(budget.check_room().is_ok());
    }

    #[test]
    fn past_the_limit_public_reads_are_refused_until_one_ends() {
        let reads = PublicReads::new(2);
        let first = reads.try_begin().unwrap();
        let _second = reads.try_begin().unwrap();
        assert!(matches!(reads.try_begin(), Err(PoolError::Busy(_))));
        drop(first);
        assert!(reads.try_begin().is_ok());
    }

    #[tokio::test]
    async fn a_token_lookup_waits_for_a_free_permit_and_goes_before_new_reads() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let reads = PublicReads::new(1);
        let held = reads.try_begin().unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let waiting = tokio::spawn({
            let (reads, got) = (reads.clone(), got.clone());
            async move {
                let read = reads.begin().await;
                got.store(true, Ordering::SeqCst);
                // Held a moment: a read started now is refused meanwhile.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                drop(read);
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!got.load(Ordering::SeqCst), "waited while the permit was held");
        drop(held);
        // The freed permit went to the waiter, not to whoever asks next.
        assert!(reads.try_begin().is_err());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert!(reads.try_begin().is_ok());
    }
}
