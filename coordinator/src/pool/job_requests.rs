//! `GET /pool/job`: long-polls, and the job a session is given.
//!
//! A session keeps its live job while the template and its share difficulty
//! hold: asking again returns the same job (same id, same nonce range), so
//! job requests cannot grow the pool's memory or disk. A new job is issued
//! on a new template or a new difficulty (at most
//! [`MAX_JOBS_PER_SESSION_TEMPLATE`] per session and template, counted
//! before each is issued, so requests racing each other cannot pass it; past
//! that the live job stays), and is durable before it is answered, so a restarted
//! pool still judges its shares. Issuing runs on a task of its own, so a
//! client that hangs up cannot skip the count.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::job_book::{IssuedJob, TemplateState};
use super::metrics::PoolMetrics;
use super::worker_sessions::SessionState;
use super::{JobResponse, Pool, PoolError};
use crate::chain::ChainError;
use crate::client_source::source_network;
use crate::storage::JobRecord;

/// New jobs one session can get on one template.
pub(crate) const MAX_JOBS_PER_SESSION_TEMPLATE: u32 = 16;
/// After a job request's refresh failed, requests for this long are
/// answered 503 without asking the chain.
const REQUEST_REFRESH_PAUSE_MS: u64 = 1_000;

/// Job requests' template refreshes while no template is live (the chain
/// silent or never heard): one at a time, the requests behind it taking its
/// answer, and none for [`REQUEST_REFRESH_PAUSE_MS`] after one failed, so a
/// node that is down or coming back meets one call, not one per miner.
pub(crate) struct RequestRefresh {
    gate: Semaphore,
    /// Refreshes finished, and when the last failed one did (ms, 0: none).
    finished: AtomicU64,
    failed_at_ms: AtomicU64,
}

impl Default for RequestRefresh {
    fn default() -> Self {
        RequestRefresh { gate: Semaphore::new(1), finished: AtomicU64::new(0), failed_at_ms: AtomicU64::new(0) }
    }
}

impl Pool {
    /// Waits (up to `wait`, within the pool's bound, and only while fewer
    /// than the maximum of long-polls wait) for a template newer than the
    /// session's last job. Once fewer than a quarter of the slots are free,
    /// a source (`source`'s network) already holding its fair share is
    /// answered at once, as past the maximum.
    pub(crate) async fn wait_for_new_template(&self, session_id: &str, source: Option<IpAddr>, wait: Duration) {
        let Ok(_permit) = self.long_polls.clone().try_acquire_owned() else { return };
        let scarce = self.long_polls.available_permits() < self.config.max_long_polls / 4;
        let _slot = match source.map(source_network) {
            Some(network) => match self.long_polls_by_source.try_acquire(network, scarce) {
                Some(slot) => Some(slot),
                None => return,
            },
            None => None,
        };
        let seen = self.sessions.read().get(session_id).map_or(0, |s| s.last_template_version);
        let mut versions = self.jobs.subscribe();
        let mut stopping = self.stopping.subscribe();
        let wait = wait.min(self.config.max_job_wait);
        let newer = async {
            tokio::select! {
                _ = versions.wait_for(|v| *v > seen) => {}
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
        };
        let _ = tokio::time::timeout(wait, newer).await;
    }

    /// The server is stopping: every long-poll answers now (with the job
    /// it has), so a stop does not wait out the miners' waits.
    pub fn begin_stop(&self) {
        self.stopping.send_replace(true);
    }

    /// The session's job on the current template, worked out on a task the
    /// request does not own: a client hanging up mid-issue cannot leave a
    /// stored job its session never counted (and so mint jobs past the cap).
    pub(crate) async fn job_for(self: &Arc<Self>, session_id: &str, now: u64) -> Result<JobResponse, PoolError> {
        let (pool, session_id) = (self.clone(), session_id.to_string());
        tokio::spawn(async move { pool.live_or_new_job(&session_id, now).await })
            .await
            .map_err(|e| PoolError::Internal(format!("job task failed: {e}")))?
    }

    /// A job request's refresh of the template ([`RequestRefresh`]).
    async fn refresh_for_request(&self, now: u64) -> Result<(), PoolError> {
        let unavailable = |why: &str| PoolError::Chain(ChainError::Unavailable(why.into()));
        let refresh = &self.request_refresh;
        let failed_at = refresh.failed_at_ms.load(Ordering::Relaxed);
        if failed_at > 0 && now.saturating_sub(failed_at) < REQUEST_REFRESH_PAUSE_MS {
            return Err(unavailable("the chain did not answer a moment ago"));
        }
        let finished = refresh.finished.load(Ordering::Acquire);
        let _turn = refresh.gate.acquire().await.map_err(|_| PoolError::Internal("refresh gate closed".into()))?;
        let live = || self.jobs.current().is_some() && self.chain_up(super::now_ms());
        if refresh.finished.load(Ordering::Acquire) != finished {
            // Another request asked while this one waited: its answer holds.
            return if live() { Ok(()) } else { Err(unavailable("the chain did not answer")) };
        }
        if live() {
            // The coordinator's own poll got an answer meanwhile.
            return Ok(());
        }
        let result = self.refresh_template().await;
        if result.is_err() {
            // When it failed, not when it was asked: a node that hangs up
            // after its timeout must get its pause too.
            refresh.failed_at_ms.store(super::now_ms(), Ordering::Relaxed);
        }
        refresh.finished.fetch_add(1, Ordering::Release);
        result.map(|_| ())
    }

    /// Its live job if that still fits, else a new one.
    ///
    /// A job's share difficulty never exceeds its block's: a miner only
    /// sends hashes that meet the share target, so a higher one would hide
    /// every block between the two (a big miner on a small chain found them
    /// and the pool never heard).
    async fn live_or_new_job(&self, session_id: &str, now: u64) -> Result<JobResponse, PoolError> {
        self.admit(session_id, now)?;
        if self.jobs.current().is_none() || !self.chain_up(now) {
            // Whatever the node said (a refused credential included), the
            // miner can only wait: never a 4xx, which would stop it.
            self.refresh_for_request(now).await.map_err(|err| match err {
                PoolError::Chain(err) => PoolError::Chain(ChainError::Unavailable(err.to_string())),
                other => other,
            })?;
        }
        let template = self.jobs.current().ok_or(PoolError::NoTemplate)?;
        // Work that can never make a block: the miner goes to another.
        self.refuse_if_behind(now)?;
        let vardiff_config = self.vardiff_config();
        let (worker_id, difficulty, live) = {
            let mut sessions = self.sessions.lock();
            let session = sessions.get_mut(session_id).ok_or(PoolError::Unauthorized("unknown session"))?;
            session.vardiff.on_job_request(now, &vardiff_config);
            session.last_seen_ms = now;
            if session.jobs_template.as_deref() != Some(template.id.as_str()) {
                session.jobs_template = Some(template.id.clone());
                session.jobs_on_template = 0;
            }
            let capped = session.jobs_on_template >= MAX_JOBS_PER_SESSION_TEMPLATE;
            // The one rule share answers announce too.
            let difficulty = next_job_difficulty(session, Some(&template));
            let live =
                session.live_job.clone().filter(|j| j.template.id == template.id && j.share_difficulty == difficulty);
            match &live {
                Some(_) => session.last_template_version = template.version,
                // At the cap with none issued yet: requests racing each other.
                None if capped => return Err(PoolError::Busy("this session's job requests are still being answered")),
                None => session.jobs_on_template += 1,
            }
            (session.record.worker_id.clone(), difficulty, live)
        };
        PoolMetrics::bump(&self.metrics.jobs_served);
        if let Some(job) = live {
            return Ok(self.job_response(&job));
        }

        let job = match self.issue_job(session_id, &worker_id, difficulty, &template).await {
            Ok(job) => job,
            Err(err) => {
                // Not issued: the slot taken for it is free again.
                if let Some(session) = self.sessions.lock().get_mut(session_id) {
                    if session.jobs_template.as_deref() == Some(template.id.as_str()) {
                        session.jobs_on_template = session.jobs_on_template.saturating_sub(1);
                    }
                }
                return Err(err);
            }
        };
        if let Some(session) = self.sessions.lock().get_mut(session_id) {
            session.last_template_version = template.version;
            session.live_job = Some(job.clone());
        }
        PoolMetrics::bump(&self.metrics.jobs_issued);
        Ok(self.job_response(&job))
    }

    /// A new job for the session on `template`, durable before it returns.
    async fn issue_job(
        &self,
        session_id: &str,
        worker_id: &str,
        difficulty: u64,
        template: &Arc<super::job_book::TemplateState>,
    ) -> Result<Arc<IssuedJob>, PoolError> {
        let index = self.store.next_id().await?;
        let job_id = super::job_book::job_id(&self.secret, index, session_id);
        let job = self
            .jobs
            .issue(job_id, index, (worker_id, session_id), difficulty, template.clone())
            .ok_or(PoolError::JobLimit)?;
        self.store
            .put_job(&JobRecord {
                job_id: job.job_id.clone(),
                worker_id: job.worker_id.clone(),
                session_id: job.session_id.clone(),
                template_id: job.template.id.clone(),
                height: job.template.template.header.height,
                share_difficulty: job.share_difficulty,
                nonce_start: job.nonces.start,
                nonce_end: job.nonces.end,
            })
            .await?;
        self.commits.durable().await?;
        Ok(job)
    }

    /// What a miner is sent: built from the same `PowInput` the verifier
    /// hashes, never from fields a chain sent alongside it.
    fn job_response(&self, job: &Arc<IssuedJob>) -> JobResponse {
        let t = &job.template.template;
        let input = &job.template.input;
        JobResponse {
            job_id: job.job_id.clone(),
            chain_id: t.header.chain_id.clone(),
            height: t.header.height,
            epoch: input.epoch(),
            epoch_seed: hex::encode(input.epoch_seed()),
            pow_message: hex::encode(input.header()),
            params: *input.params(),
            network_difficulty: t.header.difficulty,
            share_difficulty: job.share_difficulty,
            nonce_start: job.nonces.start,
            nonce_end: job.nonces.end,
            block_time_secs: self.block_time_secs,
        }
    }
}

/// The share difficulty of a job: the session's vardiff, capped at the
/// network difficulty of the job's template (at least 1).
pub(crate) fn job_difficulty(vardiff: u64, network: u64) -> u64 {
    vardiff.min(network).max(1)
}

/// The share difficulty `session`'s next job request would be answered
/// with on `template` (the current one; none: the vardiff's alone), as
/// share answers announce it: its live job's once it had its
/// [`MAX_JOBS_PER_SESSION_TEMPLATE`] new jobs there (that job stays), else
/// its vardiff capped at the template's network difficulty. An answer that
/// named a difficulty the next job will not carry would send the miner
/// asking for a job it already has.
pub(crate) fn next_job_difficulty(session: &SessionState, template: Option<&TemplateState>) -> u64 {
    let Some(template) = template else { return job_difficulty(session.vardiff.difficulty(), u64::MAX) };
    let on_template = session.jobs_template.as_deref() == Some(template.id.as_str());
    match &session.live_job {
        Some(live)
            if on_template
                && session.jobs_on_template >= MAX_JOBS_PER_SESSION_TEMPLATE
                && live.template.id == template.id =>
        {
            live.share_difficulty
        }
        _ => job_difficulty(session.vardiff.difficulty(), template.template.header.difficulty),
    }
}
