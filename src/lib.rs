//! Support for the workspace-level integration tests (`tests/`) and
//! benchmarks (`benches/`): finding the workspace's binaries, giving each
//! test a fresh directory, reading pool jobs as a miner would, and (`pool_books`)
//! simulated workers and the audit of a pool's books. The product lives in `visionx/`, `miner/` and
//! `coordinator/`; nothing here ships.

pub mod pool_books;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The path of a workspace binary (`vision-miner`, `vision-coordinator`) in
/// the target directory the running test was built into.
///
/// `cargo test --workspace` builds every member's binaries before any test
/// runs, so they exist by the time a test asks.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).expect("target profile directory");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} not built: run `cargo build --workspace` (or `cargo test --workspace`)", path.display());
    path
}

/// A fresh, empty directory under the target directory, unique per call.
pub fn fresh_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = std::env::current_exe().expect("test executable path");
    let dir =
        base.parent().expect("deps dir").join("vision-test-dirs").join(format!("{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // (And a coordinator's log beside it, appended to: process ids repeat
    // between runs with a kept target directory.)
    let _ = std::fs::remove_file(coordinator_log_path(&dir));
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// The hash input of a `GET /pool/job` answer (docs/API.md), as a miner builds it.
pub fn job_input(job: &serde_json::Value) -> visionx::PowInput {
    let params = serde_json::from_value(job["params"].clone()).expect("job params");
    let text = |field: &str| job[field].as_str().unwrap_or_else(|| panic!("job lacks {field}"));
    visionx::PowInput::from_hex(text("epoch_seed"), job["epoch"].as_u64().expect("epoch"), text("pow_message"), params)
        .expect("valid job input")
}

/// POSTs `body` as JSON (with a bearer token if given) and reads the JSON answer.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST").json().await.expect("JSON answer")
}

/// Registers rig `worker` of `wallet` at the pool at `url`; its worker token.
pub async fn register(http: &reqwest::Client, url: &str, worker: &str, wallet: &str) -> String {
    let registration = serde_json::json!({"worker_id": worker, "wallet_address": wallet});
    let registered = post_json(http, &format!("{url}/pool/register"), None, &registration).await;
    registered["worker_token"].as_str().unwrap_or_else(|| panic!("no worker token: {registered}")).to_string()
}

/// GETs `url` (with a bearer token if given) and reads the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> serde_json::Value {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET").json().await.expect("JSON answer")
}

/// Starts `vision-coordinator` on `data_dir` with `args` (and environment
/// `env`) and returns the process with its base URL, read from the line it
/// prints once it listens. Binds `127.0.0.1:0` unless `args` has `--bind`.
/// Its log (warnings and up) is appended to `<data_dir>.log`.
pub fn start_coordinator(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(workspace_binary("vision-coordinator"));
    command.args(["--data-dir", data_dir.to_str().expect("UTF-8 path")]);
    if !args.contains(&"--bind") {
        command.args(["--bind", "127.0.0.1:0"]);
    }
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(coordinator_log(data_dir));
    let mut child = command.spawn().expect("start vision-coordinator");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("the coordinator did not start: {line:?}"));
    (child, url.to_string())
}

/// Where [`start_coordinator`] appends a coordinator's log.
pub fn coordinator_log_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.with_extension("log")
}

fn coordinator_log(data_dir: &std::path::Path) -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(coordinator_log_path(data_dir))
        .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from)
}

/// Polls `check` every 100 ms until it holds; fails the test, naming
/// `what`, once `limit` has passed.
pub async fn eventually(what: &str, limit: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Mines honestly with a session's `token`, 64 nonces per job request (a
/// live job is handed out again: its range goes on where it was left),
/// until `done` says so (true) or the server is gone (false).
pub async fn mine_until(http: &reqwest::Client, url: &str, token: &str, mut done: impl AsyncFnMut() -> bool) -> bool {
    use visionx::PowEngine;
    let mut engine = visionx::FastEngine::new();
    let mut cursor: Option<(String, u64)> = None;
    loop {
        if done().await {
            return true;
        }
        let Ok(response) = http.get(format!("{url}/pool/job")).bearer_auth(token).send().await else { return false };
        let Ok(job) = response.json::<serde_json::Value>().await else { return false };
        let Some(id) = job["job_id"].as_str().map(str::to_string) else { return false };
        let input = job_input(&job);
        let start = match &cursor {
            Some((last, next)) if *last == id => *next,
            _ => job["nonce_start"].as_u64().expect("nonce_start"),
        };
        let end = job["nonce_end"].as_u64().expect("nonce_end").min(start + 64);
        cursor = Some((id, end));
        for nonce in start..end {
            let digest = engine.hash(&input, nonce);
            if !digest.meets_difficulty(job["share_difficulty"].as_u64().unwrap_or(1)) {
                continue;
            }
            let body = serde_json::json!({"job_id": job["job_id"], "nonce": nonce, "digest": digest.to_hex()});
            let Ok(response) = http.post(format!("{url}/pool/share")).bearer_auth(token).json(&body).send().await
            else {
                return false;
            };
            let Ok(answer) = response.json::<serde_json::Value>().await else { return false };
            if answer["accepted"] != true || answer["block_status"].is_string() {
                break;
            }
        }
    }
}

/// `vision-coordinator` flags for tests of the money path: blocks within a
/// few hashes, every hash a share, two confirmations, every confirmed
/// balance paid, a rewards round every 100 ms, the pool fee to `land1host`.
pub const QUICK_REWARDS: &[&str] = &[
    "--devnet-difficulty=12",
    "--block-time=2",
    "--coinbase-maturity=1",
    "--share-difficulty=1",
    "--min-share-difficulty=1",
    "--max-share-difficulty=1",
    "--shares-per-sec=100000",
    "--confirmations=2",
    "--payout-threshold=1",
    "--reward-poll-ms=100",
    "--pool-fee-address=land1host",
];

/// Child processes killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves none running.
pub struct Processes(pub Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then waits up to 30 s for the exit (panics otherwise).
pub fn stop_gracefully(child: &mut std::process::Child) {
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM");
    assert!(exit_within(child, std::time::Duration::from_secs(30)).is_some(), "no clean stop");
}

/// How `child` exited, if it did within `limit` (it is left running
/// otherwise).
pub fn exit_within(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
