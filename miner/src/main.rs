//! The `vision-miner` command line. Thin glue: parse arguments, call the
//! library, print, and map failures to exit codes.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use vision_miner::backend::gpu::{self, GpuBackend, ShaderVariant};
use vision_miner::backend::{CpuBackend, CpuConfig};
use vision_miner::bench::{bench_cpu, bench_gpu, bench_job, BenchReport};
use vision_miner::client::miner_config::{MineArgs, MinerConfig, MiningMode};
use vision_miner::client::miner_status::{status_line, MinerStatus, SAMPLE_EVERY};
use vision_miner::client::session::{self, PoolSession, SessionEnd, SoloSession};
use vision_miner::client::work_dispatch::{Device, WorkDispatch};
use vision_miner::client::{local_api, node_api::NodeApi, pool_api::PoolApi};
use vision_miner::device_selection::{self, BackendChoice};
use vision_miner::{hash_command, InputError};
use visionx::{EngineKind, Params};

const EXIT_CODES: &str = "\
Mining: vision-miner --pool URL [--pool URL2 ...] --wallet ADDRESS [options]
        vision-miner --solo NODE_URL --wallet ADDRESS [options]

Exit codes:
  0  success (mining stopped by SIGINT or SIGTERM)
  1  a runtime failure (the message says what)
  2  bad input: a bad URL, wallet or flag, bad hex, out-of-limit params, an unreadable file
  3  the pool (every pool) refused this miner, e.g. its wallet address
  4  banned by the pool (the message says for how long)
  5  no usable device";

/// Mine VisionX, the proof of work of the Vision chain, on GPUs and CPUs:
/// join pools (with failover) or mine solo against a node.
#[derive(Debug, Parser)]
#[command(name = "vision-miner", version, after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A TOML file of mining settings (keys as the flags, with underscores; flags and env vars win).
    #[arg(long, env = "VISION_CONFIG", global = false)]
    config: Option<PathBuf>,
    /// Log format for mining.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(flatten)]
    mine: MineArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute one VisionX digest and print it.
    ///
    /// Either from explicit inputs (--seed, --epoch, --header, --nonce and
    /// optional params; prints the 64-hex-digit digest alone), or from a block's
    /// fields (--block FILE; prints a JSON object with epoch, epoch_seed,
    /// pow_message, digest and meets_target).
    Hash(HashArgs),
    /// Measure the hash rate with consensus params and print hashes/s.
    Bench(BenchArgs),
    /// List GPU adapters (name, backend, type, 64-bit support, limits) and the CPU.
    Devices(DevicesArgs),
    /// Check one adapter in this process: compile the kernel and hash a known
    /// vector (the miner runs this in a child process before using a GPU).
    #[command(hide = true)]
    GpuProbe(GpuProbeArgs),
}

#[derive(Debug, Args)]
struct DevicesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GpuProbeArgs {
    /// Adapter index, as `vision-miner devices` lists them.
    #[arg(long)]
    device: usize,
    /// Force a shader variant.
    #[arg(long, value_parser = parse_shader)]
    shader: Option<ShaderVariant>,
}

/// GPU selection flags shared by `hash` and `bench`.
#[derive(Debug, Args)]
struct GpuArgs {
    /// GPU adapter index (see `vision-miner devices`); default: every usable GPU.
    #[arg(long)]
    device: Option<usize>,
    /// Shader variant: native u64 (needs SHADER_INT64) or emulated vec2<u32>;
    /// default: native where the adapter supports it.
    #[arg(long, value_parser = parse_shader)]
    shader: Option<ShaderVariant>,
}

#[derive(Debug, Args)]
struct HashArgs {
    /// Epoch seed: 32 bytes as 64 hex digits (an optional 0x prefix is allowed).
    #[arg(long, required_unless_present = "block")]
    seed: Option<String>,
    /// Epoch number (u64) folded into the dataset seed.
    #[arg(long, required_unless_present = "block")]
    epoch: Option<u64>,
    /// The pow message (header bytes) as hex; may be empty.
    #[arg(long, required_unless_present = "block")]
    header: Option<String>,
    /// The nonce (u64, decimal).
    #[arg(long, required_unless_present = "block")]
    nonce: Option<u64>,
    #[command(flatten)]
    params: ParamsArgs,
    /// A JSON file with a block's fields (chain_id, height, parent_hash,
    /// timestamp, difficulty, tx_root, miner, nonce), or - for stdin. Hashed
    /// with consensus params.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "seed", "epoch", "header", "nonce", "dataset_mb", "scratch_mb", "mix_iters", "reads_per_iter", "write_every",
    ])]
    block: Option<PathBuf>,
    /// Which engine computes the digest: reference, fast (CPU) or gpu; all give identical digests.
    #[arg(long, value_enum, default_value_t = HashEngine::Fast)]
    engine: HashEngine,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FilterArg {
    /// On for software adapters (SIMD CPUs), off for GPUs.
    Auto,
    On,
    Off,
}

impl FilterArg {
    fn choice(self) -> Option<bool> {
        match self {
            FilterArg::Auto => None,
            FilterArg::On => Some(true),
            FilterArg::Off => Some(false),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HashEngine {
    /// The literal CPU engine (slow, obviously right).
    Reference,
    /// The on-demand CPU engine.
    Fast,
    /// The WGSL kernel on a GPU adapter.
    Gpu,
}

/// VisionX params; each defaults to its consensus value.
#[derive(Debug, Args)]
struct ParamsArgs {
    /// Epoch dataset size in MiB (consensus 256, limit 512).
    #[arg(long)]
    dataset_mb: Option<u32>,
    /// Per-hash scratchpad size in MiB (consensus 32, limit 128).
    #[arg(long)]
    scratch_mb: Option<u32>,
    /// Iterations of the mix loop (consensus 65536, limit 1000000).
    #[arg(long)]
    mix_iters: Option<u32>,
    /// Dependent reads per iteration: 4 or more reads four, below 4 reads three (consensus 4, limit 8).
    #[arg(long)]
    reads_per_iter: Option<u32>,
    /// Write back every N iterations; 0 never writes (consensus 4).
    #[arg(long)]
    write_every: Option<u32>,
}

impl ParamsArgs {
    fn params(&self) -> Params {
        let c = Params::CONSENSUS;
        Params {
            dataset_mb: self.dataset_mb.unwrap_or(c.dataset_mb),
            scratch_mb: self.scratch_mb.unwrap_or(c.scratch_mb),
            mix_iters: self.mix_iters.unwrap_or(c.mix_iters),
            reads_per_iter: self.reads_per_iter.unwrap_or(c.reads_per_iter),
            write_every: self.write_every.unwrap_or(c.write_every),
            epoch_blocks: c.epoch_blocks,
        }
    }
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Backend(s) to measure: cpu, gpu, or auto (every usable GPU, else the
    /// CPU); give several (--backend cpu,gpu) to compare them in one run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu")]
    backend: Vec<BackendChoice>,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Device memory the GPU batch may use, MiB (the tuner stays within it).
    #[arg(long, default_value_t = 4096)]
    gpu_memory_mb: u64,
    /// Fixed GPU batch size in hashes (skips auto-tuning).
    #[arg(long)]
    gpu_batch: Option<u32>,
    /// Bit filter in front of the GPU's write tables: on, off, or auto (on
    /// for software adapters only).
    #[arg(long, value_enum, default_value_t = FilterArg::Auto)]
    gpu_filter: FilterArg,
    /// CPU threads (default: one per available core).
    #[arg(long)]
    threads: Option<usize>,
    /// Length of the timed window of each run, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Engine(s) to measure; give several (--engine reference,fast) to compare them in one run.
    #[arg(long, default_value = "fast", value_delimiter = ',', value_parser = parse_engine)]
    engine: Vec<EngineKind>,
    /// Print one JSON object per run instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse()
}

fn parse_shader(s: &str) -> Result<ShaderVariant, String> {
    s.parse()
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        if !cli.mine.wants_mining() && cli.config.is_none() {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
        return run_mine(cli.config, &cli.log_format, cli.mine);
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vision-miner: {err:#}");
            if err.chain().any(|cause| cause.is::<InputError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Hash(args) => run_hash(args),
        Command::Bench(args) => run_bench(args),
        Command::Devices(args) => run_devices(args),
        Command::GpuProbe(args) => {
            gpu::probe(args.device, args.shader)?;
            println!("ok");
            Ok(())
        }
    }
}

fn run_hash(args: HashArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.block {
        let json = read_block_file(path)?;
        let report = hash_command::hash_block(&json, |input, nonce| hash_with(&args, input, nonce))?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    // clap guarantees these are present when --block is absent.
    let (Some(seed), Some(epoch), Some(header), Some(nonce)) = (&args.seed, args.epoch, &args.header, args.nonce)
    else {
        return Err(InputError::new("--seed, --epoch, --header and --nonce are required without --block").into());
    };
    let input = hash_command::explicit_input(seed, epoch, header, args.params.params())?;
    let digest = hash_with(&args, &input, nonce)?;
    println!("{digest}");
    Ok(())
}

/// One digest on the engine `args` selects.
fn hash_with(args: &HashArgs, input: &visionx::PowInput, nonce: u64) -> anyhow::Result<visionx::Digest> {
    Ok(match args.engine {
        HashEngine::Reference => EngineKind::Reference.build().hash(input, nonce),
        HashEngine::Fast => EngineKind::Fast.build().hash(input, nonce),
        HashEngine::Gpu => {
            let device = gpu::open_device(args.gpu.device, args.gpu.shader)?;
            gpu::hash_nonces(device, input, &[nonce])?[0]
        }
    })
}

fn read_block_file(path: &PathBuf) -> anyhow::Result<String> {
    let mut json = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut json).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|s| json = s)
    };
    read.map_err(|e| InputError::new(format!("cannot read block file {}: {e}", path.display())))?;
    Ok(json)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds);
    let mut rates: Vec<(String, f64)> = Vec::new();
    let mut cpu_engines_done = false;
    for choice in &args.backend {
        let plan = device_selection::plan(*choice, args.gpu.device).map_err(|e| InputError::new(e.to_string()))?;
        if let Some(note) = &plan.note {
            eprintln!("vision-miner: {note}");
        }
        for index in &plan.gpus {
            let Some(backend) = start_gpu(*index, &args)? else { continue };
            if !args.json {
                eprintln!(
                    "benchmarking GPU #{index} {} ({} shader, batch {} hashes, split {}) for {}s...",
                    backend.summary().name,
                    backend.variant(),
                    backend.shape().hashes(),
                    backend.shape().split,
                    args.seconds
                );
            }
            let report = bench_gpu(&backend, duration);
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "gpu #{} {} ({}): {:.1} H/s, {} hashes in {:.2}s, batch {} hashes in {} segment(s), split {}, mean dispatch {:.2} ms ({}), tables {} KiB per hash",
                    report.device,
                    report.device_name,
                    report.shader,
                    report.hashes_per_second,
                    report.hashes,
                    report.seconds,
                    report.batch_hashes,
                    report.segments,
                    report.split,
                    report.mean_dispatch_ms,
                    report.dispatch_timing,
                    report.table_bytes_per_hash / 1024,
                );
            }
            rates.push((format!("gpu #{index}"), report.hashes_per_second));
        }
        if plan.cpu && !cpu_engines_done {
            cpu_engines_done = true;
            for &engine in &args.engine {
                let backend = CpuBackend::new(CpuConfig { threads: args.threads, engine })
                    .map_err(|e| InputError::new(e.to_string()))
                    .context("cannot start the CPU backend")?;
                if !args.json {
                    eprintln!(
                        "benchmarking {engine} engine on {} CPU threads for {}s...",
                        backend.threads(),
                        args.seconds
                    );
                }
                let report = bench_cpu(&backend, duration);
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print_bench(&report);
                }
                rates.push((format!("cpu {engine}"), report.hashes_per_second));
                rates.push((format!("cpu {engine} per thread"), report.hashes_per_second_per_thread));
            }
        }
    }
    if !args.json {
        let rate = |name: &str| rates.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
        if let (Some(reference), Some(fast)) = (rate("cpu reference per thread"), rate("cpu fast per thread")) {
            println!("fast / reference per thread: {:.1}x", fast / reference);
        }
        if let Some(cpu) = rate("cpu fast") {
            for (name, gpu_rate) in rates.iter().filter(|(n, _)| n.starts_with("gpu")) {
                println!(
                    "{name} / cpu fast ({} threads): {:.2}x",
                    args.threads.map_or("all".into(), |t| t.to_string()),
                    gpu_rate / cpu
                );
            }
        }
    }
    Ok(())
}

/// Probes GPU `index` in a child process, then opens and tunes it. `None`
/// (with a message) when the probe fails: mining goes on without it.
fn start_gpu(index: usize, args: &BenchArgs) -> anyhow::Result<Option<GpuBackend>> {
    let exe = std::env::current_exe().context("cannot find the vision-miner executable for the GPU probe")?;
    if let Err(reason) = gpu::probe_in_child(&exe, index, args.gpu.shader, Duration::from_secs(120)) {
        eprintln!("vision-miner: skipping GPU #{index}: {reason}");
        return Ok(None);
    }
    let goals = gpu::tuning::TuningGoals {
        memory_budget: args.gpu_memory_mb << 20,
        fixed_hashes: args.gpu_batch,
        ..Default::default()
    };
    match GpuBackend::start(
        index,
        args.gpu.shader,
        args.gpu_filter.choice(),
        goals,
        &bench_job(),
        gpu::InjectedFault::None,
    ) {
        Ok(backend) => Ok(Some(backend)),
        Err(err) => {
            eprintln!("vision-miner: skipping GPU #{index}: {err}");
            Ok(None)
        }
    }
}

fn run_devices(args: DevicesArgs) -> anyhow::Result<()> {
    let adapters = gpu::adapters::summaries();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.json {
        let json = serde_json::json!({ "gpus": adapters, "cpu": { "threads": threads } });
        println!("{json}");
        return Ok(());
    }
    if adapters.is_empty() {
        println!("no GPU adapters (no Vulkan, Metal or DX12 driver found)");
    }
    for a in &adapters {
        println!(
            "gpu #{}: {} [{} {}{}] int64 {}, timestamps {}, max buffer {} MiB, max storage binding {} MiB, {} storage buffers/stage, driver {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.is_software { ", software" } else { "" },
            if a.shader_int64 { "yes" } else { "no (emulated shader)" },
            if a.timestamp_query { "yes" } else { "no" },
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_storage_buffers_per_shader_stage,
            if a.driver.is_empty() { "unknown" } else { &a.driver },
        );
    }
    println!("cpu: {threads} threads");
    Ok(())
}

/// Mining: `vision-miner --pool ... --wallet ...` or `--solo`.
fn run_mine(config_file: Option<PathBuf>, log_format: &str, args: MineArgs) -> ExitCode {
    let fail = |code: u8, message: &str| {
        eprintln!("vision-miner: {message}");
        ExitCode::from(code)
    };
    let file = match config_file.as_deref().map(MineArgs::from_file).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(message) => return fail(2, &message),
    };
    let config = match args.or(file).resolve() {
        Ok(config) => config,
        Err(message) => return fail(2, &message),
    };
    init_tracing(log_format, config.quiet);
    let devices = match select_devices(&config) {
        Ok(devices) => devices,
        Err(message) => return fail(5, &format!("no usable device: {message}")),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(1, &format!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(mine(config, devices)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(MineEnd::Session(end @ SessionEnd::Refused(_))) => fail(3, &end.to_string()),
        Err(MineEnd::Session(end @ SessionEnd::Banned { .. })) => fail(4, &end.to_string()),
        Err(MineEnd::Api(message)) => fail(2, &message),
    }
}

enum MineEnd {
    Session(SessionEnd),
    Api(String),
}

fn init_tracing(format: &str, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},wgpu_core=warn,wgpu_hal=warn,naga=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The devices to mine on: GPUs that pass the child-process probe and
/// start, and the CPU where chosen (or as the fallback when no GPU works).
fn select_devices(config: &MinerConfig) -> Result<Vec<Device>, String> {
    let plan = device_selection::plan(config.backend, config.device).map_err(|e| e.to_string())?;
    if let Some(note) = &plan.note {
        tracing::warn!("{note}");
    }
    let mut devices = Vec::new();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable for the GPU probe: {e}"))?;
    for &index in &plan.gpus {
        if let Err(reason) = gpu::probe_in_child(&exe, index, config.shader, Duration::from_secs(120)) {
            tracing::error!("skipping GPU #{index}: {reason}");
            continue;
        }
        let goals = gpu::tuning::TuningGoals { memory_budget: config.gpu_memory_mb << 20, ..Default::default() };
        match GpuBackend::start(index, config.shader, None, goals, &bench_job(), gpu::InjectedFault::None) {
            Ok(backend) => {
                tracing::info!(
                    "GPU #{index} {} ready ({} shader, batch {} hashes, split {})",
                    backend.summary().name,
                    backend.variant(),
                    backend.shape().hashes(),
                    backend.shape().split
                );
                devices.push(Device::Gpu(Box::new(backend)));
            }
            Err(err) => tracing::error!("skipping GPU #{index}: {err}"),
        }
    }
    let threads = config.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let gpu_only = config.backend == BackendChoice::Gpu;
    if plan.cpu || (devices.is_empty() && !gpu_only) {
        if !plan.cpu {
            tracing::warn!("no GPU could be used: mining on the CPU");
        }
        devices.push(Device::Cpu { threads });
    }
    if devices.is_empty() {
        return Err("no GPU passed its probe (see the messages above); try --backend cpu".into());
    }
    Ok(devices)
}

async fn mine(config: MinerConfig, devices: Vec<Device>) -> Result<(), MineEnd> {
    let (found_tx, found_rx) = tokio::sync::mpsc::unbounded_channel();
    let dispatch = WorkDispatch::start(devices, found_tx);
    let status = Arc::new(MinerStatus::new());

    let sampler = {
        let (status, dispatch) = (status.clone(), dispatch.clone());
        tokio::spawn(async move {
            loop {
                let counts = dispatch.slots().iter().map(|s| s.hashes()).collect();
                status.meter.sample(std::time::Instant::now(), counts);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let printer = config.status_interval.map(|interval| {
        let (status, dispatch) = (status.clone(), dispatch.clone());
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                println!("{}", status_line(&status.report(&dispatch), color));
            }
        })
    });
    if let Some((addr, token)) = &config.api {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            MineEnd::Api(format!("cannot serve the status API on {addr}: {e} (use --api-bind or --no-api)"))
        })?;
        let api = local_api::router(local_api::LocalApi {
            status: status.clone(),
            dispatch: dispatch.clone(),
            token: token.as_deref().map(Arc::from),
        });
        tracing::info!("status API on http://{}", listener.local_addr().map_err(|e| MineEnd::Api(e.to_string()))?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, api).await;
        });
    }

    let session = async {
        match &config.mode {
            MiningMode::Pool(urls) => {
                let pools =
                    urls.iter().map(|u| PoolApi::new(u)).collect::<Result<Vec<_>, _>>().map_err(MineEnd::Api)?;
                let pool_session = PoolSession {
                    pools,
                    wallet: config.wallet.clone(),
                    worker_id: config.worker.clone(),
                    worker_name: config.worker.clone(),
                    long_poll: config.long_poll,
                    failback: config.failback,
                };
                session::run_pool(pool_session, dispatch.clone(), status.clone(), found_rx)
                    .await
                    .map_err(MineEnd::Session)
            }
            MiningMode::Solo(url) => {
                let node = NodeApi::new(url, config.node_token.clone()).map_err(MineEnd::Api)?;
                let solo = SoloSession { node, wallet: config.wallet.clone() };
                session::run_solo(solo, dispatch.clone(), status.clone(), found_rx).await.map_err(MineEnd::Session)
            }
        }
    };
    let result = tokio::select! {
        result = session => result,
        () = shutdown_signal() => {
            tracing::info!("stopping");
            Ok(())
        }
    };
    dispatch.stop();
    sampler.abort();
    if let Some(printer) = printer {
        printer.abort();
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

fn print_bench(r: &BenchReport) {
    let per_thread: Vec<String> = r.per_thread.iter().map(|h| format!("{h:.1}")).collect();
    println!(
        "{} {}: {:.1} H/s total, {:.1} H/s per thread ({} threads: {}), {} hashes in {:.2}s, stop {:.1} ms, peak RSS {}",
        r.backend,
        r.engine,
        r.hashes_per_second,
        r.hashes_per_second_per_thread,
        r.threads,
        per_thread.join(" "),
        r.hashes,
        r.seconds,
        r.stop_latency_ms,
        r.peak_rss_mib.map_or("n/a".to_string(), |m| format!("{m:.1} MiB")),
    );
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
