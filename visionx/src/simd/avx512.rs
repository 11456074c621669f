//! Eight lanes in a 512-bit register (AVX-512F, with AVX-512DQ's `vpmullq`
//! for the 64-bit multiplies).

use std::arch::x86_64::*;

use super::kernel::{self, Vector};
use crate::write_table::WriteTables;
use crate::{Digest, PowInput};

/// Vectors per group: two chains of `vpmullq` in flight. Four hide more of
/// its latency (~15 cycles) but double the write tables, whose cache misses
/// then cost more than the latency saved (docs/PERFORMANCE.md).
pub(crate) const VECTORS: usize = 2;
const _: () = assert!(VECTORS * 8 == super::Isa::Avx512.lanes());

/// Whether this CPU runs [`hash_group`].
pub(crate) fn supported() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
}

/// Hashes exactly `Isa::lanes` items with the same params.
///
/// # Safety
/// [`supported`] returned true.
#[target_feature(enable = "avx512f,avx512dq")]
pub(crate) unsafe fn hash_group(tables: &mut WriteTables, items: &[(&PowInput, u64)], out: &mut [Digest]) {
    // SAFETY: the caller checked the CPU, and this function enables the features.
    unsafe { kernel::hash_group::<Avx512, VECTORS>(tables, items, out) }
}

#[derive(Clone, Copy)]
struct Avx512(__m512i);

// SAFETY (every `unsafe` block below): a value of `Avx512` exists only when
// the CPU has AVX-512F and AVX-512DQ (the `Vector` contract), and the pointer
// intrinsics are given in-bounds pointers (asserted, or the caller's
// precondition for the gather).
impl Vector for Avx512 {
    const WIDTH: usize = 8;

    #[inline(always)]
    unsafe fn splat(x: u64) -> Self {
        unsafe { Avx512(_mm512_set1_epi64(x as i64)) }
    }

    #[inline(always)]
    unsafe fn load(src: &[u64]) -> Self {
        assert!(src.len() >= Self::WIDTH);
        unsafe { Avx512(_mm512_loadu_si512(src.as_ptr().cast())) }
    }

    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        assert!(dst.len() >= Self::WIDTH);
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), self.0) }
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_add_epi64(self.0, other.0)) }
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_xor_si512(self.0, other.0)) }
    }

    #[inline(always)]
    fn and(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_and_si512(self.0, other.0)) }
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_or_si512(self.0, other.0)) }
    }

    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_mullo_epi64(self.0, other.0)) }
    }

    #[inline(always)]
    fn rotl(self, r: u32) -> Self {
        // A constant `r` compiles to `vprolq` with an immediate.
        unsafe { Avx512(_mm512_rolv_epi64(self.0, _mm512_set1_epi64(i64::from(r)))) }
    }

    #[inline(always)]
    fn shr(self, s: u32) -> Self {
        unsafe { Avx512(_mm512_srlv_epi64(self.0, _mm512_set1_epi64(i64::from(s)))) }
    }

    #[inline(always)]
    fn shlv(self, by: Self) -> Self {
        unsafe { Avx512(_mm512_sllv_epi64(self.0, by.0)) }
    }

    #[inline(always)]
    unsafe fn filter_hits(bits: Self, word: Self, filters: &[u64]) -> u32 {
        unsafe {
            let words = _mm512_i64gather_epi64::<8>(word.0, filters.as_ptr().cast());
            u32::from(_mm512_cmpeq_epi64_mask(_mm512_and_si512(words, bits.0), bits.0))
        }
    }
}
