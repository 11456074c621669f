//! Figures over time for the dashboards' charts (`GET /pool/history`,
//! `GET /pool/workers/{id}/history`).
//!
//! A background task calls [`StatsHistory::record`] every `interval` with the
//! pool's cumulative counters; the history keeps per-interval samples in
//! memory (a day for the pool, an hour a worker) and answers ranges
//! downsampled to at most [`MAX_POINTS`] points. It is not persisted: a
//! restarted coordinator starts its charts afresh (the ledger, balances and
//! blocks are on disk; these are views). Time is passed in, so the rules are
//! tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use vision_protocol::pool::{PoolHistory, PoolSample, WorkerHistory, WorkerSample};

/// Points a range answers at most (buckets are merged past it).
pub const MAX_POINTS: usize = 360;
/// How far back the pool's samples reach.
const POOL_SPAN_MS: u64 = 24 * 3_600_000;
/// How far back a worker's samples reach.
const WORKER_SPAN_MS: u64 = 3_600_000;
/// Samples kept at most, whatever the interval (a short interval keeps less time).
const MAX_POOL_SAMPLES: usize = 8_640;
const MAX_WORKER_SAMPLES: usize = 360;
/// Workers charted at most (those with the most shares in the last 10
/// minutes): about 17 KiB each at most.
const MAX_CHARTED_WORKERS: usize = 2_000;

/// What the pool's counters say at one instant (cumulative since start).
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolReading {
    /// Sum of accepted shares' difficulties: the hashes they stand for.
    pub accepted_work: u64,
    pub accepted: u64,
    pub stale: u64,
    pub invalid: u64,
    pub workers_online: u64,
    /// The miners' own figures, summed (H/s).
    pub reported_hashrate: f64,
}

/// One worker at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReading {
    /// Its accepted shares (cumulative over its active sessions).
    pub accepted: u64,
    /// Its 10-minute effective rate and the shares behind it.
    pub effective_10m: f64,
    pub shares_10m: u64,
    pub reported_hashrate: Option<f64>,
}

/// One sampling interval, as recorded (the API's [`PoolSample`] is its view).
#[derive(Debug, Clone, Copy)]
struct Interval {
    time_ms: u64,
    span_ms: u64,
    /// Accepted work in the interval (hashes).
    work: u64,
    accepted: u64,
    stale: u64,
    invalid: u64,
    workers_online: u64,
    reported_hashrate: f64,
}

impl Interval {
    fn view(&self) -> PoolSample {
        PoolSample {
            time_ms: self.time_ms,
            span_ms: self.span_ms,
            hashrate: self.work as f64 * 1000.0 / self.span_ms.max(1) as f64,
            reported_hashrate: self.reported_hashrate,
            accepted: self.accepted,
            stale: self.stale,
            invalid: self.invalid,
            workers_online: self.workers_online,
        }
    }
}

/// The chart ranges the API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    TenMinutes,
    OneHour,
    OneDay,
}

impl HistoryRange {
    pub fn parse(text: &str) -> Option<HistoryRange> {
        match text {
            "10m" => Some(HistoryRange::TenMinutes),
            "1h" => Some(HistoryRange::OneHour),
            "24h" => Some(HistoryRange::OneDay),
            _ => None,
        }
    }

    fn span_ms(self) -> u64 {
        match self {
            HistoryRange::TenMinutes => 600_000,
            HistoryRange::OneHour => 3_600_000,
            HistoryRange::OneDay => POOL_SPAN_MS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HistoryRange::TenMinutes => "10m",
            HistoryRange::OneHour => "1h",
            HistoryRange::OneDay => "24h",
        }
    }
}

#[derive(Default)]
struct Rings {
    last: Option<(u64, PoolReading)>,
    pool: VecDeque<Interval>,
    workers: HashMap<String, (WorkerReading, VecDeque<WorkerSample>)>,
}

pub struct StatsHistory {
    interval_ms: u64,
    rings: Mutex<Rings>,
}

impl StatsHistory {
    pub fn new(interval: Duration) -> Self {
        StatsHistory { interval_ms: (interval.as_millis() as u64).max(1), rings: Mutex::default() }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Takes a reading. The first one only sets the baseline; workers absent
    /// from `workers` (left the active set, or no accepted work) are
    /// forgotten. A wall clock that steps back is ignored until it passes
    /// the last reading again.
    pub fn record(&self, now_ms: u64, pool: PoolReading, mut workers: Vec<(String, WorkerReading)>) {
        if workers.len() > MAX_CHARTED_WORKERS {
            workers.sort_by_key(|w| std::cmp::Reverse(w.1.shares_10m));
            workers.truncate(MAX_CHARTED_WORKERS);
        }
        let mut rings = self.rings.lock().expect("history lock");
        let Some((then, before)) = rings.last.replace((now_ms, pool)) else {
            for (id, reading) in workers {
                rings.workers.insert(id, (reading, VecDeque::new()));
            }
            return;
        };
        if now_ms <= then {
            rings.last = Some((then, before));
            return;
        }
        let span_ms = now_ms - then;
        let work = pool.accepted_work.saturating_sub(before.accepted_work);
        rings.pool.push_back(Interval {
            time_ms: now_ms,
            span_ms,
            work,
            accepted: pool.accepted.saturating_sub(before.accepted),
            stale: pool.stale.saturating_sub(before.stale),
            invalid: pool.invalid.saturating_sub(before.invalid),
            workers_online: pool.workers_online,
            reported_hashrate: pool.reported_hashrate,
        });
        while rings.pool.len() > MAX_POOL_SAMPLES
            || rings.pool.front().is_some_and(|s| now_ms.saturating_sub(s.time_ms) > POOL_SPAN_MS)
        {
            rings.pool.pop_front();
        }

        let mut next = HashMap::with_capacity(workers.len());
        for (id, reading) in workers {
            let (previous, mut samples) =
                rings.workers.remove(&id).unwrap_or_else(|| (reading, VecDeque::with_capacity(MAX_WORKER_SAMPLES)));
            samples.push_back(WorkerSample {
                time_ms: now_ms,
                effective_10m: reading.effective_10m,
                shares_10m: reading.shares_10m,
                reported_hashrate: reading.reported_hashrate,
                accepted: reading.accepted.saturating_sub(previous.accepted),
            });
            while samples.len() > MAX_WORKER_SAMPLES
                || samples.front().is_some_and(|s| now_ms.saturating_sub(s.time_ms) > WORKER_SPAN_MS)
            {
                samples.pop_front();
            }
            next.insert(id, (reading, samples));
        }
        rings.workers = next;
    }

    /// The pool's samples within `range` of `now_ms`, merged into at most
    /// [`MAX_POINTS`] points (counts summed, rates weighted by time). Points
    /// are buckets aligned on the clock (a whole number of intervals), so
    /// their edges stay put as time goes on; the newest may be partial
    /// (its `span_ms` says so).
    pub fn pool(&self, range: HistoryRange, now_ms: u64) -> PoolHistory {
        let span = range.span_ms();
        let bucket_ms =
            span.div_ceil(MAX_POINTS as u64 - 1).max(self.interval_ms).div_ceil(self.interval_ms) * self.interval_ms;
        let rings = self.rings.lock().expect("history lock");
        let since = now_ms.saturating_sub(span);
        let recent: Vec<Interval> = rings.pool.iter().filter(|s| s.time_ms > since).copied().collect();
        drop(rings);
        let samples = recent
            .chunk_by(|a, b| (a.time_ms - 1) / bucket_ms == (b.time_ms - 1) / bucket_ms)
            .map(|chunk| merge(chunk).view())
            .collect();
        PoolHistory { range: range.name().to_string(), interval_ms: self.interval_ms, samples }
    }

    /// A worker's samples (the last hour), or `None` for a worker not in the
    /// active set at the last reading.
    pub fn worker(&self, worker_id: &str) -> Option<WorkerHistory> {
        let rings = self.rings.lock().expect("history lock");
        let (_, samples) = rings.workers.get(worker_id)?;
        Some(WorkerHistory {
            worker_id: worker_id.to_string(),
            interval_ms: self.interval_ms,
            samples: samples.iter().copied().collect(),
        })
    }
}

fn merge(chunk: &[Interval]) -> Interval {
    let last = chunk[chunk.len() - 1];
    Interval {
        time_ms: last.time_ms,
        span_ms: chunk.iter().map(|s| s.span_ms).sum(),
        work: chunk.iter().map(|s| s.work).sum(),
        accepted: chunk.iter().map(|s| s.accepted).sum(),
        stale: chunk.iter().map(|s| s.stale).sum(),
        invalid: chunk.iter().map(|s| s.invalid).sum(),
        workers_online: last.workers_online,
        reported_hashrate: last.reported_hashrate,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reading(work: u64, accepted: u64, stale: u64, invalid: u64) -> PoolReading {
        PoolReading { accepted_work: work, accepted, stale, invalid, workers_online: 1, reported_hashrate: 5.0 }
    }

    #[test]
    fn the_first_reading_is_a_baseline_and_later_ones_are_deltas() {
        let history = StatsHistory::new(Duration::from_secs(10));
        history.record(1_000, reading(500, 5, 0, 0), vec![]);
        assert!(history.pool(HistoryRange::TenMinutes, 1_000).samples.is_empty());
        history.record(11_000, reading(10_500, 15, 2, 1), vec![]);
        let samples = history.pool(HistoryRange::TenMinutes, 11_000).samples;
        assert_eq!(samples.len(), 1);
        let s = samples[0];
        assert_eq!((s.time_ms, s.accepted, s.stale, s.invalid), (11_000, 10, 2, 1));
        assert!((s.hashrate - 1_000.0).abs() < 1e-9, "10,000 hashes of work in 10 s: {}", s.hashrate);
    }

    #[test]
    fn ranges_cut_old_samples_and_a_time_going_backwards_is_ignored() {
        let history = StatsHistory::new(Duration::from_secs(60));
        for minute in 0..=30u64 {
            history.record(minute * 60_000, reading(minute * 600, minute, 0, 0), vec![]);
        }
        history.record(100, reading(0, 0, 0, 0), vec![]);
        let now = 30 * 60_000;
        assert_eq!(history.pool(HistoryRange::TenMinutes, now).samples.len(), 10);
        assert_eq!(history.pool(HistoryRange::OneHour, now).samples.len(), 30);
        assert_eq!(HistoryRange::parse("1w"), None);
        assert_eq!(HistoryRange::parse("24h"), Some(HistoryRange::OneDay));
    }

    #[test]
    fn workers_are_kept_while_active_and_their_accepted_counts_are_deltas() {
        let history = StatsHistory::new(Duration::from_secs(10));
        let w = |accepted| WorkerReading { accepted, effective_10m: 7.0, shares_10m: 3, reported_hashrate: None };
        history.record(0, PoolReading::default(), vec![("a".into(), w(2))]);
        history.record(10_000, PoolReading::default(), vec![("a".into(), w(5)), ("b".into(), w(1))]);
        let a = history.worker("a").unwrap();
        assert_eq!(a.samples.len(), 1);
        assert_eq!(a.samples[0].accepted, 3);
        assert_eq!(history.worker("b").unwrap().samples[0].accepted, 0, "a new worker starts from its first reading");
        history.record(20_000, PoolReading::default(), vec![("b".into(), w(4))]);
        assert!(history.worker("a").is_none(), "left the active set");
        assert_eq!(history.worker("b").unwrap().samples.len(), 2);
    }

    proptest! {
        /// Downsampling never loses or invents a share, and never answers
        /// more than MAX_POINTS points.
        #[test]
        fn merged_points_keep_every_count(steps in prop::collection::vec((1u64..5_000, 0u64..50, 0u64..5, 0u64..5), 1..2_000)) {
            let history = StatsHistory::new(Duration::from_secs(1));
            let (mut now, mut totals) = (0u64, PoolReading::default());
            history.record(now, totals, vec![]);
            for (dt, accepted, stale, invalid) in steps {
                now += dt;
                totals.accepted += accepted;
                totals.stale += stale;
                totals.invalid += invalid;
                totals.accepted_work += accepted * 100;
                history.record(now, totals, vec![]);
            }
            let answer = history.pool(HistoryRange::OneDay, now);
            prop_assert!(answer.samples.len() <= MAX_POINTS);
            let sum = |f: fn(&PoolSample) -> u64| answer.samples.iter().map(f).sum::<u64>();
            prop_assert_eq!(sum(|s| s.accepted), totals.accepted);
            prop_assert_eq!(sum(|s| s.stale), totals.stale);
            prop_assert_eq!(sum(|s| s.invalid), totals.invalid);
            let work: f64 = answer.samples.iter().map(|s| s.hashrate * s.span_ms as f64 / 1000.0).sum();
            prop_assert!((work - totals.accepted_work as f64).abs() <= 1e-6 * (1.0 + totals.accepted_work as f64));
        }
    }
}
