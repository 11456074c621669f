//! `vision-miner hash`: one digest, from explicit inputs or from a block's fields.

use serde::{Deserialize, Serialize};
use vision_protocol::HeaderFields;
use visionx::{Digest, Params, PowInput};

use crate::{InputError, MinerError};

/// The hash input from an explicit epoch seed, epoch and header (hex).
pub fn explicit_input(seed_hex: &str, epoch: u64, header_hex: &str, params: Params) -> Result<PowInput, InputError> {
    let seed = visionx::parse_hash32("--seed", seed_hex)?;
    let header_digits = header_hex.strip_prefix("0x").unwrap_or(header_hex);
    let header = visionx::header::decode_hex("--header", header_digits)?;
    Ok(PowInput::new(seed, epoch, header, params)?)
}

/// A block's fields as `hash --block FILE` reads them (the `"block"` vectors'
/// shape: the header fields and the nonce; anything else, such as a vector's
/// expected results, is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct BlockFields {
    #[serde(flatten)]
    pub header: HeaderFields,
    pub nonce: u64,
}

/// What `hash --block` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockHashReport {
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub digest: Digest,
    pub meets_target: bool,
}

/// Parses a block JSON object and hashes it with consensus params, using
/// `hash` to compute the digest (any engine).
pub fn hash_block(
    json: &str,
    hash: impl FnOnce(&PowInput, u64) -> Result<Digest, MinerError>,
) -> Result<BlockHashReport, MinerError> {
    let fields: BlockFields =
        serde_json::from_str(json).map_err(|e| InputError::new(format!("block file is not a valid block: {e}")))?;
    let input = fields.header.pow_input(&Params::CONSENSUS).map_err(InputError::from)?;
    let digest = hash(&input, fields.nonce)?;
    Ok(BlockHashReport {
        epoch: input.epoch(),
        epoch_seed: hex::encode(input.epoch_seed()),
        pow_message: hex::encode(input.header()),
        digest,
        meets_target: digest.meets_difficulty(fields.header.difficulty),
    })
}

#[cfg(test)]
mod tests {
    use visionx::{vectors, FastEngine, PowEngine};

    use super::*;

    fn cpu_fast(input: &PowInput, nonce: u64) -> Result<Digest, MinerError> {
        Ok(FastEngine::new().hash(input, nonce))
    }

    #[test]
    fn block_vectors_round_trip_through_the_block_file_format() {
        for v in vectors::block_vectors().into_iter().take(2) {
            let json = serde_json::json!({
                "chain_id": v.chain_id, "height": v.height, "parent_hash": v.parent_hash,
                "timestamp": v.timestamp, "difficulty": v.difficulty, "tx_root": v.tx_root,
                "miner": v.miner, "nonce": v.nonce,
            });
            let report = hash_block(&json.to_string(), cpu_fast).unwrap();
            assert_eq!(report.epoch, v.epoch);
            assert_eq!(report.epoch_seed, v.epoch_seed);
            assert_eq!(report.pow_message, v.pow_message);
            assert_eq!(report.digest, v.expected());
            assert_eq!(report.meets_target, v.meets_target);
        }
    }

    #[test]
    fn bad_block_files_are_input_errors() {
        for bad in [
            "not json",
            r#"{"chain_id": "x"}"#,
            r#"{"chain_id":"x","height":-1,"parent_hash":"","timestamp":0,"difficulty":1,"tx_root":"","miner":"m","nonce":0}"#,
            r#"{"chain_id":"x","height":1,"parent_hash":"zz","timestamp":0,"difficulty":1,"tx_root":"","miner":"m","nonce":0}"#,
        ] {
            assert!(hash_block(bad, cpu_fast).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_inputs_match_a_hash_vector() {
        let v = vectors::hash_vectors().into_iter().find(|v| !v.is_consensus()).unwrap();
        let input = explicit_input(&v.seed, v.epoch, &v.header, v.params).unwrap();
        assert_eq!(FastEngine::new().hash(&input, v.nonce), v.expected());
        assert!(explicit_input("00", 0, "", v.params).is_err());
        assert!(explicit_input(&v.seed, 0, "0g", v.params).is_err());
    }
}
