//! `vision-miner`: mines VisionX on GPUs (through wgpu) and CPUs.
//!
//! The binary (`src/main.rs`) is clap glue over this library: it parses the
//! command line, calls [`mining::run`] (or a command's function), and exits
//! with [`MinerError::exit_code`].
//!
//! # Layout
//! - [`mining`]: `run(config, shutdown)`, from a resolved configuration to a
//!   stop; device start-up (the one probe-open-tune path).
//! - [`miner_error`]: [`MinerError`], the one error type, and the exit codes.
//! - [`backend`]: the mining backends. [`backend::cpu`] runs the `visionx`
//!   fast engine on a rayon pool, one engine per thread; [`backend::gpu`]
//!   runs the WGSL kernel through wgpu.
//! - [`client`]: pools and nodes (sessions, failover, work dispatch to the
//!   devices, status, the local API, configuration).
//! - [`device_selection`]: `--backend` and `--device` against the adapters.
//! - [`bench`](mod@bench): timed hashing on a backend, reported as hashes per second.
//! - [`hash_command`]: `vision-miner hash`, one digest from explicit inputs or
//!   a block file.
//!
//! **Architecture invariant:** the algorithm lives in `visionx`; nothing here
//! computes any part of VisionX on the CPU. The GPU kernel (`shaders/`) is
//! the one other implementation, and every nonce it reports while mining is
//! re-checked with `visionx` first.

pub mod backend;
pub mod bench;
pub mod client;
pub mod device_selection;
pub mod hash_command;
pub mod miner_error;
pub mod mining;

pub use miner_error::MinerError;

/// A problem with what the user asked for (bad hex, out-of-limit params, an
/// unreadable file), found while parsing input; it becomes
/// [`MinerError::BadInput`] (exit code 2).
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
