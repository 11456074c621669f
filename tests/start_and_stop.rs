//! Starting and stopping a coordinator process: its start-up warnings, a
//! stop while miners long-poll (their waits are answered at once, with the
//! job they have, so a stop takes a moment, not the drain's 10 s, and no
//! miner is cut off without an answer), a second signal that cuts the
//! drain short, and `--check-config`, which starts nothing.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_suite::{coordinator_log_path, exit_within, fresh_dir, post_json, start_coordinator, Processes};

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
    signal(&child, "-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let took = stopped_at.elapsed();
    assert_eq!(status.code(), Some(0), "a clean stop");
    assert!(took < Duration::from_secs(5), "the stop waited out the long-poll: {took:?}");
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer.ok(), Some(200), "the long-poll got its job, not a cut connection");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(job["job_id"].is_string());
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = std::process::Command::new("kill").args([name, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// A request still in flight holds a stop's drain (up to 10 s); a second
/// signal ends the process at once, with 130 (every acknowledged share is
/// on disk already: only the drain is cut).
#[test]
fn a_second_signal_stops_at_once_without_the_drain() {
    let data_dir = fresh_dir("stop-twice");
    let (child, url) = start_coordinator(&data_dir, &[], &[]);
    let mut guard = Processes(vec![child]);
    let child = &mut guard.0[0];
    // One whole request first, answered: the connection is accepted and
    // served (not waiting in the listen queue, which a stop would not hold
    // for). Then a registration whose body never finishes: in flight until
    // the drain gives up or the request times out (30 s).
    let mut slow = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: pool\r\n\r\n").unwrap();
    // (Any status: a readiness answer on a stalled machine may be 503.)
    let mut answer = [0u8; 9];
    slow.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 ", "{}", String::from_utf8_lossy(&answer));
    slow.write_all(
        b"POST /pool/register HTTP/1.1\r\nHost: pool\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"worker_id\":",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(child, "-TERM");
    assert_eq!(exit_within(child, Duration::from_secs(2)), None, "the drain waits for the request in flight");
    let second = Instant::now();
    signal(child, "-INT");
    let status = exit_within(child, Duration::from_secs(5)).expect("a second signal stops the process");
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(second.elapsed() < Duration::from_secs(3), "{:?}", second.elapsed());
    let log = std::fs::read_to_string(coordinator_log_path(&data_dir)).unwrap();
    assert!(log.contains("a second signal: stopping now"), "{log}");
    drop(slow);
}

/// What an operator must know at start-up is said once, in the log:
/// tokens crossing the network readable, a crash hook armed, a RUST_LOG
/// that is not a filter, a data directory others can read.
#[test]
fn start_up_warnings_name_what_the_operator_must_fix() {
    let data_dir = fresh_dir("start-warnings");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (mut child, _url) = start_coordinator(
        &data_dir,
        &["--bind", "0.0.0.0:0", "--crash-at", "after_transfer"],
        &[("RUST_LOG", "info,[[not a filter")],
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(coordinator_log_path(&data_dir)).unwrap();
    for expected in [
        "RUST_LOG is not a filter",
        "listening beyond loopback over plain HTTP",
        "test hook armed: the process aborts at AfterTransfer",
        "is readable by others (mode 755): it holds the pool's secret; chmod 700 it",
    ] {
        assert_eq!(log.matches(expected).count(), 1, "{expected:?} once in:\n{log}");
    }
    // On loopback, with a good filter, no hook, and a directory the
    // coordinator makes itself (0700): none of them.
    let quiet_dir = fresh_dir("start-quiet").join("pool");
    let (mut quiet, _url) = start_coordinator(&quiet_dir, &[], &[]);
    quiet.kill().unwrap();
    quiet.wait().unwrap();
    let log = std::fs::read_to_string(coordinator_log_path(&quiet_dir)).unwrap_or_default();
    assert!(!log.contains("WARN") && !log.contains("not a filter"), "{log}");
}

/// `--check-config` checks what a start would (file, flags, variables),
/// says what it would run, and touches nothing: no data directory appears.
#[test]
fn check_config_checks_and_starts_nothing() {
    let dir = fresh_dir("check-config");
    let data_dir = dir.join("never-made");
    let file = dir.join("pool.toml");
    std::fs::write(&file, "pool_fee_bps = 150\nadmin_token = \"a-long-admin-token-for-the-check\"\n").unwrap();
    let check = |extra: &[&str]| {
        let mut child = std::process::Command::new(vision_suite::workspace_binary("vision-coordinator"))
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .arg("--check-config")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let Some(status) = exit_within(&mut child, Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("it started instead of checking");
        };
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("the configuration holds") && stdout.contains("fee 1.50%"), "{stdout}");
    assert!(stdout.contains("admin token: set") && !stdout.contains("a-long-admin-token"), "{stdout}");
    let (code, _, stderr) = check(&["--pool-fee-bps", "5000"]);
    assert_eq!(code, Some(2), "a bad flag: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--pool-fee-bps"), "{stderr}");
    std::fs::write(&file, "pool_fee_bps = \"a-secret-looking-value\"\n").unwrap();
    let (code, _, stderr) = check(&[]);
    assert_eq!(code, Some(2), "a bad file: {stderr}");
    assert!(stderr.contains("line 1") && !stderr.contains("a-secret-looking-value"), "{stderr}");
    assert!(!data_dir.exists(), "nothing was started");
}
