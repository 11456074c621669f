//! The mix loop once, over any vector of 64-bit lanes.
//!
//! [`hash_group`] is the scalar lockstep engine's loop with every `[u64; N]`
//! replaced by `K` vectors of [`Vector::WIDTH`] lanes: each lane is one hash,
//! each step is done for all `K` vectors before the next, so `K` independent
//! dependency chains hide the multiplier's latency. Only two things leave the
//! vectors: a read whose filter bit is set (the lane looks its word up in its
//! write table, one lane at a time) and the write step (each lane stores its
//! word). The rest, three SplitMix64 outputs per read, is pure lane-wise
//! arithmetic.
//!
//! The kernel is `#[inline(always)]` and generic; it becomes machine code only
//! inside a `#[target_feature]` entry point (`avx2::hash_group`,
//! `avx512::hash_group`), where the [`Vector`] methods inline to single
//! instructions.

use crate::algorithm::{self, ITER_MUL_WRITE, SCRATCH_MUL};
use crate::splitmix::GAMMA;
use crate::write_table::{compact_filter_bits, WriteTables};
use crate::{Digest, PowInput};

/// Most lanes one group may have (the size of the kernel's lane arrays).
pub(crate) const MAX_LANES: usize = 32;

/// A vector of 64-bit lanes.
///
/// # Safety contract
/// A value of an implementing type exists only where the CPU supports the
/// instructions it is made of: the constructors (`splat`, `load`) are
/// `unsafe` with that as their precondition. The operations on a value can
/// then be safe, and are.
pub(crate) trait Vector: Copy {
    /// Lanes per vector.
    const WIDTH: usize;

    /// All lanes `x`.
    ///
    /// # Safety
    /// The CPU supports this vector type's instructions.
    unsafe fn splat(x: u64) -> Self;

    /// Lanes `src[0..WIDTH]`.
    ///
    /// # Safety
    /// As [`Vector::splat`]. Panics if `src` is shorter than a vector.
    unsafe fn load(src: &[u64]) -> Self;

    /// Writes the lanes to `dst[0..WIDTH]`. Panics if `dst` is shorter.
    fn store(self, dst: &mut [u64]);

    fn add(self, other: Self) -> Self;
    fn xor(self, other: Self) -> Self;
    fn and(self, other: Self) -> Self;
    fn or(self, other: Self) -> Self;
    /// Lane-wise wrapping multiplication (the low 64 bits of each product).
    fn mul(self, other: Self) -> Self;
    /// Lane-wise rotate left by `r` in 1..64.
    fn rotl(self, r: u32) -> Self;
    /// Lane-wise logical shift right by `s` in 1..64.
    fn shr(self, s: u32) -> Self;
    /// Lane-wise shift left, lane `w` by `by[w]` in 0..64.
    fn shlv(self, by: Self) -> Self;

    /// A bit mask of the lanes `w` whose word `filters[word[w]]` has every
    /// bit of `bits[w]` set.
    ///
    /// # Safety
    /// Every `word[w]` is below `filters.len()` (it is gathered unchecked).
    unsafe fn filter_hits(bits: Self, word: Self, filters: &[u64]) -> u32;
}

/// The SplitMix64 finaliser, lane-wise.
#[inline(always)]
fn fmix<V: Vector>(z: V, c1: V, c2: V) -> V {
    let z = z.xor(z.shr(30)).mul(c1);
    let z = z.xor(z.shr(27)).mul(c2);
    z.xor(z.shr(31))
}

/// The per-group constants and per-lane seeds, as vectors.
struct Lanes<V: Vector, const K: usize> {
    gamma: V,
    fmix1: V,
    fmix2: V,
    scratch_mul: V,
    dmask: V,
    smask: V,
    filter_mask: V,
    second_shift: u32,
    low6: V,
    one: V,
    /// `header_seed + GAMMA` per lane: SplitMix64's k-th output is
    /// `fmix(seed + (k + 1) * GAMMA)`, so the `+ GAMMA` is done once here.
    header_seed: [V; K],
    dataset_seed: [V; K],
    /// Lane `w` of vector `k`: where its filter starts in the filters array, in words.
    filter_base: [V; K],
}

impl<V: Vector, const K: usize> Lanes<V, K> {
    /// `dataset[i]` (SplitMix64 output `i` of the dataset seed), lane-wise.
    #[inline(always)]
    fn dataset_word(&self, k: usize, i: V) -> V {
        fmix(self.dataset_seed[k].add(i.mul(self.gamma)), self.fmix1, self.fmix2)
    }

    /// Scratchpad word `j` as it was before any write (`initial_scratch_word`).
    #[inline(always)]
    fn initial_word(&self, k: usize, j: V) -> V {
        let m = fmix(self.header_seed[k].add(j.mul(self.gamma)), self.fmix1, self.fmix2);
        let i1 = m.rotl(17).and(self.dmask);
        let i2 = m.rotl(64 - 23).and(self.dmask);
        self.dataset_word(k, i1).xor(self.dataset_word(k, i2)).xor(m.mul(self.scratch_mul))
    }

    /// The current value of word `j` in each lane of vector `k`.
    #[inline(always)]
    fn read(&self, tables: &WriteTables, k: usize, j: V) -> V {
        // `write_table::filter_bits_of`, lane-wise.
        let word = self.filter_base[k].add(j.and(self.filter_mask).shr(6));
        let second = j.xor(j.shr(self.second_shift)).and(self.low6);
        let bits = self.one.shlv(j.and(self.low6)).or(self.one.shlv(second));
        // SAFETY: `filter_base` of a lane plus `(j & filter_mask) >> 6` (at
        // most `filter_words - 1`) is inside that lane's filter, and the
        // tables hold K * WIDTH lanes (`hash_group` prepared them).
        let hits = unsafe { V::filter_hits(bits, word, tables.filters()) };
        if hits != 0 {
            // The slots are far out of cache; their lines arrive while the
            // initial word is computed.
            prefetch_slots(tables, k * V::WIDTH, hits, j);
        }
        let initial = self.initial_word(k, j);
        if hits == 0 {
            initial
        } else {
            patch_written(tables, k * V::WIDTH, hits, j, initial)
        }
    }
}

/// Starts loading the home slots of word `j` of the lanes in `lanes`.
#[inline(always)]
fn prefetch_slots<V: Vector>(tables: &WriteTables, first_lane: usize, mut lanes: u32, j: V) {
    let mut index = [0u64; MAX_LANES];
    j.store(&mut index);
    while lanes != 0 {
        let w = lanes.trailing_zeros() as usize;
        lanes &= lanes - 1;
        super::prefetch(tables.home_slot(first_lane + w, index[w]));
    }
}

/// Replaces the lanes in `hits` whose word was written with the written value.
#[inline(always)]
fn patch_written<V: Vector>(tables: &WriteTables, first_lane: usize, hits: u32, j: V, initial: V) -> V {
    let mut index = [0u64; MAX_LANES];
    let mut value = [0u64; MAX_LANES];
    j.store(&mut index);
    initial.store(&mut value);
    patch_lanes(tables, first_lane, hits, &index, &mut value);
    // SAFETY: `initial` is a value of V, so the CPU supports V.
    unsafe { V::load(&value) }
}

/// The scalar part of [`patch_written`], out of line: most reads never get here.
#[cold]
#[inline(never)]
fn patch_lanes(tables: &WriteTables, first_lane: usize, mut hits: u32, index: &[u64], value: &mut [u64]) {
    while hits != 0 {
        let w = hits.trailing_zeros() as usize;
        hits &= hits - 1;
        if let Some(written) = tables.get_deferred(first_lane + w, index[w]) {
            value[w] = written;
        }
    }
}

/// Hashes `items` (exactly `K * V::WIDTH` of them, all with the same params)
/// in lockstep and writes their digests to `out`.
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
pub(crate) unsafe fn hash_group<V: Vector, const K: usize>(
    tables: &mut WriteTables,
    items: &[(&PowInput, u64)],
    out: &mut [Digest],
) {
    const { assert!(K >= 1 && K * V::WIDTH <= MAX_LANES) };
    let width = V::WIDTH;
    let lanes = K * width;
    assert!(items.len() == lanes && out.len() == lanes, "a group is exactly K vectors of lanes");
    let input = items[0].0;
    let params = *input.params();
    debug_assert!(items.iter().all(|(i, _)| *i.params() == params));
    let geometry = *input.geometry();
    tables.prepare(lanes, &params, geometry.scratch_words, compact_filter_bits(&params, geometry.scratch_words));

    // The per-nonce prologue, lane by lane (a few dozen operations a hash).
    let mut header_seed = [0u64; MAX_LANES];
    let mut dataset_seed = [0u64; MAX_LANES];
    let mut filter_base = [0u64; MAX_LANES];
    let (mut a, mut b, mut acc) = ([0u64; MAX_LANES], [0u64; MAX_LANES], [0u64; MAX_LANES]);
    for (l, (lane_input, nonce)) in items.iter().enumerate() {
        header_seed[l] = algorithm::header_seed(lane_input, *nonce).wrapping_add(GAMMA);
        dataset_seed[l] = lane_input.dataset_seed().wrapping_add(GAMMA);
        filter_base[l] = (l * tables.filter_words()) as u64;
        (a[l], b[l], acc[l]) = algorithm::initial_state(lane_input, *nonce);
    }

    // SAFETY (every `splat` and `load` below): the caller guarantees the CPU supports V.
    let splat = |x: u64| unsafe { V::splat(x) };
    let vectors = |lane_values: &[u64; MAX_LANES]| -> [V; K] {
        std::array::from_fn(|k| unsafe { V::load(&lane_values[k * width..]) })
    };
    let ctx = Lanes::<V, K> {
        gamma: splat(GAMMA),
        fmix1: splat(0xBF58_476D_1CE4_E5B9),
        fmix2: splat(0x94D0_49BB_1331_11EB),
        scratch_mul: splat(SCRATCH_MUL),
        dmask: splat(geometry.dmask),
        smask: splat(geometry.smask),
        filter_mask: splat(tables.filter_mask()),
        second_shift: tables.second_shift(),
        low6: splat(63),
        one: splat(1),
        header_seed: vectors(&header_seed),
        dataset_seed: vectors(&dataset_seed),
        filter_base: vectors(&filter_base),
    };
    let (mut va, mut vb, mut vacc) = (vectors(&a), vectors(&b), vectors(&acc));
    let mix_mul = splat(0x94D0_49BB_1331_11EB);
    let b_mul = splat(0xBF58_476D_1CE4_E5B9);
    let acc_mul = splat(0xD6E8_FEB8_6659_FD93);
    let write_gamma = splat(GAMMA);
    let smask = ctx.smask;
    let four_reads = params.four_reads();
    let write_every = params.write_every;

    let mut until_write: u32 = 0;
    let mut index = [0u64; MAX_LANES];
    let mut value = [0u64; MAX_LANES];
    for i in 0..u64::from(params.mix_iters) {
        let salt = splat(i.wrapping_mul(0x9E37_79B9));
        let v1: [V; K] =
            std::array::from_fn(|k| ctx.read(tables, k, va[k].xor(vb[k]).xor(vacc[k]).xor(salt).rotl(17).and(smask)));
        let v2: [V; K] =
            std::array::from_fn(|k| ctx.read(tables, k, v1[k].xor(va[k]).xor(vacc[k]).rotl(23).and(smask)));
        let v3: [V; K] =
            std::array::from_fn(|k| ctx.read(tables, k, v2[k].xor(vb[k]).xor(vacc[k]).rotl(19).and(smask)));
        let v4: [V; K] = if four_reads {
            std::array::from_fn(|k| ctx.read(tables, k, v3[k].xor(v1[k]).xor(vacc[k]).rotl(29).and(smask)))
        } else {
            v3
        };
        for k in 0..K {
            // mix_of and absorb, lane-wise.
            let mix = v1[k].xor(v2[k].rotl(13)).xor(v3[k].mul(mix_mul)).xor(v4[k].rotl(64 - 7));
            va[k] = va[k].rotl(13).xor(mix.mul(ctx.scratch_mul));
            vb[k] = vb[k].rotl(17).xor(mix.xor(vacc[k]).mul(b_mul));
            vacc[k] = vacc[k].rotl(7).xor(va[k].xor(vb[k]).mul(acc_mul));
            if write_every > 0 && until_write == 0 {
                let iter_term = splat(i.wrapping_mul(ITER_MUL_WRITE));
                let jw = mix.xor(va[k]).xor(vb[k].rotl(11)).xor(iter_term).rotl(31).and(smask);
                let old = ctx.read(tables, k, jw);
                let new = old.add(mix.xor(write_gamma)).rotl(41);
                jw.store(&mut index);
                new.store(&mut value);
                for w in 0..width {
                    super::prefetch(tables.store_deferred(k * width + w, index[w], value[w]));
                }
            }
        }
        if write_every > 0 {
            if until_write == 0 {
                until_write = write_every;
            }
            until_write -= 1;
        }
    }

    for k in 0..K {
        va[k].store(&mut a[k * width..]);
        vb[k].store(&mut b[k * width..]);
        vacc[k].store(&mut acc[k * width..]);
    }
    for (l, digest) in out.iter_mut().enumerate() {
        *digest = algorithm::finish(a[l], b[l], acc[l]);
    }
}
