//! `kill -9` of a real `vision-coordinator` process while shares are in
//! flight: no acknowledged share is lost, none is credited twice, and the
//! pool comes back on the same data directory.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vision_coordinator::storage::{PoolStore, SledStore};
use vision_suite::{fresh_dir, get_json, job_input, post_json, workspace_binary};
use visionx::{FastEngine, PowEngine};

/// Starts the coordinator binary and returns it with its base URL.
fn start(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(workspace_binary("vision-coordinator"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .args(["--devnet-difficulty", "1099511627776", "--share-difficulty", "1", "--min-share-difficulty", "1"])
        .args(["--shares-per-sec", "10000", "--max-share-difficulty", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vision-coordinator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url =
        line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in {line:?}"));
    (child, url.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_share_and_credits_none_twice() {
    let data_dir = fresh_dir("crash");
    let (mut child, url) = start(&data_dir);
    let http = reqwest::Client::new();
    let registration = json!({"worker_id": "rig", "wallet_address": "land1crash"});
    let registered = post_json(&http, &format!("{url}/pool/register"), None, &registration).await;
    let token = registered["worker_token"].as_str().unwrap().to_string();
    let job: Value =
        http.get(format!("{url}/pool/job")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let start_nonce = job["nonce_start"].as_u64().unwrap();

    // Honest shares, computed up front.
    let input = job_input(&job);
    let mut engine = FastEngine::new();
    let shares: Vec<(u64, String)> =
        (0..300).map(|i| (start_nonce + i, engine.hash(&input, start_nonce + i).to_hex())).collect();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for lane in 0..6 {
        let (http, url, token, job_id, acked) =
            (http.clone(), url.clone(), token.clone(), job_id.clone(), acked.clone());
        let mine: Vec<(u64, String)> = shares.iter().skip(lane).step_by(6).cloned().collect();
        senders.push(tokio::spawn(async move {
            for (nonce, digest) in mine {
                let body = json!({"job_id": job_id, "nonce": nonce, "digest": digest});
                let Ok(response) = http.post(format!("{url}/pool/share")).bearer_auth(&token).json(&body).send().await
                else {
                    return; // the server is gone
                };
                if let Ok(answer) = response.json::<Value>().await {
                    if answer["accepted"] == true {
                        acked.lock().unwrap().push(nonce);
                    }
                }
            }
        }));
    }
    // Kill while shares are in flight.
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert!(acked.len() >= 60);

    // Read the real sled files the killed process left.
    let ledger: Vec<(u64, vision_coordinator::storage::ShareRecord)> = {
        let store = SledStore::open_path(&data_dir.join("db")).unwrap();
        store.shares_from(0, 100_000).await.unwrap()
    };
    let credited: Vec<u64> = ledger.iter().filter(|(_, s)| s.job_id == job_id).map(|(_, s)| s.nonce).collect();
    let distinct: HashSet<u64> = credited.iter().copied().collect();
    assert_eq!(distinct.len(), credited.len(), "a share was credited twice");
    let lost: Vec<&u64> = acked.iter().filter(|n| !distinct.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged shares lost by kill -9: {lost:?}");
    assert!(distinct.iter().all(|n| shares.iter().any(|(s, _)| s == n)));

    // The pool comes back on the same data and still knows the old job:
    // everything credited is answered as credited already, everything else is
    // accepted now.
    let (mut child, url) = start(&data_dir);
    for (nonce, digest) in &shares {
        let share = json!({"job_id": job_id, "nonce": nonce, "digest": digest});
        let answer = post_json(&http, &format!("{url}/pool/share"), Some(&token), &share).await;
        if distinct.contains(nonce) {
            assert_eq!(answer["reason"], "already_credited", "credited before the crash: {answer}");
        } else {
            assert_eq!(answer["accepted"], true, "not credited before the crash: {answer}");
        }
    }
    let again = post_json(&http, &format!("{url}/pool/register"), None, &registration).await;
    assert_ne!(again["worker_token"], registered["worker_token"], "a new registration is a new session");
    let job2: Value =
        http.get(format!("{url}/pool/job")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_ne!(job2["job_id"], job["job_id"], "job ids never repeat across restarts");
    let nonce = job2["nonce_start"].as_u64().unwrap();
    let digest = FastEngine::new().hash(&job_input(&job2), nonce).to_hex();
    let share = json!({"job_id": job2["job_id"], "nonce": nonce, "digest": digest});
    let answer = post_json(&http, &format!("{url}/pool/share"), Some(&token), &share).await;
    assert_eq!(answer["accepted"], true, "{answer}");
    let metrics = get_json(&http, &format!("{url}/pool/metrics"), None).await;
    assert_eq!(metrics["ledger_shares"].as_u64(), Some(shares.len() as u64 + 1), "each share credited exactly once");

    // SIGTERM is a graceful stop: exit 0 with everything flushed.
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM must stop the coordinator cleanly: {status:?}");
    let store = SledStore::open_path(&data_dir.join("db")).unwrap();
    assert_eq!(store.ledger_len().await.unwrap(), shares.len() as u64 + 1);
    drop(store);
    let _ = std::fs::remove_dir_all(&data_dir);
}
