//! The `vision-coordinator` command line.

use std::process::ExitCode;

use clap::Parser;

/// The Vision pool coordinator: serves VisionX jobs over HTTP and verifies
/// every share on the CPU.
///
/// This release carries the share verifier only; the HTTP pool server, the
/// embedded devnet chain and payouts are not built yet.
#[derive(Debug, Parser)]
#[command(name = "vision-coordinator", version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("vision-coordinator: the pool server is not built yet; see `vision-coordinator --help`");
    ExitCode::FAILURE
}
