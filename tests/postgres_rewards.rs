//! Blocks and payouts with three real coordinators on one PostgreSQL
//! database (a throwaway server this test starts): simulated workers send
//! each request to the next coordinator in turn, blocks are found through
//! all three, and all three run the rewards round (crediting, confirming,
//! paying) at once. Afterwards, from the database and the chain: each block
//! credited once with the split an independent PPLNS computation gives,
//! balances adding up, and the chain holding exactly what the pool says it
//! paid (no payout sent twice). The database is also stopped mid-run: the
//! pool answers 503 meanwhile and loses nothing it acknowledged.

#[path = "../coordinator/tests/support/throwaway_postgres.rs"]
mod throwaway_postgres;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use throwaway_postgres::ThrowawayPostgres;
use vision_coordinator::chain::devnet::{DevnetChain, DevnetConfig};
use vision_coordinator::storage::{DatabaseTls, PgStore};
use vision_suite::pool_books::{audit_books, sim_worker, Acked, SplitRules};
use vision_suite::{fresh_dir, get_json, start_coordinator, stop_gracefully, Processes, QUICK_REWARDS};

const NODE: &str = "node-secret-for-tests";
const WINDOW_FACTOR: u64 = 50;
const SIM_WORKERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_credit_each_block_once_and_pay_once() {
    let server = ThrowawayPostgres::start();
    let url = server.database("rewards");
    let factor = WINDOW_FACTOR.to_string();
    let common: Vec<&str> = QUICK_REWARDS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--devnet-difficulty"))
        .chain(["--devnet-difficulty=200", "--registrations-per-sec=1000", "--pplns-window-factor", &factor])
        .chain(["--database-url", &url])
        .collect();
    let chain_dir = fresh_dir("pg-rewards-a");
    let mut args = common.clone();
    args.extend(["--node-token", NODE]);
    let (child, first) = start_coordinator(&chain_dir, &args, &[]);
    let mut processes = Processes(vec![child]);
    let mut urls = vec![first.clone()];
    for label in ["pg-rewards-b", "pg-rewards-c"] {
        let mut args = common.clone();
        args.extend(["--upstream", &first, "--upstream-token", NODE]);
        let (child, url) = start_coordinator(&fresh_dir(label), &args, &[]);
        processes.0.push(child);
        urls.push(url);
    }

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> =
        (0..SIM_WORKERS).map(|n| tokio::spawn(sim_worker(n, urls.clone(), acked.clone(), stop.clone()))).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Mine until blocks are found and some are paid out.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let payouts = get_json(&http, &format!("{}/pool/payouts", urls[1]), None).await;
        let paid = payouts.as_array().is_some_and(|p| p.iter().any(|b| b["status"] == "paid"));
        let blocks = get_json(&http, &format!("{}/pool/blocks", urls[2]), None).await;
        let found = blocks.as_array().map_or(0, Vec::len);
        if paid && found >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no payouts within 2 minutes: {found} blocks, {payouts}");
        if std::env::var_os("VISION_TEST_PROGRESS").is_some() {
            let acked = acked.lock().unwrap().len();
            let tip = get_json(&http, &format!("{}/node/tip", urls[0]), None).await;
            eprintln!("{acked} shares, {found} blocks, paid: {paid}, tip {tip}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The database goes away: shares are answered 503, none acknowledged;
    // it comes back: the pool serves again by itself.
    let register_late = || {
        http.post(format!("{}/pool/register", urls[1]))
            .json(&json!({"worker_id": "late", "wallet_address": "land1late"}))
            .send()
    };
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outage_register = register_late().await.unwrap();
    assert_eq!(outage_register.status(), 503, "a write while the database is down");
    let answer: Value = outage_register.json().await.unwrap();
    assert_eq!(answer["error"], "storage_unavailable", "{answer}");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let again = register_late().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the pool did not recover: {}", again.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Mine on a little after the outage.
    let acked_then = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < acked_then + 20 {
        assert!(Instant::now() < deadline, "no shares acknowledged after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    // Let the last rounds settle what they started, then stop cleanly (the
    // chain's host last: the others pay through it).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for child in processes.0.iter_mut().rev() {
        stop_gracefully(child);
    }

    let store = PgStore::connect(&url, 2, &DatabaseTls::default()).await.expect("the shared database");
    let db = sled::open(chain_dir.join("db")).unwrap();
    let chain = DevnetChain::open(&db, DevnetConfig::default()).unwrap();
    let acked = acked.lock().unwrap().clone();
    let rules = SplitRules { window_factor: WINDOW_FACTOR, pool_fee_bps: 100, pool_fee_address: "land1host".into() };
    let audit = audit_books(&store, &chain, &acked, "vision-pool", &rules).await;
    assert!(audit.credited_blocks >= 2, "blocks were credited: {audit:?}");
    assert!(audit.paid > 0, "payouts were sent: {audit:?}");
    eprintln!("three coordinators on PostgreSQL: {} acknowledged shares, {audit:?}", acked.len());
}

/// A coordinator on the shared database killed between recording a found
/// block and submitting it, and never restarted: another coordinator, up
/// all along (so not resuming it at its own start), takes the block up once
/// no coordinator has stepped on it for a minute, gets it onto the chain and
/// credits it. Left alone, the block would hold up every credit after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_left_by_a_stopped_coordinator_is_taken_up_by_another() {
    use std::os::unix::process::ExitStatusExt;
    let server = ThrowawayPostgres::start();
    let url = server.database("stalled");
    let node_args: Vec<&str> = QUICK_REWARDS.iter().copied().chain(["--node-token", NODE]).collect();
    let (node, node_url) = start_coordinator(&fresh_dir("stalled-node"), &node_args, &[]);
    let mut processes = Processes(vec![node]);
    let pool_args = pool_args(&url, &node_url, "--reward-poll-ms=100");
    let pool_args: Vec<&str> = pool_args.iter().map(String::as_str).collect();
    let (survivor, survivor_url) = start_coordinator(&fresh_dir("stalled-b"), &pool_args, &[]);
    processes.0.push(survivor);
    let (doomed, doomed_url) =
        start_coordinator(&fresh_dir("stalled-a"), &pool_args, &[("VISION_CRASH_AT", "block_recorded")]);
    processes.0.push(doomed);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let token = vision_suite::register(&http, &doomed_url, "rig", "land1stalled").await;
    assert!(!vision_suite::mine_until(&http, &doomed_url, &token, async || false).await);
    let status = processes.0.pop().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed at its crash point: {status:?}");
    let found = Instant::now();

    let deadline = found + Duration::from_secs(120);
    loop {
        let blocks = get_json(&http, &format!("{survivor_url}/pool/blocks"), None).await;
        let ours = blocks.as_array().into_iter().flatten().find(|b| b["height"] == 0).cloned();
        if let Some(ours) = ours.filter(|b| b["submission"] == "accepted" && b["reward"].as_u64() > Some(0)) {
            let on_chain = get_json(&http, &format!("{node_url}/node/block/0"), None).await;
            assert_eq!(on_chain["hash"], ours["hash"], "the chain holds the block that was found");
            assert!(found.elapsed() >= Duration::from_secs(55), "taken up only once stalled");
            break;
        }
        assert!(Instant::now() < deadline, "the stalled block was never taken up: {blocks}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for child in processes.0.iter_mut().rev() {
        stop_gracefully(child);
    }
}

/// The flags of a coordinator with quick rewards on `database`, whose node
/// is `upstream`, with rounds every `reward_poll` (`--reward-poll-ms=N`).
fn pool_args(database: &str, upstream: &str, reward_poll: &str) -> Vec<String> {
    QUICK_REWARDS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--reward-poll-ms"))
        .chain([reward_poll, "--database-url", database, "--upstream", upstream, "--upstream-token", NODE])
        .map(str::to_string)
        .collect()
}

/// A node on loopback that passes everything on to `node` except transfers,
/// which it answers 503: a coordinator behind it sees its payouts fail
/// (as behind a lagging node, or an upstream token without write rights).
async fn node_refusing_transfers(node: String) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let http = reqwest::Client::new();
    let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, node) = (http.clone(), node.clone());
        async move {
            if method == Method::POST && uri.path() == "/node/transfer" {
                let refusal = json!({"error": "unavailable", "message": "this node sends no transfers"});
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(refusal)).into_response();
            }
            let mut request = http.request(method, format!("{node}{uri}")).body(body);
            for name in ["authorization", "content-type"] {
                if let Some(value) = headers.get(name) {
                    request = request.header(name, value);
                }
            }
            let Ok(answer) = request.send().await else { return StatusCode::BAD_GATEWAY.into_response() };
            let status = answer.status().as_u16();
            let body = answer.bytes().await.unwrap_or_default();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [("content-type", "application/json")], body).into_response()
        }
    };
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(forward)).await });
    url
}

/// A coordinator whose node refuses its transfers leaves a batch it tried
/// `sending`; once its lease runs out, another coordinator on the database,
/// whose node pays, gets the batch first and sends it. (The lease used to
/// be renewed by each of the holder's rounds: nobody in the pool was paid
/// while it ran.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_whose_node_refuses_transfers_does_not_hold_the_payouts() {
    let server = ThrowawayPostgres::start();
    let url = server.database("refusing");
    let node_args: Vec<&str> = QUICK_REWARDS.iter().copied().chain(["--node-token", NODE]).collect();
    let (node, node_url) = start_coordinator(&fresh_dir("refusing-node"), &node_args, &[]);
    let mut processes = Processes(vec![node]);
    let refusing = node_refusing_transfers(node_url.clone()).await;
    let args = pool_args(&url, &refusing, "--reward-poll-ms=100");
    let (stuck, stuck_url) =
        start_coordinator(&fresh_dir("refusing-a"), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    processes.0.push(stuck);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let token = vision_suite::register(&http, &stuck_url, "rig", "land1waiting").await;
    let mut tried = None;
    let payouts = format!("{stuck_url}/pool/payouts");
    let found = vision_suite::mine_until(&http, &stuck_url, &token, async || {
        let listed = get_json(&http, &payouts, None).await;
        tried = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["status"] == "sending" && b["attempts"].as_u64() >= Some(1))
            .cloned();
        tried.is_some()
    })
    .await;
    assert!(found, "the coordinator stopped");
    let tried = tried.unwrap();

    // The holder's lease runs out (as 150 s after its claim), a moment
    // before the other coordinator starts: a holder that renewed its lease
    // would have the batch back by then.
    server.query(
        "refusing",
        "UPDATE pool_payouts SET lease_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1 WHERE sending",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let args = pool_args(&url, &node_url, "--reward-poll-ms=1000");
    let (paying, paying_url) =
        start_coordinator(&fresh_dir("refusing-b"), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    processes.0.push(paying);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = get_json(&http, &format!("{paying_url}/pool/payouts"), None).await;
        let batch = listed.as_array().into_iter().flatten().find(|b| b["id"] == tried["id"]).cloned();
        if batch.as_ref().is_some_and(|b| b["status"] == "paid") {
            break;
        }
        assert!(Instant::now() < deadline, "the batch is still held by the coordinator that cannot pay it: {batch:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for child in processes.0.iter_mut().rev() {
        stop_gracefully(child);
    }
}
