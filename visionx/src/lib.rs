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
//! - [`reference`](mod@reference): the spec read literally (materialised dataset and scratchpad).
//! - [`write_table`]: the words one hash has written, behind a bit filter
//!   (what lets the on-demand engines skip the scratchpad).
//! - [`scalar`]: on-demand words, four nonces in lockstep in scalar code
//!   (portable).
//! - `simd`: the same across vector lanes, 16 nonces (AVX2 or AVX-512)
//!   a group; the only `unsafe` in the crate, each block with its argument.
//! - [`fast`]: picks the best of those this CPU runs, once, at run time.
//! - [`search`]: the job / nonce-range search interface all backends share.
//! - `algorithm` (private): the header seed, initial state and digest
//!   rounds every engine shares.
//! - `vectors` (feature `vectors`): the bundled known-answer file.
//!
//! Every engine implements [`PowEngine`]; they must agree on every input,
//! which the vectors and property tests check (every engine the machine
//! runs, against the reference).

pub mod epoch;
pub mod fast;
pub mod header;
pub mod params;
pub mod pow_input;
pub mod reference;
pub mod scalar;
pub mod search;
pub mod splitmix;
pub mod target;
#[cfg(any(test, feature = "vectors"))]
pub mod vectors;

mod algorithm;
mod error;
mod simd;
#[cfg(test)]
mod test_support;
pub mod write_table;

pub use epoch::{epoch_of, epoch_seed, fold_seed};
pub use error::Error;
pub use fast::{CpuEngine, EngineUnavailable, FastEngine};
pub use header::{parse_hash32, BlockHeader};
pub use params::{Geometry, Params};
pub use pow_input::PowInput;
pub use reference::ReferenceEngine;
pub use scalar::ScalarEngine;
pub use search::{EngineKind, Found, Job, NonceRange, PowEngine, SearchControl, SearchEnd, UnknownEngine};
pub use target::{Digest, Target};
