//! `vision-coordinator demo` (what `scripts/demo.sh` runs): a real pool and
//! a real `vision-miner` process on the CPU. Within about a minute the
//! miner's wallet has a balance on the devnet, paid by the pool.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vision_suite::{free_port, fresh_dir, workspace_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pays_its_miner_on_the_devnet() {
    let data_dir = fresh_dir("demo");
    let (pool_port, miner_port) = (free_port(), free_port());
    let mut demo = Command::new(workspace_binary("vision-coordinator"))
        .args(["demo", "--backend", "cpu", "--data-dir", data_dir.to_str().unwrap()])
        .args(["--bind", &format!("127.0.0.1:{pool_port}"), "--miner-api", &format!("127.0.0.1:{miner_port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{pool_port}/node/balance/land1demo");
    // A minute on a fast machine; CI machines and debug builds get slack.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut spendable = 0;
    while Instant::now() < deadline {
        if let Ok(response) = http.get(&url).send().await {
            if let Ok(balance) = response.json::<serde_json::Value>().await {
                spendable = balance["spendable"].as_u64().unwrap_or(0);
                if spendable > 0 {
                    break;
                }
            }
        }
        assert!(demo.try_wait().unwrap().is_none(), "the demo exited early");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let paid = http
        .get(format!("http://127.0.0.1:{pool_port}/pool/balances/land1demo"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    // SIGTERM: the demo stops its miner and the pool.
    let _ = Command::new("kill").arg(demo.id().to_string()).status();
    let _ = demo.wait();
    assert!(spendable > 0, "the miner's wallet was never paid on the devnet");
    // (Read after the chain: a later payout may have landed in between.)
    assert!(paid["paid"].as_u64() >= Some(spendable), "the pool's books cover what the chain holds: {paid}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
