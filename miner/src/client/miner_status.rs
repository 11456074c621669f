//! What the owner sees: counts, connection state and rates, shared by the
//! session, the status line and the local API.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::hashrate_meter::{HashrateMeter, RatePoint, Rates};
use super::work_dispatch::WorkDispatch;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub blocks: u64,
    /// Shares waiting to be resubmitted (the pool was unreachable).
    pub pending: usize,
    /// Shares dropped: the pending queue was full, their job ended, too
    /// many found nonces were waiting to be sent, a GPU found more than it
    /// could list or re-check, or the pool refused or banned the miner (no
    /// session to send them with).
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Connection {
    pub mode: String,
    /// The pool or node in use.
    pub url: String,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Seconds until the next attempt while backing off.
    pub retry_in_secs: Option<u64>,
    pub height: Option<u64>,
    pub share_difficulty: Option<u64>,
    pub network_difficulty: Option<u64>,
    pub job_id: Option<String>,
    /// Pool mode: the failover list in order, and the indexes of the primary
    /// pool (failed back to) and of the one in use.
    pub pools: Vec<String>,
    pub primary: usize,
    pub active: usize,
}

#[derive(Default)]
pub struct MinerStatus {
    pub counters: Mutex<Counters>,
    pub connection: Mutex<Connection>,
    pub meter: HashrateMeter,
    pub started: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub name: String,
    pub disabled: bool,
    /// Idle: the current job's tables do not fit its memory.
    pub sitting_out: bool,
    pub hashrate: Rates,
    pub hashes: u64,
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub uptime_secs: u64,
    pub paused: bool,
    pub cpu_threads: usize,
    /// Share and block counts (flat in the JSON).
    #[serde(flatten)]
    pub counters: Counters,
    pub hashrate: Rates,
    pub devices: Vec<DeviceReport>,
    pub connection: Connection,
    /// The last 15 minutes, a point every [`HISTORY_STEP`]: each device's
    /// rate (in the order of `devices`).
    pub history: Vec<RatePoint>,
}

/// The spacing of `/status` `history` points.
pub const HISTORY_STEP: Duration = Duration::from_secs(5);

impl MinerStatus {
    pub fn new() -> Self {
        MinerStatus { started: Some(Instant::now()), ..Default::default() }
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.counters.lock().expect("status lock"))
    }

    pub fn connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.connection.lock().expect("status lock"))
    }

    pub fn report(&self, dispatch: &WorkDispatch) -> StatusReport {
        let mut counters = self.counters.lock().expect("status lock").clone();
        counters.dropped += dispatch.found_dropped();
        let devices = dispatch
            .slots()
            .iter()
            .enumerate()
            .map(|(i, slot)| DeviceReport {
                name: slot.name.clone(),
                disabled: slot.disabled.load(std::sync::atomic::Ordering::Relaxed),
                sitting_out: slot.sitting_out.load(std::sync::atomic::Ordering::Relaxed),
                hashrate: self.meter.rates(Some(i)),
                hashes: slot.hashes(),
            })
            .collect();
        StatusReport {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.map_or(0, |s| s.elapsed().as_secs()),
            paused: dispatch.is_paused(),
            cpu_threads: dispatch.cpu_threads(),
            counters,
            hashrate: self.meter.rates(None),
            devices,
            connection: self.connection.lock().expect("status lock").clone(),
            history: self.meter.history(HISTORY_STEP, unix_ms()),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn si(rate: f64) -> String {
    match rate {
        r if r >= 1e9 => format!("{:.2} GH/s", r / 1e9),
        r if r >= 1e6 => format!("{:.2} MH/s", r / 1e6),
        r if r >= 1e3 => format!("{:.2} kH/s", r / 1e3),
        r => format!("{r:.1} H/s"),
    }
}

fn clock(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The periodic status line; ANSI colour when `color`.
pub fn status_line(report: &StatusReport, color: bool) -> String {
    let paint = |code: &str, text: String| if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text };
    let devices: Vec<String> = report
        .devices
        .iter()
        .map(|d| match (d.disabled, d.sitting_out) {
            (true, _) => format!("{} off", d.name),
            (false, true) => format!("{} idle (job too large)", d.name),
            (false, false) => format!("{} {}", d.name, si(d.hashrate.h10s)),
        })
        .collect();
    let c = &report.connection;
    let link = match (c.connected, &c.last_error) {
        (true, _) => paint("32", c.url.clone()),
        (false, Some(err)) => paint(
            "31",
            format!("{} ({err}{})", c.url, c.retry_in_secs.map(|s| format!(", retry in {s}s")).unwrap_or_default()),
        ),
        (false, None) => paint("33", format!("{} (connecting)", c.url)),
    };
    format!(
        "{} {} (10s) {} (60s) {} (15m) [{}] | {} {} stale {} {}{} | {} height {} diff {} | up {}{}",
        paint("1", "speed".to_string()),
        paint("1;36", si(report.hashrate.h10s)),
        si(report.hashrate.h60s),
        si(report.hashrate.h15m),
        devices.join(", "),
        paint("32", format!("accepted {}", report.counters.accepted)),
        paint(if report.counters.rejected > 0 { "31" } else { "0" }, format!("rejected {}", report.counters.rejected)),
        report.counters.stale,
        paint(if report.counters.blocks > 0 { "1;33" } else { "0" }, format!("blocks {}", report.counters.blocks)),
        waiting(report, &paint),
        link,
        c.height.map_or("-".into(), |h| h.to_string()),
        c.share_difficulty.map_or("-".into(), |d| d.to_string()),
        clock(report.uptime_secs),
        if report.paused { " PAUSED" } else { "" },
    )
}

/// Shares waiting for a pool and shares lost, when there are any: an
/// outage's cost shows on the line, not only in `/status`.
fn waiting(report: &StatusReport, paint: &impl Fn(&str, String) -> String) -> String {
    let mut shown = String::new();
    if report.counters.pending > 0 {
        shown += &format!(" {}", paint("33", format!("pending {}", report.counters.pending)));
    }
    if report.counters.dropped > 0 {
        shown += &format!(" {}", paint("31", format!("dropped {}", report.counters.dropped)));
    }
    shown
}

/// Sleeps in the meter's sampling rhythm.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counters: Counters, connection: Connection) -> StatusReport {
        StatusReport {
            version: "0",
            uptime_secs: 3725,
            paused: false,
            cpu_threads: 1,
            counters,
            hashrate: Rates::default(),
            devices: Vec::new(),
            connection,
            history: Vec::new(),
        }
    }

    #[test]
    fn the_status_line_says_what_an_outage_costs_and_why() {
        let pool = |connected, last_error: Option<&str>, retry_in_secs| Connection {
            url: "http://pool".into(),
            connected,
            last_error: last_error.map(str::to_string),
            retry_in_secs,
            ..Connection::default()
        };
        let quiet = Counters { accepted: 3, ..Counters::default() };
        let outage = Counters { accepted: 3, pending: 2, dropped: 1, ..Counters::default() };
        let cases = [
            (quiet.clone(), pool(true, None, None), "accepted 3 rejected 0 stale 0 blocks 0 | http://pool height"),
            (outage.clone(), pool(true, None, None), "blocks 0 pending 2 dropped 1 | http://pool height"),
            (
                outage,
                pool(false, Some("connection refused"), Some(4)),
                "| http://pool (connection refused, retry in 4s) height",
            ),
            (quiet, pool(false, None, None), "| http://pool (connecting) height"),
        ];
        for (counters, connection, expected) in cases {
            let line = status_line(&report(counters, connection), false);
            assert!(line.contains(expected), "{expected:?} not in {line:?}");
            assert!(line.ends_with("| up 01:02:05"), "{line}");
        }
        let painted =
            status_line(&report(Counters { dropped: 1, ..Counters::default() }, pool(true, None, None)), true);
        assert!(painted.contains("\x1b[31mdropped 1\x1b[0m"), "{painted:?}");
    }
}
