//! The data directory's disk fills up under a mining worker: the coordinator
//! answers 503 `storage_unavailable` (never a 500, never a crash), stops with
//! a clear message, starts again once there is room, and every share it
//! acknowledged is in the ledger exactly once. And a payout batch whose
//! write the full disk kept from being made durable is never sent.
//!
//! The disk is a small tmpfs mounted for the test (this needs root with
//! CAP_SYS_ADMIN, as CI here has; elsewhere the test says so and skips;
//! under `CI=true` it fails).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vision_coordinator::storage::{PoolStore, SledStore};
use vision_suite::{coordinator_log_path, exit_within, fresh_dir, job_input, start_coordinator};
use visionx::{FastEngine, PowEngine};

const ARGS: &[&str] = &[
    "--share-difficulty=1",
    "--min-share-difficulty=1",
    "--max-share-difficulty=1",
    "--shares-per-sec=100000",
    "--devnet-difficulty=1000000",
];

/// Kills the coordinator when dropped (a failed assertion leaves nothing
/// holding the mount).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unmounts the test's tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, megabytes: u32) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

/// Where no tmpfs could be mounted: fails in CI (root there), says so elsewhere.
fn skipped() {
    assert!(std::env::var_os("CI").is_none(), "CI runs as root and must be able to mount a tmpfs");
    eprintln!("SKIPPED: mounting a tmpfs needs root");
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

/// What one mining worker saw: acknowledged shares, and the refusals.
#[derive(Default)]
struct Seen {
    acked: Vec<(String, u64)>,
    storage_unavailable: usize,
}

/// Mines honestly until `until` says stop or the pool is gone; panics on any
/// 5xx other than a 503 with a JSON reason.
async fn mine(url: &str, wallet: &str, seen: &mut Seen, mut until: impl FnMut(&Seen) -> bool) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut engine = FastEngine::new();
    let body = json!({"worker_id": wallet.replace("land1", "rig-"), "wallet_address": wallet});
    // (A pool already stopped by the failed disk: nothing to do.)
    let Ok(answer) = http.post(format!("{url}/pool/register")).json(&body).send().await else { return };
    let status = answer.status().as_u16();
    let answer: Value = answer.json().await.unwrap_or(Value::Null);
    let Some(token) = answer["worker_token"].as_str().map(str::to_string) else {
        assert_eq!(status, 503, "a registration answered {status}: {answer}");
        seen.storage_unavailable += usize::from(answer["error"] == "storage_unavailable");
        return;
    };
    let mut next: Option<(String, u64)> = None;
    while !until(seen) {
        let Ok(response) = http.get(format!("{url}/pool/job")).bearer_auth(&token).send().await else { return };
        let status = response.status().as_u16();
        let job: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            assert_eq!(status, 503, "a job request answered {status}: {job}");
            assert!(job["error"].is_string(), "a 503 without a JSON reason: {job}");
            // (Issuing a job writes too: its 503 counts as the pool saying so.)
            seen.storage_unavailable += usize::from(job["error"] == "storage_unavailable");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let id = job["job_id"].as_str().unwrap().to_string();
        let input = job_input(&job);
        let start = match &next {
            Some((last, n)) if *last == id => *n,
            _ => job["nonce_start"].as_u64().unwrap(),
        };
        next = Some((id.clone(), start + 32));
        for nonce in start..start + 32 {
            let digest = engine.hash(&input, nonce);
            let share = json!({"job_id": id, "nonce": nonce, "digest": digest.to_hex()});
            let Ok(response) = http.post(format!("{url}/pool/share")).bearer_auth(&token).json(&share).send().await
            else {
                return;
            };
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 if answer["accepted"] == true => seen.acked.push((id.clone(), nonce)),
                200 => {}
                503 if answer["error"] == "storage_unavailable" => seen.storage_unavailable += 1,
                503 => assert!(answer["error"].is_string(), "a 503 without a JSON reason: {answer}"),
                other => panic!("a share answered {other}: {answer}"),
            }
            if until(seen) {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_stops_cleanly_and_loses_no_acknowledged_share() {
    let root = fresh_dir("disk-full");
    let disk = root.join("disk");
    let Some(mount) = mount_tmpfs(&disk, 64) else { return skipped() };
    // The data directory is the mount itself: its log (`disk.log`) is outside.
    let data_dir = disk.clone();
    let (pool, url) = start_coordinator(&data_dir, ARGS, &[]);
    let mut pool = KillOnDrop(pool);

    // Some shares while there is room.
    let mut seen = Seen::default();
    mine(&url, "land1first", &mut seen, |s| s.acked.len() >= 20).await;
    let before_full = seen.acked.len();

    // Something else fills the disk, leaving a few hundred KiB (in chunks:
    // the pool writes meanwhile, and a write past the end just stops it).
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while free_bytes(&disk) > (300 << 10) + chunk.len() as u64 {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    // Three workers at once, so shares are in flight when the disk fails.
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |s: &Seen| s.storage_unavailable > 0 || Instant::now() > deadline;
    let mut others = [Seen::default(), Seen::default()];
    let [second, third] = &mut others;
    tokio::join!(
        mine(&url, "land1first", &mut seen, done),
        mine(&url, "land1other", second, done),
        mine(&url, "land1third", third, done),
    );
    for other in others {
        seen.acked.extend(other.acked);
        seen.storage_unavailable += other.storage_unavailable;
    }
    assert!(seen.storage_unavailable > 0, "the pool never said its storage failed ({} acked)", seen.acked.len());
    assert!(seen.acked.len() > before_full, "shares were acknowledged until the disk was full");

    // It stops by itself, saying why.
    let status = exit_within(&mut pool.0, Duration::from_secs(45)).expect("the coordinator stops on a failed disk");
    assert!(!status.success(), "a failed disk is not a clean stop: {status}");
    let log = std::fs::read_to_string(coordinator_log_path(&data_dir)).unwrap_or_default();
    assert!(log.contains("the data directory failed"), "the log says why: {log}");

    // Room again: it starts, and mines on.
    std::fs::remove_file(&filler).unwrap();
    let (child, url) = start_coordinator(&data_dir, ARGS, &[]);
    let mut pool = KillOnDrop(child);
    let acked_before_restart = seen.acked.len();
    mine(&url, "land1second", &mut seen, |s| s.acked.len() >= acked_before_restart + 10).await;
    Command::new("kill").args(["-TERM", &pool.0.id().to_string()]).status().unwrap();
    assert!(exit_within(&mut pool.0, Duration::from_secs(45)).is_some_and(|s| s.success()), "a clean stop");

    // Every acknowledged share is in the ledger exactly once.
    let db = sled::open(data_dir.join("db")).unwrap();
    let store = SledStore::open(&db).unwrap();
    let mut in_ledger: HashMap<(String, u64), usize> = HashMap::new();
    for (_, share) in store.shares_from(0, usize::MAX).await.unwrap() {
        *in_ledger.entry((share.job_id.clone(), share.nonce)).or_default() += 1;
    }
    assert!(in_ledger.values().all(|n| *n == 1), "a share credited twice");
    for share in &seen.acked {
        assert_eq!(in_ledger.get(share), Some(&1), "an acknowledged share is missing: {share:?}");
    }
    eprintln!(
        "disk full: {} shares acknowledged ({} before the disk filled), {} answered 503 storage_unavailable",
        seen.acked.len(),
        before_full,
        seen.storage_unavailable
    );
    drop(store);
    drop(db);
    drop(mount);
    let _ = std::fs::remove_dir_all(&root);
}

/// A payout batch written but never made durable (the disk filled as it was
/// flushed) is never sent. sled keeps showing such a write to reads after
/// its flush failed, so the next round would find the batch `sending` and
/// pay it; a restart forgets the batch, and pays its balances again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_batch_that_never_reached_the_disk_is_not_sent() {
    use std::sync::Arc;
    use vision_coordinator::chain::devnet::{DevnetChain, DevnetConfig};
    use vision_coordinator::chain::{BlockSubmission, Chain};
    use vision_coordinator::rewards::{RewardConfig, Rewards};
    use vision_coordinator::storage::{BalanceBucket, BalanceDelta, RewardUpdate};

    let root = fresh_dir("payout-disk-full");
    let disk = root.join("disk");
    let Some(_mount) = mount_tmpfs(&disk, 16) else { return skipped() };
    // The node, on another disk (as an upstream node is), funds the pool.
    let node_db = sled::open(root.join("node")).unwrap();
    let node = DevnetConfig {
        start_difficulty: 1,
        coinbase_maturity: 1,
        key_addresses: vec!["vision-pool".into()],
        params: visionx::Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..visionx::Params::CONSENSUS },
        ..DevnetConfig::default()
    };
    let chain = Chain::Devnet(Arc::new(DevnetChain::open(&node_db, node).unwrap()));
    for _ in 0..2 {
        let template = chain.template("vision-pool").await.unwrap();
        let outcome = chain.submit(BlockSubmission { header: template.header, nonce: 0 }).await.unwrap();
        assert!(outcome.accepted, "{outcome:?}");
    }
    assert!(chain.balance("vision-pool").await.unwrap().spendable > 0);

    // Now and then (about one try in twenty, on a loaded machine) the round
    // fails on the full disk before its batch is written: then the case
    // did not arise, and it is set up again on an empty disk.
    for attempt in 0..5 {
        let _ = std::fs::remove_dir_all(disk.join("pool"));
        let _ = std::fs::remove_file(disk.join("filler"));
        // Without sled's background flusher: only the round's flushes write.
        let db = sled::Config::new().path(disk.join("pool")).flush_every_ms(None).open().unwrap();
        let store: Arc<dyn PoolStore> = Arc::new(SledStore::open(&db).unwrap());
        // Balances due, on disk: a batch and balances of a few pages (a
        // write within the last page of sled's log still fits on a full
        // disk; with far more payees the round failed before its batch).
        let payee = |i: usize| format!("land1payee{attempt}-{i}");
        let due = RewardUpdate {
            balances: (0..60).map(|i| BalanceDelta::new(&payee(i), BalanceBucket::Confirmed, 1_000)).collect(),
            ..RewardUpdate::default()
        };
        store.apply_reward_update(&due).await.unwrap();
        store.flush().unwrap();
        let config =
            RewardConfig { payout_threshold: 1, pool_address: "vision-pool".into(), ..RewardConfig::default() };
        let rewards = Rewards::new(config, store.clone(), chain.clone()).unwrap();

        // Something else fills the disk; the round writes its batch, which
        // cannot be flushed.
        {
            use std::io::Write;
            let mut filler = std::fs::File::create(disk.join("filler")).unwrap();
            let chunk = vec![0u8; 64 << 10];
            while filler.write_all(&chunk).is_ok() {}
            let _ = filler.sync_all();
        }
        let first = rewards.run_round(1_000, 0).await;
        assert!(first.is_err(), "the batch's flush fails on a full disk: {first:?}");
        if store.payouts_sending().await.unwrap().is_empty() {
            eprintln!("try {attempt}: the round failed before its batch was written ({first:?}); again");
            continue;
        }
        // The batch is still seen, though not on disk. Rounds on (as during
        // a stop's drain): it is never sent.
        for round in 2..5 {
            let failed = rewards.run_round(round * 1_000, 0).await;
            assert!(format!("{failed:?}").contains("No space left"), "round {round} stopped at the flush: {failed:?}");
        }
        assert_eq!(store.payouts_sending().await.unwrap().len(), 1, "still sending, not sent");
        for i in [0, 59] {
            let paid = chain.balance(&payee(i)).await.unwrap();
            assert_eq!((paid.spendable, paid.immature), (0, 0), "paid a batch that is not on disk");
        }
        return;
    }
    panic!("in 5 tries, the round never wrote its batch before its flush failed");
}
