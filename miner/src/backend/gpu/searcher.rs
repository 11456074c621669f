//! The batch lifecycle: one opened GPU ([`GpuDevice`], `device`) running the
//! VisionX kernel over batches of nonces, with buffers laid out as
//! `kernel_layout` says.
//!
//! A batch is `segments x segment_hashes` consecutive nonces. Each segment
//! has its own state, key and value bindings (`segment_buffers`; wgpu caps
//! a storage binding, lavapipe at 128 MiB, so large batches spread over
//! several), and the mix
//! loop runs in slices of `split` iterations, one dispatch per (segment,
//! slice). Each slice of a batch is its own submission
//! ([`GpuSearcher::submit_step`]), so a new job interrupts a batch between
//! dispatches. Only the small found-list buffer is read back; two readback
//! slots let the next batch start while the previous one is read. The
//! buffers are `batch_buffers`'; the timestamps are read by `batch_timing`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use visionx::{Found, PowInput, Target};

pub use super::batch_buffers::SLOTS;
use super::batch_buffers::{BatchBuffers, ReadbackSlot, Segment};
use super::batch_timing::batch_times;
pub use super::batch_timing::{StepTimes, MAX_TIMED_STEPS};
pub use super::device::GpuDevice;
use super::device::TableSlots;
use super::found_list::FoundList;
use super::kernel_layout::{header_words, split_u64, KernelConfig, HEADER_BUFFER_BYTES, WORKGROUP_SIZE};
use super::GpuError;

/// How a batch is laid out on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Hashes per segment (one set of buffers).
    pub segment_hashes: u32,
    pub segments: u32,
    /// Mix iterations per dispatch.
    pub split: u32,
}

impl BatchShape {
    pub fn hashes(&self) -> u32 {
        self.segment_hashes * self.segments
    }
}

/// What a collected batch produced.
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub nonce_base: u64,
    pub hashes: u32,
    /// Nonces whose digest met the target, with the GPU's digest (not yet re-checked).
    pub found: Vec<Found>,
    /// Hashes that met the target past what the found lists hold: counted
    /// by the kernel, lost.
    pub finds_not_stored: u32,
    /// GPU time of the batch from timestamp queries, when the adapter has
    /// them: from its first step's start to its last step's end.
    pub gpu_time: Option<Duration>,
    /// Where that time went, step by step (timestamps around every step,
    /// when a batch has at most [`MAX_TIMED_STEPS`] steps).
    pub step_times: Option<StepTimes>,
    /// Wall time from submission to results.
    pub wall_time: Duration,
    /// Dispatches the batch took.
    pub dispatches: u32,
}

/// The job currently loaded.
struct LoadedJob {
    input: Arc<PowInput>,
    target: Target,
    /// The kernel specialised for its params on these tables.
    pipeline: wgpu::ComputePipeline,
}

/// A device plus buffers for one batch shape, and the job it is searching.
pub struct GpuSearcher {
    gpu: GpuDevice,
    shape: BatchShape,
    /// The split the config buffers were sized for (the smallest usable).
    allocated_split: u32,
    slots_per_hash: u32,
    table: TableSlots,
    filter_bits_per_hash: u32,
    config_stride: u64,
    found_capacity: u32,
    found_bytes: u64,
    header: wgpu::Buffer,
    segments: Vec<Segment>,
    readback: Vec<ReadbackSlot>,
    job: Option<LoadedJob>,
}

impl GpuSearcher {
    /// Allocates buffers for `shape` with tables sized for `params`.
    pub fn new(gpu: GpuDevice, shape: BatchShape, params: &visionx::Params) -> Result<Self, GpuError> {
        let table = gpu.tables(params);
        let slots_per_hash = table.slots;
        let filter_bits_per_hash = gpu.filter_bits(params);
        if shape.segment_hashes == 0 || shape.segments == 0 || shape.split == 0 {
            return Err(GpuError::Unsupported(format!("empty batch shape {shape:?}")));
        }
        // (So that `hashes()`, a product, holds for the searcher's life.)
        if shape.segment_hashes.checked_mul(shape.segments).is_none() {
            return Err(GpuError::Unsupported(format!("batch shape {shape:?} holds over 2^32 hashes")));
        }
        if gpu.max_segment_hashes(params) == 0 {
            // The job's, not the device's fault: sat out like any job too
            // large for the card.
            return Err(GpuError::OutOfMemory(format!(
                "one hash's tables ({} bytes) exceed the device's largest storage binding",
                gpu.bytes_per_hash(params)
            )));
        }
        if shape.segment_hashes > gpu.max_segment_hashes(params) {
            return Err(GpuError::Unsupported(format!(
                "{} hashes per segment exceed the device's storage binding limit ({})",
                shape.segment_hashes,
                gpu.max_segment_hashes(params)
            )));
        }
        if gpu.memory_ceiling_hashes.is_some_and(|ceiling| shape.hashes() > ceiling) {
            return Err(GpuError::OutOfMemory(format!("{} hashes: over the injected memory ceiling", shape.hashes())));
        }
        let BatchBuffers { header, found_capacity, found_bytes, config_stride, segments, readback } =
            BatchBuffers::allocate(&gpu, shape, params, slots_per_hash, filter_bits_per_hash)?;
        gpu.check_health()?;
        Ok(GpuSearcher {
            gpu,
            shape,
            allocated_split: shape.split,
            slots_per_hash,
            table,
            filter_bits_per_hash,
            config_stride,
            found_capacity,
            found_bytes,
            header,
            segments,
            readback,
            job: None,
        })
    }

    pub fn device(&self) -> &GpuDevice {
        &self.gpu
    }

    /// The job loaded, if any.
    pub fn job(&self) -> Option<(&Arc<PowInput>, Target)> {
        self.job.as_ref().map(|j| (&j.input, j.target))
    }

    pub fn shape(&self) -> BatchShape {
        self.shape
    }

    /// Device memory the batch's tables and state take.
    pub fn bytes_in_flight(&self) -> u64 {
        u64::from(self.shape.hashes()) * (self.table_bytes_per_hash() + 32)
    }

    /// Table bytes per hash in flight (keys, values and filter).
    pub fn table_bytes_per_hash(&self) -> u64 {
        u64::from(self.slots_per_hash) * 12 + u64::from(self.filter_bits_per_hash / 8)
    }

    /// Whether buffers allocated for `params` can run a job with these params.
    pub fn fits(&self, params: &visionx::Params) -> bool {
        !self.readback.is_empty()
            && self.gpu.table_slots(params) <= self.slots_per_hash
            && self.gpu.filter_bits(params) <= self.filter_bits_per_hash
            && params.mix_iters.div_ceil(self.shape.split).max(1)
                <= self.readback[0].config.size().div_ceil(self.config_stride) as u32 / self.shape.segments
    }

    /// Whether `params` need tables at most half the size these buffers
    /// hold: a batch sized for the bigger tables holds far fewer hashes
    /// than the card could run for these.
    pub fn oversized_for(&self, params: &visionx::Params) -> bool {
        self.gpu.table_slots(params).saturating_mul(2) <= self.slots_per_hash
    }

    /// Uses `split` mix iterations per dispatch from the next batch on. Only
    /// a split at least that the buffers were made for fits (no more slices,
    /// so no more configs); false otherwise, or while a batch is in flight.
    pub fn set_split(&mut self, split: u32) -> bool {
        if split < self.allocated_split || self.readback.iter().any(|r| r.busy) {
            return false;
        }
        self.shape.split = split;
        true
    }

    /// Frees the batch's device buffers ahead of replacing this searcher
    /// (a re-tune). It runs nothing afterwards: no job fits it any more.
    pub fn release_buffers(&mut self) {
        self.job = None;
        self.segments.clear();
        self.readback.clear();
        self.slots_per_hash = 0;
    }

    /// Forgets the loaded job.
    pub fn clear_job(&mut self) {
        self.job = None;
    }

    /// Loads a job: its header goes to the device now; batches use it from the next submit.
    pub fn set_job(&mut self, input: Arc<PowInput>, target: Target) -> Result<(), GpuError> {
        if !self.fits(input.params()) {
            return Err(GpuError::Unsupported("job params need a bigger table: rebuild the searcher".into()));
        }
        let words = header_words(&input);
        if words.len() as u64 * 8 > HEADER_BUFFER_BYTES {
            return Err(GpuError::Unsupported(format!("pow message of {} bytes is too long", input.header().len())));
        }
        let table = TableSlots { slots: self.slots_per_hash, pow2: self.table.pow2 };
        let spec = self.gpu.kernel_spec(input.params(), table, self.filter_bits_per_hash)?;
        let pipeline = self.gpu.pipeline(&spec)?;
        if !words.is_empty() {
            self.gpu.queue.write_buffer(&self.header, 0, bytemuck::cast_slice(&words));
        }
        self.job = Some(LoadedJob { input, target, pipeline });
        Ok(())
    }

    /// Prepares a batch over nonces `nonce_base .. nonce_base + count` in
    /// readback slot `slot`; its steps are then submitted one by one with
    /// [`GpuSearcher::submit_step`]. `count` is at most the shape's hashes.
    pub fn start_batch(&mut self, slot: usize, nonce_base: u64, count: u32) -> Result<BatchTicket, GpuError> {
        let job = self.job.as_ref().ok_or(GpuError::NoJob)?;
        assert!(count <= self.shape.hashes(), "batch of {count} exceeds the shape");
        assert!(count == 0 || nonce_base.checked_add(u64::from(count) - 1).is_some(), "nonce range wraps");
        assert!(!self.readback[slot].busy, "slot {slot} still holds an unread batch");
        let input = &job.input;
        let params = input.params();
        let splits = params.mix_iters.div_ceil(self.shape.split).max(1);

        let mut configs = vec![0u8; self.readback[slot].config.size() as usize];
        let mut steps: Vec<Vec<Dispatch>> = vec![Vec::new(); splits as usize];
        for s in 0..self.shape.segments {
            let first_hash = s * self.shape.segment_hashes;
            let n = count.saturating_sub(first_hash).min(self.shape.segment_hashes);
            if n == 0 {
                break;
            }
            for (t, step) in steps.iter_mut().enumerate() {
                let t = t as u32;
                let config = KernelConfig {
                    dataset_seed: split_u64(input.dataset_seed()),
                    nonce_base: split_u64(nonce_base),
                    target_top: split_u64(job.target.0),
                    iter_begin: t * self.shape.split,
                    iter_end: ((t + 1) * self.shape.split).min(params.mix_iters),
                    count: n,
                    first_hash,
                    header_words8: input.header().len().div_ceil(8) as u32,
                    header_words16: input.header().len().div_ceil(16) as u32,
                    found_capacity: self.found_capacity,
                    reserved: 0,
                };
                let offset = (u64::from(s * splits + t) * self.config_stride) as usize;
                configs[offset..offset + std::mem::size_of::<KernelConfig>()]
                    .copy_from_slice(bytemuck::bytes_of(&config));
                step.push(Dispatch {
                    segment: s as usize,
                    offset: offset as u32,
                    workgroups: n.div_ceil(WORKGROUP_SIZE),
                });
            }
        }
        // Writes land at the next submit, after everything submitted before.
        self.gpu.queue.write_buffer(&self.readback[slot].config, 0, &configs);
        self.readback[slot].busy = true;
        Ok(BatchTicket {
            slot,
            nonce_base,
            hashes: count,
            steps,
            next_step: 0,
            pipeline: job.pipeline.clone(),
            started_at: Instant::now(),
            last_submission: None,
        })
    }

    /// Submits the next step of `ticket` (one slice of the mix loop on every
    /// segment, all in one compute pass: the segments share nothing they
    /// write, so the device runs them side by side); the last step also
    /// copies the found lists for readback.
    pub fn submit_step(&mut self, ticket: &mut BatchTicket) -> Result<wgpu::SubmissionIndex, GpuError> {
        let t = ticket.next_step;
        assert!(t < ticket.steps.len(), "every step already submitted");
        let first = t == 0;
        let last = t + 1 == ticket.steps.len();
        let rb = &self.readback[ticket.slot];
        let step = &ticket.steps[t];
        let used_segments = step.last().map_or(0, |d| d.segment + 1);
        let mut encoder =
            self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("batch step") });
        if first {
            for segment in &self.segments[..used_segments] {
                encoder.clear_buffer(&segment.found[ticket.slot], 0, None);
                segment.buffers.keys.clear(&mut encoder);
                if self.filter_bits_per_hash > 0 {
                    segment.buffers.filter.clear(&mut encoder);
                }
            }
        }
        {
            let t = t as u32;
            let timestamp_writes = rb.queries.as_ref().and_then(|(set, _)| {
                let (begin, end) = if ticket.timed_steps() {
                    (Some(2 * t), Some(2 * t + 1))
                } else {
                    (first.then_some(0), last.then_some(1))
                };
                (begin.is_some() || end.is_some()).then_some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: begin,
                    end_of_pass_write_index: end,
                })
            });
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("visionx slice"), timestamp_writes });
            pass.set_pipeline(&ticket.pipeline);
            for dispatch in step {
                pass.set_bind_group(0, &self.segments[dispatch.segment].bind_groups[ticket.slot], &[dispatch.offset]);
                pass.dispatch_workgroups(dispatch.workgroups, 1, 1);
            }
        }
        if last {
            for (s, segment) in self.segments[..used_segments].iter().enumerate() {
                let offset = s as u64 * self.found_bytes;
                encoder.copy_buffer_to_buffer(&segment.found[ticket.slot], 0, &rb.staging, offset, self.found_bytes);
            }
            if let Some((set, resolve)) = &rb.queries {
                let count = self.timestamps_of(ticket);
                encoder.resolve_query_set(set, 0..count, resolve, 0);
                encoder.copy_buffer_to_buffer(resolve, 0, &rb.staging, self.timestamps_offset(), u64::from(count) * 8);
            }
        }
        let submission = self.gpu.queue.submit([encoder.finish()]);
        ticket.next_step += 1;
        ticket.last_submission = Some(submission.clone());
        self.gpu.check_health()?;
        Ok(submission)
    }

    /// Timestamps a batch writes: two per step, or two in all.
    fn timestamps_of(&self, ticket: &BatchTicket) -> u32 {
        if ticket.timed_steps() {
            2 * ticket.steps.len() as u32
        } else {
            2
        }
    }

    /// Where the timestamps follow the found lists in a staging buffer.
    fn timestamps_offset(&self) -> u64 {
        self.found_bytes * u64::from(self.shape.segments)
    }

    /// Blocks until `submission` has finished on the device.
    pub fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<(), GpuError> {
        self.gpu.wait_for(Some(submission), self.gpu.hang_timeout)?;
        self.gpu.check_health()
    }

    /// Gives up a batch whose steps were not all submitted (a new job came);
    /// its slot is free again once its submitted steps have finished.
    pub fn abandon(&mut self, ticket: BatchTicket) {
        self.readback[ticket.slot].busy = false;
    }

    /// Reads the found list of a batch whose last step has finished.
    pub fn read_results(&mut self, ticket: BatchTicket) -> Result<BatchResult, GpuError> {
        assert_eq!(ticket.next_step, ticket.steps.len(), "batch not fully submitted");
        let used_segments = ticket.hashes.div_ceil(self.shape.segment_hashes) as usize;
        let timestamps_offset = self.timestamps_offset() as usize;
        let timestamps = self.timestamps_of(&ticket) as usize;
        let timed_steps = ticket.timed_steps();
        let rb = &mut self.readback[ticket.slot];
        rb.busy = false;
        let (tx, rx) = std::sync::mpsc::channel();
        rb.staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = tx.send(result);
        });
        // Wait for this batch's own last step only (usually done already, so
        // this just runs the map callback): waiting for everything submitted
        // would also wait for the next batch's queued steps and let the
        // device run dry while nothing new is submitted.
        self.gpu.wait_for(ticket.last_submission.clone(), self.gpu.hang_timeout)?;
        let mapped = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("readback failed: {e}")),
            Err(_) => Err("readback never completed".to_string()),
        };
        if let Err(lost) = mapped {
            self.gpu.lost.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(GpuError::DeviceLost(lost));
        }
        let wall_time = ticket.started_at.elapsed();
        let (found, finds_not_stored, ticks) = {
            let bytes = match rb.staging.get_mapped_range(..) {
                Ok(bytes) => bytes,
                Err(e) => {
                    rb.staging.unmap();
                    return Err(GpuError::Validation(e.to_string()));
                }
            };
            let mut found = Vec::new();
            let mut finds_not_stored = 0u32;
            for s in 0..used_segments {
                let region = &bytes[s * self.found_bytes as usize..(s + 1) * self.found_bytes as usize];
                let list = FoundList {
                    words: bytemuck::cast_slice(region),
                    segment_lanes: self.shape.segment_hashes,
                    lanes_run: ticket
                        .hashes
                        .saturating_sub(s as u32 * self.shape.segment_hashes)
                        .min(self.shape.segment_hashes),
                    steps: ticket.steps() as u32,
                    capacity: self.found_capacity,
                    batch_lanes: ticket.hashes,
                };
                match list.read(ticket.nonce_base, &mut found) {
                    Ok(lost) => finds_not_stored += lost,
                    Err(corrupt) => {
                        drop(bytes);
                        rb.staging.unmap();
                        return Err(GpuError::CorruptFoundList { segment: s, error: corrupt });
                    }
                }
            }
            let ticks: Option<Vec<u64>> = rb.queries.as_ref().map(|_| {
                bytes[timestamps_offset..][..timestamps * 8]
                    .chunks_exact(8)
                    .map(bytemuck::pod_read_unaligned::<u64>)
                    .collect()
            });
            (found, finds_not_stored, ticks)
        };
        rb.staging.unmap();
        let period_ns = f64::from(self.gpu.queue.get_timestamp_period());
        let times = ticks.map(|ticks| batch_times(&ticks, period_ns, timed_steps));
        let (gpu_time, step_times) = (times.map(|t| t.0), times.and_then(|t| t.1));
        Ok(BatchResult {
            nonce_base: ticket.nonce_base,
            hashes: ticket.hashes,
            found,
            finds_not_stored,
            gpu_time,
            step_times,
            wall_time,
            dispatches: ticket.steps.iter().map(|s| s.len() as u32).sum(),
        })
    }

    /// Runs one whole batch in slot 0 and reads it (no overlap; for hashing
    /// single nonces, tests and tuning).
    pub fn run_batch(&mut self, nonce_base: u64, count: u32) -> Result<BatchResult, GpuError> {
        let mut ticket = self.start_batch(0, nonce_base, count)?;
        let mut last = None;
        while ticket.next_step < ticket.steps.len() {
            last = Some(self.submit_step(&mut ticket)?);
        }
        if let Some(submission) = last {
            self.wait(submission)?;
        }
        self.read_results(ticket)
    }

    /// Time of one step (a slice of `split` mix iterations on every segment)
    /// over `count` hashes: what the tuner measures. The first step also
    /// clears the tables, so a later one is timed where the batch has one.
    pub fn time_one_step(&mut self, nonce_base: u64, count: u32) -> Result<Duration, GpuError> {
        let mut ticket = self.start_batch(0, nonce_base, count)?;
        if ticket.steps() > 1 {
            let first = self.submit_step(&mut ticket)?;
            self.wait(first)?;
        }
        let started = Instant::now();
        let submission = self.submit_step(&mut ticket)?;
        self.wait(submission)?;
        let elapsed = started.elapsed();
        if ticket.fully_submitted() {
            self.read_results(ticket)?;
        } else {
            self.abandon(ticket);
        }
        Ok(elapsed)
    }
}

#[derive(Debug, Clone, Copy)]
struct Dispatch {
    segment: usize,
    offset: u32,
    workgroups: u32,
}

/// A batch between [`GpuSearcher::start_batch`] and [`GpuSearcher::read_results`].
#[derive(Debug)]
pub struct BatchTicket {
    slot: usize,
    nonce_base: u64,
    hashes: u32,
    /// Per step, the dispatches (segment, config offset, workgroups).
    steps: Vec<Vec<Dispatch>>,
    next_step: usize,
    /// The kernel its job's params need.
    pipeline: wgpu::ComputePipeline,
    started_at: Instant,
    /// The submission of its last step submitted so far.
    last_submission: Option<wgpu::SubmissionIndex>,
}

impl BatchTicket {
    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// Whether every step has been submitted.
    pub fn fully_submitted(&self) -> bool {
        self.next_step == self.steps.len()
    }

    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Whether every step writes its own timestamps (else the batch's
    /// first and last only).
    fn timed_steps(&self) -> bool {
        self.steps.len() <= MAX_TIMED_STEPS as usize
    }
}
