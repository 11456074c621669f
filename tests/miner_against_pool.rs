//! The real `vision-miner` against a real `vision-coordinator`, as separate
//! processes on loopback: mining, job switches, a pool killed and restarted,
//! failover and failback, Retry-After, solo mining, and the exit codes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_suite::{exit_within, fresh_dir, post_json, workspace_binary};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port held (bound, not listening: connecting is refused, as
/// to a pool not started) until dropped, so nothing else takes it while a
/// test waits to start a pool there.
fn reserved_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pool {
    proc: Proc,
    url: String,
    port: u16,
    data_dir: PathBuf,
    args: Vec<String>,
}

impl Pool {
    /// A pool on a port the system picks.
    fn start(data_dir: &Path, args: &[&str]) -> Pool {
        Pool::start_on(data_dir, 0, args)
    }

    /// A pool on `port` (0: any).
    fn start_on(data_dir: &Path, port: u16, args: &[&str]) -> Pool {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut child = Command::new(workspace_binary("vision-coordinator"))
            .args(["--data-dir", data_dir.to_str().unwrap(), "--bind", &format!("127.0.0.1:{port}")])
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("serving"), "coordinator did not start: {line:?}");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Pool { proc: Proc(child), url, port, data_dir: data_dir.to_path_buf(), args }
    }

    fn restart(self) -> Pool {
        let (dir, port, args) = (self.data_dir.clone(), self.port, self.args.clone());
        drop(self);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Pool::start_on(&dir, port, &args)
    }
}

struct Miner {
    proc: Proc,
    api: String,
}

impl Miner {
    /// On one CPU thread.
    fn start(args: &[&str]) -> Miner {
        Miner::on(&["--backend", "cpu", "--threads", "1"], args)
    }

    /// On `devices` (the `--backend`, `--device` and `--threads` given).
    fn on(devices: &[&str], args: &[&str]) -> Miner {
        let api_port = free_port();
        let child = Command::new(workspace_binary("vision-miner"))
            .args(devices)
            .args(["--status-interval", "3600"])
            .args(["--api-bind", &format!("127.0.0.1:{api_port}")])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Miner { proc: Proc(child), api: format!("http://127.0.0.1:{api_port}") }
    }

    /// Mining at `pools` in failover order for `wallet`, the primary tried
    /// again every `failback_secs`, long-polls of `long_poll_secs`.
    fn failing_over(pools: [&str; 2], wallet: &str, failback_secs: u64, long_poll_secs: u64) -> Miner {
        let (failback, long_poll) = (failback_secs.to_string(), long_poll_secs.to_string());
        Miner::start(&[
            "--pool",
            pools[0],
            "--pool",
            pools[1],
            "--wallet",
            wallet,
            "--failback-secs",
            &failback,
            "--long-poll-secs",
            &long_poll,
        ])
    }

    fn alive(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_none()
    }

    /// Its exit, once it comes within `limit` (else the test fails, saying
    /// `what` it was still doing).
    async fn exit_within(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.proc.0.try_wait().unwrap() {
                return exit;
            }
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn get_json(url: &str) -> Option<Value> {
    let response = reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    response.json().await.ok()
}

/// Polls `url` until `check` accepts its JSON, or fails after `limit`.
async fn wait_for(url: &str, limit: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(value) = get_json(url).await {
            if check(&value) {
                return value;
            }
            last = Some(value);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}; last answer from {url}: {last:?}");
}

fn accepted(status: &Value) -> u64 {
    status["accepted"].as_u64().unwrap_or(0)
}

const MINUTE: Duration = Duration::from_secs(60);

/// A miner's status: mining at `url`, connected.
fn connected_to(status: &Value, url: &str) -> bool {
    status["connection"]["url"] == url && status["connection"]["connected"] == true
}

/// A miner's status: banned by every pool, waiting the ban out.
fn waiting_out_a_ban(status: &Value) -> bool {
    status["connection"]["last_error"].as_str().is_some_and(|e| e.contains("banned by every pool"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_registers_mines_and_its_shares_are_accepted() {
    let pool = Pool::start(
        &fresh_dir("m-basic"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1basic", "--worker", "basic"]);
    // The rate comes from completed work, sampled each second.
    let status = wait_for(&format!("{}/status", miner.api), MINUTE, "3 accepted shares and a measured rate", |s| {
        accepted(s) >= 3 && s["hashrate"]["h10s"].as_f64() > Some(0.0)
    })
    .await;
    assert_eq!(status["rejected"], 0);
    assert_eq!(status["connection"]["connected"], true);
    // Shares carry the miner's measured rate; the pool shows it beside the effective one.
    let worker = wait_for(&format!("{}/pool/workers/land1basic.basic", pool.url), MINUTE, "the reported rate", |w| {
        w["shares"]["accepted"].as_u64() >= Some(3) && w["hashrate"]["reported"].as_f64() > Some(0.0)
    })
    .await;
    assert_eq!(worker["wallet_address"], "land1basic");
    let page = reqwest::get(format!("{}/", miner.api)).await.unwrap().text().await.unwrap();
    assert!(page.contains("vision-miner") && page.contains("/assets/miner.js"), "the owner's page: {page}");
}

/// Whether this machine has a GPU adapter (`vision-miner devices`); none
/// fails the test in CI, which has lavapipe.
fn has_gpu_adapter() -> bool {
    let out = Command::new(workspace_binary("vision-miner")).args(["devices", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = listed["gpus"].as_array().is_some_and(|gpus| !gpus.is_empty());
    assert!(found || std::env::var_os("CI").is_none(), "CI needs a GPU adapter (lavapipe): {listed}");
    if !found {
        eprintln!("skipping: no GPU adapter; install mesa-vulkan-drivers");
    }
    found
}

/// `--backend all`: the GPU named (here lavapipe, a software adapter, which
/// only naming it adds) and a CPU thread mine the same job side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_on_every_device_mines_on_the_gpu_and_the_cpu_at_once() {
    if !has_gpu_adapter() {
        return;
    }
    let pool = Pool::start(
        &fresh_dir("m-all"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let miner = Miner::on(
        &["--backend", "all", "--device", "0", "--threads", "1"],
        &["--pool", &pool.url, "--wallet", "land1all", "--worker", "all"],
    );
    let hashing = |s: &Value, name: &str| {
        s["devices"].as_array().unwrap().iter().any(|d| d["name"] == name && d["hashes"].as_u64() > Some(0))
    };
    let status = wait_for(&format!("{}/status", miner.api), 2 * MINUTE, "the GPU and the CPU hashing", |s| {
        accepted(s) >= 3 && hashing(s, "gpu0") && hashing(s, "cpu")
    })
    .await;
    assert_eq!((status["devices"].as_array().unwrap().len(), &status["cpu_threads"]), (2, &json!(1)), "{status}");
    assert_eq!(status["rejected"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_switches_jobs_as_blocks_are_found() {
    let pool = Pool::start(
        &fresh_dir("m-blocks"),
        &["--share-difficulty", "50", "--devnet-difficulty", "300", "--block-time", "2"],
    );
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1blocks"]);
    let stats =
        wait_for(&format!("{}/pool/stats", pool.url), MINUTE, "3 blocks", |s| s["blocks_found"].as_u64() >= Some(3))
            .await;
    assert!(stats["height"].as_u64().unwrap() >= 3);
    let status = wait_for(&format!("{}/status", miner.api), MINUTE, "the miner at the new height", |s| {
        s["connection"]["height"].as_u64() >= Some(3) && s["blocks"].as_u64() >= Some(1)
    })
    .await;
    // Switching is prompt, so stale shares stay rare.
    assert!(status["stale"].as_u64().unwrap() <= accepted(&status), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_keeps_going_when_the_pool_is_killed_and_restarted() {
    let pool = Pool::start(
        &fresh_dir("m-restart"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let mut miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1restart", "--long-poll-secs", "2"]);
    let status_url = format!("{}/status", miner.api);
    let before = accepted(&wait_for(&status_url, MINUTE, "2 accepted shares", |s| accepted(s) >= 2).await);

    let (pool, kept) = {
        let mut pool = pool;
        pool.proc.0.kill().unwrap(); // SIGKILL
        pool.proc.0.wait().unwrap();
        // Shares found while the pool is down are kept.
        let down = wait_for(&status_url, MINUTE, "shares kept while the pool is down", |s| {
            s["connection"]["connected"] == false && s["pending"].as_u64() >= Some(1)
        })
        .await;
        assert!(miner.alive(), "a pool restart never ends the miner");
        (pool.restart(), down["pending"].as_u64().unwrap())
    };
    // ...and resubmitted once it is back (their job is still current: the pool persisted it).
    wait_for(&status_url, MINUTE, "kept shares resubmitted and accepted", |s| {
        s["pending"] == 0 && accepted(s) >= before + kept && s["connection"]["connected"] == true
    })
    .await;
    assert!(miner.alive());
    drop(pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_stops_stale_work_when_no_job_comes_for_several_block_times() {
    let mut pool = Pool::start(
        &fresh_dir("m-stale"),
        &["--share-difficulty", "50", "--block-time", "1", "--devnet-difficulty", "1000000000"],
    );
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1stale"]);
    let status_url = format!("{}/status", miner.api);
    wait_for(&status_url, MINUTE, "mining", |s| accepted(s) >= 1).await;
    pool.proc.0.kill().unwrap();
    pool.proc.0.wait().unwrap();
    // Four block times (4 s) without a job: the devices stop.
    // (A 10 s rate needs 10 s of samples: before that it reads 0 too.)
    let stopped = wait_for(&status_url, MINUTE, "hashing to stop", |s| {
        s["uptime_secs"].as_u64() >= Some(12) && s["hashrate"]["h10s"].as_f64() == Some(0.0)
    })
    .await;
    let hashes = stopped["devices"][0]["hashes"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = get_json(&status_url).await.unwrap();
    assert_eq!(later["devices"][0]["hashes"].as_u64(), Some(hashes), "no hashing on stale work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_fails_over_and_returns_to_the_first_pool() {
    let (reserved, first_port) = reserved_port();
    let first_url = format!("http://127.0.0.1:{first_port}");
    let second = Pool::start(
        &fresh_dir("m-second"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let miner = Miner::failing_over([&first_url, &second.url], "land1fo", 2, 2);
    let status_url = format!("{}/status", miner.api);
    wait_for(&status_url, MINUTE, "shares on the second pool", |s| {
        s["connection"]["url"] == second.url.as_str() && accepted(s) >= 2
    })
    .await;
    drop(reserved);
    let first = Pool::start_on(
        &fresh_dir("m-first"),
        first_port,
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    wait_for(&status_url, MINUTE, "back on the first pool", |s| connected_to(s, &first.url)).await;
    wait_for(&format!("{}/pool/stats", first.url), MINUTE, "shares on the first pool", |s| {
        s["shares"]["accepted"].as_u64() >= Some(1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_honours_retry_after_and_resumes() {
    let pool = Pool::start(
        &fresh_dir("m-503"),
        &[
            "--share-difficulty",
            "50",
            "--target-share-seconds",
            "1",
            "--devnet-difficulty",
            "1000000000",
            "--admin-token",
            "t-admin-token-for-tests",
        ],
    );
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1retry", "--long-poll-secs", "1"]);
    let status_url = format!("{}/status", miner.api);
    let before = accepted(&wait_for(&status_url, MINUTE, "a share", |s| accepted(s) >= 1).await);
    let admin = reqwest::Client::new();
    admin
        .post(format!("{}/pool/stop", pool.url))
        .bearer_auth("t-admin-token-for-tests")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let waiting = wait_for(&status_url, MINUTE, "the 503 to be honoured", |s| {
        s["connection"]["last_error"].as_str().is_some_and(|e| e.contains("pool_stopped"))
    })
    .await;
    // The pool's Retry-After, and up to a quarter more (rigs spread out).
    let retry_in = waiting["connection"]["retry_in_secs"].as_u64();
    assert!(matches!(retry_in, Some(5 | 6)), "the pool's Retry-After: {waiting}");
    admin
        .post(format!("{}/pool/start", pool.url))
        .bearer_auth("t-admin-token-for-tests")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    wait_for(&status_url, MINUTE, "mining to resume", |s| accepted(s) > before && s["connection"]["connected"] == true)
        .await;
}

/// A pool that keeps answering 503 (stopped, or its chain down) has no work
/// to give: after two such answers the miner moves to the next pool, and
/// returns once the first gives jobs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_keeps_answering_503_is_failed_over() {
    let args = ["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"];
    let first =
        Pool::start(&fresh_dir("m-503-first"), &[&args[..], &["--admin-token", "t-admin-token-for-tests"]].concat());
    let second = Pool::start(&fresh_dir("m-503-second"), &args);
    let miner = Miner::failing_over([&first.url, &second.url], "land1away", 3, 1);
    let status_url = format!("{}/status", miner.api);
    wait_for(&status_url, MINUTE, "a share on the first pool", |s| {
        s["connection"]["url"] == first.url.as_str() && accepted(s) >= 1
    })
    .await;
    let admin = reqwest::Client::new();
    admin
        .post(format!("{}/pool/stop", first.url))
        .bearer_auth("t-admin-token-for-tests")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    wait_for(&format!("{}/pool/stats", second.url), MINUTE, "shares on the second pool", |s| {
        s["shares"]["accepted"].as_u64() >= Some(1)
    })
    .await;
    admin
        .post(format!("{}/pool/start", first.url))
        .bearer_auth("t-admin-token-for-tests")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    wait_for(&status_url, MINUTE, "back on the first pool", |s| connected_to(s, &first.url)).await;
}

/// SIGTERM (as from systemd or Ctrl-C) stops the miner cleanly: it sends
/// what it already found, then exits 0 within its grace period.
/// Past `--max-long-polls` the pool answers a long-poll at once with the job
/// being mined: the miner must not ask again in a tight loop (every miner
/// past the limit would then hammer the pool its limit protects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_does_not_hold_long_polls_is_not_hammered() {
    let pool = Pool::start(
        &fresh_dir("m-no-long-poll"),
        &["--max-long-polls", "1", "--share-difficulty", "100000", "--devnet-difficulty", "1000000000"],
    );
    let miners: Vec<Miner> = (0..2)
        .map(|i| Miner::start(&["--pool", &pool.url, "--wallet", "land1polls", "--worker", &format!("rig{i}")]))
        .collect();
    for miner in &miners {
        wait_for(&format!("{}/status", miner.api), MINUTE, "a job", |s| s["connection"]["connected"] == true).await;
    }
    let served = || async {
        get_json(&format!("{}/pool/metrics", pool.url)).await.expect("metrics")["jobs_served"].as_u64().unwrap()
    };
    let before = served().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let answers = served().await - before;
    // One miner holds the long-poll; the other asks every 5 s at most.
    assert!(answers <= 10, "{answers} job answers in 10 s for two miners");
}

/// A pool replayed from a real coordinator's registration and job, for the
/// misbehaviours a real coordinator does not have: it counts job requests,
/// holds long-polls (for their whole wait) or answers them at once, can
/// give a fresh job id to every request, and accepts every share with the
/// difficulty it is told to name.
struct ReplayPool {
    url: String,
    job_requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What happened, in order: "register", "job" (answered), "401".
    events: std::sync::Arc<std::sync::Mutex<Vec<(Instant, &'static str)>>>,
    /// Shares by nonce, in order: "busy" (answered 503), "accepted" or "silent" (never answered).
    shares: ShareLog,
    /// Set: the pool hangs, as a stopped process does: job requests are
    /// taken and never answered (logged "hung long-poll" or "hung request").
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set: the pool bans the miner, 403 `banned` (`Retry-After: 4`) to
    /// every job request and share (shares logged "banned").
    banning: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type ShareLog = std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64, &'static str)>>>;

#[derive(Clone, Copy)]
struct Replay {
    /// The replayed job's share difficulty.
    share_difficulty: u64,
    hold_long_polls: bool,
    fresh_id_every_time: bool,
    /// Added to the job's difficulty in every share answer.
    answer_difficulty_offset: u64,
    /// Jobs whose epoch seed is not hex: nothing a miner can work on.
    unusable_jobs: bool,
    /// At this job request (counted from 0) the pool forgets every token
    /// it issued, as a restarted pool does: 401 until the miner registers.
    forget_sessions_at: Option<u64>,
    /// The job's network difficulty is its share difficulty: every find is
    /// a block.
    every_share_a_block: bool,
    /// The first this many shares are answered 503 `busy`, `Retry-After: 1`.
    busy_shares: u64,
    /// Every share is answered as credited before (`already_credited`).
    already_credited: bool,
    /// Shares are taken and never answered.
    silent_shares: bool,
    /// Long-polls are answered 502, as a proxy whose read timeout is
    /// shorter than the wait answers them; plain requests get the job.
    failing_long_polls: bool,
}

impl Replay {
    /// Holds long-polls, one job id, share answers that match: well-behaved.
    fn well_behaved(share_difficulty: u64) -> Replay {
        Replay {
            share_difficulty,
            hold_long_polls: true,
            fresh_id_every_time: false,
            answer_difficulty_offset: 0,
            unusable_jobs: false,
            forget_sessions_at: None,
            every_share_a_block: false,
            busy_shares: 0,
            already_credited: false,
            silent_shares: false,
            failing_long_polls: false,
        }
    }
}

impl ReplayPool {
    async fn start(name: &str, replay: Replay) -> ReplayPool {
        use axum::extract::Query;
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let real = Pool::start(&fresh_dir(name), &["--devnet-difficulty", "1000000000"]);
        let http = reqwest::Client::new();
        let registration = json!({"worker_id": name, "wallet_address": "land1replay", "worker_name": name});
        let registered = post_json(&http, &format!("{}/pool/register", real.url), None, &registration).await;
        let token = registered["worker_token"].as_str().unwrap().to_string();
        let mut job: Value =
            http.get(format!("{}/pool/job", real.url)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert!(job["job_id"].is_string(), "{job}");
        job["share_difficulty"] = json!(replay.share_difficulty);
        if replay.every_share_a_block {
            job["network_difficulty"] = json!(replay.share_difficulty);
        }
        drop(real);

        let job_requests = Arc::new(AtomicU64::new(0));
        let hung = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let banning = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let banned = || {
            use axum::response::IntoResponse;
            let reason = json!({"error": "banned", "message": "this session is banned"});
            (axum::http::StatusCode::FORBIDDEN, [("retry-after", "4")], axum::Json(reason)).into_response()
        };
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shares: ShareLog = Arc::default();
        // The token the pool knows now (one session at a time is enough here).
        let known = Arc::new(std::sync::Mutex::new((0u64, None::<String>)));
        let answered = job["share_difficulty"].as_u64().unwrap() + replay.answer_difficulty_offset;
        let app = axum::Router::new()
            .route(
                "/pool/register",
                axum::routing::post({
                    let (known, events) = (known.clone(), events.clone());
                    move || async move {
                        let mut known = known.lock().unwrap();
                        known.0 += 1;
                        let token = format!("replay-token-{}", known.0);
                        known.1 = Some(token.clone());
                        events.lock().unwrap().push((Instant::now(), "register"));
                        let mut registered = registered.clone();
                        registered["worker_token"] = json!(token);
                        axum::Json(registered)
                    }
                }),
            )
            .route(
                "/pool/job",
                axum::routing::get({
                    let (job_requests, known, events) = (job_requests.clone(), known.clone(), events.clone());
                    let (hung, banning) = (hung.clone(), banning.clone());
                    move |Query(query): Query<HashMap<String, u64>>, headers: axum::http::HeaderMap| async move {
                        if banning.load(Ordering::SeqCst) {
                            return banned();
                        }
                        use axum::response::IntoResponse;
                        let hang = async || {
                            let what = if query.contains_key("wait") { "hung long-poll" } else { "hung request" };
                            events.lock().unwrap().push((Instant::now(), what));
                            std::future::pending::<()>().await;
                        };
                        if hung.load(Ordering::SeqCst) {
                            hang().await;
                        }
                        let n = job_requests.fetch_add(1, Ordering::Relaxed);
                        let knows_it = {
                            let mut known = known.lock().unwrap();
                            if replay.forget_sessions_at == Some(n) {
                                known.1 = None;
                            }
                            let given = headers.get("authorization").and_then(|v| v.to_str().ok());
                            known.1.as_ref().is_some_and(|token| given == Some(format!("Bearer {token}").as_str()))
                        };
                        if !knows_it {
                            events.lock().unwrap().push((Instant::now(), "401"));
                            let reason = json!({"error": "unauthorized", "message": "unknown worker token"});
                            return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(reason)).into_response();
                        }
                        if replay.failing_long_polls && query.contains_key("wait") {
                            events.lock().unwrap().push((Instant::now(), "502"));
                            let reason = json!({"error": "bad_gateway", "message": "upstream timed out"});
                            return (axum::http::StatusCode::BAD_GATEWAY, axum::Json(reason)).into_response();
                        }
                        if let (true, Some(&wait)) = (replay.hold_long_polls, query.get("wait")) {
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                            if hung.load(Ordering::SeqCst) {
                                hang().await;
                            }
                        }
                        let mut job = job.clone();
                        if replay.fresh_id_every_time {
                            job["job_id"] = json!(format!("replay{n}"));
                        }
                        if replay.unusable_jobs {
                            job["epoch_seed"] = json!("not hex");
                        }
                        events.lock().unwrap().push((Instant::now(), "job"));
                        axum::Json(job).into_response()
                    }
                }),
            )
            .route(
                "/pool/share",
                axum::routing::post({
                    let (shares, count) = (shares.clone(), Arc::new(AtomicU64::new(0)));
                    let banning = banning.clone();
                    move |axum::Json(share): axum::Json<Value>| async move {
                        use axum::response::IntoResponse;
                        let nonce = share["nonce"].as_u64().unwrap();
                        if banning.load(Ordering::SeqCst) {
                            shares.lock().unwrap().push((Instant::now(), nonce, "banned"));
                            return banned();
                        }
                        if replay.silent_shares {
                            shares.lock().unwrap().push((Instant::now(), nonce, "silent"));
                            std::future::pending::<()>().await;
                        }
                        if count.fetch_add(1, Ordering::Relaxed) < replay.busy_shares {
                            shares.lock().unwrap().push((Instant::now(), nonce, "busy"));
                            let reason = json!({"error": "busy", "message": "verification queue full"});
                            let headers = [("retry-after", "1")];
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, headers, axum::Json(reason))
                                .into_response();
                        }
                        shares.lock().unwrap().push((Instant::now(), nonce, "accepted"));
                        let is_block = replay.every_share_a_block;
                        let reason = replay.already_credited.then_some("already_credited");
                        let answer = json!({"accepted": true, "is_block": is_block, "share_difficulty": answered,
                            "reason": reason});
                        axum::Json(answer).into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ReplayPool { url, job_requests, events, shares, hung, banning }
    }

    fn events(&self) -> Vec<(Instant, &'static str)> {
        self.events.lock().unwrap().clone()
    }

    fn job_requests(&self) -> u64 {
        self.job_requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A block the pool was too busy to take is sent again after its
/// Retry-After, not held until the next job answer: that is the end of a
/// long-poll, which a new block (making it stale) may be what ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_pool_was_too_busy_for_is_sent_again_at_once() {
    let replay = Replay { every_share_a_block: true, busy_shares: 2, ..Replay::well_behaved(50) };
    let pool = ReplayPool::start("m-busy-block", replay).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1busy", "--long-poll-secs", "20"]);
    let status_url = format!("{}/status", miner.api);
    let status = wait_for(&status_url, MINUTE, "the busy block taken", |_| {
        let shares = pool.shares.lock().unwrap();
        let busy = shares.iter().find(|(_, _, e)| *e == "busy").map(|b| b.1);
        busy.is_some_and(|nonce| shares.iter().any(|(_, n, e)| *n == nonce && *e == "accepted"))
    })
    .await;
    let shares = pool.shares.lock().unwrap().clone();
    let (busy_at, nonce, _) = *shares.iter().find(|(_, _, e)| *e == "busy").expect("a busy answer");
    let taken = shares.iter().find(|(_, n, e)| *n == nonce && *e == "accepted");
    let (taken_at, _, _) = taken.unwrap_or_else(|| panic!("block {nonce} not taken: {shares:?} {status}"));
    // The long-poll is held 20 s; the Retry-After is 1 s (at most two busy
    // answers for it: two waits of about a second).
    assert!(*taken_at - busy_at < Duration::from_secs(6), "taken {:?} after its busy answer", *taken_at - busy_at);
}

/// A pool that hangs (its connections taken, nothing answered, as a
/// stopped process's are) is failed over after a long-poll's timeout and
/// one plain request's: once a request failed, the miner asks without
/// waiting until the pool answers again. (It long-polled again, so two
/// long-polls' timeouts went by first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_pool_is_failed_over_without_a_second_long_poll() {
    use std::sync::atomic::Ordering;
    let first = ReplayPool::start("m-hung-first", Replay::well_behaved(50)).await;
    let second = Pool::start(&fresh_dir("m-hung-second"), &["--devnet-difficulty", "1000000000"]);
    let miner = Miner::failing_over([&first.url, &second.url], "land1hung", 3600, 5);
    let status_url = format!("{}/status", miner.api);
    wait_for(&status_url, MINUTE, "long-polling the first pool", |_| {
        first.events().iter().filter(|(_, e)| *e == "job").count() >= 2
    })
    .await;
    first.hung.store(true, Ordering::SeqCst);
    wait_for(&status_url, MINUTE, "mining at the second pool", |s| connected_to(s, &second.url)).await;
    let hung: Vec<&str> = first.events().into_iter().map(|(_, e)| e).filter(|e| e.starts_with("hung")).collect();
    assert_eq!(hung, ["hung long-poll", "hung request"], "what the hung pool was asked");
}

/// Registers `worker_id` for `wallet` at `pool` and sends six shares of
/// garbage as it: past `--ban-min-shares 5`, the pool bans that worker id
/// from this address.
async fn send_garbage_as(pool: &Pool, worker_id: &str, wallet: &str) {
    let http = reqwest::Client::new();
    let registration = json!({"worker_id": worker_id, "wallet_address": wallet});
    let registered = post_json(&http, &format!("{}/pool/register", pool.url), None, &registration).await;
    let token = registered["worker_token"].as_str().unwrap();
    let job: Value =
        http.get(format!("{}/pool/job", pool.url)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    for i in 0..6 {
        let body = json!({"job_id": job["job_id"], "nonce": job["nonce_start"].as_u64().unwrap() + i, "digest": "00".repeat(32)});
        http.post(format!("{}/pool/share", pool.url)).bearer_auth(token).json(&body).send().await.unwrap();
    }
}

/// Banned in the middle of mining, the miner stops hashing (no share goes
/// to the pool while the ban lasts), then mines there again once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_stops_hashing_until_it_ends() {
    use std::sync::atomic::Ordering;
    let pool = ReplayPool::start("m-ban-stops", Replay::well_behaved(50)).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1stops", "--long-poll-secs", "2"]);
    let status_url = format!("{}/status", miner.api);
    let shares = |what: &str| pool.shares.lock().unwrap().iter().filter(|(_, _, e)| *e == what).count();
    wait_for(&status_url, MINUTE, "shares accepted", |_| shares("accepted") >= 2).await;
    pool.banning.store(true, Ordering::SeqCst);
    wait_for(&status_url, MINUTE, "the ban waited out", waiting_out_a_ban).await;
    // (A share found before the work stopped may still arrive.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = shares("banned");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(shares("banned"), refused, "no share sent while banned: hashing stopped");
    pool.banning.store(false, Ordering::SeqCst);
    let before = shares("accepted");
    wait_for(&status_url, MINUTE, "mining again", |_| shares("accepted") > before).await;
}

/// A pool whose long-polls keep failing, though its plain job requests are
/// answered (a proxy cutting held requests short), is failed over as two
/// failures in a row: a plain answer between them does not clear them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_long_polls_keep_failing_is_failed_over() {
    let first = ReplayPool::start("m-lp-fail", Replay { failing_long_polls: true, ..Replay::well_behaved(50) }).await;
    let second = Pool::start(&fresh_dir("m-lp-second"), &["--devnet-difficulty", "1000000000"]);
    let miner = Miner::failing_over([&first.url, &second.url], "land1lpfail", 3600, 2);
    wait_for(&format!("{}/status", miner.api), MINUTE, "mining at the second pool", |s| connected_to(s, &second.url))
        .await;
    let failed = first.events().iter().filter(|(_, e)| *e == "502").count();
    assert_eq!(failed, 2, "two failed long-polls, then the next pool");
}

/// Banned by its only pool, the miner stops hashing, waits the ban out and
/// mines there again: a short ban does not leave an unattended rig idle.
/// (It used to exit, code 4, as it still does with `--exit-on-ban`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_miner_waits_the_ban_out_and_mines_again() {
    let pool = Pool::start(
        &fresh_dir("m-ban-wait"),
        &["--ban-min-shares", "5", "--ban-seconds", "15", "--share-difficulty", "50", "--target-share-seconds", "1"],
    );
    // Its worker id sent garbage from this address: banned for 15 s.
    send_garbage_as(&pool, "banned", "land1wait").await;
    let mut miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1wait", "--worker", "banned"]);
    let status_url = format!("{}/status", miner.api);
    let banned = wait_for(&status_url, MINUTE, "the ban waited out", waiting_out_a_ban).await;
    assert!(banned["connection"]["retry_in_secs"].as_u64().is_some_and(|secs| secs <= 19), "{banned}");
    wait_for(&status_url, MINUTE, "mining again once the ban ended", |s| {
        s["connection"]["connected"] == true && accepted(s) >= 1
    })
    .await;
    assert!(miner.alive());
}

/// A primary pool that takes connections and never answers does not hold
/// the miner back at the pool it failed over to: each failback check runs
/// beside the long-poll there (bounded to 5 s), where it once ran between
/// two long-polls and, before that, waited out a registration's and a job
/// request's timeouts (15 s each) with no long-poll open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_primary_does_not_stall_the_pool_mined_at() {
    let (reserved, primary_port) = reserved_port();
    let second = ReplayPool::start("m-silent-primary", Replay::well_behaved(100_000_000)).await;
    let miner = Miner::failing_over([&format!("http://127.0.0.1:{primary_port}"), &second.url], "land1silent", 2, 2);
    wait_for(&format!("{}/status", miner.api), MINUTE, "mining at the second pool", |s| connected_to(s, &second.url))
        .await;
    // The primary comes back silent: connections taken, nothing answered.
    drop(reserved);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", primary_port)).await.unwrap();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = tokio::spawn({
        let taken = taken.clone();
        async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open.push(stream);
            }
        }
    });
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(14)).await;
    let end = Instant::now();
    let mut answered: Vec<Instant> =
        second.events().iter().filter(|(at, e)| *e == "job" && *at >= start).map(|(at, _)| *at).collect();
    answered.insert(0, start);
    answered.push(end);
    let longest = answered.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    // A held long-poll (2 s), with room to spare; a check between two
    // long-polls made a gap of 7 s.
    assert!(longest < Duration::from_secs(5), "no job request at the second pool for {longest:?}");
    // (Checks there were: the first one's registration with the primary
    // waits out its timeout meanwhile.)
    assert!(taken.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the primary was checked");
    held.abort();
}

/// A share the pool says it credited before (a device restarted on the
/// same job finds it again) is not counted again as accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_credited_before_are_not_counted_again() {
    let replay = Replay { already_credited: true, ..Replay::well_behaved(50) };
    let pool = ReplayPool::start("m-credited", replay).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1again"]);
    let status_url = format!("{}/status", miner.api);
    wait_for(&status_url, MINUTE, "shares sent", |_| pool.shares.lock().unwrap().len() >= 3).await;
    let status = get_json(&status_url).await.unwrap();
    assert_eq!(accepted(&status), 0, "{status}");
}

/// A pool (or a bridge in front of one) that answers every job request at
/// once with a fresh job id: the miner follows a few at once, then asks
/// about once a second, not as fast as loopback allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_a_new_job_for_every_request_is_not_hammered() {
    let replay = Replay { hold_long_polls: false, fresh_id_every_time: true, ..Replay::well_behaved(100_000_000) };
    let pool = ReplayPool::start("m-churn", replay).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1churn"]);
    wait_for(&format!("{}/status", miner.api), MINUTE, "a job", |s| s["connection"]["connected"] == true).await;
    let before = pool.job_requests();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let answers = pool.job_requests() - before;
    // A burst of five at most, then one a second.
    assert!((5..=17).contains(&answers), "{answers} job answers in 10 s");
    let status = get_json(&format!("{}/status", miner.api)).await.unwrap();
    assert_eq!(status["connection"]["connected"], true, "{status}");
}

/// Share answers that keep naming another difficulty than the job's (our
/// own coordinator past its job cap on one template, a bridge with another
/// scale): the miner asks for a new job, gets the same one, and does not
/// ask again at every share, while its long-poll stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_answers_naming_another_difficulty_do_not_make_a_request_per_share() {
    let replay = Replay { answer_difficulty_offset: 1, ..Replay::well_behaved(16) };
    let pool = ReplayPool::start("m-other-difficulty", replay).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1replay"]);
    let status_url = format!("{}/status", miner.api);
    let before = accepted(&wait_for(&status_url, MINUTE, "a share", |s| accepted(s) >= 1).await);
    let requests_before = pool.job_requests();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let requests = pool.job_requests() - requests_before;
    let shares = accepted(&get_json(&status_url).await.unwrap()) - before;
    assert!(shares >= 10, "the test needs shares: {shares} in 10 s");
    // About one asked-for job and one long-poll again every 5 s, not two per share.
    assert!(requests <= 8, "{requests} job requests for {shares} shares in 10 s");
}

/// A pool that restarted and forgot its sessions answers 401: the miner
/// registers again at once (no backoff, no failure counted) and mines on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_forgot_the_session_is_registered_with_again_at_once() {
    let replay = Replay { forget_sessions_at: Some(3), ..Replay::well_behaved(100_000_000) };
    let pool = ReplayPool::start("m-forgot", replay).await;
    let miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1forgot", "--long-poll-secs", "1"]);
    let deadline = Instant::now() + MINUTE;
    let events = loop {
        let events = pool.events();
        let registered_again = events.iter().filter(|e| e.1 == "register").count() >= 2;
        if registered_again && events.last().is_some_and(|e| e.1 == "job") {
            break events;
        }
        assert!(Instant::now() < deadline, "no new registration and job after a 401: {:?}", events);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = events.iter().position(|e| e.1 == "401").expect("the pool said 401");
    let again = events[refused..].iter().find(|e| e.1 == "register").expect("registered again");
    let waited = again.0 - events[refused].0;
    assert!(waited < Duration::from_millis(500), "registered again after {waited:?}");
    assert_eq!(events.iter().filter(|e| e.1 == "401").count(), 1, "one 401 only: {:?}", events);
    let status = get_json(&format!("{}/status", miner.api)).await.unwrap();
    assert_eq!(status["connection"]["connected"], true, "{status}");
    assert!(status["connection"]["retry_in_secs"].is_null(), "{status}");
}

/// A primary pool whose jobs cannot be mined is left for the next pool, and
/// failback (tried every second here) does not return to it while its jobs
/// stay unusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_sending_unusable_jobs_is_left_and_not_returned_to() {
    let primary = ReplayPool::start("m-unusable", Replay { unusable_jobs: true, ..Replay::well_behaved(50) }).await;
    let second = Pool::start(
        &fresh_dir("m-usable"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let miner = Miner::failing_over([&primary.url, &second.url], "land1usable", 1, 2);
    let status_url = format!("{}/status", miner.api);
    let on_second = |s: &Value| connected_to(s, &second.url);
    wait_for(&status_url, MINUTE, "shares on the second pool", |s| on_second(s) && accepted(s) >= 1).await;
    let asked_before = primary.job_requests();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let status = get_json(&status_url).await.unwrap();
        assert!(on_second(&status), "back on a primary with unusable jobs: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Failback kept asking the primary (so the test saw the rule at work).
    assert!(primary.job_requests() >= asked_before + 2, "{} -> {}", asked_before, primary.job_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_miner_cleanly() {
    let pool = Pool::start(
        &fresh_dir("m-term"),
        &["--share-difficulty", "50", "--target-share-seconds", "1", "--devnet-difficulty", "1000000000"],
    );
    let mut miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1term"]);
    wait_for(&format!("{}/status", miner.api), MINUTE, "a share", |s| accepted(s) >= 1).await;
    let pid = miner.proc.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = miner.exit_within(Duration::from_secs(15), "still running 15 s after SIGTERM").await;
    assert!(exit.success(), "a stop asked for is not a failure: {exit}");
    assert!(!miner.alive());
    let stats = get_json(&format!("{}/pool/stats", pool.url)).await.unwrap();
    assert!(stats["shares"]["accepted"].as_u64() >= Some(1), "{stats}");
}

/// The stop sends what was found, for up to 5 s; a second signal meanwhile
/// (the owner in a hurry: a pool that takes shares and never answers holds
/// the stop here) exits at once, code 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_the_stop_exits_at_once() {
    let pool = ReplayPool::start("m-twice", Replay { silent_shares: true, ..Replay::well_behaved(1) }).await;
    let mut miner = Miner::start(&["--pool", &pool.url, "--wallet", "land1twice"]);
    let deadline = Instant::now() + MINUTE;
    while pool.shares.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no share was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = miner.proc.0.id().to_string();
    let signal = || assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    signal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(miner.alive(), "the stop waits for the shares in flight");
    signal();
    let exit = miner.exit_within(Duration::from_secs(2), "still running 2 s after the second signal").await;
    assert_eq!(exit.code(), Some(130), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solo_mining_finds_a_block_on_the_devnet() {
    let node =
        Pool::start(&fresh_dir("m-solo"), &["--devnet-difficulty", "100", "--node-token", "n0de-token-for-tests"]);
    let miner = Miner::start(&["--solo", &node.url, "--wallet", "land1solo", "--node-token", "n0de-token-for-tests"]);
    let block =
        wait_for(&format!("{}/node/block/0", node.url), MINUTE, "a solo block", |b| b["miner"] == "land1solo").await;
    assert_eq!(block["height"], 0);
    wait_for(&format!("{}/status", miner.api), MINUTE, "the miner to count it", |s| s["blocks"].as_u64() >= Some(1))
        .await;
    // A wrong node token would lose every block: the miner stops and says
    // why (exit 3) at its start (see `exit_codes_tell_the_owner_what_to_fix`
    // for one that could mine for hours first). (The first miner stops: the
    // chain's difficulty stays within reach.)
    drop(miner);
    let wrong = ["--solo", &node.url, "--wallet", "land1wrong", "--node-token", "wrong", "--backend", "cpu"];
    let (code, err) = run_to_exit(&wrong, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("takes no block from this miner") && err.contains("forbidden"), "said at the start: {err}");
    let tip = get_json(&format!("{}/node/tip", node.url)).await.unwrap()["height"].as_u64().unwrap();
    for height in 0..=tip {
        let block = get_json(&format!("{}/node/block/{height}", node.url)).await.unwrap();
        assert_eq!(block["miner"], "land1solo", "the refused miner's block is not on the chain: {block}");
    }
}

/// A miner without the local API on one CPU thread, run until it exits
/// by itself (within a minute, else the test fails): its exit code and
/// what it wrote on stderr.
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut cmd = Command::new(workspace_binary("vision-miner"));
    cmd.args(["--no-api", "--threads", "1"]).args(args).envs(envs.iter().copied());
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // (Read as it comes: a full pipe would stop the miner.)
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let Some(status) = exit_within(&mut child, MINUTE) else {
        child.kill().unwrap();
        panic!("still running after a minute: {args:?}");
    };
    (status.code(), reader.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_the_owner_what_to_fix() {
    let run = run_to_exit;
    let (code, err) = run(&["--pool", "ftp://pool", "--wallet", "land1x"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a pool URL"));
    let (code, err) = run(&["--pool", "http://127.0.0.1:9", "--wallet", "not a wallet"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--wallet"));

    let pool = Pool::start(&fresh_dir("m-exit"), &["--ban-min-shares", "5", "--devnet-difficulty", "1000000000"]);
    // Solo at a node that takes no block from this miner (its writes are
    // off: no --node-token set there): said at the start, not after hours
    // of mining at a difficulty like this one, and the first block lost.
    let (code, err) = run(&["--solo", &pool.url, "--wallet", "land1solo", "--backend", "cpu"], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("check --node-token") && err.contains("node_writes_disabled"), "{err}");
    // The pool refuses: that is the pool's own wallet.
    let (code, err) =
        run(&["--pool", &pool.url, "--wallet", "vision-pool", "--worker", "taken", "--backend", "cpu"], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("pool_wallet"), "{err}");
    // Banned: that worker sends garbage until the pool bans it.
    send_garbage_as(&pool, "taken", "land1owner").await;
    let (code, err) = run(
        &["--pool", &pool.url, "--wallet", "land1owner", "--worker", "taken", "--backend", "cpu", "--exit-on-ban"],
        &[],
    );
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("banned") && err.contains("seconds"), "{err}");

    let no_driver = [("VK_ICD_FILENAMES", "/nonexistent.json"), ("VK_DRIVER_FILES", "/nonexistent.json")];
    let (code, err) = run(&["--pool", &pool.url, "--wallet", "land1x", "--backend", "gpu"], &no_driver);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("no usable device"), "{err}");
}
