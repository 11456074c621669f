//! The fast engine: VisionX with no materialised dataset or scratchpad.
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
//! independent work to overlap. A bit filter in front of each lane's table
//! answers "never written" (almost every read) with one load.
//!
//! State is reusable: an engine allocates its tables once and reuses them for
//! every hash (they grow only when params need bigger ones).

use crate::algorithm::{self, absorb, initial_scratch_word, mix_of, write_index, written_value};
use crate::{Digest, Found, Job, Params, PowEngine, PowInput, SearchControl, SearchEnd};

/// Hashes advanced in lockstep by [`FastEngine::search`].
pub const LANES: usize = 4;

/// Upper bound on a lane's filter size in bits: 2^20 bits = 128 KiB.
const MAX_FILTER_BITS: u64 = 1 << 20;

/// The fast engine. One per thread: it owns mutable per-hash tables.
pub struct FastEngine {
    tables: Vec<WriteTable>,
}

impl Default for FastEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl FastEngine {
    pub fn new() -> Self {
        FastEngine { tables: (0..LANES).map(|_| WriteTable::default()).collect() }
    }

    /// Bytes of table memory this engine holds (all lanes).
    pub fn table_bytes(&self) -> usize {
        self.tables.iter().map(WriteTable::bytes).sum()
    }

    /// Hashes many (input, nonce) pairs, several at a time in lockstep where
    /// their params agree. Digests come back in the order of `items`.
    ///
    /// This is the coordinator's verification path: a queue of shares (even
    /// of different jobs) goes through at close to the search rate.
    pub fn hash_many(&mut self, items: &[(&PowInput, u64)]) -> Vec<Digest> {
        let mut digests = vec![Digest([0; 32]); items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        while let Some(&first) = pending.first() {
            let params = *items[first].0.params();
            let (same, rest): (Vec<usize>, Vec<usize>) =
                pending.iter().partition(|&&idx| *items[idx].0.params() == params);
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
            pending = rest;
        }
        digests
    }

    /// Hashes `N` (input, nonce) lanes in lockstep. All inputs must have the
    /// same params (headers and seeds may differ).
    fn hash_lockstep<const N: usize>(&mut self, lanes: [(&PowInput, u64); N]) -> [Digest; N] {
        debug_assert!(N <= self.tables.len());
        let params: &Params = lanes[0].0.params();
        debug_assert!(lanes.iter().all(|(input, _)| input.params() == params));
        let geometry = *lanes[0].0.geometry();
        let (dmask, smask) = (geometry.dmask, geometry.smask);
        let four_reads = params.four_reads();
        let write_every = params.write_every;

        let tables: &mut [WriteTable] = &mut self.tables[..N];
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
        let read = |tables: &[WriteTable], l: usize, j: u64| tables[l].read(j, hseed[l], dseed[l], dmask);

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

impl PowEngine for FastEngine {
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
                return SearchEnd { hashes, cancelled: true };
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
        SearchEnd { hashes, cancelled: false }
    }
}

/// The words one hash has written, keyed by scratchpad index, behind a bit
/// filter: open addressing with linear probing, keys apart from values.
#[derive(Default)]
struct WriteTable {
    /// Bit `j & filter_mask` is set when some written index has those low bits.
    filter: Vec<u64>,
    filter_mask: u64,
    /// Scratchpad index per slot, `EMPTY` when free.
    keys: Vec<u32>,
    values: Vec<u64>,
    slot_mask: u64,
    /// Whether anything was stored since the last clear.
    dirty: bool,
}

/// Write-table slots per hash for `params` with a scratchpad of
/// `scratch_words`: twice the distinct words a hash can write (a load factor
/// of at most 1/2 keeps probe sequences short), a power of two, at least 64.
/// Every engine that keeps a write table (these lanes, the GPU kernel) sizes
/// it with this.
pub fn table_slots(params: &Params, scratch_words: u64) -> u64 {
    let distinct_writes = params.writes_per_hash().min(scratch_words);
    (2 * distinct_writes).next_power_of_two().max(64)
}

/// Bits of the filter in front of a write table: one per scratchpad word,
/// within [64, [`MAX_FILTER_BITS`]].
pub fn filter_bits(scratch_words: u64) -> u64 {
    scratch_words.clamp(64, MAX_FILTER_BITS)
}

/// Scratchpad indices are below 2^24 (128 MiB of words), so this is never an index.
const EMPTY: u32 = u32::MAX;

impl WriteTable {
    fn bytes(&self) -> usize {
        self.filter.len() * 8 + self.keys.len() * 4 + self.values.len() * 8
    }

    /// Sizes the table for `params` (allocating only when it must grow) and
    /// empties it.
    fn prepare(&mut self, params: &Params, scratch_words: u64) {
        let slots = table_slots(params, scratch_words);
        let filter_bits = filter_bits(scratch_words);
        if self.keys.len() as u64 != slots || self.filter.len() as u64 * 64 != filter_bits {
            self.keys = vec![EMPTY; slots as usize];
            self.values = vec![0; slots as usize];
            self.filter = vec![0; (filter_bits / 64) as usize];
            self.slot_mask = slots - 1;
            self.filter_mask = filter_bits - 1;
            self.dirty = false;
        } else if self.dirty {
            self.keys.fill(EMPTY);
            self.filter.fill(0);
            self.dirty = false;
        }
    }

    /// The current value of scratchpad word `j`.
    #[inline(always)]
    fn read(&self, j: u64, header_seed: u64, dataset_seed: u64, dmask: u64) -> u64 {
        let initial = initial_scratch_word(header_seed, dataset_seed, dmask, j);
        if self.may_contain(j) {
            if let Some(value) = self.get(j) {
                return value;
            }
        }
        initial
    }

    #[inline(always)]
    fn may_contain(&self, j: u64) -> bool {
        let bit = j & self.filter_mask;
        self.filter[(bit >> 6) as usize] >> (bit & 63) & 1 != 0
    }

    #[inline]
    fn get(&self, j: u64) -> Option<u64> {
        let key = j as u32;
        let mut slot = j & self.slot_mask;
        loop {
            match self.keys[slot as usize] {
                k if k == key => return Some(self.values[slot as usize]),
                EMPTY => return None,
                _ => slot = (slot + 1) & self.slot_mask,
            }
        }
    }

    #[inline]
    fn store(&mut self, j: u64, value: u64) {
        let bit = j & self.filter_mask;
        self.filter[(bit >> 6) as usize] |= 1 << (bit & 63);
        self.dirty = true;
        let key = j as u32;
        let mut slot = j & self.slot_mask;
        loop {
            let k = self.keys[slot as usize];
            if k == key || k == EMPTY {
                self.keys[slot as usize] = key;
                self.values[slot as usize] = value;
                return;
            }
            slot = (slot + 1) & self.slot_mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::{NonceRange, ReferenceEngine, Target};

    fn small_params() -> impl Strategy<Value = Params> {
        (0u32..=4, 0u32..=2, 1u32..=300, 0u32..=8, 0u32..=5, 1u64..=64).prop_map(
            |(dataset_mb, scratch_mb, mix_iters, reads_per_iter, write_every, epoch_blocks)| Params {
                dataset_mb,
                scratch_mb,
                mix_iters,
                reads_per_iter,
                write_every,
                epoch_blocks,
            },
        )
    }

    fn input(params: Params, seed: [u8; 32], epoch: u64, header: Vec<u8>) -> PowInput {
        PowInput::new(seed, epoch, header, params).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn fast_equals_reference(
            params in small_params(),
            seed: [u8; 32],
            epoch: u64,
            header in proptest::collection::vec(any::<u8>(), 0..=40),
            nonce: u64,
        ) {
            let input = input(params, seed, epoch, header);
            prop_assert_eq!(FastEngine::new().hash(&input, nonce), ReferenceEngine::new().hash(&input, nonce));
        }

        #[test]
        fn lockstep_lanes_with_different_inputs_equal_reference(
            params in small_params(),
            lanes in proptest::collection::vec((any::<[u8; 32]>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..=40), any::<u64>()), 1..=9),
        ) {
            let inputs: Vec<PowInput> = lanes.iter().map(|(seed, epoch, header, _)| input(params, *seed, *epoch, header.clone())).collect();
            let items: Vec<(&PowInput, u64)> = inputs.iter().zip(&lanes).map(|(i, lane)| (i, lane.3)).collect();
            let digests = FastEngine::new().hash_many(&items);
            let mut reference = ReferenceEngine::new();
            for ((input, nonce), digest) in items.iter().zip(digests) {
                prop_assert_eq!(digest, reference.hash(input, *nonce));
            }
        }

        #[test]
        fn search_reports_exactly_the_nonces_that_meet_the_target(
            params in small_params(),
            seed: [u8; 32],
            start in 0u64..u64::MAX - 64,
            len in 0u64..23,
            difficulty in 0u64..5,
        ) {
            let job = Job {
                input: Arc::new(input(params, seed, 3, b"search".to_vec())),
                target: Target::from_difficulty(difficulty),
                nonces: NonceRange::new(start, start + len),
            };
            let mut found = Vec::new();
            let end = FastEngine::new().search(&job, &SearchControl::new(), &mut |f| found.push(f));
            prop_assert_eq!(end, SearchEnd { hashes: len, cancelled: false });
            let mut expected = Vec::new();
            ReferenceEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
            prop_assert_eq!(found, expected);
        }
    }

    /// The edge cases named by the spec, exhaustively rather than by chance.
    #[test]
    fn edge_cases_equal_reference() {
        let mut fast = FastEngine::new();
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
                    assert_eq!(fast.hash(&input, 42), reference.hash(&input, 42), "{params:?}");
                }
            }
        }
        // Headers of every length 0-40 (the 8- and 16-byte chunk paddings).
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
        let mut fast = FastEngine::new();
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
        let mut fast = FastEngine::new();
        let input =
            input(Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 100, ..Params::CONSENSUS }, [1; 32], 0, vec![]);
        fast.hash(&input, 0);
        let first = fast.tables[0].keys.as_ptr();
        fast.hash(&input, 1);
        assert_eq!(first, fast.tables[0].keys.as_ptr());
    }
}
