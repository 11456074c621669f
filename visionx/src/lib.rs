//! VisionX v1, the proof of work of the Vision chain, computed bit-exactly.
//!
//! This crate is the single source of truth for the algorithm; the miner's CPU
//! and GPU backends and the coordinator's share verifier all build on it.
//! It does no I/O, spawns no threads, and knows nothing of async, HTTP or GPUs.
//!
//! # Layout
//! - [`params`]: the tunable parameters, their consensus values and the
//!   denial-of-service limits every verifier enforces.
//! - [`splitmix`]: SplitMix64, whose outputs define the dataset and scratchpad.
//! - [`epoch`]: epochs, epoch seeds and the folded dataset seed.
//! - [`header`]: block-header fields and the pow message they encode to.
//! - [`target`]: difficulty, target and the digest-meets-target test.
//! - [`pow_input`]: everything one hash depends on except the nonce, validated once.
//! - [`reference`]: the spec read literally (materialised dataset and scratchpad).
//! - [`fast`]: on-demand words, a small write table, several nonces in lockstep.
//! - [`search`]: the job / nonce-range search interface all backends share.
//!
//! The two engines implement [`PowEngine`]; they must agree on every input,
//! which the vectors and property tests check.

pub mod epoch;
pub mod fast;
pub mod header;
pub mod params;
pub mod pow_input;
pub mod reference;
pub mod search;
pub mod splitmix;
pub mod target;
#[cfg(any(test, feature = "vectors"))]
pub mod vectors;

mod algorithm;
mod error;

pub use epoch::{epoch_of, epoch_seed, fold_seed};
pub use error::Error;
pub use fast::FastEngine;
pub use header::{parse_hash32, BlockHeader};
pub use params::{Geometry, Params};
pub use pow_input::PowInput;
pub use reference::ReferenceEngine;
pub use search::{EngineKind, Found, Job, NonceRange, PowEngine, SearchControl, SearchEnd, UnknownEngine};
pub use target::{Digest, Target};
