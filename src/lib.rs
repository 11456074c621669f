//! Support for the workspace-level integration tests (`tests/`) and
//! benchmarks (`benches/`): finding the workspace's binaries, giving each
//! test a fresh directory, and reading pool jobs as a miner would. The product lives in `visionx/`, `miner/` and
//! `coordinator/`; nothing here ships.

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

/// GETs `url` (with a bearer token if given) and reads the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> serde_json::Value {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET").json().await.expect("JSON answer")
}
