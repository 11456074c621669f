//! Rewards end to end on a real coordinator (loopback HTTP, real sled, the
//! embedded devnet with its reorganisation and refused-payee hooks): blocks
//! mature or orphan, splits add up, balances move, payouts land on the chain
//! exactly once, and a payee the chain refuses is set aside.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, settings, TestPool};
use vision_coordinator::config::CoordinatorArgs;

const FOUNDATION: &str = "vision-foundation";
const HOST: &str = "land1host";

/// Small blocks, quick maturity, every confirmed balance paid.
fn reward_settings(label: &str) -> CoordinatorArgs {
    CoordinatorArgs {
        devnet_difficulty: Some(12),
        block_time: Some(2),
        confirmations: Some(3),
        coinbase_maturity: Some(1),
        payout_threshold: Some(1),
        reward_poll_ms: Some(100),
        pool_fee_bps: Some(200),
        pool_fee_address: Some(HOST.into()),
        shares_per_sec: Some(100_000.0),
        ..settings(label)
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

/// What a block's split gives `wallet` (`detail`: `/pool/blocks/{height}`).
fn part_of(detail: &Value, wallet: &str) -> u64 {
    let split = detail["split"].as_array().unwrap();
    split.iter().filter(|e| e["recipient"] == wallet).map(|e| u(&e["amount"])).sum()
}

async fn block(pool: &TestPool, height: u64) -> Value {
    pool.json(&format!("/pool/blocks/{height}")).await
}

async fn balance(pool: &TestPool, wallet: &str) -> Value {
    pool.json(&format!("/pool/balances/{wallet}")).await
}

async fn chain_spendable(pool: &TestPool, wallet: &str) -> u64 {
    u(&pool.json(&format!("/node/balance/{wallet}")).await["spendable"])
}

/// What `wallet` holds at the pool in every part, and its part of the
/// blocks credited and still on the chain.
async fn wallet_books(pool: &TestPool, wallet: &str) -> (u64, u64) {
    let mut credited = 0u64;
    for b in pool.json("/pool/blocks").await.as_array().unwrap() {
        if b["status"] == "pending" || b["status"] == "confirmed" {
            credited += part_of(&block(pool, u(&b["height"])).await, wallet);
        }
    }
    let b = balance(pool, wallet).await;
    (["immature", "confirmed", "sending", "paid", "set_aside"].iter().map(|k| u(&b[*k])).sum(), credited)
}

/// The books balance: what wallets hold at the pool, in every part, is
/// what the credited blocks still on the chain paid; and what the chain
/// shows each payee is exactly what the pool says it paid. (Rounds go on
/// meanwhile: the books are read again until a reading of the pool is the
/// same after the chain's as before it, for a few seconds at most.)
async fn check_books(pool: &TestPool, wallets: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let before = pool_books(pool, wallets).await;
        let mut on_chain = Vec::new();
        for wallet in wallets {
            on_chain.push(chain_spendable(pool, wallet).await);
        }
        let after = pool_books(pool, wallets).await;
        if before != after && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (credited, balances) = after;
        let mut held = 0u64;
        for ((wallet, b), chain) in wallets.iter().zip(&balances).zip(on_chain) {
            held += ["immature", "confirmed", "sending", "paid", "set_aside"].iter().map(|k| u(&b[*k])).sum::<u64>();
            assert_eq!(chain, u(&b["paid"]), "{wallet}: the chain holds what was paid: {b}");
        }
        assert_eq!(held, credited, "every credited unit is in some wallet's balance");
        return;
    }
}

/// What the credited blocks still on the chain paid (each block's split
/// checked to add up to its reward), and each wallet's balance.
async fn pool_books(pool: &TestPool, wallets: &[&str]) -> (u64, Vec<Value>) {
    let blocks = pool.json("/pool/blocks").await;
    let mut credited = 0u64;
    for b in blocks.as_array().unwrap() {
        if b["status"] == "pending" || b["status"] == "confirmed" {
            let detail = block(pool, u(&b["height"])).await;
            let split: u64 = detail["split"].as_array().unwrap().iter().map(|e| u(&e["amount"])).sum();
            assert_eq!(split, u(&detail["reward"]), "the split adds up to the reward: {detail}");
            credited += split;
        }
    }
    let mut balances = Vec::new();
    for wallet in wallets {
        balances.push(balance(pool, wallet).await);
    }
    (credited, balances)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_mature_split_and_are_paid_exactly_once() {
    let pool = TestPool::start(reward_settings("paid")).await;
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    pool.mine(&bob, Some(6)).await;
    let (first, _) = pool.mine_block(&alice).await;
    // Two blocks on top: the first has its 3 confirmations.
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    eventually("the first block to be confirmed", Duration::from_secs(20), async || {
        block(&pool, first).await["status"] == "confirmed"
    })
    .await;
    let detail = block(&pool, first).await;
    assert_eq!(detail["scheme"], "pplns");
    assert!(detail["confirmations"].as_u64().unwrap() >= 3);
    let reward = u(&detail["reward"]);
    assert_eq!(reward, 50_000_000_000, "the devnet's reward, read from the chain");
    let split: BTreeMap<String, (String, u64)> = detail["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["recipient"].as_str().unwrap().to_string(), (e["kind"].as_str().unwrap().to_string(), u(&e["amount"])))
        })
        .collect();
    assert_eq!(split[HOST], ("pool_fee".to_string(), reward / 50), "2% pool fee");
    assert_eq!(split[FOUNDATION].0, "foundation");
    assert!(split[FOUNDATION].1 >= reward / 100, "at least the 1% foundation fee");
    assert_eq!(split["land1alice"].0, "miner");
    let window = &detail["window"];
    assert!(u(&window["shares"]) >= 1 && u(&window["last"]) >= u(&window["first"]), "{window}");
    assert_eq!(detail["history"][0]["status"], "submitted");
    assert!(detail["history"].as_array().unwrap().iter().any(|c| c["status"] == "confirmed"));

    // "If a block were found now": both miners have a part of the window.
    eventually("estimated payouts", Duration::from_secs(10), async || {
        let stats = pool.json("/pool/stats").await;
        let workers = stats["workers"].as_array().unwrap().clone();
        workers.iter().any(|w| w["worker_id"] == "land1alice.rig-a" && u(&w["estimated_payout"]) > 0)
    })
    .await;
    // Every confirmed balance is paid, the chain agrees, nothing is lost.
    let wallets = ["land1alice", "land1bob", HOST, FOUNDATION];
    eventually("the confirmed balances to be paid", Duration::from_secs(20), async || {
        let b = balance(&pool, "land1alice").await;
        u(&b["paid"]) > 0 && u(&b["confirmed"]) == 0 && u(&b["sending"]) == 0
    })
    .await;
    check_books(&pool, &wallets).await;
    let payouts = pool.json("/pool/payouts").await;
    let payouts = payouts.as_array().unwrap();
    assert!(payouts.iter().all(|p| p["status"] == "paid"), "{payouts:?}");
    let keys: HashSet<&str> = payouts.iter().map(|p| p["idempotency_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), payouts.len(), "one key per batch");
    let alices = pool.json("/pool/payouts?wallet=land1alice").await;
    assert!(!alices.as_array().unwrap().is_empty());
    assert!(alices.as_array().unwrap().iter().all(|p| p["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["address"] == "land1alice")));

    // A restart pays nobody again.
    let paid_before = balance(&pool, "land1alice").await["paid"].clone();
    let settings = CoordinatorArgs { data_dir: Some(pool.data_dir.clone()), ..reward_settings("paid") };
    pool.stop().await;
    let pool = TestPool::start(settings).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(balance(&pool, "land1alice").await["paid"], paid_before);
    assert_eq!(pool.json("/pool/payouts").await.as_array().unwrap().len(), payouts.len());
    check_books(&pool, &wallets).await;

    // Bad input is a clear 4xx.
    assert_eq!(pool.get("/pool/blocks/abc").await.status(), 400);
    assert_eq!(pool.get("/pool/blocks/999999").await.status(), 404);
    assert_eq!(pool.get("/pool/balances/bad%20wallet").await.status(), 400);
    assert_eq!(pool.get("/pool/payouts?wallet=a/b").await.status(), 400);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_take_their_credits_back_before_and_after_confirmation() {
    let pool = TestPool::start(CoordinatorArgs {
        payout_threshold: Some(u64::MAX / 2), // nothing is paid in this test
        ..reward_settings("orphans")
    })
    .await;
    let devnet = pool.devnet.clone().unwrap();
    let alice = pool.register("rig-a", "land1alice").await;
    // Orphaned while pending: the immature credit goes.
    let (x, _) = pool.mine_block(&alice).await;
    eventually("the block to be credited", Duration::from_secs(10), async || {
        u(&balance(&pool, "land1alice").await["immature"]) > 0
    })
    .await;
    devnet.reorganise(1).unwrap();
    eventually("the block to be orphaned", Duration::from_secs(10), async || {
        block(&pool, x).await["status"] == "orphaned"
    })
    .await;
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), 0);
    let orphan = block(&pool, x).await;
    assert!(orphan["reason"].as_str().unwrap().contains("now holds block"), "{orphan}");
    // The reorganisation undone: the block is back and credited again, once.
    devnet.restore_reorganised().unwrap();
    eventually("the block to be credited again", Duration::from_secs(10), async || {
        block(&pool, x).await["status"] == "pending" && u(&balance(&pool, "land1alice").await["immature"]) > 0
    })
    .await;
    let back = block(&pool, x).await;
    assert!(back["history"].as_array().unwrap().iter().any(|c| c["status"] == "returned"), "{back}");
    let miner_part = part_of(&back, "land1alice");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), miner_part, "credited once");
    check_books(&pool, &["land1alice", HOST, FOUNDATION]).await;
    devnet.reorganise(1).unwrap();
    eventually("the block to be orphaned again", Duration::from_secs(10), async || {
        block(&pool, x).await["status"] == "orphaned"
    })
    .await;
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), 0);

    // Orphaned after confirmation, not yet paid: the confirmed credit goes.
    let (y, _) = pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    eventually("the block to be confirmed", Duration::from_secs(20), async || {
        block(&pool, y).await["status"] == "confirmed"
    })
    .await;
    assert!(u(&balance(&pool, "land1alice").await["confirmed"]) > 0);
    devnet.reorganise(3).unwrap();
    eventually("the confirmed block to be orphaned", Duration::from_secs(10), async || {
        block(&pool, y).await["status"] == "orphaned" && block(&pool, y + 2).await["status"] == "orphaned"
    })
    .await;
    let b = balance(&pool, "land1alice").await;
    assert_eq!((u(&b["immature"]), u(&b["confirmed"])), (0, 0), "{b}");
    assert!(block(&pool, y).await["operator_flag"].is_null());
    check_books(&pool, &["land1alice", HOST, FOUNDATION]).await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_already_paid_out_is_flagged_for_the_operator() {
    let pool = TestPool::start(reward_settings("paidorphan")).await;
    let devnet = pool.devnet.clone().unwrap();
    let alice = pool.register("rig-a", "land1alice").await;
    let (x, _) = pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    eventually("the block to be paid", Duration::from_secs(20), async || {
        u(&balance(&pool, "land1alice").await["paid"]) > 0
    })
    .await;
    devnet.reorganise(3).unwrap();
    eventually("the paid block to be orphaned", Duration::from_secs(10), async || {
        block(&pool, x).await["status"] == "orphaned"
    })
    .await;
    let detail = block(&pool, x).await;
    let flag = detail["operator_flag"].as_str().expect("flagged");
    assert!(flag.contains("land1alice"), "{flag}");
    let metrics = pool.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("vision_pool_orphans_after_payout_total 1"), "{metrics}");
    pool.stop().await;
}

/// Money set aside (the chain refused its payee) is not paid: an orphan
/// takes its credit back from there, so the operator's retry cannot pay a
/// reward the pool no longer has; only what was paid is flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_takes_back_what_waits_set_aside() {
    let pool =
        TestPool::start(CoordinatorArgs { pplns_window_factor: Some(100.0), ..reward_settings("setasideorphan") })
            .await;
    let devnet = pool.devnet.clone().unwrap();
    devnet.refuse_payments_to("land1bob");
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    pool.mine(&bob, Some(6)).await;
    let (x, _) = pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    eventually("bob's payout to be set aside", Duration::from_secs(20), async || {
        u(&balance(&pool, "land1bob").await["set_aside"]) > 0 && u(&balance(&pool, "land1alice").await["paid"]) > 0
    })
    .await;
    devnet.reorganise(3).unwrap();
    eventually("the block to be orphaned", Duration::from_secs(10), async || {
        block(&pool, x).await["status"] == "orphaned"
    })
    .await;
    // Bob was paid nothing: all he holds is set aside (or waits), and it is
    // exactly his part of the blocks still credited.
    eventually("bob's books to balance", Duration::from_secs(10), async || {
        let (held, credited) = wallet_books(&pool, "land1bob").await;
        held == credited
    })
    .await;
    let b = balance(&pool, "land1bob").await;
    assert_eq!(u(&b["paid"]), 0, "{b}");
    let flag = block(&pool, x).await["operator_flag"].as_str().expect("alice was paid: flagged").to_string();
    assert!(flag.contains("land1alice") && !flag.contains("land1bob"), "{flag}");
    // What is still set aside is what bob's set-aside payouts hold.
    let payouts = pool.json("/pool/payouts?wallet=land1bob").await;
    let waiting: u64 =
        payouts.as_array().unwrap().iter().filter(|p| p["status"] == "set_aside").map(|p| u(&p["total"])).sum();
    assert_eq!(waiting, u(&b["set_aside"]), "{payouts} {b}");
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_the_chain_refuses_is_set_aside_and_the_others_are_paid() {
    let pool = TestPool::start(CoordinatorArgs {
        admin_token: Some("admin-secret-for-tests".into()),
        // A window wide enough that bob's shares are in every block's.
        pplns_window_factor: Some(100.0),
        ..reward_settings("refused")
    })
    .await;
    pool.devnet.as_ref().unwrap().refuse_payments_to("land1bob");
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    pool.mine(&bob, Some(6)).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    eventually("bob's payout to be set aside", Duration::from_secs(20), async || {
        u(&balance(&pool, "land1bob").await["set_aside"]) > 0 && u(&balance(&pool, "land1alice").await["paid"]) > 0
    })
    .await;
    let payouts = pool.json("/pool/payouts?wallet=land1bob").await;
    let set_aside: Vec<&Value> = payouts.as_array().unwrap().iter().filter(|p| p["status"] == "set_aside").collect();
    assert_eq!(set_aside.len(), 1, "{payouts}");
    assert!(set_aside[0]["reason"].as_str().unwrap().contains("refused_payee"), "{payouts}");
    assert_eq!(set_aside[0]["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(chain_spendable(&pool, "land1bob").await, 0);
    let b = balance(&pool, "land1bob").await;
    assert_eq!(u(&b["paid"]), 0);
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;

    // The operator fixes it and retries: only with the admin token.
    let id = set_aside[0]["id"].as_u64().unwrap();
    let retry = format!("/pool/payouts/{id}/retry");
    let empty = serde_json::json!({});
    assert_eq!(pool.post(&retry, &empty).await.status(), 401);
    assert_eq!(pool.post_auth(&retry, "wrong", &empty).await.status(), 403);
    assert_eq!(pool.post_auth("/pool/payouts/1/retry", "admin-secret-for-tests", &empty).await.status(), 404);
    // Refused by the chain: nothing was paid, so it cannot be recorded paid.
    let paid = format!("/pool/payouts/{id}/paid");
    let paid = pool.post_auth(&paid, "admin-secret-for-tests", &json!({"transfer_id": "x"})).await;
    assert_eq!(paid.status(), 409);
    assert_eq!(paid.json::<Value>().await.unwrap()["error"], "not_key_conflict");
    pool.devnet.as_ref().unwrap().allow_payments_to("land1bob");
    assert_eq!(pool.post_auth(&retry, "admin-secret-for-tests", &empty).await.status(), 200);
    assert_eq!(pool.post_auth(&retry, "admin-secret-for-tests", &empty).await.status(), 409, "no longer set aside");
    eventually("bob to be paid", Duration::from_secs(10), async || {
        let b = balance(&pool, "land1bob").await;
        u(&b["paid"]) > 0 && u(&b["set_aside"]) == 0 && u(&b["sending"]) == 0
    })
    .await;
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    pool.stop().await;
}

/// A trigger handing every claim's lease to another holder as it is
/// written: a takeover by another coordinator, in the real database.
const TAKE_OVER: &str = "CREATE FUNCTION take_over() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN NEW.lease_holder := 'another-coordinator'; RETURN NEW; END $$; \
     CREATE TRIGGER take_over BEFORE UPDATE ON pool_payouts FOR EACH ROW \
     WHEN (NEW.lease_holder IS DISTINCT FROM OLD.lease_holder) EXECUTE FUNCTION take_over();";

/// The lease's holder gone: the takeover undone, and its lease run out.
const HOLDER_GONE: &str = "DROP TRIGGER take_over ON pool_payouts; UPDATE pool_payouts SET lease_until = 0";

/// Batches whose lease another coordinator holds.
const TAKEN: &str = "SELECT count(*) FROM pool_payouts WHERE lease_holder = 'another-coordinator'";

/// A pool with `args` on database `db` of a throwaway PostgreSQL server,
/// every payout claim of which another coordinator takes over ([`TAKE_OVER`]).
async fn pool_whose_claims_are_taken_over(
    db: &str,
    args: CoordinatorArgs,
) -> (support::throwaway_postgres::ThrowawayPostgres, TestPool) {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let pool = TestPool::start(CoordinatorArgs { database_url: Some(server.database(db)), ..args }).await;
    server.query(db, TAKE_OVER);
    (server, pool)
}

/// Several coordinators on PostgreSQL: a payout sender whose lease on a
/// batch another coordinator has taken over (it stalled past its lease)
/// applies nothing it decided: here the chain refuses the batch (a payee it
/// refuses), and the stale sender must not split it under new keys, which
/// the new holder may be sending under the old. The takeover is a trigger
/// in the real database that hands every claim's lease to another holder
/// as the claim is written. Once that holder's lease runs out, the batch is
/// settled once: split, the refused payee set aside, the others paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_lease_was_taken_over_applies_nothing_it_decided() {
    let db = "taken_over";
    let args = CoordinatorArgs { pplns_window_factor: Some(100.0), ..reward_settings("taken-over") };
    let (server, pool) = pool_whose_claims_are_taken_over(db, args).await;
    pool.devnet.as_ref().unwrap().refuse_payments_to("land1bob");
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    pool.mine(&bob, Some(6)).await;
    for _ in 0..3 {
        pool.mine_block(&alice).await;
    }
    eventually("a batch claimed and taken over", Duration::from_secs(20), async || server.query(db, TAKEN) != "0")
        .await;
    // Rounds every 100 ms: the stale sender would have sent, been refused,
    // and decided a split.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let batches = server.query(db, "SELECT count(*), bool_and(sending) FROM pool_payouts");
    assert_eq!(batches, "1|t", "the stale sender split nothing: one batch, still sending");
    assert_eq!(u(&balance(&pool, "land1bob").await["set_aside"]), 0);

    // The other holder's lease runs out (it died): the batch is settled once.
    server.query(db, HOLDER_GONE);
    eventually("bob set aside and alice paid", Duration::from_secs(20), async || {
        u(&balance(&pool, "land1bob").await["set_aside"]) > 0 && u(&balance(&pool, "land1alice").await["paid"]) > 0
    })
    .await;
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    pool.stop().await;
}

/// A payout sender that stalled after its claim (a paused VM) while
/// another coordinator took the batch over sends nothing: it claims the
/// batch again just before the transfer. Here the chain would pay (no payee
/// refused), so a send would show on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_lease_was_taken_over_sends_nothing() {
    let db = "stalled_sender";
    let (server, pool) = pool_whose_claims_are_taken_over(db, reward_settings("stalled-sender")).await;
    let alice = pool.register("rig-a", "land1alice").await;
    for _ in 0..3 {
        pool.mine_block(&alice).await;
    }
    eventually("a batch claimed and taken over", Duration::from_secs(20), async || server.query(db, TAKEN) != "0")
        .await;
    // Rounds every 100 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(chain_spendable(&pool, "land1alice").await, 0, "sent by a holder whose lease was taken over");
    server.query(db, HOLDER_GONE);
    eventually("alice paid", Duration::from_secs(20), async || u(&balance(&pool, "land1alice").await["paid"]) > 0)
        .await;
    check_books(&pool, &["land1alice", HOST, FOUNDATION]).await;
    pool.stop().await;
}

/// A node whose receipt names other payees than the batch asked for is not
/// believed: the batch is set aside for the operator, and nothing is
/// marked paid on its word. The operator, having found the transfer on the
/// chain (this node did pay as asked), records the batch paid: once, with
/// the admin token, and the books then balance with the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_naming_other_payees_is_not_taken_as_payment() {
    let pool = TestPool::start(CoordinatorArgs {
        admin_token: Some("admin-secret-for-tests".into()),
        ..reward_settings("misreported")
    })
    .await;
    pool.devnet.as_ref().unwrap().misreport_transfers(true);
    let alice = pool.register("rig-a", "land1alice").await;
    for _ in 0..3 {
        pool.mine_block(&alice).await;
    }
    eventually("a payout to be set aside", Duration::from_secs(20), async || {
        pool.json("/pool/payouts").await.as_array().unwrap().iter().any(|p| p["status"] == "set_aside")
    })
    .await;
    let payouts = pool.json("/pool/payouts").await;
    for payout in payouts.as_array().unwrap() {
        assert_ne!(payout["status"], "paid", "paid on a receipt that named another payee: {payouts}");
        if payout["status"] == "set_aside" {
            let reason = payout["reason"].as_str().unwrap();
            assert!(reason.starts_with("key_conflict:") && reason.contains("misses 1"), "{reason}");
        }
    }
    let a = balance(&pool, "land1alice").await;
    assert_eq!(u(&a["paid"]), 0, "{a}");
    assert!(u(&a["set_aside"]) > 0, "{a}");

    pool.devnet.as_ref().unwrap().misreport_transfers(false);
    let set_aside: Vec<u64> =
        payouts.as_array().unwrap().iter().filter(|p| p["status"] == "set_aside").map(|p| u(&p["id"])).collect();
    assert_eq!(set_aside.len(), 1, "one batch, holding every payee back: {payouts}");
    // The transfer the chain holds under the batch's key, as its reason names it.
    let reason = payouts.as_array().unwrap().iter().find(|p| p["id"] == set_aside[0]).unwrap()["reason"].clone();
    let transfer_id = reason.as_str().unwrap().split("key (\"").nth(1).unwrap().split('"').next().unwrap();
    let (admin, found) = ("admin-secret-for-tests", json!({"transfer_id": transfer_id}));
    let paid = |id: u64| format!("/pool/payouts/{id}/paid");
    let refusal = async |id: u64, token: &str, body: &Value| {
        let answer = pool.post_auth(&paid(id), token, body).await;
        (answer.status().as_u16(), answer.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string())
    };
    assert_eq!(pool.post(&paid(set_aside[0]), &found).await.status(), 401);
    assert_eq!(refusal(set_aside[0], "wrong", &found).await.0, 403);
    for bad in [json!({"transfer_id": ""}), json!({"transfer_id": "x".repeat(129)})] {
        assert_eq!(refusal(set_aside[0], admin, &bad).await, (400, "bad_transfer_id".into()));
    }
    let elsewhere = json!({"transfer_id": "not-the-transfer-under-its-key"});
    assert_eq!(refusal(set_aside[0], admin, &elsewhere).await, (409, "transfer_not_under_key".into()));
    assert_eq!(refusal(999_999, admin, &found).await.0, 404);
    assert_eq!(pool.post_auth(&paid(set_aside[0]), admin, &found).await.status(), 200);
    assert_eq!(refusal(set_aside[0], admin, &found).await, (409, "not_set_aside".into()), "marked once");
    let marked = pool.json("/pool/payouts").await;
    let marked = marked.as_array().unwrap().iter().find(|p| p["id"] == set_aside[0]).unwrap().clone();
    assert_eq!((&marked["status"], &marked["transfer_id"]), (&json!("paid"), &json!(transfer_id)));
    assert!(marked["reason"].as_str().unwrap().contains("operator"), "{marked}");
    // Nothing set aside holds the payees back: later blocks are paid, and
    // what the chain shows each is what the pool says it paid.
    pool.mine_block(&alice).await;
    eventually("alice paid, nothing set aside", Duration::from_secs(20), async || {
        let a = balance(&pool, "land1alice").await;
        u(&a["set_aside"]) == 0 && u(&a["sending"]) == 0 && u(&a["paid"]) > 0
    })
    .await;
    check_books(&pool, &["land1alice", HOST, FOUNDATION]).await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solo_pays_the_finder_and_prop_pays_the_round() {
    // SOLO: bob's shares earn nothing; the finder takes the miners' part.
    let pool = TestPool::start(CoordinatorArgs { payout_scheme: Some("solo".into()), ..reward_settings("solo") }).await;
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    pool.mine(&bob, Some(4)).await;
    let (h, _) = pool.mine_block(&alice).await;
    eventually("the block to be credited", Duration::from_secs(10), async || {
        !block(&pool, h).await["split"].as_array().unwrap().is_empty()
    })
    .await;
    let detail = block(&pool, h).await;
    assert_eq!(detail["scheme"], "solo");
    let reward = u(&detail["reward"]);
    let miners: Vec<&Value> = detail["split"].as_array().unwrap().iter().filter(|e| e["kind"] == "miner").collect();
    assert_eq!(miners.len(), 1, "{detail}");
    assert_eq!(miners[0]["recipient"], "land1alice");
    assert_eq!(u(&miners[0]["amount"]), reward - reward / 100 - reward / 50);
    pool.stop().await;

    // PROP: a block's window is the round since the previous block.
    let pool = TestPool::start(CoordinatorArgs { payout_scheme: Some("prop".into()), ..reward_settings("prop") }).await;
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    let (first, _) = pool.mine_block(&alice).await;
    pool.mine(&bob, Some(3)).await;
    let (second, _) = pool.mine_block(&alice).await;
    eventually("both blocks to be credited", Duration::from_secs(10), async || {
        !block(&pool, second).await["split"].as_array().unwrap().is_empty()
    })
    .await;
    // Bob's shares may have held a block too: the round of `second` starts
    // after whichever block came just before it.
    let blocks = pool.json("/pool/blocks").await;
    let previous = blocks.as_array().unwrap().iter().map(|b| u(&b["height"])).filter(|h| *h < second).max().unwrap();
    assert!(previous >= first);
    let (w1, w2) = (block(&pool, previous).await["window"].clone(), block(&pool, second).await["window"].clone());
    assert_eq!(u(&w2["first"]), u(&w1["last"]) + 1, "the round starts after the previous block: {w1} {w2}");
    assert_eq!(u(&w2["shares"]), u(&w2["last"]) - u(&w2["first"]) + 1, "every share of the round: {w2}");
    assert_eq!(w2["coverage"], 1.0);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_pending_too_long_is_flagged_not_left_silent() {
    let pool = TestPool::start(CoordinatorArgs { confirmations: Some(50), ..reward_settings("overdue") }).await;
    let alice = pool.register("rig-a", "land1alice").await;
    let (h, _) = pool.mine_block(&alice).await;
    eventually("the block to be credited", Duration::from_secs(10), async || {
        block(&pool, h).await["status"] == "pending" && !block(&pool, h).await["split"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(block(&pool, h).await["overdue"], false);
    // A round as it would run a day later (the rules take the time).
    let pool_handle = pool.pool.clone().unwrap();
    pool_handle.run_rewards_round(vision_coordinator::pool::now_ms() + 86_400_000).await.unwrap();
    let detail = block(&pool, h).await;
    assert_eq!(detail["overdue"], true, "{detail}");
    assert!(detail["history"].as_array().unwrap().iter().any(|c| c["status"] == "overdue"));
    let metrics = pool.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("vision_pool_blocks_pending_overdue 1"), "{metrics}");
    drop(pool_handle);
    pool.stop().await;
}

/// Past the reorganisation watch depth (confirmations + 1 block here)
/// rounds stop reading the blocks settled there; every block is still
/// credited, each PROP round starts right after the previous block, and the
/// books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_past_the_watch_depth_still_credit_every_block_in_order() {
    let args = CoordinatorArgs {
        payout_scheme: Some("prop".into()),
        confirmations: Some(1),
        orphan_watch_depth: Some(1),
        devnet_difficulty: Some(4),
        ..reward_settings("settled")
    };
    let pool = TestPool::start(args).await;
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    // Reads start 2 below the tip: at tip 5, blocks 1-3 at least are
    // settled. Each pass finds a block or two (bob's share may be one).
    let mut last = 0;
    let mut n = 0;
    while last < 1 + 1 + 3 {
        pool.mine(&bob, Some(1)).await;
        (last, _) = pool.mine_block(if n % 2 == 0 { &alice } else { &bob }).await;
        n += 1;
    }
    eventually("the last block to be credited", Duration::from_secs(60), async || {
        !block(&pool, last).await["split"].as_array().unwrap().is_empty()
    })
    .await;
    let mut previous: Option<(u64, u64)> = None;
    let mut checked = 0;
    for height in 1..=last {
        let response = pool.get(&format!("/pool/blocks/{height}")).await;
        if response.status() == 404 {
            continue;
        }
        let detail: Value = response.json().await.unwrap();
        if detail["status"] == "rejected" {
            continue;
        }
        assert!(!detail["split"].as_array().unwrap().is_empty(), "block {height} credited: {detail}");
        let window = &detail["window"];
        if let Some((before, previous_last)) = previous {
            assert_eq!(u(&window["first"]), previous_last + 1, "block {height}'s round starts after block {before}'s");
        }
        previous = Some((height, u(&window["last"])));
        checked += 1;
    }
    assert!(checked >= 5, "{checked} blocks checked");
    check_books(&pool, &["land1alice", "land1bob", FOUNDATION, HOST]).await;
    pool.stop().await;
}

/// A PROP pool whose rounds are run by hand (the poll is an hour), so that
/// a block can be orphaned before or after its credit at will; alice's and
/// bob's rigs registered.
struct PropByHand {
    pool: TestPool,
    handle: std::sync::Arc<vision_coordinator::pool::Pool>,
    devnet: std::sync::Arc<vision_coordinator::chain::devnet::DevnetChain>,
    alice: String,
    bob: String,
}

async fn prop_pool_by_hand(label: &str) -> PropByHand {
    prop_pool_by_hand_at(label, 12).await
}

/// As [`prop_pool_by_hand`], at a devnet difficulty of `difficulty`.
async fn prop_pool_by_hand_at(label: &str, difficulty: u64) -> PropByHand {
    let pool = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(difficulty),
        payout_scheme: Some("prop".into()),
        payout_threshold: Some(u64::MAX / 2), // nothing is paid in these tests
        reward_poll_ms: Some(3_600_000),
        ..reward_settings(label)
    })
    .await;
    let handle = pool.pool.clone().unwrap();
    let devnet = pool.devnet.clone().unwrap();
    let alice = pool.register("rig-a", "land1alice").await;
    let bob = pool.register("rig-b", "land1bob").await;
    PropByHand { pool, handle, devnet, alice, bob }
}

async fn round(handle: &vision_coordinator::pool::Pool) {
    handle.run_rewards_round(vision_coordinator::pool::now_ms()).await.unwrap();
}

/// A wallet's weight (share difficulty) in a block's window.
fn weight_of(detail: &Value, wallet: &str) -> u64 {
    let wallets = detail["wallets"].as_array().unwrap();
    wallets.iter().filter(|w| w["wallet"] == wallet).map(|w| u(&w["difficulty"])).sum()
}

/// A block the node refused (rejected on its word) that the chain holds
/// after all (another node took it) is recorded as accepted by the review
/// before the next round, and credited; left rejected, its reward would sit
/// in the pool's wallet with nobody told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_block_the_chain_holds_after_all_is_credited() {
    let pool =
        TestPool::start(CoordinatorArgs { reward_poll_ms: Some(3_600_000), ..reward_settings("heldafter") }).await;
    let (handle, devnet) = (pool.pool.clone().unwrap(), pool.devnet.clone().unwrap());
    let alice = pool.register("rig-a", "land1alice").await;
    let refused = refused_then_taken(&pool, &handle, &devnet, &alice).await;
    assert!(devnet.submit(&refused.submission).unwrap().accepted);
    round(&handle).await;
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), 0, "rejected: not credited");

    assert_eq!(handle.review_found_blocks(vision_coordinator::pool::now_ms()).await.unwrap(), 1);
    round(&handle).await;
    let credited = block(&pool, refused.height).await;
    assert_eq!(credited["status"], "pending", "credited: {credited}");
    assert!(u(&credited["reward"]) > 0 && part_of(&credited, "land1alice") > 0, "{credited}");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), part_of(&credited, "land1alice"));
    assert_eq!(handle.review_found_blocks(vision_coordinator::pool::now_ms()).await.unwrap(), 0, "once");
    check_books(&pool, &["land1alice", HOST, FOUNDATION]).await;
    pool.stop().await;
}

/// Mines alice's next block with the node refusing it (rejected on its
/// word, as one node may call a block another takes); its record.
async fn refused_then_taken(
    pool: &TestPool,
    handle: &vision_coordinator::pool::Pool,
    devnet: &vision_coordinator::chain::devnet::DevnetChain,
    alice: &str,
) -> vision_coordinator::storage::FoundBlockRecord {
    use vision_coordinator::chain::devnet::SubmitFault;
    let job = pool.job(alice).await;
    let nonce = job.first_meeting(12);
    devnet.inject(SubmitFault::Reject, 1);
    let (_, answer) = pool.share(alice, &job, nonce, &job.digest(nonce)).await;
    assert_eq!(answer["block_status"], "rejected", "{answer}");
    let found = handle.store_for_tests().found_blocks_at(job.height()).await.unwrap();
    let [refused] = found.as_slice() else { panic!("one found block: {found:?}") };
    refused.clone()
}

/// Under PROP, a block rejected on a node's word that the chain holds after
/// all holds up the blocks after it until the review before the next round
/// records it accepted: then each block is credited over its own round, in
/// ledger order, none paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_a_rejected_block_the_chain_holds_is_credited_before_the_blocks_after_it() {
    let PropByHand { pool, handle, devnet, alice, bob } = prop_pool_by_hand("propheld").await;
    let refused = refused_then_taken(&pool, &handle, &devnet, &alice).await;
    assert!(devnet.submit(&refused.submission).unwrap().accepted);
    let (later, _) = pool.mine_block(&bob).await;
    assert_eq!(later, refused.height + 1);
    round(&handle).await;
    assert_eq!(u(&balance(&pool, "land1bob").await["immature"]), 0, "bob's block waits for the one before it");

    assert_eq!(handle.review_found_blocks(vision_coordinator::pool::now_ms()).await.unwrap(), 1);
    round(&handle).await;
    let (first, second) = (block(&pool, refused.height).await, block(&pool, later).await);
    assert!(weight_of(&first, "land1alice") > 0 && weight_of(&first, "land1bob") == 0, "{first}");
    assert!(weight_of(&second, "land1bob") > 0 && weight_of(&second, "land1alice") == 0, "{second}");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), part_of(&first, "land1alice"));
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    pool.stop().await;
}

/// A block rejected on a node's word that the chain holds after all, met
/// by a PROP round only after a later block's credit ended its round (here
/// the later block was credited under PPLNS, before a switch to PROP), is
/// flagged for the operator, not credited: a PROP credit of it would pay
/// shares that credit has paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_a_block_met_below_a_round_a_later_credit_ended_is_flagged() {
    let pplns = CoordinatorArgs {
        payout_threshold: Some(u64::MAX / 2),
        reward_poll_ms: Some(3_600_000),
        // However many shares bob's block takes, alice's stays in the window.
        pplns_window_factor: Some(1000.0),
        ..reward_settings("propflip")
    };
    let pool = TestPool::start(pplns.clone()).await;
    let (handle, devnet) = (pool.pool.clone().unwrap(), pool.devnet.clone().unwrap());
    let (alice, bob) = (pool.register("rig-a", "land1alice").await, pool.register("rig-b", "land1bob").await);
    let refused = refused_then_taken(&pool, &handle, &devnet, &alice).await;
    assert!(devnet.submit(&refused.submission).unwrap().accepted);
    let (later, _) = pool.mine_block(&bob).await;
    round(&handle).await;
    let paid = block(&pool, later).await;
    assert!(weight_of(&paid, "land1alice") > 0, "the later block paid alice's share: {paid}");
    let alice_part = part_of(&paid, "land1alice");
    drop((handle, devnet));
    pool.stop().await;

    let pool = TestPool::start(CoordinatorArgs { payout_scheme: Some("prop".into()), ..pplns }).await;
    let handle = pool.pool.clone().unwrap();
    // (The server's rewards task reviews and runs a round at its start too.)
    handle.review_found_blocks(vision_coordinator::pool::now_ms()).await.unwrap();
    round(&handle).await;
    let flagged = block(&pool, refused.height).await;
    assert!(flagged["operator_flag"].as_str().is_some_and(|f| f.contains("ended its PROP round")), "{flagged}");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), alice_part, "alice's share paid once");
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    drop(handle);
    pool.stop().await;
}

/// Under PROP a block orphaned after its credit has its round carried into
/// the next block the pool credits, so its miners are paid by that one, and
/// once: when the orphan comes back, it is flagged rather than credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_carries_an_orphaned_round_into_the_next_block() {
    let PropByHand { pool, handle, devnet, alice, bob } = prop_pool_by_hand("propcarry").await;
    let (x, _) = pool.mine_block(&alice).await;
    round(&handle).await;
    let credited = block(&pool, x).await;
    let alice_round = weight_of(&credited, "land1alice");
    assert!(alice_round > 0 && weight_of(&credited, "land1bob") == 0, "{credited}");
    devnet.reorganise(1).unwrap();
    round(&handle).await;
    assert_eq!(block(&pool, x).await["status"], "orphaned");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), 0);

    // Bob's block pays his round and alice's orphaned one.
    let (y, _) = pool.mine_block(&bob).await;
    round(&handle).await;
    let carrying = block(&pool, y).await;
    assert_eq!(carrying["window"]["carried_rounds"], serde_json::json!([x]), "{carrying}");
    assert_eq!(weight_of(&carrying, "land1alice"), alice_round, "alice's whole round: {carrying}");
    assert!(weight_of(&carrying, "land1bob") > 0, "{carrying}");
    let alice_part = part_of(&carrying, "land1alice");
    assert!(alice_part > 0);
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), alice_part, "paid once, by block {y}");
    let orphan = block(&pool, x).await;
    assert_eq!(orphan["round_paid_by"], y, "{orphan}");
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    // Carried once: later rounds leave it be.
    round(&handle).await;
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), alice_part);

    // The reorganisation undone: alice's block is back, but its round was
    // paid by bob's: flagged for the operator, not credited again.
    devnet.restore_reorganised().unwrap();
    round(&handle).await;
    let back = block(&pool, x).await;
    assert_eq!(back["status"], "orphaned", "{back}");
    let flag = back["operator_flag"].as_str().unwrap_or_else(|| panic!("flagged: {back}"));
    assert!(flag.contains(&format!("block {y} paid its PROP round")), "{flag}");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), alice_part, "not credited twice");
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    drop(handle);
    pool.stop().await;
}

/// Under PROP a block orphaned before it was credited never ended its
/// round: the next block's round starts where the orphan's did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_goes_on_with_the_round_of_a_block_orphaned_before_its_credit() {
    let PropByHand { pool, handle, devnet, alice, bob } = prop_pool_by_hand("propuncredited").await;
    let (x, _) = pool.mine_block(&alice).await;
    devnet.reorganise(1).unwrap();
    round(&handle).await;
    let orphan = block(&pool, x).await;
    assert_eq!(orphan["status"], "orphaned", "{orphan}");
    assert!(orphan["split"].as_array().unwrap().is_empty(), "never credited: {orphan}");

    let (y, _) = pool.mine_block(&bob).await;
    round(&handle).await;
    let next = block(&pool, y).await;
    assert_eq!(next["window"]["first"], 0, "the round from the pool's first share: {next}");
    assert_eq!(next["window"]["carried_rounds"], serde_json::json!([x]), "{next}");
    assert!(weight_of(&next, "land1alice") > 0 && weight_of(&next, "land1bob") > 0, "{next}");
    assert_eq!(block(&pool, x).await["round_paid_by"], y);
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    drop(handle);
    pool.stop().await;
}

/// A credited block whose step fails in a round (its confirmation refused
/// here: the books were made to refuse it) still ended its round: the
/// blocks credited after it in that round do not pay its shares again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_a_failing_step_on_a_credited_block_still_ends_its_round() {
    use vision_coordinator::storage::{BalanceBucket, BalanceDelta, RewardUpdate};
    let PropByHand { pool, handle, devnet: _, alice, bob } = prop_pool_by_hand("propfailing").await;
    let (x, _) = pool.mine_block(&alice).await;
    round(&handle).await;
    let first = block(&pool, x).await;
    let alice_credit = u(&balance(&pool, "land1alice").await["immature"]);
    assert!(alice_credit > 0, "{first}");
    // Alice's immature balance taken away behind the pool's back: moving
    // block x's credit to confirmed would take it below zero, which the
    // store refuses, round after round.
    let take = RewardUpdate {
        balances: vec![BalanceDelta::new("land1alice", BalanceBucket::Immature, -i128::from(alice_credit))],
        ..RewardUpdate::default()
    };
    handle.store_for_tests().apply_reward_update(&take).await.unwrap();
    // Two blocks of bob's put x three deep; one round then fails x's
    // confirmation and credits both.
    pool.mine_block(&bob).await;
    let (z, _) = pool.mine_block(&bob).await;
    round(&handle).await;
    assert_eq!(block(&pool, x).await["status"], "pending", "its confirmation is refused");
    let last = block(&pool, z).await;
    assert!(!last["split"].as_array().unwrap().is_empty(), "credited: {last}");
    for height in x + 1..=z {
        let response = pool.get(&format!("/pool/blocks/{height}")).await;
        if response.status() == 404 {
            continue;
        }
        let detail: Value = response.json().await.unwrap();
        assert_eq!(weight_of(&detail, "land1alice"), 0, "block {height} pays none of block {x}'s round: {detail}");
    }
    drop(handle);
    pool.stop().await;
}

/// PROP's payout estimates count the rounds the next block will carry: a
/// worker of the current round is not promised the whole block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prop_estimates_count_the_rounds_waiting_to_be_carried() {
    let PropByHand { pool, handle, devnet, alice, bob } = prop_pool_by_hand_at("propestimate", 64).await;
    let (x, _) = pool.mine_block(&alice).await;
    round(&handle).await;
    let alice_round = u128::from(weight_of(&block(&pool, x).await, "land1alice"));
    let reward = u(&block(&pool, x).await["reward"]);
    devnet.reorganise(1).unwrap();
    round(&handle).await;
    // One share that is no block.
    let job = pool.job(&bob).await;
    let nonce = job.first_share_below(job.0["network_difficulty"].as_u64().unwrap());
    let (_, answer) = pool.share(&bob, &job, nonce, &job.digest(nonce)).await;
    assert_eq!((answer["accepted"].as_bool(), answer["is_block"].as_bool()), (Some(true), Some(false)), "{answer}");
    round(&handle).await;
    let estimates = handle.rewards().estimated_payouts();
    let miners_part = u128::from(reward - reward / 100 - reward * 200 / 10_000);
    // Bob's one share of difficulty 1 against alice's carried round.
    let expected = (miners_part / (1 + alice_round)) as u64;
    assert_eq!(estimates.get("land1bob.rig-b").copied(), Some(expected), "{estimates:?}");
    assert!(!estimates.contains_key("land1alice"), "a carried wallet is no worker: {estimates:?}");
    drop(handle);
    pool.stop().await;
}

/// An orphan's round left waiting when the operator switches PROP off ends
/// with the next block credited by the new scheme (which adds no weights:
/// a PPLNS window is the ledger's last N, and does not count as paying it),
/// is not carried when PROP comes back, and is paid by the orphan itself
/// should it come back on the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_round_ends_with_the_next_credit_under_another_scheme() {
    let PropByHand { pool, handle, devnet, alice, bob: _ } = prop_pool_by_hand("propswitch").await;
    let (x, _) = pool.mine_block(&alice).await;
    round(&handle).await;
    let alice_round = weight_of(&block(&pool, x).await, "land1alice");
    devnet.reorganise(1).unwrap();
    round(&handle).await;
    assert_eq!(block(&pool, x).await["status"], "orphaned");
    let data_dir = pool.data_dir.clone();
    drop((handle, devnet));
    pool.stop().await;
    let restart = |scheme: &str| CoordinatorArgs {
        payout_scheme: Some(scheme.into()),
        payout_threshold: Some(u64::MAX / 2),
        reward_poll_ms: Some(3_600_000),
        data_dir: Some(data_dir.clone()),
        ..reward_settings("propswitch")
    };

    let pool = TestPool::start(restart("pplns")).await;
    let handle = pool.pool.clone().unwrap();
    let bob = pool.register("rig-b", "land1bob").await;
    let (y, _) = pool.mine_block(&bob).await;
    round(&handle).await;
    let pplns = block(&pool, y).await;
    assert_eq!((&pplns["scheme"], &pplns["window"]["carried_rounds"]), (&"pplns".into(), &serde_json::json!([])));
    let ended = block(&pool, x).await;
    assert!(ended["round_paid_by"].is_null(), "ended, not paid: {ended}");
    let history = ended["history"].as_array().unwrap();
    let why = history.iter().find(|c| c["status"] == "round ended").unwrap_or_else(|| panic!("{ended}"));
    assert!(why["reason"].as_str().unwrap().contains(&format!("block {y}")), "{why}");
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    drop(handle);
    pool.stop().await;

    let pool = TestPool::start(restart("prop")).await;
    let handle = pool.pool.clone().unwrap();
    let alice = pool.register("rig-a", "land1alice").await;
    let (z, _) = pool.mine_block(&alice).await;
    round(&handle).await;
    let prop = block(&pool, z).await;
    assert_eq!(prop["window"]["carried_rounds"], serde_json::json!([]), "not carried again: {prop}");
    assert!(block(&pool, x).await["round_paid_by"].is_null());
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;

    // The reorganisation undone (blocks y and z leave the chain with it):
    // block x is back, and as its round was ended rather than paid, it is
    // credited again, over the round it was credited over first.
    let alice_before = u(&balance(&pool, "land1alice").await["immature"]);
    pool.devnet.as_ref().unwrap().restore_reorganised().unwrap();
    round(&handle).await;
    let back = block(&pool, x).await;
    assert_eq!(back["status"], "pending", "credited again: {back}");
    assert!(back["operator_flag"].is_null(), "{back}");
    assert_eq!(weight_of(&back, "land1alice"), alice_round, "its first round: {back}");
    let alice_part = part_of(&back, "land1alice");
    assert!(alice_part > 0, "{back}");
    assert_eq!(u(&balance(&pool, "land1alice").await["immature"]), alice_before + alice_part);
    check_books(&pool, &["land1alice", "land1bob", HOST, FOUNDATION]).await;
    drop(handle);
    pool.stop().await;
}

/// The whole payout history, however long, page by page: over HTTP
/// (`before` the last id seen) and through the operators' export script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payout_history_is_read_page_by_page() {
    use vision_coordinator::storage::{PayoutOutput, PayoutRecord, PayoutStatus, RewardUpdate};
    let pool = TestPool::start(settings("payoutpages")).await;
    let batch = |id: u64, wallet: &str| PayoutRecord {
        id,
        status: PayoutStatus::SetAside,
        outputs: vec![PayoutOutput::new(wallet, id * 10)],
        idempotency_key: format!("key-{id}"),
        // A node's words quoting JSON: the export must not take it for an id.
        reason: Some(format!("refused_payee: node said {{\"id\":{}}}", 1000 + id)),
        created_ms: id,
        updated_ms: id,
        transfer_id: None,
        attempts: 1,
    };
    let payouts = (1..=7).map(|id| batch(id * 3, if id % 2 == 0 { "land1even" } else { "land1odd" })).collect();
    let store = pool.pool.as_ref().unwrap().store_for_tests().clone();
    store.apply_reward_update(&RewardUpdate { payouts, ..RewardUpdate::default() }).await.unwrap();
    let all = pool.json("/pool/payouts").await;
    let ids: Vec<u64> = all.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [21, 18, 15, 12, 9, 6, 3]);

    let mut paged = Vec::new();
    let mut path = "/pool/payouts?limit=3".to_string();
    loop {
        let page = pool.json(&path).await.as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        path = format!("/pool/payouts?limit=3&before={}", last["id"]);
        paged.extend(page);
    }
    assert_eq!(Value::from(paged), all);
    let odd = pool.json("/pool/payouts?wallet=land1odd&before=15&limit=1").await;
    assert_eq!(odd.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect::<Vec<_>>(), [9]);
    assert_eq!(pool.get("/pool/payouts?before=-1").await.status(), 400);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/export-payouts.sh");
    let export = std::process::Command::new("bash").args([script, &pool.url, "2"]).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&export.stdout).unwrap(), all);
    let refused = std::process::Command::new("bash").args([script, &pool.url, "1001"]).output().unwrap();
    assert!(!refused.status.success(), "a refused page is a failed export");
    assert!(!refused.stdout.ends_with(b"]\n"), "a failed export never reads as a whole one");
    drop(store);
    pool.stop().await;
}

/// A block orphaned while its credit is being sent (the node failing
/// transfers), under PPLNS: the batch is marked, and when the chain then
/// refuses the payee, that part is taken back instead of set aside, so no
/// retry can pay a reward the pool never got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_takes_back_what_was_being_sent_once_the_chain_refuses_it() {
    let pool =
        TestPool::start(CoordinatorArgs { reward_poll_ms: Some(3_600_000), ..reward_settings("sendingorphan") }).await;
    let (handle, devnet) = (pool.pool.clone().unwrap(), pool.devnet.clone().unwrap());
    let alice = pool.register("rig-a", "land1alice").await;
    let (x, _) = pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    pool.mine_block(&alice).await;
    devnet.hold_transfers(true);
    for _ in 0..10 {
        if u(&balance(&pool, "land1alice").await["sending"]) > 0 {
            break;
        }
        round(&handle).await;
    }
    let sending = u(&balance(&pool, "land1alice").await["sending"]);
    assert_eq!(sending, part_of(&block(&pool, x).await, "land1alice"), "block x's credit is being sent");

    devnet.refuse_payments_to("land1alice");
    devnet.hold_transfers(false);
    devnet.reorganise(3).unwrap();
    round(&handle).await;
    let orphan = block(&pool, x).await;
    assert_eq!(orphan["status"], "orphaned", "{orphan}");
    let flag = orphan["operator_flag"].as_str().expect("flagged");
    assert!(flag.contains(&format!("being sent: land1alice {sending}")), "{flag}");
    let b = balance(&pool, "land1alice").await;
    for part in ["immature", "confirmed", "sending", "paid", "set_aside"] {
        assert_eq!(u(&b[part]), 0, "{part}: {b}");
    }
    let payouts = pool.json("/pool/payouts?wallet=land1alice").await;
    assert!(payouts.as_array().unwrap().iter().all(|p| p["status"] != "set_aside"), "nothing to retry: {payouts}");
    assert_eq!(chain_spendable(&pool, "land1alice").await, 0);
    drop(handle);
    pool.stop().await;
}
