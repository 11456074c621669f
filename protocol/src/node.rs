//! The node API (`/node/*`): what a chain node serves to pools and solo
//! miners. The coordinator's embedded devnet serves it; `--upstream` and
//! `vision-miner --solo` call it.

use serde::{Deserialize, Serialize};
use visionx::{Params, PowInput};

use crate::HeaderFields;

/// `GET /node/template?address=A`: a block to mine, paying `A`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTemplate {
    #[serde(flatten)]
    pub header: HeaderFields,
    /// Derived from the header fields; a pool checks these against its own
    /// derivation and refuses a template where they differ.
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: Params,
    /// The block reward in base units (absent from some nodes).
    #[serde(default)]
    pub reward: u64,
}

impl BlockTemplate {
    /// What VisionX hashes for this template, from its header fields.
    pub fn pow_input(&self) -> Result<PowInput, visionx::Error> {
        self.header.pow_input(&self.params)
    }

    /// The submission for this template solved with `nonce`.
    pub fn solved(&self, nonce: u64) -> BlockSubmission {
        BlockSubmission { header: self.header.clone(), nonce }
    }
}

/// `POST /node/submit` (node token): a solved block: its header fields
/// (flat on the wire, as in a template) and the nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSubmission {
    #[serde(flatten)]
    pub header: HeaderFields,
    pub nonce: u64,
}

/// The node's answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    pub accepted: bool,
    /// The block id (the digest in hex) when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why not, when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /node/block/{height}`: a block in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBlock {
    pub height: u64,
    pub hash: String,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
    pub nonce: u64,
    pub reward: u64,
}

/// `GET /node/balance/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub address: String,
    /// Mature coinbase plus transfers in, minus transfers out.
    pub spendable: u64,
    /// Coinbase rewards still within the maturity window.
    pub immature: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferOutput {
    pub address: String,
    pub amount: u64,
}

/// `POST /node/transfer` (node token): a multi-output payment from an
/// address the node holds keys for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub from: String,
    pub outputs: Vec<TransferOutput>,
    /// Replaying a key returns the first receipt and never pays twice.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReceipt {
    pub transfer_id: String,
    pub total: u64,
    /// True when this key was seen before and nothing was paid now.
    pub replayed: bool,
    /// What the transfer paid, from where: the payer checks them against
    /// what it asked. Empty from nodes older than these fields (and in
    /// receipts they stored), which only the total can be checked against.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub outputs: Vec<TransferOutput>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_reads_flat_json_and_solves_to_a_submission() {
        let json = serde_json::json!({
            "chain_id": "devnet", "height": 3, "parent_hash": "11".repeat(32), "timestamp": 9,
            "difficulty": 7, "tx_root": "22".repeat(32), "miner": "land1pool", "epoch": 0,
            "epoch_seed": "", "pow_message": "", "params": Params::CONSENSUS,
        });
        let template: BlockTemplate = serde_json::from_value(json).unwrap();
        assert_eq!((template.header.height, template.reward), (3, 0));
        let back = serde_json::to_value(&template).unwrap();
        assert_eq!(back["miner"], "land1pool", "header fields stay flat on the wire");
        let submission = template.solved(42);
        assert_eq!((submission.header, submission.nonce), (template.header, 42));
    }
}
