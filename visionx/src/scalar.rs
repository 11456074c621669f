//! The scalar lockstep engine: VisionX with no materialised dataset or
//! scratchpad, in plain 64-bit code (the portable path, and the path for
//! the few hashes a batch leaves over for the SIMD engines).
//!
//! Every dataset and scratchpad word is a pure function of its index (see
//! [`crate::splitmix`]), so a read computes the word's initial value on demand
//! and only the words the hash has written are stored, in a small per-hash
//! table. A hash touches well under 1 MiB; switching epochs costs nothing.
//!
//! One hash is one long dependency chain (each read's index depends on the
//! previous read), so a single hash leaves most of a core idle. The engine
//! therefore advances [`LANES`] independent hashes in lockstep: each step of
//! the loop is done for every lane before the next, giving the core
//! independent work to overlap. The words a hash writes live in
//! [`crate::write_table`].
//!
//! State is reusable: an engine allocates its tables once and reuses them for
//! every hash (they grow only when params need bigger ones).

use crate::algorithm::{self, absorb, mix_of, write_index, written_value};
use crate::write_table::LaneTable;
use crate::{Digest, Found, Job, Params, PowEngine, PowInput, SearchControl, SearchEnd};

/// The indices of `items`, grouped by params (only hashes with equal params
/// can share a lockstep group), each group in the order of `items`.
pub(crate) fn same_params_groups(items: &[(&PowInput, u64)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (idx, (input, _)) in items.iter().enumerate() {
        match groups.iter_mut().find(|g| items[g[0]].0.params() == input.params()) {
            Some(group) => group.push(idx),
            None => groups.push(vec![idx]),
        }
    }
    groups
}

/// Hashes advanced in lockstep by [`ScalarEngine`].
pub const LANES: usize = 4;

/// The scalar lockstep engine. One per thread: it owns mutable per-hash tables.
#[derive(Default)]
pub struct ScalarEngine {
    tables: Vec<LaneTable>,
}

impl ScalarEngine {
    pub fn new() -> Self {
        ScalarEngine::default()
    }

    /// Bytes of table memory this engine holds (all lanes).
    pub fn table_bytes(&self) -> usize {
        self.tables.iter().map(LaneTable::bytes).sum()
    }

    /// Hashes many (input, nonce) pairs, several at a time in lockstep where
    /// their params agree. Digests come back in the order of `items`.
    ///
    /// This is the coordinator's verification path: a queue of shares (even
    /// of different jobs) goes through at close to the search rate.
    pub fn hash_many(&mut self, items: &[(&PowInput, u64)]) -> Vec<Digest> {
        let mut digests = vec![Digest([0; 32]); items.len()];
        for same in same_params_groups(items) {
            let mut groups = same.chunks_exact(LANES);
            for group in groups.by_ref() {
                let lanes: [(&PowInput, u64); LANES] = std::array::from_fn(|l| items[group[l]]);
                for (l, digest) in self.hash_lockstep(lanes).into_iter().enumerate() {
                    digests[group[l]] = digest;
                }
            }
            for &idx in groups.remainder() {
                let [digest] = self.hash_lockstep([items[idx]]);
                digests[idx] = digest;
            }
        }
        digests
    }

    /// Hashes `N` (input, nonce) lanes in lockstep. All inputs must have the
    /// same params (headers and seeds may differ).
    pub(crate) fn hash_lockstep<const N: usize>(&mut self, lanes: [(&PowInput, u64); N]) -> [Digest; N] {
        let params: &Params = lanes[0].0.params();
        debug_assert!(lanes.iter().all(|(input, _)| input.params() == params));
        let geometry = *lanes[0].0.geometry();
        let (dmask, smask) = (geometry.dmask, geometry.smask);
        let four_reads = params.four_reads();
        let write_every = params.write_every;

        const { assert!(N <= LANES) };
        if self.tables.len() < N {
            self.tables.resize_with(LANES, LaneTable::default);
        }
        let tables: &mut [LaneTable] = &mut self.tables[..N];
        for table in tables.iter_mut() {
            table.prepare(params, geometry.scratch_words);
        }
        let hseed: [u64; N] = std::array::from_fn(|l| algorithm::header_seed(lanes[l].0, lanes[l].1));
        let dseed: [u64; N] = std::array::from_fn(|l| lanes[l].0.dataset_seed());
        let mut a = [0u64; N];
        let mut b = [0u64; N];
        let mut acc = [0u64; N];
        for l in 0..N {
            (a[l], b[l], acc[l]) = algorithm::initial_state(lanes[l].0, lanes[l].1);
        }
        let read = |tables: &[LaneTable], l: usize, j: u64| tables[l].read(j, hseed[l], dseed[l], dmask);

        // Counts down to the next write iteration (i % write_every == 0).
        let mut until_write: u32 = 0;
        for i in 0..u64::from(params.mix_iters) {
            let salt = i.wrapping_mul(0x9E37_79B9);
            let v1: [u64; N] =
                std::array::from_fn(|l| read(tables, l, (a[l] ^ b[l] ^ acc[l] ^ salt).rotate_left(17) & smask));
            let v2: [u64; N] =
                std::array::from_fn(|l| read(tables, l, (v1[l] ^ a[l] ^ acc[l]).rotate_left(23) & smask));
            let v3: [u64; N] =
                std::array::from_fn(|l| read(tables, l, (v2[l] ^ b[l] ^ acc[l]).rotate_left(19) & smask));
            let v4: [u64; N] = if four_reads {
                std::array::from_fn(|l| read(tables, l, (v3[l] ^ v1[l] ^ acc[l]).rotate_left(29) & smask))
            } else {
                v3
            };
            let mix: [u64; N] = std::array::from_fn(|l| mix_of(v1[l], v2[l], v3[l], v4[l]));
            for l in 0..N {
                absorb(&mut a[l], &mut b[l], &mut acc[l], mix[l]);
            }
            if write_every > 0 {
                if until_write == 0 {
                    for l in 0..N {
                        let jw = write_index(mix[l], a[l], b[l], i, smask);
                        let old = read(tables, l, jw);
                        tables[l].store(jw, written_value(old, mix[l]));
                    }
                    until_write = write_every;
                }
                until_write -= 1;
            }
        }
        std::array::from_fn(|l| algorithm::finish(a[l], b[l], acc[l]))
    }
}

impl PowEngine for ScalarEngine {
    fn hash(&mut self, input: &PowInput, nonce: u64) -> Digest {
        let [digest] = self.hash_lockstep([(input, nonce)]);
        digest
    }

    fn search(&mut self, job: &Job, control: &SearchControl, on_found: &mut dyn FnMut(Found)) -> SearchEnd {
        let input = &*job.input;
        let mut hashes = 0;
        let mut rest = job.nonces;
        while !rest.is_empty() {
            if control.is_cancelled() {
                return SearchEnd::cancelled_after(job.nonces, hashes);
            }
            let (group, tail) = rest.split_at(LANES as u64);
            rest = tail;
            let found = if group.len() == LANES as u64 {
                let lanes: [(&PowInput, u64); LANES] = std::array::from_fn(|l| (input, group.start + l as u64));
                self.hash_lockstep(lanes).to_vec()
            } else {
                group.iter().map(|nonce| self.hash(input, nonce)).collect()
            };
            for (nonce, digest) in group.iter().zip(found) {
                if job.target.is_met_by(&digest) {
                    on_found(Found { nonce, digest });
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
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{input, small_params};
    use crate::ReferenceEngine;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn fast_equals_reference(
            params in small_params(4, 2, 300),
            seed: [u8; 32],
            epoch: u64,
            header in proptest::collection::vec(any::<u8>(), 0..=40),
            nonce: u64,
        ) {
            let input = input(params, seed, epoch, header);
            prop_assert_eq!(ScalarEngine::new().hash(&input, nonce), ReferenceEngine::new().hash(&input, nonce));
        }
    }

    /// Headers of every length 0-40 (the 8- and 16-byte chunk paddings);
    /// the spec's other edge cases go through every engine in `fast`'s tests.
    #[test]
    fn every_header_length_equals_reference() {
        let mut fast = ScalarEngine::new();
        let mut reference = ReferenceEngine::new();
        let params = Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 50, ..Params::CONSENSUS };
        for len in 0..=40u8 {
            let input = input(params, [len; 32], u64::from(len), (0..len).collect());
            assert_eq!(
                fast.hash(&input, u64::MAX - u64::from(len)),
                reference.hash(&input, u64::MAX - u64::from(len)),
                "header length {len}"
            );
        }
    }

    /// A word written twice must keep its latest value; with write_every 1 on a
    /// tiny scratchpad every word is rewritten many times.
    #[test]
    fn repeated_writes_to_a_tiny_scratchpad() {
        let mut fast = ScalarEngine::new();
        let mut reference = ReferenceEngine::new();
        for scratch_mb in [0, 1] {
            let params = Params {
                dataset_mb: 0,
                scratch_mb,
                mix_iters: 5000,
                reads_per_iter: 4,
                write_every: 1,
                epoch_blocks: 1,
            };
            let input = input(params, [3; 32], 0, vec![]);
            assert_eq!(fast.hash(&input, 5), reference.hash(&input, 5), "scratch_mb {scratch_mb}");
        }
    }

    #[test]
    fn tables_are_reused_not_reallocated_per_hash() {
        let mut fast = ScalarEngine::new();
        let input =
            input(Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 100, ..Params::CONSENSUS }, [1; 32], 0, vec![]);
        fast.hash(&input, 0);
        let first = fast.tables[0].keys_ptr();
        fast.hash(&input, 1);
        assert_eq!(first, fast.tables[0].keys_ptr());
    }
}
