//! The `vision-miner` command line. Clap glue: parse arguments, call the
//! library (mining is `vision_miner::mining::run`), print, and exit with the
//! code of the one error type (`MinerError::exit_code`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use vision_miner::backend::gpu::{self, ShaderVariant};
use vision_miner::backend::{CpuBackend, CpuConfig};
use vision_miner::bench::{bench_cpu, bench_gpu};
use vision_miner::client::miner_config::{check_gpu_memory_mb, MineArgs};
use vision_miner::device_selection::{self, BackendChoice};
use vision_miner::{hash_command, mining, MinerError};
use visionx::{EngineKind, Params, PowEngine};

const EXIT_CODES: &str = "\
Mining: vision-miner --pool URL [--pool URL2 ...] --wallet ADDRESS [options]
        vision-miner --solo NODE_URL --wallet ADDRESS [options]

Exit codes:
  0  success (mining stopped by SIGINT or SIGTERM)
  1  a runtime failure (the message says what)
  2  bad input: a bad URL, wallet or flag, bad hex, out-of-limit params, an unreadable file
  3  the pool (every pool) refused this miner, e.g. its wallet address; solo, the node
     refused its templates or its blocks (a missing or wrong --node-token, or
     node writes turned off)
  4  banned by every pool (or by some and refused by the rest), with --exit-on-ban (the
     message says for how long); without it the miner stops hashing and waits the ban out
  5  no usable device, or every device stopped while mining (a lost GPU)
  130  a second SIGINT or SIGTERM while stopping: stopped at once, without sending what was found";

/// Mine VisionX, the proof of work of the Vision chain, on GPUs and CPUs:
/// join pools (with failover) or mine solo against a node.
#[derive(Debug, Parser)]
#[command(name = "vision-miner", version = env!("VISION_VERSION"), after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A TOML file of mining settings (keys as the flags, with underscores; flags and env vars win).
    #[arg(long, env = "VISION_CONFIG", global = false)]
    config: Option<PathBuf>,
    /// Log format for mining.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Check the mining settings (flags, VISION_* variables, the --config
    /// file), print what they mine with, and exit: 0 when they hold, 2 when
    /// not. Opens no device and connects to nothing.
    #[arg(long)]
    check_config: bool,
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
    /// GPU adapter indexes, e.g. 0,2 (see `vision-miner devices`); `hash`
    /// takes one. Default: every usable GPU (`hash`: the first).
    #[arg(long = "device", value_name = "N[,N...]", value_delimiter = ',')]
    devices: Vec<usize>,
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
    /// Backend(s) to measure: cpu, gpu, auto (every usable GPU, else the
    /// CPU), or all (every usable GPU and the CPU); give several (--backend
    /// cpu,gpu) to compare them in one run. Each device is measured alone,
    /// one after another.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu")]
    backend: Vec<BackendChoice>,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Device memory the GPU batch may use, MiB (the tuner stays within it)
    /// [default, where Vulkan reports the memory: on a discrete GPU 85% of
    /// its free memory (or heap), at most 32768; otherwise half, at most
    /// 4096. Elsewhere: 32768 on a discrete GPU, 4096 otherwise].
    #[arg(long)]
    gpu_memory_mb: Option<u64>,
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
    /// CPU engine(s) to measure: reference, scalar, avx2, avx512, or fast (the
    /// best this CPU runs); give several (--engine scalar,avx2,avx512) to
    /// compare them in one run.
    #[arg(long, default_value = "fast", value_delimiter = ',', value_parser = parse_engine)]
    engine: Vec<EngineKind>,
    /// Print one JSON object per run instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_engine(s: &str) -> Result<EngineKind, visionx::UnknownEngine> {
    s.parse()
}

fn parse_shader(s: &str) -> Result<ShaderVariant, gpu::shader::UnknownShader> {
    s.parse()
}

fn parse_seconds(s: &str) -> Result<f64, MinerError> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(MinerError::bad_input(format!("{s:?} is not a number of seconds in (0, 86400]"))),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => {
            init_tracing("text", false);
            run_command(command)
        }
        // Nothing at all asked: the help. Flags without a pool are a
        // mistake to name in one line (below).
        None if !cli.mine.wants_mining() && cli.config.is_none() && std::env::args_os().len() == 1 => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
        None if cli.check_config => check_config(cli.config, cli.mine),
        None => run_mining(cli.config, &cli.log_format, cli.mine),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vision-miner: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn run_command(command: Command) -> Result<(), MinerError> {
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

/// `--check-config`: the settings resolved as mining would, and shown.
fn check_config(config_file: Option<PathBuf>, args: MineArgs) -> Result<(), MinerError> {
    use std::io::Write as _;
    let file = config_file.as_deref().map(MineArgs::from_file).transpose()?.unwrap_or_default();
    let config = args.or(file).resolve()?;
    let summary = format!("vision-miner: the configuration holds\n{}\n", config.summary());
    std::io::stdout()
        .lock()
        .write_all(summary.as_bytes())
        .map_err(|e| MinerError::runtime(format!("cannot write the summary: {e}")))
}

/// Mining: `vision-miner --pool ... --wallet ...` or `--solo`.
fn run_mining(config_file: Option<PathBuf>, log_format: &str, args: MineArgs) -> Result<(), MinerError> {
    let file = config_file.as_deref().map(MineArgs::from_file).transpose()?.unwrap_or_default();
    let config = args.or(file).resolve()?;
    init_tracing(log_format, config.quiet);
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| MinerError::runtime(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        // The first signal stops cleanly (what was found is sent, for a
        // few seconds); a second, meanwhile, at once.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            mining::shutdown_signal().await;
            let _ = stop.send(());
            mining::shutdown_signal().await;
            eprintln!("vision-miner: a second signal: stopping now, without sending what was found");
            std::process::exit(130);
        });
        mining::run(config, async move {
            let _ = stopped.await;
        })
        .await
    });
    // A GPU probe still running on a blocking thread (stopped during start)
    // is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

fn run_hash(args: HashArgs) -> Result<(), MinerError> {
    if let Some(path) = &args.block {
        let json = read_block_file(path)?;
        let report = hash_command::hash_block(&json, |input, nonce| hash_with(&args, input, nonce))?;
        println!("{}", serde_json::to_string(&report).map_err(MinerError::runtime)?);
        return Ok(());
    }
    // clap guarantees these are present when --block is absent.
    let (Some(seed), Some(epoch), Some(header), Some(nonce)) = (&args.seed, args.epoch, &args.header, args.nonce)
    else {
        return Err(MinerError::bad_input("--seed, --epoch, --header and --nonce are required without --block"));
    };
    let input = hash_command::explicit_input(seed, epoch, header, args.params.params())?;
    let digest = hash_with(&args, &input, nonce)?;
    println!("{digest}");
    Ok(())
}

/// One digest on the engine `args` selects.
fn hash_with(args: &HashArgs, input: &visionx::PowInput, nonce: u64) -> Result<visionx::Digest, MinerError> {
    Ok(match args.engine {
        HashEngine::Reference => visionx::ReferenceEngine::new().hash(input, nonce),
        HashEngine::Fast => visionx::FastEngine::new().hash(input, nonce),
        HashEngine::Gpu => {
            let device = match args.gpu.devices.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ => return Err(MinerError::bad_input("hash --engine gpu runs on one adapter: give one --device")),
            };
            let device = gpu::open_device(device, args.gpu.shader)?;
            gpu::hash_nonces(device, input, &[nonce])?[0]
        }
    })
}

fn read_block_file(path: &PathBuf) -> Result<String, MinerError> {
    let mut json = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut json).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|s| json = s)
    };
    read.map_err(|e| MinerError::bad_input(format!("cannot read block file {}: {e}", path.display())))?;
    Ok(json)
}

fn run_bench(args: BenchArgs) -> Result<(), MinerError> {
    let duration = Duration::from_secs_f64(args.seconds);
    let mut rates: Vec<(String, f64)> = Vec::new();
    let mut cpu_engines_done = false;
    // GPUs the plan named that measured nothing: the bench fails once the
    // rest has been measured (a script reading --json must not take an
    // empty report for a pass).
    let mut gpus_failed: Vec<String> = Vec::new();
    let memory_budget = args.gpu_memory_mb.map(check_gpu_memory_mb).transpose()?.map(|mb| mb << 20);
    let max_threads = vision_miner::backend::cpu::max_threads();
    if args.threads.is_some_and(|n| n == 0 || n > max_threads) {
        return Err(MinerError::bad_input(format!("--threads must be 1-{max_threads} (four per core)")));
    }
    for choice in &args.backend {
        let plan =
            device_selection::plan(*choice, &args.gpu.devices).map_err(|e| MinerError::bad_input(e.to_string()))?;
        if let Some(note) = &plan.note {
            eprintln!("vision-miner: {note}");
        }
        for &index in &plan.gpus {
            let goals = gpu::tuning::TuningGoals { memory_budget, fixed_hashes: args.gpu_batch, ..Default::default() };
            let backend = match mining::start_gpu(index, args.gpu.shader, args.gpu_filter.choice(), goals) {
                Ok(backend) => backend,
                Err(err) => {
                    gpus_failed.push(format!("GPU #{index} did not start: {err}"));
                    continue;
                }
            };
            if !args.json {
                eprintln!("benchmarking GPU #{index} {} for {}s...", backend.summary().name, args.seconds);
            }
            let report = bench_gpu(&backend, duration);
            if args.json {
                print_json(&report)?;
            } else {
                println!("{report}");
            }
            if let Some(err) = &report.error {
                gpus_failed.push(format!("GPU #{index} stopped part-way: {err}"));
            } else if report.hashes_per_second <= 0.0 {
                gpus_failed.push(format!("GPU #{index} hashed nothing"));
            }
            rates.push((format!("gpu #{index}"), report.hashes_per_second));
        }
        if plan.cpu && !cpu_engines_done {
            cpu_engines_done = true;
            for &engine in &args.engine {
                let backend = CpuBackend::new(CpuConfig { threads: args.threads, engine })
                    .map_err(|e| MinerError::bad_input(format!("cannot start the CPU backend: {e}")))?;
                if !args.json {
                    eprintln!(
                        "benchmarking {engine} engine on {} CPU threads for {}s...",
                        backend.threads(),
                        args.seconds
                    );
                }
                let report = bench_cpu(&backend, duration);
                if args.json {
                    print_json(&report)?;
                } else {
                    println!("{report}");
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
        if let Some(scalar) = rate("cpu scalar per thread") {
            for simd in ["avx2", "avx512", "fast"] {
                if let Some(r) = rate(&format!("cpu {simd} per thread")) {
                    println!("{simd} / scalar per thread: {:.2}x", r / scalar);
                }
            }
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
    if !gpus_failed.is_empty() {
        return Err(MinerError::NoDevice(format!("{} (see above)", gpus_failed.join("; "))));
    }
    Ok(())
}

/// One bench report as a JSON line.
fn print_json<T: serde::Serialize>(report: &T) -> Result<(), MinerError> {
    println!("{}", serde_json::to_string(report).map_err(MinerError::runtime)?);
    Ok(())
}

fn run_devices(args: DevicesArgs) -> Result<(), MinerError> {
    let adapters = gpu::adapters::summaries();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engine = visionx::CpuEngine::best();
    let engines: Vec<&str> =
        visionx::CpuEngine::ALL.into_iter().filter(|e| e.is_supported()).map(|e| e.name()).collect();
    if args.json {
        let json = serde_json::json!({
            "gpus": adapters,
            "cpu": { "threads": threads, "engine": engine.name(), "engines": engines },
        });
        println!("{json}");
        return Ok(());
    }
    if adapters.is_empty() {
        println!("no GPU adapters (no Vulkan, Metal or DX12 driver found)");
    }
    for a in &adapters {
        println!("{a}");
    }
    println!("cpu: {threads} threads, {engine} engine (this CPU runs: {})", engines.join(", "));
    Ok(())
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
    // A panic goes to the log like any other error (in JSON when the log is
    // JSON): the GPU backend catches wgpu's panics on a failed driver and
    // mines on without that device, so one is not necessarily the end.
    // `RUST_BACKTRACE` still gets the default report, backtrace and all.
    // (Where RUST_LOG turns this crate's errors off, the default report.)
    // (Asked once, here: the filter is fixed from now on.)
    let logged = tracing::enabled!(tracing::Level::ERROR);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if logged {
            let thread = std::thread::current();
            tracing::error!("panic in thread {}: {info}", thread.name().unwrap_or("unnamed"));
        }
        if !logged || std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            default_hook(info);
        }
    }));
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
