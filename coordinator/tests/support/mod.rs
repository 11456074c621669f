//! A real coordinator on loopback for tests: in-process, port 0, its own
//! sled directory, and an HTTP client.

#![allow(dead_code, unreachable_pub)]

pub mod throwaway_postgres;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use vision_coordinator::config::{CoordinatorArgs, CoordinatorConfig};
use vision_coordinator::server::Coordinator;
use visionx::{FastEngine, PowEngine, PowInput};

pub struct TestPool {
    pub url: String,
    /// The pool behind the server (for calls no route offers). Dropped on stop.
    pub pool: Option<std::sync::Arc<vision_coordinator::pool::Pool>>,
    /// The embedded devnet (its test hooks), when there is one.
    pub devnet: Option<std::sync::Arc<vision_coordinator::chain::devnet::DevnetChain>>,
    pub data_dir: PathBuf,
    pub http: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_finished_runs);
    let dir = std::env::temp_dir().join(format!(
        "vision-coord-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes the data directories of test processes that have ended. A test
/// cannot remove its own when it stops (restart tests reopen it), so each
/// run clears what earlier ones left instead of letting them pile up.
fn sweep_finished_runs() {
    // Which processes live is read from /proc: elsewhere, sweep nothing.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("vision-coord-")) else { continue };
        // vision-coord-{label}-{pid}-{n}; the label may hold dashes.
        let mut parts = rest.rsplitn(3, '-');
        let (Some(_n), Some(pid), Some(_label)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// CoordinatorArgs every test starts from: a fresh data dir, devnet difficulty high
/// enough that shares are not blocks, every hash a share.
pub fn settings(label: &str) -> CoordinatorArgs {
    CoordinatorArgs {
        data_dir: Some(temp_dir(label)),
        bind: Some("127.0.0.1:0".into()),
        devnet_difficulty: Some(1 << 40),
        share_difficulty: Some(1),
        min_share_difficulty: Some(1),
        verify_threads: Some(2),
        ..CoordinatorArgs::default()
    }
}

impl TestPool {
    pub async fn start(settings: CoordinatorArgs) -> TestPool {
        Self::start_tuned(settings, |_| {}).await
    }

    /// Starts with settings no flag reaches (times shorter than a flag's
    /// unit), changed in the resolved configuration.
    pub async fn start_tuned(settings: CoordinatorArgs, tune: impl FnOnce(&mut CoordinatorConfig)) -> TestPool {
        let mut config = settings.resolve().expect("valid test settings");
        tune(&mut config);
        // A restart within this process: the last instance's tasks may
        // hold its store (and the directory's lock) a moment past its stop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let coordinator = loop {
            match Coordinator::build(&config).await {
                Ok(coordinator) => break coordinator,
                Err(err) if format!("{err:#}").contains("is in use") && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(err) => panic!("the coordinator does not start: {err:#}"),
            }
        };
        let pool = coordinator.pool.clone();
        let devnet = coordinator.devnet.clone();
        let listener = tokio::net::TcpListener::bind(&config.bind).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            coordinator
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestPool {
            url,
            pool: Some(pool),
            devnet,
            data_dir: config.data_dir,
            http: Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful stop (flushes state).
    pub async fn stop(mut self) {
        self.pool = None;
        self.devnet = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(format!("{}{path}", self.url)).send().await.unwrap()
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.http.post(format!("{}{path}", self.url)).json(body).send().await.unwrap()
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(token).json(body).send().await.unwrap()
    }

    /// Registers a worker and returns its token.
    pub async fn register(&self, worker_id: &str, wallet: &str) -> String {
        let response = self.post("/pool/register", &json!({ "worker_id": worker_id, "wallet_address": wallet })).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["worker_token"].as_str().unwrap().to_string()
    }

    pub async fn job(&self, token: &str) -> Job {
        let response = self.get_auth("/pool/job", token).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
        Job(response.json().await.unwrap())
    }

    pub async fn share(&self, token: &str, job: &Job, nonce: u64, digest: &str) -> (StatusCode, Value) {
        let body = json!({ "job_id": job.id(), "nonce": nonce, "digest": digest, "hashrate": 123.5 });
        let response = self.post_auth("/pool/share", token, &body).await;
        (response.status(), response.json().await.unwrap())
    }
}

impl TestPool {
    /// Mines as an honest miner with `token`: sends every share it finds
    /// until one is a block the chain accepts (returns its height and hash),
    /// or, with `shares` set, until that many shares were accepted (returns None).
    pub async fn mine(&self, token: &str, shares: Option<usize>) -> Option<(u64, String)> {
        let mut sent = 0;
        loop {
            let job = self.job(token).await;
            let input = job.input();
            let mut engine = FastEngine::new();
            for nonce in job.nonce_start()..job.nonce_end() {
                let digest = engine.hash(&input, nonce);
                if !digest.meets_difficulty(job.share_difficulty()) {
                    continue;
                }
                let (status, answer) = self.share(token, &job, nonce, &digest.to_hex()).await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                if answer["accepted"] != true {
                    break; // stale: a new job
                }
                sent += 1;
                if answer["block_status"] == "accepted" && shares.is_none() {
                    return Some((job.height(), answer["block_hash"].as_str().unwrap().to_string()));
                }
                if shares.is_some_and(|n| sent >= n) {
                    return None;
                }
                if answer["block_status"].is_string() {
                    break; // the tip moved
                }
            }
        }
    }

    /// Mines until a block is found; its height and hash.
    pub async fn mine_block(&self, token: &str) -> (u64, String) {
        self.mine(token, None).await.expect("a block")
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }
}

/// An HTTP client whose connections come from `ip` (a loopback address
/// such as 127.0.0.2: another source, as far as the pool can tell).
pub fn client_from(ip: &str) -> Client {
    Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

/// A job as the pool sent it.
pub struct Job(pub Value);

impl Job {
    pub fn id(&self) -> &str {
        self.0["job_id"].as_str().unwrap()
    }

    pub fn height(&self) -> u64 {
        self.0["height"].as_u64().unwrap()
    }

    pub fn nonce_start(&self) -> u64 {
        self.0["nonce_start"].as_u64().unwrap()
    }

    pub fn nonce_end(&self) -> u64 {
        self.0["nonce_end"].as_u64().unwrap()
    }

    pub fn share_difficulty(&self) -> u64 {
        self.0["share_difficulty"].as_u64().unwrap()
    }

    pub fn input(&self) -> PowInput {
        let params = serde_json::from_value(self.0["params"].clone()).unwrap();
        let (seed, message) = (self.0["epoch_seed"].as_str().unwrap(), self.0["pow_message"].as_str().unwrap());
        PowInput::from_hex(seed, self.0["epoch"].as_u64().unwrap(), message, params).unwrap()
    }

    /// The digest of `nonce`, computed here as an honest miner would.
    pub fn digest(&self, nonce: u64) -> String {
        FastEngine::new().hash(&self.input(), nonce).to_hex()
    }

    /// The first nonce of its range that is a share at its difficulty.
    pub fn first_share(&self) -> u64 {
        self.first_meeting(self.share_difficulty())
    }

    /// The first nonce of its range that is a share at its difficulty and
    /// not a block (its digest misses `network_difficulty`).
    pub fn first_share_below(&self, network_difficulty: u64) -> u64 {
        // (Else no nonce can be one, and the search would run for hours.)
        assert!(self.share_difficulty() < network_difficulty, "every share at this difficulty is a block");
        let (input, mut engine) = (self.input(), FastEngine::new());
        (self.nonce_start()..self.nonce_end())
            .find(|&n| {
                let digest = engine.hash(&input, n);
                digest.meets_difficulty(self.share_difficulty()) && !digest.meets_difficulty(network_difficulty)
            })
            .expect("a share in the job's range that is no block")
    }

    /// The first nonce of its range whose digest meets `difficulty` (a
    /// block's, say).
    pub fn first_meeting(&self, difficulty: u64) -> u64 {
        let (input, mut engine) = (self.input(), FastEngine::new());
        (self.nonce_start()..self.nonce_end())
            .find(|&n| engine.hash(&input, n).meets_difficulty(difficulty))
            .expect("a nonce in the job's range meeting the difficulty")
    }
}

/// Polls `check` every 50 ms until it holds; fails the test, naming `what`,
/// once `limit` has passed.
pub async fn eventually(what: &str, limit: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
