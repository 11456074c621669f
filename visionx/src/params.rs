//! VisionX parameters: consensus values, denial-of-service limits, derived sizes.

use crate::Error;

/// The tunable parameters of VisionX.
///
/// Mainnet uses [`Params::CONSENSUS`]; smaller values exist for tests and
/// devnets. Every verifier refuses values above the limits (see [`Params::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "serde"), derive(serde::Serialize, serde::Deserialize))]
pub struct Params {
    /// Size of the epoch dataset, MiB.
    pub dataset_mb: u32,
    /// Size of the per-hash scratchpad, MiB.
    pub scratch_mb: u32,
    /// Iterations of the mix loop.
    pub mix_iters: u32,
    /// 4 or more: four dependent reads per iteration; below 4: three.
    pub reads_per_iter: u32,
    /// Every how many iterations the loop writes back; 0 = never.
    pub write_every: u32,
    /// Blocks per epoch.
    pub epoch_blocks: u64,
}

/// Denial-of-service limit on `dataset_mb`.
pub const MAX_DATASET_MB: u32 = 512;
/// Denial-of-service limit on `scratch_mb`.
pub const MAX_SCRATCH_MB: u32 = 128;
/// Denial-of-service limit on `mix_iters`.
pub const MAX_MIX_ITERS: u32 = 1_000_000;
/// Denial-of-service limit on `reads_per_iter`.
pub const MAX_READS_PER_ITER: u32 = 8;

impl Params {
    /// The consensus parameters of the Vision chain.
    pub const CONSENSUS: Params = Params {
        dataset_mb: 256,
        scratch_mb: 32,
        mix_iters: 65536,
        reads_per_iter: 4,
        write_every: 4,
        epoch_blocks: 32,
    };

    /// Checks the denial-of-service limits and returns the derived word counts.
    pub fn validate(&self) -> Result<Geometry, Error> {
        let limits = [
            ("dataset_mb", self.dataset_mb, MAX_DATASET_MB),
            ("scratch_mb", self.scratch_mb, MAX_SCRATCH_MB),
            ("mix_iters", self.mix_iters, MAX_MIX_ITERS),
            ("reads_per_iter", self.reads_per_iter, MAX_READS_PER_ITER),
        ];
        for (name, value, max) in limits {
            if value > max {
                return Err(Error::ParamOutOfLimit { name, value: value.into(), max: max.into() });
            }
        }
        if self.epoch_blocks == 0 {
            return Err(Error::ZeroEpochBlocks);
        }
        let dataset_words = words_for_mb(self.dataset_mb);
        let scratch_words = words_for_mb(self.scratch_mb);
        Ok(Geometry { dataset_words, scratch_words, dmask: dataset_words - 1, smask: scratch_words - 1 })
    }

    /// How many times one hash writes to its scratchpad: `ceil(mix_iters / write_every)`.
    pub fn writes_per_hash(&self) -> u64 {
        match self.write_every {
            0 => 0,
            w => u64::from(self.mix_iters).div_ceil(u64::from(w)),
        }
    }

    /// Whether an iteration reads a fourth word.
    pub fn four_reads(&self) -> bool {
        self.reads_per_iter >= 4
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::CONSENSUS
    }
}

/// Word counts and index masks derived from validated [`Params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub dataset_words: u64,
    pub scratch_words: u64,
    pub dmask: u64,
    pub smask: u64,
}

/// `next_pow2(mb * 1 MiB / 8)`, with `next_pow2(0) = 1`.
fn words_for_mb(mb: u32) -> u64 {
    (u64::from(mb) * 1_048_576 / 8).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_geometry() {
        let g = Params::CONSENSUS.validate().unwrap();
        assert_eq!(g.dataset_words, 1 << 25);
        assert_eq!(g.scratch_words, 1 << 22);
        assert_eq!(Params::CONSENSUS.writes_per_hash(), 16384);
    }

    #[test]
    fn word_counts_round_up_to_powers_of_two() {
        assert_eq!(words_for_mb(0), 1);
        assert_eq!(words_for_mb(1), 131072);
        assert_eq!(words_for_mb(3), 524288);
    }

    #[test]
    fn writes_per_hash_counts_iteration_zero() {
        let p = |mix_iters, write_every| Params { mix_iters, write_every, ..Params::CONSENSUS };
        assert_eq!(p(777, 3).writes_per_hash(), 259);
        assert_eq!(p(1, 1).writes_per_hash(), 1);
        assert_eq!(p(5, 4).writes_per_hash(), 2);
        assert_eq!(p(1000, 0).writes_per_hash(), 0);
    }

    #[test]
    fn every_limit_is_enforced_and_the_limit_itself_passes() {
        let at_limit = Params {
            dataset_mb: MAX_DATASET_MB,
            scratch_mb: MAX_SCRATCH_MB,
            mix_iters: MAX_MIX_ITERS,
            reads_per_iter: MAX_READS_PER_ITER,
            write_every: 0,
            epoch_blocks: 1,
        };
        assert!(at_limit.validate().is_ok());
        let over: [(Params, &str); 4] = [
            (Params { dataset_mb: MAX_DATASET_MB + 1, ..at_limit }, "dataset_mb"),
            (Params { scratch_mb: MAX_SCRATCH_MB + 1, ..at_limit }, "scratch_mb"),
            (Params { mix_iters: MAX_MIX_ITERS + 1, ..at_limit }, "mix_iters"),
            (Params { reads_per_iter: MAX_READS_PER_ITER + 1, ..at_limit }, "reads_per_iter"),
        ];
        for (params, field) in over {
            match params.validate() {
                Err(Error::ParamOutOfLimit { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: expected a limit error, got {other:?}"),
            }
        }
        let huge = Params { dataset_mb: u32::MAX, ..at_limit };
        assert!(huge.validate().unwrap_err().to_string().contains("dataset_mb"));
        assert_eq!(Params { epoch_blocks: 0, ..at_limit }.validate(), Err(Error::ZeroEpochBlocks));
    }
}
