//! The chain goes away and comes back: a pool on `--upstream` loses its
//! node (SIGKILL), stops handing out jobs (503 `chain_unavailable`) without
//! crashing, says so in its metrics and log, and recovers by itself when the
//! node returns on the same address.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::{json, Value};
use vision_suite::{coordinator_log_path, eventually, free_port, fresh_dir, start_coordinator};

async fn job_status(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let response = http.get(format!("{url}/pool/job")).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_stops_jobs_while_its_node_is_gone_and_recovers_by_itself() {
    let root = fresh_dir("outage");
    let (node_dir, pool_dir) = (root.join("node"), root.join("pool"));
    let node_bind = format!("127.0.0.1:{}", free_port());
    let node_args =
        ["--bind", node_bind.as_str(), "--node-token", "node-secret-for-tests", "--devnet-difficulty", "1099511627776"];
    let (mut node, node_url) = start_coordinator(&node_dir, &node_args, &[]);
    let pool_args = ["--upstream", node_url.as_str(), "--upstream-token", "node-secret-for-tests", "--block-time", "1"];
    let (mut pool, url) = start_coordinator(&pool_dir, &pool_args, &[("RUST_LOG", "info")]);
    let http = reqwest::Client::new();

    let registration = json!({"worker_id": "rig", "wallet_address": "land1outage"});
    let registered: Value =
        http.post(format!("{url}/pool/register")).json(&registration).send().await.unwrap().json().await.unwrap();
    let token = registered["worker_token"].as_str().unwrap().to_string();
    assert_eq!(job_status(&http, &url, &token).await.0, 200);
    assert_eq!(metric(&http, &url, "vision_pool_chain_up").await, 1.0);

    // The node dies: within a few block times no more jobs, and the pool says why.
    node.kill().unwrap();
    node.wait().unwrap();
    eventually("jobs to stop", Duration::from_secs(20), async || {
        let (status, body) = job_status(&http, &url, &token).await;
        status == 503 && body["error"] == "chain_unavailable"
    })
    .await;
    assert_eq!(metric(&http, &url, "vision_pool_chain_up").await, 0.0);
    assert!(metric(&http, &url, "vision_pool_template_failures_total").await > 0.0);
    assert!(pool.try_wait().unwrap().is_none(), "the pool keeps running");

    // The node comes back on the same address: the pool recovers by itself.
    let (mut node, _) = start_coordinator(&node_dir, &node_args, &[]);
    eventually("jobs to flow again", Duration::from_secs(20), async || job_status(&http, &url, &token).await.0 == 200)
        .await;
    assert_eq!(metric(&http, &url, "vision_pool_chain_up").await, 1.0);
    let log = || std::fs::read_to_string(coordinator_log_path(&pool_dir)).unwrap();
    assert!(log().contains("template refresh failed"), "the outage is logged: {}", log());
    eventually("the recovery to be logged", Duration::from_secs(10), async || {
        log().contains("block templates are back")
    })
    .await;

    for child in [&mut pool, &mut node] {
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }
    let _ = std::fs::remove_dir_all(&root);
}
