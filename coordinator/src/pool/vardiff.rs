//! Per-worker variable share difficulty.
//!
//! Retargets so a worker submits about one share every `target_secs`: after
//! enough shares (or enough time) the worker's hash rate, estimated as the
//! sum of its shares' difficulties over the elapsed time, sets the
//! difficulty, moving at most 4x either way per step, within [min, max].
//! Summing each share's own difficulty matters: shares of jobs issued
//! before a retarget keep arriving at the old difficulty for a while. A
//! worker that goes quiet gets an easier difficulty on its next job request.
//! Time is passed in, never read inside, so tests control it.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VardiffConfig {
    pub target_secs: f64,
    pub min_difficulty: u64,
    pub max_difficulty: u64,
    /// Retarget after this many shares...
    pub retarget_shares: u32,
    /// ...or after this many target intervals, whichever comes first.
    pub retarget_intervals: f64,
}

impl Default for VardiffConfig {
    fn default() -> Self {
        VardiffConfig {
            target_secs: 10.0,
            min_difficulty: 1,
            max_difficulty: u64::MAX / 2,
            retarget_shares: 6,
            retarget_intervals: 3.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vardiff {
    difficulty: u64,
    window_start_ms: u64,
    shares_in_window: u32,
    /// Sum of the difficulties of the window's shares (expected hashes).
    work_in_window: f64,
}

/// Largest change of one retarget.
const MAX_STEP: f64 = 4.0;

impl Vardiff {
    pub fn new(start: u64, now_ms: u64, config: &VardiffConfig) -> Self {
        Vardiff {
            difficulty: start.clamp(config.min_difficulty, config.max_difficulty),
            window_start_ms: now_ms,
            shares_in_window: 0,
            work_in_window: 0.0,
        }
    }

    pub fn difficulty(&self) -> u64 {
        self.difficulty
    }

    /// Records an accepted share of difficulty `share_difficulty` (its job's);
    /// returns the new difficulty when it changed.
    pub fn on_share(&mut self, now_ms: u64, share_difficulty: u64, config: &VardiffConfig) -> Option<u64> {
        self.shares_in_window += 1;
        self.work_in_window += share_difficulty as f64;
        let elapsed_secs = now_ms.saturating_sub(self.window_start_ms) as f64 / 1000.0;
        let window_over = elapsed_secs >= config.retarget_intervals * config.target_secs;
        if self.shares_in_window < config.retarget_shares && !window_over {
            return None;
        }
        let hashrate = self.work_in_window / elapsed_secs.max(0.001);
        let wanted = hashrate * config.target_secs;
        self.retarget(wanted / self.difficulty as f64, now_ms, config)
    }

    /// On a job request: a worker silent for several target intervals is
    /// probably too slow for its difficulty, so halve it.
    pub fn on_job_request(&mut self, now_ms: u64, config: &VardiffConfig) -> Option<u64> {
        let elapsed_secs = now_ms.saturating_sub(self.window_start_ms) as f64 / 1000.0;
        if self.shares_in_window == 0 && elapsed_secs >= 2.0 * config.retarget_intervals * config.target_secs {
            return self.retarget(0.5, now_ms, config);
        }
        None
    }

    /// Applies new bounds (an operator reconfigured the pool).
    pub fn apply_bounds(&mut self, config: &VardiffConfig) {
        self.difficulty = self.difficulty.clamp(config.min_difficulty, config.max_difficulty);
    }

    fn retarget(&mut self, factor: f64, now_ms: u64, config: &VardiffConfig) -> Option<u64> {
        let factor = factor.clamp(1.0 / MAX_STEP, MAX_STEP);
        let wanted = (self.difficulty as f64 * factor).round();
        let next = if wanted >= config.max_difficulty as f64 { config.max_difficulty } else { wanted as u64 };
        let next = next.clamp(config.min_difficulty, config.max_difficulty);
        self.window_start_ms = now_ms;
        self.shares_in_window = 0;
        self.work_in_window = 0.0;
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
    fn fast_shares_raise_and_slow_shares_lower_the_difficulty() {
        let config = VardiffConfig::default();
        let mut v = Vardiff::new(100, 0, &config);
        // Six shares in 6 s: 1 s each against a 10 s target.
        let mut changed = None;
        for s in 1..=6 {
            changed = v.on_share(s * 1000, 100, &config).or(changed);
        }
        assert_eq!(changed, Some(400), "capped at 4x per step");
        // One share in 60 s (window over): about 6x too slow, capped at /4.
        assert_eq!(v.on_share(66_000, 400, &config), Some(100));
        // Silence: the next job is easier.
        assert_eq!(v.on_job_request(66_000 + 61_000, &config), Some(50));
    }

    #[test]
    fn on_target_stays_put() {
        let config = VardiffConfig::default();
        let mut v = Vardiff::new(1000, 0, &config);
        for s in 1..=6 {
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

    proptest! {
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
    }
}
