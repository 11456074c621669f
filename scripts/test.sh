#!/usr/bin/env bash
# Runs every check CI runs, on a fresh machine too: installs what the tests
# need when it is missing, then rustfmt, clippy, rustdoc and the whole test suite.
#
#   scripts/test.sh
#
# CI (.ci/run) calls this same script with CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages the tests need. Installed only when missing.
# mesa-vulkan-drivers: lavapipe, the Vulkan software adapter the GPU tests run on.
# chromium, chromium-driver: the headless browser the dashboard tests drive
# over WebDriver (tests/dashboards.rs).
# openssl: makes the throwaway CA of the TLS tests (tests/tls.rs);
# ca-certificates: the system trust store an https:// upstream is checked against.
# postgresql: initdb and pg_ctl, for the throwaway servers the PostgreSQL
# store's tests start (coordinator/tests/support/throwaway_postgres.rs).
# curl: scripts/export-payouts.sh, run by coordinator/tests/rewards.rs.
APT_PACKAGES=(mesa-vulkan-drivers chromium chromium-driver openssl ca-certificates postgresql curl)

install_apt_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
    install_apt_packages "${APT_PACKAGES[@]}"
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "adding rustfmt and clippy"
    rustup component add rustfmt clippy
fi

# Mesa warns on every device open without a runtime dir; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/vision-xdg-$(id -u)"
    mkdir -p -m 700 "$XDG_RUNTIME_DIR"
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The crate and module docs are the map (docs/ARCHITECTURE.md points at
# them): a link to nothing, or to a private item, fails here.
log "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
log "cargo test"
# Screenshots of the dashboards land in target/tmp/dashboards/.
cargo test --workspace --locked
log "all checks passed"
