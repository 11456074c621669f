//! The reference engine: the spec read literally.
//!
//! It materialises the epoch dataset (256 MiB at consensus params) and a full
//! scratchpad per hash (32 MiB), exactly as the spec describes them. It is slow
//! (a few hashes a second) and exists to be obviously right: every other engine
//! is tested against it.

use std::sync::Arc;

use crate::algorithm::{self, DEADBEEF, SCRATCH_MUL};
use crate::splitmix::{SplitMix64, GAMMA};
use crate::{Digest, PowEngine, PowInput};

/// Literal VisionX. Keeps the last dataset so consecutive hashes of one epoch
/// do not rebuild it, and reuses its scratchpad allocation.
#[derive(Default)]
pub struct ReferenceEngine {
    dataset: Option<(DatasetKey, Arc<[u64]>)>,
    scratch: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DatasetKey {
    dataset_seed: u64,
    words: u64,
}

impl ReferenceEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The epoch dataset: `dataset[k]` is the k-th SplitMix64 output seeded
    /// with `fold_seed(epoch_seed, epoch)`.
    pub fn dataset(&mut self, input: &PowInput) -> Arc<[u64]> {
        let key = DatasetKey { dataset_seed: input.dataset_seed(), words: input.geometry().dataset_words };
        match &self.dataset {
            Some((cached, data)) if *cached == key => data.clone(),
            _ => {
                let mut gen = SplitMix64::new(key.dataset_seed);
                let data: Arc<[u64]> = (0..key.words).map(|_| gen.next()).collect();
                self.dataset = Some((key, data.clone()));
                data
            }
        }
    }
}

impl PowEngine for ReferenceEngine {
    fn hash(&mut self, input: &PowInput, nonce: u64) -> Digest {
        let dataset = self.dataset(input);
        let params = input.params();
        let geometry = input.geometry();
        let (dmask, smask) = (geometry.dmask, geometry.smask);

        // Scratchpad of this hash.
        let mut gen = SplitMix64::new(algorithm::header_seed(input, nonce));
        let scratch = &mut self.scratch;
        scratch.clear();
        for _ in 0..geometry.scratch_words {
            let m = gen.next();
            let i1 = m.rotate_left(17) & dmask;
            let i2 = m.rotate_right(23) & dmask;
            scratch.push(dataset[i1 as usize] ^ dataset[i2 as usize] ^ m.wrapping_mul(SCRATCH_MUL));
        }

        let (mut a, mut b, mut acc) = algorithm::initial_state(input, nonce);
        debug_assert_eq!(acc, a ^ b ^ DEADBEEF);
        let at = |x: u64| (x & smask) as usize;
        for i in 0..u64::from(params.mix_iters) {
            let v1 = scratch[at((a ^ b ^ acc ^ i.wrapping_mul(0x9E37_79B9)).rotate_left(17))];
            let v2 = scratch[at((v1 ^ a ^ acc).rotate_left(23))];
            let v3 = scratch[at((v2 ^ b ^ acc).rotate_left(19))];
            let v4 = if params.reads_per_iter >= 4 { scratch[at((v3 ^ v1 ^ acc).rotate_left(29))] } else { v3 };
            let mix = v1 ^ v2.rotate_left(13) ^ v3.wrapping_mul(0x94D0_49BB_1331_11EB) ^ v4.rotate_right(7);
            a = a.rotate_left(13) ^ mix.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            b = b.rotate_left(17) ^ (mix ^ acc).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            acc = acc.rotate_left(7) ^ (a ^ b).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            if params.write_every > 0 && i % u64::from(params.write_every) == 0 {
                let jw = at((mix ^ a ^ b.rotate_left(11) ^ i.wrapping_mul(0xA24B_AED4_963E_E407)).rotate_left(31));
                scratch[jw] = scratch[jw].wrapping_add(mix ^ GAMMA).rotate_left(41);
            }
        }
        algorithm::finish(a, b, acc)
    }
}
