//! Timed hashing on a backend with consensus params.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use visionx::{epoch_seed, Job, NonceRange, Params, PowInput, SearchControl, Target};

use crate::backend::CpuBackend;

/// What one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: &'static str,
    pub engine: String,
    pub threads: usize,
    /// Hashes completed in the timed window.
    pub hashes: u64,
    /// Length of the timed window.
    pub seconds: f64,
    pub hashes_per_second: f64,
    pub hashes_per_second_per_thread: f64,
    /// Hashes per second of each thread.
    pub per_thread: Vec<f64>,
    /// Time from cancelling the search to every thread having stopped.
    pub stop_latency_ms: f64,
    /// Peak resident memory of the whole process so far (Linux), MiB.
    pub peak_rss_mib: Option<f64>,
    pub params: Params,
}

/// The job the bench hashes: a devnet-like header at consensus params.
pub fn bench_job() -> Job {
    let params = Params::CONSENSUS;
    let header = visionx::BlockHeader {
        chain_id: "bench".into(),
        height: 1,
        parent_hash: [0x11; 32],
        timestamp: 1_700_000_000,
        difficulty: 1_000_000,
        tx_root: [0x22; 32],
        miner: "land1benchbenchbenchbenchbenchbenchbenchbe".into(),
    };
    let epoch = visionx::epoch_of(header.height, params.epoch_blocks);
    let input = PowInput::new(epoch_seed(&header.chain_id, epoch), epoch, header.pow_message(), params)
        .expect("consensus params are valid");
    // A target nothing meets in practice: the bench measures hashing alone.
    Job { input: Arc::new(input), target: Target(0), nonces: NonceRange::new(0, u64::MAX) }
}

/// Hashes on `backend` for `duration` (after a warm-up hash per thread) and
/// reports the rate.
pub fn bench_cpu(backend: &CpuBackend, duration: Duration) -> BenchReport {
    let job = bench_job();
    backend.warm_up(&job);
    let control = SearchControl::new();
    let before = backend.thread_hashes();
    let (hashes, seconds, stop_latency) = std::thread::scope(|s| {
        let started = Instant::now();
        let search = s.spawn(|| backend.search(&job, &control, &|_| {}));
        std::thread::sleep(duration);
        // The control counts hashes as they complete: read it at the window's end.
        let hashes = control.hashes();
        let seconds = started.elapsed().as_secs_f64();
        let cancelled_at = Instant::now();
        control.cancel();
        search.join().expect("search thread");
        (hashes, seconds, cancelled_at.elapsed())
    });
    // Per-thread counts include the few hashes finished while stopping (at
    // most one lockstep group a thread); they show balance, not the total.
    let per_thread_hashes: Vec<u64> =
        backend.thread_hashes().iter().zip(&before).map(|(after, before)| after - before).collect();
    let threads = backend.threads();
    BenchReport {
        backend: "cpu",
        engine: backend.engine().to_string(),
        threads,
        hashes,
        seconds,
        hashes_per_second: hashes as f64 / seconds,
        hashes_per_second_per_thread: hashes as f64 / seconds / threads as f64,
        per_thread: per_thread_hashes.iter().map(|&h| h as f64 / seconds).collect(),
        stop_latency_ms: stop_latency.as_secs_f64() * 1000.0,
        peak_rss_mib: peak_rss_mib(),
        params: *job.input.params(),
    }
}

/// `VmHWM` from `/proc/self/status`: the process's peak resident set size.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
