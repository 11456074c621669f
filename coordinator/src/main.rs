//! The `vision-coordinator` command line: configuration in, a running pool out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vision_coordinator::config::CoordinatorArgs;
use vision_coordinator::demo::{self, DemoOptions};
use vision_coordinator::server::{shutdown_signal, Coordinator, StopSignals};

const EXIT_CODES: &str = "\
Exit codes:
  0  stopped cleanly (SIGINT or SIGTERM)
  1  a runtime failure (the message says what)
  2  bad configuration or flags";

/// The Vision pool coordinator: serves VisionX jobs over HTTP, verifies every
/// share on the CPU, and runs an embedded devnet chain unless --upstream is
/// given. Every option can also come from a VISION_* environment variable
/// or the --config TOML file (the flag's name: VISION_POOL_FEE_BPS and
/// pool_fee_bps for --pool-fee-bps).
#[derive(Debug, Parser)]
#[command(name = "vision-coordinator", version = env!("VISION_VERSION"), after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<CoordinatorCommand>,
    /// A TOML file of settings (flags and env vars take precedence).
    #[arg(long, env = "VISION_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Check the configuration as a start would (the file, the flags and
    /// the VISION_* variables), print what it runs, and exit: 0 when it
    /// holds, 2 when not. Opens no data directory, database or port.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    args: CoordinatorArgs,
}

#[derive(Debug, Subcommand)]
enum CoordinatorCommand {
    /// Run the whole system locally: a pool on the embedded devnet plus one
    /// vision-miner (GPU if present, else CPU) connected to it.
    Demo {
        /// Address for the pool.
        #[arg(long, default_value = "127.0.0.1:7072")]
        bind: String,
        /// Keep the demo's state here (default: a temporary directory removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address of the miner's status page.
        #[arg(long, default_value = "127.0.0.1:7073")]
        miner_api: String,
        /// The miner's devices: auto, gpu or cpu.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(CoordinatorCommand::Demo { bind, data_dir, miner_api, backend }) = cli.command {
        init_tracing("text");
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(err) => return fail(1, &err),
        };
        let options = DemoOptions { bind, data_dir, miner_api, backend };
        return match runtime.block_on(demo::run(options, shutdown_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(1, &err),
        };
    }
    init_tracing(&cli.log_format);
    let file = match &cli.config {
        Some(path) => match CoordinatorArgs::from_file(path) {
            Ok(file) => file,
            Err(err) => return fail(2, &err),
        },
        None => CoordinatorArgs::default(),
    };
    let config = match cli.args.or(file).resolve() {
        Ok(config) => config,
        Err(err) => return fail(2, &err),
    };
    if cli.check_config {
        use std::io::Write as _;
        let summary = format!("vision-coordinator: the configuration holds\n{}\n", config.summary());
        return match std::io::stdout().lock().write_all(summary.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(1, &format!("cannot write the summary: {err}")),
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(1, &err),
    };
    let result = runtime.block_on(run(config));
    // A blocking call left on a failing disk must not keep the process
    // (deaf to signals by then) from exiting for its supervisor.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(1, &format!("{err:#}")),
    }
}

async fn run(config: vision_coordinator::config::CoordinatorConfig) -> anyhow::Result<()> {
    // The port first: a port in use must not leave a new data directory behind.
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let coordinator = Coordinator::build(&config).await?;
    let addr = listener.local_addr()?;
    let chain = match &config.upstream {
        Some(url) => format!("upstream node {}", vision_coordinator::chain::upstream::shown_url(url)),
        None => format!("embedded devnet '{}'", config.devnet.chain_id),
    };
    tracing::info!("vision-coordinator listening on http://{addr} ({chain}, data in {})", config.data_dir.display());
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "listening beyond loopback over plain HTTP: worker and admin tokens cross the network readable; \
             put TLS in front (docs/OPERATIONS.md, section 3)"
        );
    }
    if let Some(point) = config.pool.rewards.crash_at {
        tracing::warn!("test hook armed: the process aborts at {point:?} (--crash-at / VISION_CRASH_AT)");
    }
    // Caught before anyone is told the pool serves: a stop sent at once
    // still drains and flushes.
    let mut signals = StopSignals::install().context("cannot listen for SIGINT and SIGTERM")?;
    println!("vision-coordinator: serving http://{addr} ({chain})");
    // The first signal stops gracefully; a second, during the drain, at once
    // (every acknowledged share is on disk already: only the drain is cut).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals.next().await;
        let _ = stop.send(());
        signals.next().await;
        eprintln!("vision-coordinator: a second signal: stopping now, without the drain");
        std::process::exit(130);
    });
    coordinator
        .serve(listener, async move {
            let _ = stopped.await;
        })
        .await?;
    tracing::info!("stopped; state flushed");
    Ok(())
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|err| {
        if std::env::var_os("RUST_LOG").is_some() {
            eprintln!("vision-coordinator: RUST_LOG is not a filter ({err}); logging at info");
        }
        tracing_subscriber::EnvFilter::new("info,tower_http=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn fail(code: u8, err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vision-coordinator: {err}");
    ExitCode::from(code)
}
