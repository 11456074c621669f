//! Found blocks: submission, retries, and records that say what the chain did.
//!
//! A block is recorded (`submitted`) before its share is appended and
//! before the chain sees it. A submission the chain answers is settled `accepted` or
//! `rejected` with the chain's reason. Any failure to get that answer (the
//! node unreachable, or refusing the request itself: a wrong credential, a
//! proxy's 404) is retried with backoff on a task of its own for as long
//! as the block can still win: while the pool's current template is the
//! block's own, or unknown (a refusal, for 10 minutes at most). Once another template is current, the chain is
//! asked whether the block made it (an earlier attempt may have landed
//! with its answer lost) and the record settles either way. Records left
//! `submitted` by a restart are resumed the same way
//! ([`Pool::resume_block_submissions`]).

use std::sync::Arc;
use std::time::Duration;

use super::job_book::HEIGHTS_KEPT;
use super::metrics::PoolMetrics;
use super::{now_ms, Pool, PoolError};
use crate::chain::ChainError;
use crate::storage::{AppendOutcome, BlockStatus, FoundBlockRecord};

/// Retry delays: doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(10);
/// How long after it was found a block the node refuses to take (not an
/// unreachable node: a refused credential, a proxy's 404) is still retried.
/// Long enough to fix a credential; bounded, because a pool that is its
/// chain's only miner never sees the tip move to supersede it.
const REFUSALS_RETRIED_FOR_MS: u64 = 10 * 60 * 1000;

/// How long a block recorded `submitted` may go without an attempt written
/// (one is, at least every [`LAST_RETRY`] plus a request's time, 40 s)
/// before another coordinator on the shared store takes it up: the one that
/// found it has stopped, and the block may still win and holds up every
/// later block's credit. (Two coordinators at one block agree by the
/// store's rule for its record.)
const STALLED_SUBMISSION_MS: u64 = 60_000;
const _: () = assert!(
    STALLED_SUBMISSION_MS > (LAST_RETRY.as_millis() + crate::chain::upstream::REQUEST_TIMEOUT.as_millis()) as u64
);

/// How long a node saying "no block" at a found block's height is asked
/// again before it is believed, unless the block's only submission was
/// refused (an earlier attempt may have landed, and the node answering may
/// lag the one that took it): a lagging replica catches up in seconds, and
/// until the block settles later blocks wait to be credited. A node whose
/// tip is past the height gets [`REFUSALS_RETRIED_FOR_MS`].
const LAGGING_NODE_PATIENCE_MS: u64 = 2 * 60 * 1000;

/// Whether a block the node refused to take is settled now (asked of the
/// chain) rather than tried again: 10 minutes after it was found, or after
/// this coordinator started (`started_ms`), whichever is later, so a block
/// resumed after downtime gets its retries too.
fn refusals_exhausted(found_ms: u64, started_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(found_ms.max(started_ms)) >= REFUSALS_RETRIED_FOR_MS
}

/// What the chain says holds a found block's height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainVerdict {
    Ours,
    Another,
    /// No block at its height.
    NoBlock,
    /// The chain cannot say now: unreachable, or no block yet where an
    /// attempt whose answer was lost may have landed.
    Unknown,
}

impl ChainVerdict {
    /// Settles `block` on the verdict (rejected with `reason`); `false`, and
    /// `block` unchanged, when the chain cannot say yet.
    fn settle(self, block: &mut FoundBlockRecord, reason: String) -> bool {
        match self {
            ChainVerdict::Ours => {
                block.status = BlockStatus::Accepted;
                block.reason = None;
            }
            ChainVerdict::Another | ChainVerdict::NoBlock => {
                block.status = BlockStatus::Rejected;
                block.reason = Some(reason);
            }
            ChainVerdict::Unknown => return false,
        }
        true
    }
}

impl Pool {
    /// Submits a recorded block once; while the chain has not judged it,
    /// keeps retrying in the background. Returns the record as it stands after this attempt.
    pub(crate) async fn submit_found_block(
        self: &Arc<Self>,
        mut block: FoundBlockRecord,
    ) -> Result<FoundBlockRecord, PoolError> {
        let attempt = self.attempt_submission(&mut block, true).await;
        // Unsettled, or settled but not recorded (a storage failure): either
        // way a task of its own sees it through.
        if block.status == BlockStatus::Submitted || attempt.is_err() {
            let (pool, pending, recorded) = (self.clone(), block.clone(), attempt.is_ok());
            tokio::spawn(async move { pool.retry_block_submission(pending, recorded).await });
        }
        attempt?;
        Ok(block)
    }

    /// One submission attempt; records the outcome durably.
    /// `first`: the first attempt, by the coordinator that found the block,
    /// right after recording it (no earlier attempt can have landed).
    async fn attempt_submission(&self, block: &mut FoundBlockRecord, first: bool) -> Result<(), PoolError> {
        block.attempts += 1;
        block.updated_ms = now_ms();
        match self.chain.submit(block.submission.clone()).await {
            Ok(outcome) if outcome.accepted => {
                if let Some(hash) = outcome.hash.filter(|h| !h.eq_ignore_ascii_case(&block.hash)) {
                    tracing::error!(ours = %block.hash, chain = %hash, "the chain reports another hash for our block");
                }
                block.status = BlockStatus::Accepted;
                block.reason = None;
            }
            Ok(outcome) => {
                // An earlier attempt may have landed with its answer lost:
                // then the chain now calls the same block stale. (Not known
                // yet: asked again on the next try.)
                let reason = outcome
                    .reason
                    .as_deref()
                    .map_or_else(|| "rejected without a reason".into(), crate::chain::node_text);
                // Only the first attempt's refusal is definite: a retry, or
                // a block resumed (after a restart, or from another
                // coordinator), may follow an attempt that landed.
                self.chain_verdict(block, first).await.settle(block, reason);
            }
            // Only the chain's verdict on the block settles it. A refused
            // credential (a rotated --upstream-token), a proxy's 404 or a
            // node's hiccup may pass on a later try, and the block can
            // still win meanwhile: retried until superseded (a refusal, for
            // REFUSALS_RETRIED_FOR_MS at most).
            Err(err)
                if !matches!(err, ChainError::Unavailable(_))
                    && refusals_exhausted(block.time_ms, self.started_ms(), block.updated_ms) =>
            {
                tracing::error!(
                    height = block.height,
                    "the node still refuses our block submissions; giving up: {err}"
                );
                // Settled only on the chain's word on its height; a chain
                // that cannot say leaves it for the next round.
                if !self.chain_verdict(block, false).await.settle(block, err.public_reason()) {
                    block.reason = Some(err.public_reason());
                }
            }
            Err(err) => {
                PoolMetrics::bump(&self.metrics.block_submit_retries);
                match err {
                    ChainError::Unavailable(_) => {
                        tracing::warn!(height = block.height, "block submission failed, will retry: {err}")
                    }
                    _ => tracing::error!(
                        height = block.height,
                        "the node refused a block submission itself (check --upstream-token and --upstream), \
                         will retry: {err}"
                    ),
                }
                block.reason = Some(err.public_reason());
            }
        }
        self.record_block(block).await
    }

    /// Makes sure a recorded block's own share is in the ledger and the
    /// record says where (after a process killed between the two, or an
    /// append that failed): the block's reward window ends at it. Returns
    /// whether the record changed.
    pub(crate) async fn ledger_block_share(&self, block: &mut FoundBlockRecord) -> Result<bool, PoolError> {
        if block.share_position.is_some() {
            return Ok(false);
        }
        // Another task or coordinator may have noted it since this copy.
        let stored = self.store.found_blocks_at(block.height).await?;
        if let Some(position) = stored.iter().find(|b| b.hash == block.hash).and_then(|b| b.share_position) {
            block.share_position = Some(position);
            return Ok(true);
        }
        let position = match self.store.credited(block.height, &block.template_id, block.nonce).await? {
            Some(credit) => credit.position,
            None => {
                // Duplicate keys of heights this far back may be pruned: the
                // share could be in the ledger unseen, and appending it again
                // would credit it twice. Better the finder's window alone.
                // With the tip unknown (a restart while the node is down),
                // that is unknown too: asked again once the tip is known,
                // rather than settled on the finder's window.
                let Some(share) = block.share.as_ref() else { return Ok(false) };
                let tip = self.current_height().ok_or(PoolError::NoTemplate)?;
                if block.height.saturating_add(HEIGHTS_KEPT) <= tip {
                    return Ok(false);
                }
                match self.store.append_share(share).await? {
                    AppendOutcome::Appended(position) => position,
                    AppendOutcome::Duplicate(credit) => credit.position,
                    // Pruned meanwhile, as above.
                    AppendOutcome::TemplateGone => return Ok(false),
                }
            }
        };
        block.share_position = Some(position);
        Ok(true)
    }

    /// Sees a block left `submitted` (by a restart, or a coordinator that
    /// stopped) through on a task of its own: its share in the ledger
    /// first, as its window must end at that share (on a store error, the
    /// task tries again), then submitted while it can still win.
    pub(crate) async fn take_up_block(self: &Arc<Self>, mut block: FoundBlockRecord) {
        let recorded = !self.ledger_block_share(&mut block).await.unwrap_or(true);
        let pool = self.clone();
        tokio::spawn(async move { pool.retry_block_submission(block, recorded).await });
    }

    /// Looks again at the found blocks a rewards round still reads, before
    /// each round:
    /// - takes up those recorded `submitted` whose submission no coordinator
    ///   has stepped on for a minute (the one that found it stopped, on a shared
    ///   store; a coordinator resumes its own at start), as a restart would;
    /// - records as accepted a block rejected on a node's word that the chain
    ///   holds after all (another coordinator's node took it, or a
    ///   reorganisation made it the chain's), while within the watch depth,
    ///   so the rounds credit it (or, if a later block has paid its PROP
    ///   round, flag it).
    ///
    /// Returns how many it took up or accepted.
    pub async fn review_found_blocks(self: &Arc<Self>, now_ms: u64) -> Result<usize, PoolError> {
        let found = self.store.found_blocks_from(self.rewards.settled_below()).await?;
        let (stalled, rejected): (Vec<FoundBlockRecord>, Vec<FoundBlockRecord>) = {
            let retrying = self.block_retries.lock().expect("block retries lock");
            found
                .into_iter()
                .filter(|b| match b.status {
                    BlockStatus::Submitted => {
                        now_ms.saturating_sub(b.updated_ms) >= STALLED_SUBMISSION_MS
                            && !retrying.contains(&(b.height, b.hash.clone()))
                    }
                    BlockStatus::Rejected => true,
                    BlockStatus::Accepted => false,
                })
                .partition(|b| b.status == BlockStatus::Submitted)
        };
        let mut count = stalled.len();
        for block in stalled {
            tracing::warn!(
                height = block.height,
                "taking up a found block whose submission nobody has stepped on for {}s (its coordinator stopped?)",
                STALLED_SUBMISSION_MS / 1000
            );
            self.take_up_block(block).await;
        }
        if rejected.is_empty() {
            return Ok(count);
        }
        // (The node down: asked again before the next round.)
        let Ok(Some(tip)) = self.chain.tip().await else { return Ok(count) };
        let config = self.rewards.config();
        let watched = config.confirmations.saturating_add(config.orphan_watch_depth);
        for mut block in rejected.into_iter().filter(|b| b.height.saturating_add(watched) > tip.height) {
            let held =
                matches!(self.chain.block(block.height).await, Ok(b) if b.hash.eq_ignore_ascii_case(&block.hash));
            if !held {
                continue;
            }
            tracing::warn!(height = block.height, "a block rejected on a node's word is on the chain after all");
            block.status = BlockStatus::Accepted;
            block.reason = Some(format!("on the chain after all (was: {})", block.reason.unwrap_or_default()));
            block.updated_ms = now_ms;
            self.record_block(&block).await?;
            count += 1;
        }
        Ok(count)
    }

    /// Whether the chain holds this very block (false when it cannot say).
    /// The chain's word on `block`'s height. "No block there" is believed
    /// at once only when `definite` (the node refused the block's only
    /// submission, so no earlier one can have landed); otherwise only after
    /// [`LAGGING_NODE_PATIENCE_MS`]: an attempt whose answer was lost may
    /// have landed, and the node answering may be behind the one that took
    /// it (a load balancer's replica, a node catching up).
    async fn chain_verdict(&self, block: &FoundBlockRecord, definite: bool) -> ChainVerdict {
        match self.chain.block(block.height).await {
            Ok(on_chain) if on_chain.hash.eq_ignore_ascii_case(&block.hash) => ChainVerdict::Ours,
            Ok(_) => ChainVerdict::Another,
            Err(ChainError::NotFound(_)) if definite => ChainVerdict::NoBlock,
            Err(ChainError::NotFound(_)) => {
                // A tip past the height with no block there is a node
                // contradicting itself (replicas apart): given longer.
                let tip_past = matches!(self.chain.tip().await, Ok(Some(tip)) if tip.height > block.height);
                let patience = if tip_past { REFUSALS_RETRIED_FOR_MS } else { LAGGING_NODE_PATIENCE_MS };
                let waited = now_ms().saturating_sub(block.time_ms.max(self.started_ms()));
                if waited >= patience {
                    ChainVerdict::NoBlock
                } else {
                    tracing::warn!(
                        height = block.height,
                        "the node knows no block at our block's height yet; asking again"
                    );
                    ChainVerdict::Unknown
                }
            }
            Err(_) => ChainVerdict::Unknown,
        }
    }

    async fn record_block(&self, block: &FoundBlockRecord) -> Result<(), PoolError> {
        self.store.put_found_block(block).await?;
        self.commits.durable().await?;
        match block.status {
            BlockStatus::Accepted => {
                PoolMetrics::bump(&self.metrics.blocks_found);
                if let Some(session) = self.sessions.lock().get_mut(&block.session_id) {
                    session.blocks_found += 1;
                }
                tracing::info!(height = block.height, hash = %block.hash, worker = %block.worker_id, "block found");
                if let Err(err) = self.refresh_template().await {
                    tracing::warn!("refreshing the template after a block failed: {err}");
                }
            }
            BlockStatus::Rejected => {
                PoolMetrics::bump(&self.metrics.blocks_rejected);
                tracing::warn!(
                    height = block.height,
                    "block rejected by the chain: {}",
                    block.reason.as_deref().unwrap_or("")
                );
            }
            BlockStatus::Submitted => {}
        }
        Ok(())
    }

    /// Whether the block's template is still the one mined on (or the tip
    /// is unknown, so it may be).
    fn can_still_win(&self, block: &FoundBlockRecord) -> bool {
        self.jobs.current().is_none_or(|c| c.id == block.template_id)
    }

    /// Retries a block until it is settled and its record is durable
    /// (`recorded`: the record on disk matches `block`).
    pub(crate) async fn retry_block_submission(self: Arc<Self>, mut block: FoundBlockRecord, mut recorded: bool) {
        let key = (block.height, block.hash.clone());
        if !self.block_retries.lock().expect("block retries lock").insert(key.clone()) {
            // Another task has it (its writes merge with ours by the store's rule).
            return;
        }
        struct Done<'a>(&'a Pool, (u64, String));
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.block_retries.lock().expect("block retries lock").remove(&self.1);
            }
        }
        let _done = Done(&self, key);
        // The first try at once: a block resumed after a restart must reach
        // the chain before the pool's miners find another at its height.
        let mut delay = Duration::ZERO;
        while !recorded || block.status == BlockStatus::Submitted {
            tokio::time::sleep(delay).await;
            delay = if delay.is_zero() { FIRST_RETRY } else { (delay * 2).min(LAST_RETRY) };
            let step = if !recorded {
                match self.ledger_block_share(&mut block).await {
                    Ok(_) => self.record_block(&block).await,
                    Err(err) => Err(err),
                }
            } else if self.can_still_win(&block) {
                self.attempt_submission(&mut block, false).await
            } else {
                self.settle_superseded(&mut block).await
            };
            if !recorded && step.is_ok() {
                // Its share just reached the ledger (the node back, say):
                // submitted at once, not after the backoff so far.
                delay = Duration::ZERO;
            }
            recorded = step.is_ok();
            if let Err(err) = step {
                tracing::error!(height = block.height, "recording a found block failed (will retry): {err}");
            }
        }
    }

    /// Another template is current: the block either made it into the chain
    /// (an attempt whose answer was lost) or can no longer win.
    async fn settle_superseded(&self, block: &mut FoundBlockRecord) -> Result<(), PoolError> {
        let reason = match self.chain_verdict(block, false).await {
            ChainVerdict::Ours => None,
            ChainVerdict::Another => Some(format!("height {} went to another block", block.height)),
            ChainVerdict::NoBlock => Some("the chain moved on without it".to_string()),
            // Unknown yet: ask again on the next round. (Written, so that
            // other coordinators see the block is being seen to.)
            ChainVerdict::Unknown => {
                block.updated_ms = now_ms();
                return self.record_block(block).await;
            }
        };
        block.updated_ms = now_ms();
        match reason {
            None => {
                block.status = BlockStatus::Accepted;
                block.reason = None;
            }
            Some(reason) => {
                block.status = BlockStatus::Rejected;
                block.reason = Some(reason);
            }
        }
        self.record_block(block).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_retried_for_a_while_then_settled() {
        let found = 1_000_000;
        let long_up = 0;
        let table = [
            (long_up, found, false),
            (long_up, found + REFUSALS_RETRIED_FOR_MS - 1, false),
            (long_up, found + REFUSALS_RETRIED_FOR_MS, true),
            // A clock that went back: retried, not settled early.
            (long_up, found - 5_000, false),
            // Resumed by a coordinator started an hour later: its own 10 minutes.
            (found + 3_600_000, found + 3_600_000 + REFUSALS_RETRIED_FOR_MS - 1, false),
            (found + 3_600_000, found + 3_600_000 + REFUSALS_RETRIED_FOR_MS, true),
        ];
        for (started, now, settled) in table {
            assert_eq!(refusals_exhausted(found, started, now), settled, "started {started}, now {now}");
        }
    }

    #[test]
    fn public_reasons_name_the_failure_not_the_nodes_words() {
        let table = [
            (ChainError::Unavailable("http://user:pw@node:1 refused".into()), "the chain node is unreachable"),
            (
                ChainError::invalid("upstream_unauthorized", "the node refused our credential: token abc"),
                "the chain node refused the request: upstream_unauthorized",
            ),
            (ChainError::NotFound("no such route at /x".into()), "the chain node refused the request: not_found"),
            (ChainError::Conflict("key reused".into()), "the chain node refused the request: conflict"),
        ];
        for (err, public) in table {
            assert_eq!(err.public_reason(), public);
        }
    }
}
