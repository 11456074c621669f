//! The VisionX v1 test vectors, bundled into the crate (`tests/vectors/visionx-v1.json`).
//!
//! Available to other crates' tests with the `vectors` feature, so every
//! engine (CPU, GPU, the coordinator's verifier) is checked against one file.

use serde::Deserialize;

use crate::{BlockHeader, Digest, Error, Params, PowInput};

const VECTORS_JSON: &str = include_str!("../tests/vectors/visionx-v1.json");

/// One entry of the vector file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Vector {
    Hash(HashVector),
    Block(BlockVector),
}

/// A hash with explicit params, seed, epoch, header and nonce.
#[derive(Debug, Clone, Deserialize)]
pub struct HashVector {
    pub params: Params,
    pub seed: String,
    pub epoch: u64,
    pub header: String,
    pub nonce: u64,
    pub digest: String,
}

/// A block header's fields and everything derived from them (consensus params).
#[derive(Debug, Clone, Deserialize)]
pub struct BlockVector {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
    pub nonce: u64,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub digest: String,
    pub meets_target: bool,
}

/// Every vector in the bundled file.
pub fn all() -> Vec<Vector> {
    serde_json::from_str(VECTORS_JSON).expect("bundled vectors parse")
}

/// The hash vectors.
pub fn hash_vectors() -> Vec<HashVector> {
    all().into_iter().filter_map(|v| if let Vector::Hash(h) = v { Some(h) } else { None }).collect()
}

/// The block vectors.
pub fn block_vectors() -> Vec<BlockVector> {
    all().into_iter().filter_map(|v| if let Vector::Block(b) = v { Some(b) } else { None }).collect()
}

impl HashVector {
    pub fn input(&self) -> Result<PowInput, Error> {
        PowInput::from_hex(&self.seed, self.epoch, &self.header, self.params)
    }

    pub fn expected(&self) -> Digest {
        self.digest.parse().expect("vector digest is hex")
    }

    /// Whether this vector uses the consensus params (slow for the reference engine).
    pub fn is_consensus(&self) -> bool {
        self.params == Params::CONSENSUS
    }
}

impl BlockVector {
    pub fn header(&self) -> Result<BlockHeader, Error> {
        let v = self;
        BlockHeader::from_hex_fields(
            &v.chain_id,
            v.height,
            &v.parent_hash,
            v.timestamp,
            v.difficulty,
            &v.tx_root,
            &v.miner,
        )
    }

    pub fn expected(&self) -> Digest {
        self.digest.parse().expect("vector digest is hex")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{Isa, SimdEngine};
    use crate::{epoch_seed, FastEngine, PowEngine, ReferenceEngine};

    #[test]
    fn file_has_both_kinds_and_consensus_entries() {
        let hashes = hash_vectors();
        assert!(hashes.len() >= 10);
        assert!(hashes.iter().any(HashVector::is_consensus));
        assert!(!block_vectors().is_empty());
        // Values above 2^53 must survive parsing exactly.
        assert!(hashes.iter().any(|v| v.nonce == u64::MAX));
    }

    fn check_hash_vectors(engine: &mut dyn PowEngine) {
        for (idx, v) in hash_vectors().iter().enumerate() {
            let digest = engine.hash(&v.input().unwrap(), v.nonce);
            assert_eq!(digest, v.expected(), "hash vector {idx} ({:?})", v.params);
        }
    }

    #[test]
    fn reference_engine_passes_hash_vectors() {
        check_hash_vectors(&mut ReferenceEngine::new());
    }

    #[test]
    fn fast_engine_passes_hash_vectors() {
        check_hash_vectors(&mut FastEngine::new());
    }

    #[test]
    fn fast_engine_batch_passes_hash_vectors() {
        let vectors = hash_vectors();
        let inputs: Vec<PowInput> = vectors.iter().map(|v| v.input().unwrap()).collect();
        let items: Vec<(&PowInput, u64)> = inputs.iter().zip(&vectors).map(|(i, v)| (i, v.nonce)).collect();
        let digests = FastEngine::new().hash_many(&items);
        for (idx, (digest, v)) in digests.iter().zip(&vectors).enumerate() {
            assert_eq!(*digest, v.expected(), "hash vector {idx} through hash_many");
        }
    }

    /// Each vector through each SIMD engine this CPU runs, in every lane of
    /// a group: lane `l` hashes the vector's nonce while the other lanes hash
    /// neighbouring nonces of the same input.
    #[test]
    fn simd_engines_pass_hash_vectors_in_every_lane() {
        for isa in [Isa::Avx2, Isa::Avx512] {
            // Off CI a CPU without the instruction set skips it (`fast`'s
            // tests insist on AVX-512 under CI).
            let Some(mut engine) = SimdEngine::new(isa) else { continue };
            let lanes = engine.lanes();
            for (idx, v) in hash_vectors().iter().enumerate() {
                let input = v.input().unwrap();
                // Every lane; at consensus params (slow) one lane of each
                // vector of either instruction set (4 vectors of 4, 2 of 8).
                let tried: Vec<usize> = if v.is_consensus() { vec![0, 5, 10, lanes - 1] } else { (0..lanes).collect() };
                for lane in tried {
                    let items: Vec<(&PowInput, u64)> = (0..lanes)
                        .map(|l| (&input, v.nonce.wrapping_add(l as u64).wrapping_sub(lane as u64)))
                        .collect();
                    let digests = engine.hash_batch(&items);
                    assert_eq!(digests[lane], v.expected(), "{isa:?} hash vector {idx} in lane {lane}");
                }
            }
        }
    }

    #[test]
    fn block_vectors_derive_every_field() {
        let mut fast = FastEngine::new();
        let mut reference = ReferenceEngine::new();
        for v in block_vectors() {
            let header = v.header().unwrap();
            let params = Params::CONSENSUS;
            assert_eq!(header.epoch(&params).unwrap(), v.epoch, "{}", v.chain_id);
            assert_eq!(hex::encode(epoch_seed(&v.chain_id, v.epoch)), v.epoch_seed, "{}", v.chain_id);
            assert_eq!(hex::encode(header.pow_message()), v.pow_message, "{}", v.chain_id);
            let input = header.pow_input(&params).unwrap();
            let digest = fast.hash(&input, v.nonce);
            assert_eq!(digest, v.expected(), "{} fast", v.chain_id);
            assert_eq!(reference.hash(&input, v.nonce), digest, "{} reference", v.chain_id);
            assert_eq!(digest.meets_difficulty(v.difficulty), v.meets_target, "{}", v.chain_id);
        }
    }
}
