//! The CPU backend: a rayon pool of N threads, each with its own engine.
//!
//! Threads claim small chunks of the job's nonce range from a shared cursor,
//! so no nonce is hashed twice in one search and fast threads never wait on
//! slow ones (a search picked up at a cancelled one's `next_nonce` hashes
//! again what threads did past it, at most a chunk each). A
//! cancelled job stops within one group of the engine (a few dozen
//! milliseconds at consensus params; 16 hashes with AVX-512).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use visionx::{EngineKind, EngineUnavailable, Found, Job, NonceRange, PowEngine, SearchControl, SearchEnd};

/// Groups a thread claims at a time: claiming is rare but the end of a range
/// is still shared evenly.
const CHUNK_GROUPS: u64 = 4;

#[derive(Debug, Clone, Copy)]
pub struct CpuConfig {
    /// Worker threads; `None` = one per available core.
    pub threads: Option<usize>,
    pub engine: EngineKind,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig { threads: None, engine: EngineKind::Fast }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CpuBackendError {
    #[error("--threads must be at least 1")]
    ZeroThreads,
    #[error("could not start the CPU thread pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
    #[error(transparent)]
    Engine(#[from] EngineUnavailable),
}

pub struct CpuBackend {
    pool: rayon::ThreadPool,
    engine: EngineKind,
    /// One engine per pool thread, indexed by the thread's pool index. The
    /// mutexes are never contended: a thread only locks its own.
    engines: Vec<Mutex<Box<dyn PowEngine>>>,
    /// Nonces a thread claims at a time.
    chunk_nonces: u64,
    /// Hashes completed per thread since the backend started.
    thread_hashes: Vec<AtomicU64>,
}

/// The most CPU threads a miner runs: four per core (more only costs
/// memory and switching; a typo of an extra zero must not start thousands).
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

impl CpuBackend {
    pub fn new(config: CpuConfig) -> Result<Self, CpuBackendError> {
        let threads = match config.threads {
            Some(0) => return Err(CpuBackendError::ZeroThreads),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("vision-cpu-{i}")).build()?;
        let engines = (0..threads).map(|_| config.engine.build().map(Mutex::new)).collect::<Result<_, _>>()?;
        let group = match config.engine.resolved() {
            EngineKind::Cpu(engine) => engine.lanes() as u64,
            EngineKind::Reference | EngineKind::Fast => 1,
        };
        Ok(CpuBackend {
            pool,
            engine: config.engine,
            engines,
            chunk_nonces: CHUNK_GROUPS * group,
            thread_hashes: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub fn threads(&self) -> usize {
        self.engines.len()
    }

    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Hashes completed by each thread since the backend started.
    pub fn thread_hashes(&self) -> Vec<u64> {
        self.thread_hashes.iter().map(|h| h.load(Ordering::Relaxed)).collect()
    }

    /// Hashes one nonce on every thread, so that first-use costs (the
    /// reference engine's dataset, table allocation) fall outside timings.
    pub fn warm_up(&self, job: &Job) {
        let nonce = job.nonces.start;
        self.pool.broadcast(|ctx| {
            let mut engine = self.engines[ctx.index()].lock().expect("engine lock");
            engine.hash(&job.input, nonce);
        });
    }

    /// Searches `job.nonces` on every thread and blocks until the range is
    /// done or `control` is cancelled. Found nonces go to `on_found` (from
    /// the worker threads, in no particular order).
    ///
    /// Threads take chunks in order, so a cancelled search's `next_nonce`
    /// is where the earliest chunk left unfinished stopped: everything below
    /// it is hashed (parts of later chunks may be too, and are hashed again
    /// by a search picked up there).
    pub fn search(&self, job: &Job, control: &SearchControl, on_found: &(dyn Fn(Found) + Sync)) -> SearchEnd {
        let cursor = AtomicU64::new(job.nonces.start);
        let ends = self.pool.broadcast(|ctx| {
            let mut engine = self.engines[ctx.index()].lock().expect("engine lock");
            let mut total = SearchEnd::completed(job.nonces, 0);
            while let Some(chunk) = claim_chunk(&cursor, job.nonces, self.chunk_nonces) {
                let end = engine.search(&job.with_nonces(chunk), control, &mut |found| on_found(found));
                total.hashes += end.hashes;
                self.thread_hashes[ctx.index()].fetch_add(end.hashes, Ordering::Relaxed);
                if end.cancelled {
                    total.cancelled = true;
                    total.next_nonce = end.next_nonce;
                    break;
                }
            }
            total
        });
        ends.into_iter().fold(SearchEnd::completed(job.nonces, 0), |acc, end| SearchEnd {
            hashes: acc.hashes + end.hashes,
            cancelled: acc.cancelled || end.cancelled,
            next_nonce: acc.next_nonce.min(end.next_nonce),
        })
    }
}

/// Takes the next chunk of `range` from `cursor`, or `None` when it is used up.
fn claim_chunk(cursor: &AtomicU64, range: NonceRange, chunk_nonces: u64) -> Option<NonceRange> {
    let mut start = cursor.load(Ordering::Relaxed);
    loop {
        if start >= range.end {
            return None;
        }
        let end = start.saturating_add(chunk_nonces).min(range.end);
        match cursor.compare_exchange_weak(start, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(NonceRange::new(start, end)),
            Err(now) => start = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use visionx::{FastEngine, Params, PowInput, Target};

    use super::*;

    fn job(params: Params, nonces: NonceRange, difficulty: u64) -> Job {
        let input = PowInput::new([9; 32], 1, b"cpu backend".to_vec(), params).unwrap();
        Job { input: Arc::new(input), target: Target::from_difficulty(difficulty), nonces }
    }

    fn small() -> Params {
        Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 256, ..Params::CONSENSUS }
    }

    #[test]
    fn finds_exactly_what_a_single_engine_finds_with_no_overlap() {
        let backend = CpuBackend::new(CpuConfig { threads: Some(3), engine: EngineKind::Fast }).unwrap();
        let job = job(small(), NonceRange::new(1000, 1403), 4);
        let found = Mutex::new(Vec::new());
        let end = backend.search(&job, &SearchControl::new(), &|f| found.lock().unwrap().push(f));
        assert_eq!(end, SearchEnd::completed(job.nonces, 403));
        assert_eq!(backend.thread_hashes().iter().sum::<u64>(), 403);

        let mut found = found.into_inner().unwrap();
        found.sort_by_key(|f| f.nonce);
        let mut expected = Vec::new();
        FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
        assert!(!expected.is_empty(), "difficulty 4 over 403 nonces finds some");
        assert_eq!(found, expected);
    }

    /// Cancelled part-way again and again, each search picked up at the last
    /// one's `next_nonce`: every nonce is found (some twice, hashed past the
    /// point by another thread), and each part gets further.
    #[test]
    fn a_search_picked_up_at_its_next_nonce_misses_nothing() {
        let backend = CpuBackend::new(CpuConfig { threads: Some(3), engine: EngineKind::Fast }).unwrap();
        let job = job(small(), NonceRange::new(500, 800), 0);
        let found = Mutex::new(std::collections::BTreeSet::new());
        let (mut from, mut parts) = (job.nonces.start, 0);
        loop {
            parts += 1;
            let control = SearchControl::new();
            let seen = AtomicU64::new(0);
            let end = backend.search(&job.with_nonces(NonceRange::new(from, job.nonces.end)), &control, &|f| {
                found.lock().unwrap().insert(f.nonce);
                if seen.fetch_add(1, Ordering::Relaxed) + 1 == 40 {
                    control.cancel();
                }
            });
            // (A thread switched out before its first group may leave a part
            // that got nowhere: safe, and the next part goes on.)
            assert!(end.next_nonce >= from && parts < 10_000, "part {parts} went back from {from}: {end:?}");
            assert!(end.hashes >= end.next_nonce - from, "part {parts}: {end:?}");
            from = end.next_nonce;
            if !end.cancelled {
                assert_eq!(from, job.nonces.end);
                break;
            }
        }
        assert!(parts > 3, "cancelled along the way ({parts} parts)");
        assert_eq!(found.into_inner().unwrap().into_iter().collect::<Vec<_>>(), job.nonces.iter().collect::<Vec<_>>());
    }

    #[test]
    fn claimed_chunks_tile_the_range() {
        let cursor = AtomicU64::new(5);
        let range = NonceRange::new(5, 5 + 3 * 16 + 1);
        let chunks: Vec<NonceRange> = std::iter::from_fn(|| claim_chunk(&cursor, range, 16)).collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].start, range.start);
        assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(chunks.last().unwrap().end, range.end);
        let top = NonceRange::new(u64::MAX - 3, u64::MAX);
        let cursor = AtomicU64::new(top.start);
        assert_eq!(claim_chunk(&cursor, top, 16), Some(top));
        assert_eq!(claim_chunk(&cursor, top, 16), None);
    }

    #[test]
    fn cancel_stops_consensus_mining_promptly() {
        let backend = CpuBackend::new(CpuConfig { threads: Some(2), engine: EngineKind::Fast }).unwrap();
        let job = job(Params::CONSENSUS, NonceRange::new(0, u64::MAX), u64::MAX);
        let control = Arc::new(SearchControl::new());
        let stopped_at = std::thread::scope(|s| {
            let control2 = control.clone();
            let miner = s.spawn(move || {
                let end = backend.search(&job, &control2, &|_| {});
                (end, Instant::now())
            });
            std::thread::sleep(Duration::from_millis(300));
            let cancelled_at = Instant::now();
            control.cancel();
            let (end, returned_at) = miner.join().unwrap();
            assert!(end.cancelled);
            returned_at - cancelled_at
        });
        // The 50 ms figure is measured by `vision-miner bench` (stop_latency_ms);
        // this bound only proves the search stops long before its range ends,
        // even on a loaded test machine.
        assert!(stopped_at < Duration::from_secs(1), "took {stopped_at:?} to stop");
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(matches!(
            CpuBackend::new(CpuConfig { threads: Some(0), engine: EngineKind::Fast }),
            Err(CpuBackendError::ZeroThreads)
        ));
    }
}
