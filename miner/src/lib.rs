//! `vision-miner`: mines VisionX on GPUs (through wgpu) and CPUs.
//!
//! The binary (`src/main.rs`) is thin glue over this library: it parses the
//! command line and calls into the modules below.
//!
//! # Layout
//! - [`backend`]: the mining backends. [`backend::cpu`] runs the `visionx`
//!   fast engine on a rayon pool, one engine per thread.
//! - [`bench`]: timed hashing on a backend, reported as hashes per second.
//! - [`hash_command`]: `vision-miner hash`, one digest from explicit inputs or
//!   a block file.
//!
//! **Architecture invariant:** the algorithm lives in `visionx`; nothing here
//! computes any part of VisionX itself.

pub mod backend;
pub mod bench;
pub mod client;
pub mod device_selection;
pub mod hash_command;

/// A problem with what the user asked for (bad hex, out-of-limit params, an
/// unreadable file). The binary exits with code 2 for these, 1 for the rest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError(message.into())
    }
}

impl From<visionx::Error> for InputError {
    fn from(err: visionx::Error) -> Self {
        InputError(err.to_string())
    }
}
