//! Per-session variable share difficulty.
//!
//! Aims at one share every `target_secs`. The session's hash rate is
//! estimated from its last [`VardiffConfig::window_shares`] shares, as the
//! sum of their difficulties over the time they span (each share weighs
//! its own job's difficulty, so shares of jobs issued before a retarget
//! still count right). The window is not cleared on a retarget: the
//! estimate is as good after a change as before it, so the difficulty does
//! not swing back and forth.
//!
//! A retarget happens only when the wanted difficulty is outside a band
//! around the current one that narrows as shares accumulate (about two
//! standard deviations of the estimate, never under 25%): early on it moves
//! quickly and coarsely, later it holds still unless the rate really
//! changed, and once the window is full it moves only halfway to the
//! estimate (a run of lucky shares cannot swing it far). One step moves at
//! most 4x either way, within [min, max]. A
//! session that goes quiet gets an easier difficulty on its next job
//! request. Time is passed in, never read inside, so tests control it.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VardiffConfig {
    pub(crate) target_secs: f64,
    pub(crate) min_difficulty: u64,
    pub(crate) max_difficulty: u64,
    /// Shares behind the rate estimate.
    pub(crate) window_shares: usize,
}

impl Default for VardiffConfig {
    fn default() -> Self {
        VardiffConfig { target_secs: 10.0, min_difficulty: 1, max_difficulty: u64::MAX / 2, window_shares: 96 }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Vardiff {
    difficulty: u64,
    /// The last shares: (time ms, difficulty).
    shares: VecDeque<(u64, u64)>,
    /// The last share, retarget or creation: the silence rule counts from it.
    last_event_ms: u64,
}

/// Largest change of one retarget.
const MAX_STEP: f64 = 4.0;
/// Shares needed before the first estimate.
const MIN_SHARES: usize = 3;
/// The narrowest band (in log terms) left alone.
const MIN_BAND: f64 = 0.25;

impl Vardiff {
    pub(crate) fn new(start: u64, now_ms: u64, config: &VardiffConfig) -> Self {
        Vardiff {
            difficulty: start.clamp(config.min_difficulty, config.max_difficulty),
            shares: VecDeque::new(),
            last_event_ms: now_ms,
        }
    }

    pub(crate) fn difficulty(&self) -> u64 {
        self.difficulty
    }

    /// Records an accepted share of difficulty `share_difficulty` (its job's);
    /// returns the new difficulty when it changed.
    pub(crate) fn on_share(&mut self, now_ms: u64, share_difficulty: u64, config: &VardiffConfig) -> Option<u64> {
        // The clock stepped back (a wall-clock correction): the window's
        // span would read as a millisecond and the rate as enormous, so it
        // starts again from this share. (Shares judged a little out of
        // order, as a session's shares verified together are, are taken
        // at the last one's time.)
        let last = self.shares.back().map(|&(at, _)| at);
        if last.is_some_and(|at| at > now_ms + super::token_bucket::CLOCK_STEP_MS) {
            self.shares.clear();
        }
        let now_ms = now_ms.max(last.filter(|_| !self.shares.is_empty()).unwrap_or(0));
        self.last_event_ms = now_ms;
        self.shares.push_back((now_ms, share_difficulty));
        while self.shares.len() > config.window_shares.max(MIN_SHARES) {
            self.shares.pop_front();
        }
        let n = self.shares.len();
        if n < MIN_SHARES {
            return None;
        }
        // The first share opens the interval; the work is that of the rest.
        let first_ms = self.shares.front().map_or(now_ms, |s| s.0);
        let span_secs = now_ms.saturating_sub(first_ms).max(1) as f64 / 1000.0;
        let work: f64 = self.shares.iter().skip(1).map(|s| s.1 as f64).sum();
        let wanted = work / span_secs * config.target_secs;
        let factor = wanted / self.difficulty as f64;
        let band = (2.0 / ((n - 1) as f64).sqrt()).max(MIN_BAND);
        if factor.ln().abs() <= band {
            return None;
        }
        // Once the window is full the estimate is good but still noisy: move
        // halfway, so one unlucky run of shares cannot swing it far.
        let factor = if n >= config.window_shares { factor.sqrt() } else { factor };
        self.retarget(factor, config)
    }

    /// On a job request: a session silent for six target intervals is
    /// probably too slow for its difficulty, so halve it (and forget the
    /// estimate, which no longer describes it).
    pub(crate) fn on_job_request(&mut self, now_ms: u64, config: &VardiffConfig) -> Option<u64> {
        let silent_secs = now_ms.saturating_sub(self.last_event_ms) as f64 / 1000.0;
        if silent_secs >= 6.0 * config.target_secs {
            self.last_event_ms = now_ms;
            self.shares.clear();
            return self.retarget(0.5, config);
        }
        None
    }

    /// Applies new bounds (an operator reconfigured the pool).
    pub(crate) fn apply_bounds(&mut self, config: &VardiffConfig) {
        self.difficulty = self.difficulty.clamp(config.min_difficulty, config.max_difficulty);
    }

    fn retarget(&mut self, factor: f64, config: &VardiffConfig) -> Option<u64> {
        let factor = factor.clamp(1.0 / MAX_STEP, MAX_STEP);
        let wanted = (self.difficulty as f64 * factor).round();
        let next = if wanted >= config.max_difficulty as f64 { config.max_difficulty } else { wanted as u64 };
        let next = next.clamp(config.min_difficulty, config.max_difficulty);
        (next != self.difficulty).then(|| {
            self.difficulty = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fast_shares_raise_and_silence_lowers_the_difficulty() {
        let config = VardiffConfig::default();
        let mut v = Vardiff::new(100, 0, &config);
        // One share a second against a 10 s target: 10x too easy, 4x per step.
        let changes: Vec<u64> = (1..=12).filter_map(|s| v.on_share(s * 1000, 100, &config)).collect();
        assert_eq!(changes.first(), Some(&400), "capped at 4x per step");
        assert!((700..=1300).contains(&v.difficulty()), "settles near 1000: {}", v.difficulty());
        // Silence: the next job is easier.
        let d = v.difficulty();
        assert_eq!(v.on_job_request(12_000 + 59_000, &config), None);
        assert_eq!(v.on_job_request(12_000 + 61_000, &config), Some(d / 2));
    }

    /// A wall clock stepped back an hour mid-window: the difficulty does
    /// not shoot up as if the shares had come within a millisecond.
    #[test]
    fn a_clock_stepped_back_does_not_raise_the_difficulty() {
        let config = VardiffConfig::default();
        let mut v = Vardiff::new(1000, 0, &config);
        let hour = 3_600_000;
        for s in 1..=20 {
            assert_eq!(v.on_share(hour + s * 10_000, 1000, &config), None);
        }
        for s in 1..=20 {
            assert_eq!(v.on_share(s * 10_000, 1000, &config), None, "share {s} after the step");
        }
        assert_eq!(v.difficulty(), 1000);
        // Shares judged a little out of order keep the window (and the rate).
        let mut v = Vardiff::new(1000, 0, &config);
        for s in 1..=40u64 {
            // Every other share is judged 300 ms "before" the one ahead of it.
            let at = if s % 2 == 0 { (s - 1) * 10_000 - 300 } else { s * 10_000 };
            v.on_share(at, 1000, &config);
        }
        assert_eq!(v.shares.len(), 40, "never started again");
    }

    #[test]
    fn on_target_stays_put() {
        let config = VardiffConfig::default();
        let mut v = Vardiff::new(1000, 0, &config);
        for s in 1..=100 {
            assert_eq!(v.on_share(s * 10_000, 1000, &config), None);
        }
        assert_eq!(v.difficulty(), 1000);
    }

    #[test]
    fn shares_of_older_easier_jobs_do_not_overshoot() {
        // 1,000 H/s against a 3 s target: the right difficulty is 3,000.
        let config = VardiffConfig { target_secs: 3.0, ..VardiffConfig::default() };
        let mut v = Vardiff::new(500, 0, &config);
        let mut now = 0;
        // Shares keep coming at difficulty 500 (the old job) for a while.
        for _ in 0..30 {
            now += 500;
            v.on_share(now, 500, &config);
        }
        assert!((2_000..=4_500).contains(&v.difficulty()), "{}", v.difficulty());
    }

    /// Exponential share intervals (a Poisson process), from a small
    /// deterministic generator seeded by proptest.
    fn simulate(seed: u64, start: u64, rate: f64, target: f64, shares: usize) -> Vec<u64> {
        let config = VardiffConfig { target_secs: target, ..VardiffConfig::default() };
        let mut v = Vardiff::new(start, 0, &config);
        let mut state = seed | 1;
        let mut now = 0.0f64;
        let mut path = Vec::with_capacity(shares);
        for _ in 0..shares {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let uniform = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let d = v.difficulty();
            now += -uniform.ln() * d as f64 / rate * 1000.0;
            v.on_share(now as u64, d, &config);
            path.push(v.difficulty());
        }
        path
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn difficulty_stays_within_bounds(
            start: u64,
            min in 1u64..1000,
            span in 0u64..1_000_000,
            gaps in proptest::collection::vec(0u64..200_000, 0..60),
        ) {
            let config = VardiffConfig { min_difficulty: min, max_difficulty: min + span, ..VardiffConfig::default() };
            let mut v = Vardiff::new(start, 0, &config);
            let mut now = 0;
            for gap in gaps {
                now += gap;
                if gap % 3 == 0 { v.on_job_request(now, &config); } else { v.on_share(now, gap % 5000 + 1, &config); }
                prop_assert!((config.min_difficulty..=config.max_difficulty).contains(&v.difficulty()));
            }
        }

        /// Once a session has sent enough shares its difficulty settles near
        /// the ideal (rate x target) and stops swinging.
        #[test]
        fn difficulty_settles_near_the_ideal(
            seed: u64,
            start in 1u64..10_000_000,
            rate in 10.0f64..1_000_000.0,
            target in 1.0f64..60.0,
        ) {
            let path = simulate(seed, start, rate, target, 600);
            let ideal = rate * target;
            let settled = &path[300..];
            for &d in settled {
                let ratio = d as f64 / ideal;
                prop_assert!((0.6..=1.6).contains(&ratio), "difficulty {d} vs ideal {ideal:.0}");
            }
            // Poisson noise retargets now and then: over 20,000 random cases
            // the settled half changed 0-7 times (7 twice); swinging would
            // be dozens. (6 failed about one CI run in 150.)
            let changes = settled.windows(2).filter(|w| w[0] != w[1]).count();
            prop_assert!(changes <= 10, "{changes} changes over 300 settled shares");
        }
    }
}
