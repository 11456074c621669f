//! A batch's time on the GPU clock, from the timestamps written around its
//! steps: the whole batch, and where a batch has few enough steps, each.

use std::time::Duration;

/// The most steps a batch times one by one: two timestamps each, within
/// wgpu's limit on a query set. Batches of more steps (tiny splits, in
/// tests) time the batch as a whole only.
pub const MAX_TIMED_STEPS: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// A batch's steps on the GPU clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepTimes {
    /// The steps' own time, summed. The rest of `gpu_time` the device was
    /// idle between steps: submission boundaries (barriers, query resets)
    /// and any wait for the host's next submission.
    pub busy: Duration,
    /// The first step (empty tables) and the last (the fullest): a batch's
    /// slices slow down as its tables fill. (A last slice shorter than the
    /// split, when it does not divide the mix loop, understates that.)
    pub first: Duration,
    pub last: Duration,
}

/// The batch's GPU time (its first stamp to its last) and, when every step
/// was timed (`timed_steps`: a pair of stamps a step), its [`StepTimes`],
/// from `ticks` of `period_ns` each.
pub(super) fn batch_times(ticks: &[u64], period_ns: f64, timed_steps: bool) -> (Duration, Option<StepTimes>) {
    let duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 * period_ns * 1e-9);
    // A counter that wrapped between two stamps (Intel's are 36 bits)
    // reads as no time rather than as centuries.
    let span = |from: u64, to: u64| duration(to.saturating_sub(from));
    let gpu_time = match (ticks.first(), ticks.last()) {
        (Some(&first), Some(&last)) => span(first, last),
        _ => Duration::ZERO,
    };
    let step_times = timed_steps.then(|| {
        let steps: Vec<Duration> = ticks.chunks_exact(2).map(|pair| span(pair[0], pair[1])).collect();
        StepTimes {
            busy: steps.iter().sum(),
            first: steps.first().copied().unwrap_or_default(),
            last: steps.last().copied().unwrap_or_default(),
        }
    });
    (gpu_time, step_times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_as_the_batch_and_its_steps() {
        let ms = Duration::from_millis;
        // Three steps of 2, 3 and 4 ms, idle 1 ms between (a tick of 10^6 ns).
        let ticks = [0, 2, 3, 6, 7, 11];
        let (batch, steps) = batch_times(&ticks, 1e6, true);
        assert_eq!(batch, ms(11));
        assert_eq!(steps, Some(StepTimes { busy: ms(9), first: ms(2), last: ms(4) }));
        // Too many steps to time one by one: the batch's first and last only.
        assert_eq!(batch_times(&[5, 25], 1e6, false), (ms(20), None));
        // A counter that wrapped reads as no time, not centuries.
        assert_eq!(batch_times(&[u64::MAX - 1, 3], 1e6, false).0, Duration::ZERO);
        assert_eq!(batch_times(&[], 1.0, true), (Duration::ZERO, Some(StepTimes::default())));
    }
}
