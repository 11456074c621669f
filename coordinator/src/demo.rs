//! `vision-coordinator demo`: the whole system on one machine. A pool on the
//! embedded devnet, tuned so a single CPU finds blocks every few seconds,
//! and one `vision-miner` (GPU if present, else CPU) connected to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::config::CoordinatorArgs;
use crate::server::Coordinator;

/// The demo miner's wallet.
pub const DEMO_WALLET: &str = "land1demo";

/// Base units as LAND (1 LAND = 10^8).
fn land(units: u64) -> String {
    format!("{}.{:08}", units / 100_000_000, units % 100_000_000)
}

pub struct DemoOptions {
    pub bind: String,
    pub data_dir: Option<PathBuf>,
    pub miner_api: String,
    pub backend: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "cannot find the vision-miner binary next to this one ({0}); build both: cargo build --release --workspace"
    )]
    NoMiner(String),
    #[error("{0}")]
    Start(String),
}

/// The miner binary beside the running coordinator binary.
fn miner_binary() -> Result<PathBuf, DemoError> {
    let exe = std::env::current_exe().map_err(|e| DemoError::NoMiner(e.to_string()))?;
    let miner = exe.with_file_name(format!("vision-miner{}", std::env::consts::EXE_SUFFIX));
    if miner.exists() {
        Ok(miner)
    } else {
        Err(DemoError::NoMiner(miner.display().to_string()))
    }
}

fn start_miner(miner: &Path, url: &str, options: &DemoOptions) -> Result<Child, DemoError> {
    Command::new(miner)
        .args(["--pool", url, "--wallet", DEMO_WALLET, "--worker", "demo-rig"])
        .args(["--backend", &options.backend, "--status-interval", "5", "--api-bind", &options.miner_api])
        .spawn()
        .map_err(|e| DemoError::Start(format!("cannot start {}: {e}", miner.display())))
}

/// Runs until `shutdown` resolves (Ctrl-C), then stops the miner and the pool.
pub async fn run(options: DemoOptions, shutdown: impl std::future::Future<Output = ()>) -> Result<(), DemoError> {
    let miner = miner_binary()?;
    let temporary = options.data_dir.is_none();
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vision-demo-{}", std::process::id())));
    // A single CPU does about 700-1,500 hashes/s: blocks every ~10 s, shares every ~3 s.
    let settings = CoordinatorArgs {
        data_dir: Some(data_dir.clone()),
        bind: Some(options.bind.clone()),
        devnet_difficulty: Some(10_000),
        block_time: Some(10),
        share_difficulty: Some(500),
        target_share_seconds: Some(3),
        // Rewards land within the minute: 2 confirmations, paid from 1 LAND.
        coinbase_maturity: Some(1),
        confirmations: Some(2),
        payout_threshold: Some(100_000_000),
        reward_poll_ms: Some(1000),
        pool_name: Some("Vision demo pool".into()),
        ..CoordinatorArgs::default()
    };
    let config = settings.resolve().map_err(|e| DemoError::Start(e.to_string()))?;
    // The port first: a port in use must not leave a data directory behind.
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|e| DemoError::Start(format!("cannot listen on {}: {e} (try --bind 127.0.0.1:0)", config.bind)))?;
    let coordinator = Coordinator::build(&config).await.map_err(|e| DemoError::Start(e.to_string()))?;
    let pool = coordinator.pool.clone();
    let url = format!("http://{}", listener.local_addr().map_err(|e| DemoError::Start(e.to_string()))?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coordinator.serve(listener, async {
        let _ = stopped.await;
    }));

    println!("Vision pool demo");
    println!("  coordinator (pool API, devnet node API): {url}   e.g. curl {url}/pool/stats");
    println!("  miner status page:                        http://{}/", options.miner_api);
    println!("  data: {}{}", data_dir.display(), if temporary { " (removed at exit)" } else { "" });
    println!("  Ctrl-C stops both.\n");
    let mut child = start_miner(&miner, &url, &options)?;

    let report = async {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let stats = pool.stats(crate::pool::now_ms());
            let rewards = pool.rewards().balance_view(DEMO_WALLET).await.ok();
            let on_chain = pool.chain().balance(DEMO_WALLET).await.map(|b| b.spendable).unwrap_or(0);
            println!(
                "[pool] height {} | blocks found {} | workers online {} | effective {:.1} H/s over {} shares (10 min) | miner reports {:.1} H/s",
                stats.height.unwrap_or(0),
                stats.blocks_found,
                stats.workers_online,
                stats.hashrate.effective_10m,
                stats.hashrate.shares_10m,
                stats.hashrate.reported.unwrap_or(0.0),
            );
            if let Some(b) = rewards {
                println!(
                    "[rewards] {DEMO_WALLET}: immature {} | confirmed {} | paid {} | on the devnet {} LAND",
                    land(b.immature),
                    land(b.confirmed),
                    land(b.paid),
                    land(on_chain),
                );
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = report => {}
    }
    let _ = child.kill();
    let _ = child.wait();
    // The server waits for the pool to be released before it returns.
    drop(pool);
    let _ = stop.send(());
    let _ = server.await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    println!("demo stopped");
    Ok(())
}
