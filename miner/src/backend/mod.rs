//! Mining backends. Each one searches a [`visionx::Job`]'s nonce range on
//! its device, reports found nonces, stops promptly when the job's
//! [`visionx::SearchControl`] is cancelled, and counts the hashes it
//! completes. They share one shape, [`MiningBackend`] (in the manner of
//! xmrig's backends, one module per device family), so the dispatcher drives
//! every device the same way.
//!
//! - [`cpu`]: the `visionx` fast engine on a rayon pool ([`CpuDevice`] is
//!   its mining shape: a pool rebuilt when the thread count changes).
//! - [`gpu`]: the WGSL kernel through wgpu, on a device thread of its own.

pub mod cpu;
pub mod gpu;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use visionx::{EngineKind, Found, Job, SearchControl, SearchEnd};

pub use cpu::{CpuBackend, CpuConfig};

/// Which family a backend belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// Why a backend cannot mine any more (it is disabled from then on).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    #[error("cannot start the CPU threads: {0}")]
    Cpu(#[from] cpu::CpuBackendError),
}

impl BackendError {
    /// Whether only this job is beyond the device (its tables need more
    /// memory than the device has): it sits the job out and takes the
    /// next, rather than stopping for good. The hashes its search counted
    /// on the job's control are the first of its range, their finds passed
    /// on (the GPU reads its batches back in order): when the work comes
    /// back, the device picks up after them.
    pub fn is_job_only(&self) -> bool {
        matches!(self, BackendError::Gpu(gpu::GpuError::OutOfMemory(_)))
    }
}

/// A device the miner mines on.
pub trait MiningBackend: Send {
    /// A short, stable name for status and logs: `cpu`, `gpu0`, ...
    fn name(&self) -> String;
    fn kind(&self) -> BackendKind;
    /// Searches `job.nonces` until the range is done or `control` is
    /// cancelled, passing every found nonce (already checked) to
    /// `on_found`. The end's `next_nonce` is never past what was hashed
    /// (and its finds passed on): the dispatcher picks up there when the
    /// same work comes back. An error means the device cannot go on (it
    /// stays disabled), except one [`BackendError::is_job_only`].
    fn search(
        &mut self,
        job: &Job,
        control: &Arc<SearchControl>,
        on_found: &(dyn Fn(Found) + Sync),
    ) -> Result<SearchEnd, BackendError>;
    /// Where this device counts the finds it made and dropped, never
    /// passed on (a GPU finding more than it can list or the CPU
    /// re-check), as they are dropped: the status's `dropped` reads it.
    /// `None`: it drops none.
    fn dropped_finds(&self) -> Option<Arc<AtomicU64>> {
        None
    }
    /// Its worker threads, for backends that have a count to set.
    fn threads(&self) -> Option<usize> {
        None
    }
    /// Asks for `threads` worker threads from the next search on; false for
    /// backends without threads to set.
    fn set_threads(&mut self, threads: usize) -> bool {
        let _ = threads;
        false
    }
}

/// The CPU as a mining device: a [`CpuBackend`] on the fast engine, rebuilt
/// when the thread count changes (`POST /threads`).
pub struct CpuDevice {
    threads: usize,
    backend: Option<CpuBackend>,
}

impl CpuDevice {
    pub fn new(threads: usize) -> Self {
        CpuDevice { threads: threads.max(1), backend: None }
    }
}

impl MiningBackend for CpuDevice {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn search(
        &mut self,
        job: &Job,
        control: &Arc<SearchControl>,
        on_found: &(dyn Fn(Found) + Sync),
    ) -> Result<SearchEnd, BackendError> {
        if self.backend.as_ref().is_none_or(|b| b.threads() != self.threads) {
            self.backend = Some(CpuBackend::new(CpuConfig { threads: Some(self.threads), engine: EngineKind::Fast })?);
        }
        let backend = self.backend.as_ref().expect("built above");
        Ok(backend.search(job, control, on_found))
    }

    fn threads(&self) -> Option<usize> {
        Some(self.threads)
    }

    fn set_threads(&mut self, threads: usize) -> bool {
        if threads == 0 {
            return false;
        }
        self.threads = threads;
        true
    }
}

impl MiningBackend for gpu::GpuBackend {
    fn name(&self) -> String {
        format!("gpu{}", self.summary().index)
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn search(
        &mut self,
        job: &Job,
        control: &Arc<SearchControl>,
        on_found: &(dyn Fn(Found) + Sync),
    ) -> Result<SearchEnd, BackendError> {
        Ok(gpu::GpuBackend::search(self, job, control, on_found)?)
    }

    fn dropped_finds(&self) -> Option<Arc<AtomicU64>> {
        Some(gpu::GpuBackend::dropped_finds(self))
    }
}

#[cfg(test)]
mod tests {
    use visionx::{NonceRange, Params, PowInput, Target};

    use super::*;

    #[test]
    fn the_cpu_device_searches_and_rebuilds_on_a_new_thread_count() {
        let params = Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 16, ..Params::CONSENSUS };
        let input = Arc::new(PowInput::new([3; 32], 0, b"backend".to_vec(), params).unwrap());
        let job = Job { input, target: Target::NONE, nonces: NonceRange::new(0, 40) };
        let mut device = CpuDevice::new(1);
        assert_eq!((device.name(), device.kind()), ("cpu".to_string(), BackendKind::Cpu));
        let found = std::sync::Mutex::new(Vec::new());
        device.search(&job, &Arc::new(SearchControl::new()), &|f| found.lock().unwrap().push(f.nonce)).unwrap();
        assert_eq!(found.lock().unwrap().len(), 40, "every digest meets Target::NONE");
        assert!(device.set_threads(2) && !device.set_threads(0));
        device.search(&job, &Arc::new(SearchControl::new()), &|_| {}).unwrap();
        assert_eq!(device.backend.as_ref().map(CpuBackend::threads), Some(2));
    }
}
