//! Fairness behind one address: fifty honest workers and one forger share a
//! source address (a farm behind NAT), with the pool's default limits. Only
//! the forger is banned; every honest worker gets its shares credited, and
//! once proven they are answered at normal latency while the forger floods.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::{client_from, settings, Job, TestPool};
use vision_coordinator::config::CoordinatorArgs;

const ADMIN: &str = "fairness-admin-token";
const HONEST: usize = 50;
const SHARES_EACH: usize = 3;

async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value, Option<u64>) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, response.json().await.unwrap_or(Value::Null), retry)
}

/// Registers, waiting out the per-address registration limit as a miner does.
async fn register(http: &Client, pool: &TestPool, worker: &str) -> String {
    loop {
        let body = json!({"worker_id": worker, "wallet_address": format!("land1{worker}")});
        let (status, answer, retry) = call(http.post(format!("{}/pool/register", pool.url)).json(&body)).await;
        match status {
            StatusCode::OK => return answer["worker_token"].as_str().unwrap().to_string(),
            StatusCode::TOO_MANY_REQUESTS => tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await,
            other => panic!("registration answered {other}: {answer}"),
        }
    }
}

struct Worker {
    token: String,
    job: Job,
    next_nonce: u64,
    accepted: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_honest_workers_behind_one_address_and_one_forger() {
    let pool = TestPool::start(CoordinatorArgs {
        admin_token: Some(ADMIN.into()),
        // Defaults for every limit that matters here (per-address
        // registrations and unproven verification budget, ban rules).
        registrations_per_sec: None,
        shares_per_sec: None,
        ..settings("fairness")
    })
    .await;
    let farm = client_from("127.0.0.4");
    let forger_token = register(&farm, &pool, "forger").await;
    let forger_job = Job(call(farm.get(format!("{}/pool/job", pool.url)).bearer_auth(&forger_token)).await.1);
    let mut workers = Vec::new();
    for n in 0..HONEST {
        let token = register(&farm, &pool, &format!("honest{n}")).await;
        let job = Job(call(farm.get(format!("{}/pool/job", pool.url)).bearer_auth(&token)).await.1);
        let next_nonce = job.nonce_start();
        workers.push(Worker { token, job, next_nonce, accepted: 0 });
    }

    let started = Instant::now();
    let mut proven_latencies = Vec::new();
    let mut forged = 0u64;
    while workers.iter().any(|w| w.accepted < SHARES_EACH) {
        assert!(started.elapsed() < Duration::from_secs(240), "honest workers starved");
        let mut waited = false;
        for worker in workers.iter_mut().filter(|w| w.accepted < SHARES_EACH) {
            // The forger floods between every honest share.
            let nonce = forger_job.nonce_start() + forged;
            forged += 1;
            let forgery = json!({"job_id": forger_job.id(), "nonce": nonce, "digest": "44".repeat(32)});
            let (status, _, _) =
                call(farm.post(format!("{}/pool/share", pool.url)).bearer_auth(&forger_token).json(&forgery)).await;
            assert!(status != StatusCode::INTERNAL_SERVER_ERROR);

            let nonce = worker.next_nonce;
            let share = json!({"job_id": worker.job.id(), "nonce": nonce, "digest": worker.job.digest(nonce)});
            let sent = Instant::now();
            let (status, answer, _) =
                call(farm.post(format!("{}/pool/share", pool.url)).bearer_auth(&worker.token).json(&share)).await;
            match status {
                StatusCode::OK => {
                    assert_eq!(answer["accepted"], true, "an honest share: {answer}");
                    if worker.accepted > 0 {
                        proven_latencies.push(sent.elapsed());
                    }
                    worker.accepted += 1;
                    worker.next_nonce += 1;
                }
                // New sessions behind one address share one verification
                // budget until they are proven: wait as a miner does.
                StatusCode::TOO_MANY_REQUESTS if !waited => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    waited = true;
                }
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("an honest share answered {other}: {answer}"),
            }
        }
    }

    // Only the forger is banned.
    let (_, bans, _) = call(pool.http.get(format!("{}/pool/bans", pool.url)).bearer_auth(ADMIN)).await;
    let banned: HashSet<&str> =
        bans["bans"].as_array().unwrap().iter().map(|b| b["worker_id"].as_str().unwrap()).collect();
    assert_eq!(banned, HashSet::from(["land1forger.forger"]), "{bans}");
    // Proven honest workers were answered at normal latency during the flood.
    // (Of about 100 answers, the 95th percentile: the slowest few wait on
    // a disk sync, which a busy CI machine can stretch past any bound.)
    proven_latencies.sort();
    let p95 = proven_latencies[proven_latencies.len() * 95 / 100];
    assert!(p95 < Duration::from_secs(1), "honest p95 {p95:?} while the forger flooded");
    assert_eq!(proven_latencies.len(), HONEST * (SHARES_EACH - 1));
    pool.stop().await;
}
