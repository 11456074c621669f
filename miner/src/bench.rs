//! Timed hashing on a backend with consensus params.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use visionx::{Job, NonceRange, Params, SearchControl, Target};

use crate::backend::CpuBackend;

/// What one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: &'static str,
    /// The engine asked for (`fast`, `scalar`, `avx512`, ..., or a GPU variant).
    pub engine: String,
    /// The engine that ran: `fast` resolved to the best this CPU runs.
    pub engine_ran: String,
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

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_thread: Vec<String> = self.per_thread.iter().map(|h| format!("{h:.1}")).collect();
        write!(
            f,
            "{} {}{}: {:.1} H/s total, {:.1} H/s per thread ({} threads: {}), {} hashes in {:.2}s, stop {:.1} ms, peak RSS {}",
            self.backend,
            self.engine,
            if self.engine_ran == self.engine { String::new() } else { format!(" ({})", self.engine_ran) },
            self.hashes_per_second,
            self.hashes_per_second_per_thread,
            self.threads,
            per_thread.join(" "),
            self.hashes,
            self.seconds,
            self.stop_latency_ms,
            self.peak_rss_mib.map_or("n/a".to_string(), |m| format!("{m:.1} MiB")),
        )
    }
}

/// The job the bench hashes: a devnet-like header at consensus params,
/// through the same conversion a template's fields take.
pub fn bench_job() -> Job {
    let fields = vision_protocol::HeaderFields {
        chain_id: "bench".into(),
        height: 1,
        parent_hash: "11".repeat(32),
        timestamp: 1_700_000_000,
        difficulty: 1_000_000,
        tx_root: "22".repeat(32),
        miner: "land1benchbenchbenchbenchbenchbenchbenchbe".into(),
    };
    let input = fields.pow_input(&Params::CONSENSUS).expect("a valid header at consensus params");
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
        engine_ran: backend.engine().resolved().to_string(),
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

/// What a GPU bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct GpuBenchReport {
    pub backend: &'static str,
    pub engine: String,
    pub device: usize,
    pub device_name: String,
    pub device_type: String,
    pub shader: String,
    /// Hashes completed between the first and last batch completions measured.
    pub hashes: u64,
    pub seconds: f64,
    pub hashes_per_second: f64,
    /// Hashes in flight per batch (the tuned batch size).
    pub batch_hashes: u32,
    pub segments: u32,
    /// Mix-loop iterations per dispatch.
    pub split: u32,
    pub mean_dispatch_ms: f64,
    /// `timestamp_query` (GPU clock) or `wall_clock`.
    pub dispatch_timing: &'static str,
    /// Write-table bytes per hash in flight (keys and values).
    pub table_bytes_per_hash: u64,
    /// The table memory the tuner could use: `--gpu-memory-mb`, or the
    /// adapter's default (most of a card's free memory, below the Vulkan cliff).
    pub memory_budget_mib: u64,
    /// What the tuner measured for the chosen batch: from one slice, or
    /// from a whole batch (`tuned_by`).
    pub tuned_hashes_per_second: f64,
    /// `slice`, or `batch` (`VISION_GPU_TUNE=batches`): how the tuner rated
    /// the candidates.
    pub tuned_by: &'static str,
    /// From timestamps (null without them): hashes per second of GPU time,
    /// as if batches ran back to back (against `hashes_per_second`: the time
    /// the device waited between batches).
    pub gpu_hashes_per_second: Option<f64>,
    /// The part of a batch's GPU time its steps ran; the rest the device
    /// waited for the host's next step.
    pub gpu_busy_fraction: Option<f64>,
    /// Mean first and last step of a batch: the last probes the fullest
    /// tables (the tuner times an early one).
    pub first_step_ms: Option<f64>,
    pub last_step_ms: Option<f64>,
    /// Whether the kernel ran with wgpu's runtime checks (`VISION_GPU_CHECKS=off`: false).
    pub runtime_checks: bool,
    /// `per-binding`, or `one-per-segment` (`VISION_GPU_BUFFERS`).
    pub buffers: &'static str,
    /// `slots`, or `groups` (`VISION_GPU_PROBE`): how the kernel probes the tables.
    pub table_probe: &'static str,
    /// Why the search stopped before the bench ended (the device lost, out
    /// of memory...): the rate is then of the batches before it, and the
    /// bench fails.
    pub error: Option<String>,
}

impl std::fmt::Display for GpuBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gpu #{} {} ({}): {:.1} H/s, {} hashes in {:.2}s, batch {} hashes in {} segment(s), split {}, mean dispatch {:.2} ms ({}), tables {} KiB per hash{}{}{}{}{}",
            self.device,
            self.device_name,
            self.shader,
            self.hashes_per_second,
            self.hashes,
            self.seconds,
            self.batch_hashes,
            self.segments,
            self.split,
            self.mean_dispatch_ms,
            self.dispatch_timing,
            self.table_bytes_per_hash / 1024,
            if self.runtime_checks { "" } else { ", runtime checks off" },
            if self.buffers == "per-binding" { "" } else { ", one buffer per segment" },
            if self.table_probe == "slots" { "" } else { ", tables probed by groups" },
            match (self.gpu_busy_fraction, self.first_step_ms, self.last_step_ms) {
                (Some(busy), Some(first), Some(last)) =>
                    format!(", device busy {:.1}% of batch time, steps {first:.2} -> {last:.2} ms", busy * 100.0),
                _ => String::new(),
            },
            self.error.as_ref().map_or(String::new(), |err| format!("; STOPPED PART-WAY: {err}")),
        )
    }
}

/// Hashes on a GPU backend for about `duration` and reports the rate
/// measured between batch completions (partial batches at either end would
/// distort it: one batch can take seconds on a software adapter).
pub fn bench_gpu(backend: &crate::backend::gpu::GpuBackend, duration: Duration) -> GpuBenchReport {
    let job = bench_job();
    let control = Arc::new(SearchControl::new());
    let before = backend.stats();
    let (hashes, seconds, error) = std::thread::scope(|s| {
        let search = s.spawn(|| backend.search(&job, &control, &|_| {}));
        let started = Instant::now();
        let mut first: Option<(Instant, u64)> = None;
        let mut last: Option<(Instant, u64)> = None;
        let mut seen = 0;
        // Keep going past `duration` until at least two batches have completed.
        while started.elapsed() < duration || last.map(|l| l.1) == first.map(|f| f.1) {
            if search.is_finished() || started.elapsed() > duration * 10 + Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            let now = control.hashes();
            if now != seen {
                seen = now;
                let mark = (Instant::now(), now);
                if first.is_none() {
                    first = Some(mark);
                } else {
                    last = Some(mark);
                }
            }
        }
        control.cancel();
        let error = search.join().expect("gpu search thread").err().map(|err| err.to_string());
        let (hashes, seconds) = match (first, last) {
            (Some((t0, h0)), Some((t1, h1))) => (h1 - h0, (t1 - t0).as_secs_f64()),
            _ => (control.hashes(), started.elapsed().as_secs_f64()),
        };
        (hashes, seconds, error)
    });
    let dispatch_stats = backend.stats().since(&before);
    let steps = dispatch_stats.mean_first_and_last_step();
    let shape = backend.shape();
    let summary = backend.summary();
    GpuBenchReport {
        backend: "gpu",
        engine: format!("gpu-{}", backend.variant()),
        device: summary.index,
        device_name: summary.name.clone(),
        device_type: summary.device_type.clone(),
        shader: backend.variant().to_string(),
        hashes,
        seconds,
        hashes_per_second: if seconds > 0.0 { hashes as f64 / seconds } else { 0.0 },
        batch_hashes: shape.hashes(),
        segments: shape.segments,
        split: shape.split,
        mean_dispatch_ms: dispatch_stats.mean_dispatch().as_secs_f64() * 1000.0,
        dispatch_timing: if dispatch_stats.timestamps { "timestamp_query" } else { "wall_clock" },
        table_bytes_per_hash: backend.table_bytes_per_hash(),
        memory_budget_mib: backend.memory_budget() >> 20,
        tuned_hashes_per_second: backend.tuned().measured_rate,
        tuned_by: if backend.tuned().batch_time.is_some() { "batch" } else { "slice" },
        gpu_hashes_per_second: dispatch_stats.gpu_hashes_per_second(),
        gpu_busy_fraction: dispatch_stats.busy_fraction(),
        first_step_ms: steps.map(|(first, _)| first.as_secs_f64() * 1000.0),
        last_step_ms: steps.map(|(_, last)| last.as_secs_f64() * 1000.0),
        runtime_checks: !backend.unchecked_kernel(),
        buffers: if backend.one_buffer_per_segment() { "one-per-segment" } else { "per-binding" },
        table_probe: backend.table_probe().name(),
        error,
    }
}
