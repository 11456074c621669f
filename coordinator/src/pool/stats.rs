//! Figures for everyone: per worker (over its active sessions) and for the pool.
//!
//! `/pool/stats` (and a worker's figures, and the Prometheus gauges) are
//! served from a [`StatsSnapshot`]: rebuilt when something it shows has
//! changed (sessions, bans, settings, the template, blocks found) or a
//! second has passed (rates and online flags move with time), one build at
//! a time, off the runtime, at most four a second. However many clients
//! ask, the active set is walked at most once per change, and never by two
//! requests at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::job_book::TemplateState;
use super::metrics::PoolMetrics;
use super::stats_history::{PoolReading, StatsHistory, WorkerReading};
use super::worker_sessions::SessionState;
use super::{Hashrate, Pool, PoolError, PoolStats, ShareCounts, WorkerBan, WorkerStats};

/// Counters for `/pool/metrics` and `/metrics`, read in one place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetricsSnapshot {
    pub(crate) shares_valid: u64,
    pub(crate) shares_invalid: u64,
    pub(crate) shares_stale: u64,
    pub(crate) shares_duplicate: u64,
    pub(crate) shares_replayed: u64,
    pub(crate) shares_rate_limited: u64,
    pub(crate) shares_busy: u64,
    pub(crate) public_reads_shed: u64,
    pub(crate) connections_refused: u64,
    pub(crate) share_verifications: u64,
    pub(crate) blocks_found: u64,
    pub(crate) blocks_rejected: u64,
    pub(crate) block_submit_retries: u64,
    pub(crate) templates_refused: u64,
    pub(crate) template_failures: u64,
    pub(crate) chain_up: bool,
    /// Behind the other coordinators on the store (readiness).
    pub(crate) behind: bool,
    pub(crate) jobs_served: u64,
    pub(crate) jobs_issued: u64,
    pub(crate) jobs_in_memory: usize,
    pub(crate) bans: u64,
    pub(crate) stats_builds: u64,
    pub(crate) ledger_shares: u64,
    pub(crate) verify_queue_depth: usize,
    pub(crate) verify_queue_capacity: usize,
    pub(crate) sessions_active: usize,
    pub(crate) sessions_unproven: usize,
    pub(crate) unproven_evicted: u64,
    pub(crate) sources_tracked: usize,
    pub(crate) store_backend: &'static str,
    pub(crate) store_commits: u64,
}

/// How long a snapshot serves with nothing changed.
const SNAPSHOT_TTL_MS: u64 = 1000;

/// The least time between two builds. With share traffic every request
/// sees a change; a request then waits for the next build (at most this
/// long) rather than start one, so builds stay at 4 a second however busy
/// the pool and however many ask, and each request still sees its changes.
const MIN_BUILD_GAP_MS: u64 = 250;

/// How long a build due now waits, the last one having been built at
/// `last_built_ms` (never over the gap: the wall clock may step back).
fn build_wait_ms(last_built_ms: Option<u64>, now: u64) -> u64 {
    last_built_ms.map_or(0, |built| (built + MIN_BUILD_GAP_MS).saturating_sub(now).min(MIN_BUILD_GAP_MS))
}

/// `/pool/stats` as built at one moment, and its JSON.
pub(crate) struct StatsSnapshot {
    /// What it was built from: (state changes, template version, blocks found).
    basis: (u64, u64, u64),
    built_ms: u64,
    pub(crate) stats: PoolStats,
    pub(crate) json: axum::body::Bytes,
    /// `json` gzipped, once, where it is built (off the runtime): every
    /// open dashboard reads every worker every few seconds.
    pub(crate) gzip: axum::body::Bytes,
}

/// `bytes` gzipped at the fast level (a snapshot is built up to four times a second).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, PoolError> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| PoolError::Internal(format!("stats gzip: {e}")))
}

impl Pool {
    /// Read before the state a snapshot is built from, so a snapshot's basis
    /// never claims a change it did not see.
    fn stats_basis(&self) -> (u64, u64, u64) {
        (
            self.state_changes.load(Ordering::Acquire),
            self.jobs.current().map_or(0, |t| t.version),
            PoolMetrics::get(&self.metrics.blocks_found),
        )
    }

    fn current_snapshot(&self, basis: (u64, u64, u64), now: u64) -> Option<Arc<StatsSnapshot>> {
        let cached = self.stats_snapshot.lock().expect("stats snapshot lock").clone()?;
        let (a, b) = (cached.basis, basis);
        let covers = a.0 >= b.0 && a.1 >= b.1 && a.2 >= b.2;
        (covers && now < cached.built_ms + SNAPSHOT_TTL_MS).then_some(cached)
    }

    /// The figures as of this request (or a build that began after it).
    pub(crate) async fn stats_snapshot(self: &Arc<Self>, now: u64) -> Result<Arc<StatsSnapshot>, PoolError> {
        let basis = self.stats_basis();
        if let Some(snapshot) = self.current_snapshot(basis, now) {
            return Ok(snapshot);
        }
        let builder = self
            .stats_builder
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Internal("stats builder closed".into()))?;
        // Built by another request while this one waited?
        if let Some(snapshot) = self.current_snapshot(basis, now) {
            return Ok(snapshot);
        }
        let last_built = self.stats_snapshot.lock().expect("stats snapshot lock").as_ref().map(|s| s.built_ms);
        let wait = build_wait_ms(last_built, super::now_ms());
        if wait > 0 {
            // (Holding the builder: requests arriving meanwhile queue behind
            // it and take the build that follows.)
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        // The build owns the permit and stores its result: a request that
        // hangs up mid-build lets the next one wait for it, not start another.
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _builder = builder;
            let basis = pool.stats_basis();
            let built_ms = super::now_ms();
            let stats = pool.stats(built_ms);
            let json = serde_json::to_vec(&stats).map_err(|e| PoolError::Internal(format!("stats: {e}")))?;
            let gzip = gzip(&json)?.into();
            PoolMetrics::bump(&pool.metrics.stats_builds);
            let snapshot = Arc::new(StatsSnapshot { basis, built_ms, stats, json: json.into(), gzip });
            *pool.stats_snapshot.lock().expect("stats snapshot lock") = Some(snapshot.clone());
            Ok(snapshot)
        })
        .await
        .map_err(|e| PoolError::Internal(format!("stats task failed: {e}")))?
    }

    /// `network`: the tip's difficulty, which caps the share difficulty shown.
    fn worker_view(
        &self,
        session: &SessionState,
        now: u64,
        online_window_ms: u64,
        tip: Option<&TemplateState>,
    ) -> WorkerStats {
        WorkerStats {
            worker_id: session.record.worker_id.clone(),
            worker_name: session.worker_name.clone(),
            wallet_address: session.record.wallet_address.clone(),
            shares: session.counts,
            hashrate: session.hashrate(now),
            // What its share answers say: the difficulty of its next job.
            share_difficulty: super::job_requests::next_job_difficulty(session, tip),
            last_share_ms: session.last_share_ms,
            online: session.last_share_ms.is_some_and(|t| now.saturating_sub(t) <= online_window_ms),
            blocks_found: session.blocks_found,
            sessions: 1,
            estimated_payout: None,
            ban: None,
        }
    }

    fn online_window_ms(&self) -> u64 {
        // Online: an accepted share within 3x the expected share interval.
        3 * self.settings().target_share_seconds.max(1) * 1000
    }

    /// Active worker ids, their sessions summed.
    fn workers(&self, now: u64) -> Vec<WorkerStats> {
        let window = self.online_window_ms();
        let tip = self.jobs.current();
        // Moving each session's windows on is not a change a snapshot shows.
        let mut sessions = self.sessions.lock_quietly();
        for session in sessions.values_mut() {
            session.recent.expire(now);
        }
        let mut by_worker: BTreeMap<&str, (WorkerStats, u64)> = BTreeMap::new();
        for session in sessions.values() {
            let view = self.worker_view(session, now, window, tip.as_deref());
            let seen = session.last_seen_ms;
            match by_worker.get_mut(session.record.worker_id.as_str()) {
                None => {
                    by_worker.insert(&session.record.worker_id, (view, seen));
                }
                Some((total, latest)) => {
                    total.shares.add(&view.shares);
                    total.hashrate.add(&view.hashrate);
                    total.last_share_ms = total.last_share_ms.max(view.last_share_ms);
                    total.online |= view.online;
                    total.blocks_found += view.blocks_found;
                    total.sessions += 1;
                    if seen > *latest {
                        *latest = seen;
                        total.share_difficulty = view.share_difficulty;
                        total.worker_name = view.worker_name;
                    }
                }
            }
        }
        let mut workers: Vec<WorkerStats> = by_worker.into_values().map(|(w, _)| w).collect();
        drop(sessions);
        let estimates = self.rewards.estimated_payouts();
        // The longest ban in force per worker id, in one pass over the bans.
        let mut bans: HashMap<String, WorkerBan> = HashMap::new();
        for ban in self.bans.read().values().filter(|b| b.until_ms > now) {
            let entry = bans
                .entry(ban.worker_id.clone())
                .or_insert_with(|| WorkerBan { reason: ban.reason.clone(), until_ms: ban.until_ms });
            if ban.until_ms > entry.until_ms {
                *entry = WorkerBan { reason: ban.reason.clone(), until_ms: ban.until_ms };
            }
        }
        for worker in &mut workers {
            worker.estimated_payout = Some(estimates.get(&worker.worker_id).copied().unwrap_or(0));
            worker.ban = bans.remove(&worker.worker_id);
        }
        workers
    }

    /// Takes the charts' sample (the history task calls it every interval).
    pub(crate) fn sample_history(&self, now: u64) {
        let workers = self.workers(now);
        let m = &self.metrics;
        let reading = PoolReading {
            accepted_work: PoolMetrics::get(&m.accepted_work),
            accepted: PoolMetrics::get(&m.shares_valid),
            stale: PoolMetrics::get(&m.shares_stale),
            // As the workers table counts them: refused as invalid, or duplicates.
            invalid: PoolMetrics::get(&m.shares_invalid) + PoolMetrics::get(&m.shares_duplicate),
            workers_online: workers.iter().filter(|w| w.online).count() as u64,
            // An offline rig's last report is not hash rate.
            reported_hashrate: workers.iter().filter(|w| w.online).filter_map(|w| w.hashrate.reported).sum(),
        };
        // Charted workers: those with accepted work in the last hour.
        let workers = workers
            .into_iter()
            .filter(|w| w.hashrate.shares_1h > 0)
            .map(|w| {
                let reading = WorkerReading {
                    accepted: w.shares.accepted,
                    effective_10m: w.hashrate.effective_10m,
                    shares_10m: w.hashrate.shares_10m,
                    reported_hashrate: w.hashrate.reported,
                };
                (w.worker_id, reading)
            })
            .collect();
        self.history.record(now, reading, workers);
    }

    pub(crate) fn history(&self) -> &StatsHistory {
        &self.history
    }

    pub(crate) fn stats(&self, now: u64) -> PoolStats {
        let settings = self.settings();
        let workers = self.workers(now);
        let mut shares = ShareCounts::default();
        let mut hashrate = Hashrate::default();
        for w in &workers {
            shares.add(&w.shares);
            hashrate.add(&w.hashrate);
        }
        let template = self.jobs.current();
        PoolStats {
            pool_name: settings.pool_name,
            pool_fee_bps: settings.pool_fee_bps,
            foundation_fee_bps: self.rewards.config().foundation_fee_bps,
            foundation_address: self.rewards.config().foundation_address.clone(),
            pool_fee_address: self.rewards.config().pool_fee_address.clone(),
            payout_scheme: self.rewards.config().scheme.to_string(),
            payout_threshold: self.rewards.config().payout_threshold,
            confirmations: self.rewards.config().confirmations,
            running: self.running.load(std::sync::atomic::Ordering::Relaxed),
            height: template.as_ref().map(|t| t.template.header.height),
            network_difficulty: template.as_ref().map(|t| t.template.header.difficulty),
            workers_online: workers.iter().filter(|w| w.online).count(),
            workers_active: workers.len(),
            shares,
            hashrate,
            blocks_found: PoolMetrics::get(&self.metrics.blocks_found),
            workers,
        }
    }

    pub(crate) async fn metrics_snapshot(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        let get = PoolMetrics::get;
        MetricsSnapshot {
            shares_valid: get(&m.shares_valid),
            shares_invalid: get(&m.shares_invalid),
            shares_stale: get(&m.shares_stale),
            shares_duplicate: get(&m.shares_duplicate),
            shares_replayed: get(&m.shares_replayed),
            shares_rate_limited: get(&m.shares_rate_limited),
            shares_busy: get(&m.shares_busy),
            public_reads_shed: get(&m.public_reads_shed),
            connections_refused: get(&m.connections_refused),
            share_verifications: get(&m.share_verifications),
            blocks_found: get(&m.blocks_found),
            blocks_rejected: get(&m.blocks_rejected),
            block_submit_retries: get(&m.block_submit_retries),
            templates_refused: get(&m.templates_refused),
            template_failures: get(&m.template_failures),
            chain_up: self.chain_up(super::now_ms()),
            behind: self.refuse_if_behind(super::now_ms()).is_err(),
            jobs_served: get(&m.jobs_served),
            jobs_issued: get(&m.jobs_issued),
            jobs_in_memory: self.jobs.len(),
            bans: get(&m.bans),
            stats_builds: get(&m.stats_builds),
            // An unreadable store shows as 0 here; /health reports the fault.
            ledger_shares: self.store.ledger_len().await.unwrap_or(0),
            verify_queue_depth: self.verifier.depth(),
            verify_queue_capacity: self.verifier.capacity(),
            sessions_active: self.sessions.read().len(),
            sessions_unproven: self.unproven_active.load(Ordering::Relaxed),
            unproven_evicted: PoolMetrics::get(&self.metrics.unproven_evicted),
            sources_tracked: self.sources.len(),
            store_backend: self.store.backend(),
            store_commits: self.store.commits(),
        }
    }

    pub(crate) fn latency_summaries(&self) -> [(&'static str, super::metrics::LatencySummary); 3] {
        let m = &self.metrics;
        [
            ("verify", m.verify_latency.summary()),
            ("share_response", m.share_latency.summary()),
            ("job_response", m.job_latency.summary()),
        ]
    }

    pub(crate) fn record_share_latency(&self, elapsed: std::time::Duration) {
        self.metrics.share_latency.record(elapsed);
    }

    pub(crate) fn record_job_latency(&self, elapsed: std::time::Duration) {
        self.metrics.job_latency.record(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_waits_out_the_gap_since_the_last() {
        let cases = [
            // (last built, now, wait)
            (None, 5_000, 0),
            (Some(5_000), 5_000, MIN_BUILD_GAP_MS),
            (Some(5_000), 5_100, MIN_BUILD_GAP_MS - 100),
            (Some(5_000), 5_000 + MIN_BUILD_GAP_MS, 0),
            (Some(5_000), 9_000, 0),
            // A clock that stepped back waits one gap, not until it catches up.
            (Some(5_000), 1_000, MIN_BUILD_GAP_MS),
        ];
        for (last, now, wait) in cases {
            assert_eq!(build_wait_ms(last, now), wait, "{last:?} {now}");
        }
    }
}
