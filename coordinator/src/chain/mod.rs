//! The chain behind the pool: the embedded devnet ([`devnet::DevnetChain`])
//! or a remote node speaking the same node API ([`upstream::UpstreamNode`]).
//!
//! The node API's wire types live in `vision_protocol::node`.

pub mod devnet;
pub mod lwma;
pub mod node_routes;
pub mod upstream;

use std::sync::Arc;

pub use vision_protocol::node::{
    Balance, BlockSubmission, BlockTemplate, ChainBlock, SubmitOutcome, TransferOutput, TransferReceipt,
    TransferRequest,
};

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

    /// What a public record (a block's or payout's `reason`) may say: the
    /// kind of failure; the node's own words (its address, its errors, how
    /// it refused our credential) are the log's.
    pub fn public_reason(&self) -> String {
        let refused = |reason: &str| format!("the chain node refused the request: {reason}");
        match self {
            ChainError::Unavailable(_) => "the chain node is unreachable".into(),
            ChainError::Invalid { reason, .. } => refused(reason),
            ChainError::NotFound(_) => refused("not_found"),
            ChainError::Conflict(_) => refused("conflict"),
        }
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
            Chain::Devnet(chain) => off_runtime(chain, move |c| c.submit(&block)).await,
            Chain::Upstream(node) => node.submit(&block).await,
        }
    }

    pub async fn block(&self, height: u64) -> Result<ChainBlock, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.block(height),
            Chain::Upstream(node) => node.block(height).await,
        }
    }

    /// The chain's newest block (none on an empty chain).
    pub async fn tip(&self) -> Result<Option<ChainBlock>, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.tip(),
            Chain::Upstream(node) => node.tip().await,
        }
    }

    /// The receipt of the transfer made with `idempotency_key`, if the chain
    /// has one (how a payout interrupted mid-call is reconciled).
    pub async fn transfer_by_key(&self, idempotency_key: &str) -> Result<Option<TransferReceipt>, ChainError> {
        match self {
            Chain::Devnet(chain) => chain.transfer_by_key(idempotency_key),
            Chain::Upstream(node) => node.transfer_by_key(idempotency_key).await,
        }
    }

    pub async fn balance(&self, address: &str) -> Result<Balance, ChainError> {
        match self {
            Chain::Devnet(chain) => {
                let address = address.to_string();
                off_runtime(chain, move |c| c.balance(&address)).await
            }
            Chain::Upstream(node) => node.balance(address).await,
        }
    }

    pub async fn transfer(&self, request: TransferRequest) -> Result<TransferReceipt, ChainError> {
        match self {
            Chain::Devnet(chain) => off_runtime(chain, move |c| c.transfer(&request)).await,
            Chain::Upstream(node) => node.transfer(&request).await,
        }
    }
}

/// Runs a devnet call that hashes, scans, takes the write lock or fsyncs
/// on a blocking thread: never on a runtime thread.
async fn off_runtime<T: Send + 'static>(
    chain: &Arc<devnet::DevnetChain>,
    call: impl FnOnce(&devnet::DevnetChain) -> Result<T, ChainError> + Send + 'static,
) -> Result<T, ChainError> {
    chain.on_blocking_thread(call).await
}

/// The most of a node's own text (a reason, an address, an id) kept where
/// it is stored or shown.
pub const MAX_NODE_TEXT_CHARS: usize = 300;

/// `text` from a node as it may be stored and shown: control characters
/// dropped, cut to [`MAX_NODE_TEXT_CHARS`].
pub fn node_text(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(MAX_NODE_TEXT_CHARS).collect()
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
