//! The SIMD engines: VisionX across vector lanes, one hash per lane.
//!
//! - [`kernel`]: the mix loop once, generic over a vector of 64-bit lanes.
//! - `avx512`: eight lanes a vector (AVX-512F + DQ), two vectors a group.
//! - `avx2`: four lanes a vector (AVX2), four vectors a group.
//!
//! Each instruction set has a `#[target_feature]` entry point that may only
//! be called once `is_x86_feature_detected!` said yes; [`SimdEngine::new`]
//! checks that, so an engine that exists can always run. All `unsafe` of the
//! crate lives in this module.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod kernel;

use crate::write_table::WriteTables;
use crate::{Digest, PowInput};

/// Asks the CPU to start loading the cache line at `address` (a hint: it
/// never faults and changes nothing else).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch<T>(address: *const T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: SSE is part of x86-64, and a prefetch reads nothing a program
    // can observe; any address is allowed.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) }
}

/// A vector instruction set a SIMD engine is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx2,
    Avx512,
}

impl Isa {
    /// Whether this CPU runs the instruction set (never off x86-64).
    pub(crate) fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Isa::Avx2 => avx2::supported(),
            Isa::Avx512 => avx512::supported(),
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Hashes one group advances together: four vectors of 4 lanes (AVX2),
    /// two of 8 (AVX-512).
    pub(crate) const fn lanes(self) -> usize {
        match self {
            Isa::Avx2 => 16,
            Isa::Avx512 => 16,
        }
    }
}

/// A SIMD engine: the write tables of one group of lanes and the instruction
/// set that runs them. One per thread.
pub(crate) struct SimdEngine {
    isa: Isa,
    tables: WriteTables,
    digests: Vec<Digest>,
}

impl SimdEngine {
    /// An engine on `isa`, if this CPU supports it.
    pub(crate) fn new(isa: Isa) -> Option<SimdEngine> {
        isa.supported().then(|| SimdEngine { isa, tables: WriteTables::default(), digests: Vec::new() })
    }

    pub(crate) fn lanes(&self) -> usize {
        self.isa.lanes()
    }

    pub(crate) fn table_bytes(&self) -> usize {
        self.tables.bytes()
    }

    /// Hashes 1 to [`SimdEngine::lanes`] items, all with the same params, as
    /// one group (lanes left over hash copies of the first item, and are
    /// dropped). Digests come back in the order of `items`.
    pub(crate) fn hash_batch(&mut self, items: &[(&PowInput, u64)]) -> &[Digest] {
        let lanes = self.lanes();
        assert!(!items.is_empty() && items.len() <= lanes, "a batch fits one group");
        let mut group: Vec<(&PowInput, u64)> = items.to_vec();
        group.resize(lanes, items[0]);
        self.digests.clear();
        self.digests.resize(lanes, Digest([0; 32]));
        self.run_group(&group);
        &self.digests[..items.len()]
    }

    #[cfg(target_arch = "x86_64")]
    fn run_group(&mut self, group: &[(&PowInput, u64)]) {
        // SAFETY: `new` made this engine only for an instruction set the CPU supports.
        unsafe {
            match self.isa {
                Isa::Avx2 => avx2::hash_group(&mut self.tables, group, &mut self.digests),
                Isa::Avx512 => avx512::hash_group(&mut self.tables, group, &mut self.digests),
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn run_group(&mut self, _group: &[(&PowInput, u64)]) {
        unreachable!("no instruction set is supported off x86-64, so no SimdEngine exists")
    }
}
