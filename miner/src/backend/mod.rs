//! Mining backends. Each one searches a [`visionx::Job`]'s nonce range on
//! its devices, reports found nonces, stops promptly when the job's
//! [`visionx::SearchControl`] is cancelled, and counts the hashes it completes.
//!
//! - [`cpu`]: the `visionx` fast engine on a rayon pool.

pub mod cpu;
pub mod gpu;

pub use cpu::{CpuBackend, CpuConfig};
