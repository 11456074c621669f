//! The money path against an outsider and against dropped connections: one
//! regression test per hole found (issue "a money path that outsiders and
//! dropped connections cannot break"), each on a real coordinator on
//! loopback with its own sled files. Sources other than 127.0.0.1 are
//! other loopback addresses (127.0.0.2...), which the pool sees as other
//! clients.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::{client_from, eventually, settings, Job, TestPool};
use vision_coordinator::chain::devnet::SubmitFault;
use vision_coordinator::config::CoordinatorArgs;

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register_with(http: &Client, pool: &TestPool, worker: &str, wallet: &str, name: Option<&str>) -> Value {
    let request = json!({"worker_id": worker, "wallet_address": wallet, "worker_name": name});
    let (status, answer) =
        body(http.post(format!("{}/pool/register", pool.url)).json(&request).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn share_with(
    http: &Client,
    pool: &TestPool,
    token: &str,
    job: &Job,
    nonce: u64,
    digest: &str,
) -> (StatusCode, Value) {
    let request = json!({"job_id": job.id(), "nonce": nonce, "digest": digest});
    body(http.post(format!("{}/pool/share", pool.url)).bearer_auth(token).json(&request).send().await.unwrap()).await
}

/// Sends `digest` for nonces `first`, `first + 1`... of `job` with `token`
/// until the pool answers 403 (banned); whether it did within `tries`.
async fn forge_until_banned(
    http: &Client,
    pool: &TestPool,
    (token, job): (&str, &Job),
    first: u64,
    digest: &str,
    tries: u64,
) -> bool {
    for i in 0..tries {
        if share_with(http, pool, token, job, first + i, digest).await.0 == StatusCode::FORBIDDEN {
            return true;
        }
    }
    false
}

async fn metrics(pool: &TestPool) -> Value {
    body(pool.get("/pool/metrics").await).await.1
}

/// 1. Nothing that moves funds or changes the chain runs without a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_writes_need_a_credential() {
    let transfer =
        json!({"from": "vision-pool", "outputs": [{"address": "land1thief", "amount": 1}], "idempotency_key": "k"});
    let block = json!({"chain_id": "devnet", "height": 0, "parent_hash": "00".repeat(32), "timestamp": 1, "difficulty": 1,
        "tx_root": "00".repeat(32), "miner": "land1thief", "nonce": 0});
    // No token configured: writes are off altogether.
    let off = TestPool::start(settings("nodeoff")).await;
    // The credential is judged before the body: a body of the wrong shape
    // gets the same answer (it is not read, nor its shape told).
    for (path, request) in [("/node/transfer", &transfer), ("/node/submit", &block), ("/node/transfer", &json!({}))] {
        let (status, answer) = body(off.post(path, request).await).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::NOT_FOUND, Some("node_writes_disabled")), "{path}");
    }
    off.stop().await;

    let pool = TestPool::start(CoordinatorArgs {
        node_token: Some("n0de-token-for-tests".into()),
        admin_token: Some("adm1n-token-for-tests".into()),
        ..settings("nodeauth")
    })
    .await;
    for (path, request) in [("/node/transfer", &transfer), ("/node/submit", &block)] {
        assert_eq!(pool.post(path, request).await.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(pool.post(path, &json!({"shape": "wrong"})).await.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(pool.post_auth(path, "wrong", request).await.status(), StatusCode::FORBIDDEN, "{path}");
        let worker = pool.register("rig", "land1x").await;
        assert_eq!(
            pool.post_auth(path, &worker, request).await.status(),
            StatusCode::FORBIDDEN,
            "a worker token is no node token"
        );
    }
    // The node token and the admin token pass (and the transfer then fails
    // for want of funds, not of a credential).
    for token in ["n0de-token-for-tests", "adm1n-token-for-tests"] {
        let (status, answer) = body(pool.post_auth("/node/transfer", token, &transfer).await).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    }
    // Reads stay public.
    assert_eq!(pool.get("/node/balance/vision-pool").await.status(), StatusCode::OK);
    pool.stop().await;
}

/// 2. Knowing a worker's public id and wallet gives no credential of its
/// session, and what an outsider does with that id bans, renames and
/// refuses nothing of the honest worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_cannot_take_over_or_get_a_worker_banned() {
    let pool = TestPool::start(settings("takeover")).await;
    let honest = pool.http.clone();
    let mine = register_with(&honest, &pool, "rig-7", "land1honest", Some("garage")).await;
    let token = mine["worker_token"].as_str().unwrap().to_string();
    let job = pool.job(&token).await;
    let n = job.nonce_start();
    assert_eq!(share_with(&honest, &pool, &token, &job, n, &job.digest(n)).await.1["accepted"], true);

    let attacker = client_from("127.0.0.2");
    let theirs = register_with(&attacker, &pool, "rig-7", "land1honest", Some("pwned")).await;
    let stolen = theirs["worker_token"].as_str().unwrap().to_string();
    assert_ne!(stolen, token, "the same id and wallet must not yield the same credential");
    assert_eq!(theirs["worker_name"], "garage", "a rename needs the worker's own credential");
    // Not even with the credential of the attacker's own session of that worker.
    let request = json!({"worker_id": "rig-7", "wallet_address": "land1honest", "worker_name": "pwned"});
    let answer = body(
        attacker.post(format!("{}/pool/register", pool.url)).bearer_auth(&stolen).json(&request).send().await.unwrap(),
    )
    .await
    .1;
    assert_eq!(answer["worker_name"], "garage", "{answer}");
    // The attacker's session is its own: the honest job is unknown to it...
    let (_, unknown) = share_with(&attacker, &pool, &stolen, &job, n + 1, &job.digest(n + 1)).await;
    assert_eq!(unknown["reason"], "unknown_job");
    // ...and its garbage bans only itself.
    let their_job =
        Job(body(attacker.get(format!("{}/pool/job", pool.url)).bearer_auth(&stolen).send().await.unwrap()).await.1);
    let start = their_job.nonce_start();
    let banned = forge_until_banned(&attacker, &pool, (&stolen, &their_job), start, &"11".repeat(32), 100).await;
    assert!(banned, "the forger was never banned");
    // The honest worker keeps mining, keeps its name, and may register again.
    for i in 2..5 {
        let (status, answer) = share_with(&honest, &pool, &token, &job, n + i, &job.digest(n + i)).await;
        assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    }
    let again = register_with(&honest, &pool, "rig-7", "land1honest", Some("shed")).await;
    assert_eq!(again["worker_name"], "garage", "no rename without the old credential");
    // With its credential, the owner renames.
    let request = json!({"worker_id": "rig-7", "wallet_address": "land1honest", "worker_name": "shed"});
    let renamed = body(
        honest.post(format!("{}/pool/register", pool.url)).bearer_auth(&token).json(&request).send().await.unwrap(),
    )
    .await
    .1;
    assert_eq!(renamed["worker_name"], "shed");
    // The attacker's address cannot register this id again while its ban lasts.
    let request = json!({"worker_id": "rig-7", "wallet_address": "land1honest"});
    let retry = attacker.post(format!("{}/pool/register", pool.url)).json(&request).send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::FORBIDDEN);
    pool.stop().await;
}

/// 3. Registrations racing for a new worker id: its record is written once,
/// atomically (every answer names the first registration's name), and other
/// wallets' rigs of that name are workers of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_bind_one_record() {
    let pool = TestPool::start(CoordinatorArgs { registrations_per_sec: Some(1000.0), ..settings("race") }).await;
    for round in 0..5 {
        let rig = format!("racer-{round}");
        let attempts: Vec<_> = (0..12)
            .map(|i| {
                let (http, url) = (pool.http.clone(), format!("{}/pool/register", pool.url));
                let wallet = if i % 4 == 0 { format!("land1other{i}") } else { "land1racer".into() };
                let request = json!({"worker_id": rig, "wallet_address": wallet, "worker_name": format!("name-{i}")});
                tokio::spawn(async move {
                    let answer = http.post(url).json(&request).send().await.unwrap();
                    assert_eq!(answer.status(), StatusCode::OK);
                    let body: Value = answer.json().await.unwrap();
                    (body["worker_id"].as_str().unwrap().to_string(), body["worker_name"].clone())
                })
            })
            .collect();
        let mut names = HashMap::new();
        for attempt in attempts {
            let (id, name) = attempt.await.unwrap();
            names.entry(id).or_insert_with(HashSet::new).insert(name.to_string());
        }
        assert_eq!(names.len(), 4, "one worker per wallet: {names:?}");
        assert!(names.values().all(|n| n.len() == 1), "each worker's record written once: {names:?}");
        assert_eq!(names[&format!("land1racer.{rig}")].len(), 1);
    }
    pool.stop().await;
}

/// 4. A client hanging up mid-request loses no found block: every block the
/// chain holds for the pool has a record, and every accepted record is on the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_after_a_share_loses_no_block() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("hangup") }).await;
    // A slow node: the client hangs up while its block is being submitted.
    pool.devnet.as_ref().unwrap().delay_submits(600);
    let token = pool.register("quitter", "land1q").await;
    let addr = pool.url.trim_start_matches("http://").to_string();
    // Two blocks: past that the devnet's retarget makes a share no block.
    for height in 0..2u64 {
        // The pool moves to the new tip a moment after the block lands.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut job = pool.job(&token).await;
        while job.height() != height {
            assert!(Instant::now() < deadline, "the pool still mines height {}, not {height}", job.height());
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = pool.job(&token).await;
        }
        let n = job.nonce_start();
        let request = json!({"job_id": job.id(), "nonce": n, "digest": job.digest(n)}).to_string();
        let mut stream = TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST /pool/share HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{request}",
            request.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        drop(stream); // hang up without reading the answer
        eventually("the block to land", Duration::from_secs(20), async || {
            pool.get(&format!("/node/block/{height}")).await.status() == StatusCode::OK
        })
        .await;
    }
    eventually("the records to settle", Duration::from_secs(20), async || {
        let blocks = body(pool.get("/pool/blocks").await).await.1;
        blocks.as_array().unwrap().iter().filter(|b| b["submission"] == "accepted").count() == 2
    })
    .await;
    let blocks = body(pool.get("/pool/blocks").await).await.1;
    for record in blocks.as_array().unwrap() {
        let on_chain = body(pool.get(&format!("/node/block/{}", record["height"])).await).await.1;
        assert_eq!(on_chain["hash"], record["hash"]);
        assert_eq!(on_chain["miner"], "vision-pool");
    }
    pool.stop().await;
}

/// 5. The answer and the record say what the chain did; transient failures
/// are retried; every found block has its own record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_answers_and_records_say_what_the_chain_did() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("blockstatus") }).await;
    let devnet = pool.devnet.clone().unwrap();
    let a = pool.register("a", "land1a").await;
    let b = pool.register("b", "land1b").await;

    // The chain refuses: the answer says so, and both refusals at one height keep their own record.
    devnet.inject(SubmitFault::Reject, 2);
    for token in [&a, &b] {
        let job = pool.job(token).await;
        let n = job.nonce_start();
        let (_, answer) = pool.share(token, &job, n, &job.digest(n)).await;
        assert_eq!(answer["accepted"], true);
        assert_eq!(answer["is_block"], false, "{answer}");
        assert_eq!(
            (answer["block_status"].as_str(), answer["block_reason"].as_str()),
            (Some("rejected"), Some("injected_rejection"))
        );
    }
    let blocks = body(pool.get("/pool/blocks").await).await.1;
    let rejected: Vec<&Value> = blocks.as_array().unwrap().iter().filter(|b| b["status"] == "rejected").collect();
    assert_eq!(rejected.len(), 2, "{blocks}");
    assert_ne!(rejected[0]["hash"], rejected[1]["hash"]);
    assert!(rejected.iter().all(|b| b["height"] == 0 && b["reason"] == "injected_rejection"));

    // The chain is unreachable for a while: answered `submitted`, retried, then accepted.
    devnet.inject(SubmitFault::Unreachable, 3);
    let job = pool.job(&a).await;
    let n = job.nonce_start() + 1;
    let (_, answer) = pool.share(&a, &job, n, &job.digest(n)).await;
    assert_eq!(
        (answer["is_block"].as_bool(), answer["block_status"].as_str()),
        (Some(false), Some("submitted")),
        "{answer}"
    );
    let hash = answer["block_hash"].as_str().unwrap().to_string();
    eventually("the retried block to be accepted", Duration::from_secs(20), async || {
        let blocks = body(pool.get("/pool/blocks").await).await.1;
        blocks.as_array().unwrap().iter().any(|b| b["hash"] == hash.as_str() && b["submission"] == "accepted")
    })
    .await;
    assert_eq!(body(pool.get("/node/block/0").await).await.1["hash"], hash.as_str());
    assert!(metrics(&pool).await["block_submit_retries"].as_u64() >= Some(1));

    // The chain takes the block but its answer is lost: the retry hears
    // "stale", and the record must still say accepted.
    devnet.inject(SubmitFault::LoseAnswer, 1);
    // (The retry records the block accepted, then moves the template on.)
    eventually("the jobs to move past the block", Duration::from_secs(10), async || pool.job(&b).await.height() == 1)
        .await;
    let job = pool.job(&b).await;
    let n = job.nonce_start();
    let (_, answer) = pool.share(&b, &job, n, &job.digest(n)).await;
    assert_eq!(answer["block_status"], "submitted", "{answer}");
    let hash = answer["block_hash"].as_str().unwrap().to_string();
    eventually("the lost answer to be settled from the chain", Duration::from_secs(20), async || {
        let blocks = body(pool.get("/pool/blocks").await).await.1;
        blocks.as_array().unwrap().iter().any(|b| b["hash"] == hash.as_str() && b["submission"] != "submitted")
    })
    .await;
    let blocks = body(pool.get("/pool/blocks").await).await.1;
    let record = blocks.as_array().unwrap().iter().find(|b| b["hash"] == hash.as_str()).unwrap().clone();
    assert_eq!(record["submission"], "accepted", "{record}");
    assert_eq!(body(pool.get("/node/block/1").await).await.1["hash"], hash.as_str());
    pool.stop().await;
}

/// 6a. A tip change at the same height makes old jobs stale: nothing is
/// credited or submitted on an abandoned parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_on_an_abandoned_parent_are_stale() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("deadparent") }).await;
    let devnet = pool.devnet.clone().unwrap();
    let token = pool.register("rig", "land1r").await;
    let first = pool.job(&token).await;
    let n = first.nonce_start();
    assert_eq!(pool.share(&token, &first, n, &first.digest(n)).await.1["is_block"], true);
    let job = pool.job(&token).await;
    assert_eq!(job.height(), 1);
    let replaced = devnet.replace_tip().unwrap();
    eventually("the pool to follow the new tip", Duration::from_secs(10), async || {
        let next = pool.job(&token).await;
        next.0["job_id"] != job.0["job_id"] && next.height() == 1
    })
    .await;
    let n = job.nonce_start() + 3;
    let (_, answer) = pool.share(&token, &job, n, &job.digest(n)).await;
    assert_eq!((answer["accepted"].as_bool(), answer["reason"].as_str()), (Some(false), Some("stale")), "{answer}");
    assert_eq!(pool.get("/node/block/1").await.status(), StatusCode::NOT_FOUND, "nothing submitted on the dead parent");
    let blocks = body(pool.get("/pool/blocks").await).await.1;
    assert_eq!(blocks.as_array().unwrap().len(), 1, "{blocks}");
    assert_ne!(blocks[0]["hash"], replaced.hash.as_str());
    pool.stop().await;
}

/// 6b. Restarted while its chain is unreachable, the pool knows no tip:
/// shares of its old jobs are stale and nothing is submitted as a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tip_unknown_nothing_is_a_block() {
    let node = TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(1),
        node_token: Some("n0de-token-for-tests".into()),
        ..settings("tipnode")
    })
    .await;
    let mut config = CoordinatorArgs {
        upstream: Some(node.url.clone()),
        upstream_token: Some("n0de-token-for-tests".into()),
        pool_address: Some("land1pool".into()),
        ..settings("tippool")
    };
    let pool = TestPool::start(config.clone()).await;
    let token = pool.register("rig", "land1r").await;
    let job = pool.job(&token).await;
    let data_dir = pool.data_dir.clone();
    pool.stop().await;
    let node_url = node.url.clone();
    node.stop().await;

    config.data_dir = Some(data_dir);
    config.upstream = Some(node_url);
    let pool = TestPool::start(config).await;
    let n = job.nonce_start();
    let (_, answer) = pool.share(&token, &job, n, &job.digest(n)).await;
    assert_eq!((answer["accepted"].as_bool(), answer["reason"].as_str()), (Some(false), Some("stale")), "{answer}");
    let blocks = body(pool.get("/pool/blocks").await).await.1;
    assert_eq!(blocks.as_array().unwrap().len(), 0);
    pool.stop().await;
}

/// 7. Forged shares from fresh sessions cost bounded hashing per source,
/// and honest miners are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_shares_from_new_sessions_cost_bounded_hashing() {
    let pool = TestPool::start(CoordinatorArgs { registrations_per_sec: Some(1000.0), ..settings("flood") }).await;
    let honest = pool.register("honest", "land1h").await;
    let job = pool.job(&honest).await;
    let n = job.nonce_start();
    assert_eq!(pool.share(&honest, &job, n, &job.digest(n)).await.1["accepted"], true);
    let before = metrics(&pool).await["share_verifications"].as_u64().unwrap();

    // One fresh session, 124 forged shares: banned after a handful.
    let forger = client_from("127.0.0.3");
    let started = Instant::now();
    let token =
        register_with(&forger, &pool, "forger", "land1f", None).await["worker_token"].as_str().unwrap().to_string();
    let forged_job =
        Job(body(forger.get(format!("{}/pool/job", pool.url)).bearer_auth(&token).send().await.unwrap()).await.1);
    for i in 0..124 {
        share_with(&forger, &pool, &token, &forged_job, forged_job.nonce_start() + i, &"22".repeat(32)).await;
    }
    // Many fresh sessions from one source: they share one budget.
    let mut honest_latencies = Vec::new();
    for s in 0..30 {
        let fresh = register_with(&forger, &pool, &format!("sybil-{s}"), "land1f", None).await["worker_token"]
            .as_str()
            .unwrap()
            .to_string();
        let fresh_job =
            Job(body(forger.get(format!("{}/pool/job", pool.url)).bearer_auth(&fresh).send().await.unwrap()).await.1);
        for i in 0..4 {
            share_with(&forger, &pool, &fresh, &fresh_job, fresh_job.nonce_start() + i, &"33".repeat(32)).await;
        }
        let sent = Instant::now();
        let m = n + 1 + s;
        let (_, answer) = pool.share(&honest, &job, m, &job.digest(m)).await;
        honest_latencies.push(sent.elapsed());
        assert_eq!(answer["accepted"], true, "honest shares are served during the flood: {answer}");
    }
    let hashed = metrics(&pool).await["share_verifications"].as_u64().unwrap() - before - 30;
    let allowed = 20 + 2 * started.elapsed().as_secs() + 2;
    assert!(hashed <= allowed, "{hashed} forged shares hashed; the budget allows {allowed}");
    honest_latencies.sort();
    assert!(honest_latencies[honest_latencies.len() / 2] < Duration::from_secs(1), "{honest_latencies:?}");
    let prometheus = pool.get("/metrics").await.text().await.unwrap();
    assert!(prometheus.contains("vision_pool_share_verifications_total "), "{prometheus}");
    pool.stop().await;
}

/// 8. Job requests reuse the live job: they cannot grow memory or disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_requests_reuse_the_live_job() {
    let pool = TestPool::start(settings("jobs")).await;
    let token = pool.register("poller", "land1p").await;
    let first = pool.job(&token).await;
    for _ in 0..2000 {
        let again = pool.job(&token).await;
        assert_eq!(again.0["job_id"], first.0["job_id"]);
        assert_eq!(again.nonce_start(), first.nonce_start());
    }
    let m = metrics(&pool).await;
    assert_eq!(
        (m["jobs_served"].as_u64(), m["jobs_issued"].as_u64(), m["jobs_in_memory"].as_u64()),
        (Some(2001), Some(1), Some(1))
    );
    pool.stop().await;
}

/// 9. Node submissions hash on a bounded set of threads (503 past it), and
/// the pool API stays responsive meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_submissions_are_bounded() {
    let pool =
        TestPool::start(CoordinatorArgs { node_token: Some("n0de-token-for-tests".into()), ..settings("nodeflood") })
            .await;
    let template = body(pool.get("/node/template?address=land1solo").await).await.1;
    let submissions: Vec<_> = (0..24)
        .map(|nonce| {
            let (http, url) = (pool.http.clone(), format!("{}/node/submit", pool.url));
            let block = json!({"chain_id": template["chain_id"], "height": template["height"], "parent_hash": template["parent_hash"],
                "timestamp": template["timestamp"], "difficulty": template["difficulty"], "tx_root": template["tx_root"],
                "miner": template["miner"], "nonce": nonce});
            tokio::spawn(async move { http.post(url).bearer_auth("n0de-token-for-tests").json(&block).send().await.unwrap().status() })
        })
        .collect();
    let stats_started = Instant::now();
    assert_eq!(pool.get("/pool/stats").await.status(), StatusCode::OK);
    let stats_latency = stats_started.elapsed();
    let mut busy = 0;
    for s in submissions {
        match s.await.unwrap() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => busy += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "24 simultaneous submissions through 2 hashers must overflow");
    assert!(stats_latency < Duration::from_secs(2), "{stats_latency:?}");
    pool.stop().await;
}

/// 12. Connection limits: slow headers are cut off, connections are capped,
/// long-polls are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited() {
    let pool = TestPool::start(CoordinatorArgs {
        header_timeout: Some(1),
        max_connections: Some(2),
        max_long_polls: Some(1),
        ..settings("conns")
    })
    .await;
    let addr = pool.url.trim_start_matches("http://").to_string();
    // A client trickling its headers is dropped.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /pool/stats HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let read = slow.read(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(4), "the slow client was not cut off: {read:?}");
    drop(slow);

    // Two idle connections fill the cap: a third request waits until one goes.
    // (The header timeout cuts the idle ones 1 s after they open: the third
    // gives up well before that.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(quick.get(format!("{}/pool/stats", pool.url)).send().await.is_err(), "served past the connection cap");
    drop(idle);
    eventually("a slot to free up", Duration::from_secs(5), async || {
        quick.get(format!("{}/pool/stats", pool.url)).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    // One long-poll at a time: a second one answers at once.
    let token = pool.register("poller", "land1p").await;
    pool.job(&token).await;
    let (http, url, t) = (pool.http.clone(), format!("{}/pool/job?wait=5", pool.url), token.clone());
    let waiting = tokio::spawn(async move { http.get(url).bearer_auth(t).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = pool.register("poller-2", "land1p").await;
    pool.job(&other).await;
    let started = Instant::now();
    assert_eq!(pool.get_auth("/pool/job?wait=5", &other).await.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2), "the second long-poll waited");
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    pool.stop().await;
}

/// 12. One address cannot hold every connection slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let pool = TestPool::start(CoordinatorArgs { max_connections_per_ip: Some(2), ..settings("per-ip") }).await;
    let addr = pool.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    // A third connection from 127.0.0.1 is told why, and when to come back.
    let refused = quick.get(format!("{}/pool/stats", pool.url)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "too_many_connections");
    let elsewhere = Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let answer = elsewhere.get(format!("{}/pool/stats", pool.url)).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "another address is served");
    let counted = elsewhere.get(format!("{}/pool/metrics", pool.url)).send().await.unwrap();
    assert_eq!(counted.json::<Value>().await.unwrap()["connections_refused"], 1, "the refusal is counted");
    drop(idle);
    eventually("the address's slots to free up", Duration::from_secs(5), async || {
        quick.get(format!("{}/pool/stats", pool.url)).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    pool.stop().await;
}

/// 12a. Nor can a few addresses together: once slots run short, one that
/// holds its fair share (16) gets no more, and another address still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_addresses_cannot_take_every_slot_together() {
    let pool = TestPool::start(CoordinatorArgs { max_connections: Some(64), ..settings("fair-share") }).await;
    let addr = pool.url.trim_start_matches("http://").to_string();
    // 60 idle connections from 127.0.0.1, accepted in turn: held ones stay
    // silent, refused ones wait 2 s for a request to answer, then are closed
    // (a read sees the end).
    let mut open: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for stream in &open {
        stream.set_nonblocking(true).unwrap();
    }
    let closed_by_server = |stream: &mut TcpStream| match stream.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        other => panic!("an answer to no request: {other:?}"),
    };
    // Scarce once fewer than 16 of 64 slots are free: 48 held, the other 12
    // refused (waited for: the server accepts them in turn).
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.len() > 48 {
        assert!(Instant::now() < deadline, "{} of 60 connections still open", open.len());
        open.retain_mut(|stream| !closed_by_server(stream));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    open.retain_mut(|stream| !closed_by_server(stream));
    assert_eq!(open.len(), 48, "connections one address could hold");
    let held = open;
    let elsewhere = client_from("127.0.0.2").get(format!("{}/pool/stats", pool.url)).timeout(Duration::from_secs(2));
    let answer = elsewhere.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "another address is served");
    drop(held);
    pool.stop().await;

    // A trusted proxy carries many clients: never held to a fair share.
    let settings = CoordinatorArgs {
        max_connections: Some(64),
        max_connections_per_ip: Some(64),
        trusted_proxy: Some(vec!["127.0.0.1".into()]),
        ..settings("fair-share-proxy")
    };
    let pool = TestPool::start(settings).await;
    let addr = pool.url.trim_start_matches("http://").to_string();
    let mut open: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for stream in &open {
        stream.set_nonblocking(true).unwrap();
    }
    open.retain_mut(|stream| !closed_by_server(stream));
    assert_eq!(open.len(), 60, "a proxy's connections");
    drop(open);
    pool.stop().await;
}

/// 12b. Behind a trusted proxy, each client its `X-Forwarded-For` names has
/// its own registration budget; a peer that is no trusted proxy cannot buy
/// budgets by naming clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_clients_are_their_own_sources_behind_trusted_proxies_only() {
    let pool = TestPool::start(CoordinatorArgs {
        registrations_per_sec: Some(0.5),
        trusted_proxy: Some(vec!["127.0.0.1/32".into()]),
        ..settings("proxied")
    })
    .await;
    // The burst is 4 x the rate: two registrations, then 429.
    let registered = async |from: &Client, forwarded: &str, n: usize| {
        let mut codes = Vec::new();
        for i in 0..n {
            let request = json!({"worker_id": format!("r{i}"), "wallet_address": "land1proxied"});
            let answer = from
                .post(format!("{}/pool/register", pool.url))
                .header("x-forwarded-for", forwarded)
                .json(&request)
                .send()
                .await
                .unwrap();
            codes.push(answer.status().as_u16());
        }
        codes
    };
    let proxy = client_from("127.0.0.1");
    assert_eq!(registered(&proxy, "203.0.113.1", 3).await, [200, 200, 429]);
    assert_eq!(registered(&proxy, "203.0.113.2", 2).await, [200, 200], "another client behind the proxy");
    // A forged hop left of what the proxy saw changes nothing.
    assert_eq!(registered(&proxy, "198.51.100.9, 203.0.113.1", 1).await, [429]);
    let stranger = client_from("127.0.0.2");
    assert_eq!(registered(&stranger, "203.0.113.3", 2).await, [200, 200]);
    assert_eq!(registered(&stranger, "203.0.113.4", 1).await, [429], "an untrusted peer's header is ignored");
    pool.stop().await;
}

/// 13 and 14. Invalid registrations leave no trace; stale shares and shares
/// of unknown jobs (a pool that forgot them) never ban an honest miner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_mistakes_never_ban_and_junk_leaves_no_state() {
    let pool = TestPool::start(CoordinatorArgs {
        ban_min_shares: Some(10),
        devnet_difficulty: Some(1),
        shares_per_sec: Some(1000.0),
        ..settings("honest")
    })
    .await;
    for i in 0..50 {
        let bad = json!({"worker_id": format!("bad id {i}"), "wallet_address": "land1x"});
        assert_eq!(pool.post("/pool/register", &bad).await.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(metrics(&pool).await["sources_tracked"], 0, "invalid registrations made limiter entries");

    let token = pool.register("steady", "land1s").await;
    let job = pool.job(&token).await;
    let n = job.nonce_start();
    assert_eq!(pool.share(&token, &job, n, &job.digest(n)).await.1["is_block"], true);
    // The old job is stale now; a miner slow to switch sends many of those.
    for i in 1..40 {
        let (status, answer) = pool.share(&token, &job, n + i, &job.digest(n + i)).await;
        assert_eq!((status, answer["reason"].as_str()), (StatusCode::OK, Some("stale")));
    }
    // And shares of jobs the pool does not know (issued before a crash).
    for i in 0..40 {
        let request = json!({"job_id": format!("forgotten{i}"), "nonce": i, "digest": "00".repeat(32)});
        let (status, answer) = body(pool.post_auth("/pool/share", &token, &request).await).await;
        assert_eq!((status, answer["reason"].as_str()), (StatusCode::OK, Some("unknown_job")));
    }
    let next = pool.job(&token).await;
    let m = next.nonce_start();
    assert_eq!(pool.share(&token, &next, m, &next.digest(m)).await.1["accepted"], true, "still not banned");
    pool.stop().await;
}

/// A coordinator (paid to land1pool) whose node is `app` on loopback.
async fn pool_on_fake_node(app: axum::Router, label: &str) -> (TestPool, tokio::task::JoinHandle<()>) {
    pool_on_fake_node_with(app, settings(label)).await
}

/// As [`pool_on_fake_node`], with `settings` otherwise.
async fn pool_on_fake_node_with(
    app: axum::Router,
    settings: CoordinatorArgs,
) -> (TestPool, tokio::task::JoinHandle<()>) {
    let (fake, server) = serve_fake_node(app).await;
    let settings = CoordinatorArgs { upstream: Some(fake), pool_address: Some("land1pool".into()), ..settings };
    (TestPool::start(settings).await, server)
}

/// The real node at `base` answering GET `path_and_query`, passed on as it answered.
async fn forward_get(base: String, path_and_query: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = Client::new().get(format!("{base}{path_and_query}")).send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.bytes().await.unwrap()).into_response()
}

/// `block` submitted to the real node at `base` with its token, the
/// answer passed on as it answered.
async fn forward_submit(base: String, block: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = Client::new()
        .post(format!("{base}/node/submit"))
        .bearer_auth("n0de-token-for-tests")
        .header("content-type", "application/json")
        .body(block)
        .send()
        .await
        .unwrap();
    let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.bytes().await.unwrap()).into_response()
}

/// A fake node in front of the real one at `base`: templates pass through.
fn fake_node_passing_templates(base: &str) -> axum::Router {
    use axum::extract::Query;
    let base = base.to_string();
    axum::Router::new().route(
        "/node/template",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            forward_get(base.clone(), format!("/node/template?address={}", q["address"]))
        }),
    )
}

/// A fake node in front of the real one at `base`: templates and blocks pass through.
fn fake_node_passing_reads(base: &str) -> axum::Router {
    use axum::extract::Path;
    let base = base.to_string();
    fake_node_passing_templates(&base).route(
        "/node/block/{height}",
        axum::routing::get(move |Path(height): Path<u64>| forward_get(base.clone(), format!("/node/block/{height}"))),
    )
}

/// A real node (devnet difficulty 1, node token `n0de`) for a fake one to front.
async fn real_node(label: &str) -> TestPool {
    TestPool::start(CoordinatorArgs {
        devnet_difficulty: Some(1),
        node_token: Some("n0de-token-for-tests".into()),
        ..settings(label)
    })
    .await
}

/// Finds a block through `pool` (answered `submitted`), then waits up to
/// `limit` for it to land `accepted`; settled otherwise is `wrongly`.
async fn find_a_block_that_lands(pool: &TestPool, limit: Duration, wrongly: &str) {
    let token = pool.register("rig", "land1r").await;
    let job = pool.job(&token).await;
    let n = job.nonce_start();
    let (status, answer) = pool.share(&token, &job, n, &job.digest(n)).await;
    assert_eq!((status, answer["block_status"].as_str()), (StatusCode::OK, Some("submitted")), "{answer}");
    let deadline = Instant::now() + limit;
    loop {
        let blocks = pool.json("/pool/blocks").await;
        let ours = &blocks[0];
        match ours["submission"].as_str() {
            Some("accepted") => return,
            Some("submitted") => assert!(Instant::now() < deadline, "never landed: {ours}"),
            _ => panic!("{wrongly}: {ours}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node that refuses the pool's first block submissions (a credential
/// being rotated, a proxy in trouble) has not judged the block: it stays
/// `submitted`, is retried, and lands once the node takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_node_refuses_to_take_at_first_is_retried_not_rejected() {
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let node = real_node("refusing-node").await;
    let refusals = Arc::new(AtomicUsize::new(0));
    // Reads pass through to the real node; the first three submissions get a 401.
    let base = node.url.clone();
    let app = fake_node_passing_reads(&base).route(
        "/node/submit",
        axum::routing::post({
            let (refusals, base) = (refusals.clone(), base.clone());
            move |body: axum::body::Bytes| async move {
                if refusals.fetch_add(1, Ordering::SeqCst) < 3 {
                    let refusal = json!({"error": "unauthorized", "message": "bad token"});
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(refusal)).into_response();
                }
                forward_submit(base, body).await
            }
        }),
    );
    let (pool, server) = pool_on_fake_node(app, "refused-submit").await;
    find_a_block_that_lands(&pool, Duration::from_secs(10), "a block the node never judged was settled").await;
    assert!(refusals.load(Ordering::SeqCst) >= 4);
    assert!(metrics(&pool).await["block_submit_retries"].as_u64() >= Some(3));
    let (_, on_chain) = body(node.get("/node/block/0").await).await;
    assert_eq!(on_chain["miner"], "land1pool");
    pool.stop().await;
    node.stop().await;
    server.abort();
}

/// A block the node took with its answer lost, asked of a node that lags
/// (a load balancer's replica answering 404 for the height the tip is
/// past): not the chain's word, so the block waits for it and lands
/// accepted rather than settled as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_saying_no_block_does_not_reject_one_the_chain_took() {
    use axum::extract::Path;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let node = real_node("lagging-node").await;
    let lookups = Arc::new(AtomicUsize::new(0));
    let base = node.url.clone();
    let app = fake_node_passing_templates(&base)
        .route(
            "/node/block/{height}",
            axum::routing::get({
                let (base, lookups) = (base.clone(), lookups.clone());
                move |Path(height): Path<u64>| async move {
                    // The first lookups reach a replica that has not seen the block.
                    if lookups.fetch_add(1, Ordering::SeqCst) < 2 {
                        let none = json!({"error": "not_found", "message": "no block at that height"});
                        return (axum::http::StatusCode::NOT_FOUND, axum::Json(none)).into_response();
                    }
                    forward_get(base, format!("/node/block/{height}")).await
                }
            }),
        )
        .route(
            "/node/submit",
            axum::routing::post({
                let base = base.clone();
                move |body: axum::body::Bytes| async move {
                    // Taken, and the answer lost on the way back.
                    forward_submit(base, body).await;
                    let lost = json!({"error": "internal", "message": "upstream connection reset"});
                    (axum::http::StatusCode::BAD_GATEWAY, axum::Json(lost)).into_response()
                }
            }),
        );
    let (pool, server) = pool_on_fake_node(app, "lagging-node-pool").await;
    // (Retries back off: 0.25, 0.5, 1, 2, 4, 8 s...)
    let wrongly = "a block the chain took was settled on a lagging node's 404";
    find_a_block_that_lands(&pool, Duration::from_secs(30), wrongly).await;
    assert!(lookups.load(Ordering::SeqCst) >= 3, "the lagging answers were asked");
    let (_, on_chain) = body(node.get("/node/block/0").await).await;
    assert_eq!(on_chain["miner"], "land1pool");
    pool.stop().await;
    node.stop().await;
    server.abort();
}

/// Serves `app` (a fake node) on loopback: its URL, and the server task.
async fn serve_fake_node(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

/// 15. A template whose fields disagree with its header, or that pays
/// someone else, is refused with a metric; miners get no job from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_templates_are_refused() {
    // A real devnet's template, served tampered by a fake node.
    let node = TestPool::start(settings("realnode")).await;
    let genuine = body(node.get("/node/template?address=land1pool").await).await.1;
    node.stop().await;
    for (label, tamper) in [
        ("pow", (|t: &mut Value| t["pow_message"] = json!("00".repeat(32))) as fn(&mut Value)),
        ("seed", |t| t["epoch_seed"] = json!("11".repeat(32))),
        ("miner", |t| t["miner"] = json!("land1someone-else")),
    ] {
        let mut template = genuine.clone();
        tamper(&mut template);
        let served = template.clone();
        let app = axum::Router::new().route(
            "/node/template",
            axum::routing::get(move || {
                let t = served.clone();
                async move { axum::Json(t) }
            }),
        );
        let (pool, server) = pool_on_fake_node(app, label).await;
        let token = pool.register("rig", "land1r").await;
        let (status, answer) = body(pool.get_auth("/pool/job", &token).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{label}: {answer}");
        assert_eq!(answer["error"], "bad_template", "{label}");
        assert!(metrics(&pool).await["templates_refused"].as_u64() >= Some(1), "{label}");
        pool.stop().await;
        server.abort();
    }
}

/// While the node is down, job requests do not each ask it for a template:
/// one asks and the requests behind it take its answer, and for a second
/// after a failure none asks. When it is back, jobs are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_node_is_asked_once_for_a_burst_of_job_requests() {
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let node = TestPool::start(settings("node-up-again")).await;
    let genuine = body(node.get("/node/template?address=land1pool").await).await.1;
    let (asked, up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let app = axum::Router::new().route(
        "/node/template",
        axum::routing::get({
            let (asked, up, genuine) = (asked.clone(), up.clone(), genuine.clone());
            move || {
                asked.fetch_add(1, Ordering::SeqCst);
                let (up, genuine) = (up.load(Ordering::SeqCst), genuine.clone());
                async move {
                    if up {
                        return axum::Json(genuine).into_response();
                    }
                    // A node in trouble: slow, then unavailable.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        }),
    );
    let (pool, server) = pool_on_fake_node(app, "node-down").await;
    let tokens: Vec<String> = {
        let mut tokens = Vec::new();
        for i in 0..20 {
            tokens.push(pool.register(&format!("rig{i}"), "land1down").await);
        }
        tokens
    };
    let burst = async || {
        let requests: Vec<_> = tokens
            .iter()
            .map(|token| {
                let request = Client::new().get(format!("{}/pool/job", pool.url)).bearer_auth(token);
                tokio::spawn(async move { request.send().await.unwrap().status() })
            })
            .collect();
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.unwrap());
        }
        statuses
    };
    let before = asked.load(Ordering::SeqCst);
    let statuses = burst().await;
    let during = asked.load(Ordering::SeqCst) - before;
    assert!(statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    // One for the burst, and the coordinator's own poll (once a second).
    assert!(during <= 3, "the node was asked {during} times for 20 job requests");
    let response = pool.get("/healthz").await;
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let (status, health) = body(response).await;
    assert_eq!((status, health["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")), "{health}");
    assert!(health["message"].as_str().is_some_and(|m| m.contains("template")), "{health}");

    up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.get_auth("/pool/job", &tokens[0]).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "no job once the node was back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(burst().await.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(pool.get("/healthz").await.status(), StatusCode::OK);
    pool.stop().await;
    node.stop().await;
    server.abort();
}

/// Coordinators on one database whose chains disagree on the tip: the one
/// ahead prunes the duplicate keys of old heights, which the one behind
/// still judges current. There, a template claimed below the pruned height
/// takes shares; once pruned, a share credited on it and sent again is
/// refused as stale, not credited a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_behind_the_others_never_credits_a_pruned_share_twice() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "behind";
    let url = server.database(db);
    let on_db = |settings: CoordinatorArgs| CoordinatorArgs { database_url: Some(url.clone()), ..settings };
    // Its devnet finds blocks within moments.
    let fast = CoordinatorArgs { devnet_difficulty: Some(12), block_time: Some(2), ..settings("ahead") };
    let ahead = TestPool::start(on_db(fast)).await;
    let miner = ahead.register("fast", "land1ahead").await;
    let mine_and_prune = async |blocks| {
        for _ in 0..blocks {
            ahead.mine_block(&miner).await;
        }
        let now = vision_coordinator::pool::now_ms();
        ahead.pool.as_ref().unwrap().housekeeping(now).await.unwrap();
    };
    mine_and_prune(4).await;

    // A coordinator whose own devnet is at its start (no hash a block there).
    let behind = TestPool::start(on_db(settings("behind"))).await;
    let token = behind.register("rig", "land1behind").await;
    let job = behind.job(&token).await;
    assert_eq!(job.height(), 0);
    let (nonce, digest) = (job.nonce_start(), job.digest(job.nonce_start()));
    let (status, answer) = behind.share(&token, &job, nonce, &digest).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");

    mine_and_prune(2).await;
    let (status, answer) = behind.share(&token, &job, nonce, &digest).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["accepted"].as_bool(), answer["reason"].as_str()), (Some(false), Some("stale")), "{answer}");
    let credited = server.query(db, "SELECT count(*) FROM pool_shares WHERE record->>'wallet_address' = 'land1behind'");
    assert_eq!(credited, "1", "credited once");
    ahead.stop().await;
    behind.stop().await;
}

/// A coordinator whose node lags the others' (most of them 2+ heights
/// ahead, for 5 s) says it is not ready and hands out no jobs, whose work
/// could never make a block: long-polls are refused at once. A step that
/// leaves it 2 behind changes nothing; once its node catches up it serves
/// again. The others stay ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_whose_node_lags_serves_no_jobs_until_it_catches_up() {
    use std::sync::{Arc, Mutex};
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let url = server.database("lagging");
    let on_db = |settings: CoordinatorArgs| CoordinatorArgs {
        database_url: Some(url.clone()),
        pool_address: Some("land1pool".into()),
        ..settings
    };
    // A coordinator with the chain (its devnet finds blocks within moments,
    // and serves the node API the other one uses).
    let fast = CoordinatorArgs { devnet_difficulty: Some(12), block_time: Some(2), ..settings("lag-ahead") };
    let ahead = TestPool::start(on_db(fast)).await;
    let node_template = async || body(ahead.get("/node/template?address=land1pool").await).await.1;
    // The other one's node: the same chain, as late as the test says.
    let served = Arc::new(Mutex::new(node_template().await));
    let app = axum::Router::new().route(
        "/node/template",
        axum::routing::get({
            let served = served.clone();
            move || {
                let template = served.lock().unwrap().clone();
                async move { axum::Json(template) }
            }
        }),
    );
    let (upstream, node) = serve_fake_node(app).await;
    let lagging = TestPool::start(on_db(CoordinatorArgs { upstream: Some(upstream), ..settings("lag-behind") })).await;
    let token = lagging.register("rig", "land1lag").await;
    assert_eq!(lagging.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    assert_eq!(lagging.get("/healthz").await.status(), StatusCode::OK);

    // The chain goes on three blocks; the lagging node does not.
    let miner = ahead.register("fast", "land1ahead").await;
    ahead.mine_block(&miner).await;
    let one_up = node_template().await;
    ahead.mine_block(&miner).await;
    ahead.mine_block(&miner).await;
    eventually("the lagging coordinator to see it is behind", Duration::from_secs(15), async || {
        lagging.get("/healthz").await.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (_, why) = body(lagging.get("/healthz").await).await;
    assert!(why["message"].as_str().is_some_and(|m| m.contains("behind")), "{why}");
    let (status, answer) = body(lagging.get_auth("/pool/job", &token).await).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")), "{answer}");
    let asked = Instant::now();
    let status = lagging.get_auth("/pool/job?wait=30", &token).await.status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(asked.elapsed() < Duration::from_secs(5), "a long-poll is refused at once: {:?}", asked.elapsed());
    assert_eq!(ahead.get("/healthz").await.status(), StatusCode::OK, "the others stay ready");
    // Operators see it in the metrics.
    assert_eq!(metrics(&lagging).await["behind"], true);
    assert_eq!(metrics(&ahead).await["behind"], false);
    let prometheus = lagging.get("/metrics").await.text().await.unwrap();
    assert!(prometheus.contains("vision_pool_behind 1"), "{prometheus}");

    // One block nearer, still two behind: nothing changes.
    *served.lock().unwrap() = one_up;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(lagging.get("/healthz").await.status(), StatusCode::SERVICE_UNAVAILABLE, "still behind");

    // Its node catches up: ready, and jobs on the tip again.
    *served.lock().unwrap() = node_template().await;
    eventually("the lagging coordinator to be ready again", Duration::from_secs(5), async || {
        lagging.get("/healthz").await.status() == StatusCode::OK
    })
    .await;
    let job = lagging.job(&token).await;
    assert_eq!(Some(job.height()), ahead.pool.as_ref().unwrap().current_height());
    assert_eq!(metrics(&lagging).await["behind"], false);
    ahead.stop().await;
    lagging.stop().await;
    node.abort();
}

/// Coordinators on one database take each other's bans and unbans from the
/// log of ban changes (every ban is read only once a minute), within a
/// couple of seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_unbans_reach_every_coordinator_on_the_database() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let url = server.database("bans");
    let on_db = |label| CoordinatorArgs {
        database_url: Some(url.clone()),
        ban_min_shares: Some(10),
        admin_token: Some("s3cret-admin-token".into()),
        ..settings(label)
    };
    let (a, b) = (TestPool::start(on_db("bans-a")).await, TestPool::start(on_db("bans-b")).await);
    let token = a.register("cheater", "land1bad").await;
    assert_eq!(b.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    // Past each coordinator's first look, which reads every ban.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let job = a.job(&token).await;
    let http = Client::new();
    assert!(forge_until_banned(&http, &a, (&token, &job), job.nonce_start(), &"00".repeat(32), 20).await);
    eventually("the other coordinator to refuse the banned session", Duration::from_secs(3), async || {
        b.get_auth("/pool/job", &token).await.status() == StatusCode::FORBIDDEN
    })
    .await;
    let unban =
        a.http.delete(format!("{}/pool/bans/land1bad.cheater", a.url)).bearer_auth("s3cret-admin-token").send().await;
    assert_eq!(unban.unwrap().status(), StatusCode::OK);
    eventually("the other coordinator to serve the session again", Duration::from_secs(3), async || {
        b.get_auth("/pool/job", &token).await.status() == StatusCode::OK
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// An address at the ban cap through one coordinator is stopped on the
/// others on the database too, and an unban through one frees it on all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ban_cap_holds_on_every_coordinator_on_the_database() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let url = server.database("bancap");
    let on_db = |label| CoordinatorArgs {
        database_url: Some(url.clone()),
        registrations_per_sec: Some(1000.0),
        admin_token: Some("s3cret-admin-token".into()),
        ..settings(label)
    };
    let (a, b) = (TestPool::start(on_db("bancap-a")).await, TestPool::start(on_db("bancap-b")).await);
    let forger = client_from("127.0.0.13");
    for s in 0..16 {
        let answer = register_with(&forger, &a, &format!("cap-{s}"), "land1cap", None).await;
        let token = answer["worker_token"].as_str().unwrap().to_string();
        let job =
            Job(body(forger.get(format!("{}/pool/job", a.url)).bearer_auth(&token).send().await.unwrap()).await.1);
        assert!(forge_until_banned(&forger, &a, (&token, &job), job.nonce_end(), &"66".repeat(32), 10).await);
    }
    let registers_at_b = async || {
        let request = json!({"worker_id": "cap-new", "wallet_address": "land1cap"});
        forger.post(format!("{}/pool/register", b.url)).json(&request).send().await.unwrap().status()
    };
    eventually("the other coordinator to stop the address", Duration::from_secs(5), async || {
        registers_at_b().await == StatusCode::FORBIDDEN
    })
    .await;
    let bans = body(a.get_auth("/pool/bans", "s3cret-admin-token").await).await.1;
    let first = bans["bans"][0]["session_id"].as_str().unwrap().to_string();
    let unban =
        a.http.delete(format!("{}/pool/bans/{first}", a.url)).bearer_auth("s3cret-admin-token").send().await.unwrap();
    assert_eq!(unban.status(), StatusCode::OK);
    eventually("the other coordinator to let the address register again", Duration::from_secs(5), async || {
        registers_at_b().await == StatusCode::OK
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Public reads cost the pool a database connection each. Past their share
/// of the connections they are shed at once (503 busy, Retry-After), never
/// queued in front of anything, and a miner's shares go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_public_reads_is_shed_while_shares_go_on() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "reads";
    // Two general connections: one public read at a time.
    let settings = CoordinatorArgs {
        database_url: Some(server.database(db)),
        database_connections: Some(2),
        // No rewards round takes the other connection meanwhile.
        reward_poll_ms: Some(3_600_000),
        ..settings("public-reads")
    };
    let pool = TestPool::start(settings).await;
    let token = pool.register("rig", "land1reads").await;
    // Active and proven before the flood: what follows is the share path alone.
    assert!(pool.mine(&token, Some(1)).await.is_none());
    std::thread::scope(|scope| {
        // Holds every read of payouts (a slow query, a busy disk).
        let held = scope.spawn(|| {
            server.query(db, "BEGIN; LOCK TABLE pool_payouts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;")
        });
        let asleep = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(4)%' \
                      AND pid <> pg_backend_pid()";
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.query(db, asleep) != "1" {
            assert!(Instant::now() < deadline, "the lock holder never slept");
            std::thread::sleep(Duration::from_millis(50));
        }
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let first = tokio::spawn({
                    let url = format!("{}/pool/payouts", pool.url);
                    async move { reqwest::get(url).await.unwrap().status() }
                });
                let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                               AND query LIKE '%pool_payouts%'";
                while server.query(db, waiting) == "0" {
                    assert!(Instant::now() < deadline, "the first read never reached the lock");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let started = Instant::now();
                for path in ["/pool/payouts", "/pool/blocks", "/pool/balances/land1reads", "/pool/blocks/1"] {
                    let response = pool.get(path).await;
                    let retry_after = response.headers().get("retry-after").cloned();
                    let (status, answer) = body(response).await;
                    assert_eq!((status, answer["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("busy")));
                    assert_eq!(retry_after.as_ref().and_then(|v| v.to_str().ok()), Some("1"), "{path}");
                }
                assert!(started.elapsed() < Duration::from_secs(2), "shed at once, not queued");
                // The miner's work is taken and acknowledged meanwhile.
                assert!(pool.mine(&token, Some(3)).await.is_none());
                assert_eq!(first.await.unwrap(), StatusCode::OK, "the read in flight finishes");
            })
        });
        let _ = held.join();
    });
    let metrics = pool.json("/pool/metrics").await;
    assert_eq!(metrics["public_reads_shed"], 4, "{metrics}");
    // (The second `mine` starts over on the same job: its first share is
    // answered as already credited.)
    assert_eq!((metrics["shares"]["valid"].as_u64(), metrics["shares"]["replayed"].as_u64()), (Some(3), Some(1)));
    assert!(pool.get("/pool/payouts").await.status().is_success(), "reads are served again");
    pool.stop().await;
}

/// Registering is free, and each registration leaves a session (and a new
/// rig name a worker) on disk. Sessions never proven by a share are
/// forgotten within hours, the rest after `session_ttl`, and workers no
/// session names with them; a miner that comes back after that registers
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unproven_registrations_are_forgotten_and_miners_register_again() {
    let pool = TestPool::start(settings("forget")).await;
    let honest = pool.register("rig", "land1honest").await;
    assert!(pool.mine(&honest, Some(1)).await.is_none());
    let junk: Vec<String> = {
        let mut tokens = Vec::new();
        for i in 0..10 {
            tokens.push(pool.register(&format!("junk{i}"), "land1junk").await);
        }
        tokens
    };
    let coordinator = pool.pool.as_ref().unwrap();
    let now = vision_coordinator::pool::now_ms();
    const HOUR: u64 = 3_600_000;
    assert_eq!(coordinator.forget_unused_credentials(now).await.unwrap(), (0, 0), "nothing is old yet");
    // Hours later: the ten unproven sessions go, and their workers (names
    // no session holds: free registrations must not fill the disk).
    assert_eq!(coordinator.forget_unused_credentials(now + 7 * HOUR).await.unwrap(), (10, 10));
    let (status, answer) = body(pool.get_auth("/pool/job", &junk[0]).await).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{answer}");
    // The honest miner's session was proven: kept until the long cutoff.
    assert_eq!(coordinator.forget_unused_credentials(now + 6 * 24 * HOUR).await.unwrap(), (0, 0));
    // Past it: its session, then its worker.
    assert_eq!(coordinator.forget_unused_credentials(now + 8 * 24 * HOUR).await.unwrap(), (1, 1));
    // A forgotten rig registers again, under the same id, and mines.
    let again = pool.register("junk0", "land1junk").await;
    assert!(pool.mine(&again, Some(1)).await.is_none());
    let (status, _) = body(pool.get_auth("/pool/job", &junk[1]).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    pool.stop().await;
}

/// A session forgotten in the store while its miner is at work (hours
/// unproven, say) is not written back by what follows: its first share
/// proves it in memory only, and the worker it named can be forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_session_is_never_written_back() {
    let pool = TestPool::start(settings("no-write-back")).await;
    let token = pool.register("rig", "land1back").await;
    pool.job(&token).await;
    let coordinator = pool.pool.as_ref().unwrap();
    let now = vision_coordinator::pool::now_ms();
    const HOUR: u64 = 3_600_000;
    // The session, unproven, goes after 6 hours; its worker, a name no
    // session names, with it (free registrations must not fill the disk).
    assert_eq!(coordinator.forget_unused_credentials(now + 7 * HOUR).await.unwrap(), (1, 1));
    assert!(pool.mine(&token, Some(1)).await.is_none(), "its share is credited all the same");
    assert_eq!(
        coordinator.forget_unused_credentials(now + 8 * 24 * HOUR).await.unwrap(),
        (0, 0),
        "no session or worker came back"
    );
    pool.stop().await;
}

/// A session another coordinator's prune forgot in the store leaves this
/// coordinator's memory at its next housekeeping: its miner is told to
/// register again, rather than mining on a credential no store knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_forgotten_in_the_store_leaves_memory_at_housekeeping() {
    let pool = TestPool::start_tuned(settings("forgotten-in-store"), |config| {
        // Touched in the store every 100 ms of use; no housekeeping but ours.
        config.pool.unproven_session_ttl = Duration::from_millis(400);
        config.pool.history_interval = Duration::from_secs(3600);
    })
    .await;
    let token = pool.register("rig", "land1gone").await;
    pool.job(&token).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    pool.job(&token).await;
    let coordinator = pool.pool.as_ref().unwrap();
    let now = vision_coordinator::pool::now_ms();
    // As another coordinator's prune would: the stored record goes.
    assert_eq!(coordinator.forget_unused_credentials(now + 1_000).await.unwrap().0, 1);
    pool.job(&token).await;
    coordinator.housekeeping(now).await.unwrap();
    let response = pool.get_auth("/pool/job", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["message"].as_str().unwrap_or_default().contains("register"), "{answer}");
    let token = pool.register("rig", "land1gone").await;
    pool.job(&token).await;
    pool.stop().await;
}

/// One session, however fast it sends, has at most 16 shares in
/// verification: a flood of 100 forged shares at once from a proven
/// session never fills a verification queue of 16 (no 503 `busy`, which
/// would refuse other miners' shares too); the rest are told to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_fill_the_verification_queue() {
    let pool = TestPool::start(CoordinatorArgs {
        verify_threads: Some(1),
        verify_queue: Some(16),
        ban_invalid_ratio: Some(1.0),
        ..settings("verify-share")
    })
    .await;
    let token = pool.register("flood", "land1flood").await;
    let job = pool.job(&token).await;
    let proof = job.nonce_start() + 100;
    assert_eq!(pool.share(&token, &job, proof, &job.digest(proof)).await.1["accepted"], true);
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let (http, url) = (pool.http.clone(), format!("{}/pool/share", pool.url));
            let forged = json!({"job_id": job.id(), "nonce": job.nonce_start() + i, "digest": "00".repeat(32)});
            let token = token.clone();
            tokio::spawn(
                async move { body(http.post(url).bearer_auth(token).json(&forged).send().await.unwrap()).await },
            )
        })
        .collect();
    let mut told_to_wait = 0;
    for request in requests {
        let (status, answer) = request.await.unwrap();
        match status {
            StatusCode::OK => assert_eq!(answer["reason"], "bad_digest", "{answer}"),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer["error"], "rate_limited");
                told_to_wait += 1;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    assert!(told_to_wait > 0, "100 shares at once all went to verification");
    let shares = &metrics(&pool).await["shares"];
    assert_eq!((shares["busy"].as_u64(), shares["rate_limited"].as_u64()), (Some(0), Some(told_to_wait)));
    pool.stop().await;
}

/// A rig's reported hash rate is shown and summed: an absurd one is capped,
/// so the pool's figures stay numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_reported_hash_rate_is_capped() {
    let pool = TestPool::start(settings("absurd-rate")).await;
    let token = pool.register("rig", "land1big").await;
    let job = pool.job(&token).await;
    let n = job.nonce_start();
    let share = json!({"job_id": job.id(), "nonce": n, "digest": job.digest(n), "hashrate": 1e300});
    let (status, answer) = body(pool.post_auth("/pool/share", &token, &share).await).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    let worker = pool.json("/pool/workers/land1big.rig").await;
    assert_eq!(worker["hashrate"]["reported"].as_f64(), Some(1e15), "{worker}");
    pool.stop().await;
}

/// Registering is free: however many sessions are made, only so many with
/// no accepted share yet are active at once. Past that the one seen
/// longest ago leaves (and comes back at its next request), so a flood of
/// them cannot lock new miners out; proven sessions are never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_without_a_share_are_capped_in_memory() {
    let pool = TestPool::start(CoordinatorArgs { max_unproven_sessions: Some(2), ..settings("unproven-cap") }).await;
    let proven = pool.register("proven", "land1cap").await;
    assert!(pool.mine(&proven, Some(1)).await.is_none());
    let [a, b, late] = [
        pool.register("a", "land1cap").await,
        pool.register("b", "land1cap").await,
        pool.register("c", "land1cap").await,
    ];
    let counts = async || {
        let m = metrics(&pool).await;
        (m["sessions_unproven"].as_u64().unwrap(), m["unproven_evicted"].as_u64().unwrap())
    };
    pool.job(&a).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    pool.job(&b).await;
    assert_eq!(counts().await, (2, 0));
    // At the cap: the newcomer gets in, the stalest (a) leaves.
    pool.job(&late).await;
    assert_eq!(counts().await, (2, 1));
    // And a is back at its next request, in b's place.
    pool.job(&a).await;
    assert_eq!(counts().await, (2, 2));
    // A proven session is never counted.
    let coordinator = pool.pool.as_ref().unwrap();
    let now = vision_coordinator::pool::now_ms();
    pool.job(&proven).await;
    assert_eq!(counts().await, (2, 2));
    // One proves itself: it leaves the count.
    assert!(pool.mine(&a, Some(1)).await.is_none());
    assert_eq!(counts().await.0, 1);
    // Idle ones leave the active set, and the count with them.
    assert_eq!(coordinator.prune_idle(now + 3_600_000), 3);
    assert_eq!(counts().await, (0, 2));
    let text = pool.get("/metrics").await.text().await.unwrap();
    assert!(text.lines().any(|l| l == "vision_pool_sessions_unproven 0"), "{text}");
    assert!(text.lines().any(|l| l == "vision_pool_unproven_evicted_total 2"), "{text}");
    pool.stop().await;
}

/// Each new job is a durable write and a job held in memory: requests of
/// one session racing each other cannot pass its cap of new jobs on one
/// template (past it they are told to come back, or get the live job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_job_requests_stay_under_the_cap() {
    let pool = TestPool::start(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("job-race") }).await;
    let token = pool.register("rig", "land1race").await;
    // Active, with a job; then a block: a new template no job of it is on.
    pool.mine_block(&token).await;
    let before = pool.json("/pool/metrics").await["jobs_issued"].as_u64().unwrap();
    let requests: Vec<_> = (0..160)
        .map(|_| {
            let (http, url, token) = (pool.http.clone(), format!("{}/pool/job", pool.url), token.clone());
            tokio::spawn(async move { body(http.get(url).bearer_auth(token).send().await.unwrap()).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for request in requests {
        let (status, answer) = request.await.unwrap();
        match status {
            StatusCode::OK => {
                ids.insert(answer["job_id"].as_str().unwrap().to_string());
            }
            _ => assert_eq!((status, answer["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("busy"))),
        }
    }
    let issued = pool.json("/pool/metrics").await["jobs_issued"].as_u64().unwrap() - before;
    assert!(!ids.is_empty() && ids.len() as u64 == issued, "{} ids, {issued} issued", ids.len());
    assert!(issued <= 16, "{issued} jobs issued to one session on one template");
    pool.stop().await;
}

/// A session costs nothing to open, and each ban is a stored record every
/// coordinator reads: an address that keeps earning bans may not register
/// at all once 16 of its sessions are banned. Other addresses are not
/// affected, and the operator can lift the bans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_earning_bans_is_stopped_registering() {
    let pool = TestPool::start(CoordinatorArgs {
        registrations_per_sec: Some(1000.0),
        admin_token: Some("admin-token-for-tests".into()),
        ..settings("ban-cap")
    })
    .await;
    let forger = client_from("127.0.0.9");
    for s in 0..16 {
        let answer = register_with(&forger, &pool, &format!("junk-{s}"), "land1junk", None).await;
        let token = answer["worker_token"].as_str().unwrap().to_string();
        let job =
            Job(body(forger.get(format!("{}/pool/job", pool.url)).bearer_auth(&token).send().await.unwrap()).await.1);
        // Outside its range: refused unhashed, and counted toward a ban.
        let banned = forge_until_banned(&forger, &pool, (&token, &job), job.nonce_end(), &"33".repeat(32), 10).await;
        assert!(banned, "session {s} was never banned");
    }
    let request = json!({"worker_id": "junk-new", "wallet_address": "land1junk"});
    let refused = forger.post(format!("{}/pool/register", pool.url)).json(&request).send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    let (status, answer) = body(refused).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::FORBIDDEN, Some("banned")), "{answer}");
    // Another address registers as ever.
    pool.register("honest", "land1fine").await;
    // Once the operator lifts one ban, the address may register again.
    let bans = body(pool.get_auth("/pool/bans", "admin-token-for-tests").await).await.1;
    let first = bans["bans"][0]["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        pool.http
            .delete(format!("{}/pool/bans/{first}", pool.url))
            .bearer_auth("admin-token-for-tests")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    register_with(&forger, &pool, "junk-new", "land1junk", None).await;
    pool.stop().await;
}

/// The bytes of public answers not yet written are bounded: a list past
/// what is left of the budget is answered 503 `busy` (here a budget of
/// 1 KiB, against a list of three blocks), while small answers still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_answers_past_their_byte_budget_are_busy() {
    let pool =
        TestPool::start_tuned(CoordinatorArgs { devnet_difficulty: Some(1), ..settings("answer-bytes") }, |config| {
            config.pool.public_answer_bytes = 1024;
        })
        .await;
    let token = pool.register("rig", "land1bytes").await;
    for _ in 0..3 {
        pool.mine_block(&token).await;
    }
    let response = pool.get("/pool/blocks").await;
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, answer) = body(response).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("busy")), "{answer}");
    assert_eq!(retry_after.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(pool.get("/pool/balances/land1bytes").await.status(), StatusCode::OK, "a small answer fits");
    assert_eq!(pool.json("/pool/metrics").await["public_reads_shed"], 1);
    pool.stop().await;
}

/// The /64s of one IPv6 /48 (given away free by tunnel brokers) share a
/// ban cap of 16 sources' worth: 256 bans spread at 8 a /64, none of them
/// at its own cap, stop the whole site registering; another site is not
/// affected. (Read from the store at start: no other coordinator needed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subnets_of_one_ipv6_site_share_a_ban_cap() {
    let behind_proxy = CoordinatorArgs {
        registrations_per_sec: Some(1000.0),
        trusted_proxy: Some(vec!["127.0.0.1/32".into()]),
        ..settings("site-ban-cap")
    };
    let pool = TestPool::start(behind_proxy.clone()).await;
    let handle = pool.pool.clone().unwrap();
    let store = handle.store_for_tests().clone();
    let until_ms = vision_coordinator::pool::now_ms() + 3_600_000;
    for subnet in 0..32 {
        for n in 0..8 {
            let ban = vision_coordinator::storage::BanRecord {
                session_id: format!("s-{subnet}-{n}"),
                worker_id: format!("land1junk.r{subnet}-{n}"),
                source: Some(format!("2001:db8:7:{subnet:x}::{n:x}")),
                until_ms,
                reason: "invalid shares".into(),
            };
            store.put_ban(&ban).await.unwrap();
        }
    }
    let data_dir = pool.data_dir.clone();
    drop((store, handle));
    pool.stop().await;
    let pool = TestPool::start(CoordinatorArgs { data_dir: Some(data_dir), ..behind_proxy }).await;
    let proxy = client_from("127.0.0.1");
    let register_from = async |client: &str| {
        let request = json!({"worker_id": "fresh", "wallet_address": "land1site"});
        let answer = proxy
            .post(format!("{}/pool/register", pool.url))
            .header("x-forwarded-for", client)
            .json(&request)
            .send()
            .await
            .unwrap();
        body(answer).await
    };
    let (status, answer) = register_from("2001:db8:7:ffff::1").await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::FORBIDDEN, Some("banned")), "{answer}");
    let (status, answer) = register_from("2001:db8:8::1").await;
    assert_eq!(status, StatusCode::OK, "another site: {answer}");
    pool.stop().await;
}

/// Sessions opened before an address's bans piled up (registration is free,
/// and refused only from the 16th ban on) may not each earn a ban of their
/// own: once the address is stopped registering, its unproven sessions are
/// refused too, and no more ban records are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_opened_before_the_ban_cap_add_no_bans_past_it() {
    let pool = TestPool::start(CoordinatorArgs {
        registrations_per_sec: Some(1000.0),
        admin_token: Some("admin-token-for-tests".into()),
        ..settings("ban-cap-early")
    })
    .await;
    let forger = client_from("127.0.0.10");
    let mut sessions = Vec::new();
    for s in 0..20 {
        let answer = register_with(&forger, &pool, &format!("early-{s}"), "land1early", None).await;
        let token = answer["worker_token"].as_str().unwrap().to_string();
        let job =
            Job(body(forger.get(format!("{}/pool/job", pool.url)).bearer_auth(&token).send().await.unwrap()).await.1);
        sessions.push((token, job));
    }
    for (s, (token, job)) in sessions.iter().enumerate() {
        let banned = forge_until_banned(&forger, &pool, (token, job), job.nonce_end(), &"55".repeat(32), 10).await;
        assert!(banned, "session {s} was never refused");
    }
    let bans = body(pool.get_auth("/pool/bans", "admin-token-for-tests").await).await.1;
    assert_eq!(bans["bans"].as_array().unwrap().len(), 16, "{bans}");
    // The refused sessions' jobs are refused too, with a Retry-After.
    let (token, _) = &sessions[19];
    let refused = forger.get(format!("{}/pool/job", pool.url)).bearer_auth(token).send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(body(refused).await.0, StatusCode::FORBIDDEN);
    // An honest miner elsewhere is untouched.
    let honest = pool.register("honest", "land1fine").await;
    assert_eq!(pool.get_auth("/pool/job", &honest).await.status(), StatusCode::OK);
    pool.stop().await;
}

/// One address cannot take every long-poll slot: once a quarter of them
/// are left, a source holding its fair share (an eighth, at most 16) is
/// answered at once, and
/// an honest miner's long-poll is still held (so it hears the next block
/// the moment it comes, not at its next poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_long_poll() {
    let pool = TestPool::start(CoordinatorArgs { max_long_polls: Some(64), ..settings("long-poll-share") }).await;
    let flooder = client_from("127.0.0.12");
    let flood_token =
        register_with(&flooder, &pool, "flood", "land1flood", None).await["worker_token"].as_str().unwrap().to_string();
    body(flooder.get(format!("{}/pool/job", pool.url)).bearer_auth(&flood_token).send().await.unwrap()).await;
    let mut held = Vec::new();
    for _ in 0..64 {
        let request = flooder.get(format!("{}/pool/job?wait=5", pool.url)).bearer_auth(&flood_token);
        held.push(tokio::spawn(async move {
            let started = Instant::now();
            let _ = request.send().await;
            started.elapsed()
        }));
    }
    // Every flood request has its answer (16 at once) or its slot (48).
    let deadline = Instant::now() + Duration::from_secs(3);
    while held.iter().filter(|h| h.is_finished()).count() < 16 {
        assert!(Instant::now() < deadline, "the flood's extra long-polls were not answered at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let honest = pool.register("honest", "land1honest").await;
    pool.job(&honest).await;
    let started = Instant::now();
    assert_eq!(pool.get_auth("/pool/job?wait=2", &honest).await.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the honest long-poll was not held: {:?}",
        started.elapsed()
    );
    let mut answered_at_once = 0;
    for request in held {
        answered_at_once += usize::from(request.await.unwrap() < Duration::from_secs(3));
    }
    assert_eq!(answered_at_once, 16, "the flood holds 48 of 64 slots, the rest answered at once");
    pool.stop().await;
}

/// A session whose ban ran out works again at once: its expired ban is
/// lifted on its next request (a path that once locked the bans twice and
/// hung the server's thread), and its shares are verified and accepted
/// again (they were once refused as banned for as long as it kept asking).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_again_when_its_ban_runs_out() {
    let pool = TestPool::start(CoordinatorArgs { ban_seconds: Some(1), ..settings("ban-expiry") }).await;
    let token = pool.register("rig", "land1expiry").await;
    let job = pool.job(&token).await;
    let banned = forge_until_banned(&pool.http, &pool, (&token, &job), job.nonce_end(), &"44".repeat(32), 10).await;
    assert!(banned, "never banned");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), pool.get_auth("/pool/job", &token))
        .await
        .expect("an answer, not a hung server");
    assert_eq!(answer.status(), StatusCode::OK);
    // Honest shares now (each answered 200 and accepted, or this fails).
    pool.mine(&token, Some(2)).await;
    // With fresh counts: one more bad share is no ban (an unproven session
    // is banned after several; the share that bans is answered as itself).
    let job = pool.job(&token).await;
    let (status, answer) = share_with(&pool.http, &pool, &token, &job, job.nonce_end() + 100, &"44".repeat(32)).await;
    assert_ne!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK, "not banned again");
    pool.stop().await;
}

/// The operator's tokens cannot be guessed at line rate: after 10 wrong
/// ones an address waits (6 s a try), and meanwhile even the right token is
/// not compared, on the admin and node routes alike; another address, and
/// the operator's, are not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_the_admin_token_is_held() {
    let pool = TestPool::start(CoordinatorArgs {
        admin_token: Some("the-admin-token-for-tests".into()),
        node_token: Some("the-node-token-for-tests".into()),
        ..settings("guesses")
    })
    .await;
    let guesser = client_from("127.0.0.14");
    let mode = |client: &Client, token: &str| {
        client.get(format!("{}/pool/mode", pool.url)).bearer_auth(token).timeout(Duration::from_secs(5)).send()
    };
    for guess in 0..10 {
        let answer = mode(&guesser, &format!("guess-{guess}")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "guess {guess}");
    }
    let held = mode(&guesser, "guess-10").await.unwrap();
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(held.headers().contains_key("retry-after"));
    let (status, body) = body(mode(&guesser, "the-admin-token-for-tests").await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")), "{body}");
    let transfer = guesser
        .post(format!("{}/node/transfer", pool.url))
        .bearer_auth("the-node-token-for-tests")
        .json(&json!({"outputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(transfer.status(), StatusCode::TOO_MANY_REQUESTS, "the node routes hold it too");
    assert_eq!(mode(&client_from("127.0.0.15"), "the-admin-token-for-tests").await.unwrap().status(), StatusCode::OK);
    assert_eq!(mode(&pool.http, "the-admin-token-for-tests").await.unwrap().status(), StatusCode::OK);
    pool.stop().await;
}

/// A worker's name is kept as the dashboard shows it: trimmed, single
/// spaces; a blank one is none (and names nothing), and hidden characters
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_names_are_kept_as_they_show() {
    let pool = TestPool::start(settings("names")).await;
    let http = Client::new();
    let named = register_with(&http, &pool, "rig", "land1names", Some("  basement \u{3000} rig  ")).await;
    assert_eq!(named["worker_name"], "basement rig", "{named}");
    let blank = register_with(&http, &pool, "rig2", "land1names", Some(" \u{2003} ")).await;
    assert!(blank["worker_name"].is_null(), "{blank}");
    for name in ["rig\u{200B}", "rig\tname", "a\u{2028}b"] {
        let hidden = http
            .post(format!("{}/pool/register", pool.url))
            .json(&json!({"worker_id": "rig3", "wallet_address": "land1names", "worker_name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(body(hidden).await.1["error"], "bad_field", "{name:?}");
    }
    pool.stop().await;
}

/// A name stored before today's rules (here written to the store behind
/// the pool's back) is shown as none, both to a new registration of its
/// worker id and on the dashboard's figures once its session is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_name_failing_the_rules_is_shown_as_none() {
    use vision_coordinator::storage::{PoolStore, SledStore};
    let args = settings("stored-names");
    let pool = TestPool::start(args.clone()).await;
    let token = pool.register("rig", "land1stored").await;
    let data_dir = pool.data_dir.clone();
    pool.stop().await;
    {
        let store = SledStore::open_path(&data_dir.join("db")).unwrap();
        let mut worker = store.worker("land1stored.rig").await.unwrap().expect("the worker is stored");
        worker.worker_name = Some("gir\u{202E}7".into());
        store.put_worker(&worker).await.unwrap();
    }
    let pool = TestPool::start(args).await;
    let again = register_with(&Client::new(), &pool, "rig", "land1stored", None).await;
    assert!(again["worker_name"].is_null(), "{again}");
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK);
    let worker = pool.json("/pool/workers/land1stored.rig").await;
    assert!(worker["worker_name"].is_null(), "{worker}");
    pool.stop().await;
}

/// Makes the database refuse the writes `what` names (a trigger's
/// `BEFORE` clause: "INSERT ON pool_bans FOR EACH ROW"), as a failing disk
/// would; `DROP TRIGGER refuse_writes ON <table>` ends it.
fn refuse_writes(server: &support::throwaway_postgres::ThrowawayPostgres, db: &str, what: &str) {
    server.query(
        db,
        &format!(
            "CREATE OR REPLACE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'the disk is on fire'; END $$; \
             CREATE TRIGGER refuse_writes BEFORE {what} EXECUTE FUNCTION refuse_writes();"
        ),
    );
}

/// A registration runs to its end though its client hangs up part-way
/// (here while a trigger in the real database holds the worker's insert a
/// second): the session its token opens is stored with the worker id it
/// bound, not the id alone, bound to a token nobody holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_cut_off_by_its_client_still_stores_its_session() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "cutregister";
    let pool =
        TestPool::start(CoordinatorArgs { database_url: Some(server.database(db)), ..settings("cut-register") }).await;
    server.query(
        db,
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$; \
         CREATE TRIGGER slow_insert BEFORE INSERT ON pool_workers FOR EACH ROW EXECUTE FUNCTION slow_insert();",
    );
    let impatient = Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let request = json!({"worker_id": "rig", "wallet_address": "land1cut"});
    let cut = impatient.post(format!("{}/pool/register", pool.url)).json(&request).send().await;
    assert!(cut.is_err(), "the client gave up first: {cut:?}");
    let stored = "SELECT count(*) FROM pool_sessions WHERE record->>'worker_id' = 'land1cut.rig'";
    eventually("the session to be stored", Duration::from_secs(5), async || server.query(db, stored) == "1").await;
    pool.stop().await;
}

/// A block that is a new session's first accepted share goes to the chain
/// even when the store refuses to note the session as proven (here a
/// trigger in the real database refuses that one write): the share and the
/// block are durable, and a resubmission would only be answered
/// already_credited, so nothing else would ever submit it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_share_that_is_a_block_reaches_the_chain_though_the_session_is_not_noted() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "unnoted";
    let settings = CoordinatorArgs {
        database_url: Some(server.database(db)),
        devnet_difficulty: Some(1),
        ..settings("unnoted-session")
    };
    let pool = TestPool::start(settings).await;
    let token = pool.register("rig", "land1unnoted").await;
    let job = pool.job(&token).await;
    let proving = "UPDATE ON pool_sessions FOR EACH ROW \
                   WHEN ((NEW.record->>'proven')::boolean AND NOT coalesce((OLD.record->>'proven')::boolean, false))";
    refuse_writes(&server, db, proving);
    let nonce = job.first_share();
    let (status, answer) = pool.share(&token, &job, nonce, &job.digest(nonce)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["accepted"].as_bool(), answer["block_status"].as_str()), (Some(true), Some("accepted")));
    let block = pool.json(&format!("/node/block/{}", job.height())).await;
    assert_eq!(block["hash"], answer["block_hash"], "the chain holds the block");
    let proven = server.query(db, "SELECT record->>'proven' FROM pool_sessions");
    assert_eq!(proven, "false", "the trigger refused the write");
    pool.stop().await;
}

/// A ban the store refuses to write (here a trigger in the real database
/// refuses it) is not in force: no session is refused by a ban nobody can
/// see or lift. The forger's share is answered "try again"; once the store
/// takes writes again, its next bad share bans it, stored and in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_the_store_refuses_to_write_is_not_in_force() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "unwritten_ban";
    let pool =
        TestPool::start(CoordinatorArgs { database_url: Some(server.database(db)), ..settings("unwritten-ban") }).await;
    let token = pool.register("rig", "land1unwritten").await;
    let job = pool.job(&token).await;
    refuse_writes(&server, db, "INSERT ON pool_bans FOR EACH ROW");
    let forged = "44".repeat(32);
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(share_with(&pool.http, &pool, &token, &job, job.nonce_end() + i, &forged).await.0);
    }
    assert!(!statuses.contains(&StatusCode::FORBIDDEN), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE), "the ban's write was refused: {statuses:?}");
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::OK, "no ban in force");
    assert_eq!(server.query(db, "SELECT count(*) FROM pool_bans"), "0");

    server.query(db, "DROP TRIGGER refuse_writes ON pool_bans");
    assert!(forge_until_banned(&pool.http, &pool, (&token, &job), job.nonce_end() + 10, &forged, 3).await);
    assert_eq!(pool.get_auth("/pool/job", &token).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.query(db, "SELECT count(*) FROM pool_bans"), "1");
    pool.stop().await;
}

/// A prune of old share keys that fails (the database refuses it here) is
/// tried again at the next housekeeping, not left until the chain moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prune_is_tried_again_at_the_next_housekeeping() {
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let db = "prune_again";
    let fast = CoordinatorArgs {
        database_url: Some(server.database(db)),
        devnet_difficulty: Some(12),
        block_time: Some(2),
        ..settings("prune-again")
    };
    let pool = TestPool::start(fast).await;
    let miner = pool.register("fast", "land1prune").await;
    refuse_writes(&server, db, "DELETE ON pool_share_keys FOR EACH ROW");
    for _ in 0..6 {
        pool.mine_block(&miner).await;
    }
    let handle = pool.pool.as_ref().unwrap();
    let now = vision_coordinator::pool::now_ms();
    assert!(handle.housekeeping(now).await.is_err(), "the database refused the prune");
    let old_keys = "SELECT count(*) FROM pool_share_keys WHERE height < 2";
    assert_ne!(server.query(db, old_keys), "0");
    server.query(db, "DROP TRIGGER refuse_writes ON pool_share_keys");
    handle.housekeeping(now).await.unwrap();
    assert_eq!(server.query(db, old_keys), "0", "pruned at the next housekeeping");
    pool.stop().await;
}

/// A fake node in front of the real one at `base` whose templates, while
/// `far` is not 0, are at that height: consistent in themselves, only the
/// height absurd.
fn fake_node_with_far_templates(base: &str, far: std::sync::Arc<std::sync::atomic::AtomicU64>) -> axum::Router {
    use axum::extract::Query;
    let base = base.to_string();
    axum::Router::new().route(
        "/node/template",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let (base, far) = (base.clone(), far.clone());
            async move {
                let url = format!("{base}/node/template?address={}", q["address"]);
                let mut template: vision_protocol::node::BlockTemplate =
                    Client::new().get(url).send().await.unwrap().json().await.unwrap();
                let height = far.load(std::sync::atomic::Ordering::SeqCst);
                if height > 0 {
                    template.header.height = height;
                    let input = template.pow_input().unwrap();
                    template.epoch = input.epoch();
                    template.epoch_seed = hex::encode(input.epoch_seed());
                    template.pow_message = hex::encode(input.header());
                }
                axum::Json(template)
            }
        }),
    )
}

/// One template far above the chain (a node's glitch, or an answer forged
/// on plain HTTP) prunes none of the jobs, templates and share keys in
/// use: pruning never passes the template it replaces. It used to prune
/// them all, so the chain's own template was then refused as pruned, and
/// every miner's work was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_far_ahead_prunes_nothing_in_use() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let node = real_node("far-node").await;
    let far = Arc::new(AtomicU64::new(0));
    let (pool, server) = pool_on_fake_node(fake_node_with_far_templates(&node.url, far.clone()), "far-ahead").await;
    let handle = pool.pool.clone().unwrap();
    let token = pool.register("rig", "land1far").await;
    let job = pool.job(&token).await;
    let n = job.nonce_start();
    assert_eq!(pool.share(&token, &job, n, &job.digest(n)).await.1["accepted"], true);

    far.store(1 << 40, Ordering::SeqCst);
    // (Installed by this refresh, or by the pool's own polling first.)
    handle.refresh_template().await.unwrap();
    assert_eq!(handle.current_height(), Some(1 << 40), "the far template is mined");
    handle.housekeeping(vision_coordinator::pool::now_ms()).await.unwrap();
    far.store(0, Ordering::SeqCst);
    let back = handle.refresh_template().await;
    assert!(back.is_ok(), "the chain's own template again: {back:?}");
    handle.housekeeping(vision_coordinator::pool::now_ms()).await.unwrap();
    // The job in use before is current again, its share's key kept.
    let (_, again) = pool.share(&token, &job, n, &job.digest(n)).await;
    assert_eq!(again["accepted"], true, "the same share, known: {again}");
    let (_, next) = pool.share(&token, &job, n + 1, &job.digest(n + 1)).await;
    assert_eq!(next["accepted"], true, "{next}");
    drop(handle);
    server.abort();
    pool.stop().await;
    node.stop().await;
}

/// The first template a coordinator mines replaces the highest one stored
/// below it: far ahead, it prunes nothing other coordinators sharing the
/// database mine (here one joins with a far template while another mines),
/// not even when it restarts while the glitch lasts (the far template is
/// then the one stored for its tip, and must not lift the cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_template_far_ahead_prunes_nothing_of_the_others() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let server = support::throwaway_postgres::ThrowawayPostgres::start();
    let database = server.database("far_first");
    let node = real_node("far-first-node").await;
    let on = |app: axum::Router, label: &'static str| {
        pool_on_fake_node_with(app, CoordinatorArgs { database_url: Some(database.clone()), ..settings(label) })
    };
    let (mining, mining_node) = on(fake_node_with_far_templates(&node.url, Arc::default()), "far-first-a").await;
    let token = mining.register("rig", "land1first").await;
    let job = mining.job(&token).await;
    let n = job.nonce_start();
    assert_eq!(mining.share(&token, &job, n, &job.digest(n)).await.1["accepted"], true);

    let far = Arc::new(AtomicU64::new(1 << 40));
    // It joins, then restarts while the glitch lasts.
    for (run, nonce) in [("joining", n + 1), ("restarted", n + 2)] {
        let (joining, joining_node) = on(fake_node_with_far_templates(&node.url, far.clone()), "far-first-b").await;
        let handle = joining.pool.clone().unwrap();
        eventually("the far template to be mined", Duration::from_secs(10), async || {
            handle.current_height() == Some(1 << 40)
        })
        .await;
        handle.housekeeping(vision_coordinator::pool::now_ms()).await.unwrap();
        let (_, next) = mining.share(&token, &job, nonce, &job.digest(nonce)).await;
        assert_eq!(next["accepted"], true, "{run}: the other coordinator's template and keys are whole: {next}");
        drop(handle);
        joining_node.abort();
        joining.stop().await;
    }
    mining_node.abort();
    mining.stop().await;
    node.stop().await;
}

/// A coordinator restarted more often than blocks come mines one template
/// a run; the first template of each still prunes below the heights kept
/// under the highest template stored before it. (It pruned nothing, so
/// such a coordinator's jobs, templates and share keys grew without end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restarted_between_blocks_still_prunes() {
    use vision_coordinator::storage::{PoolStore, SledStore};
    let node = real_node("restarted-node").await;
    let node_miner = node.register("rig", "land1node").await;
    let args = CoordinatorArgs {
        upstream: Some(node.url.clone()),
        upstream_token: Some("n0de-token-for-tests".into()),
        pool_address: Some("land1pool".into()),
        ..settings("restarted")
    };
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let pool = TestPool::start(args.clone()).await;
        let token = pool.register("rig", "land1restarted").await;
        let job = pool.job(&token).await;
        jobs.push((job.height(), job.id().to_string()));
        pool.stop().await;
        node.mine_block(&node_miner).await;
    }
    let first = jobs[0].0;
    assert_eq!(jobs.iter().map(|j| j.0).collect::<Vec<_>>(), (first..first + 5).collect::<Vec<_>>());
    let pool = TestPool::start(args).await;
    let handle = pool.pool.clone().unwrap();
    eventually("the run's template", Duration::from_secs(10), async || handle.current_height() == Some(first + 5))
        .await;
    handle.housekeeping(vision_coordinator::pool::now_ms()).await.unwrap();
    drop(handle);
    let data_dir = pool.data_dir.clone();
    pool.stop().await;
    let store = SledStore::open_path(&data_dir.join("db")).unwrap();
    // Kept: the heights below the one replaced (first + 4), as within a run.
    assert!(store.job(&jobs[0].1).await.unwrap().is_none(), "the job of {first} is pruned");
    assert!(store.job(&jobs[1].1).await.unwrap().is_some(), "the job of {} is kept", first + 1);
    assert_eq!(
        store.highest_template_height_below(first + 1).await.unwrap(),
        None,
        "the template of {first} is pruned"
    );
    assert_eq!(store.highest_template_height_below(first + 2).await.unwrap(), Some(first + 1));
    node.stop().await;
}

/// A fake node's `/node/submit`, passed on to the real node at `base`.
fn submit_forwarded_to(base: &str) -> axum::routing::MethodRouter {
    let base = base.to_string();
    axum::routing::post(move |body: axum::body::Bytes| forward_submit(base.clone(), body))
}

/// Finds a block through `pool` (on a fake node fronting `node`, of devnet
/// difficulty 1: every share is a block) with the session of `token`,
/// until `node` holds one at `height`.
async fn find_block_at(pool: &TestPool, node: &TestPool, token: &str, height: u64) {
    eventually("a block found", Duration::from_secs(10), async || {
        let job = pool.job(token).await;
        let n = job.nonce_start();
        let (_, answer) = pool.share(token, &job, n, &job.digest(n)).await;
        answer["is_block"] == true && body(node.get(&format!("/node/block/{height}")).await).await.0 == StatusCode::OK
    })
    .await;
}

/// A far tip the node holds in its own chain for one answer (a glitch
/// that passes the tip's check: its block at that height has its hash)
/// confirms no block early: depths count from the lower of two answers.
/// Nor do far answers for a while: the block of the last confirmation must
/// be on the chain. Once the chain grows past the block, it is confirmed;
/// one far answer then does not end its orphan watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_far_tip_the_node_holds_confirms_no_block() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    const FAR: u64 = 1 << 40;
    let node = real_node("far-tip-held-node").await;
    // Tip answers still to be the far one.
    let far_answers = Arc::new(AtomicU32::new(0));
    let base = node.url.clone();
    // The real tip moved to `FAR` and given a hash of its own.
    let far_block = async |base: &str| {
        let mut tip: Value = Client::new().get(format!("{base}/node/tip")).send().await.unwrap().json().await.unwrap();
        tip["height"] = json!(FAR);
        tip["hash"] = json!("f".repeat(64));
        tip
    };
    let app = fake_node_passing_templates(&base)
        .route("/node/submit", submit_forwarded_to(&base))
        .route(
            "/node/block/{height}",
            axum::routing::get({
                let base = base.clone();
                move |axum::extract::Path(height): axum::extract::Path<u64>| {
                    let base = base.clone();
                    async move {
                        use axum::response::IntoResponse;
                        if height == FAR {
                            return axum::Json(far_block(&base).await).into_response();
                        }
                        forward_get(base, format!("/node/block/{height}")).await
                    }
                }
            }),
        )
        .route(
            "/node/tip",
            axum::routing::get({
                let (base, far_answers) = (base.clone(), far_answers.clone());
                move || {
                    let (base, far_answers) = (base.clone(), far_answers.clone());
                    async move {
                        use axum::response::IntoResponse;
                        if far_answers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                            return axum::Json(far_block(&base).await).into_response();
                        }
                        forward_get(base, "/node/tip".into()).await
                    }
                }
            }),
        );
    let settings = CoordinatorArgs { confirmations: Some(2), reward_poll_ms: Some(100), ..settings("far-tip-held") };
    let (pool, server) = pool_on_fake_node_with(app, settings).await;
    let token = pool.register("rig", "land1r").await;
    let find_block = async |height: u64| find_block_at(&pool, &node, &token, height).await;
    find_block(0).await;
    eventually("the block to be credited", Duration::from_secs(10), async || {
        pool.json("/pool/blocks/0").await["split"].as_array().is_some_and(|split| !split.is_empty())
    })
    .await;
    // One far answer, then rounds (every 100 ms) on the real tip.
    far_answers.store(1, Ordering::SeqCst);
    eventually("the far tip to be asked for", Duration::from_secs(10), async || {
        far_answers.load(Ordering::SeqCst) == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = pool.json("/pool/blocks/0").await;
    assert_eq!(held["status"], "pending", "confirmed on one far answer: {held}");
    // Far answers for a while (a bad replica): the chain holds no block at
    // the last confirmation's height, so nothing is confirmed either.
    far_answers.store(u32::MAX, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let left = far_answers.swap(0, Ordering::SeqCst);
    assert!(left <= u32::MAX - 2, "no round ran on the far answers");
    let held = pool.json("/pool/blocks/0").await;
    assert_eq!(held["status"], "pending", "confirmed on far answers: {held}");
    find_block(1).await;
    eventually("the block to be confirmed", Duration::from_secs(10), async || {
        pool.json("/pool/blocks/0").await["status"] == "confirmed"
    })
    .await;
    // One far answer ends no orphan watch either: a reorganisation after
    // it still orphans the block.
    far_answers.store(1, Ordering::SeqCst);
    eventually("the far tip to be asked for", Duration::from_secs(10), async || {
        far_answers.load(Ordering::SeqCst) == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.devnet.as_ref().unwrap().reorganise(2).unwrap();
    eventually("the block to be orphaned", Duration::from_secs(10), async || {
        pool.json("/pool/blocks/0").await["status"] == "orphaned"
    })
    .await;
    pool.stop().await;
    node.stop().await;
    server.abort();
}

/// A tip far ahead of the chain (a node's glitch) confirms no block early:
/// a rewards round counts depths only from a tip the node holds in its own
/// chain. Once the tip is right again, blocks are confirmed as the chain
/// grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tip_far_ahead_confirms_no_block_early() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let node = real_node("tip-ahead-node").await;
    let ahead = Arc::new(AtomicBool::new(true));
    let base = node.url.clone();
    let app = fake_node_passing_reads(&base).route("/node/submit", submit_forwarded_to(&base)).route(
        "/node/tip",
        axum::routing::get({
            let (base, ahead) = (base.clone(), ahead.clone());
            move || {
                let (base, ahead) = (base.clone(), ahead.clone());
                async move {
                    let mut tip: Value =
                        Client::new().get(format!("{base}/node/tip")).send().await.unwrap().json().await.unwrap();
                    if ahead.load(Ordering::SeqCst) {
                        tip["height"] = json!(1u64 << 40);
                    }
                    axum::Json(tip)
                }
            }
        }),
    );
    let settings = CoordinatorArgs { confirmations: Some(2), reward_poll_ms: Some(100), ..settings("tip-ahead") };
    let (pool, server) = pool_on_fake_node_with(app, settings).await;
    let token = pool.register("rig", "land1r").await;
    let find_block = async |height: u64| find_block_at(&pool, &node, &token, height).await;
    find_block(0).await;
    // (Rounds every 100 ms: ten of them on the far tip.)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = pool.json("/pool/blocks/0").await;
    assert_ne!(held["status"], "confirmed", "confirmed on a tip the node does not hold: {held}");
    // The tip right again, and the chain grows past the block: confirmed.
    ahead.store(false, Ordering::SeqCst);
    find_block(1).await;
    eventually("the block to be confirmed", Duration::from_secs(10), async || {
        pool.json("/pool/blocks/0").await["status"] == "confirmed"
    })
    .await;
    // The far tip again for a few rounds ends no orphan watch: a
    // reorganisation after it still orphans the block.
    ahead.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ahead.store(false, Ordering::SeqCst);
    node.devnet.as_ref().unwrap().reorganise(2).unwrap();
    eventually("the block to be orphaned", Duration::from_secs(10), async || {
        pool.json("/pool/blocks/0").await["status"] == "orphaned"
    })
    .await;
    pool.stop().await;
    node.stop().await;
    server.abort();
}
