//! The GPU backend: VisionX in WGSL compute shaders through wgpu.
//!
//! - [`shader`]: assembles the kernel for native `u64` or emulated `vec2<u32>`.
//! - [`adapters`]: finds and describes adapters (`vision-miner devices`).
//! - [`device`]: opens an adapter and compiles the kernel, a pipeline per
//!   params and table shape (override constants); sizes per-hash tables
//!   with `visionx`'s rules.
//! - [`kernel_layout`]: the host side of the kernel's buffers (`KernelConfig`,
//!   pinned to the WGSL `Config`; `KernelSpec`, its override constants; the
//!   header words).
//! - [`searcher`]: the batch lifecycle: one device running batches of nonces,
//!   reading back only the found list.
//! - `batch_buffers`: a batch shape's buffers, bind groups and readback
//!   slots; `segment_buffers`: a segment's state and tables, a buffer each
//!   or ranges of one buffer.
//! - `batch_timing`: a batch's time on the GPU clock, from its timestamps.
//! - [`tuning`]: measures the device to choose the batch shape.
//! - [`worker`]: [`GpuBackend`] and the device's own thread; every found
//!   nonce is re-checked on the CPU (on the searching thread, off the device
//!   thread) and a failure disables the device.
//!
//! The kernel is the one implementation of VisionX outside `visionx`; no
//! result of it reaches a session without a CPU re-check
//! ([`hash_nonces`], for `vision-miner hash --engine gpu`, returns raw
//! digests by design).

pub mod adapters;
mod batch_buffers;
mod batch_timing;
pub mod device;
pub mod found_list;
pub mod kernel_layout;
pub mod searcher;
mod segment_buffers;
pub mod shader;
pub mod tuning;
pub mod worker;

pub use searcher::{BatchResult, BatchShape, GpuDevice, GpuSearcher, StepTimes};
pub use shader::{ShaderVariant, TableProbe};

/// Why a GPU cannot mine (or stopped mining).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (no Vulkan, Metal or DX12 driver)")]
    NoAdapter,
    #[error("no GPU adapter with index {0}")]
    NoSuchDevice(usize),
    /// The device or the job asks for something this backend cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The device was disabled (a wrong result or a lost device earlier).
    #[error("GPU {0} is disabled")]
    Disabled(String),
    /// The child-process probe of a device failed (or crashed, or hung).
    #[error("GPU probe failed: {0}")]
    Probe(String),
    /// A batch was asked for before any job was loaded.
    #[error("no job loaded")]
    NoJob,
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
    /// A found list no working kernel writes: a count past its segment or
    /// a lane outside the batch (memory corruption, a half-run kernel).
    #[error("the GPU returned a corrupt found list: segment {segment}: {error} (device disabled)")]
    CorruptFoundList { segment: usize, error: found_list::FoundListError },
}

use std::sync::Arc;

use visionx::{Digest, PowInput, Target};

pub use kernel_layout::MAX_FOUND_PER_BATCH;

/// Mix iterations per dispatch when nothing was tuned: lavapipe returns
/// wrong results silently above about 3,000 per dispatch; 1,024 was safe.
pub const DEFAULT_SPLIT: u32 = 1024;

/// Opens adapter `index` (or the first one) with the kernel for `variant`
/// (the table filter as the device's default).
pub fn open_device(index: Option<usize>, variant: Option<ShaderVariant>) -> Result<GpuDevice, GpuError> {
    let adapters = adapters::enumerate();
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter);
    }
    let index = index.unwrap_or(0);
    let adapter = adapters.get(index).ok_or(GpuError::NoSuchDevice(index))?;
    GpuDevice::open(index, adapter, variant, None)
}

/// Digests of `nonces` computed on `gpu` (one small batch each call; for
/// `vision-miner hash` and tests, not for mining).
pub fn hash_nonces(gpu: GpuDevice, input: &PowInput, nonces: &[u64]) -> Result<Vec<Digest>, GpuError> {
    // (A part-filled workgroup where the tables are too wide for a whole one.)
    let segment_hashes = WORKGROUP_SIZE.min(gpu.max_segment_hashes(input.params()).max(1));
    let shape = BatchShape { segment_hashes, segments: 1, split: DEFAULT_SPLIT };
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

/// Digests of `count` consecutive nonces from `first`, computed on `gpu` in
/// one batch, each hash in a lane of its own (for tests: every lane's table
/// at its own offset; at most `MAX_FOUND_PER_BATCH`, all of them found).
pub fn hash_range(gpu: GpuDevice, input: &PowInput, first: u64, count: u32) -> Result<Vec<Digest>, GpuError> {
    if count == 0 || count > MAX_FOUND_PER_BATCH {
        return Err(GpuError::Unsupported(format!("{count} hashes in one batch (1 to {MAX_FOUND_PER_BATCH})")));
    }
    if first.checked_add(u64::from(count) - 1).is_none() {
        return Err(GpuError::Unsupported(format!("{count} nonces from {first} pass 2^64")));
    }
    let segment_hashes = count.div_ceil(WORKGROUP_SIZE) * WORKGROUP_SIZE;
    let shape = BatchShape { segment_hashes, segments: 1, split: DEFAULT_SPLIT };
    let mut searcher = GpuSearcher::new(gpu, shape, input.params())?;
    searcher.set_job(Arc::new(input.clone()), Target::NONE)?;
    let mut found = searcher.run_batch(first, count)?.found;
    found.sort_by_key(|f| f.nonce);
    if found.len() != count as usize {
        return Err(GpuError::Validation(format!("expected a digest for each of {count} nonces, got {}", found.len())));
    }
    if let Some((i, f)) = found.iter().enumerate().find(|(i, f)| f.nonce != first + *i as u64) {
        return Err(GpuError::Validation(format!("digest {i} is of nonce {}, not {}", f.nonce, first + i as u64)));
    }
    Ok(found.into_iter().map(|f| f.digest).collect())
}

pub use kernel_layout::WORKGROUP_SIZE;
pub use worker::{DispatchStats, GpuBackend, InjectedFault};

/// Runs the adapter probe (`vision-miner gpu-probe`) in a child process:
/// some vendors' Vulkan drivers crash while building pipelines, which must not
/// take the miner down. `Ok` when the child compiled the kernel and hashed a
/// known vector correctly.
pub fn probe_in_child(
    miner_exe: &std::path::Path,
    index: usize,
    variant: Option<ShaderVariant>,
    timeout: std::time::Duration,
) -> Result<(), GpuError> {
    let probe = GpuError::Probe;
    let mut cmd = std::process::Command::new(miner_exe);
    cmd.args(["gpu-probe", "--device", &index.to_string()]);
    if let Some(variant) = variant {
        cmd.args(["--shader", variant.name()]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| probe(format!("cannot start the probe {}: {e}", miner_exe.display())))?;
    // Read both pipes while waiting: a child whose logs (a driver's
    // warnings, an inherited RUST_LOG=debug) fill a pipe would block on it
    // and look hung. Only their ends are kept.
    let (stdout, stderr) = (PipeTail::read(child.stdout.take()), PipeTail::read(child.stderr.take()));
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let last = PipeTail::last_line(&stderr.settled());
                return Err(probe(format!("probe did not finish within {}s: {last}", timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(probe(format!("probe: {e}")));
            }
        }
    };
    if status.success() && String::from_utf8_lossy(&stdout.settled()).trim() == "ok" {
        return Ok(());
    }
    let reason = PipeTail::last_line(&stderr.settled());
    Err(probe(match status.code() {
        Some(code) => format!("probe exited with code {code}: {reason}"),
        None => format!("probe crashed ({status}): {reason}"),
    }))
}

/// The last bytes of a child's pipe, read on a thread of its own until the
/// pipe closes.
struct PipeTail {
    tail: Arc<std::sync::Mutex<Vec<u8>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl PipeTail {
    /// The most kept of a pipe (its end: where the reason is).
    const KEEP: usize = 64 << 10;

    fn read(pipe: Option<impl std::io::Read + Send + 'static>) -> PipeTail {
        let tail = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, finished) = (tail.clone(), done.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            if let Some(mut pipe) = pipe {
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    let mut kept = kept.lock().expect("pipe tail");
                    kept.extend_from_slice(&chunk[..n]);
                    let over = kept.len().saturating_sub(Self::KEEP);
                    kept.drain(..over);
                }
            }
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        PipeTail { tail, done }
    }

    /// What was read, once the pipe has closed or after a second at most
    /// (a grandchild may hold it open: not waited for).
    fn settled(&self) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !self.done.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.tail.lock().expect("pipe tail").clone()
    }

    fn last_line(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string()
    }
}

/// What `vision-miner gpu-probe` does in the child: compile the kernel on
/// adapter `index` and hash the first small vector, checking the digest.
pub fn probe(index: usize, variant: Option<ShaderVariant>) -> Result<(), GpuError> {
    let gpu = open_device(Some(index), variant)?;
    let vector = visionx::vectors::hash_vectors()
        .into_iter()
        .find(|v| !v.is_consensus())
        .expect("bundled vectors include small-params ones");
    let input = vector.input().expect("bundled vector is valid");
    let digest = hash_nonces(gpu, &input, &[vector.nonce])?[0];
    if digest != vector.expected() {
        return Err(GpuError::WrongResult { nonce: vector.nonce });
    }
    Ok(())
}
