//! Epochs and their seeds.

use sha2::{Digest as _, Sha256};

use crate::splitmix::GAMMA;

/// The epoch a height belongs to. `epoch_blocks` must be non-zero
/// ([`crate::Params::validate`] guarantees it for validated params).
pub fn epoch_of(height: u64, epoch_blocks: u64) -> u64 {
    height / epoch_blocks
}

/// `SHA-256("VISIONX_EPOCH_SEED_V1" || chain_id || 32 zero bytes || epoch as u64 LE)`.
pub fn epoch_seed(chain_id: &str, epoch: u64) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update(b"VISIONX_EPOCH_SEED_V1");
    sha.update(chain_id.as_bytes());
    sha.update([0u8; 32]);
    sha.update(epoch.to_le_bytes());
    sha.finalize().into()
}

/// Folds a 32-byte epoch seed and the epoch into the dataset's SplitMix64 seed.
pub fn fold_seed(seed: &[u8; 32], epoch: u64) -> u64 {
    let mut s = epoch ^ 0xA24B_AED4_963E_E407;
    for chunk in seed.chunks_exact(8) {
        let c = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk"));
        s ^= c.rotate_left(7);
        s = s.wrapping_mul(GAMMA).rotate_left(9);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_boundaries() {
        assert_eq!(epoch_of(0, 32), 0);
        assert_eq!(epoch_of(31, 32), 0);
        assert_eq!(epoch_of(32, 32), 1);
        assert_eq!(epoch_of(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn seeds_differ_by_chain_and_epoch() {
        assert_ne!(epoch_seed("mainnet", 0), epoch_seed("devnet", 0));
        assert_ne!(epoch_seed("mainnet", 0), epoch_seed("mainnet", 1));
    }
}
