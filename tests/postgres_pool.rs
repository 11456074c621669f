//! Three real `vision-coordinator` processes on one PostgreSQL database (a
//! throwaway server this test starts), sharing one chain: the first one's
//! embedded devnet serves the others through `--upstream`. Miners are
//! spread over them and send each share to whichever coordinator comes
//! next (no sticky routing). Then one coordinator is killed with SIGKILL
//! under load.

#[path = "../coordinator/tests/support/throwaway_postgres.rs"]
mod throwaway_postgres;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use throwaway_postgres::ThrowawayPostgres;
use vision_coordinator::storage::{DatabaseTls, PgStore, PoolStore};
use vision_suite::{
    exit_within, fresh_dir, get_json, job_input, post_json, start_coordinator, workspace_binary, Processes,
};
use visionx::{FastEngine, PowEngine};

const ADMIN: &str = "admin-secret-for-tests";
const NODE: &str = "node-secret-for-tests";

/// Every hash is a share, none a block.
const SHARE_FLAGS: &[&str] = &[
    "--devnet-difficulty",
    "1099511627776",
    "--share-difficulty",
    "1",
    "--min-share-difficulty",
    "1",
    "--max-share-difficulty",
    "1",
    "--shares-per-sec",
    "10000",
    "--admin-token",
    ADMIN,
];

struct Worker {
    token: String,
    jobs: Vec<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_on_one_database_act_as_one_pool() {
    let server = ThrowawayPostgres::start();
    let url = server.database("pool");
    let mut processes = Processes(Vec::new());
    let dir = fresh_dir("pg-a");
    let mut args = vec!["--database-url", &url, "--node-token", NODE];
    args.extend_from_slice(SHARE_FLAGS);
    let (child, first) = start_coordinator(&dir, &args, &[]);
    processes.0.push(child);
    let mut urls = vec![first.clone()];
    for label in ["pg-b", "pg-c"] {
        let mut args = vec!["--database-url", &url, "--upstream", &first, "--upstream-token", NODE];
        args.extend_from_slice(SHARE_FLAGS);
        let (child, url) = start_coordinator(&fresh_dir(label), &args, &[]);
        processes.0.push(child);
        urls.push(url);
    }
    let http = reqwest::Client::new();

    // Workers register anywhere; their credentials work everywhere, and
    // each takes a job from every coordinator.
    let mut workers = Vec::new();
    for w in 0..3 {
        let registration = json!({"worker_id": format!("rig{w}"), "wallet_address": format!("land1pg{w}")});
        let answer = post_json(&http, &format!("{}/pool/register", urls[w]), None, &registration).await;
        let token = answer["worker_token"].as_str().unwrap_or_else(|| panic!("registered: {answer}")).to_string();
        let mut jobs = Vec::new();
        for coordinator in &urls {
            let job = get_json(&http, &format!("{coordinator}/pool/job"), Some(&token)).await;
            assert!(job["job_id"].is_string(), "a job from {coordinator}: {job}");
            jobs.push(job);
        }
        workers.push(Worker { token, jobs });
    }
    // One template for the tip everywhere, and no nonce given out twice.
    let all_jobs: Vec<&Value> = workers.iter().flat_map(|w| w.jobs.iter()).collect();
    let messages: HashSet<&str> = all_jobs.iter().map(|j| j["pow_message"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), 1, "every coordinator mines the tip's one template");
    let mut ranges: Vec<(u64, u64)> =
        all_jobs.iter().map(|j| (j["nonce_start"].as_u64().unwrap(), j["nonce_end"].as_u64().unwrap())).collect();
    ranges.sort_unstable();
    assert!(ranges.windows(2).all(|r| r[0].1 <= r[1].0), "job ranges overlap: {ranges:?}");

    // Shares of every job, each sent to the next coordinator in turn.
    let mut engine = FastEngine::new();
    let mut acked: HashSet<(String, u64)> = HashSet::new();
    let mut sent = 0usize;
    for worker in &workers {
        for job in &worker.jobs {
            let input = job_input(job);
            let start = job["nonce_start"].as_u64().unwrap();
            for nonce in start..start + 6 {
                let digest = engine.hash(&input, nonce).to_hex();
                let body = json!({"job_id": job["job_id"], "nonce": nonce, "digest": digest});
                let target = &urls[sent % urls.len()];
                sent += 1;
                let answer = post_json(&http, &format!("{target}/pool/share"), Some(&worker.token), &body).await;
                assert_eq!(answer["accepted"], true, "a share of another coordinator's job, at {target}: {answer}");
                acked.insert((job["job_id"].as_str().unwrap().to_string(), nonce));
            }
        }
    }

    // The same share sent to two coordinators at once is credited once.
    let job = &workers[0].jobs[0];
    let nonce = job["nonce_start"].as_u64().unwrap() + 100;
    let digest = engine.hash(&job_input(job), nonce).to_hex();
    let body = json!({"job_id": job["job_id"], "nonce": nonce, "digest": digest});
    let (at_b, at_c) = (format!("{}/pool/share", urls[1]), format!("{}/pool/share", urls[2]));
    let (b, c) = tokio::join!(
        post_json(&http, &at_b, Some(&workers[0].token), &body),
        post_json(&http, &at_c, Some(&workers[0].token), &body),
    );
    assert!(b["accepted"] == true && c["accepted"] == true, "a resubmission is answered, not refused: {b} {c}");
    let fresh = [&b, &c].iter().filter(|a| a["reason"].is_null()).count();
    assert_eq!(fresh, 1, "one coordinator credits it, the other answers already_credited: {b} {c}");
    acked.insert((job["job_id"].as_str().unwrap().to_string(), nonce));
    // Another worker's copy of it is a duplicate wherever it is sent.
    let stolen = post_json(&http, &format!("{}/pool/share", urls[0]), Some(&workers[1].token), &body).await;
    assert_eq!(stolen["accepted"], false, "{stolen}");

    // An operator's change through one coordinator holds on all within a second or two.
    let configure = json!({"pool_fee_bps": 175});
    let changed = post_json(&http, &format!("{}/pool/configure", urls[0]), Some(ADMIN), &configure).await;
    assert_eq!(changed["pool_fee_bps"], 175, "{changed}");
    for coordinator in &urls[1..] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mode = get_json(&http, &format!("{coordinator}/pool/mode"), Some(ADMIN)).await;
            if mode["settings"]["pool_fee_bps"] == 175 {
                break;
            }
            assert!(Instant::now() < deadline, "the fee change did not reach {coordinator}: {mode}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // SIGKILL the third coordinator while shares stream to all three: the
    // others keep serving, and what it acknowledged is in the ledger.
    let victim = processes.0[2].id();
    let mut after_kill = 0;
    for (i, worker) in workers.iter().enumerate() {
        let job = &worker.jobs[i];
        let input = job_input(job);
        let start = job["nonce_start"].as_u64().unwrap() + 1000;
        for nonce in start..start + 30 {
            if i == 1 && nonce == start + 10 {
                Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap();
            }
            let digest = engine.hash(&input, nonce).to_hex();
            let body = json!({"job_id": job["job_id"], "nonce": nonce, "digest": digest});
            let target = &urls[nonce as usize % urls.len()];
            let Ok(response) =
                http.post(format!("{target}/pool/share")).bearer_auth(&worker.token).json(&body).send().await
            else {
                continue; // the killed one
            };
            let answer: Value = response.json().await.unwrap_or_default();
            if answer["accepted"] == true {
                acked.insert((job["job_id"].as_str().unwrap().to_string(), nonce));
                after_kill += usize::from(target != &urls[2]);
            }
        }
    }
    assert!(after_kill >= 40, "the surviving coordinators kept serving ({after_kill} shares)");
    // A survivor's metrics: its shares were committed in append batches.
    let metrics = get_json(&http, &format!("{}/pool/metrics", urls[0]), None).await;
    assert_eq!(metrics["storage"]["backend"], "postgres", "{metrics}");
    let commits = metrics["storage"]["commits"].as_u64().unwrap();
    // Every batch holds at least one share that was appended or found credited.
    let appends: u64 = ["valid", "replayed", "duplicate"].iter().map(|k| metrics["shares"][k].as_u64().unwrap()).sum();
    assert!(commits >= 1 && commits <= appends, "{metrics}");

    // The books: every acknowledged share in the ledger exactly once.
    let store = PgStore::connect(&url, 2, &DatabaseTls::default()).await.expect("read the shared database");
    let ledger = store.shares_from(0, usize::MAX).await.unwrap();
    let mut in_ledger: HashMap<(String, u64), usize> = HashMap::new();
    for (_, share) in &ledger {
        *in_ledger.entry((share.job_id.clone(), share.nonce)).or_default() += 1;
    }
    assert!(in_ledger.values().all(|n| *n == 1), "a share credited twice");
    for share in &acked {
        assert_eq!(in_ledger.get(share), Some(&1), "an acknowledged share is missing: {share:?}");
    }
    assert_eq!(store.ledger_len().await.unwrap(), ledger.len() as u64, "positions are dense");
    eprintln!("{} shares acknowledged by three coordinators, {} in the ledger", acked.len(), ledger.len());
}

/// A coordinator whose reward flags differ from a running one's on the same
/// database refuses to start (exit 1), saying with whom and how; with the
/// same flags it joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_with_other_reward_rules_refuses_to_join() {
    let server = ThrowawayPostgres::start();
    let url = server.database("rules");
    let mut processes = Processes(Vec::new());
    let (child, first) = start_coordinator(&fresh_dir("rules-a"), &["--database-url", &url, "--node-token", NODE], &[]);
    processes.0.push(child);
    let joining = ["--database-url", &url, "--upstream", &first, "--upstream-token", NODE];

    let dir = fresh_dir("rules-b");
    let mut other = Command::new(workspace_binary("vision-coordinator"))
        .args(["--data-dir", dir.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .args(joining)
        .args(["--payout-scheme", "prop"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = exit_within(&mut other, Duration::from_secs(30)) else {
        other.kill().unwrap();
        panic!("a coordinator with other reward rules started");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut other.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("other reward rules") && err.contains("\"prop\"") && err.contains("\"pplns\""), "{err}");

    let (child, _) = start_coordinator(&fresh_dir("rules-c"), &joining, &[]);
    processes.0.push(child);
}
