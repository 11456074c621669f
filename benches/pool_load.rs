//! Load on a real coordinator over loopback HTTP (`cargo bench --bench pool_load`).
//!
//! Starts the coordinator in-process (its own sled directory, embedded
//! devnet, consensus params), registers many workers, precomputes honest
//! shares for their jobs on all cores, then measures:
//! 1. sustained verified shares/s with the generator sending as fast as the
//!    pool answers;
//! 2. share response latency at a paced 100 shares/s;
//! 3. `GET /pool/job` latency at a paced 500 requests/s.
//!
//! Prints one JSON object per measurement. The generator shares the machine's
//! cores with the pool, as a co-located load generator does.
//! `VISION_VERIFY_ENGINE` (fast, scalar, avx2, avx512) picks the engine the
//! pool verifies with. `VISION_BENCH_STORE=postgres` keeps the books in a
//! throwaway PostgreSQL server (started here, as the tests do) instead of
//! sled, and `VISION_BENCH_COORDINATORS=2` then runs a second coordinator on
//! the same database (the first one's devnet as its upstream), each worker
//! talking to one of them.

#[path = "../coordinator/tests/support/throwaway_postgres.rs"]
mod throwaway_postgres;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_coordinator::config::CoordinatorArgs;
use vision_coordinator::server::Coordinator;
use vision_miner::backend::{CpuBackend, CpuConfig};
use vision_suite::{get_json, job_input, post_json};
use visionx::{EngineKind, Job, NonceRange, SearchControl, Target};

struct Worker {
    /// The coordinator it talks to.
    url: String,
    token: String,
    job_id: String,
    /// (nonce, digest) shares not yet sent.
    shares: Vec<(u64, String)>,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
}

async fn prepare(
    http: &reqwest::Client,
    urls: &[String],
    workers: usize,
    shares_each: u64,
    cpu: &CpuBackend,
) -> Vec<Worker> {
    let mut prepared = Vec::new();
    for w in 0..workers {
        let url = &urls[w % urls.len()];
        let registration = json!({"worker_id": format!("load-{w}-{shares_each}"), "wallet_address": "land1load"});
        let registered = post_json(http, &format!("{url}/pool/register"), None, &registration).await;
        let token = registered["worker_token"].as_str().unwrap().to_string();
        let job: Value =
            http.get(format!("{url}/pool/job")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let start = job["nonce_start"].as_u64().unwrap();
        let search = Job {
            input: Arc::new(job_input(&job)),
            target: Target::NONE,
            nonces: NonceRange::new(start, start + shares_each),
        };
        let found = Mutex::new(Vec::new());
        cpu.search(&search, &SearchControl::new(), &|f| found.lock().unwrap().push((f.nonce, f.digest.to_hex())));
        prepared.push(Worker {
            url: url.clone(),
            token,
            job_id: job["job_id"].as_str().unwrap().to_string(),
            shares: found.into_inner().unwrap(),
        });
    }
    prepared
}

async fn send_share(http: &reqwest::Client, worker: &Worker, nonce: u64, digest: &str) -> (bool, Duration) {
    let started = Instant::now();
    let body = json!({"job_id": worker.job_id, "nonce": nonce, "digest": digest});
    let response =
        http.post(format!("{}/pool/share", worker.url)).bearer_auth(&worker.token).json(&body).send().await.unwrap();
    let accepted = response.status().is_success() && response.json::<Value>().await.unwrap()["accepted"] == true;
    (accepted, started.elapsed())
}

async fn throughput(http: &reqwest::Client, workers: Vec<Worker>, concurrency: usize) -> Value {
    let queue: Arc<Mutex<Vec<(usize, u64, String)>>> = Arc::new(Mutex::new(
        workers
            .iter()
            .enumerate()
            .flat_map(|(w, worker)| worker.shares.iter().map(move |(n, d)| (w, *n, d.clone())))
            .collect(),
    ));
    let workers = Arc::new(workers);
    let total = queue.lock().unwrap().len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, queue, workers) = (http.clone(), queue.clone(), workers.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            loop {
                let Some((w, nonce, digest)) = queue.lock().unwrap().pop() else { return accepted };
                if send_share(&http, &workers[w], nonce, &digest).await.0 {
                    accepted += 1;
                }
            }
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    json!({"measurement": "sustained_verified_shares", "shares_sent": total, "accepted": accepted,
           "seconds": seconds, "verified_shares_per_second": accepted as f64 / seconds, "concurrency": concurrency})
}

async fn paced_shares(http: &reqwest::Client, workers: Vec<Worker>, per_sec: f64) -> Value {
    let workers = Arc::new(workers);
    let plan: Vec<(usize, u64, String)> = workers
        .iter()
        .enumerate()
        .flat_map(|(w, worker)| worker.shares.iter().map(move |(n, d)| (w, *n, d.clone())))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / per_sec);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (w, nonce, digest)) in plan.into_iter().enumerate() {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let (http, workers) = (http.clone(), workers.clone());
        tasks.push(tokio::spawn(async move { send_share(&http, &workers[w], nonce, &digest).await }));
    }
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for task in tasks {
        let (ok, latency) = task.await.unwrap();
        accepted += u64::from(ok);
        latencies.push(latency);
    }
    latencies.sort();
    json!({"measurement": "share_latency", "rate_per_second": per_sec, "shares": latencies.len(), "accepted": accepted,
           "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99), "max_ms": percentile(&latencies, 1.0)})
}

/// `GET /pool/job` at `per_sec` from `workers` (token and coordinator URL).
async fn paced_jobs(http: &reqwest::Client, workers: Vec<(String, String)>, per_sec: f64, seconds: f64) -> Value {
    let interval = Duration::from_secs_f64(1.0 / per_sec);
    let count = (per_sec * seconds) as usize;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let (http, (token, url)) = (http.clone(), workers[i % workers.len()].clone());
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let response = http.get(format!("{url}/pool/job")).bearer_auth(token).send().await.unwrap();
            let ok = response.status().is_success();
            let _ = response.bytes().await;
            (ok, begun.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut ok = 0;
    for task in tasks {
        let (success, latency) = task.await.unwrap();
        ok += u64::from(success);
        latencies.push(latency);
    }
    latencies.sort();
    json!({"measurement": "job_latency", "rate_per_second": per_sec, "requests": count, "ok": ok,
           "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99), "max_ms": percentile(&latencies, 1.0)})
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing: stay quick then.
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = std::env::var("VISION_BENCH_STORE").unwrap_or_else(|_| "sled".into());
        let coordinators: usize =
            std::env::var("VISION_BENCH_COORDINATORS").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
        let postgres = (store == "postgres").then(throwaway_postgres::ThrowawayPostgres::start);
        let database_url = postgres.as_ref().map(|server| server.database("pool_load"));
        let mut data_dirs = Vec::new();
        let mut urls: Vec<String> = Vec::new();
        for n in 0..coordinators.max(1) {
            let data_dir = std::env::temp_dir().join(format!("vision-pool-load-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data_dir);
            let settings = CoordinatorArgs {
                data_dir: Some(data_dir.clone()),
                database_url: database_url.clone(),
                // The second and later coordinators mine the first one's devnet.
                upstream: urls.first().cloned(),
                upstream_token: (n > 0).then(|| "bench-node-token".into()),
                node_token: (n == 0).then(|| "bench-node-token".into()),
                bind: Some("127.0.0.1:0".into()),
                devnet_difficulty: Some(1 << 50),
                share_difficulty: Some(1),
                min_share_difficulty: Some(1),
                registrations_per_sec: Some(1000.0),
                // Measure verification, not the per-worker limiter, nor the
                // budget that new sessions of one address share (the simulated
                // miners all come from loopback; real ones from many addresses).
                shares_per_sec: Some(100_000.0),
                unproven_verifications_per_sec: Some(1_000_000.0),
                verify_queue: Some(1024),
                // `VISION_VERIFY_ENGINE=scalar` measures the pool as it was
                // before the SIMD engines (the same build, the same machine).
                verify_engine: std::env::var("VISION_VERIFY_ENGINE").ok(),
                ..CoordinatorArgs::default()
            };
            let config = settings.resolve().unwrap();
            let coordinator = Coordinator::build(&config).await.unwrap();
            let listener = tokio::net::TcpListener::bind(&config.bind).await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(coordinator.serve(listener, std::future::pending()));
            data_dirs.push(data_dir);
        }
        println!("{}", json!({"measurement": "setup", "store": store, "coordinators": urls.len()}));
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
        let cpu = CpuBackend::new(CpuConfig { threads: None, engine: EngineKind::Fast }).unwrap();

        let (workers, per_worker, seconds) = if full { (16, 250, 10.0) } else { (4, 10, 0.5) };
        let load = prepare(&http, &urls, workers, per_worker, &cpu).await;
        println!("{}", throughput(&http, load, 32).await);
        // 100 shares/s for 10 s, from 10 workers at 10 shares/s each.
        let paced = prepare(&http, &urls, 10, if full { 100 } else { 5 }, &cpu).await;
        println!("{}", paced_shares(&http, paced, 100.0).await);
        let job_takers: Vec<(String, String)> =
            prepare(&http, &urls, 20, 0, &cpu).await.into_iter().map(|w| (w.token, w.url)).collect();
        println!("{}", paced_jobs(&http, job_takers, 500.0, seconds).await);
        let metrics = get_json(&http, &format!("{}/pool/metrics", urls[0]), None).await;
        println!("{}", json!({"measurement": "pool_metrics", "metrics": metrics}));
        for dir in data_dirs {
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}
