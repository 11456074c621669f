//! Stopping a coordinator while miners long-poll: their waits are answered
//! at once (with the job they have), so a stop takes a moment, not the
//! drain's 10 s, and no miner is cut off without an answer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_suite::{fresh_dir, post_json, start_coordinator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_long_polls_at_once() {
    let data_dir = fresh_dir("stop-long-poll");
    let (mut child, url) = start_coordinator(&data_dir, &[], &[]);
    let http = reqwest::Client::new();
    let registration = json!({"worker_id": "rig", "wallet_address": "land1stop"});
    let token = post_json(&http, &format!("{url}/pool/register"), None, &registration).await["worker_token"]
        .as_str()
        .unwrap()
        .to_string();
    let job: Value =
        http.get(format!("{url}/pool/job")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    // Nobody mines: no new block wakes this long-poll; only the stop can.
    let waiting = {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            let asked = Instant::now();
            let answer = http.get(format!("{url}/pool/job?wait=60")).bearer_auth(&token).send().await;
            (answer.map(|r| r.status().as_u16()), asked.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the long-poll waits while nothing changes");
    let stopped_at = Instant::now();
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let took = stopped_at.elapsed();
    assert_eq!(status.code(), Some(0), "a clean stop");
    assert!(took < Duration::from_secs(5), "the stop waited out the long-poll: {took:?}");
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer.ok(), Some(200), "the long-poll got its job, not a cut connection");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(job["job_id"].is_string());
}
