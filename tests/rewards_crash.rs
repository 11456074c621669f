//! `kill -9` on the money path: a real `vision-coordinator` process kills
//! itself with SIGKILL at injected points (while crediting a block, after a
//! payout batch is written `sending`, after the chain made the transfer but
//! before the batch is `paid`) and is restarted on the same data directory.
//! Then every balance and the chain's ledger are checked against an
//! independent computation from the chain's own blocks: nobody is paid
//! twice, no credit is lost.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use vision_suite::{exit_within, fresh_dir, mine_until, register, start_coordinator, QUICK_REWARDS};

const MINER: &str = "land1alice";
const HOST: &str = "land1host";
const FOUNDATION: &str = "vision-foundation";
const POOL: &str = "vision-pool";

/// Starts the coordinator; with `crash_at`, it kills itself there.
fn start(data_dir: &Path, crash_at: Option<&str>) -> (Child, String) {
    let args: Vec<&str> = QUICK_REWARDS.iter().copied().chain(["--pool-fee-bps=200"]).collect();
    let env: Vec<(&str, &str)> = crash_at.map(|point| ("VISION_CRASH_AT", point)).into_iter().collect();
    start_coordinator(data_dir, &args, &env)
}

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Waits for the process to die by SIGKILL at its crash point.
fn expect_sigkill(child: &mut Child, point: &str) {
    let status = exit_within(child, Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("{point}: the crash point was never reached"));
    assert_eq!(status.signal(), Some(9), "{point}: killed by SIGKILL, got {status:?}");
}

/// Block `height` was split over the ledger's shares (each of difficulty
/// one) up to its own, not over the finder's alone (which weighs the
/// network difficulty).
async fn assert_a_window_of_shares(http: &reqwest::Client, url: &str, height: u64, what: &str) {
    let detail = get(http, &format!("{url}/pool/blocks/{height}")).await.unwrap();
    let window = &detail["window"];
    assert!(n(&window["shares"]) >= 1, "{what}: {detail}");
    assert_eq!(window["difficulty_sum"], window["shares"], "{what}: a window of shares: {detail}");
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_money_point_pays_nobody_twice_and_loses_no_credit() {
    let data_dir = fresh_dir("rewards-crash");
    let http = reqwest::Client::new();

    // 1. Killed while crediting the first block.
    let (mut child, url) = start(&data_dir, Some("credit_block"));
    let token = register(&http, &url, "rig", MINER).await;
    assert!(!mine_until(&http, &url, &token, async || false).await);
    expect_sigkill(&mut child, "credit_block");

    // 2. Killed with a payout batch written `sending`, before the chain is asked.
    let (mut child, url) = start(&data_dir, Some("after_sending"));
    assert!(!mine_until(&http, &url, &token, async || false).await);
    expect_sigkill(&mut child, "after_sending");

    // 3. Killed after the chain made the transfer, before `paid` is written
    //    (reconciling the batch left by 2 sends it, and dies there).
    let (mut child, url) = start(&data_dir, Some("after_transfer"));
    mine_until(&http, &url, &token, async || false).await;
    expect_sigkill(&mut child, "after_transfer");

    // 4. A clean run: reconciles, mines a few more blocks, pays.
    let (mut child, url) = start(&data_dir, None);
    let base = url.clone();
    let mined = mine_until(&http, &url, &token, async || {
        let tip = get(&http, &format!("{base}/node/tip")).await.map_or(0, |t| n(&t["height"]));
        let paid = get(&http, &format!("{base}/pool/balances/{MINER}")).await.map_or(0, |b| n(&b["paid"]));
        tip >= 8 && paid > 0
    })
    .await;
    assert!(mined, "the clean run stays up");
    // Mining stopped: every confirmed block gets paid, then nothing moves.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut settled = true;
        for wallet in [MINER, HOST, FOUNDATION] {
            let b = get(&http, &format!("{url}/pool/balances/{wallet}")).await.unwrap();
            settled &= n(&b["confirmed"]) == 0 && n(&b["sending"]) == 0;
        }
        let blocks = get(&http, &format!("{url}/pool/blocks")).await.unwrap();
        let tip = n(&get(&http, &format!("{url}/node/tip")).await.unwrap()["height"]);
        // Every block with its confirmations is confirmed (credited, payable);
        // one the chain refused (a block resumed after a crash can lose its
        // height to a newer one) credits nothing.
        settled &= blocks.as_array().unwrap().iter().filter(|b| b["status"] != "rejected").all(|b| {
            let credited = n(&b["reward"]) > 0;
            credited && (b["status"] != "pending" || tip + 1 - n(&b["height"]) < 2)
        });
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "payouts never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The independent computation: from the chain's blocks alone. A lone
    // miner's share of each block is the reward less 1% and 2%.
    let tip = n(&get(&http, &format!("{url}/node/tip")).await.unwrap()["height"]);
    let (mut all, mut confirmed) = ([0u64; 3], [0u64; 3]);
    let mut pool_blocks = 0;
    for height in 0..=tip {
        let block = get(&http, &format!("{url}/node/block/{height}")).await.unwrap();
        if block["miner"] != POOL {
            continue;
        }
        pool_blocks += 1;
        let reward = n(&block["reward"]);
        let parts = [reward - reward / 100 - reward * 200 / 10_000, reward * 200 / 10_000, reward / 100];
        for i in 0..3 {
            all[i] += parts[i];
            if tip + 1 - height >= 2 {
                confirmed[i] += parts[i];
            }
        }
    }
    assert!(pool_blocks >= 5, "enough blocks to have paid several times");
    for (i, wallet) in [MINER, HOST, FOUNDATION].into_iter().enumerate() {
        let b = get(&http, &format!("{url}/pool/balances/{wallet}")).await.unwrap();
        let held: u64 = ["immature", "confirmed", "sending", "paid", "set_aside"].iter().map(|k| n(&b[*k])).sum();
        assert_eq!(held, all[i], "{wallet}: every block's credit, once: {b}");
        assert_eq!(n(&b["paid"]), confirmed[i], "{wallet}: every confirmed credit paid, once: {b}");
        let on_chain = get(&http, &format!("{url}/node/balance/{wallet}")).await.unwrap();
        assert_eq!(n(&on_chain["spendable"]), confirmed[i], "{wallet}: the chain paid it exactly once: {on_chain}");
    }
    let payouts = get(&http, &format!("{url}/pool/payouts")).await.unwrap();
    assert!(payouts.as_array().unwrap().iter().all(|p| p["status"] == "paid"), "{payouts}");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `kill -9` on a found block's way to the chain: after its record is
/// written but before its share is appended, and after its share is durable
/// but before the chain is asked. The restarted coordinator, with nobody
/// mining, gets the block onto the chain itself and credits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_finding_a_block_and_submitting_it_loses_no_block() {
    let data_dir = fresh_dir("block-crash");
    let http = reqwest::Client::new();
    let mut token = None;
    for point in ["block_recorded", "block_share_appended", "block_share_noted"] {
        let (mut child, url) = start(&data_dir, Some(point));
        if token.is_none() {
            token = Some(register(&http, &url, "rig", MINER).await);
        }
        let token = token.as_deref().unwrap();
        // The block mined next (an empty chain answers no tip, and starts at 0).
        let height =
            get(&http, &format!("{url}/node/tip")).await.and_then(|t| t["height"].as_u64()).map_or(0, |h| h + 1);
        assert!(!mine_until(&http, &url, token, async || false).await);
        expect_sigkill(&mut child, point);

        let (mut child, url) = start(&data_dir, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let blocks = get(&http, &format!("{url}/pool/blocks")).await.unwrap_or_default();
            let ours = blocks.as_array().into_iter().flatten().find(|b| b["height"] == height).cloned();
            let on_chain = get(&http, &format!("{url}/node/block/{height}")).await;
            if let (Some(ours), Some(on_chain)) = (ours, on_chain) {
                if ours["submission"] == "accepted" && n(&ours["reward"]) > 0 {
                    assert_eq!(on_chain["miner"], POOL, "{point}: {on_chain}");
                    assert_eq!(on_chain["hash"], ours["hash"], "{point}: the chain holds the block we found");
                    assert_eq!(ours["finder_wallet"], MINER, "{point}: {ours}");
                    assert_a_window_of_shares(&http, &url, height, point).await;
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{point}: the found block never reached the chain");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `kill -9` after a found block is recorded, before its share is appended,
/// on a coordinator whose node is another process; it restarts while that
/// node is down. The block's share must still end its reward window once
/// the node is back (not the finder's window alone, settled while the tip
/// was unknown), and the block reach the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_resumed_while_the_node_is_down_still_ends_its_window_at_its_share() {
    const NODE: &str = "node-secret-for-tests";
    let http = reqwest::Client::new();
    let node_dir = fresh_dir("resume-node");
    let node_bind = format!("127.0.0.1:{}", vision_suite::free_port());
    let node_args: Vec<&str> =
        QUICK_REWARDS.iter().copied().chain(["--node-token", NODE, "--bind", &node_bind]).collect();
    let (mut node, node_url) = start_coordinator(&node_dir, &node_args, &[]);
    let pool_dir = fresh_dir("resume-pool");
    let pool_args: Vec<&str> =
        QUICK_REWARDS.iter().copied().chain(["--upstream", &node_url, "--upstream-token", NODE]).collect();
    let (mut pool, url) = start_coordinator(&pool_dir, &pool_args, &[("VISION_CRASH_AT", "block_recorded")]);
    let token = register(&http, &url, "rig", MINER).await;
    assert!(!mine_until(&http, &url, &token, async || false).await);
    expect_sigkill(&mut pool, "block_recorded");

    node.kill().unwrap();
    node.wait().unwrap();
    let (mut pool, url) = start_coordinator(&pool_dir, &pool_args, &[]);
    // Serving: the block's resumption has looked at the ledger (before the
    // server takes requests), with the tip unknown.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&http, &format!("{url}/pool/blocks")).await.is_none() {
        assert!(Instant::now() < deadline, "the restarted coordinator never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut node, _) = start_coordinator(&node_dir, &node_args, &[]);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let blocks = get(&http, &format!("{url}/pool/blocks")).await.unwrap_or_default();
        let ours = blocks.as_array().into_iter().flatten().find(|b| b["height"] == 0).cloned();
        if let Some(ours) = ours.filter(|b| b["submission"] == "accepted" && n(&b["reward"]) > 0) {
            let on_chain = get(&http, &format!("{node_url}/node/block/0")).await.unwrap();
            assert_eq!(on_chain["hash"], ours["hash"], "the chain holds the block we found");
            assert_a_window_of_shares(&http, &url, 0, "resumed while the node was down").await;
            break;
        }
        assert!(Instant::now() < deadline, "the found block was never credited: {blocks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for child in [&mut pool, &mut node] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
