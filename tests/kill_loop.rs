//! The kill loop: simulated workers (real VisionX shares over HTTP) and a
//! real `vision-miner` process mine on a `vision-coordinator` that is killed
//! with SIGKILL and restarted on the same address ten times. Afterwards, from
//! the pool's sled files and its embedded chain:
//! - every share a worker saw acknowledged is in the ledger, exactly once;
//! - every block on the chain that pays the pool has its found-block record;
//! - every credited block's split equals an independent PPLNS computation
//!   from the ledger, the books balance, and the chain holds exactly what
//!   the pool says it paid;
//! - the real miner reconnected by itself after the last restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vision_coordinator::chain::devnet::{DevnetChain, DevnetConfig};
use vision_coordinator::storage::SledStore;
use vision_suite::pool_books::{audit_books, sim_worker, Acked, SplitRules};
use vision_suite::{free_port, fresh_dir, start_coordinator, stop_gracefully, workspace_binary, QUICK_REWARDS};

const KILLS: usize = 10;
const SIM_WORKERS: usize = 12;
const POOL_FEE_BPS: u64 = 100;
/// PPLNS's N as a multiple of the network difficulty: large enough that the
/// window (and the 4 windows compaction keeps) covers the whole run, so no
/// acknowledged share is folded into an aggregate and each one can be found
/// in the ledger (compaction has tests of its own).
const WINDOW_FACTOR: u64 = 50;

fn start(data_dir: &Path, bind: &str) -> (Child, String) {
    // Harder blocks than QUICK_REWARDS's: a dozen workers hash together.
    let factor = WINDOW_FACTOR.to_string();
    let args: Vec<&str> = QUICK_REWARDS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--devnet-difficulty"))
        .chain(["--bind", bind, "--devnet-difficulty=400", "--registrations-per-sec=1000"])
        .chain(["--pplns-window-factor", factor.as_str()])
        .collect();
    start_coordinator(data_dir, &args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_under_load_lose_nothing_and_pay_once() {
    let root = fresh_dir("kill-loop");
    let data_dir = root.join("pool");
    let bind = format!("127.0.0.1:{}", free_port());
    let (mut pool, url) = start(&data_dir, &bind);

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> =
        (0..SIM_WORKERS).map(|n| tokio::spawn(sim_worker(n, vec![url.clone()], acked.clone(), stop.clone()))).collect();
    let api = format!("127.0.0.1:{}", free_port());
    let mut miner = Command::new(workspace_binary("vision-miner"))
        .args(["--pool", &url, "--wallet", "land1real", "--worker", "real", "--backend", "cpu", "--threads", "1"])
        .args(["--status-interval", "3600", "--api-bind", &api])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        pool.kill().unwrap(); // SIGKILL
        pool.wait().unwrap();
        let acked_now = acked.lock().unwrap().len();
        assert!(acked_now > kill, "shares are acknowledged between kills");
        (pool, _) = start(&data_dir, &bind);
    }
    // The real miner comes back by itself: its accepted count grows again.
    let http = reqwest::Client::new();
    let status = async || -> Value {
        match http.get(format!("http://{api}/status")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    let before = status().await["accepted"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status().await;
        if s["accepted"].as_u64().unwrap_or(0) > before && s["connection"]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the miner did not reconnect by itself: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let _ = miner.kill();
    let _ = miner.wait();
    // Let the last run credit what it found, then stop it cleanly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_gracefully(&mut pool);

    let db = sled::open(data_dir.join("db")).unwrap();
    let store = SledStore::open(&db).unwrap();
    let chain = DevnetChain::open(&db, DevnetConfig::default()).unwrap();

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50, "enough load: {} acknowledged shares", acked.len());
    let rules =
        SplitRules { window_factor: WINDOW_FACTOR, pool_fee_bps: POOL_FEE_BPS, pool_fee_address: "land1host".into() };
    let audit = audit_books(&store, &chain, &acked, "vision-pool", &rules).await;
    assert!(audit.pool_blocks >= 3, "blocks were found under the kill loop");
    eprintln!("kill loop: {KILLS} kills, {} acknowledged shares, {audit:?}", acked.len());
    drop((store, chain, db));
    let _ = std::fs::remove_dir_all(&root);
}
