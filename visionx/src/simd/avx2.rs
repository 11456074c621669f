//! Four lanes in a 256-bit register (AVX2). AVX2 has no 64-bit multiply:
//! one is built from three 32x32->64 multiplies (`vpmuludq`).

use std::arch::x86_64::*;

use super::kernel::{self, Vector};
use crate::write_table::WriteTables;
use crate::{Digest, PowInput};

/// Vectors per group: four independent chains in flight.
pub(crate) const VECTORS: usize = 4;
const _: () = assert!(VECTORS * 4 == super::Isa::Avx2.lanes());

/// Whether this CPU runs [`hash_group`].
pub(crate) fn supported() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Hashes exactly `Isa::lanes` items with the same params.
///
/// # Safety
/// [`supported`] returned true.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn hash_group(tables: &mut WriteTables, items: &[(&PowInput, u64)], out: &mut [Digest]) {
    // SAFETY: the caller checked the CPU, and this function enables the feature.
    unsafe { kernel::hash_group::<Avx2, VECTORS>(tables, items, out) }
}

#[derive(Clone, Copy)]
struct Avx2(__m256i);

// SAFETY (every `unsafe` block below): a value of `Avx2` exists only when the
// CPU has AVX2 (the `Vector` contract), and the pointer intrinsics are given
// in-bounds pointers (asserted, or the caller's precondition for the gather).
impl Vector for Avx2 {
    const WIDTH: usize = 4;

    #[inline(always)]
    unsafe fn splat(x: u64) -> Self {
        unsafe { Avx2(_mm256_set1_epi64x(x as i64)) }
    }

    #[inline(always)]
    unsafe fn load(src: &[u64]) -> Self {
        assert!(src.len() >= Self::WIDTH);
        unsafe { Avx2(_mm256_loadu_si256(src.as_ptr().cast())) }
    }

    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        assert!(dst.len() >= Self::WIDTH);
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), self.0) }
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_add_epi64(self.0, other.0)) }
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_xor_si256(self.0, other.0)) }
    }

    #[inline(always)]
    fn and(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_and_si256(self.0, other.0)) }
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        unsafe { Avx2(_mm256_or_si256(self.0, other.0)) }
    }

    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        // (ah * 2^32 + al) * (bh * 2^32 + bl) mod 2^64
        //   = al * bl + ((ah * bl + al * bh) << 32)
        unsafe {
            let low = _mm256_mul_epu32(self.0, other.0);
            let cross1 = _mm256_mul_epu32(_mm256_srli_epi64::<32>(self.0), other.0);
            let cross2 = _mm256_mul_epu32(self.0, _mm256_srli_epi64::<32>(other.0));
            Avx2(_mm256_add_epi64(low, _mm256_slli_epi64::<32>(_mm256_add_epi64(cross1, cross2))))
        }
    }

    #[inline(always)]
    fn rotl(self, r: u32) -> Self {
        // With a constant `r` both shifts become immediate shifts.
        unsafe {
            let left = _mm256_sllv_epi64(self.0, _mm256_set1_epi64x(i64::from(r)));
            let right = _mm256_srlv_epi64(self.0, _mm256_set1_epi64x(i64::from(64 - r)));
            Avx2(_mm256_or_si256(left, right))
        }
    }

    #[inline(always)]
    fn shr(self, s: u32) -> Self {
        unsafe { Avx2(_mm256_srlv_epi64(self.0, _mm256_set1_epi64x(i64::from(s)))) }
    }

    #[inline(always)]
    fn shlv(self, by: Self) -> Self {
        unsafe { Avx2(_mm256_sllv_epi64(self.0, by.0)) }
    }

    #[inline(always)]
    unsafe fn filter_hits(bits: Self, word: Self, filters: &[u64]) -> u32 {
        unsafe {
            let words = _mm256_i64gather_epi64::<8>(filters.as_ptr().cast(), word.0);
            let all_set = _mm256_cmpeq_epi64(_mm256_and_si256(words, bits.0), bits.0);
            _mm256_movemask_pd(_mm256_castsi256_pd(all_set)) as u32
        }
    }
}
