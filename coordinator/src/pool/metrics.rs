//! Counters and latency windows for `/pool/metrics` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// The last [`LatencyWindow::SAMPLES`] durations, for percentiles.
#[derive(Default)]
pub(crate) struct LatencyWindow {
    samples: Mutex<(Vec<u32>, usize)>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl LatencyWindow {
    const SAMPLES: usize = 4096;

    pub(crate) fn record(&self, elapsed: Duration) {
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        let mut guard = self.samples.lock().expect("latency lock");
        let (samples, next) = &mut *guard;
        if samples.len() < Self::SAMPLES {
            samples.push(micros);
        } else {
            samples[*next] = micros;
        }
        *next = (*next + 1) % Self::SAMPLES;
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let mut sorted = self.samples.lock().expect("latency lock").0.clone();
        if sorted.is_empty() {
            return LatencySummary::default();
        }
        sorted.sort_unstable();
        let at = |q: f64| f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize]) / 1000.0;
        LatencySummary { samples: sorted.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

#[derive(Default)]
pub(crate) struct PoolMetrics {
    pub(crate) shares_valid: AtomicU64,
    pub(crate) shares_invalid: AtomicU64,
    pub(crate) shares_stale: AtomicU64,
    pub(crate) shares_duplicate: AtomicU64,
    /// Resubmissions of shares credited before, answered as accepted.
    pub(crate) shares_replayed: AtomicU64,
    pub(crate) shares_rate_limited: AtomicU64,
    pub(crate) shares_busy: AtomicU64,
    /// Public reads answered `503 busy` (past `PoolConfig::public_reads`).
    pub(crate) public_reads_shed: AtomicU64,
    /// Connections refused: their address held too many.
    pub(crate) connections_refused: AtomicU64,
    /// Sum of accepted shares' difficulties: the hashes they stand for.
    pub(crate) accepted_work: AtomicU64,
    /// VisionX recomputations by the verifier threads.
    pub(crate) share_verifications: Arc<AtomicU64>,
    /// Blocks the chain accepted.
    pub(crate) blocks_found: AtomicU64,
    pub(crate) blocks_rejected: AtomicU64,
    /// Block submissions retried after a transient chain failure.
    pub(crate) block_submit_retries: AtomicU64,
    /// Templates refused (wrong miner, fields that disagree with the header).
    pub(crate) templates_refused: AtomicU64,
    /// Template requests the chain failed (unreachable, an error).
    pub(crate) template_failures: AtomicU64,
    /// When the chain last answered a template request (ms since the epoch).
    pub(crate) chain_answered_ms: AtomicU64,
    /// Job answers, and the new jobs among them (the rest reuse a live job).
    pub(crate) jobs_served: AtomicU64,
    pub(crate) jobs_issued: AtomicU64,
    pub(crate) bans: AtomicU64,
    /// Unproven sessions that left the active set for a new one at the cap.
    pub(crate) unproven_evicted: AtomicU64,
    /// `/pool/stats` snapshots built (each walks the active set once).
    pub(crate) stats_builds: AtomicU64,
    pub(crate) verify_latency: LatencyWindow,
    pub(crate) share_latency: LatencyWindow,
    pub(crate) job_latency: LatencyWindow,
}

impl PoolMetrics {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let window = LatencyWindow::default();
        for ms in 1..=100 {
            window.record(Duration::from_millis(ms));
        }
        let s = window.summary();
        assert_eq!(s.samples, 100);
        assert!((s.p50_ms - 50.0).abs() <= 1.0 && (s.p99_ms - 99.0).abs() <= 1.0 && s.max_ms == 100.0, "{s:?}");
    }
}
