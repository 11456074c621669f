use thiserror::Error;

/// Everything that can be wrong with an input to VisionX.
///
/// Hashing itself never fails: once a [`crate::PowInput`] exists, every nonce hashes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is above its denial-of-service limit.
    #[error("{name} = {value} is above the limit of {max}")]
    ParamOutOfLimit { name: &'static str, value: u64, max: u64 },
    /// `epoch_blocks` must be at least 1 (it divides the height).
    #[error("epoch_blocks must be at least 1")]
    ZeroEpochBlocks,
    /// A hex field did not decode.
    #[error("{field}: {reason}")]
    BadHex { field: &'static str, reason: String },
    /// A fixed-size field had the wrong length.
    #[error("{field}: expected {expected} bytes, got {got}")]
    WrongLength { field: &'static str, expected: usize, got: usize },
    /// A block's miner address is empty (a chain rule, not a hashing rule).
    #[error("miner address must not be empty")]
    EmptyMiner,
}
