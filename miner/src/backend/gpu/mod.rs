//! The GPU backend: VisionX in WGSL compute shaders through wgpu.
//!
//! - [`shader`]: assembles the kernel for native `u64` or emulated `vec2<u32>`.
//! - [`adapters`]: finds and describes adapters (`vision-miner devices`).
//! - [`searcher`]: one device running batches of nonces, reading back only
//!   the found list.

pub mod adapters;
pub mod searcher;
pub mod shader;

pub use searcher::{BatchResult, BatchShape, GpuDevice, GpuSearcher};
pub use shader::ShaderVariant;

/// Why a GPU cannot mine (or stopped mining).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (no Vulkan, Metal or DX12 driver)")]
    NoAdapter,
    #[error("no GPU adapter with index {0}")]
    NoSuchDevice(usize),
    #[error("{0}")]
    Unsupported(String),
    #[error("could not open the device: {0}")]
    Device(String),
    #[error("the driver failed to build the kernel: {0}")]
    Pipeline(String),
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    #[error("the GPU reported an error: {0}")]
    Validation(String),
    #[error("the device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU computed a wrong digest for nonce {nonce} (device disabled)")]
    WrongResult { nonce: u64 },
}

use std::sync::Arc;

use visionx::{Digest, PowInput, Target};

/// Mix iterations per dispatch when nothing was tuned: lavapipe returns
/// wrong results silently above about 3,000 per dispatch; 1,024 was safe.
pub const DEFAULT_SPLIT: u32 = 1024;

/// Opens adapter `index` (or the first one) with the kernel for `variant`.
pub fn open_device(index: Option<usize>, variant: Option<ShaderVariant>) -> Result<GpuDevice, GpuError> {
    let adapters = adapters::enumerate();
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter);
    }
    let index = index.unwrap_or(0);
    let adapter = adapters.get(index).ok_or(GpuError::NoSuchDevice(index))?;
    GpuDevice::open(index, adapter, variant)
}

/// Digests of `nonces` computed on `gpu` (one small batch each call; for
/// `vision-miner hash` and tests, not for mining).
pub fn hash_nonces(gpu: GpuDevice, input: &PowInput, nonces: &[u64]) -> Result<Vec<Digest>, GpuError> {
    let shape = BatchShape { segment_hashes: WORKGROUP_SIZE, segments: 1, split: DEFAULT_SPLIT };
    let mut searcher = GpuSearcher::new(gpu, shape, input.params())?;
    searcher.set_job(Arc::new(input.clone()), Target::NONE)?;
    nonces
        .iter()
        .map(|&nonce| {
            let batch = searcher.run_batch(nonce, 1)?;
            match batch.found.as_slice() {
                [found] if found.nonce == nonce => Ok(found.digest),
                other => {
                    Err(GpuError::Validation(format!("expected one digest for nonce {nonce}, got {}", other.len())))
                }
            }
        })
        .collect()
}

pub use searcher::WORKGROUP_SIZE;
