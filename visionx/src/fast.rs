//! The fast engine: the quickest CPU engine this machine runs, chosen once at
//! run time.
//!
//! [`CpuEngine`] names the engines that compute words on demand: the
//! portable scalar lockstep engine ([`crate::scalar`]) and the SIMD engines
//! (`crate::simd`: AVX2, AVX-512). [`FastEngine::new`] takes the best one
//! `is_x86_feature_detected!` allows; every caller (the miner's CPU backend,
//! the coordinator's share verifier) gets its speed without knowing which.
//!
//! A SIMD engine hashes a whole group (16 hashes) at a time. Batches
//! that would leave most of a group empty go to the scalar engine instead,
//! which also does single hashes: a lone share is verified in the time of
//! one scalar hash, not of a whole group.

use std::fmt;

use crate::scalar::{same_params_groups, ScalarEngine};
use crate::simd::{Isa, SimdEngine};
use crate::{Digest, Found, Job, PowEngine, PowInput, SearchControl, SearchEnd};

/// A CPU engine that computes VisionX words on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuEngine {
    /// Four hashes in lockstep in 64-bit scalar code; runs everywhere.
    Scalar,
    /// 16 hashes in 4 vectors of AVX2.
    Avx2,
    /// 16 hashes in 2 vectors of AVX-512 (F and DQ).
    Avx512,
}

/// An engine this CPU cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} engine needs CPU features this machine lacks")]
pub struct EngineUnavailable(pub CpuEngine);

impl CpuEngine {
    /// Every engine, slowest first.
    pub const ALL: [CpuEngine; 3] = [CpuEngine::Scalar, CpuEngine::Avx2, CpuEngine::Avx512];

    /// The fastest engine this CPU runs.
    pub fn best() -> CpuEngine {
        CpuEngine::ALL.into_iter().rev().find(|e| e.is_supported()).unwrap_or(CpuEngine::Scalar)
    }

    pub fn is_supported(self) -> bool {
        match self.isa() {
            None => true,
            Some(isa) => isa.supported(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuEngine::Scalar => "scalar",
            CpuEngine::Avx2 => "avx2",
            CpuEngine::Avx512 => "avx512",
        }
    }

    /// Hashes the engine advances together; batches of this size keep it full.
    pub fn lanes(self) -> usize {
        match self.isa() {
            None => crate::scalar::LANES,
            Some(isa) => isa.lanes(),
        }
    }

    fn isa(self) -> Option<Isa> {
        match self {
            CpuEngine::Scalar => None,
            CpuEngine::Avx2 => Some(Isa::Avx2),
            CpuEngine::Avx512 => Some(Isa::Avx512),
        }
    }

    /// The fewest same-params hashes worth a SIMD group rather than the
    /// scalar engine: a group of 16 costs about what `16 / speed-up` scalar
    /// hashes cost (speed-ups of about 2 and 1.3, docs/PERFORMANCE.md).
    fn min_group(self) -> usize {
        match self {
            CpuEngine::Scalar => 1,
            CpuEngine::Avx2 => 12,
            CpuEngine::Avx512 => 8,
        }
    }
}

impl fmt::Display for CpuEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fast engine. One per thread: it owns mutable per-hash tables.
pub struct FastEngine {
    engine: CpuEngine,
    scalar: ScalarEngine,
    simd: Option<SimdEngine>,
}

impl Default for FastEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl FastEngine {
    /// The best engine this CPU runs.
    pub fn new() -> Self {
        let best = CpuEngine::best();
        let simd = best.isa().and_then(SimdEngine::new);
        FastEngine { engine: if simd.is_some() { best } else { CpuEngine::Scalar }, scalar: ScalarEngine::new(), simd }
    }

    /// A particular engine (to compare them), if this CPU runs it.
    pub fn with_engine(engine: CpuEngine) -> Result<Self, EngineUnavailable> {
        let simd = match engine.isa() {
            None => None,
            Some(isa) => Some(SimdEngine::new(isa).ok_or(EngineUnavailable(engine))?),
        };
        Ok(FastEngine { engine, scalar: ScalarEngine::new(), simd })
    }

    /// Which engine runs.
    pub fn engine(&self) -> CpuEngine {
        self.engine
    }

    /// Bytes of table memory this engine holds.
    pub fn table_bytes(&self) -> usize {
        self.scalar.table_bytes() + self.simd.as_ref().map_or(0, SimdEngine::table_bytes)
    }

    /// Hashes many (input, nonce) pairs, as many at a time as the engine
    /// advances together where their params agree. Digests come back in the
    /// order of `items`.
    ///
    /// This is the coordinator's verification path: a queue of shares (even
    /// of different jobs) goes through at close to the search rate.
    pub fn hash_many(&mut self, items: &[(&PowInput, u64)]) -> Vec<Digest> {
        let Some(simd) = self.simd.as_mut() else {
            return self.scalar.hash_many(items);
        };
        let mut digests = vec![Digest([0; 32]); items.len()];
        for same in same_params_groups(items) {
            for group in same.chunks(simd.lanes()) {
                let batch: Vec<(&PowInput, u64)> = group.iter().map(|&idx| items[idx]).collect();
                let found = if group.len() >= self.engine.min_group() {
                    simd.hash_batch(&batch).to_vec()
                } else {
                    self.scalar.hash_many(&batch)
                };
                for (&idx, digest) in group.iter().zip(found) {
                    digests[idx] = digest;
                }
            }
        }
        digests
    }
}

impl PowEngine for FastEngine {
    /// One hash: the scalar engine's (a SIMD group would cost a whole group).
    fn hash(&mut self, input: &PowInput, nonce: u64) -> Digest {
        self.scalar.hash(input, nonce)
    }

    fn search(&mut self, job: &Job, control: &SearchControl, on_found: &mut dyn FnMut(Found)) -> SearchEnd {
        let Some(simd) = self.simd.as_mut() else {
            return self.scalar.search(job, control, on_found);
        };
        let input = &*job.input;
        let mut hashes = 0;
        let mut rest = job.nonces;
        while !rest.is_empty() {
            if control.is_cancelled() {
                return SearchEnd::cancelled_after(job.nonces, hashes);
            }
            let (group, tail) = rest.split_at(simd.lanes() as u64);
            rest = tail;
            if group.len() < self.engine.min_group() as u64 {
                let end = self.scalar.search(&job.with_nonces(group), control, on_found);
                hashes += end.hashes;
                if end.cancelled {
                    return SearchEnd::cancelled_after(job.nonces, hashes);
                }
                continue;
            }
            let batch: Vec<(&PowInput, u64)> = group.iter().map(|nonce| (input, nonce)).collect();
            for (nonce, digest) in group.iter().zip(simd.hash_batch(&batch)) {
                if job.target.is_met_by(digest) {
                    on_found(Found { nonce, digest: *digest });
                }
            }
            hashes += group.len();
            control.add_hashes(group.len());
        }
        SearchEnd::completed(job.nonces, hashes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{input, small_params};
    use crate::{NonceRange, Params, ReferenceEngine, Target};

    /// Every on-demand engine this machine runs (the SIMD ones are skipped
    /// only where the CPU lacks them; CI's machines have AVX-512).
    fn engines() -> Vec<FastEngine> {
        CpuEngine::ALL.into_iter().filter_map(|e| FastEngine::with_engine(e).ok()).collect()
    }

    fn reference_digests(items: &[(&PowInput, u64)]) -> Vec<Digest> {
        let mut reference = ReferenceEngine::new();
        items.iter().map(|(input, nonce)| reference.hash(input, *nonce)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Lanes with different seeds, headers, epochs and nonces in one
        /// group, in batches that fill groups, leave remainders, and mix params.
        #[test]
        fn every_engine_equals_the_reference_lane_by_lane(
            params in small_params(3, 1, 200),
            other_params in small_params(3, 1, 200),
            lanes in proptest::collection::vec(
                (any::<[u8; 32]>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..=40), any::<u64>(), any::<bool>()),
                1..=70,
            ),
        ) {
            let inputs: Vec<PowInput> = lanes
                .iter()
                .map(|(seed, epoch, header, _, other)| {
                    input(if *other { other_params } else { params }, *seed, *epoch, header.clone())
                })
                .collect();
            let items: Vec<(&PowInput, u64)> = inputs.iter().zip(&lanes).map(|(i, lane)| (i, lane.3)).collect();
            let expected = reference_digests(&items);
            for mut engine in engines() {
                prop_assert_eq!(&engine.hash_many(&items), &expected, "{}", engine.engine());
            }
        }

        #[test]
        fn search_reports_exactly_the_nonces_that_meet_the_target(
            params in small_params(3, 1, 200),
            seed: [u8; 32],
            start in 0u64..u64::MAX - 100,
            len in 0u64..80,
            difficulty in 0u64..5,
        ) {
            let job = Job {
                input: Arc::new(input(params, seed, 3, b"search".to_vec())),
                target: Target::from_difficulty(difficulty),
                nonces: NonceRange::new(start, start + len),
            };
            let mut expected = Vec::new();
            ReferenceEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
            for mut engine in engines() {
                let control = SearchControl::new();
                let mut found = Vec::new();
                let end = engine.search(&job, &control, &mut |f| found.push(f));
                prop_assert_eq!(end, SearchEnd::completed(job.nonces, len));
                prop_assert_eq!(control.hashes(), len);
                prop_assert_eq!(&found, &expected, "{}", engine.engine());
            }
        }

        /// A search cancelled part-way and picked up again at its
        /// `next_nonce` reports every find once: none missed, none twice.
        #[test]
        fn a_search_picked_up_at_its_next_nonce_misses_and_repeats_nothing(
            params in small_params(3, 1, 100),
            seed: [u8; 32],
            len in 1u64..60,
            cancel_after in 1usize..40,
        ) {
            let job = Job {
                input: Arc::new(input(params, seed, 3, b"resume".to_vec())),
                target: Target::NONE,
                nonces: NonceRange::new(1000, 1000 + len),
            };
            let mut every: Vec<Box<dyn PowEngine>> = vec![Box::new(ReferenceEngine::new())];
            every.extend(engines().into_iter().map(|e| Box::new(e) as Box<dyn PowEngine>));
            for mut engine in every {
                let mut found = Vec::new();
                let mut from = job.nonces.start;
                loop {
                    // Cancelled from inside, at the `cancel_after`th find of a part.
                    let control = SearchControl::new();
                    let part = job.with_nonces(NonceRange::new(from, job.nonces.end));
                    let mut seen = 0;
                    let end = engine.search(&part, &control, &mut |f| {
                        found.push(f.nonce);
                        seen += 1;
                        if seen == cancel_after {
                            control.cancel();
                        }
                    });
                    prop_assert!(end.next_nonce > from || part.nonces.is_empty(), "no progress from {}", from);
                    prop_assert_eq!(end.next_nonce, from + end.hashes, "hashed in order");
                    from = end.next_nonce;
                    if !end.cancelled {
                        prop_assert_eq!(from, job.nonces.end);
                        break;
                    }
                }
                found.sort_unstable();
                prop_assert_eq!(found, job.nonces.iter().collect::<Vec<_>>());
            }
        }
    }

    /// Tiny scratchpads written every iteration: most reads of every lane hit
    /// written words, many lanes at once, and words are rewritten many times.
    #[test]
    fn lanes_that_hit_written_words_together() {
        for scratch_mb in [0, 1] {
            for reads_per_iter in [3, 4] {
                let params = Params {
                    dataset_mb: 0,
                    scratch_mb,
                    mix_iters: 3000,
                    reads_per_iter,
                    write_every: 1,
                    epoch_blocks: 1,
                };
                let inputs: Vec<PowInput> = (0..40u8).map(|n| input(params, [n; 32], 0, vec![n])).collect();
                let items: Vec<(&PowInput, u64)> = inputs.iter().map(|i| (i, 7)).collect();
                let expected = reference_digests(&items);
                for mut engine in engines() {
                    assert_eq!(engine.hash_many(&items), expected, "{} scratch_mb {scratch_mb}", engine.engine());
                }
            }
        }
    }

    /// The edge cases named by the spec, exhaustively rather than by chance,
    /// through whole groups (16 nonces at once, so no SIMD engine hands them
    /// to its scalar path; the scalar engine hashes them four at a time).
    #[test]
    fn edge_cases_in_full_groups_equal_reference() {
        let mut engines = engines();
        let mut reference = ReferenceEngine::new();
        for reads_per_iter in [0, 1, 2, 3, 4, 8] {
            for write_every in [0, 1, 2, 7] {
                for mix_iters in [0, 1, 2, 5, 64] {
                    let params = Params {
                        dataset_mb: 1,
                        scratch_mb: 1,
                        mix_iters,
                        reads_per_iter,
                        write_every,
                        epoch_blocks: 32,
                    };
                    let input = input(params, [7; 32], 9, b"edge".to_vec());
                    let items: Vec<(&PowInput, u64)> = (0..16).map(|n| (&input, 40 + n)).collect();
                    let expected: Vec<Digest> = items.iter().map(|(i, n)| reference.hash(i, *n)).collect();
                    for engine in &mut engines {
                        assert_eq!(engine.hash_many(&items), expected, "{} {params:?}", engine.engine());
                    }
                }
            }
        }
    }

    /// Tables as small as they get (a 64-bit filter over a large scratchpad,
    /// a few writes): the filter's second bit and word index at their edges.
    #[test]
    fn smallest_filter_with_reads_of_written_words() {
        for (scratch_mb, header) in (0..2).flat_map(|mb| (0..8u8).map(move |h| (mb, h))) {
            let params =
                Params { dataset_mb: 0, scratch_mb, mix_iters: 9, reads_per_iter: 4, write_every: 3, epoch_blocks: 1 };
            let input = input(params, [header; 32], 1, vec![header]);
            let items: Vec<(&PowInput, u64)> = (0..16).map(|n| (&input, n)).collect();
            let expected = reference_digests(&items);
            for mut engine in engines() {
                assert_eq!(engine.hash_many(&items), expected, "{}", engine.engine());
            }
        }
    }

    /// Consensus params, one full group per engine (the case that matters).
    #[test]
    fn consensus_groups_equal_the_scalar_engine() {
        let input = input(Params::CONSENSUS, [9; 32], 5, b"consensus".to_vec());
        let items: Vec<(&PowInput, u64)> = (0..32).map(|n| (&input, 1000 + n)).collect();
        let expected = ScalarEngine::new().hash_many(&items);
        for mut engine in engines() {
            assert_eq!(engine.hash_many(&items), expected, "{}", engine.engine());
        }
    }

    #[test]
    fn the_best_engine_is_supported_and_unsupported_ones_are_refused() {
        assert!(CpuEngine::best().is_supported());
        assert_eq!(FastEngine::new().engine(), CpuEngine::best());
        for engine in CpuEngine::ALL {
            assert_eq!(FastEngine::with_engine(engine).is_ok(), engine.is_supported(), "{engine}");
        }
        if std::env::var_os("CI").is_some() && cfg!(target_arch = "x86_64") {
            // CI runs on machines with AVX-512: a silent fallback would hide a broken engine.
            assert_eq!(CpuEngine::best(), CpuEngine::Avx512, "CI expects AVX-512F/DQ");
        }
    }
}
