//! How soon the pool session asks for the next job after an answer.
//!
//! A long-poll the pool held until its job changed is followed at once: a
//! new block must reach the devices without delay, or they hash stale work.
//! What is paced is a pool (or a bridge in front of one) that answers at
//! once: with the job already being mined (one past its long-poll limit),
//! or with a fresh job id for every request, which would otherwise be asked
//! (and restart every device) as fast as the network allows. Answers that
//! came back at once spend from a small burst allowance that refills at one
//! a second, so a few quick blocks in a row (a devnet, a retarget) still
//! switch promptly while a churning pool settles at one request a second.
//! Time is passed in, so the rule has tests that do not sleep.

use std::time::{Duration, Instant};

/// A pool answering a long-poll with the job already being mined is asked
/// again at most this often, or the long-poll's wait where that is shorter.
pub(crate) const MIN_JOB_POLL: Duration = Duration::from_secs(5);
/// An answer sooner than this after asking counts as "at once": the pool
/// did not hold the request waiting for a change.
pub(crate) const HELD: Duration = Duration::from_millis(500);
/// New jobs answered at once that may follow each other without a wait.
const BURST: f64 = 5.0;
/// ...and how fast that allowance comes back, per second.
const REFILL_PER_SEC: f64 = 1.0;

/// The allowance for new jobs answered at once.
#[derive(Debug, Clone)]
pub(crate) struct JobPace {
    /// Quick new jobs still allowed without a wait; below zero, a debt
    /// that the next wait pays off.
    credit: f64,
    updated: Instant,
}

impl JobPace {
    pub(crate) fn new(now: Instant) -> Self {
        JobPace { credit: BURST, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.credit = (self.credit + elapsed * REFILL_PER_SEC).min(BURST);
        self.updated = self.updated.max(now);
    }

    /// A new job came back `answered_in` after asking, at `now`: the wait
    /// before the next request.
    pub(crate) fn after_new_job(&mut self, now: Instant, answered_in: Duration) -> Duration {
        self.refill(now);
        if answered_in >= HELD {
            return Duration::ZERO;
        }
        self.credit -= 1.0;
        if self.credit >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.credit / REFILL_PER_SEC)
        }
    }

    /// The job being mined came back `answered_in` after a request that
    /// asked the pool to hold it up to `long_poll`: the wait before the next.
    pub(crate) fn after_same_job(long_poll: Duration, answered_in: Duration) -> Duration {
        MIN_JOB_POLL.min(long_poll).saturating_sub(answered_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// (time of the answer in ms from the start, how long it took in ms,
    /// the wait expected before the next request in ms).
    fn check(answers: &[(u64, u64, u64)]) {
        let start = Instant::now();
        let mut pace = JobPace::new(start);
        for (i, &(at, took, wait)) in answers.iter().enumerate() {
            let got = pace.after_new_job(start + ms(at), ms(took)).as_secs_f64() * 1000.0;
            // (Within a millisecond: the allowance is a float.)
            assert!((got - wait as f64).abs() < 1.0, "answer {i} at {at} ms (took {took} ms): waits {got} ms");
        }
    }

    #[test]
    fn held_long_polls_are_followed_at_once_however_often() {
        // Blocks every 0.6 s, each answering a held long-poll.
        check(&(1..=20).map(|i| (i * 600, 600, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn an_answer_counts_as_held_from_half_a_second() {
        // The burst spent at once; then just under the bound costs a wait,
        // at the bound costs nothing.
        check(&[(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 499, 1000), (1000, 500, 0)]);
    }

    #[test]
    fn a_few_quick_jobs_in_a_row_are_not_delayed() {
        // Start-up, a vardiff refresh, and three blocks found just after asking.
        check(&[(0, 5, 0), (10, 5, 0), (20, 5, 0), (30, 5, 0), (40, 5, 0)]);
    }

    #[test]
    fn a_pool_with_a_new_job_for_every_request_settles_at_one_a_second() {
        let start = Instant::now();
        let mut pace = JobPace::new(start);
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..30 {
            now += ms(10);
            let wait = pace.after_new_job(now, ms(10));
            waits.push(wait);
            now += wait;
        }
        assert!(waits[..5].iter().all(|w| w.is_zero()), "the burst first: {waits:?}");
        // Then about a second a request (less the 10 ms each answer took).
        for wait in &waits[6..] {
            assert!((ms(980)..=ms(1000)).contains(wait), "{waits:?}");
        }
        let total = now - start;
        assert!(total >= Duration::from_secs(24) && total <= Duration::from_secs(26), "{total:?}");
    }

    #[test]
    fn the_allowance_comes_back_with_time_but_no_further_than_the_burst() {
        // Spend the burst, then a quiet minute: five quick ones again, not sixty.
        let mut answers: Vec<(u64, u64, u64)> = (0..5).map(|i| (i, 1, 0)).collect();
        answers.extend((0..5).map(|i| (60_000 + i, 1, 0)));
        answers.push((60_005, 1, 995));
        check(&answers);
    }

    #[test]
    fn a_clock_that_seems_to_go_back_refills_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut pace = JobPace::new(start);
        for _ in 0..5 {
            assert_eq!(pace.after_new_job(start, ms(1)), Duration::ZERO);
        }
        assert_eq!(pace.after_new_job(start - Duration::from_secs(5), ms(1)), Duration::from_secs(1));
    }

    #[test]
    fn the_job_being_mined_is_asked_again_after_five_seconds_or_the_long_poll() {
        for (long_poll, took, wait) in [
            (30_000, 0, 5_000), // a pool past its long-poll limit answers at once
            (30_000, 4_000, 1_000),
            (30_000, 30_000, 0), // held the whole long-poll: ask again at once
            (2_000, 100, 1_900), // a shorter long-poll is the bound
        ] {
            assert_eq!(JobPace::after_same_job(ms(long_poll), ms(took)), ms(wait), "{long_poll} {took}");
        }
    }
}
