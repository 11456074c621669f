//! The share path, from admission to the answer.
//!
//! Cheap checks come first (ban, rate limit, job, staleness, range, digest
//! syntax); a session that has shown no valid work yet then draws on its
//! source's verification budget (whatever the share turns out to be); then
//! the duplicate key is looked up, and the session may have at most
//! [`VERIFYING_PER_SESSION`](super::worker_sessions::VERIFYING_PER_SESSION) shares being verified; only then is the share
//! recomputed, off the runtime. An accepted share is appended to the ledger
//! (after its found-block record, when it meets the network target) and is
//! durable before it is acknowledged or submitted to the chain.
//!
//! Everything after admission runs on a task of its own
//! ([`Pool::judge_share`]): a client that hangs up cannot stop a verified
//! share from being recorded or a found block from being submitted and
//! recorded.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use visionx::Digest;

use super::metrics::PoolMetrics;
use super::share_verifier::{ShareClaim, Verdict};
use super::worker_sessions::VerifySlot;

/// The highest hash rate a rig may report (10^15 H/s: beyond any farm).
const MAX_REPORTED_HASHRATE: f64 = 1e15;
use super::{Pool, PoolError, ShareRejection, ShareRequest, ShareResponse};
use crate::rewards::CrashPoint;
use crate::storage::{AppendOutcome, BlockStatus, FoundBlockRecord, ShareRecord};

fn refused(rejection: ShareRejection, share_difficulty: u64) -> ShareResponse {
    ShareResponse {
        accepted: false,
        is_block: false,
        reason: Some(rejection.reason().into()),
        share_difficulty,
        block_hash: None,
        block_status: None,
        block_reason: None,
    }
}

/// Fills in what became of the block a share found.
fn tell_block(answer: &mut ShareResponse, block: &FoundBlockRecord) {
    answer.is_block = block.status == BlockStatus::Accepted;
    answer.block_hash = Some(block.hash.clone());
    answer.block_status = Some(
        match block.status {
            BlockStatus::Submitted => "submitted",
            BlockStatus::Accepted => "accepted",
            BlockStatus::Rejected => "rejected",
        }
        .into(),
    );
    answer.block_reason = block.reason.clone();
}

/// The answer to a share credited before, to the same session (a miner
/// resubmitting after a timeout): accepted, and nothing counted twice.
fn already_credited(share_difficulty: u64) -> ShareResponse {
    ShareResponse {
        accepted: true,
        is_block: false,
        reason: Some("already_credited".into()),
        share_difficulty,
        block_hash: None,
        block_status: None,
        block_reason: None,
    }
}

impl Pool {
    /// Hands a found block whose share path failed part-way to a task of its
    /// own, which records it (its share in the ledger first) and submits it.
    fn see_block_through(self: &Arc<Self>, found: &FoundBlockRecord) {
        let (pool, found) = (self.clone(), found.clone());
        tokio::spawn(async move { pool.retry_block_submission(found, false).await });
    }

    /// The answer to a share session `session_id` was credited for before
    /// (nonce `nonce` of template `template_id`, at `height`): acknowledged only
    /// once it is on disk (its first answer may have been a storage error).
    /// A block's share says what became of the block, as its first answer
    /// did: a miner that lost that answer still learns of its block (one
    /// store read, for a share sent again only).
    async fn credited_before(
        &self,
        share_difficulty: u64,
        session_id: &str,
        height: u64,
        template_id: &str,
        nonce: u64,
    ) -> Result<ShareResponse, PoolError> {
        self.commits.durable().await?;
        PoolMetrics::bump(&self.metrics.shares_replayed);
        let mut answer = already_credited(share_difficulty);
        // (Unread, the answer is still true: it only says less.)
        match self.store.found_blocks_at(height).await {
            Ok(blocks) => {
                let ours = |b: &&FoundBlockRecord| {
                    b.template_id == template_id && b.nonce == nonce && b.session_id == session_id
                };
                if let Some(block) = blocks.iter().find(ours) {
                    tell_block(&mut answer, block);
                }
            }
            Err(err) => tracing::debug!("a credited share's block was not looked up: {err}"),
        }
        Ok(answer)
    }

    /// Judges a share on a task the request does not own, and waits for the
    /// answer.
    pub(crate) async fn judge_share(
        self: &Arc<Self>,
        session_id: String,
        source: Option<IpAddr>,
        request: ShareRequest,
        now: u64,
    ) -> Result<ShareResponse, PoolError> {
        let pool = self.clone();
        tokio::spawn(async move { pool.judge(&session_id, source, request, now).await })
            .await
            .map_err(|e| PoolError::Internal(format!("share task failed: {e}")))?
    }

    async fn judge(
        self: &Arc<Self>,
        session_id: &str,
        source: Option<IpAddr>,
        request: ShareRequest,
        now: u64,
    ) -> Result<ShareResponse, PoolError> {
        self.admit_shares(session_id, now)?;
        // Answers carry the difficulty the next job will (on the tip).
        let tip = self.jobs.current();
        // The wallet is read here, before verification: a session dropped
        // from memory meanwhile (forgotten in the store) must not lose a
        // verified share, a block least of all.
        let (difficulty, proven, banned_flag, wallet, verifying) = {
            let mut sessions = self.sessions.lock();
            let session = sessions.get_mut(session_id).ok_or(PoolError::Unauthorized("unknown session"))?;
            session.last_seen_ms = now;
            // A rig's own figure, shown and summed: an absurd one (a pool-wide
            // sum of infinity) is capped, not trusted.
            if let Some(rate) = request.hashrate.filter(|r| r.is_finite() && *r >= 0.0) {
                session.reported_hashrate = Some(rate.min(MAX_REPORTED_HASHRATE));
            }
            if let Err(wait) = session.bucket.try_take(now) {
                drop(sessions);
                PoolMetrics::bump(&self.metrics.shares_rate_limited);
                return Err(PoolError::RateLimited {
                    message: "too many shares; raise your share difficulty or slow down",
                    retry_after_secs: wait,
                });
            }
            let difficulty = super::job_requests::next_job_difficulty(session, tip.as_deref());
            let wallet = session.record.wallet_address.clone();
            (difficulty, session.proven, session.banned.clone(), wallet, session.verifying.clone())
        };
        let reject = async |rejection: ShareRejection| -> Result<ShareResponse, PoolError> {
            self.count_rejection(session_id, source, rejection, now).await?;
            Ok(refused(rejection, difficulty))
        };

        let job = match self.jobs.get(&request.job_id) {
            Some(job) => Some(job),
            // Issued by another coordinator on the shared store, or unknown.
            None => self.load_job(&request.job_id, session_id).await?,
        };
        let Some(job) = job.filter(|j| j.session_id == session_id) else {
            return reject(ShareRejection::UnknownJob).await;
        };
        // Current only if its template is the one on the current tip (same
        // height *and* parent); with the tip unknown, nothing is current.
        let height = job.template.template.header.height;
        if self.jobs.current().is_none_or(|c| c.id != job.template.id) {
            // Sent again after its answer was lost, once the tip moved: it
            // was credited, and says so (a miner counting a block it found
            // as stale would think it lost).
            if let Some(credit) = self.store.credited(height, &job.template.id, request.nonce).await? {
                if credit.session_id == session_id {
                    return self.credited_before(difficulty, session_id, height, &job.template.id, request.nonce).await;
                }
            }
            return reject(ShareRejection::Stale).await;
        }
        if !job.nonces.contains(request.nonce) {
            return reject(ShareRejection::OutOfRange).await;
        }
        let Ok(claimed_digest) = request.digest.parse::<Digest>() else {
            return reject(ShareRejection::BadDigest).await;
        };
        // Before the ledger is read: a new session's shares cost its address's
        // budget whatever they turn out to be.
        if !proven {
            if let Some(source) = source {
                self.sources.take_unproven_verification(source, now).map_err(|e| {
                    PoolMetrics::bump(&self.metrics.shares_rate_limited);
                    PoolError::RateLimited {
                        message: "new sessions from this address are over their verification budget; retry shortly",
                        retry_after_secs: e.retry_after_secs,
                    }
                })?;
            }
        }
        if let Some(credit) = self.store.credited(height, &job.template.id, request.nonce).await? {
            if credit.session_id == session_id {
                return self.credited_before(difficulty, session_id, height, &job.template.id, request.nonce).await;
            }
            return reject(ShareRejection::Duplicate).await;
        }

        let claim = ShareClaim {
            input: job.template.input.clone(),
            nonce: request.nonce,
            claimed_digest,
            share_difficulty: job.share_difficulty,
            network_difficulty: job.template.template.header.difficulty,
            banned: banned_flag,
        };
        let slot = VerifySlot::take(&verifying).ok_or_else(|| {
            PoolMetrics::bump(&self.metrics.shares_rate_limited);
            PoolError::RateLimited {
                message: "too many shares of this session are being verified at once; wait for their answers",
                retry_after_secs: 1,
            }
        })?;
        let pending = self.verifier.submit(claim).map_err(|_| {
            PoolMetrics::bump(&self.metrics.shares_busy);
            PoolError::VerifyQueueFull
        })?;
        let (verdict, verify_time) =
            pending.await.map_err(|_| PoolError::Internal("a verifier thread stopped".into()))?;
        // Verified: its recording (fsyncs, a block's submission) is no
        // longer the verifiers' business.
        drop(slot);
        self.metrics.verify_latency.record(verify_time);
        let (digest, is_block) = match verdict {
            Verdict::Accepted { digest, is_block } => (digest, is_block),
            Verdict::BadDigest => return reject(ShareRejection::BadDigest).await,
            Verdict::LowDifficulty => return reject(ShareRejection::LowDifficulty).await,
            Verdict::Skipped => {
                self.admit_shares(session_id, now)?;
                return Err(PoolError::Banned { secs: 1 });
            }
        };

        let record = ShareRecord {
            worker_id: job.worker_id.clone(),
            session_id: session_id.to_string(),
            wallet_address: wallet.clone(),
            template_id: job.template.id.clone(),
            job_id: job.job_id.clone(),
            nonce: request.nonce,
            share_difficulty: job.share_difficulty,
            height,
            time_ms: now,
            is_block,
        };
        // A block is recorded before its share is appended, and so before
        // the chain sees it: a crash at any point leaves either no credited
        // share (the miner's resubmission finds the block again) or a record
        // that a restart resumes. The chain never holds a pool block the pool
        // has no record of.
        let mut found = is_block.then(|| FoundBlockRecord {
            height,
            hash: digest.to_hex(),
            template_id: job.template.id.clone(),
            nonce: request.nonce,
            worker_id: job.worker_id.clone(),
            session_id: session_id.to_string(),
            wallet_address: wallet,
            time_ms: now,
            status: BlockStatus::Submitted,
            reason: None,
            attempts: 0,
            updated_ms: now,
            submission: job.template.template.solved(request.nonce),
            share_position: None,
            pool_fee_bps: Some(self.settings().pool_fee_bps),
            share: Some(record.clone()),
        });
        if let Some(found) = &found {
            // Durable on its own (one more flush per block, on sled): a crash
            // before the share is appended still leaves the block recorded.
            let recorded = match self.store.put_found_block(found).await {
                Ok(()) => self.commits.durable().await,
                Err(err) => Err(err),
            };
            if let Err(err) = recorded {
                // Found all the same: a task of its own records and submits it.
                self.see_block_through(found);
                return Err(err.into());
            }
            self.rewards.crash_point(CrashPoint::BlockRecorded);
        }
        let appended = match self.store.append_share(&record).await {
            Ok(appended) => appended,
            Err(err) => {
                // The block is recorded and may still win, and a failed
                // append may have committed (the miner's resubmission would
                // then be answered already_credited): a task of its own sees
                // the share into the ledger and the block to the chain.
                if let Some(found) = &found {
                    self.see_block_through(found);
                }
                return Err(err.into());
            }
        };
        let position = match appended {
            AppendOutcome::Appended(position) => position,
            AppendOutcome::Duplicate(credit) if credit.session_id == session_id => {
                return self.credited_before(difficulty, session_id, height, &job.template.id, request.nonce).await;
            }
            AppendOutcome::Duplicate(_) => return reject(ShareRejection::Duplicate).await,
            AppendOutcome::TemplateGone => {
                // Another coordinator on the store is past this tip and
                // pruned it. A block of it is this chain's all the same:
                // its own task sees it to the chain.
                if let Some(found) = &found {
                    self.see_block_through(found);
                }
                return reject(ShareRejection::Stale).await;
            }
        };
        let recorded = match &mut found {
            Some(found) => {
                self.rewards.crash_point(CrashPoint::BlockShareAppended);
                // Where its reward window ends.
                found.share_position = Some(position);
                self.store.put_found_block(found).await
            }
            None => Ok(()),
        };
        let durable = self.commits.durable().await;
        if let Some(found) = &found {
            if recorded.is_err() || durable.is_err() {
                // The share is in the ledger (a resubmission would be
                // answered already_credited), so the block must not wait for
                // one: a task of its own records it, then submits it.
                self.see_block_through(found);
            } else {
                self.rewards.crash_point(CrashPoint::BlockShareNoted);
            }
        }
        recorded?;
        durable?;

        let vardiff_config = self.vardiff_config();
        let tip = self.jobs.current();
        let (next_difficulty, newly_proven) = {
            let mut sessions = self.sessions.lock();
            match sessions.get_mut(session_id) {
                Some(session) => {
                    let newly_proven = !session.proven;
                    if newly_proven {
                        self.unproven_active.fetch_sub(1, Ordering::Relaxed);
                    }
                    session.proven = true;
                    session.record.proven = true;
                    session.counts.accepted += 1;
                    session.ban_counts.judged += 1;
                    session.recent.push(now, job.share_difficulty);
                    session.last_share_ms = Some(now);
                    session.vardiff.on_share(now, job.share_difficulty, &vardiff_config);
                    let next = super::job_requests::next_job_difficulty(session, tip.as_deref());
                    (next, newly_proven.then(|| session.record.clone()))
                }
                None => (difficulty, None),
            }
        };
        if let Some(record) = newly_proven {
            // Once per session; durable with a later commit (losing it only
            // means proving the session again). A session forgotten meanwhile
            // stays forgotten: the share is credited all the same. A failed
            // write is only logged: the share is durable, and a found block
            // must still go to the chain below (a resubmission would be
            // answered already_credited, and never submit it).
            if let Err(err) = self.store.touch_session(&record.token_hash, record.last_seen_ms, true).await {
                tracing::warn!("a session's first accepted share was not noted in the store (it proves again): {err}");
            }
        }
        PoolMetrics::bump(&self.metrics.shares_valid);
        self.metrics.accepted_work.fetch_add(job.share_difficulty, std::sync::atomic::Ordering::Relaxed);

        let mut response = ShareResponse {
            accepted: true,
            is_block: false,
            reason: None,
            share_difficulty: next_difficulty,
            block_hash: None,
            block_status: None,
            block_reason: None,
        };
        if let Some(found) = found {
            tell_block(&mut response, &self.submit_found_block(found).await?);
        }
        Ok(response)
    }
}
