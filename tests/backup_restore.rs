//! The backup procedure of `docs/OPERATIONS.md`, done for real: stop a
//! `vision-coordinator` with SIGTERM, copy its data directory, carry on
//! mining, then restore the copy and check the pool is exactly as it was
//! when the backup was taken (ledger, blocks, balances, payouts, the
//! embedded chain) and serves again.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_suite::{fresh_dir, mine_until, start_coordinator, stop_gracefully, QUICK_REWARDS};

const WALLETS: [&str; 3] = ["land1alice", "land1host", "vision-foundation"];

fn start(data_dir: &Path) -> (Child, String) {
    start_coordinator(data_dir, QUICK_REWARDS, &[])
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.expect("GET").json().await.expect("JSON")
}

/// What must survive a backup and restore, read through the API.
async fn snapshot(http: &reqwest::Client, url: &str) -> Value {
    let mut balances = Vec::new();
    for wallet in WALLETS {
        balances.push(get(http, &format!("{url}/pool/balances/{wallet}")).await);
    }
    let blocks: Vec<Value> = get(http, &format!("{url}/pool/blocks"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!([b["height"], b["hash"], b["status"], b["reward"]]))
        .collect();
    let payouts: Vec<Value> = get(http, &format!("{url}/pool/payouts"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["id"], p["status"], p["outputs"]]))
        .collect();
    let metrics = get(http, &format!("{url}/pool/metrics")).await;
    json!({
        "balances": balances, "blocks": blocks, "payouts": payouts,
        "ledger_shares": metrics["ledger_shares"],
        "tip": get(http, &format!("{url}/node/tip")).await["hash"],
        "alice_on_chain": get(http, &format!("{url}/node/balance/land1alice")).await["spendable"],
    })
}

/// SIGTERM, then the exit: a clean stop flushes everything.
fn stop(mut child: Child) {
    stop_gracefully(&mut child);
    assert!(child.wait().unwrap().success(), "a clean stop exits 0");
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// The pool's snapshot once it stays the same over a second of rewards
/// rounds, every block on the chain credited: nothing mid-way.
async fn settled_snapshot(http: &reqwest::Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = snapshot(http, url).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = snapshot(http, url).await;
        let credited =
            now["blocks"].as_array().unwrap().iter().all(|b| b[3] != 0 || b[2] == "rejected" || b[2] == "orphaned");
        if now == last && credited {
            return now;
        }
        assert!(Instant::now() < deadline, "the pool never settled: {now}");
        last = now;
    }
}

/// Mines until payouts are made and every confirmed balance is paid.
async fn mine_and_settle(http: &reqwest::Client, url: &str, token: &str, tip_at_least: u64) {
    let base = url.to_string();
    assert!(
        mine_until(http, url, token, async || {
            let tip = get(http, &format!("{base}/node/tip")).await["height"].as_u64().unwrap_or(0);
            let paid = get(http, &format!("{base}/pool/balances/land1alice")).await["paid"].as_u64().unwrap_or(0);
            tip >= tip_at_least && paid > 0
        })
        .await
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = get(http, &format!("{url}/pool/balances/land1alice")).await;
        if b["confirmed"] == 0 && b["sending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "payouts never settled: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_data_directory_restores_the_pool_exactly() {
    let root = fresh_dir("backup");
    let (live, backup) = (root.join("live"), root.join("backup"));
    let http = reqwest::Client::new();

    let (child, url) = start(&live);
    let registration = json!({"worker_id": "rig", "wallet_address": "land1alice"});
    let registered = get_token(&http, &url, &registration).await;
    mine_and_settle(&http, &url, &registered, 4).await;
    let before = settled_snapshot(&http, &url).await;
    stop(child);
    copy_dir(&live, &backup);

    // Life goes on after the backup: more blocks, more payouts.
    let (child, url) = start(&live);
    mine_and_settle(&http, &url, &registered, 8).await;
    let later = settled_snapshot(&http, &url).await;
    assert_ne!(later, before, "the pool moved on after the backup");
    stop(child);

    // Restore: the backup replaces the live directory.
    copy_dir(&backup, &live);
    let (child, url) = start(&live);
    assert_eq!(settled_snapshot(&http, &url).await, before, "the restored pool is the pool as backed up");
    // And it serves: the session credential from before still works.
    let base = url.clone();
    let tip = before["blocks"][0][0].as_u64().unwrap();
    assert!(
        mine_until(&http, &url, &registered, async || {
            get(&http, &format!("{base}/node/tip")).await["height"].as_u64().unwrap_or(0) > tip
        })
        .await
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&root);
}

async fn get_token(http: &reqwest::Client, url: &str, registration: &Value) -> String {
    let answer: Value =
        http.post(format!("{url}/pool/register")).json(registration).send().await.unwrap().json().await.unwrap();
    answer["worker_token"].as_str().unwrap().to_string()
}
