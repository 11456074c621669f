//! Picks a batch shape for a device by measuring it.
//!
//! The mix-loop slice starts at [`super::DEFAULT_SPLIT`] iterations; the
//! batch grows (`Growth`: doubling to one full segment, then by whole
//! segments) while the device gets faster and one step stays short, within
//! the memory budget and the device's buffer limits. A step
//! is one slice on every segment: the segments' dispatches run side by side
//! in one submission, so a step, not one segment's share of it, is what an
//! OS watchdog sees. A slice whose step takes too long even at the smallest
//! batch is halved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use visionx::{Params, PowInput, Target};

use super::kernel_layout::WORKGROUP_SIZE;
use super::searcher::{BatchShape, GpuDevice, GpuSearcher};
use super::{GpuError, DEFAULT_SPLIT};

/// What the tuner aims for.
#[derive(Debug, Clone, Copy)]
pub struct TuningGoals {
    /// Device memory the batch's tables may take; `None`: the adapter's
    /// default ([`default_memory_budget`]).
    pub memory_budget: Option<u64>,
    /// Grow the batch while one step is shorter than this.
    pub min_step: Duration,
    /// No step may take longer than this.
    pub max_step: Duration,
    /// Stop growing when doubling the batch gains less than this fraction
    /// (a smaller step needs less: scaled by the log2 of the size ratio).
    pub min_gain: f64,
    /// Hashes per batch given by the user: skips measuring.
    pub fixed_hashes: Option<u32>,
    /// Rate each candidate by a whole batch (every slice, the tables filling
    /// as they do when mining) rather than by its second slice, whose
    /// nearly empty tables misjudge batch sizes (on the H200 98k hashes
    /// timed that slice over 5% slower than 65k, and mined 93,680 H/s
    /// against 73,762). A batch a candidate: up to about a second each on
    /// the H200, and a re-tune for new params stalls mining as long.
    /// `VISION_GPU_TUNE=batches`, an experiment until a GPU run shows it
    /// picks better.
    pub whole_batches: bool,
}

impl TuningGoals {
    /// The table memory a batch may take on the adapter `summary` describes.
    pub fn memory_budget_for(&self, summary: &super::adapters::AdapterSummary) -> u64 {
        self.memory_budget.unwrap_or_else(|| default_memory_budget(summary))
    }
}

impl Default for TuningGoals {
    fn default() -> Self {
        TuningGoals {
            memory_budget: None,
            min_step: Duration::from_millis(20),
            max_step: Duration::from_millis(200),
            min_gain: 0.05,
            fixed_hashes: None,
            whole_batches: std::env::var("VISION_GPU_TUNE").is_ok_and(|v| v == "batches"),
        }
    }
}

/// The table memory a batch may take when the user sets none. A discrete
/// GPU needs tens of thousands of hashes in flight to hide memory latency
/// (on an H200: 26k H/s at 11k hashes, 92k H/s at 66k), so it gets most of
/// its memory: `CARD_SHARE` of what the driver says is free (or of the
/// heap, where it does not say). But Vulkan drivers slow down sharply past
/// a total allocation (on the H200 the prototype fell from 98k at 36 GiB to
/// 17k at 48 GiB; ours ran 74k at 37.6 GiB), so at most
/// `DISCRETE_CAP`, which holds 116k consensus tables (288 KiB each).
/// Where the card's memory is unknown (wgpu reports none; it is read from
/// Vulkan only), the cap: a smaller card stops the tuner's growth where its
/// allocations fail. Other adapters (integrated, software) share the
/// system's memory: half of it, at most 4 GiB.
pub fn default_memory_budget(summary: &super::adapters::AdapterSummary) -> u64 {
    let known = summary.memory_free_bytes.or(summary.memory_bytes);
    if summary.device_type == "DiscreteGpu" && !summary.is_software {
        known.map_or(DISCRETE_CAP, |bytes| (bytes / 100 * CARD_SHARE).min(DISCRETE_CAP))
    } else {
        known.map_or(SHARED_CAP, |bytes| (bytes / 2).min(SHARED_CAP))
    }
}

/// The most table memory a discrete GPU gets by default: below the Vulkan
/// drivers' cliff.
const DISCRETE_CAP: u64 = 32 << 30;
/// Percent of a discrete card's free memory the tables may take: the rest
/// is for the readback and staging buffers, the driver and the display.
const CARD_SHARE: u64 = 85;
/// The most an adapter sharing the system's memory gets by default.
const SHARED_CAP: u64 = 4 << 30;

/// Longest step (one slice on every segment) the split may grow to: a new
/// job waits for the steps already queued (two), and desktop drivers kill
/// dispatches after about 2 s.
const MAX_GROWN_STEP: Duration = Duration::from_millis(50);

/// On a hardware GPU, fewer, longer slices per batch: each slice of the mix
/// loop is a submission and a drain of the device. Doubles the split while
/// a step stays short and the rate does not fall. (Software adapters keep
/// the default: lavapipe corrupts results above about 3,000 iterations per
/// dispatch.) `tuned.step_time` is the baseline: a step of the searcher's
/// own shape.
fn grow_split(
    searcher: &mut GpuSearcher,
    mut tuned: Tuned,
    mix_iters: u32,
    goals: &TuningGoals,
) -> Result<Tuned, GpuError> {
    let hashes = tuned.shape.hashes();
    let limit = MAX_GROWN_STEP.min(goals.max_step);
    let slice_rate = |split: u32, step: Duration| {
        f64::from(hashes) / (step.as_secs_f64() * f64::from(mix_iters.div_ceil(split).max(1)))
    };
    while tuned.step_time * 2 <= limit && tuned.shape.split < mix_iters {
        let split = (tuned.shape.split * 2).min(mix_iters);
        if !searcher.set_split(split) {
            break;
        }
        let step = searcher.time_one_step(0, hashes)?;
        // Slices compared with slices (the rate tuning chose by may be a
        // whole batch's); a whole batch's figures scale with them.
        let gain = slice_rate(split, step) / slice_rate(tuned.shape.split, tuned.step_time);
        if gain < 0.99 || step > limit {
            searcher.set_split(tuned.shape.split);
            break;
        }
        tuned = Tuned {
            shape: BatchShape { split, ..tuned.shape },
            measured_rate: tuned.measured_rate * gain,
            step_time: step,
            batch_time: tuned.batch_time.map(|b| b.div_f64(gain)),
        };
    }
    Ok(tuned)
}

/// The tuner's choice and what it measured.
#[derive(Debug, Clone, Copy)]
pub struct Tuned {
    pub shape: BatchShape,
    /// Hashes per second measured for `shape` (from one slice, or from
    /// `batch_time` when set; 0 when fixed). After the split grew (hardware
    /// GPUs), scaled by the gain the slices showed: an estimate.
    pub measured_rate: f64,
    /// One step's time at `shape`: one slice on every segment (zero when
    /// fixed).
    pub step_time: Duration,
    /// A whole batch's time at `shape`, where candidates were rated by
    /// whole batches ([`TuningGoals::whole_batches`]); after the split grew,
    /// scaled likewise.
    pub batch_time: Option<Duration>,
}

/// What the tuner makes of one measured candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assessment {
    /// The candidate replaces the best so far.
    take: bool,
    /// Measure the next larger batch ([`Growth::after`]).
    grow: bool,
}

/// The tuner's rule, apart from the device: a candidate is taken when it is
/// faster by `min_gain` per doubling of the batch (growth past a segment
/// steps by a third or a half, and the rate should rise in proportion), or
/// as fast (within `min_gain` of `peak`, the best rate taken so far: not
/// of the best's, which could drift down a little each step) while the
/// best so far steps shorter than
/// `min_step` (longer steps cost fewer submissions), and never when its step
/// is past `max_step` unless nothing was taken yet (a slow device: there is
/// nothing shorter to fall back to). Growth goes on while steps are within
/// the window and either short or still gaining.
fn assess(best: Option<&Tuned>, peak: f64, candidate: &Tuned, goals: &TuningGoals) -> Assessment {
    let rate = candidate.measured_rate;
    let improved = best.is_none_or(|b| {
        let doublings = (f64::from(candidate.shape.hashes()) / f64::from(b.shape.hashes())).log2().max(0.0);
        rate > b.measured_rate * (1.0 + goals.min_gain * doublings)
            || (b.step_time < goals.min_step && rate >= peak * (1.0 - goals.min_gain))
    });
    let too_long = candidate.step_time > goals.max_step;
    let short = candidate.step_time < goals.min_step;
    Assessment { take: improved && (!too_long || best.is_none()), grow: !too_long && (short || improved) }
}

/// The batch sizes the tuner measures, in order: doubling up to one full
/// segment (the most one binding holds), then whole segments, half as many
/// again each time (1, 2, 3, 4, 6, 9, 13, ...: doubling from 8 segments to
/// 16 would step from 65k hashes past the budget, leaving the sizes between
/// untried), up to the budget. A batch that cannot be allocated is bisected,
/// in whole segments, against the largest that could: a card smaller than
/// the budget is filled, not left at the last doubling.
#[derive(Debug, Clone, Copy)]
struct Growth {
    /// Hashes in a full segment.
    segment: u32,
    /// The budget's hashes.
    cap: u32,
    /// The smallest batch that failed to allocate.
    too_big: Option<u32>,
}

impl Growth {
    fn first(&self) -> u32 {
        // (One part-filled segment where tables too wide for a workgroup
        // leave a segment fewer hashes.)
        WORKGROUP_SIZE.min(self.cap).min(self.segment.max(1))
    }

    /// The batch to measure after `hashes`, if growth goes on.
    fn after(&self, hashes: u32) -> Option<u32> {
        let segment = self.segment.max(WORKGROUP_SIZE);
        let next = match self.too_big {
            Some(limit) => {
                let unit = if hashes >= segment { segment } else { WORKGROUP_SIZE };
                hashes.saturating_add(limit.saturating_sub(hashes) / 2 / unit * unit)
            }
            None if hashes < segment => hashes.saturating_mul(2).min(segment),
            None => {
                let segments = hashes / segment;
                segments.saturating_add((segments / 2).max(1)).saturating_mul(segment)
            }
        };
        let next = next.min(self.cap);
        (next > hashes).then_some(next)
    }

    /// After `hashes` could not be allocated, the batch to try instead, if
    /// one between it and `fitted` (the largest allocated) is left.
    fn out_of_memory(&mut self, hashes: u32, fitted: u32) -> Option<u32> {
        self.too_big = Some(self.too_big.map_or(hashes, |limit| limit.min(hashes)));
        self.after(fitted)
    }
}

/// A shape holding `hashes` hashes in segments no larger than the device
/// allows: equal segments of whole workgroups, rounded up, but not past
/// `cap` hashes in all (the memory budget); of a part-filled workgroup each
/// where the device's bindings hold fewer hashes than a workgroup.
pub fn shape_for(gpu: &GpuDevice, params: &Params, hashes: u32, split: u32, cap: u32) -> BatchShape {
    // (0, not even one hash: a one-hash shape, which the searcher refuses
    // as too large for the device.)
    let max_segment = gpu.max_segment_hashes(params).max(1);
    let segments = hashes.div_ceil(max_segment).max(1);
    let rounded_up = hashes.div_ceil(segments).div_ceil(WORKGROUP_SIZE) * WORKGROUP_SIZE;
    let within_cap = if cap >= WORKGROUP_SIZE {
        (cap / segments / WORKGROUP_SIZE * WORKGROUP_SIZE).max(WORKGROUP_SIZE)
    } else {
        (cap / segments).max(1)
    };
    BatchShape { segment_hashes: rounded_up.min(within_cap).min(max_segment), segments, split }
}

/// Measures `gpu` on `input` and returns a searcher with the chosen shape.
pub fn tune(gpu: &GpuDevice, input: &PowInput, goals: &TuningGoals) -> Result<(GpuSearcher, Tuned), GpuError> {
    let params = *input.params();
    let mut split = DEFAULT_SPLIT.min(params.mix_iters).max(1);
    let budget = goals.memory_budget_for(&gpu.summary);
    // Whole workgroups, unless the budget holds fewer hashes than one
    // (tables too wide for a workgroup): then what it holds, at least one.
    let cap = (budget / gpu.bytes_per_hash(&params)).clamp(1, 1 << 22) as u32;
    let cap = if cap >= WORKGROUP_SIZE { cap / WORKGROUP_SIZE * WORKGROUP_SIZE } else { cap };
    if let Some(hashes) = goals.fixed_hashes {
        if hashes > cap {
            tracing::warn!(
                "GPU #{}: a batch of {hashes} hashes needs more than the memory budget; {cap} instead (--gpu-memory-mb)",
                gpu.summary.index
            );
        }
        let shape = shape_for(gpu, &params, hashes.clamp(1, cap), split, cap);
        let searcher = GpuSearcher::new(gpu.clone(), shape, &params)?;
        return Ok((searcher, Tuned { shape, measured_rate: 0.0, step_time: Duration::ZERO, batch_time: None }));
    }
    let job = Arc::new(input.clone());
    let slices = |split: u32| f64::from(params.mix_iters.div_ceil(split).max(1));
    let mut best: Option<Tuned> = None;
    // The highest rate of the candidates taken (see `assess`).
    let mut peak = 0.0_f64;
    // The last candidate measured. Freed before the next is allocated: two
    // batches' tables at once would double the allocation, and past a
    // Vulkan driver's cliff the measurement itself slows down.
    let mut last: Option<GpuSearcher> = None;
    let mut growth = Growth { segment: gpu.max_segment_hashes(&params), cap, too_big: None };
    let mut hashes = growth.first();
    // The largest batch allocated and measured so far.
    let mut fitted = None;
    loop {
        let shape = shape_for(gpu, &params, hashes, split, cap);
        // At the budget the shape can hold a little less than asked (its
        // segments rounded down to whole workgroups): what is run and rated.
        let run = hashes.min(shape.hashes());
        drop(last.take());
        let measured = GpuSearcher::new(gpu.clone(), shape, &params).and_then(|mut searcher| {
            // The first dispatch includes driver warm-up. Out of memory while
            // measuring (a staging buffer at the edge of the card) counts as
            // failing to allocate.
            searcher.set_job(job.clone(), Target(0))?;
            searcher.time_one_step(0, run)?;
            let step = searcher.time_one_step(0, run)?;
            let batch = if goals.whole_batches && step <= goals.max_step {
                let started = Instant::now();
                searcher.run_batch(0, run)?;
                Some(started.elapsed())
            } else {
                None
            };
            Ok((searcher, step, batch))
        });
        let (searcher, step, batch) = match measured {
            Ok(measured) => measured,
            // Out of memory: bisect towards the largest batch that fitted.
            Err(GpuError::OutOfMemory(_)) if best.is_some() => {
                match fitted.and_then(|f| growth.out_of_memory(hashes, f)) {
                    Some(next) => {
                        hashes = next;
                        continue;
                    }
                    None => break,
                }
            }
            Err(err) => return Err(err),
        };
        if step > goals.max_step && best.is_none() && split > 1 {
            split /= 2;
            continue;
        }
        fitted = Some(hashes);
        let elapsed = batch.map_or(step.as_secs_f64() * slices(split), |b| b.as_secs_f64());
        let candidate = Tuned { shape, measured_rate: f64::from(run) / elapsed, step_time: step, batch_time: batch };
        let verdict = assess(best.as_ref(), peak, &candidate, goals);
        if verdict.take {
            peak = peak.max(candidate.measured_rate);
            best = Some(candidate);
        }
        last = Some(searcher);
        match growth.after(hashes) {
            Some(next) if verdict.grow => hashes = next,
            _ => break,
        }
    }
    // Every path to here measured a batch: the first one always sets `best`.
    let Some(mut tuned) = best else {
        return Err(GpuError::Unsupported("tuning measured no batch".into()));
    };
    // Whether `tuned`'s figures are of another shape than the searcher's.
    let mut halved = false;
    let mut searcher = match last {
        Some(searcher) if searcher.shape() == tuned.shape => searcher,
        other => {
            drop(other);
            // Allocated again: if the memory has gone meanwhile (another
            // process, fragmentation), settle for half as many hashes.
            loop {
                match GpuSearcher::new(gpu.clone(), tuned.shape, &params) {
                    Ok(searcher) => break searcher,
                    Err(GpuError::OutOfMemory(_)) if tuned.shape.hashes() > WORKGROUP_SIZE => {
                        let hashes = (tuned.shape.hashes() / 2).max(WORKGROUP_SIZE);
                        tuned.shape = shape_for(gpu, &params, hashes, tuned.shape.split, cap);
                        // (Estimates: nothing was timed at this shape.)
                        tuned.measured_rate /= 2.0;
                        tuned.batch_time = None;
                        halved = true;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    };
    searcher.set_job(job.clone(), Target(0))?;
    if !gpu.summary.is_software {
        if halved {
            // Growing the split compares with this shape's own step. Timed
            // twice: a fresh allocation's first step includes the warm-up.
            searcher.time_one_step(0, tuned.shape.hashes())?;
            tuned.step_time = searcher.time_one_step(0, tuned.shape.hashes())?;
        }
        tuned = grow_split(&mut searcher, tuned, params.mix_iters, goals)?;
    }
    searcher.clear_job();
    Ok((searcher, tuned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(segments: u32, rate: f64, step_ms: u64) -> Tuned {
        Tuned {
            shape: BatchShape { segment_hashes: 8_064, segments, split: 1024 },
            measured_rate: rate,
            step_time: Duration::from_millis(step_ms),
            batch_time: None,
        }
    }

    #[test]
    fn growth_doubles_to_a_segment_then_adds_whole_segments() {
        let seg = 8_064;
        let sizes = |growth: Growth| {
            let mut sizes = vec![growth.first()];
            while let Some(next) = growth.after(*sizes.last().unwrap()) {
                sizes.push(next);
            }
            sizes
        };
        // The H200's shape: a 32 GiB budget holds 116,864 consensus hashes.
        let h200 = sizes(Growth { segment: seg, cap: 116_864, too_big: None });
        assert_eq!(WORKGROUP_SIZE, 128, "the sizes below are in workgroups of 128");
        let mut expected = vec![128, 256, 512, 1024, 2048, 4096, seg];
        expected.extend([2, 3, 4, 6, 9, 13].map(|n| n * seg));
        expected.push(116_864);
        assert_eq!(h200, expected);
        // A budget below one segment ends at the budget.
        assert_eq!(sizes(Growth { segment: seg, cap: 3_000, too_big: None }), vec![128, 256, 512, 1024, 2048, 3_000]);
        // A segment smaller than a workgroup (tables too wide for the
        // binding limit) starts at one segment and still grows.
        assert_eq!(sizes(Growth { segment: 64, cap: 512, too_big: None }), vec![64, 128, 256, 384, 512]);
        // A budget below that: what it holds.
        assert_eq!(sizes(Growth { segment: 64, cap: 33, too_big: None }), vec![33]);
    }

    #[test]
    fn out_of_memory_is_bisected_in_whole_segments() {
        let seg = 8_064;
        let mut growth = Growth { segment: seg, cap: 116_864, too_big: None };
        // A 24 GiB card: 9 segments fit, 13 do not.
        assert_eq!(growth.out_of_memory(13 * seg, 9 * seg), Some(11 * seg));
        // 11 fits: 12 is between it and 13.
        assert_eq!(growth.after(11 * seg), Some(12 * seg));
        // 12 does not: nothing whole is left between 11 and 12.
        assert_eq!(growth.out_of_memory(12 * seg, 11 * seg), None);
        assert_eq!(growth.after(11 * seg), None);
        // A larger failure later does not raise the limit.
        let mut growth = Growth { segment: seg, cap: 116_864, too_big: None };
        assert_eq!(growth.out_of_memory(6 * seg, 4 * seg), Some(5 * seg));
        assert_eq!(growth.out_of_memory(9 * seg, 5 * seg), None);
        // Below a segment it bisects in workgroups.
        let mut growth = Growth { segment: seg, cap: 116_864, too_big: None };
        assert_eq!(growth.out_of_memory(4096, 2048), Some(3072));
        assert_eq!(growth.out_of_memory(3072, 2048), Some(2560));
    }

    #[test]
    fn the_default_budget_is_most_of_a_card_below_the_cliff() {
        use crate::backend::gpu::adapters::AdapterSummary;
        const GIB: u64 = 1 << 30;
        let summary = |device_type: &str, is_software: bool, total: Option<u64>, free: Option<u64>| AdapterSummary {
            index: 0,
            name: "card".into(),
            backend: "vulkan".into(),
            device_type: device_type.into(),
            vendor_id: 0x10de,
            device_id: 0x2335,
            pci_bus_id: String::new(),
            driver: String::new(),
            shader_int64: true,
            timestamp_query: true,
            max_buffer_size: 2 * GIB,
            max_storage_buffer_binding_size: 2 * GIB,
            max_storage_buffers_per_shader_stage: 16,
            max_compute_workgroup_size_x: 1024,
            is_software,
            memory_bytes: total,
            memory_free_bytes: free,
        };
        #[rustfmt::skip]
        let cases = [
            // (adapter, budget, why)
            (summary("DiscreteGpu", false, Some(141 * GIB), Some(139 * GIB)), 32 * GIB, "an H200: the cliff"),
            (summary("DiscreteGpu", false, Some(24 * GIB), Some(22 * GIB)), 22 * GIB / 100 * 85, "a 24 GiB card: 85% of free"),
            (summary("DiscreteGpu", false, Some(8 * GIB), None), 8 * GIB / 100 * 85, "no budget extension: the heap"),
            (summary("DiscreteGpu", false, None, None), 32 * GIB, "unknown memory: the cap"),
            (summary("IntegratedGpu", false, Some(64 * GIB), None), 4 * GIB, "shared memory: at most 4 GiB"),
            (summary("Cpu", true, Some(2 * GIB), None), GIB, "lavapipe's 2 GiB heap: half"),
            (summary("DiscreteGpu", true, None, None), 4 * GIB, "software, whatever it calls itself"),
        ];
        for (adapter, expected, why) in cases {
            assert_eq!(default_memory_budget(&adapter), expected, "{why}");
        }
    }

    #[test]
    fn the_rule_judges_a_step_not_one_segments_share_of_it() {
        let goals = TuningGoals::default(); // 20-200 ms, 5%
        let take_grow = Assessment { take: true, grow: true };
        let take_stop = Assessment { take: true, grow: false };
        let skip_grow = Assessment { take: false, grow: true };
        let skip_stop = Assessment { take: false, grow: false };
        #[rustfmt::skip]
        let cases = [
            // (best so far, candidate, verdict, why)
            (None, candidate(1, 100.0, 5), take_grow, "the first candidate is taken"),
            (None, candidate(1, 100.0, 900), take_stop, "the first is taken even past the window"),
            (Some(candidate(1, 100.0, 5)), candidate(2, 200.0, 10), take_grow, "faster and short"),
            (Some(candidate(1, 100.0, 5)), candidate(2, 98.0, 10), take_grow, "as fast, the best steps short"),
            (Some(candidate(1, 100.0, 30)), candidate(2, 98.0, 60), skip_stop, "as fast, the best steps long enough"),
            (Some(candidate(1, 100.0, 30)), candidate(2, 120.0, 60), take_grow, "still gaining past min_step"),
            (Some(candidate(1, 100.0, 5)), candidate(2, 80.0, 10), skip_grow, "slower, but steps still short"),
            (Some(candidate(1, 100.0, 5)), candidate(2, 80.0, 25), skip_stop, "slower and long enough"),
            // Ten segments side by side at 30 ms each is a 300 ms step: one
            // submission a watchdog times as a whole.
            (Some(candidate(5, 100.0, 150)), candidate(10, 190.0, 300), skip_stop, "past max_step"),
            (Some(candidate(5, 100.0, 100)), candidate(10, 190.0, 200), take_grow, "at max_step"),
            // Half as many again (log2 1.5 = 0.58 doublings): 2.9% is needed.
            (Some(candidate(2, 100.0, 30)), candidate(3, 104.0, 45), take_grow, "+4% for +50% hashes"),
            (Some(candidate(2, 100.0, 30)), candidate(3, 102.0, 45), skip_stop, "+2% for +50% hashes"),
        ];
        for (best, next, expected, why) in cases {
            let peak = best.as_ref().map_or(0.0, |b| b.measured_rate);
            assert_eq!(assess(best.as_ref(), peak, &next, &goals), expected, "{why}");
        }
    }

    /// "As fast" is measured from the best rate taken so far, not from the
    /// last candidate taken: candidates each a little slower than the one
    /// before (steps short, so each is within 5% of its predecessor) must not
    /// drift far below the peak.
    #[test]
    fn as_fast_is_measured_from_the_peak() {
        let goals = TuningGoals::default(); // 20-200 ms, 5%
        let mut best: Option<Tuned> = None;
        let mut peak = 0.0_f64;
        let mut taken = Vec::new();
        for (segments, rate) in [(1, 100.0), (2, 97.0), (3, 96.0), (4, 94.0), (6, 93.0)] {
            let next = candidate(segments, rate, 5);
            let verdict = assess(best.as_ref(), peak, &next, &goals);
            assert!(verdict.grow, "steps are short: growth goes on ({segments} segments)");
            if verdict.take {
                peak = peak.max(rate);
                best = Some(next);
                taken.push(segments);
            }
        }
        // 94 and 93 are within 5% of 96 and 97, but not of the peak, 100.
        assert_eq!(taken, [1, 2, 3]);
    }
}
