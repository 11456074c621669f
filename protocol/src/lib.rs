//! The wire contract between `vision-miner` and `vision-coordinator`: the
//! request and response bodies of the pool API (`/pool/*`) and the node API
//! (`/node/*`), declared once and used by both binaries (in the manner of the
//! Stratum V2 reference's protocol crates beside its roles).
//!
//! # Layout
//! - [`header_fields`]: [`HeaderFields`], a block header's fields as they
//!   travel, with the one conversion to `visionx` inputs.
//! - [`pool`]: register, job, share, stats, blocks, bans, settings.
//! - [`node`]: templates, submissions, blocks, balances, transfers.
//! - [`ErrorBody`]: the JSON body of every error answer.
//! - [`bearer_token`]: what an operator's admin, node or API token must be.
//! - [`settings_errors`]: what an error about a settings file may say (no
//!   value it quotes: it may be a secret).
//!
//! Field names are a contract (`docs/API.md`): add fields freely, rename
//! none. Nothing here is a storage record: servers convert their records
//! into these types, so renaming a stored field cannot change the API. This
//! crate does no I/O.

pub mod bearer_token;
pub mod header_fields;
pub mod node;
pub mod pool;
pub mod settings_errors;

use serde::{Deserialize, Serialize};

pub use header_fields::HeaderFields;

/// The body of every error answer: a stable machine-readable reason, and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
}
