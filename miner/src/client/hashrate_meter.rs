//! Hash rate per device and in total, over 10 s, 60 s and 15 min, like the
//! established miners show it. Sampled once a second from completed-hash
//! counters, so a stuck device shows zero, not its last figure.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

const KEEP: Duration = Duration::from_secs(15 * 60 + 5);

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rates {
    pub h10s: f64,
    pub h60s: f64,
    pub h15m: f64,
}

/// One point of the miner's `/status` `history`: each device's rate over
/// the step that ends at `time_ms` (ms since the Unix epoch).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RatePoint {
    pub time_ms: u64,
    pub devices: Vec<f64>,
}

#[derive(Default)]
pub struct HashrateMeter {
    samples: Mutex<VecDeque<(Instant, Vec<u64>)>>,
}

impl HashrateMeter {
    /// Records the cumulative hash counts of every device now.
    pub fn sample(&self, now: Instant, counts: Vec<u64>) {
        let mut samples = self.samples.lock().expect("meter lock");
        samples.push_back((now, counts));
        while samples.front().is_some_and(|(t, _)| now.duration_since(*t) > KEEP) {
            samples.pop_front();
        }
    }

    fn rate(samples: &VecDeque<(Instant, Vec<u64>)>, window: Duration, device: Option<usize>) -> f64 {
        let Some((now, latest)) = samples.back() else { return 0.0 };
        let Some((then, earlier)) = samples.iter().find(|(t, _)| now.duration_since(*t) <= window) else { return 0.0 };
        let secs = now.duration_since(*then).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let count = |c: &Vec<u64>| match device {
            Some(d) => c.get(d).copied().unwrap_or(0),
            None => c.iter().sum(),
        };
        count(latest).saturating_sub(count(earlier)) as f64 / secs
    }

    /// The last 15 minutes as points `step` apart, each the rate of every
    /// device over the step before it (for the owner's chart). `now_unix_ms`
    /// dates the newest sample.
    pub fn history(&self, step: Duration, now_unix_ms: u64) -> Vec<RatePoint> {
        let samples = self.samples.lock().expect("meter lock");
        let Some((newest, _)) = samples.back() else { return Vec::new() };
        let mut points = Vec::new();
        let mut previous: Option<&(Instant, Vec<u64>)> = None;
        for sample in samples.iter() {
            let Some(before) = previous else {
                previous = Some(sample);
                continue;
            };
            let secs = sample.0.duration_since(before.0).as_secs_f64();
            if secs + 1e-3 < step.as_secs_f64() {
                continue;
            }
            let devices = sample
                .1
                .iter()
                .enumerate()
                .map(|(i, &n)| n.saturating_sub(before.1.get(i).copied().unwrap_or(0)) as f64 / secs)
                .collect();
            let age_ms = newest.duration_since(sample.0).as_millis() as u64;
            points.push(RatePoint { time_ms: now_unix_ms.saturating_sub(age_ms), devices });
            previous = Some(sample);
        }
        points
    }

    /// Rates of one device (by index) or of all (None).
    pub fn rates(&self, device: Option<usize>) -> Rates {
        let samples = self.samples.lock().expect("meter lock");
        Rates {
            h10s: Self::rate(&samples, Duration::from_secs(10), device),
            h60s: Self::rate(&samples, Duration::from_secs(60), device),
            h15m: Self::rate(&samples, Duration::from_secs(15 * 60), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_completed_work_only() {
        let meter = HashrateMeter::default();
        let t0 = Instant::now();
        for s in 0..=20u64 {
            // Device 0 does 100 H/s; device 1 stalls after 5 s.
            meter.sample(t0 + Duration::from_secs(s), vec![100 * s, 50 * s.min(5)]);
        }
        let all = meter.rates(None);
        assert!((all.h10s - 100.0).abs() < 1e-9, "{all:?}");
        assert_eq!(meter.rates(Some(1)).h10s, 0.0, "a stuck device shows zero");
        assert!((meter.rates(Some(1)).h60s - 250.0 / 20.0).abs() < 1e-9);
    }

    #[test]
    fn history_points_are_rates_over_each_step() {
        let meter = HashrateMeter::default();
        let t0 = Instant::now();
        for s in 0..=20u64 {
            meter.sample(t0 + Duration::from_secs(s), vec![100 * s, 50 * s.min(5)]);
        }
        let points = meter.history(Duration::from_secs(5), 1_000_000);
        assert_eq!(points.len(), 4);
        assert_eq!(points[3].time_ms, 1_000_000, "the newest sample is now");
        assert_eq!(points[0].time_ms, 1_000_000 - 15_000);
        assert_eq!(points[0].devices, vec![100.0, 50.0]);
        assert_eq!(points[3].devices, vec![100.0, 0.0]);
        assert!(HashrateMeter::default().history(Duration::from_secs(5), 0).is_empty());
    }
}
