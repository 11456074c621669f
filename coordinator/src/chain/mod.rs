//! The chain behind the pool: the embedded devnet ([`devnet::DevnetChain`])
//! or a remote node speaking the same node API ([`upstream::UpstreamNode`]).
//!
//! The types here are the node API's wire format (`docs/API.md`).

pub mod devnet;
pub mod node_api;
pub mod upstream;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use visionx::{BlockHeader, Params, PowInput};

/// A block to mine: every header field plus what a miner needs to hash it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTemplate {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: Params,
    pub reward: u64,
}

impl BlockTemplate {
    pub fn header(&self) -> Result<BlockHeader, visionx::Error> {
        let t = self;
        BlockHeader::from_hex_fields(
            &t.chain_id,
            t.height,
            &t.parent_hash,
            t.timestamp,
            t.difficulty,
            &t.tx_root,
            &t.miner,
        )
    }

    pub fn pow_input(&self) -> Result<PowInput, visionx::Error> {
        self.header()?.pow_input(&self.params)
    }

    /// The submission for this template solved with `nonce`.
    pub fn solved(&self, nonce: u64) -> BlockSubmission {
        BlockSubmission {
            height: self.height,
            parent_hash: self.parent_hash.clone(),
            timestamp: self.timestamp,
            difficulty: self.difficulty,
            tx_root: self.tx_root.clone(),
            miner: self.miner.clone(),
            nonce,
        }
    }
}

/// A solved block as `POST /node/submit` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSubmission {
    pub height: u64,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
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

/// A block in the chain.
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

/// `POST /node/transfer`: a multi-output payment from an address the node holds keys for.
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
}

/// Why the chain refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The request is malformed or breaks a rule (a 4xx with this reason).
    #[error("{reason}: {message}")]
    Invalid { reason: &'static str, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the node refused: {0}")]
    Conflict(String),
    /// The node could not be reached or failed (a 502/503).
    #[error("chain unavailable: {0}")]
    Unavailable(String),
}

impl ChainError {
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        ChainError::Invalid { reason, message: message.into() }
    }
}

/// The pool's chain: embedded or remote.
#[derive(Clone)]
pub enum Chain {
    Devnet(Arc<devnet::DevnetChain>),
    Upstream(upstream::UpstreamNode),
}

impl Chain {
    pub async fn template(&self, address: &str) -> Result<BlockTemplate, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.template(address),
            Chain::Upstream(node) => node.template(address).await,
        }
    }

    pub async fn submit(&self, block: BlockSubmission) -> Result<SubmitOutcome, ChainError> {
        match self {
            // One hash and an fsync: never on a runtime thread.
            Chain::Devnet(chain) => {
                let chain = chain.clone();
                tokio::task::spawn_blocking(move || chain.submit(&block))
                    .await
                    .map_err(|e| ChainError::Unavailable(e.to_string()))?
            }
            Chain::Upstream(node) => node.submit(&block).await,
        }
    }

    pub async fn block(&self, height: u64) -> Result<ChainBlock, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.block(height),
            Chain::Upstream(node) => node.block(height).await,
        }
    }

    pub async fn balance(&self, address: &str) -> Result<Balance, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.balance(address),
            Chain::Upstream(node) => node.balance(address).await,
        }
    }

    pub async fn transfer(&self, request: TransferRequest) -> Result<TransferReceipt, ChainError> {
        match self {
            // Takes the devnet's write lock and fsyncs: never on a runtime thread.
            Chain::Devnet(chain) => {
                let chain = chain.clone();
                tokio::task::spawn_blocking(move || chain.transfer(&request))
                    .await
                    .map_err(|e| ChainError::Unavailable(e.to_string()))?
            }
            Chain::Upstream(node) => node.transfer(&request).await,
        }
    }
}

/// A wallet address: 1-128 ASCII letters, digits, `_`, `-` or `:`.
pub fn check_address(field: &'static str, address: &str) -> Result<(), ChainError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':');
    if address.is_empty() || address.len() > 128 || !address.chars().all(ok_char) {
        return Err(ChainError::invalid(
            "bad_address",
            format!("{field} must be 1-128 ASCII letters, digits, '_', '-' or ':'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_charset_rule() {
        for good in ["land1q9x", "0xabc", "a", "pool:main_1-x", &"a".repeat(128)] {
            assert!(check_address("a", good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "ünï", "semi;colon", &"a".repeat(129), "slash/"] {
            assert!(check_address("a", bad).is_err(), "{bad}");
        }
    }
}
