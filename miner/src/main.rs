//! The `vision-miner` command line. Thin glue: parse arguments, call the
//! library, print, and map failures to exit codes.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use vision_miner::backend::{CpuBackend, CpuConfig};
use vision_miner::bench::{bench_cpu, BenchReport};
use vision_miner::{hash_command, InputError};
use visionx::{EngineKind, Params};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a runtime failure (the message says what)
  2  bad input: bad hex, out-of-limit params, an unreadable block file, bad flags";

/// Mine VisionX, the proof of work of the Vision chain, on CPUs.
#[derive(Debug, Parser)]
#[command(name = "vision-miner", version, after_help = EXIT_CODES, subcommand_required = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Which engine computes the digest (both give identical digests).
    #[arg(long, default_value = "fast", value_parser = parse_engine)]
    engine: EngineKind,
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
    /// Which backend to measure.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// The CPU fast (or reference) engine on a thread pool.
    Cpu,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
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
    match run(cli) {
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Hash(args) => run_hash(args),
        Command::Bench(args) => run_bench(args),
    }
}

fn run_hash(args: HashArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.block {
        let json = read_block_file(path)?;
        let report = hash_command::hash_block(&json, args.engine)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    // clap guarantees these are present when --block is absent.
    let (Some(seed), Some(epoch), Some(header), Some(nonce)) = (&args.seed, args.epoch, &args.header, args.nonce)
    else {
        return Err(InputError::new("--seed, --epoch, --header and --nonce are required without --block").into());
    };
    let digest = hash_command::hash_explicit(seed, epoch, header, nonce, args.params.params(), args.engine)?;
    println!("{digest}");
    Ok(())
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
    let BackendArg::Cpu = args.backend;
    let mut reports: Vec<BenchReport> = Vec::new();
    for &engine in &args.engine {
        let backend = CpuBackend::new(CpuConfig { threads: args.threads, engine })
            .map_err(|e| InputError::new(e.to_string()))
            .context("cannot start the CPU backend")?;
        if !args.json {
            eprintln!("benchmarking {engine} engine on {} CPU threads for {}s...", backend.threads(), args.seconds);
        }
        let report = bench_cpu(&backend, Duration::from_secs_f64(args.seconds));
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_bench(&report);
        }
        reports.push(report);
    }
    if !args.json {
        if let (Some(reference), Some(fast)) = (
            reports.iter().find(|r| r.engine == EngineKind::Reference.name()),
            reports.iter().find(|r| r.engine == EngineKind::Fast.name()),
        ) {
            let ratio = fast.hashes_per_second_per_thread / reference.hashes_per_second_per_thread;
            println!("fast / reference per thread: {ratio:.1}x");
        }
    }
    Ok(())
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
