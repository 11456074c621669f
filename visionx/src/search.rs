//! The job / nonce-range search interface every backend shares.
//!
//! A [`Job`] (hash input, share target, nonce range) goes in; [`Found`]
//! (nonce, digest) pairs come out through a callback; a [`SearchControl`]
//! cancels the search and counts hashes done. The miner's CPU and GPU
//! backends speak this interface; the coordinator's verifier hashes claimed
//! (input, nonce) pairs directly with `FastEngine::hash_many`. [`EngineKind`]
//! names every CPU engine (for `--engine` options and benchmarks).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::fast::{CpuEngine, EngineUnavailable};
use crate::{Digest, FastEngine, PowInput, ReferenceEngine, Target};

/// A VisionX implementation.
pub trait PowEngine: Send {
    /// The digest of `input` with `nonce`.
    fn hash(&mut self, input: &PowInput, nonce: u64) -> Digest;

    /// Hashes every nonce of `job.nonces` in order, reports each whose digest
    /// meets `job.target`, and returns early when `control` is cancelled.
    /// Hashes done are added to `control` as they complete. The end's
    /// `next_nonce` is the range's start plus the hashes done: a search
    /// picked up there hashes nothing twice.
    fn search(&mut self, job: &Job, control: &SearchControl, on_found: &mut dyn FnMut(Found)) -> SearchEnd {
        let mut hashes = 0;
        for nonce in job.nonces.iter() {
            if control.is_cancelled() {
                return SearchEnd::cancelled_after(job.nonces, hashes);
            }
            let digest = self.hash(&job.input, nonce);
            hashes += 1;
            control.add_hashes(1);
            if job.target.is_met_by(&digest) {
                on_found(Found { nonce, digest });
            }
        }
        SearchEnd::completed(job.nonces, hashes)
    }
}

/// Which CPU engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// The spec read literally (materialised dataset and scratchpad).
    Reference,
    /// One of the on-demand engines, by name.
    Cpu(CpuEngine),
    /// The best on-demand engine this machine runs.
    Fast,
}

impl EngineKind {
    /// Every name `FromStr` accepts, in the order `--engine` lists them.
    pub const ALL: [EngineKind; 5] = [
        EngineKind::Reference,
        EngineKind::Cpu(CpuEngine::Scalar),
        EngineKind::Cpu(CpuEngine::Avx2),
        EngineKind::Cpu(CpuEngine::Avx512),
        EngineKind::Fast,
    ];

    /// A new engine of this kind, if this CPU runs it.
    pub fn build(self) -> Result<Box<dyn PowEngine>, EngineUnavailable> {
        Ok(match self {
            EngineKind::Reference => Box::new(ReferenceEngine::new()),
            EngineKind::Cpu(engine) => Box::new(FastEngine::with_engine(engine)?),
            EngineKind::Fast => Box::new(FastEngine::new()),
        })
    }

    /// The engine that runs for this kind here: `Fast` resolves to the
    /// best on-demand engine, the others to themselves.
    pub fn resolved(self) -> EngineKind {
        match self {
            EngineKind::Fast => EngineKind::Cpu(FastEngine::new().engine()),
            other => other,
        }
    }

    pub fn is_available(self) -> bool {
        match self {
            EngineKind::Cpu(engine) => engine.is_supported(),
            EngineKind::Reference | EngineKind::Fast => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Reference => "reference",
            EngineKind::Cpu(engine) => engine.name(),
            EngineKind::Fast => "fast",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine name that names no engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?} (expected reference, scalar, avx2, avx512 or fast)")]
pub struct UnknownEngine(pub String);

impl FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, UnknownEngine> {
        EngineKind::ALL.into_iter().find(|kind| kind.name() == s).ok_or_else(|| UnknownEngine(s.to_string()))
    }
}

/// A half-open range of nonces `start..end`.
///
/// Nonce `u64::MAX` itself is hashable with [`PowEngine::hash`] but lies
/// outside every range; pools never hand it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceRange {
    pub start: u64,
    pub end: u64,
}

impl NonceRange {
    pub fn new(start: u64, end: u64) -> Self {
        NonceRange { start, end: end.max(start) }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn contains(&self, nonce: u64) -> bool {
        (self.start..self.end).contains(&nonce)
    }

    pub fn iter(&self) -> std::ops::Range<u64> {
        self.start..self.end
    }

    /// The first `n` nonces (fewer if the range is shorter) and the rest.
    pub fn split_at(&self, n: u64) -> (NonceRange, NonceRange) {
        let mid = self.start.saturating_add(n).min(self.end);
        (NonceRange { start: self.start, end: mid }, NonceRange { start: mid, end: self.end })
    }
}

/// A search assignment: what to hash, what counts as found, which nonces.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: Arc<PowInput>,
    /// Digests meeting this target are reported (the share target).
    pub target: Target,
    pub nonces: NonceRange,
}

impl Job {
    /// The same job over other nonces (cheap: the input is shared).
    pub fn with_nonces(&self, nonces: NonceRange) -> Job {
        Job { input: self.input.clone(), target: self.target, nonces }
    }
}

/// A nonce whose digest met the job's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Found {
    pub nonce: u64,
    pub digest: Digest,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchEnd {
    /// Hashes completed by this call.
    pub hashes: u64,
    /// Whether it stopped because the control was cancelled.
    pub cancelled: bool,
    /// Every nonce of the range below this one was hashed and its finds
    /// passed on: where a search cancelled part-way picks up again (the
    /// range's end once it is done). Never past what was done; searches
    /// that hash in order stop exactly there, one spread over threads may
    /// have hashed past it. (Finds a caller dropped, as a miner does past
    /// its waiting limit, are not found again by picking up here.)
    pub next_nonce: u64,
}

impl SearchEnd {
    /// A search that hashed all of `nonces` (`hashes` of them: a range
    /// hashed in parts says how many this call did).
    pub fn completed(nonces: NonceRange, hashes: u64) -> Self {
        SearchEnd { hashes, cancelled: false, next_nonce: nonces.end }
    }

    /// A search cancelled after hashing the first `hashes` nonces of
    /// `nonces`, in order.
    pub fn cancelled_after(nonces: NonceRange, hashes: u64) -> Self {
        SearchEnd { hashes, cancelled: true, next_nonce: nonces.start.saturating_add(hashes).min(nonces.end) }
    }
}

/// Cancellation and progress shared between a search and its owner (and
/// across threads: share it in an `Arc`).
#[derive(Debug, Default)]
pub struct SearchControl {
    cancelled: AtomicBool,
    hashes: AtomicU64,
}

impl SearchControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub fn add_hashes(&self, n: u64) {
        self.hashes.fetch_add(n, Ordering::Relaxed);
    }

    /// Hashes completed so far under this control.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;

    #[test]
    fn split_at_never_overlaps_or_overflows() {
        let r = NonceRange::new(10, 20);
        assert_eq!(r.split_at(3), (NonceRange::new(10, 13), NonceRange::new(13, 20)));
        assert_eq!(r.split_at(100), (r, NonceRange::new(20, 20)));
        let top = NonceRange::new(u64::MAX - 2, u64::MAX);
        assert_eq!(top.split_at(u64::MAX).0, top);
        assert!(NonceRange::new(5, 1).is_empty());
    }

    #[test]
    fn cancelled_search_stops_before_hashing() {
        let params = Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..Params::CONSENSUS };
        let input = Arc::new(PowInput::new([1; 32], 0, vec![1, 2, 3], params).unwrap());
        let job = Job { input, target: Target::NONE, nonces: NonceRange::new(0, 1000) };
        for kind in EngineKind::ALL.into_iter().filter(|kind| kind.is_available()) {
            let control = SearchControl::new();
            control.cancel();
            let end = kind.build().unwrap().search(&job, &control, &mut |_| panic!("nothing may be found"));
            assert!(end.cancelled, "{kind}");
            assert_eq!(end.hashes, 0, "{kind}");
        }
    }

    #[test]
    fn engine_names_parse() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>(), Ok(kind));
        }
        assert_eq!(EngineKind::Fast.resolved(), EngineKind::Cpu(crate::CpuEngine::best()));
        assert!("gpu".parse::<EngineKind>().is_err());
    }
}
