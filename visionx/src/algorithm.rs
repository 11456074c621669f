//! The steps of a VisionX hash that both engines share: the per-nonce
//! prologue (header seed, initial mix state) and the digest epilogue, plus
//! the on-demand word formulas. Both engines are checked against the vectors,
//! so a mistake here cannot hide.

use crate::splitmix::{self, GAMMA};
use crate::{Digest, PowInput};

pub(crate) const SCRATCH_MUL: u64 = 0xC2B2_AE3D_27D4_EB4F;
pub(crate) const DEADBEEF: u64 = 0xDEAD_BEEF_F00D_FACE;
pub(crate) const ITER_MUL_WRITE: u64 = 0xA24B_AED4_963E_E407;

/// The scratchpad's SplitMix64 seed for one nonce.
#[inline]
pub(crate) fn header_seed(input: &PowInput, nonce: u64) -> u64 {
    let mut h = nonce ^ DEADBEEF;
    for &x in input.header_words8() {
        h ^= x.rotate_left(13);
        h = h.wrapping_mul(GAMMA).rotate_left(7);
    }
    h
}

/// Mix state `(a, b, acc)` before the mix loop (steps 1-3).
#[inline]
pub(crate) fn initial_state(input: &PowInput, nonce: u64) -> (u64, u64, u64) {
    let mut a = 0x243F_6A88_85A3_08D3 ^ nonce.rotate_left(17);
    let mut b = 0x1319_8A2E_0370_7344 ^ nonce.rotate_right(11);
    for &(x, y) in input.header_words16() {
        a ^= x.wrapping_mul(0x9E37_79B1_85EB_CA87);
        b ^= y.wrapping_mul(SCRATCH_MUL);
        a = a.rotate_left(13) ^ b.rotate_right(7);
        b = b.rotate_left(29) ^ a.rotate_right(19);
    }
    (a, b, a ^ b ^ DEADBEEF)
}

/// `dataset[k]` computed on demand.
#[inline(always)]
pub(crate) fn dataset_word(dataset_seed: u64, k: u64) -> u64 {
    splitmix::output(dataset_seed, k)
}

/// The scratchpad word `j` before any write, computed on demand.
#[inline(always)]
pub(crate) fn initial_scratch_word(header_seed: u64, dataset_seed: u64, dmask: u64, j: u64) -> u64 {
    let m = splitmix::output(header_seed, j);
    let i1 = m.rotate_left(17) & dmask;
    let i2 = m.rotate_right(23) & dmask;
    dataset_word(dataset_seed, i1) ^ dataset_word(dataset_seed, i2) ^ m.wrapping_mul(SCRATCH_MUL)
}

/// The mix `mix` of one iteration's reads.
#[inline(always)]
pub(crate) fn mix_of(v1: u64, v2: u64, v3: u64, v4: u64) -> u64 {
    v1 ^ v2.rotate_left(13) ^ v3.wrapping_mul(0x94D0_49BB_1331_11EB) ^ v4.rotate_right(7)
}

/// Updates `(a, b, acc)` with one iteration's mix.
#[inline(always)]
pub(crate) fn absorb(a: &mut u64, b: &mut u64, acc: &mut u64, mix: u64) {
    *a = a.rotate_left(13) ^ mix.wrapping_mul(SCRATCH_MUL);
    *b = b.rotate_left(17) ^ (mix ^ *acc).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    *acc = acc.rotate_left(7) ^ (*a ^ *b).wrapping_mul(0xD6E8_FEB8_6659_FD93);
}

/// The scratch index written at iteration `i` (uses the updated `a`, `b`).
#[inline(always)]
pub(crate) fn write_index(mix: u64, a: u64, b: u64, i: u64, smask: u64) -> u64 {
    (mix ^ a ^ b.rotate_left(11) ^ i.wrapping_mul(ITER_MUL_WRITE)).rotate_left(31) & smask
}

/// The value written over `old` at a write step.
#[inline(always)]
pub(crate) fn written_value(old: u64, mix: u64) -> u64 {
    old.wrapping_add(mix ^ GAMMA).rotate_left(41)
}

/// Step 5: the digest from the final mix state.
#[inline]
pub(crate) fn finish(a: u64, b: u64, acc: u64) -> Digest {
    let mut a2 = a ^ acc;
    let mut b2 = b ^ acc.rotate_left(3);
    for _ in 0..4 {
        a2 = a2.rotate_left(13) ^ b2.wrapping_mul(0x9E37_79B1_85EB_CA87);
        b2 = b2.rotate_left(17) ^ a2.wrapping_mul(SCRATCH_MUL);
    }
    let seed = a2 ^ b2 ^ 0xD6E8_FEB8_6659_FD93;
    let words = [a2, b2, splitmix::output(seed, 0), splitmix::output(seed, 1)];
    let mut out = [0u8; 32];
    for (dst, w) in out.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_be_bytes());
    }
    Digest(out)
}
