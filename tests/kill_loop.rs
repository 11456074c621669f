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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_coordinator::chain::devnet::{DevnetChain, DevnetConfig};
use vision_coordinator::storage::{BlockStatus, PoolStore, RewardStatus, SledStore};
use vision_suite::{free_port, fresh_dir, job_input, start_coordinator, workspace_binary, QUICK_REWARDS};
use visionx::{FastEngine, PowEngine};

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

/// Acknowledged shares: (job id, nonce).
type Acked = Arc<Mutex<Vec<(String, u64)>>>;

/// One simulated worker: registers (again after a 401), mines honestly,
/// records every share the pool acknowledged, and rides out the kills.
async fn sim_worker(n: usize, url: String, acked: Acked, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut engine = FastEngine::new();
    let mut token: Option<String> = None;
    let mut cursor: Option<(String, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(session) = token.clone() else {
            let body = json!({"worker_id": format!("sim{n}"), "wallet_address": format!("land1sim{}", n % 4)});
            match http.post(format!("{url}/pool/register")).json(&body).send().await {
                Ok(r) if r.status() == 200 => {
                    token = r.json::<Value>().await.ok().and_then(|v| v["worker_token"].as_str().map(str::to_string));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        let job = match http.get(format!("{url}/pool/job")).bearer_auth(&session).send().await {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.unwrap(),
            Ok(r) if r.status() == 401 => {
                token = None; // its session was not yet durable when the pool died
                continue;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = job["job_id"].as_str().unwrap().to_string();
        let input = job_input(&job);
        let start = match &cursor {
            Some((last, next)) if *last == id => *next,
            _ => job["nonce_start"].as_u64().unwrap(),
        };
        let end = job["nonce_end"].as_u64().unwrap().min(start + 16);
        cursor = Some((id.clone(), end));
        for nonce in start..end {
            let digest = engine.hash(&input, nonce);
            if !digest.meets_difficulty(job["share_difficulty"].as_u64().unwrap()) {
                continue;
            }
            let body = json!({"job_id": id, "nonce": nonce, "digest": digest.to_hex()});
            let Ok(response) = http.post(format!("{url}/pool/share")).bearer_auth(&session).json(&body).send().await
            else {
                break; // killed mid-request: not acknowledged
            };
            let Ok(answer) = response.json::<Value>().await else { break };
            if answer["accepted"] == true {
                acked.lock().unwrap().push((id.clone(), nonce));
            }
            if answer["accepted"] != true || answer["block_status"].is_string() {
                break;
            }
        }
    }
}

/// PPLNS as the issue states it, written here from the ledger alone: the
/// last WINDOW_FACTOR x difficulty units before and including the block's
/// share, the crossing share in part; fees floored; miners floored; dust to
/// the foundation.
fn independent_split(
    ledger: &BTreeMap<u64, (String, u64)>,
    position: u64,
    difficulty: u64,
    reward: u64,
) -> BTreeMap<String, u64> {
    let target = u128::from(difficulty) * u128::from(WINDOW_FACTOR);
    let mut weights: BTreeMap<String, u128> = BTreeMap::new();
    let mut sum = 0u128;
    for (_, (wallet, share_difficulty)) in ledger.range(..=position).rev() {
        if sum >= target {
            break;
        }
        let counted = u128::from(*share_difficulty).min(target - sum);
        sum += counted;
        *weights.entry(wallet.clone()).or_default() += counted;
    }
    let foundation = reward / 100;
    let pool_fee = reward * POOL_FEE_BPS / 10_000;
    let miners = reward - foundation - pool_fee;
    let mut split = BTreeMap::new();
    let mut paid = 0;
    for (wallet, weight) in &weights {
        let amount = (u128::from(miners) * weight / sum) as u64;
        paid += amount;
        *split.entry(wallet.clone()).or_default() += amount;
    }
    *split.entry("vision-foundation".to_string()).or_default() += foundation + (miners - paid);
    *split.entry("land1host".to_string()).or_default() += pool_fee;
    split.retain(|_, amount| *amount > 0);
    split
}

fn stop_gracefully(child: &mut Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no clean stop");
        std::thread::sleep(Duration::from_millis(20));
    }
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
        (0..SIM_WORKERS).map(|n| tokio::spawn(sim_worker(n, url.clone(), acked.clone(), stop.clone()))).collect();
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

    // 1. Every acknowledged share is in the ledger exactly once (the
    // window covers the run: nothing was compacted).
    let ledger_rows = store.shares_from(0, usize::MAX).await.unwrap();
    assert_eq!(store.ledger_floor().await.unwrap(), 0, "nothing compacted: raise WINDOW_FACTOR");
    let mut in_ledger: HashMap<(String, u64), usize> = HashMap::new();
    for (_, share) in &ledger_rows {
        *in_ledger.entry((share.job_id.clone(), share.nonce)).or_default() += 1;
    }
    assert!(in_ledger.values().all(|n| *n == 1), "a share credited twice");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50, "enough load: {} acknowledged shares", acked.len());
    for share in &acked {
        assert_eq!(in_ledger.get(share), Some(&1), "an acknowledged share is missing: {share:?}");
    }

    // 2. Every chain block paying the pool has its record.
    let found = store.found_blocks().await.unwrap();
    let recorded: HashSet<(u64, String)> = found.iter().map(|b| (b.height, b.hash.clone())).collect();
    let tip = chain.tip().unwrap().expect("blocks were found").height;
    let mut pool_blocks = 0;
    for height in 0..=tip {
        let block = chain.block(height).unwrap();
        if block.miner == "vision-pool" {
            pool_blocks += 1;
            assert!(recorded.contains(&(height, block.hash.clone())), "chain block {height} has no record");
        }
    }
    assert!(pool_blocks >= 3, "blocks were found under the kill loop");

    // 3. Splits, books and the chain.
    let ledger: BTreeMap<u64, (String, u64)> =
        ledger_rows.iter().map(|(p, s)| (*p, (s.wallet_address.clone(), s.share_difficulty))).collect();
    let by_key: HashMap<(u64, String), _> = found.iter().map(|b| ((b.height, b.hash.clone()), b)).collect();
    let mut owed: BTreeMap<String, u64> = BTreeMap::new();
    for record in store.block_rewards().await.unwrap() {
        let (Some(credit), true) = (&record.credit, record.status != RewardStatus::Orphaned) else { continue };
        let block = by_key[&(record.height, record.hash.clone())];
        assert_eq!(block.status, BlockStatus::Accepted);
        let expected = independent_split(
            &ledger,
            block.share_position.unwrap(),
            block.submission.header.difficulty,
            chain.block(record.height).unwrap().reward,
        );
        let mut actual: BTreeMap<String, u64> = BTreeMap::new();
        for entry in &credit.split.entries {
            *actual.entry(entry.recipient.clone()).or_default() += entry.amount;
        }
        assert_eq!(actual, expected, "block {}: the pool's split against the independent one", record.height);
        for (wallet, amount) in actual {
            *owed.entry(wallet).or_default() += amount;
        }
    }
    for (wallet, amount) in &owed {
        let b = store.balance(wallet).await.unwrap().unwrap_or_default();
        assert_eq!(b.immature + b.confirmed + b.sending + b.paid + b.set_aside, *amount, "{wallet}: {b:?}");
        assert_eq!(
            chain.balance(wallet).unwrap().spendable,
            b.paid,
            "{wallet}: the chain paid exactly what the pool says"
        );
    }
    assert!(owed.keys().any(|w| w.starts_with("land1sim")), "the simulated workers earned");
    let credited = store.block_rewards().await.unwrap().iter().filter(|r| r.credit.is_some()).count();
    let paid: u64 = {
        let mut paid = 0;
        for wallet in owed.keys() {
            paid += store.balance(wallet).await.unwrap().unwrap_or_default().paid;
        }
        paid
    };
    eprintln!(
        "kill loop: {KILLS} kills, {} acknowledged shares, ledger {}, {pool_blocks} pool blocks, {credited} credited, {paid} base units paid",
        acked.len(),
        ledger_rows.len()
    );
    drop((store, chain, db));
    let _ = std::fs::remove_dir_all(&root);
}
