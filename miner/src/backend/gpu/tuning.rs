//! Picks a batch shape for a device by measuring it.
//!
//! The mix-loop slice starts at [`super::DEFAULT_SPLIT`] iterations; the
//! batch grows (doubling) while the device gets faster and one step stays
//! short, within the memory budget and the device's buffer limits. A step
//! is one slice on every segment: the segments' dispatches run side by side
//! in one submission, so a step, not one segment's share of it, is what an
//! OS watchdog sees. A slice whose step takes too long even at the smallest
//! batch is halved.

use std::sync::Arc;
use std::time::Duration;

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
    /// Stop growing when doubling the batch gains less than this fraction.
    pub min_gain: f64,
    /// Hashes per batch given by the user: skips measuring.
    pub fixed_hashes: Option<u32>,
}

impl Default for TuningGoals {
    fn default() -> Self {
        TuningGoals {
            memory_budget: None,
            min_step: Duration::from_millis(20),
            max_step: Duration::from_millis(200),
            min_gain: 0.05,
            fixed_hashes: None,
        }
    }
}

/// The table memory a batch may take when the user sets none. A discrete
/// GPU needs tens of thousands of hashes in flight to hide memory latency
/// (on an H200: 26k H/s at 11k hashes, 92k H/s at 66k), but Vulkan drivers
/// slow down sharply past a total allocation (on the H200 the prototype fell
/// from 98k at 36 GiB to 17k at 48 GiB; ours ran 74k at 37.6 GiB): 32 GiB
/// holds 116k consensus tables (288 KiB each) and stays below it. Other
/// adapters (integrated, software) share the system's memory: 4 GiB. A card
/// with less memory stops the tuner's growth where its allocations fail.
pub fn default_memory_budget(summary: &super::adapters::AdapterSummary) -> u64 {
    if summary.device_type == "DiscreteGpu" && !summary.is_software {
        32 << 30
    } else {
        4 << 30
    }
}

/// Longest step (one slice on every segment) the split may grow to: a new
/// job waits for the steps already queued (two), and desktop drivers kill
/// dispatches after about 2 s.
const MAX_GROWN_STEP: Duration = Duration::from_millis(50);

/// On a hardware GPU, fewer, longer slices per batch: each slice of the mix
/// loop is a submission and a drain of the device. Doubles the split while
/// a step stays short and the rate does not fall. (Software adapters keep
/// the default: lavapipe corrupts results above about 3,000 iterations per
/// dispatch.)
fn grow_split(
    searcher: &mut GpuSearcher,
    mut tuned: Tuned,
    mix_iters: u32,
    goals: &TuningGoals,
) -> Result<Tuned, GpuError> {
    let hashes = tuned.shape.hashes();
    let limit = MAX_GROWN_STEP.min(goals.max_step);
    while tuned.step_time * 2 <= limit && tuned.shape.split < mix_iters {
        let split = (tuned.shape.split * 2).min(mix_iters);
        if !searcher.set_split(split) {
            break;
        }
        let step = searcher.time_one_step(0, hashes)?;
        let slices = f64::from(mix_iters.div_ceil(split).max(1));
        let rate = f64::from(hashes) / (step.as_secs_f64() * slices);
        if rate < tuned.measured_rate * 0.99 || step > limit {
            searcher.set_split(tuned.shape.split);
            break;
        }
        tuned = Tuned { shape: BatchShape { split, ..tuned.shape }, measured_rate: rate, step_time: step };
    }
    Ok(tuned)
}

/// The tuner's choice and what it measured.
#[derive(Debug, Clone, Copy)]
pub struct Tuned {
    pub shape: BatchShape,
    /// Hashes per second measured for `shape` (from one slice; 0 when fixed).
    pub measured_rate: f64,
    /// One step's time at `shape`: one slice on every segment (zero when
    /// fixed).
    pub step_time: Duration,
}

/// What the tuner makes of one measured candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assessment {
    /// The candidate replaces the best so far.
    take: bool,
    /// Measure a batch twice as large next.
    grow: bool,
}

/// The tuner's rule, apart from the device: a candidate is taken when it is
/// faster by `min_gain`, or as fast while the best so far steps shorter than
/// `min_step` (longer steps cost fewer submissions), and never when its step
/// is past `max_step` unless nothing was taken yet (a slow device: there is
/// nothing shorter to fall back to). Growth goes on while steps are within
/// the window and either short or still gaining.
fn assess(best: Option<&Tuned>, candidate: &Tuned, goals: &TuningGoals) -> Assessment {
    let rate = candidate.measured_rate;
    let improved = best.is_none_or(|b| {
        rate > b.measured_rate * (1.0 + goals.min_gain)
            || (b.step_time < goals.min_step && rate >= b.measured_rate * (1.0 - goals.min_gain))
    });
    let too_long = candidate.step_time > goals.max_step;
    let short = candidate.step_time < goals.min_step;
    Assessment { take: improved && (!too_long || best.is_none()), grow: !too_long && (short || improved) }
}

/// A shape holding `hashes` hashes in segments no larger than the device allows.
pub fn shape_for(gpu: &GpuDevice, params: &Params, hashes: u32, split: u32) -> BatchShape {
    let max_segment = gpu.max_segment_hashes(params);
    let segments = hashes.div_ceil(max_segment).max(1);
    let segment_hashes = hashes.div_ceil(segments).div_ceil(WORKGROUP_SIZE) * WORKGROUP_SIZE;
    BatchShape { segment_hashes, segments, split }
}

/// Measures `gpu` on `input` and returns a searcher with the chosen shape.
pub fn tune(gpu: &GpuDevice, input: &PowInput, goals: &TuningGoals) -> Result<(GpuSearcher, Tuned), GpuError> {
    let params = *input.params();
    let mut split = DEFAULT_SPLIT.min(params.mix_iters).max(1);
    let budget = goals.memory_budget.unwrap_or_else(|| default_memory_budget(&gpu.summary));
    let cap = (budget / gpu.bytes_per_hash(&params)).clamp(u64::from(WORKGROUP_SIZE), 1 << 22) as u32;
    let cap = cap / WORKGROUP_SIZE * WORKGROUP_SIZE;
    if let Some(hashes) = goals.fixed_hashes {
        if hashes > cap {
            tracing::warn!(
                "GPU #{}: a batch of {hashes} hashes needs more than the memory budget; {cap} instead (--gpu-memory-mb)",
                gpu.summary.index
            );
        }
        let shape = shape_for(gpu, &params, hashes.clamp(1, cap), split);
        let searcher = GpuSearcher::new(gpu.clone(), shape, &params)?;
        return Ok((searcher, Tuned { shape, measured_rate: 0.0, step_time: Duration::ZERO }));
    }
    let job = Arc::new(input.clone());
    let slices = |split: u32| f64::from(params.mix_iters.div_ceil(split).max(1));
    let mut best: Option<Tuned> = None;
    // The last candidate measured. Freed before the next is allocated: two
    // batches' tables at once would double the allocation, and past a
    // Vulkan driver's cliff the measurement itself slows down.
    let mut last: Option<GpuSearcher> = None;
    let mut hashes = WORKGROUP_SIZE.min(cap);
    loop {
        let shape = shape_for(gpu, &params, hashes, split);
        drop(last.take());
        let mut searcher = match GpuSearcher::new(gpu.clone(), shape, &params) {
            Ok(searcher) => searcher,
            // Out of memory: the last shape that fitted is the answer.
            Err(GpuError::OutOfMemory(_)) if best.is_some() => break,
            Err(err) => return Err(err),
        };
        // The first dispatch includes driver warm-up. Out of memory while
        // measuring (a staging buffer at the edge of the card) ends growth
        // as failing to allocate does.
        let step = match searcher
            .set_job(job.clone(), Target(0))
            .and_then(|()| searcher.time_one_step(0, hashes))
            .and_then(|_| searcher.time_one_step(0, hashes))
        {
            Ok(step) => step,
            Err(GpuError::OutOfMemory(_)) if best.is_some() => break,
            Err(err) => return Err(err),
        };
        if step > goals.max_step && best.is_none() && split > 1 {
            split /= 2;
            continue;
        }
        let candidate =
            Tuned { shape, measured_rate: f64::from(hashes) / (step.as_secs_f64() * slices(split)), step_time: step };
        let verdict = assess(best.as_ref(), &candidate, goals);
        if verdict.take {
            best = Some(candidate);
        }
        last = Some(searcher);
        let next = hashes.saturating_mul(2).min(cap);
        if !verdict.grow || next == hashes {
            break;
        }
        hashes = next;
    }
    // Every path to here measured a batch: the first one always sets `best`.
    let Some(mut tuned) = best else {
        return Err(GpuError::Unsupported("tuning measured no batch".into()));
    };
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
                        tuned.shape = shape_for(gpu, &params, hashes, tuned.shape.split);
                        tuned.measured_rate /= 2.0;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    };
    searcher.set_job(job.clone(), Target(0))?;
    if !gpu.summary.is_software {
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
        ];
        for (best, next, expected, why) in cases {
            assert_eq!(assess(best.as_ref(), &next, &goals), expected, "{why}");
        }
    }
}
