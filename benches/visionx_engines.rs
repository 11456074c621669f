//! Criterion benchmarks of the VisionX engines at consensus params.
//!
//! `cargo bench --bench visionx_engines`. The figures that the issues ask for
//! come from `vision-miner bench` (see docs/PERFORMANCE.md); this bench tracks
//! the engine's per-hash cost over time and isolates its paths.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use visionx::{CpuEngine, FastEngine, Job, NonceRange, PowEngine, PowInput, ReferenceEngine, SearchControl, Target};

/// The same job `vision-miner bench` hashes, so the two measure one thing.
fn consensus_input() -> PowInput {
    (*vision_miner::bench::bench_job().input).clone()
}

/// Every on-demand engine this machine runs, side by side (`fast/<engine>/...`).
fn cpu_engines(c: &mut Criterion) {
    let input = consensus_input();
    let mut group = c.benchmark_group("fast");
    group.measurement_time(Duration::from_secs(5));
    let job = Job { input: Arc::new(input.clone()), target: Target(0), nonces: NonceRange::new(0, 0) };

    let mut nonce = 0u64;
    for kind in CpuEngine::ALL.into_iter().filter(|e| e.is_supported()) {
        let mut engine = FastEngine::with_engine(kind).expect("supported");
        let lanes = kind.lanes() as u64;
        if kind == CpuEngine::Scalar {
            // A lone hash (what every engine does for a single share).
            group.throughput(Throughput::Elements(1));
            group.bench_function("scalar/hash_one_nonce", |b| {
                b.iter(|| {
                    nonce += 1;
                    engine.hash(&input, nonce)
                })
            });
        }

        // The mining path: one group of nonces, and four.
        for n in [lanes, 4 * lanes] {
            group.throughput(Throughput::Elements(n));
            group.bench_with_input(BenchmarkId::new(format!("{kind}/search"), n), &n, |b, &n| {
                let mut start = 0;
                b.iter(|| {
                    let job = job.with_nonces(NonceRange::new(start, start + n));
                    start += n;
                    engine.search(&job, &SearchControl::new(), &mut |_| {})
                })
            });
        }

        // The coordinator's verification path: a group's worth of queued shares.
        let items: Vec<(&PowInput, u64)> = (0..lanes).map(|n| (&input, n)).collect();
        group.throughput(Throughput::Elements(lanes));
        group.bench_function(format!("{kind}/hash_many_{lanes}"), |b| b.iter(|| engine.hash_many(&items)));
    }
    group.finish();
}

fn reference_engine(c: &mut Criterion) {
    let input = consensus_input();
    let mut engine = ReferenceEngine::new();
    engine.hash(&input, 0); // builds the 256 MiB dataset outside the timing
    let mut group = c.benchmark_group("reference");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("hash_one_nonce", |b| b.iter(|| engine.hash(&input, 1)));
    group.finish();
}

criterion_group!(benches, cpu_engines, reference_engine);
criterion_main!(benches);
