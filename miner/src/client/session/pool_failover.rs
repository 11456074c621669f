//! Which pool to mine at: failures counted on the pool in use and in a row
//! over the whole list ([`Failures`]), failover after
//! [`FAILURES_BEFORE_FAILOVER`] in a row with waits that grow with each round
//! of the list, bans and refusals remembered per pool (refused by every
//! pool, the session ends; banned by the rest, the soonest ban is waited
//! out, or with `--exit-on-ban` the session ends), and the failback check of
//! the primary pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::pool_client::ApiFailure;
use super::super::retry_policy::{backoff, retry_after};
use super::super::work_dispatch::Work;
use super::{PoolContext, SessionEnd};

/// Failures in a row on one pool before moving to the next.
const FAILURES_BEFORE_FAILOVER: u32 = 2;
/// The longest ban a pool's Retry-After is taken to mean (a year).
const MAX_BAN_SECS: u64 = 365 * 86_400;
/// The longest a miner banned by every pool waits before asking again
/// (plus up to a quarter): an operator may lift a ban early, a restarted
/// pool forget it.
const MAX_BAN_WAIT_SECS: u64 = 300;

/// Failures since a pool last answered with a job (while a long-poll has
/// failed there since one was answered: since one was).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Failures {
    /// In a row on the pool in use: [`FAILURES_BEFORE_FAILOVER`] move on.
    on_pool: u32,
    /// In a row on any pool: with every pool down, waits grow with each
    /// round of the failover list rather than staying near a second.
    streak: u32,
    /// The pool in use said 401 (it forgot the session, a restart) and was
    /// registered with again at once; a second 401 is a failure to wait on.
    registered_again: bool,
}

/// What to do after a pool was unavailable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    /// Ask the same pool again after the wait.
    Same(Duration),
    /// Move to the next pool, after the wait (none in the first round).
    Next(Duration),
}

impl Failures {
    /// Whole rounds of a failover list of `pools` that failed.
    fn rounds(&self, pools: usize) -> u32 {
        let pools = u32::try_from(pools.max(1)).unwrap_or(u32::MAX);
        self.streak / FAILURES_BEFORE_FAILOVER.saturating_mul(pools)
    }

    /// Counts one more failure of the pool in use (`asked`: its
    /// `Retry-After`), where another pool is there to move to or not.
    fn unavailable(&mut self, pools: usize, can_move: bool, asked: Option<u64>) -> Retry {
        self.streak = self.streak.saturating_add(1);
        self.on_pool = self.on_pool.saturating_add(1);
        let rounds = self.rounds(pools);
        if can_move && self.on_pool >= FAILURES_BEFORE_FAILOVER {
            self.on_pool = 0;
            return Retry::Next(if rounds == 0 { Duration::ZERO } else { backoff(rounds) });
        }
        // What the pool asked for is the least: a pool that keeps asking
        // (an address over its connection limit) is asked less and less often.
        let backoff = backoff(self.on_pool + rounds);
        Retry::Same(asked.map_or(backoff, |secs| retry_after(secs).max(backoff)))
    }
}
impl PoolContext {
    /// The pool after `pool` in the failover list that has neither refused
    /// this miner nor banned it (for a while yet), if any.
    fn next_usable(&self, pool: usize) -> Option<usize> {
        let count = self.pool_count();
        let now = Instant::now();
        let refused = self.refused.lock().expect("refused lock");
        let bans = self.banned_until.lock().expect("bans lock");
        (1..count)
            .map(|step| (pool + step) % count)
            .find(|&p| refused[p].is_none() && bans[p].is_none_or(|until| until <= now))
    }

    /// The ban with the most time left, among pools banning the miner now.
    fn longest_ban(&self) -> Option<SessionEnd> {
        let now = Instant::now();
        let bans = self.banned_until.lock().expect("bans lock");
        let (pool, until) = bans.iter().enumerate().filter_map(|(i, b)| b.map(|u| (i, u))).max_by_key(|&(_, u)| u)?;
        let secs = until.checked_duration_since(now)?.as_secs().max(1);
        drop(bans);
        Some(SessionEnd::Banned { url: self.pool(pool).url.clone(), secs })
    }

    fn refused_everywhere(&self) -> SessionEnd {
        let refused = self.refused.lock().expect("refused lock");
        let all: Vec<String> = refused.iter().flatten().cloned().collect();
        SessionEnd::Refused(format!("every pool refused this miner: {}", all.join("; ")))
    }

    /// The pool, not refusing the miner, whose ban ends first, and when.
    fn soonest_unban(&self) -> Option<(usize, Instant)> {
        let refused = self.refused.lock().expect("refused lock");
        let bans = self.banned_until.lock().expect("bans lock");
        bans.iter()
            .enumerate()
            .filter(|&(i, _)| refused[i].is_none())
            .filter_map(|(i, b)| b.map(|u| (i, u)))
            .min_by_key(|&(_, u)| u)
    }

    /// Banned by every pool that does not refuse the miner: ends the
    /// session with `--exit-on-ban` (exit code 4); otherwise stops hashing
    /// (its shares would be refused), waits for the soonest ban to end (5
    /// minutes at most, then asks again; or the owner's switch), and mines
    /// at that pool again.
    async fn wait_out_bans(&self) -> Result<(), SessionEnd> {
        if let Some(ban) = self.longest_ban().filter(|_| self.session.exit_on_ban) {
            return Err(ban);
        }
        // (Every pool banning it refuses it too: refused everywhere.)
        let Some((pool, until)) = self.soonest_unban() else { return Err(self.refused_everywhere()) };
        let left = until.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as u64;
        // (Rigs banned together, an address's, do not all ask in the same instant.)
        let wait = retry_after(left.min(MAX_BAN_WAIT_SECS));
        let url = self.pool(pool).url.clone();
        let asking = format!("banned by every pool; asking {url} again in {}s (its ban: {left}s left)", wait.as_secs());
        tracing::error!("{asking}; hashing stops meanwhile");
        self.dispatch.set_work(None);
        self.status.connection(|c| {
            c.connected = false;
            c.last_error = Some(asking);
            c.retry_in_secs = Some(wait.as_secs().max(1));
        });
        // Cut short by the owner's switch: to the pool asked for.
        if self.pause(wait).await {
            self.switch_to(pool, "asking again after its ban");
        }
        Ok(())
    }

    /// Reacts to a failure (for a 401, the caller has forgotten the token
    /// that got it); Err ends the session.
    pub(super) async fn on_failure(
        &self,
        pool: usize,
        failure: ApiFailure,
        failures: &mut Failures,
    ) -> Result<(), SessionEnd> {
        let url = self.pool(pool).url.clone();
        self.status.connection(|c| {
            c.connected = false;
            c.last_error = Some(failure.to_string());
        });
        let (asked, message) = match failure {
            // (The caller forgot the token that got it.) The pool forgot
            // the session (a restart): register again now; again and
            // again, it is a pool to wait for.
            ApiFailure::Unauthorized if !failures.registered_again => {
                failures.registered_again = true;
                return Ok(());
            }
            ApiFailure::Unauthorized => (None, "the pool keeps forgetting this worker".to_string()),
            ApiFailure::Banned { secs } => {
                // (Bounded: an absurd Retry-After must not overflow the clock;
                // at least a second, or a ban of 0 s would be a tight loop.)
                let secs = secs.clamp(1, MAX_BAN_SECS);
                self.banned_until.lock().expect("bans lock")[pool] = Some(Instant::now() + Duration::from_secs(secs));
                match self.next_usable(pool) {
                    Some(next) => {
                        failures.on_pool = 0;
                        self.switch_to(next, &format!("banned for {secs}s"));
                        return Ok(());
                    }
                    // Banned (or refused) everywhere.
                    None => return self.wait_out_bans().await,
                }
            }
            ApiFailure::Refused { reason, message } => {
                self.refused.lock().expect("refused lock")[pool] = Some(format!("{url}: {reason}: {message}"));
                match self.next_usable(pool) {
                    Some(next) => {
                        failures.on_pool = 0;
                        self.switch_to(next, &format!("refused: {reason}"));
                        return Ok(());
                    }
                    None => {
                        // Some pool banned the miner: that is what to wait out.
                        if self.soonest_unban().is_some() {
                            return self.wait_out_bans().await;
                        }
                        return Err(self.refused_everywhere());
                    }
                }
            }
            // A pool that keeps saying "later" (its chain is down, it is
            // stopped) is as good as down: the next pool may have work.
            ApiFailure::RetryAfter { retry_after_secs, message, .. } => (Some(retry_after_secs), message),
            ApiFailure::Unavailable(message) | ApiFailure::Unreachable(message) => (None, message),
        };
        let next = self.next_usable(pool);
        match (failures.unavailable(self.pool_count(), next.is_some(), asked), next) {
            (Retry::Next(wait), Some(next)) => {
                if !wait.is_zero() {
                    tracing::warn!("every pool failed; trying the next in {:.1}s", wait.as_secs_f64());
                    self.status.connection(|c| c.retry_in_secs = Some(wait.as_secs().max(1)));
                    self.pause(wait).await;
                }
                self.switch_to(next, &message);
            }
            (Retry::Same(wait), _) | (Retry::Next(wait), None) => {
                tracing::warn!("{url}: {message}; retrying in {:.1}s", wait.as_secs_f64());
                self.status.connection(|c| c.retry_in_secs = Some(wait.as_secs().max(1)));
                self.pause(wait).await;
            }
        }
        Ok(())
    }

    /// Whether the primary pool, not banning us, answers with work that can
    /// be mined (a failback check).
    pub(super) async fn primary_is_back(self: &Arc<Self>, primary: usize) -> bool {
        let banned = self.banned_until.lock().expect("bans lock")[primary].is_some_and(|u| u > Instant::now());
        // A primary that refused this miner (its wallet, its worker id) is
        // not asked again until the owner switches to it.
        let refused = self.refused.lock().expect("refused lock")[primary].is_some();
        // A registration there still under way (a silent primary takes its
        // whole timeout, past the check's bound) is not joined by another.
        let registering = self.registering.get(primary).is_some_and(|turn| turn.available_permits() == 0);
        if banned || refused || registering {
            return false;
        }
        // On a task of its own: a slow registration cut short by the
        // check's bound still stores its token for the next check, rather
        // than leave a session at the pool and open another each time.
        let registration = {
            let ctx = self.clone();
            tokio::spawn(async move { ctx.token(primary).await })
        };
        let Ok(Ok(token)) = registration.await else { return false };
        match self.pool(primary).job(&token, None).await {
            Ok(job) => Work::from_pool_job(&job, primary).is_ok(),
            // It forgot us (a restart, an expired session): register afresh
            // at the next check.
            Err(ApiFailure::Unauthorized) => {
                self.forget_token(primary, &token);
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::retry_policy::MIN_RETRY_WAIT;
    use super::*;

    #[test]
    fn with_every_pool_down_waits_grow_with_each_round_of_the_list() {
        let mut failures = Failures::default();
        let mut steps = Vec::new();
        for _ in 0..40 {
            steps.push(failures.unavailable(2, true, None));
        }
        // Each pool is tried twice, then the next; the first round moves at once.
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(matches!(step, Retry::Next(_)), i % 2 == 1, "step {i}: {step:?}");
        }
        assert_eq!(steps[1], Retry::Next(Duration::ZERO));
        let wait = |step: &Retry| match step {
            Retry::Same(wait) | Retry::Next(wait) => *wait,
        };
        assert!(wait(&steps[0]) <= Duration::from_millis(1250), "{:?}", steps[0]);
        assert!(wait(&steps[3]) > Duration::ZERO, "the second round waits before moving: {:?}", steps[3]);
        assert!(wait(&steps[38]) >= Duration::from_secs(20), "a long outage backs off: {:?}", steps[38]);
        assert!(steps.iter().all(|s| wait(s) <= Duration::from_secs_f64(30.0 * 1.25)));
    }

    #[test]
    fn a_retry_after_of_zero_still_waits() {
        let waited = |step: Retry| match step {
            Retry::Same(wait) => wait,
            Retry::Next(_) => panic!("one pool only: never next"),
        };
        for asked in [0, 1] {
            let mut failures = Failures::default();
            let wait = waited(failures.unavailable(1, false, Some(asked)));
            assert!((MIN_RETRY_WAIT..MIN_RETRY_WAIT.mul_f64(1.25)).contains(&wait), "{wait:?}");
        }
        let mut failures = Failures::default();
        let wait = waited(failures.unavailable(1, false, Some(7)));
        assert!((Duration::from_secs(7)..Duration::from_secs_f64(8.75)).contains(&wait), "{wait:?}");
        // Asked again and again: never less than asked, and longer as it goes on.
        let waits: Vec<Duration> = (0..10).map(|_| waited(failures.unavailable(1, false, Some(5)))).collect();
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(5)), "{waits:?}");
        assert!(waits[9] >= Duration::from_secs(20), "{waits:?}");
        // One pool only: never "next", however many failures.
        assert!((0..10).all(|_| matches!(failures.unavailable(1, false, None), Retry::Same(_))));
    }
}
