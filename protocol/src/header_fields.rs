//! A block header's fields as they travel (hex for hashes), and the one
//! conversion from them to what VisionX hashes.

use serde::{Deserialize, Serialize};
use visionx::{BlockHeader, Params, PowInput};

/// The fields that make a block header. Templates carry them (flattened),
/// and so does a block file for `vision-miner hash --block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFields {
    pub chain_id: String,
    pub height: u64,
    /// 32 bytes, hex.
    pub parent_hash: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    pub difficulty: u64,
    /// 32 bytes, hex.
    pub tx_root: String,
    /// The address the block pays.
    pub miner: String,
}

impl HeaderFields {
    /// The header these fields describe; a typed error for bad hex or an
    /// over-long field.
    pub fn header(&self) -> Result<BlockHeader, visionx::Error> {
        BlockHeader::from_hex_fields(
            &self.chain_id,
            self.height,
            &self.parent_hash,
            self.timestamp,
            self.difficulty,
            &self.tx_root,
            &self.miner,
        )
    }

    /// What VisionX hashes for this header under `params` (epoch, epoch seed
    /// and pow message are derived here, never taken on trust).
    pub fn pow_input(&self, params: &Params) -> Result<PowInput, visionx::Error> {
        self.header()?.pow_input(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> HeaderFields {
        HeaderFields {
            chain_id: "devnet".into(),
            height: 40,
            parent_hash: "11".repeat(32),
            timestamp: 1_700_000_000,
            difficulty: 1000,
            tx_root: "22".repeat(32),
            miner: "land1x".into(),
        }
    }

    #[test]
    fn the_pow_input_is_derived_from_the_fields() {
        let input = fields().pow_input(&Params::CONSENSUS).unwrap();
        assert_eq!(input.epoch(), 40 / Params::CONSENSUS.epoch_blocks);
        let other = HeaderFields { height: 41, ..fields() }.pow_input(&Params::CONSENSUS).unwrap();
        assert_ne!(input.header(), other.header());
    }

    #[test]
    fn bad_hex_is_a_typed_error() {
        assert!(HeaderFields { parent_hash: "zz".into(), ..fields() }.header().is_err());
        assert!(HeaderFields { tx_root: "00".into(), ..fields() }.header().is_err());
    }
}
