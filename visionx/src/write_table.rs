//! The words a hash has written, for every CPU engine that computes words on
//! demand: `LaneTable` for the scalar lockstep engine (four lanes, in
//! cache), `WriteTables` for the SIMD engines (16 lanes, mostly not).
//!
//! In `WriteTables` each lane (one hash in flight) owns a slice of two flat arrays: a bit
//! filter and slots. The filter answers "never written" (almost every read)
//! with one load; the slots are open addressing with linear probing, keyed by
//! scratchpad index, key and value side by side (a store or a lookup touches
//! one cache line: with 16 lanes in flight the slots do not fit in L2). The
//! filters of all lanes lie end to end in one array so a SIMD engine can test
//! eight lanes with one gather.
//!
//! The filter is a blocked Bloom filter with two bits a word: index `j` sets
//! bits `j % 64` and `(j ^ j >> shift) % 64` of word `(j & mask) / 64`. The
//! second bit is what tells apart the indices that share the low bits (the
//! filter has fewer bits than the scratchpad has words): with one bit, a read
//! would fall through to the slots about four times as often.
//!
//! Tables are sized once per params and reused for every hash: `prepare`
//! only clears them.

// Off x86-64 no SIMD engine exists, and the many-lane table goes unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
use crate::algorithm::initial_scratch_word;
use crate::Params;

/// Upper bound on a lane's filter size in bits: 2^20 bits = 128 KiB.
pub(crate) const MAX_FILTER_BITS: u64 = 1 << 20;

/// Scratchpad indices are below 2^24 (128 MiB of words), so this is never an index.
const EMPTY: u32 = u32::MAX;

/// Write-table slots per hash for `params` with a scratchpad of
/// `scratch_words`: twice the distinct words a hash can write (a load factor
/// of at most 1/2 keeps probe sequences short), a power of two, at least 64.
/// Every engine that keeps a write table (the CPU lanes, the GPU kernel)
/// sizes it with this.
pub fn table_slots(params: &Params, scratch_words: u64) -> u64 {
    let distinct_writes = params.writes_per_hash().min(scratch_words);
    (2 * distinct_writes).next_power_of_two().max(64)
}

/// Bits of the filter in front of a write table: one per scratchpad word,
/// within [64, 2^20]. The scalar engine and the GPU kernel use this size.
pub fn filter_bits(scratch_words: u64) -> u64 {
    scratch_words.clamp(64, MAX_FILTER_BITS)
}

/// A smaller filter for engines that keep many lanes in flight: sixteen bits
/// per write (two set per write: an eighth at most), never more than
/// [`filter_bits`]. At consensus params this is 32 KiB a lane instead of
/// 128 KiB, so 16 lanes of filters take 512 KiB of a core's L2 cache.
pub fn compact_filter_bits(params: &Params, scratch_words: u64) -> u64 {
    (params.writes_per_hash().saturating_mul(16)).next_power_of_two().clamp(64, filter_bits(scratch_words))
}

/// The scalar engine's table: one lane's written words behind a one-bit
/// filter (bit `j & filter_mask`, 2^20 bits at consensus), keys apart from
/// values. Four of these fit a core's L2 cache, where a second filter bit
/// and side-by-side slots only add work; [`WriteTables`] is the layout for
/// many lanes, out of cache.
#[derive(Default)]
pub(crate) struct LaneTable {
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

impl LaneTable {
    /// Where the slot keys start (tests check reuse with it).
    #[cfg(test)]
    pub(crate) fn keys_ptr(&self) -> *const u32 {
        self.keys.as_ptr()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.filter.len() * 8 + self.keys.len() * 4 + self.values.len() * 8
    }

    /// Sizes the table for `params` (allocating only when it must grow) and
    /// empties it.
    pub(crate) fn prepare(&mut self, params: &Params, scratch_words: u64) {
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
    pub(crate) fn read(&self, j: u64, header_seed: u64, dataset_seed: u64, dmask: u64) -> u64 {
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
    pub(crate) fn store(&mut self, j: u64, value: u64) {
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

/// One written word: its scratchpad index (`EMPTY` when free) and value.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u32,
    value: u64,
}

const FREE: Slot = Slot { key: EMPTY, value: 0 };
const NO_PENDING: (u64, u64) = (u64::MAX, 0);

/// The filter word of index `j` and the two bits `j` sets in it.
#[inline(always)]
pub(crate) fn filter_bits_of(j: u64, filter_mask: u64, second_shift: u32) -> (u64, u64) {
    let word = (j & filter_mask) >> 6;
    let bits = (1 << (j & 63)) | (1 << ((j ^ (j >> second_shift)) & 63));
    (word, bits)
}

/// The write tables of `lanes` hashes in flight.
#[derive(Default)]
pub(crate) struct WriteTables {
    lanes: usize,
    /// 64-bit words of filter per lane.
    filter_words: usize,
    filter_mask: u64,
    /// `log2(filter bits) - 2`: brings the index bits above the filter's
    /// (the ones that tell aliases apart) to bit positions 2-5.
    second_shift: u32,
    slots: usize,
    slot_mask: u64,
    /// Lane `l`'s filter is `filters[l * filter_words..][..filter_words]`.
    filters: Vec<u64>,
    /// Lane `l`'s slots are `slot[l * slots..][..slots]`.
    slot: Vec<Slot>,
    /// Per lane, the latest write of `store_deferred` not yet in the slots
    /// (`key` EMPTY when none): newer than anything in the slots.
    pending: Vec<(u64, u64)>,
    /// Whether anything was stored since the last clear.
    dirty: bool,
}

impl WriteTables {
    /// Bytes of table memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.filters.len() * 8 + self.slot.len() * std::mem::size_of::<Slot>()
    }

    /// Sizes the tables for `lanes` hashes of `params` with filters of
    /// `filter_bits` bits (allocating only when the shape changes) and
    /// empties them.
    pub(crate) fn prepare(&mut self, lanes: usize, params: &Params, scratch_words: u64, filter_bits: u64) {
        // The gather's bounds (`simd::kernel`) rest on this.
        assert!(filter_bits.is_power_of_two() && filter_bits >= 64, "a filter is a power of two of at least 64 bits");
        let slots = table_slots(params, scratch_words) as usize;
        let filter_words = (filter_bits / 64) as usize;
        if self.lanes != lanes || self.slots != slots || self.filter_words != filter_words {
            *self = WriteTables {
                lanes,
                filter_words,
                filter_mask: filter_bits - 1,
                second_shift: filter_bits.trailing_zeros() - 2,
                slots,
                slot_mask: slots as u64 - 1,
                filters: vec![0; lanes * filter_words],
                slot: vec![FREE; lanes * slots],
                pending: vec![NO_PENDING; lanes],
                dirty: false,
            };
        } else if self.dirty {
            self.slot.fill(FREE);
            self.filters.fill(0);
            self.pending.fill(NO_PENDING);
            self.dirty = false;
        }
    }

    /// The filters of all lanes, end to end.
    pub(crate) fn filters(&self) -> &[u64] {
        &self.filters
    }

    pub(crate) fn filter_words(&self) -> usize {
        self.filter_words
    }

    pub(crate) fn filter_mask(&self) -> u64 {
        self.filter_mask
    }

    pub(crate) fn second_shift(&self) -> u32 {
        self.second_shift
    }

    /// Where lane `lane` starts probing for word `j` (to prefetch it).
    #[inline(always)]
    pub(crate) fn home_slot(&self, lane: usize, j: u64) -> *const () {
        let slot: &Slot = &self.slot[lane * self.slots + (j & self.slot_mask) as usize];
        (slot as *const Slot).cast()
    }

    /// The value lane `lane` wrote to word `j`, if it wrote one.
    #[inline]
    pub(crate) fn get(&self, lane: usize, j: u64) -> Option<u64> {
        let base = lane * self.slots;
        let key = j as u32;
        let mut slot = j & self.slot_mask;
        loop {
            match self.slot[base + slot as usize] {
                Slot { key: k, value } if k == key => return Some(value),
                Slot { key: EMPTY, .. } => return None,
                _ => slot = (slot + 1) & self.slot_mask,
            }
        }
    }

    #[inline]
    pub(crate) fn store(&mut self, lane: usize, j: u64, value: u64) {
        let (word, bits) = filter_bits_of(j, self.filter_mask, self.second_shift);
        self.filters[lane * self.filter_words + word as usize] |= bits;
        self.dirty = true;
        let base = lane * self.slots;
        let key = j as u32;
        let mut slot = j & self.slot_mask;
        loop {
            let entry = &mut self.slot[base + slot as usize];
            if entry.key == key || entry.key == EMPTY {
                *entry = Slot { key, value };
                return;
            }
            slot = (slot + 1) & self.slot_mask;
        }
    }

    /// Stores like [`WriteTables::store`], but puts the word in the slots
    /// only at the lane's next deferred store, and meanwhile loads the
    /// word's home slot into cache: with many lanes in flight the slots are
    /// out of cache, and a store would otherwise wait for its line. Reads
    /// must then use [`WriteTables::get_deferred`].
    #[inline(always)]
    pub(crate) fn store_deferred(&mut self, lane: usize, j: u64, value: u64) -> *const () {
        let (word, bits) = filter_bits_of(j, self.filter_mask, self.second_shift);
        self.filters[lane * self.filter_words + word as usize] |= bits;
        let (previous, previous_value) = std::mem::replace(&mut self.pending[lane], (j, value));
        if previous != NO_PENDING.0 {
            self.store(lane, previous, previous_value);
        }
        self.dirty = true;
        self.home_slot(lane, j)
    }

    /// [`WriteTables::get`] for tables written with `store_deferred`.
    #[inline]
    pub(crate) fn get_deferred(&self, lane: usize, j: u64) -> Option<u64> {
        match self.pending[lane] {
            (pending, value) if pending == j => Some(value),
            _ => self.get(lane, j),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_independent_and_the_latest_write_wins() {
        let params = Params { mix_iters: 100, write_every: 1, ..Params::CONSENSUS };
        let mut tables = WriteTables::default();
        tables.prepare(3, &params, 1 << 22, 1 << 10);
        tables.store_deferred(1, 77, 5);
        tables.store_deferred(1, 77, 6);
        assert_eq!(tables.get_deferred(1, 77), Some(6), "the pending store");
        tables.store_deferred(1, 78, 7);
        assert_eq!(tables.get_deferred(1, 77), Some(6), "flushed to the slots");
        assert_eq!(tables.get_deferred(1, 78), Some(7));
        tables.store_deferred(2, 77 + (1 << 10), 9);
        assert_eq!(tables.get_deferred(0, 77), None);
        assert_eq!(tables.get_deferred(2, 77), None, "same filter word, other index");
        assert_eq!(tables.get_deferred(2, 77 + (1 << 10)), Some(9));
        tables.prepare(3, &params, 1 << 22, 1 << 10);
        assert_eq!(tables.get_deferred(1, 77), None, "prepare empties the tables");
    }

    #[test]
    fn compact_filters_hold_sixteen_bits_per_write() {
        let scratch = Params::CONSENSUS.validate().unwrap().scratch_words;
        assert_eq!(compact_filter_bits(&Params::CONSENSUS, scratch), 1 << 18);
        assert_eq!(filter_bits(scratch), 1 << 20);
        let tiny = Params { write_every: 0, ..Params::CONSENSUS };
        assert_eq!(compact_filter_bits(&tiny, scratch), 64);
        assert_eq!(compact_filter_bits(&Params::CONSENSUS, 128), 128, "never above one bit per word");
    }
}
