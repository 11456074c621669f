//! The pool API over real HTTP on loopback, against a real coordinator with
//! its own sled files and embedded devnet.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{settings, TestPool};
use vision_coordinator::config::CoordinatorArgs;
use vision_coordinator::storage::PoolSettings;

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_job_and_shares_are_judged_by_recomputation() {
    let pool = TestPool::start(settings("flow")).await;
    let token = pool.register("rig-1", "land1qexample").await;
    // Re-registering the same worker with the same wallet opens another session.
    let second = pool.register("rig-1", "land1qexample").await;
    assert_ne!(second, token, "every registration gets a fresh credential");
    // A worker id is its wallet's: another wallet's rig of the same name is
    // another worker, and the whole id names the same one.
    let register = async |rig: &str, wallet: &str| {
        pool.post("/pool/register", &json!({"worker_id": rig, "wallet_address": wallet})).await
    };
    let (status, other) = body(register("rig-1", "land1other").await).await;
    assert_eq!((status, other["worker_id"].as_str()), (StatusCode::OK, Some("land1other.rig-1")));
    let (status, whole) = body(register("land1qexample.rig-1", "land1qexample").await).await;
    assert_eq!((status, whole["worker_id"].as_str()), (StatusCode::OK, Some("land1qexample.rig-1")));
    let (status, doubled) = body(register("land1other.rig-1", "land1qexample").await).await;
    assert_eq!((status, doubled["worker_id"].as_str()), (StatusCode::OK, Some("land1qexample.land1other.rig-1")));
    let (status, own) = body(register("rig-1", "vision-pool").await).await;
    assert_eq!((status, own["error"].as_str()), (StatusCode::BAD_REQUEST, Some("pool_wallet")), "{own}");

    let job = pool.job(&token).await;
    for field in [
        "job_id",
        "height",
        "epoch",
        "epoch_seed",
        "pow_message",
        "params",
        "network_difficulty",
        "share_difficulty",
        "nonce_start",
        "nonce_end",
    ] {
        assert!(job.0.get(field).is_some(), "job lacks {field}");
    }
    assert_eq!(job.0["params"]["mix_iters"], 65536);
    assert_eq!(job.0["params"]["epoch_blocks"], 32);

    let nonce = job.nonce_start() + 7;
    let digest = job.digest(nonce);
    let (status, accepted) = pool.share(&token, &job, nonce, &digest).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(accepted["accepted"], true, "{accepted}");
    assert_eq!(accepted["is_block"], false);

    let reason = |v: &Value| v["reason"].as_str().map(str::to_string);
    // A resubmission of a credited share (a client that timed out) is
    // answered as accepted, and credited once.
    let (_, again) = pool.share(&token, &job, nonce, &digest).await;
    assert_eq!((again["accepted"].as_bool(), reason(&again).as_deref()), (Some(true), Some("already_credited")));
    let mut forged = digest.clone().into_bytes();
    forged[63] = if forged[63] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(reason(&pool.share(&token, &job, nonce + 1, &forged).await.1).as_deref(), Some("bad_digest"));
    assert_eq!(reason(&pool.share(&token, &job, nonce + 1, "zz").await.1).as_deref(), Some("bad_digest"));
    let outside = job.0["nonce_end"].as_u64().unwrap();
    assert_eq!(reason(&pool.share(&token, &job, outside, &digest).await.1).as_deref(), Some("out_of_range"));
    let (_, unknown) = pool
        .post_auth("/pool/share", &token, &json!({"job_id": "nope", "nonce": 1, "digest": digest}))
        .await
        .json::<Value>()
        .await
        .map(|v| (0, v))
        .unwrap();
    assert_eq!(reason(&unknown).as_deref(), Some("unknown_job"));

    // Another worker's job and nonce range are its own.
    let other = pool.register("rig-2", "land1qexample").await;
    let other_job = pool.job(&other).await;
    assert!(
        other_job.nonce_start() >= job.0["nonce_end"].as_u64().unwrap()
            || other_job.0["nonce_end"].as_u64().unwrap() <= job.nonce_start()
    );
    assert_eq!(
        reason(&pool.share(&other, &job, nonce + 2, &job.digest(nonce + 2)).await.1).as_deref(),
        Some("unknown_job")
    );

    let (_, stats) = body(pool.get("/pool/stats").await).await;
    let rig =
        stats["workers"].as_array().unwrap().iter().find(|w| w["worker_id"] == "land1qexample.rig-1").unwrap().clone();
    assert_eq!(rig["shares"]["accepted"], 1);
    assert_eq!(rig["shares"]["duplicate"], 0);
    assert_eq!(rig["sessions"], 1, "an unused registration does not enter the active set");
    assert_eq!(rig["shares"]["rejected"], 4);
    assert_eq!(rig["hashrate"]["reported"], 123.5);
    assert_eq!(rig["hashrate"]["shares_10m"], 1);
    assert_eq!(rig["online"], true);
    let (_, worker) = body(pool.get("/pool/workers/land1qexample.rig-1").await).await;
    assert_eq!(worker["wallet_address"], "land1qexample");
    let (_, metrics) = body(pool.get("/pool/metrics").await).await;
    assert_eq!(metrics["shares"]["valid"], 1);
    assert_eq!(metrics["ledger_shares"], 1);
    // The accepted share was made durable by a flush of the sled store.
    assert_eq!(metrics["storage"]["backend"], "sled");
    let commits = metrics["storage"]["commits"].as_u64().unwrap();
    assert!(commits >= 1, "{metrics}");
    let prometheus = pool.get("/metrics").await.text().await.unwrap();
    assert!(prometheus.contains("vision_pool_shares_total{outcome=\"valid\"} 1"), "{prometheus}");
    assert!(prometheus.contains("vision_pool_store_commits_total{backend=\"sled\"} "), "{prometheus}");
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_found_submitted_and_old_jobs_go_stale() {
    let pool = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(1),
        coinbase_maturity: Some(0),
        ..settings("block")
    })
    .await;
    let token = pool.register("solo-rig", "land1finder").await;
    let job = pool.job(&token).await;
    assert_eq!(job.height(), 0);
    let nonce = job.nonce_start();
    let (_, answer) = pool.share(&token, &job, nonce, &job.digest(nonce)).await;
    assert_eq!((answer["accepted"].as_bool(), answer["is_block"].as_bool()), (Some(true), Some(true)), "{answer}");
    let hash = answer["block_hash"].as_str().unwrap().to_string();

    let (_, block) = body(pool.get("/node/block/0").await).await;
    assert_eq!(block["hash"], hash);
    assert_eq!(block["miner"], "vision-pool");
    let (_, blocks) = body(pool.get("/pool/blocks").await).await;
    assert_eq!(blocks[0]["hash"], hash);
    assert_eq!(blocks[0]["finder"], "land1finder.solo-rig");
    let (_, balance) = body(pool.get("/node/balance/vision-pool").await).await;
    assert_eq!(balance["spendable"], 50_000_000_000u64);

    // The next share on the old job is stale; a new job is at height 1.
    let (_, stale) = pool.share(&token, &job, nonce + 1, &job.digest(nonce + 1)).await;
    assert_eq!(stale["reason"], "stale");
    assert_eq!(pool.job(&token).await.height(), 1);
    let (_, stats) = body(pool.get("/pool/stats").await).await;
    assert_eq!(stats["blocks_found"], 1);
    assert_eq!(stats["workers"][0]["shares"]["stale"], 1);
    pool.stop().await;
}

/// A miner sends only hashes that meet its share target, so a share
/// difficulty above the block's would hide every block between the two:
/// jobs are capped at the network difficulty, and a big miner on a small
/// chain finds its blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_difficulty_never_exceeds_the_blocks() {
    let pool = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(8),
        share_difficulty: Some(5000),
        min_share_difficulty: Some(5000),
        ..settings("capped")
    })
    .await;
    let token = pool.register("big-rig", "land1big").await;
    let job = pool.job(&token).await;
    let network = job.0["network_difficulty"].as_u64().unwrap();
    assert!(network < 5000, "the chain is easier than the pool's minimum: {}", job.0);
    assert_eq!(job.share_difficulty(), network, "{}", job.0);
    // Every share is a block now; the next job is capped by its own block.
    let (height, _) = pool.mine_block(&token).await;
    let next = pool.job(&token).await;
    assert_eq!(next.height(), height + 1);
    assert_eq!(next.share_difficulty(), next.0["network_difficulty"].as_u64().unwrap());
    // Asked again, the same job: a capped difficulty is not a new one.
    assert_eq!(pool.job(&token).await.id(), next.id());
    pool.stop().await;
}

/// A session at its cap of new jobs on one template keeps its job; share
/// answers then name that job's difficulty, the one its next job request
/// brings, not the vardiff's (a miner would ask for a job it already has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_answers_name_the_difficulty_the_next_job_carries() {
    let pool = TestPool::start(CoordinatorArgs {
        admin_token: Some("t0ken-for-the-tests".into()),
        ..settings("next-difficulty")
    })
    .await;
    let token = pool.register("rig", "land1next").await;
    let bounds = |d: u64| json!({"min_share_difficulty": d, "max_share_difficulty": d});
    // Each change of bounds is a new difficulty, so a new job, up to the cap.
    let mut ids = std::collections::HashSet::new();
    for i in 0..20u64 {
        let response = pool.post_auth("/pool/configure", "t0ken-for-the-tests", &bounds(1 + i % 2)).await;
        assert_eq!(response.status(), StatusCode::OK);
        ids.insert(pool.job(&token).await.id().to_string());
    }
    assert_eq!(ids.len(), 16, "new jobs on one template stop at the cap");
    let held = pool.job(&token).await;
    let other = 3 - held.share_difficulty();
    assert_eq!(pool.post_auth("/pool/configure", "t0ken-for-the-tests", &bounds(other)).await.status(), StatusCode::OK);
    let nonce = held.first_share();
    let (status, answer) = pool.share(&token, &held, nonce, &held.digest(nonce)).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    assert_eq!(answer["share_difficulty"].as_u64(), Some(held.share_difficulty()), "{answer}");
    assert_eq!(pool.job(&token).await.id(), held.id(), "the next job is the held one");
    // The stats say the same.
    let worker = pool.json("/pool/workers/land1next.rig").await;
    assert_eq!(worker["share_difficulty"].as_u64(), Some(held.share_difficulty()), "{worker}");
    pool.stop().await;
}

/// The node's tip is the tip, even when it goes down (a shorter branch with
/// more work, a node restored from a backup): jobs left on the dead tip
/// would find only blocks the chain refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_tip_from_the_node_is_followed() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("lower-tip") }).await;
    let token = pool.register("rig", "land1low").await;
    for _ in 0..3 {
        pool.mine_block(&token).await;
    }
    let (devnet, coordinator) = (pool.devnet.as_ref().unwrap(), pool.pool.as_ref().unwrap());
    // Blocks 1 and 2 replaced by three others: the tip is at 3.
    devnet.reorganise(2).unwrap();
    coordinator.refresh_template().await.unwrap();
    assert_eq!(pool.job(&token).await.height(), 4);
    // And back: the first blocks 1 and 2 again, the tip at 2.
    devnet.restore_reorganised().unwrap();
    coordinator.refresh_template().await.unwrap();
    let job = pool.job(&token).await;
    assert_eq!(job.height(), 3, "{}", job.0);
    let (_, tip) = body(pool.get("/node/block/2").await).await;
    assert_eq!(job.0["pow_message"].as_str().map(|m| m.contains(tip["hash"].as_str().unwrap())), Some(true));
    assert_eq!(pool.mine_block(&token).await.0, 3, "the pool's next block lands on the chain");
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_as_soon_as_a_new_block_arrives() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("longpoll") }).await;
    let waiter = pool.register("waiter", "land1w").await;
    let finder = pool.register("finder", "land1f").await;
    let first = pool.job(&waiter).await;
    let http = pool.http.clone();
    let url = format!("{}/pool/job?wait=20", pool.url);
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let job: Value = http.get(url).bearer_auth(waiter).send().await.unwrap().json().await.unwrap();
        (job, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = pool.job(&finder).await;
    let found_at = Instant::now();
    let (_, answer) = pool.share(&finder, &job, job.nonce_start(), &job.digest(job.nonce_start())).await;
    assert_eq!(answer["is_block"], true);
    let (next, waited) = waiting.await.unwrap();
    assert_eq!(next["height"].as_u64(), Some(first.height() + 1));
    assert!(waited < Duration::from_secs(10), "long poll waited {waited:?}");
    assert!(found_at.elapsed() < Duration::from_secs(5));
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_and_never_a_panic() {
    let pool =
        TestPool::start(CoordinatorArgs { node_token: Some("n0de-token-for-tests".into()), ..settings("badinput") })
            .await;
    let token = pool.register("rig", "land1x").await;
    let raw = |path: &str, body: &'static str| {
        pool.http
            .post(format!("{}{path}", pool.url))
            .header("content-type", "application/json")
            .bearer_auth(&token)
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (raw("/pool/share", "{not json"), StatusCode::BAD_REQUEST, "bad_json"),
        (
            raw("/pool/share", r#"{"job_id": 5, "nonce": "x", "digest": []}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_json",
        ),
        (
            raw("/pool/share", r#"{"job_id": "a", "nonce": -1, "digest": "00"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_json",
        ),
        (
            raw("/pool/register", r#"{"worker_id": "bad id!", "wallet_address": "land1x"}"#),
            StatusCode::BAD_REQUEST,
            "bad_field",
        ),
        (
            raw("/pool/register", r#"{"worker_id": "ok", "wallet_address": "land1x", "worker_name": "gir\u202e7"}"#),
            StatusCode::BAD_REQUEST,
            "bad_field",
        ),
        (
            raw("/pool/register", r#"{"worker_id": "ok", "wallet_address": "has space"}"#),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (raw("/pool/register", r#"{"worker_id": "ok", "wallet_address": ""}"#), StatusCode::BAD_REQUEST, "bad_address"),
        (
            pool.http.post(format!("{}/pool/share", pool.url)).body("{}").header("content-type", "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected_json",
        ),
        (
            pool.http
                .post(format!("{}/pool/register", pool.url))
                .header("content-type", "application/json")
                .body(vec![b' '; 200_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (pool.http.get(format!("{}/no/such/route", pool.url)), StatusCode::NOT_FOUND, "no_such_route"),
        (pool.http.delete(format!("{}/pool/job", pool.url)), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (pool.http.get(format!("{}/pool/job", pool.url)), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            pool.http.get(format!("{}/pool/job", pool.url)).bearer_auth("wrong"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            pool.http.get(format!("{}/pool/job?wait=soon", pool.url)).bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (pool.http.get(format!("{}/pool/payouts?limit=1001", pool.url)), StatusCode::BAD_REQUEST, "bad_query"),
        (pool.http.get(format!("{}/pool/blocks?limit=10001", pool.url)), StatusCode::BAD_REQUEST, "bad_query"),
        (pool.http.get(format!("{}/pool/blocks/9999", pool.url)), StatusCode::NOT_FOUND, "unknown_block"),
        (pool.http.get(format!("{}/node/block/abc", pool.url)), StatusCode::BAD_REQUEST, "bad_height"),
        (pool.http.get(format!("{}/node/block/999", pool.url)), StatusCode::NOT_FOUND, "not_found"),
        (
            pool.http.get(format!("{}/node/template?address=bad%20addr", pool.url)),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            pool.http
                .post(format!("{}/node/submit", pool.url))
                .bearer_auth("n0de-token-for-tests")
                .json(&json!({"height": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_json",
        ),
        // Without the credential, the body is not read at all.
        (
            pool.http.post(format!("{}/node/submit", pool.url)).json(&json!({"height": 0})),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (request, status, reason) in cases {
        let response = request.send().await.unwrap();
        let got = response.status();
        // (Some errors quote what the client sent: never to be read as HTML.)
        assert_eq!(response.headers().get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
        let text = response.text().await.unwrap();
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({got}): {text}"));
        assert_eq!((got, json["error"].as_str()), (status, Some(reason)), "{text}");
    }
    // The server still works, and lists at their limits answer.
    assert_eq!(pool.get("/pool/stats").await.status(), StatusCode::OK);
    for path in ["/pool/payouts?limit=1000", "/pool/blocks?limit=10000", "/pool/balances/land1x"] {
        let response = pool.get(path).await;
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        let (status, json) = body(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {json}");
    }
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let pool = TestPool::start(CoordinatorArgs { shares_per_sec: Some(1.0), ..settings("ratelimit") }).await;
    let token = pool.register("fast", "land1x").await;
    let job = pool.job(&token).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let response = pool
            .post_auth(
                "/pool/share",
                &token,
                &json!({"job_id": job.id(), "nonce": job.nonce_start() + i, "digest": "00"}),
            )
            .await;
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        statuses.push((response.status(), retry_after));
    }
    assert_eq!(statuses[0].0, StatusCode::OK);
    let limited =
        statuses.iter().find(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).expect("a 429 within the burst of 2");
    assert!(limited.1.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() >= 1));

    // Registrations are limited per IP address (default 5/s, burst 20).
    let mut statuses = Vec::new();
    for i in 0..30 {
        let response =
            pool.post("/pool/register", &json!({"worker_id": format!("flood-{i}"), "wallet_address": "land1x"})).await;
        statuses.push(body(response).await);
    }
    let (status, refused) =
        statuses.iter().find(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).expect("a registration 429");
    assert_eq!((*status, refused["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_leave_the_active_set_but_keep_their_shares() {
    let pool = TestPool::start(CoordinatorArgs { idle_timeout: Some(0), ..settings("idle") }).await;
    let token = pool.register("sleepy", "land1z").await;
    let job = pool.job(&token).await;
    let nonce = job.nonce_start();
    assert_eq!(pool.share(&token, &job, nonce, &job.digest(nonce)).await.1["accepted"], true);
    assert_eq!(body(pool.get("/pool/stats").await).await.1["workers_active"], 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(pool.pool.as_ref().unwrap().prune_idle(vision_coordinator::pool::now_ms()), 1);
    let (_, stats) = body(pool.get("/pool/stats").await).await;
    assert_eq!(stats["workers_active"], 0);
    let (_, metrics) = body(pool.get("/pool/metrics").await).await;
    assert_eq!(metrics["ledger_shares"], 1, "credited shares stay");
    // Coming back needs no new registration.
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    assert_eq!(body(pool.get("/pool/stats").await).await.1["workers_active"], 1);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sending_invalid_shares_is_banned_persistently_and_can_be_unbanned() {
    let mut config =
        CoordinatorArgs { ban_min_shares: Some(10), admin_token: Some("s3cret-admin-token".into()), ..settings("ban") };
    let data_dir = config.data_dir.clone();
    let pool = TestPool::start(config.clone()).await;
    let token = pool.register("cheater", "land1bad").await;
    let job = pool.job(&token).await;
    // A session with no valid work yet is banned after 5 invalid shares.
    for i in 0..5 {
        let (status, _) = pool.share(&token, &job, job.nonce_start() + i, &"00".repeat(32)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, banned) = pool.share(&token, &job, job.nonce_start() + 11, &"00".repeat(32)).await;
    assert_eq!((status, banned["error"].as_str()), (StatusCode::FORBIDDEN, Some("banned")), "{banned}");
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::FORBIDDEN);
    let (_, stats) = body(pool.get("/pool/stats").await).await;
    let reason = stats["workers"][0]["ban"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("invalid"), "the workers table says why: {stats}");
    pool.stop().await;

    // The ban survives a restart.
    config.data_dir = data_dir;
    let pool = TestPool::start(config).await;
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::FORBIDDEN);
    let (_, bans) = body(pool.get_auth("/pool/bans", "s3cret-admin-token").await).await;
    assert_eq!(bans["bans"][0]["worker_id"], "land1bad.cheater");
    let unban = pool
        .http
        .delete(format!("{}/pool/bans/land1bad.cheater", pool.url))
        .bearer_auth("s3cret-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(unban.status(), StatusCode::OK);
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    pool.stop().await;
}

/// `/healthz` tells a load balancer whether to send miners here: ready with
/// a template (the node down or back: `hardening.rs`). A pool the operator
/// stopped stays ready, saying so, so `/pool/start` through the balancer
/// still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_whether_miners_can_be_served() {
    let pool =
        TestPool::start(CoordinatorArgs { admin_token: Some("t0ken-for-the-tests".into()), ..settings("healthz") })
            .await;
    let (status, ready) = body(pool.get("/healthz").await).await;
    assert_eq!((status, ready["height"].as_u64(), ready["running"].as_bool()), (StatusCode::OK, Some(0), Some(true)));
    assert_eq!(pool.post_auth("/pool/stop", "t0ken-for-the-tests", &json!({})).await.status(), StatusCode::OK);
    let (status, stopped) = body(pool.get("/healthz").await).await;
    assert_eq!((status, stopped["running"].as_bool()), (StatusCode::OK, Some(false)), "{stopped}");
    assert_eq!(pool.post_auth("/pool/start", "t0ken-for-the-tests", &json!({})).await.status(), StatusCode::OK);
    pool.stop().await;
}

/// An operator's change through one coordinator keeps one made through
/// another on the shared store (written straight to the store here, as
/// that coordinator would): a fee change after the pool was stopped
/// elsewhere leaves it stopped, here as well, before the next look at the
/// store would have told this coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_change_keeps_a_stop_made_through_another_coordinator() {
    let pool =
        TestPool::start(CoordinatorArgs { admin_token: Some("t0ken-for-the-tests".into()), ..settings("elsewhere") })
            .await;
    let token = pool.register("rig", "land1x").await;
    let handle = pool.pool.clone().unwrap();
    let store = handle.store_for_tests();
    let read = store.settings().await.unwrap();
    let stopped = PoolSettings { running: false, ..read.clone().unwrap_or_else(|| handle.settings()) };
    store.put_settings(&stopped, read.as_ref()).await.unwrap();
    let (status, configured) =
        body(pool.post_auth("/pool/configure", "t0ken-for-the-tests", &json!({"pool_fee_bps": 300})).await).await;
    assert_eq!((status, &configured["running"]), (StatusCode::OK, &json!(false)), "{configured}");
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, health) = body(pool.get("/healthz").await).await;
    assert_eq!(health["running"], false, "{health}");
    let held = store.settings().await.unwrap().unwrap();
    assert_eq!((held.pool_fee_bps, held.running), (300, false));
    pool.stop().await;
}

/// A share sent again after its answer was lost, once the tip has moved,
/// is answered as credited (it was), not `stale`: a miner counting a block
/// it found as stale would think it lost. One never credited is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credited_share_sent_again_after_the_tip_moved_is_already_credited() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(12), ..settings("resent-after-tip") }).await;
    let token = pool.register("rig-1", "land1resent").await;
    let job = pool.job(&token).await;
    let nonce = job.nonce_start() + 7;
    let digest = job.digest(nonce);
    assert_eq!(pool.share(&token, &job, nonce, &digest).await.1["accepted"], true);
    pool.mine_block(&token).await;
    let (_, again) = pool.share(&token, &job, nonce, &digest).await;
    assert_eq!((&again["accepted"], &again["reason"]), (&json!(true), &json!("already_credited")), "{again}");
    // (The end of the job's range: mining the block sent shares from its start.)
    let never = job.0["nonce_end"].as_u64().unwrap() - 1;
    let (_, stale) = pool.share(&token, &job, never, &job.digest(never)).await;
    assert_eq!((&stale["accepted"], &stale["reason"]), (&json!(false), &json!("stale")), "{stale}");
    pool.stop().await;
}

/// A block's share sent again (its answer lost) is answered as credited,
/// with what became of the block: the miner still learns of its block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_s_share_sent_again_says_what_became_of_the_block() {
    // (Difficulty 1: every share is a block.)
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("block-resent") }).await;
    let token = pool.register("rig-1", "land1blockresent").await;
    let job = pool.job(&token).await;
    let nonce = job.nonce_start();
    let digest = job.digest(nonce);
    let (_, first) = pool.share(&token, &job, nonce, &digest).await;
    assert_eq!((&first["is_block"], &first["block_status"]), (&json!(true), &json!("accepted")), "{first}");
    let (_, again) = pool.share(&token, &job, nonce, &digest).await;
    assert_eq!((&again["accepted"], &again["reason"]), (&json!(true), &json!("already_credited")), "{again}");
    assert_eq!((&again["is_block"], &again["block_status"]), (&json!(true), &json!("accepted")), "{again}");
    assert_eq!(again["block_hash"], first["block_hash"]);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token_and_are_off_without_one() {
    let off = TestPool::start(settings("noadmin")).await;
    let (status, answer) = body(off.post("/pool/stop", &json!({})).await).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::NOT_FOUND, Some("admin_disabled")));
    off.stop().await;

    let pool =
        TestPool::start(CoordinatorArgs { admin_token: Some("t0ken-for-the-tests".into()), ..settings("admin") }).await;
    assert_eq!(pool.post("/pool/stop", &json!({})).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(pool.post_auth("/pool/stop", "wrong", &json!({})).await.status(), StatusCode::FORBIDDEN);
    let (status, fee) =
        body(pool.post_auth("/pool/configure", "t0ken-for-the-tests", &json!({"pool_fee_bps": 1100})).await).await;
    assert_eq!((status, fee["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_fee")));
    let (status, configured) = body(
        pool.post_auth(
            "/pool/configure",
            "t0ken-for-the-tests",
            &json!({"pool_fee_bps": 500, "pool_name": "Test pool"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(configured["pool_fee_bps"], 500);
    let token = pool.register("rig", "land1x").await;
    let (_, registered) =
        body(pool.post("/pool/register", &json!({"worker_id": "rig", "wallet_address": "land1x"})).await).await;
    assert_eq!(
        (registered["pool_fee_bps"].as_u64(), registered["foundation_fee_bps"].as_u64()),
        (Some(500), Some(100))
    );

    let given = pool.job(&token).await;
    assert_eq!(pool.post_auth("/pool/stop", "t0ken-for-the-tests", &json!({})).await.status(), StatusCode::OK);
    let (_, mode) = body(pool.get_auth("/pool/mode", "t0ken-for-the-tests").await).await;
    assert_eq!(mode["running"], false);
    let stopped = pool.get_auth("/pool/job", &token).await;
    assert_eq!(stopped.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(stopped.headers().contains_key("retry-after"));
    // No new work, but a share of a job given out before the stop (a block,
    // maybe) is still taken.
    let nonce = given.first_share();
    let (status, answer) = pool.share(&token, &given, nonce, &given.digest(nonce)).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    assert_eq!(pool.post_auth("/pool/start", "t0ken-for-the-tests", &json!({})).await.status(), StatusCode::OK);
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_pay_once_per_idempotency_key() {
    let pool = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(1),
        coinbase_maturity: Some(0),
        node_token: Some("n0de-token-for-tests".into()),
        ..settings("transfer")
    })
    .await;
    let token = pool.register("rig", "land1x").await;
    for _ in 0..2 {
        let job = pool.job(&token).await;
        let (_, answer) = pool.share(&token, &job, job.nonce_start(), &job.digest(job.nonce_start())).await;
        assert_eq!(answer["is_block"], true);
    }
    let (_, before) = body(pool.get("/node/balance/vision-pool").await).await;
    assert_eq!(before["spendable"], 100_000_000_000u64);
    let transfer = json!({
        "from": "vision-pool",
        "outputs": [{"address": "land1alice", "amount": 30}, {"address": "land1bob", "amount": 12}],
        "idempotency_key": "payout-1",
    });
    let (status, first) = body(pool.post_auth("/node/transfer", "n0de-token-for-tests", &transfer).await).await;
    assert_eq!((status, first["replayed"].as_bool(), first["total"].as_u64()), (StatusCode::OK, Some(false), Some(42)));
    let (status, again) = body(pool.post_auth("/node/transfer", "n0de-token-for-tests", &transfer).await).await;
    assert_eq!((status, again["replayed"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(again["transfer_id"], first["transfer_id"]);
    let (_, after) = body(pool.get("/node/balance/vision-pool").await).await;
    assert_eq!(after["spendable"], 100_000_000_000u64 - 42);
    let (_, alice) = body(pool.get("/node/balance/land1alice").await).await;
    assert_eq!(alice["spendable"], 30);

    let reused = json!({"from": "vision-pool", "outputs": [{"address": "land1bob", "amount": 1}], "idempotency_key": "payout-1"});
    assert_eq!(pool.post_auth("/node/transfer", "n0de-token-for-tests", &reused).await.status(), StatusCode::CONFLICT);
    let too_much = json!({"from": "vision-pool", "outputs": [{"address": "land1bob", "amount": u64::MAX}], "idempotency_key": "big"});
    assert_eq!(
        pool.post_auth("/node/transfer", "n0de-token-for-tests", &too_much).await.status(),
        StatusCode::CONFLICT
    );
    let no_key =
        json!({"from": "land1alice", "outputs": [{"address": "land1bob", "amount": 1}], "idempotency_key": "k"});
    let (status, answer) = body(pool.post_auth("/node/transfer", "n0de-token-for-tests", &no_key).await).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("no_key")));
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_on_an_upstream_node_mines_that_nodes_chain() {
    let node = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(1),
        node_token: Some("n0de-token-for-tests".into()),
        ..settings("node")
    })
    .await;
    let pool = TestPool::start(CoordinatorArgs {
        upstream: Some(node.url.clone()),
        upstream_token: Some("n0de-token-for-tests".into()),
        pool_address: Some("land1pool2".into()),
        ..settings("upstream")
    })
    .await;
    // The upstream pool serves no node API of its own.
    assert_eq!(pool.get("/node/block/0").await.status(), StatusCode::NOT_FOUND);
    let token = pool.register("rig", "land1x").await;
    let job = pool.job(&token).await;
    assert_eq!(job.0["chain_id"], "devnet");
    let (_, answer) = pool.share(&token, &job, job.nonce_start(), &job.digest(job.nonce_start())).await;
    assert_eq!(answer["is_block"], true, "{answer}");
    let (_, block) = body(node.get("/node/block/0").await).await;
    assert_eq!(block["miner"], "land1pool2");
    assert_eq!(block["hash"], answer["block_hash"]);
    // A block found on the node by someone else moves the pool's jobs on.
    let other = node.register("elsewhere", "land1y").await;
    let other_job = node.job(&other).await;
    assert_eq!(other_job.height(), 1);
    node.share(&other, &other_job, other_job.nonce_start(), &other_job.digest(other_job.nonce_start())).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.job(&token).await.height() != 2 {
        assert!(Instant::now() < deadline, "the pool never saw the node's new block");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An "upstream" that is no node (the pool above serves no node API; 404s):
    // miners are told to wait (a 4xx would stop them), and not the node's
    // address or its credentials.
    let with_password = pool.url.replacen("http://", "http://pool:hunter2@", 1);
    let lost = TestPool::start(CoordinatorArgs { upstream: Some(with_password), ..settings("no-node") }).await;
    let (status, answer) =
        body(lost.post("/pool/register", &json!({"worker_id": "w", "wallet_address": "land1z"})).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, refused) = body(lost.get_auth("/pool/job", answer["worker_token"].as_str().unwrap()).await).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("chain_unavailable")));
    let message = refused["message"].as_str().unwrap();
    assert!(!message.contains("hunter2") && !message.contains("127.0.0.1"), "{message}");
    lost.stop().await;
    pool.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_verification_queue_answers_503() {
    let pool = TestPool::start(CoordinatorArgs {
        verify_threads: Some(1),
        verify_queue: Some(1),
        unproven_invalid_limit: Some(1000),
        ..settings("busy")
    })
    .await;
    // Sessions that have shown valid work are not held to the small budget
    // of new sessions; several, as one has a bounded place in the queue.
    let mut sessions = Vec::new();
    for rig in ["burst1", "burst2", "burst3"] {
        let token = pool.register(rig, "land1x").await;
        let job = pool.job(&token).await;
        let proof = job.nonce_start() + 100;
        assert_eq!(pool.share(&token, &job, proof, &job.digest(proof)).await.1["accepted"], true);
        sessions.push((token, job));
    }
    let mut requests = Vec::new();
    for i in 0..48 {
        let (token, job) = &sessions[i as usize % sessions.len()];
        let http = pool.http.clone();
        let url = format!("{}/pool/share", pool.url);
        let body = json!({"job_id": job.id(), "nonce": job.nonce_start() + i, "digest": "00".repeat(32)});
        let token = token.clone();
        requests.push(tokio::spawn(async move {
            let response = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (response.status(), response.headers().contains_key("retry-after"))
        }));
    }
    let mut busy = 0;
    for request in requests {
        let (status, retry_after) = request.await.unwrap();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after);
                busy += 1;
            }
            // Past the session's shares in verification.
            StatusCode::TOO_MANY_REQUESTS => assert!(retry_after),
            _ => assert_eq!(status, StatusCode::OK),
        }
    }
    assert!(busy > 0, "48 concurrent shares through a queue of 1 must overflow");
    let (_, metrics) = body(pool.get("/pool/metrics").await).await;
    assert_eq!(metrics["shares"]["busy"].as_u64(), Some(busy));
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_history_and_the_dashboard_are_served() {
    let pool = TestPool::start(CoordinatorArgs { chart_interval_secs: Some(1), ..settings("charts") }).await;
    let token = pool.register("charted", "land1chart").await;
    let job = pool.job(&token).await;
    for nonce in job.nonce_start()..job.nonce_start() + 3 {
        assert_eq!(pool.share(&token, &job, nonce, &job.digest(nonce)).await.1["accepted"], true);
    }
    // The sampler's first reading is a baseline: wait for a point counting the shares.
    let deadline = Instant::now() + Duration::from_secs(20);
    let history = loop {
        let (status, history) = body(pool.get("/pool/history?range=10m").await).await;
        assert_eq!(status, StatusCode::OK);
        let samples = history["samples"].as_array().unwrap();
        if samples.iter().map(|s| s["accepted"].as_u64().unwrap()).sum::<u64>() == 3 {
            break history;
        }
        assert!(Instant::now() < deadline, "no history point counts the shares: {history}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((history["range"].as_str(), history["interval_ms"].as_u64()), (Some("10m"), Some(1000)));
    let (status, worker) = body(pool.get("/pool/workers/land1chart.charted/history").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!worker["samples"].as_array().unwrap().is_empty(), "{worker}");
    let (status, refused) = body(pool.get("/pool/history?range=1w").await).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_query")));
    let (status, missing) = body(pool.get("/pool/workers/nobody/history").await).await;
    assert_eq!((status, missing["error"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_worker")));

    // The dashboard: a page and its assets, scripts only from the server itself.
    let page = pool.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(page.text().await.unwrap().contains("/assets/dashboard.js"));
    assert_eq!(pool.get("/assets/uPlot.iife.min.js").await.status(), StatusCode::OK);
    let (status, missing) = body(pool.get("/assets/nothing.js").await).await;
    assert_eq!((status, missing["error"].as_str()), (StatusCode::NOT_FOUND, Some("no_such_asset")));
    assert_eq!(pool.post("/", &json!({})).await.status(), StatusCode::METHOD_NOT_ALLOWED);
    pool.stop().await;
}

/// `/pool/stats` is built once per change, however many ask at once (the
/// active set is not walked per request), and a change shows at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_built_once_per_change_however_many_ask() {
    let pool = TestPool::start(settings("snapshots")).await;
    let token = pool.register("rig", "land1snap").await;
    let job = pool.job(&token).await;
    let builds = async || body(pool.get("/pool/metrics").await).await.1["stats_builds"].as_u64().unwrap();
    let before = builds().await;
    let started = Instant::now();
    let readers: Vec<_> = (0..200)
        .map(|_| {
            let (http, url) = (pool.http.clone(), format!("{}/pool/stats", pool.url));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), StatusCode::OK);
    }
    // One build, and one more per second the readers took (rates age).
    let allowed = 1 + started.elapsed().as_secs() + 1;
    assert!(builds().await - before <= allowed, "{} builds for 200 readers", builds().await - before);
    let n = job.nonce_start();
    assert_eq!(pool.share(&token, &job, n, &job.digest(n)).await.1["accepted"], true);
    let (_, stats) = body(pool.get("/pool/stats").await).await;
    assert_eq!(stats["workers"][0]["shares"]["accepted"], 1, "{stats}");
    let (_, worker) = body(pool.get("/pool/workers/land1snap.rig").await).await;
    assert_eq!(worker["shares"]["accepted"], 1, "{worker}");
    // Shares keep changing what the stats show while readers keep asking:
    // builds stay at four a second, not one per read.
    let before = builds().await;
    let started = Instant::now();
    let busy = Duration::from_millis(1500);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (pool.http.clone(), format!("{}/pool/stats", pool.url));
            tokio::spawn(async move {
                let mut reads = 0;
                while started.elapsed() < busy {
                    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut accepted = 1;
    let mut nonce = n;
    while started.elapsed() < busy {
        nonce += 1;
        let (status, answer) = pool.share(&token, &job, nonce, &job.digest(nonce)).await;
        if status == StatusCode::OK {
            assert_eq!(answer["accepted"], true, "{answer}");
            accepted += 1;
        }
    }
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    let (built, took) = (builds().await - before, started.elapsed());
    let allowed = took.as_millis() as u64 / 250 + 2;
    assert!(built <= allowed, "{built} builds in {took:?} for {reads} reads while {accepted} shares came");
    assert!(accepted > 3 && reads > 3, "{accepted} shares, {reads} reads: not a busy pool");
    let (_, stats) = body(pool.get("/pool/stats").await).await;
    assert_eq!(stats["workers"][0]["shares"]["accepted"], accepted, "a read sees the shares before it");
    pool.stop().await;
}

/// `/pool/stats` comes gzipped to clients that take it (every open
/// dashboard reads every worker every few seconds), packed once per
/// snapshot, and plain to the rest; both say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_come_gzipped_to_clients_that_take_it() {
    use std::io::Read;
    let pool = TestPool::start(settings("gzip")).await;
    for i in 0..20 {
        pool.register(&format!("rig{i}"), "land1gzip").await;
    }
    let gzip =
        pool.http.get(format!("{}/pool/stats", pool.url)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzip.status(), StatusCode::OK);
    assert_eq!(gzip.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    assert_eq!(gzip.headers().get("vary").map(|v| v.to_str().unwrap()), Some("accept-encoding"));
    let packed = gzip.bytes().await.unwrap();
    let mut unpacked = String::new();
    flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut unpacked).unwrap();
    let plain = pool.get("/pool/stats").await;
    assert!(plain.headers().get("content-encoding").is_none(), "no encoding unasked");
    let text = plain.text().await.unwrap();
    assert_eq!(unpacked, text, "one snapshot, two encodings");
    assert!(packed.len() < text.len(), "{} bytes packed, {} plain", packed.len(), text.len());
    pool.stop().await;
}
