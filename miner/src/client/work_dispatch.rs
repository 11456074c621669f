//! Hands the current work to every device and cancels it when work changes.
//!
//! Each device runs on its own OS thread (never on the async runtime) and
//! mines a disjoint slice of the work's nonce range. A new job, a pause or a
//! stale-work stop bumps a generation number and cancels every running
//! search, so devices switch within one lockstep group (CPU) or a dispatch
//! or two (GPU). Hashes are counted per device from completed work only.
//! When the same work comes back (a resume, a thread change), each device
//! picks up its slice where its last search left it rather than hash it
//! again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use visionx::{Found, Job, NonceRange, PowInput, SearchControl, Target};

use super::node_client::BlockTemplate;
use super::pool_client::JobResponse;
use crate::backend::{BackendKind, MiningBackend};

/// Why a pool's job cannot be mined.
#[derive(Debug, thiserror::Error)]
pub enum UnusableJob {
    /// Its input does not decode, or is past a limit.
    #[error(transparent)]
    Input(#[from] visionx::Error),
    /// Its nonce range holds no nonce.
    #[error("its nonce range {start}..{end} is empty")]
    EmptyNonceRange { start: u64, end: u64 },
}

/// What the devices mine: a pool job or a solo template.
#[derive(Debug, Clone)]
pub struct Work {
    /// The pool's job id, or `solo:<height>` for solo work.
    pub id: String,
    pub height: u64,
    pub input: Arc<PowInput>,
    /// Digests meeting this are reported (shares; solo: blocks).
    pub target: Target,
    pub share_difficulty: u64,
    pub network_difficulty: u64,
    pub nonces: NonceRange,
    /// Which pool gave it (index into the pool list); `None` for solo.
    pub pool: Option<usize>,
    pub received: Instant,
}

/// The longest pow message a job may carry: every device must take it (the
/// GPU kernel's header buffer holds this much), so one from a broken or
/// hostile pool is an unusable job, not a device failure. Real headers are
/// about a hundred bytes.
pub const MAX_POW_MESSAGE_BYTES: usize = 4096;

fn within_message_limit(input: PowInput) -> Result<PowInput, visionx::Error> {
    let len = input.header().len();
    if len > MAX_POW_MESSAGE_BYTES {
        return Err(visionx::Error::ParamOutOfLimit {
            name: "pow_message bytes",
            value: len as u64,
            max: MAX_POW_MESSAGE_BYTES as u64,
        });
    }
    Ok(input)
}

impl Work {
    /// Whether `other` is this work again: the same job of the same pool
    /// (or template), hashed and judged the same (input, targets, range,
    /// height), so what was
    /// hashed of one need not be hashed for the other. (A pool's job asked
    /// for again, after a stale-work stop or a failover and back, comes as
    /// new work.)
    pub fn is_same_work(&self, other: &Work) -> bool {
        self.pool == other.pool
            && self.id == other.id
            && self.height == other.height
            && self.network_difficulty == other.network_difficulty
            && self.nonces == other.nonces
            && self.target == other.target
            && (Arc::ptr_eq(&self.input, &other.input) || self.input == other.input)
    }

    /// The work of a pool's job: its input from the job's fields, shares at
    /// the job's difficulty, within its nonce range.
    pub fn from_pool_job(job: &JobResponse, pool: usize) -> Result<Work, UnusableJob> {
        let input =
            within_message_limit(PowInput::from_hex(&job.epoch_seed, job.epoch, &job.pow_message, job.params)?)?;
        let difficulties = (job.share_difficulty, job.network_difficulty);
        // An empty range leaves every device idle: no answer to mine on
        // (nor a primary pool back), though it looks like one.
        if job.nonce_end <= job.nonce_start {
            return Err(UnusableJob::EmptyNonceRange { start: job.nonce_start, end: job.nonce_end });
        }
        let nonces = NonceRange::new(job.nonce_start, job.nonce_end);
        Ok(Self::new(job.job_id.clone(), job.height, input, difficulties, nonces, Some(pool)))
    }

    /// Whether `digest` is a block: it meets the network's difficulty, where
    /// that is known (a bridge's 0 is "unknown", not "every digest").
    pub fn is_block(&self, digest: &visionx::Digest) -> bool {
        self.network_difficulty != 0 && Target::from_difficulty(self.network_difficulty).is_met_by(digest)
    }

    /// The work of a node's template (solo): its input from the header
    /// fields, as the node will check it; only blocks are reported. The
    /// nonces from a random start in the lower half (2^63 and more left):
    /// rigs of one wallet fetching a template in the same second get the
    /// same header, and would otherwise hash the same nonces.
    pub fn from_template(template: &BlockTemplate, id: &str) -> Result<Work, visionx::Error> {
        let input = within_message_limit(template.pow_input()?)?;
        let difficulty = template.header.difficulty;
        let mut random = [0u8; 8];
        // (Without randomness, from 0: the rig still mines.)
        let start = getrandom::fill(&mut random).map_or(0, |()| u64::from_le_bytes(random) >> 1);
        let nonces = NonceRange::new(start, u64::MAX);
        Ok(Self::new(id.to_string(), template.header.height, input, (difficulty, difficulty), nonces, None))
    }

    /// `difficulties`: (share, network).
    fn new(
        id: String,
        height: u64,
        input: PowInput,
        (share_difficulty, network_difficulty): (u64, u64),
        nonces: NonceRange,
        pool: Option<usize>,
    ) -> Work {
        Work {
            id,
            height,
            input: Arc::new(input),
            // A block is reported even from a pool whose share difficulty is
            // above the network's (a bridge's scale): the easier of the two
            // (a network difficulty of 0 is a bridge's "unknown", not "any").
            target: Target::from_difficulty(match network_difficulty {
                0 => share_difficulty,
                network => share_difficulty.min(network),
            }),
            share_difficulty,
            network_difficulty,
            nonces,
            pool,
            received: Instant::now(),
        }
    }
}

/// A device as the dispatcher drives it.
pub type Device = Box<dyn MiningBackend>;

/// Per-device counters, read by the hash-rate meter and `/status`.
pub struct DeviceSlot {
    pub name: String,
    pub kind: BackendKind,
    completed: AtomicU64,
    current: Mutex<Option<Arc<SearchControl>>>,
    pub disabled: AtomicBool,
    /// Its last job was too large for it (its memory cannot hold the
    /// tables): idle until a job that fits.
    pub sitting_out: AtomicBool,
    /// The finds the device itself dropped ([`MiningBackend::dropped_finds`]).
    dropped_finds: Option<Arc<AtomicU64>>,
}

impl DeviceSlot {
    /// Hashes completed by this device so far.
    pub fn hashes(&self) -> u64 {
        let current = self.current.lock().expect("slot lock");
        self.completed.load(Ordering::Relaxed) + current.as_ref().map_or(0, |c| c.hashes())
    }

    fn start(&self, control: Arc<SearchControl>) {
        *self.current.lock().expect("slot lock") = Some(control);
    }

    fn finish(&self) {
        let mut current = self.current.lock().expect("slot lock");
        if let Some(control) = current.take() {
            self.completed.fetch_add(control.hashes(), Ordering::Relaxed);
        }
    }

    fn cancel(&self) {
        if let Some(control) = self.current.lock().expect("slot lock").as_ref() {
            control.cancel();
        }
    }

    /// Whether a search runs on this device now (what it finds is reported
    /// before it ends).
    fn is_searching(&self) -> bool {
        self.current.lock().expect("slot lock").is_some()
    }
}

#[derive(Default)]
struct DispatchState {
    generation: u64,
    work: Option<Arc<Work>>,
    paused: bool,
    stopping: bool,
}

pub struct WorkDispatch {
    state: Mutex<DispatchState>,
    changed: Condvar,
    slots: Vec<Arc<DeviceSlot>>,
    /// Requested CPU threads (`POST /threads`); the CPU device rebuilds its pool on change.
    cpu_threads: AtomicUsize,
    /// Set once the last device has stopped for good: nothing hashes, and
    /// the miner ends (exit code 5) rather than idle at 0 H/s.
    every_device_stopped: tokio::sync::watch::Sender<bool>,
    /// Found nonces dropped with [`MAX_FOUND_WAITING`] already waiting
    /// (those their devices dropped are counted by the devices).
    found_dropped: AtomicU64,
}

/// Found nonces with the work they belong to.
pub type FoundSender = tokio::sync::mpsc::Sender<(Arc<Work>, Found)>;
pub type FoundReceiver = tokio::sync::mpsc::Receiver<(Arc<Work>, Found)>;

/// Found nonces waiting to be sent, at most: a pool asking for shares far
/// more often than it takes them (a difficulty of 1) must not fill the
/// rig's memory. Past it, new finds are dropped and counted (`dropped`).
pub const MAX_FOUND_WAITING: usize = 4096;

/// The channel from the devices to the session.
pub fn found_channel() -> (FoundSender, FoundReceiver) {
    tokio::sync::mpsc::channel(MAX_FOUND_WAITING)
}

impl WorkDispatch {
    /// Starts one thread per device; found nonces go to `found`.
    pub fn start(devices: Vec<Device>, found: FoundSender) -> Arc<Self> {
        let cpu_threads = devices.iter().find_map(|d| d.threads());
        let slots: Vec<Arc<DeviceSlot>> = devices
            .iter()
            .map(|d| {
                Arc::new(DeviceSlot {
                    name: d.name(),
                    kind: d.kind(),
                    completed: AtomicU64::new(0),
                    current: Mutex::new(None),
                    disabled: AtomicBool::new(false),
                    sitting_out: AtomicBool::new(false),
                    dropped_finds: d.dropped_finds(),
                })
            })
            .collect();
        let dispatch = Arc::new(WorkDispatch {
            state: Mutex::new(DispatchState::default()),
            changed: Condvar::new(),
            slots,
            cpu_threads: AtomicUsize::new(cpu_threads.unwrap_or(0)),
            every_device_stopped: tokio::sync::watch::Sender::new(false),
            found_dropped: AtomicU64::new(0),
        });
        let count = devices.len();
        for (index, device) in devices.into_iter().enumerate() {
            let dispatch = dispatch.clone();
            let found = found.clone();
            std::thread::Builder::new()
                .name(format!("vision-device-{index}"))
                .spawn(move || dispatch.run_device(index, count, device, &found))
                .expect("spawn a device thread");
        }
        dispatch
    }

    /// Found nonces dropped: too many were waiting to be sent, or their
    /// device could not list or re-check them all.
    pub fn found_dropped(&self) -> u64 {
        let by_devices = self.slots.iter().filter_map(|s| s.dropped_finds.as_ref());
        self.found_dropped.load(Ordering::Relaxed) + by_devices.map(|n| n.load(Ordering::Relaxed)).sum::<u64>()
    }

    /// Resolves once every device has stopped for good (never without devices).
    /// Whether every device has stopped for good (the signal below, read now).
    pub fn has_every_device_stopped(&self) -> bool {
        *self.every_device_stopped.borrow()
    }

    pub async fn every_device_stopped(&self) {
        let mut stopped = self.every_device_stopped.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    pub fn slots(&self) -> &[Arc<DeviceSlot>] {
        &self.slots
    }

    /// Replaces the work every device mines (None: stop hashing).
    pub fn set_work(&self, work: Option<Arc<Work>>) {
        self.change(|state| state.work = work);
    }

    /// Applies `edit` as a new generation and cancels every running search.
    ///
    /// The cancelling happens under the state lock: a device that picks up
    /// the new generation registers its search only after this returns, so
    /// only searches of older generations are cancelled. (A device that
    /// registered an older generation's search after this sees the new
    /// generation number and cancels itself.)
    fn change(&self, edit: impl FnOnce(&mut DispatchState)) {
        let mut state = self.state.lock().expect("dispatch lock");
        state.generation += 1;
        edit(&mut state);
        for slot in &self.slots {
            slot.cancel();
        }
        drop(state);
        self.changed.notify_all();
    }

    pub fn current_work(&self) -> Option<Arc<Work>> {
        self.state.lock().expect("dispatch lock").work.clone()
    }

    pub fn set_paused(&self, paused: bool) {
        self.change(|state| state.paused = paused);
    }

    pub fn is_paused(&self) -> bool {
        self.state.lock().expect("dispatch lock").paused
    }

    /// Asks the CPU device to use `threads` threads from the next work on (applied at once).
    pub fn set_cpu_threads(&self, threads: usize) -> bool {
        if threads == 0 || !self.slots.iter().any(|s| s.kind == BackendKind::Cpu) {
            return false;
        }
        self.cpu_threads.store(threads, Ordering::Relaxed);
        self.change(|_| {});
        true
    }

    pub fn cpu_threads(&self) -> usize {
        self.cpu_threads.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.change(|state| state.stopping = true);
    }

    /// Waits, for `limit` at most, until no device is in a search. After
    /// [`stop`](Self::stop), a GPU still finishes the steps it queued and
    /// reads its batch back: what that finds (a block, maybe) is reported
    /// by then. Returns whether they all ended.
    pub async fn searches_ended(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !self.slots.iter().any(|s| s.is_searching()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Blocks until there is work newer than `seen`, unpaused; None when stopping.
    fn next_work(&self, seen: u64) -> Option<(u64, Arc<Work>)> {
        let mut state = self.state.lock().expect("dispatch lock");
        loop {
            if state.stopping {
                return None;
            }
            if state.generation != seen && !state.paused {
                if let Some(work) = &state.work {
                    return Some((state.generation, work.clone()));
                }
            }
            state = self.changed.wait(state).expect("dispatch lock");
        }
    }

    fn generation(&self) -> u64 {
        self.state.lock().expect("dispatch lock").generation
    }

    fn run_device(&self, index: usize, count: usize, mut device: Device, found: &FoundSender) {
        let slot = &self.slots[index];
        let mut seen = 0;
        let mut resume = ResumePoints::default();
        while let Some((generation, work)) = self.next_work(seen) {
            seen = generation;
            let nonces = resume.rest_of(&work, slice(work.nonces, index, count));
            if nonces.is_empty() {
                // Its slice is done: idle until other work.
                continue;
            }
            let job = Job { input: work.input.clone(), target: work.target, nonces };
            let control = Arc::new(SearchControl::new());
            slot.start(control.clone());
            if self.generation() != generation {
                control.cancel();
            }
            let report = |f: Found| {
                match found.try_send((work.clone(), f)) {
                    Ok(()) => {}
                    // A block waits its turn (this is the device's own
                    // thread, not the runtime); a share is dropped.
                    Err(tokio::sync::mpsc::error::TrySendError::Full(find)) if work.is_block(&find.1.digest) => {
                        if found.blocking_send(find).is_err() {
                            self.found_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Full, or closed (a stop past its grace): counted.
                    Err(_) => {
                        self.found_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            if device.threads().is_some_and(|t| t != self.cpu_threads()) {
                device.set_threads(self.cpu_threads());
            }
            match device.search(&job, &control, &report) {
                Ok(end) => {
                    slot.sitting_out.store(false, Ordering::Relaxed);
                    resume.left(&work, end.next_nonce);
                }
                Err(err) if err.is_job_only() => {
                    tracing::warn!("{} sits out job {}: {err}", slot.name, work.id);
                    slot.sitting_out.store(true, Ordering::Relaxed);
                    // (Its batches read back before the fault are not hashed again.)
                    resume.left(&work, job.nonces.start + control.hashes());
                }
                Err(err) => {
                    // The one place a device is marked disabled for the status.
                    tracing::error!("{} stopped: {err}; mining continues on the other devices", slot.name);
                    slot.disabled.store(true, Ordering::SeqCst);
                    slot.finish();
                    if self.slots.iter().all(|s| s.disabled.load(Ordering::SeqCst)) {
                        // (Kept for whoever subscribes later, too.)
                        self.every_device_stopped.send_replace(true);
                    }
                    return;
                }
            }
            slot.finish();
        }
    }
}

/// Where one device left the last few works it searched: when one comes
/// back (after a pause, a thread change, the same job again from its pool,
/// a failback to a primary still on it) the device picks up there instead
/// of hashing its slice again.
#[derive(Default)]
struct ResumePoints {
    /// Most recent first, at most [`ResumePoints::KEPT`].
    left: VecDeque<(Arc<Work>, u64)>,
}

impl ResumePoints {
    /// Works remembered: a failover and back is two.
    const KEPT: usize = 4;

    /// What is left to hash of `slice` of `work`.
    fn rest_of(&self, work: &Work, slice: NonceRange) -> NonceRange {
        match self.left.iter().find(|(seen, _)| seen.is_same_work(work)) {
            Some(&(_, at)) => NonceRange::new(at.clamp(slice.start, slice.end), slice.end),
            None => slice,
        }
    }

    /// A search of `work` ended with everything below `next_nonce` done.
    fn left(&mut self, work: &Arc<Work>, next_nonce: u64) {
        self.left.retain(|(seen, _)| !seen.is_same_work(work));
        self.left.push_front((work.clone(), next_nonce));
        self.left.truncate(Self::KEPT);
    }
}

/// The `index`-th of `count` equal, disjoint slices of `range`.
pub fn slice(range: NonceRange, index: usize, count: usize) -> NonceRange {
    let count = count.max(1) as u64;
    let size = range.len() / count;
    let start = range.start + size * index as u64;
    let end = if index as u64 + 1 == count { range.end } else { start + size };
    NonceRange::new(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_tile_the_range() {
        let range = NonceRange::new(10, 10 + 1001);
        let parts: Vec<NonceRange> = (0..3).map(|i| slice(range, i, 3)).collect();
        assert_eq!(parts[0].start, 10);
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(parts[2].end, range.end);
        assert_eq!(slice(range, 0, 1), range);
    }
}

#[cfg(test)]
mod dispatch_tests {
    use std::time::Duration;

    use visionx::Params;

    use super::*;

    fn work(id: &str) -> Arc<Work> {
        let params = Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..Params::CONSENSUS };
        Arc::new(Work {
            id: id.into(),
            height: 1,
            input: Arc::new(PowInput::new([1; 32], 0, b"dispatch".to_vec(), params).unwrap()),
            target: Target(0),
            share_difficulty: 1,
            network_difficulty: 1,
            nonces: NonceRange::new(0, u64::MAX),
            pool: None,
            received: Instant::now(),
        })
    }

    /// A device remembers the last few works: one it comes back to after
    /// others (a failover and back) is picked up; the oldest is forgotten.
    #[test]
    fn resume_points_cover_the_last_few_works() {
        let works: Vec<Arc<Work>> = (0..6).map(|i| work(&format!("w{i}"))).collect();
        let slice = NonceRange::new(100, 200);
        let mut resume = ResumePoints::default();
        resume.left(&works[0], 150);
        resume.left(&works[1], 120);
        let back = Arc::new((*works[0]).clone());
        assert_eq!(resume.rest_of(&back, slice), NonceRange::new(150, 200), "back to the first");
        assert_eq!(resume.rest_of(&works[1], slice), NonceRange::new(120, 200));
        resume.left(&back, 170);
        assert_eq!(resume.rest_of(&works[0], slice), NonceRange::new(170, 200), "one point a work");
        assert_eq!(resume.rest_of(&works[0], NonceRange::new(180, 300)), NonceRange::new(180, 300), "within the slice");
        for w in &works[2..6] {
            resume.left(w, 199);
        }
        assert_eq!(resume.rest_of(&works[0], slice), slice, "the oldest forgotten");
        assert_eq!(resume.rest_of(&works[5], slice), NonceRange::new(199, 200));
    }

    #[test]
    fn the_same_job_is_the_same_work_and_any_difference_is_not() {
        let base = work("j");
        let again = Arc::new((*base).clone());
        assert!(base.is_same_work(&again), "a copy");
        let input = Arc::new((*base.input).clone());
        assert!(base.is_same_work(&Work { input, ..(*base).clone() }), "an equal input");
        let other_input = PowInput::new([2; 32], 0, b"dispatch".to_vec(), *base.input.params()).unwrap();
        for (what, other) in [
            ("id", Work { id: "k".into(), ..(*base).clone() }),
            ("pool", Work { pool: Some(1), ..(*base).clone() }),
            ("target", Work { target: Target(1), ..(*base).clone() }),
            ("height", Work { height: 2, ..(*base).clone() }),
            ("block target", Work { network_difficulty: 2, ..(*base).clone() }),
            ("range", Work { nonces: NonceRange::new(1, u64::MAX), ..(*base).clone() }),
            ("input", Work { input: Arc::new(other_input), ..(*base).clone() }),
        ] {
            assert!(!base.is_same_work(&other), "another {what}");
        }
    }

    /// A pool's job: shares at difficulty 1, blocks at 10, nonces 0..100.
    fn pool_job() -> JobResponse {
        JobResponse {
            job_id: "j".into(),
            chain_id: "c".into(),
            height: 1,
            epoch: 0,
            epoch_seed: "00".repeat(32),
            pow_message: "ab".into(),
            params: Params::CONSENSUS,
            network_difficulty: 10,
            share_difficulty: 1,
            nonce_start: 0,
            nonce_end: 100,
            block_time_secs: 0,
        }
    }

    #[test]
    fn a_job_reports_blocks_even_above_its_share_difficulty() {
        let job = |share_difficulty: u64| JobResponse { share_difficulty, ..pool_job() };
        assert_eq!(Work::from_pool_job(&job(4), 0).unwrap().target, Target::from_difficulty(4));
        assert_eq!(Work::from_pool_job(&job(100), 0).unwrap().target, Target::from_difficulty(10), "a block's");
        let unknown = JobResponse { network_difficulty: 0, ..job(100) };
        assert_eq!(Work::from_pool_job(&unknown, 0).unwrap().target, Target::from_difficulty(100), "0: unknown");
    }

    #[test]
    fn a_job_past_the_message_limit_is_unusable() {
        let job = |bytes: usize| JobResponse { pow_message: "ab".repeat(bytes), ..pool_job() };
        assert!(Work::from_pool_job(&job(MAX_POW_MESSAGE_BYTES), 0).is_ok());
        let err = Work::from_pool_job(&job(MAX_POW_MESSAGE_BYTES + 1), 0).unwrap_err();
        let limit =
            matches!(err, UnusableJob::Input(visionx::Error::ParamOutOfLimit { name: "pow_message bytes", .. }));
        assert!(limit, "{err}");
    }

    #[test]
    fn a_job_without_a_nonce_in_its_range_is_unusable() {
        let job = |nonce_start: u64, nonce_end: u64| JobResponse { nonce_start, nonce_end, ..pool_job() };
        assert_eq!(Work::from_pool_job(&job(5, 6), 0).unwrap().nonces.len(), 1);
        for (start, end) in [(5, 5), (6, 5), (u64::MAX, 0)] {
            let err = Work::from_pool_job(&job(start, end), 0).unwrap_err();
            assert!(matches!(err, UnusableJob::EmptyNonceRange { .. }), "{start}..{end}: {err}");
        }
    }

    #[test]
    fn a_block_is_a_digest_meeting_a_known_network_difficulty() {
        let digest = |first: u8| visionx::Digest([first; 32]);
        let base = work("blocks");
        let at = |network_difficulty: u64| Work { network_difficulty, ..(*base).clone() };
        assert!(at(1).is_block(&digest(0xff)), "difficulty 1: any digest");
        assert!(!at(1 << 20).is_block(&digest(0xff)));
        assert!(at(1 << 20).is_block(&digest(0)));
        assert!(!at(0).is_block(&digest(0)), "0 is unknown: no digest is known to be a block");
    }

    /// Work set once is mined. A smoke test of the start path: the race that
    /// once cancelled a fresh search (see `WorkDispatch::change`) has a window
    /// too narrow to hit reliably here; the multi-process solo test in
    /// `tests/miner_against_pool.rs` caught it.
    #[test]
    fn work_set_once_is_always_mined() {
        for round in 0..40 {
            let (tx, _rx) = found_channel();
            let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            dispatch.set_work(Some(work("w")));
            let deadline = Instant::now() + Duration::from_secs(10);
            while dispatch.slots()[0].hashes() == 0 {
                assert!(Instant::now() < deadline, "round {round}: the device never started");
                std::thread::sleep(Duration::from_millis(1));
            }
            dispatch.stop();
        }
    }

    #[test]
    fn finds_past_the_waiting_limit_are_dropped_and_counted() {
        let (tx, rx) = found_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        // Every hash a find (a share, not a block), and nobody sending them.
        let every = Work { target: Target::NONE, network_difficulty: u64::MAX, ..(*work("every")).clone() };
        dispatch.set_work(Some(Arc::new(every)));
        let deadline = Instant::now() + Duration::from_secs(120);
        while dispatch.found_dropped() == 0 {
            assert!(Instant::now() < deadline, "nothing dropped after {} hashes", dispatch.slots()[0].hashes());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(rx.len(), MAX_FOUND_WAITING, "the waiting finds are kept, the newest dropped");
        dispatch.stop();
    }

    #[test]
    fn a_block_found_with_the_queue_full_waits_for_room() {
        let (tx, mut rx) = found_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        // Every hash a block.
        let blocks = Work { target: Target::NONE, network_difficulty: 1, ..(*work("blocks")).clone() };
        dispatch.set_work(Some(Arc::new(blocks)));
        let deadline = Instant::now() + Duration::from_secs(120);
        while rx.len() < MAX_FOUND_WAITING {
            assert!(Instant::now() < deadline, "the queue never filled");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(dispatch.found_dropped(), 0, "no block is dropped");
        // Room for one: the block that waited takes it.
        rx.try_recv().unwrap();
        while rx.len() < MAX_FOUND_WAITING {
            assert!(Instant::now() < deadline, "the waiting block never came");
            std::thread::sleep(Duration::from_millis(1));
        }
        dispatch.stop();
        drop(rx);
    }

    /// Paused, resumed, and the CPU's threads changed, all mid-slice: each
    /// device picks up where it was, so the range is hashed exactly once,
    /// and every find is reported once.
    #[test]
    fn the_same_work_back_is_picked_up_where_it_was_left() {
        let (tx, mut rx) = found_channel();
        let devices: Vec<Device> =
            vec![Box::new(crate::backend::CpuDevice::new(1)), Box::new(crate::backend::CpuDevice::new(1))];
        let dispatch = WorkDispatch::start(devices, tx);
        // Long enough (about a second) that the pause comes early in it.
        let nonces = NonceRange::new(1_000, 401_000);
        let shares =
            Work { target: Target::from_difficulty(256), network_difficulty: u64::MAX, nonces, ..(*work("w")).clone() };
        let shares = Arc::new(shares);
        let hashed = |dispatch: &WorkDispatch| dispatch.slots().iter().map(|s| s.hashes()).sum::<u64>();
        let mut reported = Vec::new();
        let mut drain = |rx: &mut FoundReceiver| {
            while let Ok((_, found)) = rx.try_recv() {
                reported.push(found.nonce);
            }
        };
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        dispatch.set_work(Some(shares.clone()));
        wait_for("hashing to start", &|| hashed(&dispatch) > 0);
        dispatch.set_paused(true);
        wait_for("the pause", &|| !dispatch.slots().iter().any(|s| s.is_searching()));
        let at_pause = hashed(&dispatch);
        assert!(at_pause < nonces.len(), "paused before the end of the range ({at_pause} hashed)");
        dispatch.set_paused(false);
        wait_for("hashing to go on", &|| hashed(&dispatch) > at_pause);
        assert!(dispatch.set_cpu_threads(2));
        wait_for("the whole range", &|| hashed(&dispatch) >= nonces.len());
        wait_for("done: idle until other work", &|| !dispatch.slots().iter().any(|s| s.is_searching()));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(hashed(&dispatch), nonces.len(), "no nonce hashed twice");
        // The same job again from its pool (after a stale-work stop): new
        // work, the same to hash, already done.
        dispatch.set_work(None);
        dispatch.set_work(Some(Arc::new((*shares).clone())));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(hashed(&dispatch), nonces.len(), "the same job again is not hashed again");
        drain(&mut rx);
        reported.sort_unstable();
        let mut expected = Vec::new();
        let job = Job { input: shares.input.clone(), target: shares.target, nonces };
        let mut engine = visionx::FastEngine::new();
        visionx::PowEngine::search(&mut engine, &job, &visionx::SearchControl::new(), &mut |f| expected.push(f.nonce));
        assert!(expected.len() > 1000, "difficulty 256 over 400,000 nonces");
        assert_eq!(reported, expected, "every find reported once");
        dispatch.stop();
    }

    #[test]
    fn pause_stops_hashing_and_resume_restarts_it() {
        let (tx, _rx) = found_channel();
        let dispatch = WorkDispatch::start(vec![Box::new(crate::backend::CpuDevice::new(1)) as Device], tx);
        dispatch.set_work(Some(work("w")));
        dispatch.set_paused(true);
        std::thread::sleep(Duration::from_millis(100));
        let paused_at = dispatch.slots()[0].hashes();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(dispatch.slots()[0].hashes(), paused_at, "no hashing while paused");
        dispatch.set_paused(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while dispatch.slots()[0].hashes() == paused_at {
            assert!(Instant::now() < deadline, "resume did not restart the device");
            std::thread::sleep(Duration::from_millis(1));
        }
        dispatch.stop();
    }
}
