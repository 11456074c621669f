//! One OS thread per GPU: it owns the device and runs the batch loop. Every
//! nonce the GPU reports is re-checked on the CPU engine before anyone sees
//! it, on the thread that asked for the search (which otherwise only waits),
//! so a burst of shares never keeps the device thread from feeding the GPU.
//!
//! The thread is never a tokio runtime thread: waiting on the device blocks.
//! A device that returns a wrong digest, or is lost, is disabled with a log
//! line and every later search on it fails fast, so mining goes on on the
//! other backends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use visionx::{FastEngine, Found, Job, PowEngine, SearchControl, SearchEnd};

use super::adapters::AdapterSummary;
use super::searcher::{BatchShape, GpuDevice, GpuSearcher, StepTimes};
use super::tuning::{self, Tuned, TuningGoals};
use super::{GpuError, ShaderVariant, TableProbe};

/// Submissions kept queued on the device, so it never idles while the
/// thread reads a batch back or prepares the next.
const QUEUE_DEPTH: usize = 2;

/// Running totals of a device's batches, for `bench` and status lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct DispatchStats {
    pub batches: u64,
    /// Hashes of those batches.
    pub hashes: u64,
    pub dispatches: u64,
    /// Sum of batch GPU times (timestamp queries) where available.
    pub gpu_time: Duration,
    /// Sum of batch wall times (submission of the first step to readback).
    pub wall_time: Duration,
    /// Whether `gpu_time` comes from timestamp queries.
    pub timestamps: bool,
    /// Batches timed step by step, and their [`StepTimes`] summed.
    pub timed_batches: u64,
    pub timed_gpu_time: Duration,
    pub step_times: StepTimes,
}

impl DispatchStats {
    /// What happened between `before` (an earlier reading) and these.
    pub fn since(&self, before: &DispatchStats) -> DispatchStats {
        DispatchStats {
            batches: self.batches - before.batches,
            hashes: self.hashes - before.hashes,
            dispatches: self.dispatches - before.dispatches,
            gpu_time: self.gpu_time.saturating_sub(before.gpu_time),
            wall_time: self.wall_time.saturating_sub(before.wall_time),
            timestamps: self.timestamps,
            timed_batches: self.timed_batches - before.timed_batches,
            timed_gpu_time: self.timed_gpu_time.saturating_sub(before.timed_gpu_time),
            step_times: StepTimes {
                busy: self.step_times.busy.saturating_sub(before.step_times.busy),
                first: self.step_times.first.saturating_sub(before.step_times.first),
                last: self.step_times.last.saturating_sub(before.step_times.last),
            },
        }
    }

    /// Hashes per second of GPU time: the rate if batches ran back to back.
    pub fn gpu_hashes_per_second(&self) -> Option<f64> {
        (self.timestamps && !self.gpu_time.is_zero()).then(|| self.hashes as f64 / self.gpu_time.as_secs_f64())
    }

    /// The part of the timed batches' GPU time their steps ran (the rest the
    /// device waited between steps).
    pub fn busy_fraction(&self) -> Option<f64> {
        (!self.timed_gpu_time.is_zero()).then(|| self.step_times.busy.as_secs_f64() / self.timed_gpu_time.as_secs_f64())
    }

    /// Mean first and last step of the timed batches.
    pub fn mean_first_and_last_step(&self) -> Option<(Duration, Duration)> {
        let n = u32::try_from(self.timed_batches).ok().filter(|&n| n > 0)?;
        Some((self.step_times.first / n, self.step_times.last / n))
    }

    /// Mean time of one dispatch: from timestamps when the adapter has them.
    pub fn mean_dispatch(&self) -> Duration {
        if self.dispatches == 0 {
            return Duration::ZERO;
        }
        let total = if self.timestamps { self.gpu_time } else { self.wall_time };
        total.div_f64(self.dispatches as f64)
    }
}

/// A fault to inject, to test the CPU re-check (test builds only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InjectedFault {
    #[default]
    None,
    /// Flip a bit of every digest the GPU reports.
    CorruptDigests,
    /// Destroy the device before the first batch. (A driver reset reaches
    /// the device's loss by another way: wgpu panics in its poll, caught
    /// in `GpuDevice::wait_for`; this fault does not take that way.)
    LoseDevice,
    /// Report the card out of memory at the second step of the first
    /// search. (wgpu 30 reports an out-of-memory error anywhere but in a
    /// buffer's creation as the device lost: on a real card this recovery
    /// is reached from `BatchBuffers::allocate` only.)
    OutOfMemoryMidSearch,
    /// Report the card out of memory once the first batch of the first
    /// search has been read back (its hashes done and counted).
    OutOfMemoryAfterFirstBatch,
    /// Fail to allocate a batch of more than this many hashes (as a card
    /// with less memory than the budget would), from tuning on.
    OutOfMemoryAbove(u32),
    /// Count the device hung once a step runs this long (rather than
    /// [`super::device::HANG_TIMEOUT`]): a real step on a real device
    /// outlasting it takes the way of a card whose dispatch never ends.
    HangTimeout(Duration),
}

enum Command {
    Search { job: Job, control: Arc<SearchControl>, events: Sender<Event> },
    Stats { reply: Sender<DispatchStats> },
}

enum Event {
    /// As the GPU reported it: not yet re-checked.
    Found(Found),
    /// Finds a batch's kernel counted past its found lists' room: lost.
    NotStored(u32),
    Done(Result<SearchEnd, GpuError>),
}

/// The GPU backend for one device.
pub struct GpuBackend {
    summary: AdapterSummary,
    variant: ShaderVariant,
    tuned: Tuned,
    /// The table memory tuning could use.
    memory_budget: u64,
    table_bytes_per_hash: u64,
    /// How the device was set up (`VISION_GPU_CHECKS`, `VISION_GPU_BUFFERS`,
    /// `VISION_GPU_PROBE`).
    unchecked_kernel: bool,
    one_buffer_per_segment: bool,
    table_probe: TableProbe,
    commands: Option<Sender<Command>>,
    disabled: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Re-checks the GPU's found nonces (one search at a time uses it).
    cpu: Mutex<FastEngine>,
    /// Finds lost so far, counted as they are lost: past a found list's
    /// room, or past what the CPU re-checks at once.
    dropped_finds: Arc<AtomicU64>,
}

impl GpuBackend {
    /// Opens device `index`, tunes it on `tune_job`'s input and starts its thread.
    pub fn start(
        index: usize,
        variant: Option<ShaderVariant>,
        filter: Option<bool>,
        goals: TuningGoals,
        tune_job: &Job,
        fault: InjectedFault,
    ) -> Result<Self, GpuError> {
        let adapters = super::adapters::enumerate();
        let adapter = adapters.get(index).ok_or(GpuError::NoSuchDevice(index))?;
        let mut gpu = GpuDevice::open(index, adapter, variant, filter)?;
        match fault {
            InjectedFault::OutOfMemoryAbove(hashes) => gpu.memory_ceiling_hashes = Some(hashes),
            InjectedFault::HangTimeout(timeout) => gpu.hang_timeout = timeout,
            _ => {}
        }
        // A driver failing inside wgpu panics it; caught while `gpu` is
        // here to be marked lost (so it is never dropped: see its `Drop`).
        let tuned =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tuning::tune(&gpu, &tune_job.input, &goals)))
                .unwrap_or_else(|panic| {
                    gpu.lost.store(true, Ordering::SeqCst);
                    let why = super::device::panic_message(panic.as_ref());
                    Err(GpuError::DeviceLost(format!("{}: panicked while tuning: {why}", gpu.summary.name)))
                });
        let (searcher, tuned) = tuned?;
        let memory_budget = goals.memory_budget_for(&gpu.summary);
        let summary = gpu.summary.clone();
        let variant = gpu.variant;
        let (unchecked_kernel, one_buffer_per_segment, table_probe) =
            (gpu.unchecked_kernel, gpu.one_buffer_per_segment, gpu.table_probe);
        let table_bytes_per_hash = searcher.table_bytes_per_hash();
        let (commands, inbox) = mpsc::channel();
        let disabled = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("vision-gpu-{index}"))
            .spawn({
                let disabled = disabled.clone();
                let shapes = HashMap::from([(*tune_job.input.params(), tuned.shape)]);
                move || {
                    let stats = DispatchStats::default();
                    DeviceThread { searcher, shapes, goals, disabled, fault, stats }.run(inbox)
                }
            })
            .map_err(|e| GpuError::Device(format!("cannot start the device thread: {e}")))?;
        Ok(GpuBackend {
            summary,
            variant,
            tuned,
            memory_budget,
            table_bytes_per_hash,
            unchecked_kernel,
            one_buffer_per_segment,
            table_probe,
            commands: Some(commands),
            disabled,
            thread: Some(thread),
            cpu: Mutex::new(FastEngine::new()),
            dropped_finds: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    pub fn variant(&self) -> ShaderVariant {
        self.variant
    }

    pub fn tuned(&self) -> Tuned {
        self.tuned
    }

    pub fn shape(&self) -> BatchShape {
        self.tuned.shape
    }

    /// The table memory tuning could use (`--gpu-memory-mb` or the adapter's default).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    pub fn table_bytes_per_hash(&self) -> u64 {
        self.table_bytes_per_hash
    }

    /// Whether the kernel runs without wgpu's runtime checks.
    pub fn unchecked_kernel(&self) -> bool {
        self.unchecked_kernel
    }

    /// Whether each segment's bindings are ranges of one buffer.
    pub fn one_buffer_per_segment(&self) -> bool {
        self.one_buffer_per_segment
    }

    /// How the kernel probes the tables.
    pub fn table_probe(&self) -> TableProbe {
        self.table_probe
    }

    /// Finds this device made and dropped so far, never passed on: more in
    /// one batch than its found lists hold, or more waiting than the CPU
    /// re-checks at once (each search logs its own once it ends). Counted
    /// as they are dropped.
    pub fn finds_dropped(&self) -> u64 {
        self.dropped_finds.load(Ordering::Relaxed)
    }

    /// The counter of [`Self::finds_dropped`], for a status to read live.
    pub fn dropped_finds(&self) -> Arc<AtomicU64> {
        self.dropped_finds.clone()
    }

    /// Whether the device was disabled (wrong result or lost).
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::SeqCst)
    }

    /// Batch and dispatch totals so far.
    pub fn stats(&self) -> DispatchStats {
        let (reply, answer) = mpsc::channel();
        match self.commands.as_ref().map(|c| c.send(Command::Stats { reply })) {
            Some(Ok(())) => answer.recv().unwrap_or_default(),
            _ => DispatchStats::default(),
        }
    }

    /// Searches `job.nonces` on the device and blocks until the range is
    /// done, `control` is cancelled (the device stops within a dispatch or
    /// two), or the device fails. Every nonce passed to `on_found` has been
    /// re-checked on the CPU, here; the first that fails the re-check
    /// disables the device (it stops within a dispatch or two of the
    /// re-check reaching that nonce) and the search ends with
    /// [`GpuError::WrongResult`].
    pub fn search(
        &self,
        job: &Job,
        control: &Arc<SearchControl>,
        on_found: &(dyn Fn(Found) + Sync),
    ) -> Result<SearchEnd, GpuError> {
        if self.is_disabled() {
            return Err(GpuError::Disabled(self.summary.name.clone()));
        }
        let (events, inbox) = mpsc::channel();
        let command = Command::Search { job: job.clone(), control: control.clone(), events };
        let sent = self.commands.as_ref().map(|c| c.send(command));
        if !matches!(sent, Some(Ok(()))) {
            return Err(GpuError::DeviceLost(format!("{}: device thread stopped", self.summary.name)));
        }
        // A panic in `on_found` elsewhere leaves the engine usable.
        let mut cpu = self.cpu.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wrong = None;
        let mut finds = Vec::new();
        let mut unchecked = 0u64;
        let mut not_stored = 0u64;
        while let Ok(event) = inbox.recv() {
            // Every find waiting is re-checked at once, a SIMD group of them
            // together: a flood of shares (a low difficulty on a fast card)
            // must not queue behind one-at-a-time checks and hold up the
            // next job, whose search waits for this one's end.
            let mut done = None;
            for event in std::iter::once(event).chain(inbox.try_iter()) {
                match event {
                    Event::Found(found) => finds.push(found),
                    Event::NotStored(lost) => {
                        not_stored += u64::from(lost);
                        self.dropped_finds.fetch_add(u64::from(lost), Ordering::Relaxed);
                    }
                    // (Nothing follows it.)
                    Event::Done(result) => done = Some(result),
                }
            }
            // A card finding faster than one CPU thread re-checks (a low
            // difficulty on a fast card) would otherwise grow the backlog,
            // and the wait for this search's end, without bound.
            let cut = past_the_recheck_cap(&mut finds) as u64;
            unchecked += cut;
            self.dropped_finds.fetch_add(cut, Ordering::Relaxed);
            if wrong.is_none() {
                let (right, err) = recheck(&mut cpu, job, &finds);
                for found in finds.drain(..right) {
                    on_found(found);
                }
                if let Some(err) = err {
                    // The device thread sees this within a dispatch or two and stops.
                    self.disabled.store(true, Ordering::SeqCst);
                    tracing::error!(
                        "GPU #{} ({}) disabled: {err}; mining continues on the other backends",
                        self.summary.index,
                        self.summary.name
                    );
                    wrong = Some(err);
                }
            }
            finds.clear();
            if let Some(result) = done {
                if not_stored > 0 {
                    tracing::warn!(
                        "GPU #{}: {not_stored} shares dropped: more in one batch than its found lists hold (raise \
                         the share difficulty)",
                        self.summary.index
                    );
                }
                if unchecked > 0 {
                    tracing::warn!(
                        "GPU #{}: {unchecked} shares dropped: found faster than the CPU re-checks them (raise the \
                         share difficulty)",
                        self.summary.index
                    );
                }
                return wrong.map_or(result, Err);
            }
        }
        Err(GpuError::DeviceLost(format!("{}: device thread stopped", self.summary.name)))
    }
}

impl Drop for GpuBackend {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct DeviceThread {
    searcher: GpuSearcher,
    /// The shape tuned for each set of params met so far: a job whose
    /// params come back gets its shape again without measuring.
    shapes: HashMap<visionx::Params, BatchShape>,
    goals: TuningGoals,
    disabled: Arc<AtomicBool>,
    fault: InjectedFault,
    stats: DispatchStats,
}

impl DeviceThread {
    fn run(mut self, inbox: Receiver<Command>) {
        for command in inbox {
            match command {
                Command::Stats { reply } => {
                    let _ = reply.send(self.stats);
                }
                Command::Search { job, control, events } => {
                    let result = if self.disabled.load(Ordering::SeqCst) {
                        Err(GpuError::Disabled(self.searcher.device().summary.name.clone()))
                    } else {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.search(&job, &control, &events)))
                            .unwrap_or_else(|panic| {
                                self.searcher.device().lost.store(true, Ordering::SeqCst);
                                Err(GpuError::DeviceLost(format!(
                                    "{}: panicked: {}",
                                    self.searcher.device().summary.name,
                                    super::device::panic_message(panic.as_ref())
                                )))
                            })
                    };
                    // (A job too large for the card is sat out: the next may fit.)
                    let fault = result.as_ref().err().filter(|e| !matches!(e, GpuError::OutOfMemory(_)));
                    if let Some(err) = fault {
                        self.disabled.store(true, Ordering::SeqCst);
                        tracing::error!(
                            "GPU #{} ({}) disabled: {err}; mining continues on the other backends",
                            self.searcher.device().summary.index,
                            self.searcher.device().summary.name
                        );
                    }
                    let _ = events.send(Event::Done(result));
                }
            }
        }
    }

    fn search(&mut self, job: &Job, control: &SearchControl, events: &Sender<Event>) -> Result<SearchEnd, GpuError> {
        let params = job.input.params();
        if !self.searcher.fits(params) || self.searcher.oversized_for(params) {
            // Bigger tables than the buffers hold, or far smaller ones (the
            // job after an odd one with wide tables: kept on its shape, the
            // card would run a fraction of the hashes it can): this job's
            // params get their own shape, tuned the first time they are
            // met. The old batch's buffers are freed first (both at once
            // could double the allocation, past a driver's cliff or the card).
            let gpu = self.searcher.device().clone();
            self.searcher.release_buffers();
            // (A shape that no longer fits, the card's memory taken meanwhile,
            // is measured again.)
            let known = self.shapes.get(params).map(|&shape| GpuSearcher::new(gpu.clone(), shape, params));
            self.searcher = match known {
                Some(Err(GpuError::OutOfMemory(_))) | None => {
                    let (searcher, tuned) = tuning::tune(&gpu, &job.input, &self.goals)?;
                    self.shapes.insert(*params, tuned.shape);
                    searcher
                }
                Some(searcher) => searcher?,
            };
        }
        if self.fault == InjectedFault::LoseDevice {
            self.searcher.device().destroy();
        }
        self.searcher.set_job(job.input.clone(), job.target)?;
        let mut next_nonce = job.nonces.start;
        let mut hashes = 0u64;
        let mut batches: VecDeque<super::searcher::BatchTicket> = VecDeque::new();
        let outcome = self.run_batches(job, control, events, &mut batches, &mut next_nonce, &mut hashes);
        // Batches not finished (cancelled, or an error part-way: out of
        // memory leaves the device in use) are given up, freeing their
        // readback slots for the next search.
        let unfinished = !batches.is_empty();
        for ticket in batches {
            self.searcher.abandon(ticket);
        }
        outcome?;
        let stopped = control.is_cancelled() || self.disabled.load(Ordering::SeqCst);
        let cancelled = unfinished || (stopped && next_nonce < job.nonces.end);
        // Batches are read in order: the hashes done are the range's first.
        // (Only a whole range read back is claimed as done.)
        Ok(if !cancelled && hashes == job.nonces.len() {
            SearchEnd::completed(job.nonces, hashes)
        } else {
            debug_assert!(cancelled, "a search that was not cancelled ended at {hashes} of {}", job.nonces.len());
            SearchEnd::cancelled_after(job.nonces, hashes)
        })
    }

    /// Runs batches over the job's nonces from `next_nonce` until they are
    /// done or the search is cancelled, keeping the device fed; the batches
    /// started and not read are left in `batches`.
    fn run_batches(
        &mut self,
        job: &Job,
        control: &SearchControl,
        events: &Sender<Event>,
        batches: &mut VecDeque<super::searcher::BatchTicket>,
        next_nonce: &mut u64,
        hashes: &mut u64,
    ) -> Result<(), GpuError> {
        let batch_hashes = u64::from(self.searcher.shape().hashes());
        let mut slot = 0;
        let mut queued: VecDeque<(wgpu::SubmissionIndex, bool)> = VecDeque::new();
        let mut steps = 0u64;
        loop {
            // A disabled device (a found nonce failed its re-check) stops too.
            let cancelled = control.is_cancelled() || self.disabled.load(Ordering::SeqCst);
            if *hashes > 0 && self.fault == InjectedFault::OutOfMemoryAfterFirstBatch {
                self.fault = InjectedFault::None;
                return Err(GpuError::OutOfMemory("injected: out of memory after the first batch".into()));
            }
            // Keep the device fed: submit the next step of the newest batch,
            // or start a batch when the newest is fully submitted.
            while !cancelled && queued.len() < QUEUE_DEPTH {
                let need_batch = batches.back().is_none_or(|b| b.fully_submitted());
                if need_batch {
                    if *next_nonce >= job.nonces.end || batches.len() == super::searcher::SLOTS {
                        break;
                    }
                    let count = (job.nonces.end - *next_nonce).min(batch_hashes) as u32;
                    batches.push_back(self.searcher.start_batch(slot, *next_nonce, count)?);
                    slot = (slot + 1) % super::searcher::SLOTS;
                    *next_nonce += u64::from(count);
                }
                steps += 1;
                if steps == 2 && self.fault == InjectedFault::OutOfMemoryMidSearch {
                    self.fault = InjectedFault::None;
                    return Err(GpuError::OutOfMemory("injected: out of memory at the second step".into()));
                }
                let ticket = batches.back_mut().expect("a batch to submit");
                let submission = self.searcher.submit_step(ticket)?;
                queued.push_back((submission, ticket.fully_submitted()));
            }
            let Some((submission, ends_batch)) = queued.pop_front() else { break };
            self.searcher.wait(submission)?;
            if ends_batch {
                let ticket = batches.pop_front().expect("the batch this step ended");
                let result = self.searcher.read_results(ticket)?;
                self.stats.batches += 1;
                self.stats.hashes += u64::from(result.hashes);
                self.stats.dispatches += u64::from(result.dispatches);
                self.stats.wall_time += result.wall_time;
                if let Some(gpu_time) = result.gpu_time {
                    self.stats.gpu_time += gpu_time;
                    self.stats.timestamps = true;
                    if let Some(steps) = result.step_times {
                        self.stats.timed_batches += 1;
                        self.stats.timed_gpu_time += gpu_time;
                        self.stats.step_times.busy += steps.busy;
                        self.stats.step_times.first += steps.first;
                        self.stats.step_times.last += steps.last;
                    }
                }
                if result.finds_not_stored > 0 {
                    let _ = events.send(Event::NotStored(result.finds_not_stored));
                }
                for mut found in result.found {
                    if self.fault == InjectedFault::CorruptDigests {
                        found.digest.0[31] ^= 1;
                    }
                    let _ = events.send(Event::Found(found));
                }
                *hashes += u64::from(result.hashes);
                control.add_hashes(u64::from(result.hashes));
            }
        }
        Ok(())
    }
}

/// The most finds re-checked at once (about a second of one CPU thread):
/// a search never waits longer than that for its backlog.
const MAX_RECHECK_AT_ONCE: usize = 512;

/// Cuts `finds` to the [`MAX_RECHECK_AT_ONCE`] of lowest digest (a block,
/// the rarest and most precious, is among them if there is one); returns
/// how many it dropped (never passed on: every find passed on is
/// re-checked).
fn past_the_recheck_cap(finds: &mut Vec<Found>) -> usize {
    let dropped = finds.len().saturating_sub(MAX_RECHECK_AT_ONCE);
    if dropped > 0 {
        finds.select_nth_unstable_by_key(MAX_RECHECK_AT_ONCE - 1, |f| f.digest.0);
        finds.truncate(MAX_RECHECK_AT_ONCE);
    }
    dropped
}

/// A GPU result is only believed once the CPU engine agrees.
/// Re-checks `finds` on the CPU: how many, from the first, are right, and
/// the error of the first that is not.
fn recheck(cpu: &mut FastEngine, job: &Job, finds: &[Found]) -> (usize, Option<GpuError>) {
    let digests = match finds {
        [] => Vec::new(),
        [one] => vec![cpu.hash(&job.input, one.nonce)],
        many => cpu.hash_many(&many.iter().map(|f| (&*job.input, f.nonce)).collect::<Vec<_>>()),
    };
    let first_wrong =
        finds.iter().zip(&digests).position(|(found, digest)| *digest != found.digest || !job.target.is_met_by(digest));
    match first_wrong {
        Some(i) => (i, Some(GpuError::WrongResult { nonce: finds[i].nonce })),
        None => (finds.len(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visionx::{Digest, NonceRange, Params, PowInput, Target};

    /// A backlog past the cap is cut to it, keeping the lowest digests (a
    /// block among them), the rest dropped and counted; one within it is
    /// kept whole.
    #[test]
    fn a_backlog_of_finds_is_cut_to_what_is_rechecked_at_once() {
        // Digests falling with the nonce: the last finds are the lowest.
        let find = |nonce: u64| Found { nonce, digest: Digest([(255 - nonce % 256) as u8; 32]) };
        for (waiting, dropped) in [(0, 0), (3, 0), (512, 0), (513, 1), (90_000, 89_488)] {
            let mut backlog: Vec<Found> = (0..waiting).map(find).collect();
            assert_eq!(past_the_recheck_cap(&mut backlog), dropped as usize);
            assert_eq!(backlog.len() as u64, waiting - dropped);
            let kept: std::collections::HashSet<u64> = backlog.iter().map(|f| f.nonce).collect();
            let highest_kept = backlog.iter().map(|f| f.digest.0).max();
            let lowest_dropped = (0..waiting).filter(|n| !kept.contains(n)).map(|n| find(n).digest.0).min();
            if let (Some(kept), Some(dropped)) = (highest_kept, lowest_dropped) {
                assert!(kept <= dropped, "the lowest digests kept");
            }
        }
        let mut with_a_block: Vec<Found> = (0..2_000).map(find).collect();
        with_a_block[1_999].digest = Digest([0; 32]);
        past_the_recheck_cap(&mut with_a_block);
        assert!(with_a_block.iter().any(|f| f.nonce == 1_999), "the block kept");
    }

    /// The re-check of a group of finds passes those up to the first wrong
    /// one (a wrong digest, or one that misses the target), and names it.
    #[test]
    fn a_group_of_finds_is_right_up_to_its_first_wrong_one() {
        let params =
            Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, reads_per_iter: 4, write_every: 4, epoch_blocks: 32 };
        let input = PowInput::new([7; 32], 1, b"recheck".to_vec(), params).unwrap();
        let job = Job { input: Arc::new(input), target: Target::from_difficulty(1), nonces: NonceRange::new(0, 64) };
        let mut cpu = FastEngine::new();
        let right: Vec<Found> =
            (0..40).map(|nonce| Found { nonce, digest: cpu.hash(&job.input, nonce) }).collect::<Vec<_>>();
        let with = |i: usize, digest: Digest| {
            let mut finds = right.clone();
            finds[i].digest = digest;
            finds
        };
        let hard = Job { target: Target::from_difficulty(u64::MAX), ..job.clone() };
        // (what, job, finds, how many pass, the nonce named wrong)
        type Case<'a> = (&'a str, &'a Job, Vec<Found>, usize, Option<u64>);
        let cases: &[Case] = &[
            ("none", &job, Vec::new(), 0, None),
            ("one right", &job, right[..1].to_vec(), 1, None),
            ("one wrong", &job, with(0, Digest([0; 32]))[..1].to_vec(), 0, Some(0)),
            ("a group, all right", &job, right.clone(), 40, None),
            ("a group, the 18th wrong", &job, with(17, right[3].digest), 17, Some(17)),
            ("a group missing the target", &hard, right.clone(), 0, Some(0)),
        ];
        for (case, job, finds, passed, wrong) in cases {
            let (n, err) = recheck(&mut cpu, job, finds);
            let err = err.map(|e| match e {
                GpuError::WrongResult { nonce } => nonce,
                other => panic!("{case}: {other}"),
            });
            assert_eq!((n, err), (*passed, *wrong), "{case}");
        }
    }
}
