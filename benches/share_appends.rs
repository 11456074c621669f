//! Share appends per second on PostgreSQL whose commits wait for the disk
//! (`cargo bench --bench share_appends`).
//!
//! Every acknowledged share is committed before its answer, and the ledger's
//! positions are dense and commit in order, so appends from every
//! coordinator serialise on the ledger head. This measures what that costs:
//! `VISION_BENCH_APPENDERS` tasks (default 64) append distinct shares as fast
//! as the stores answer, for `VISION_BENCH_SECONDS` (default 10), through
//! `VISION_BENCH_COORDINATORS` stores on one database (default 1), on a
//! throwaway server with `fsync=on` (`VISION_BENCH_FSYNC=off` skips the
//! disk, as the tests' servers do). Prints one JSON object, then checks that
//! the ledger holds exactly the appends acknowledged, at dense positions.

#[path = "../coordinator/tests/support/throwaway_postgres.rs"]
mod throwaway_postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use vision_coordinator::storage::{AppendOutcome, DatabaseTls, PgStore, PoolStore, ShareRecord};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
}

fn share(appender: u64, n: u64) -> ShareRecord {
    ShareRecord {
        worker_id: format!("bench-{appender}"),
        session_id: format!("session-{appender}"),
        wallet_address: "land1bench".into(),
        template_id: "bench-template".into(),
        job_id: format!("job-{appender}"),
        nonce: appender << 32 | n,
        share_difficulty: 1_000,
        height: 1,
        time_ms: 1_764_000_000_000 + n,
        is_block: false,
    }
}

#[tokio::main]
async fn main() {
    let appenders: u64 = env_or("VISION_BENCH_APPENDERS", 64);
    let seconds: f64 = env_or("VISION_BENCH_SECONDS", 10.0);
    let coordinators: usize = env_or("VISION_BENCH_COORDINATORS", 1);
    let durable = std::env::var("VISION_BENCH_FSYNC").map_or(true, |v| v != "off");
    let server = if durable {
        throwaway_postgres::ThrowawayPostgres::start_durable()
    } else {
        throwaway_postgres::ThrowawayPostgres::start()
    };
    let url = server.database("share_appends");
    let mut stores: Vec<Arc<dyn PoolStore>> = Vec::new();
    for _ in 0..coordinators {
        stores
            .push(Arc::new(PgStore::connect(&url, 16, &DatabaseTls::default()).await.expect("connect to PostgreSQL")));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let store = stores[a as usize % stores.len()].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match store.append_share(&share(a, n)).await.expect("append") {
                        AppendOutcome::Appended(_) => {}
                        other => panic!("a fresh share was not appended: {other:?}"),
                    }
                    latencies.push(sent.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("appender"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let appends = latencies.len() as u64;
    println!(
        "{}",
        json!({
            "bench": "share_appends",
            "store": "postgres",
            "fsync": durable,
            "coordinators": coordinators,
            "appenders": appenders,
            "appends": appends,
            "seconds": elapsed,
            "appends_per_second": appends as f64 / elapsed,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
        })
    );
    let ledger = stores[0].ledger_len().await.expect("ledger length");
    assert_eq!(ledger, appends, "the ledger holds every acknowledged append and nothing else");
    let positions: Vec<u64> =
        stores[0].shares_from(0, appends as usize).await.expect("read the ledger").iter().map(|(p, _)| *p).collect();
    assert!(positions.iter().copied().eq(0..appends), "positions are dense from 0");
}
