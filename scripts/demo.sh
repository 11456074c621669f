#!/usr/bin/env bash
# The whole Vision pool on this machine: a coordinator with its embedded
# devnet chain plus one vision-miner (GPU if present, else CPU) connected to
# it, showing live hash rate, shares and found blocks. Ctrl-C stops it.
#
#   scripts/demo.sh [--backend cpu|gpu|auto] [--bind ADDR] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/demo.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
cargo build --release --locked -p vision-coordinator -p vision-miner
exec target/release/vision-coordinator demo "$@"
