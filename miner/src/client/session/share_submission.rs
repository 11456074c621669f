//! Where found nonces go in pool mode: each find is sent to the pool that
//! issued its job. One the pool cannot take now (unreachable, busy, without
//! our session) waits in a bounded queue for that pool's next job answer and
//! is sent again while its job's height is still current (one the pool
//! refused or banned the miner for is dropped); a block is tried
//! again at once, briefly, rather than wait there. An answer that may have
//! been lost (a timeout, a 5xx after the request went out, a 503
//! `storage_unavailable` or a proxy's 503) marks the find
//! `maybe_credited`, so that a later `already_credited` counts it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use visionx::Found;

use super::super::pool_client::{printable, ApiFailure};
use super::super::retry_policy::{wait_before_retry, MAX_BLOCK_SUBMIT_RETRIES};
use super::super::work_dispatch::Work;
use super::PoolContext;

/// Why a find was not taken, and whether its request went out at all.
struct SendFailure {
    failure: ApiFailure,
    /// The share request was sent (its answer may be what failed).
    sent: bool,
}

/// A find that could not be sent yet.
pub(super) struct WaitingShare {
    pub(super) work: Arc<Work>,
    pub(super) found: Found,
    /// An earlier try may have been credited with its answer lost.
    pub(super) maybe_credited: bool,
    /// Times it waited out a pool's short Retry-After ([`MAX_SHARE_WAITS`]).
    pub(super) waits: u32,
    /// Waiting out one now: sent again by its pool's next wave
    /// ([`PoolContext::flush_after`]), not only at its next job answer.
    pub(super) due: bool,
}

/// Shares kept while no pool answers.
const MAX_PENDING: usize = 1024;
/// The longest a pool-mode block waits between tries.
const MAX_BLOCK_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Times a share is sent again after the pool said to wait a little (429
/// or 503 with a short Retry-After: shedding load) while its height is
/// current; then it waits for the pool's next job answer.
const MAX_SHARE_WAITS: u32 = 3;
/// The longest Retry-After after which waiting shares are sent again; after
/// a longer one, and after any other failure, they wait for the pool's next
/// job answer.
const MAX_SHARE_RETRY_AFTER_SECS: u64 = 5;
impl PoolContext {
    /// Drops the waiting copies of `pool`'s find `nonce` of `work`.
    fn forget_waiting_copies(&self, pool: usize, work: &Work, nonce: u64) {
        let mut pending = self.pending.lock().expect("pending lock");
        let before = pending.len();
        pending.retain(|s| !(s.work.pool == Some(pool) && s.work.id == work.id && s.found.nonce == nonce));
        if pending.len() != before {
            let n = pending.len();
            self.status.update(|c| c.pending = n);
        }
    }

    fn queue(&self, share: WaitingShare) {
        let mut pending = self.pending.lock().expect("pending lock");
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
            self.status.update(|c| c.dropped += 1);
        }
        pending.push_back(share);
        let n = pending.len();
        self.status.update(|c| c.pending = n);
    }

    /// Sends one find to the pool that issued its job. A share the pool
    /// could not take now waits in the queue for that pool's next job
    /// answer (one that cannot be sent because the pool refused or banned
    /// the miner is dropped), or, where the pool said to wait a little (a
    /// short Retry-After), for that wait ([`Self::flush_after`]; a few times,
    /// while its height is current). A find that meets the network
    /// difficulty (a block) is sent again here, after the pool's
    /// Retry-After or a backoff (2 s at most), while no job at a later
    /// height has come. Held for the next job answer, either would wait
    /// out a long-poll that often only a new block (making it stale) ends.
    ///
    /// `maybe_credited`: an earlier try may have been credited with its
    /// answer lost (it timed out, or the pool failed after taking it).
    pub(super) async fn submit(self: &Arc<Self>, work: Arc<Work>, found: Found, maybe_credited: bool) {
        self.submit_waiting(WaitingShare { work, found, maybe_credited, waits: 0, due: false }).await
    }

    /// [`Self::submit`] of a share that may have waited before.
    async fn submit_waiting(self: &Arc<Self>, share: WaitingShare) {
        let WaitingShare { work, found, mut maybe_credited, waits, .. } = share;
        let Some(pool) = work.pool else { return };
        let is_block = work.is_block(&found.digest);
        let mut failures = 0u32;
        loop {
            let failure = match self.submit_once(pool, &work, &found, maybe_credited).await {
                Ok(()) => return,
                Err(failure) => failure,
            };
            // A share sent and met by a timeout, a 5xx, a 503 saying the
            // pool's store failed (after the credit, maybe) or a proxy's 503
            // may have been taken; busy, rate-limited, without our session,
            // never sent (no token) or never connected: not.
            maybe_credited |= failure.sent
                && matches!(
                    failure.failure,
                    ApiFailure::Unavailable(_) | ApiFailure::RetryAfter { maybe_processed: true, .. }
                );
            let failure = failure.failure;
            let height_current = self.dispatch.current_work().is_none_or(|w| w.height <= work.height);
            let retryable = failure.is_transient() || matches!(failure, ApiFailure::Unauthorized);
            if !retryable {
                // No session to send it with (the pool refused or banned
                // this miner): waiting would only register there again.
                tracing::warn!("share dropped: {failure}");
                self.status.update(|c| c.dropped += 1);
                return;
            }
            if !is_block {
                // Queued, never waited out here: a found-submitter slot held
                // for seconds would hold up the finds behind it, blocks too.
                let asked_to_wait = matches!(
                    failure,
                    ApiFailure::RetryAfter { retry_after_secs, .. } if retry_after_secs <= MAX_SHARE_RETRY_AFTER_SECS
                );
                let wait_here = asked_to_wait
                    && height_current
                    && waits < MAX_SHARE_WAITS
                    && !self.stopping.load(Ordering::Relaxed);
                let waits = waits + u32::from(wait_here);
                self.queue(WaitingShare { work, found, maybe_credited, waits, due: wait_here });
                if wait_here {
                    self.flush_after(pool, wait_before_retry(&failure, 1));
                }
                return;
            }
            if !height_current || failures >= MAX_BLOCK_SUBMIT_RETRIES {
                return self.queue(WaitingShare { work, found, maybe_credited, waits, due: false });
            }
            failures += 1;
            // Short, whatever the pool asks: one request is no load, a
            // block goes stale with the next one, and a stopping miner
            // gets a try or two in within its grace.
            let wait = wait_before_retry(&failure, failures).min(MAX_BLOCK_RETRY_WAIT);
            tracing::warn!("could not submit a block ({failure}); retrying in {:.1}s", wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// After `wait` (a pool's short Retry-After), sends `pool`'s shares
    /// that were told to wait (`due`) again, one after another, if it is
    /// still the pool mined at: one wave per pool at a time (a pool
    /// shedding load gets each such share once per Retry-After, and no
    /// other waiting share before its job answer). Those told to wait again
    /// meanwhile get the next wave. Nothing once the session is stopping.
    fn flush_after(self: &Arc<Self>, pool: usize, wait: Duration) {
        if self.stopping.load(Ordering::Relaxed) || !self.flushes_due.lock().expect("flushes lock").insert(pool) {
            return;
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // Under the lock a stop takes the resubmissions with: a wave
            // either is among them or sees the stop (and takes nothing).
            let mut resubmissions = ctx.resubmissions.lock().expect("resubmissions lock");
            // (Those done are let go of.)
            while resubmissions.try_join_next().is_some() {}
            // (Failed over meanwhile: they wait for that pool's job answer.)
            let height = ctx.dispatch.current_work().filter(|w| w.pool == Some(pool)).map(|w| w.height);
            let (due, mined) = match height {
                Some(height) if !ctx.stopping.load(Ordering::Relaxed) => (ctx.take_due(pool, height), true),
                _ => (Vec::new(), false),
            };
            let wave = ctx.clone();
            resubmissions.spawn(async move {
                for share in due {
                    wave.submit_waiting(share).await;
                }
                wave.flushes_due.lock().expect("flushes lock").remove(&pool);
                let again = mined
                    && wave.pending.lock().expect("pending lock").iter().any(|w| w.due && w.work.pool == Some(pool));
                if again {
                    wave.flush_after(pool, super::super::retry_policy::MIN_RETRY_WAIT);
                }
            });
        });
    }

    /// Takes `pool`'s shares told to wait out of the queue, those at
    /// `height` or later (the older ones are stale: dropped).
    fn take_due(&self, pool: usize, height: u64) -> Vec<WaitingShare> {
        let mut pending = self.pending.lock().expect("pending lock");
        let (due, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|w| w.due && w.work.pool == Some(pool));
        pending.extend(rest);
        let (current, stale): (Vec<_>, Vec<_>) = due.into_iter().partition(|w| w.work.height >= height);
        // (Under the queue's lock, as `queue` counts.)
        self.status.update(|c| {
            c.pending = pending.len();
            c.dropped += stale.len() as u64;
        });
        current
    }

    /// One try at sending a find: `Err` with what failed when it was not
    /// taken: the pool unreachable, busy or without our session (to be sent
    /// again), or no session to be had there (refused or banned: dropped).
    /// `maybe_credited`: an earlier try may have been credited with its
    /// answer lost.
    async fn submit_once(
        &self,
        pool: usize,
        work: &Work,
        found: &Found,
        maybe_credited: bool,
    ) -> Result<(), SendFailure> {
        let token = self.token(pool).await.map_err(|failure| SendFailure { failure, sent: false })?;
        let rate = self.status.meter.rates(None).h60s;
        match self.pool(pool).share(&token, &work.id, found.nonce, &found.digest.to_hex(), rate).await {
            // Credited before: counted then, unless that answer was lost. (A
            // device picked up on the same job after a pause or a thread
            // change may find again what its threads hashed past the point
            // it picked up at.)
            Ok(answer)
                if answer.accepted && answer.reason.as_deref() == Some("already_credited") && !maybe_credited =>
            {
                Ok(())
            }
            Ok(answer) if answer.accepted => {
                // Counted now: a copy of it waiting (a device picked up
                // again found it twice), sent again, would be counted again.
                self.forget_waiting_copies(pool, work, found.nonce);
                self.status.update(|c| {
                    c.accepted += 1;
                    if answer.is_block {
                        c.blocks += 1;
                        tracing::info!("block found at height {} (nonce {})", work.height, found.nonce);
                    }
                });
                // Vardiff moved: take the next job now rather than at the end
                // of the long-poll. (Only an answer about the job being mined
                // says so: one about an older job, or another template's
                // cap, would ask for the job already held.)
                let still_mined = self.dispatch.current_work().is_some_and(|w| w.pool == work.pool && w.id == work.id);
                if still_mined && answer.share_difficulty != work.share_difficulty {
                    self.refresh.notify_one();
                }
                Ok(())
            }
            Ok(answer) => {
                let reason = printable(&answer.reason.unwrap_or_default());
                tracing::info!("share rejected: {reason}");
                self.status.update(|c| if reason == "stale" { c.stale += 1 } else { c.rejected += 1 });
                Ok(())
            }
            Err(ApiFailure::Unauthorized) => {
                self.forget_token(pool, &token);
                Err(SendFailure { failure: ApiFailure::Unauthorized, sent: true })
            }
            Err(failure) if failure.is_transient() => Err(SendFailure { failure, sent: true }),
            Err(failure) => {
                tracing::warn!("share refused: {failure}");
                self.status.update(|c| c.rejected += 1);
                Ok(())
            }
        }
    }

    /// Stopping: the resubmissions under way finish, then one more try for
    /// the shares that waited for a pool.
    pub(super) async fn finish_waiting(self: &Arc<Self>) {
        // (No more waves: what waits goes once, here.)
        self.stopping.store(true, Ordering::Relaxed);
        self.join_resubmissions().await;
        let mut waiting: Vec<WaitingShare> = self.pending.lock().expect("pending lock").drain(..).collect();
        self.status.update(|c| c.pending = 0);
        // The pool mined at first: another's, down, could take the whole
        // grace waiting out a connection's timeout.
        let active = self.active.load(std::sync::atomic::Ordering::Relaxed);
        waiting.sort_by_key(|w| w.work.pool != Some(active));
        for w in waiting {
            self.submit_waiting(w).await;
        }
    }

    /// Waits for the resubmissions under way.
    pub(super) async fn join_resubmissions(&self) {
        let mut resubmissions = std::mem::take(&mut *self.resubmissions.lock().expect("resubmissions lock"));
        while resubmissions.join_next().await.is_some() {}
    }

    /// `pool` answered with a job at `height`: resubmits its queued shares
    /// whose height is still current, and drops every pool's older ones.
    /// Those of other pools wait for theirs to answer: sent to a pool that
    /// is down, each would wait out a connection's timeout, on every job
    /// answer from the pool failed over to.
    pub(super) fn flush_pending(self: &Arc<Self>, height: u64, pool: usize) {
        let (here, old) = {
            let mut pending = self.pending.lock().expect("pending lock");
            let (current, old): (Vec<_>, Vec<_>) = pending.drain(..).partition(|w| w.work.height >= height);
            let (here, elsewhere): (Vec<_>, Vec<_>) = current.into_iter().partition(|w| w.work.pool == Some(pool));
            pending.extend(elsewhere);
            let n = pending.len();
            self.status.update(|c| c.pending = n);
            (here, old)
        };
        if !old.is_empty() {
            self.status.update(|c| c.dropped += old.len() as u64);
        }
        if here.is_empty() {
            return;
        }
        tracing::info!("resubmitting {} shares kept while the pool was unreachable", here.len());
        // A block goes on its own task: its retries must not hold the
        // shares behind it until they are stale.
        let (blocks, shares): (Vec<_>, Vec<_>) = here.into_iter().partition(|w| w.work.is_block(&w.found.digest));
        let mut resubmissions = self.resubmissions.lock().expect("resubmissions lock");
        // (Those done are let go of.)
        while resubmissions.try_join_next().is_some() {}
        for waiting in blocks {
            let ctx = self.clone();
            resubmissions.spawn(async move { ctx.submit_waiting(waiting).await });
        }
        let ctx = self.clone();
        resubmissions.spawn(async move {
            for waiting in shares {
                ctx.submit_waiting(waiting).await;
            }
        });
    }
}
