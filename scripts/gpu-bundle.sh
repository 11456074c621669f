#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs on a GPU machine that has no Rust
# toolchain: a release vision-miner and the GPU integration-test binary,
# stripped, in .gpu-bundle/ at the repository root, and the Vulkan loader's
# packages in .gl/ (for a machine with the driver but no loader).
#
#   scripts/gpu-bundle.sh
#
# Then copy scripts/gpu-check.sh and .gpu-bundle/ (or the whole repository)
# to the GPU machine and run scripts/gpu-check.sh there. The binaries link
# glibc dynamically: the GPU machine needs a glibc at least as new as this
# one's (the manifest records it). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUNDLE="$ROOT/.gpu-bundle"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    echo "scripts/gpu-bundle.sh: $*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust from https://rustup.rs"

# The executable path of the artifact of kind $1 named $2, from cargo's JSON
# messages on stdin, or nothing. grep and sed only: python3 and jq may be absent.
executable_of() {
    grep -F "\"reason\":\"compiler-artifact\"" |
        grep -F "\"kind\":[\"$1\"]" |
        grep -F "\"name\":\"$2\"" |
        grep -o '"executable":"[^"]*"' |
        tail -n 1 |
        sed -e 's/^"executable":"//' -e 's/"$//' || true
}

messages=$(mktemp)
trap 'rm -f "$messages"' EXIT

# The test binary first: building it also builds the vision-miner binary whose
# absolute path the tests have compiled in (CARGO_BIN_EXE_vision-miner).
log "building the GPU test binary"
cargo test --release --locked -p vision-miner --test gpu --no-run \
    --message-format=json-render-diagnostics >"$messages"
tests_exe=$(executable_of test gpu <"$messages")
tests_miner_path=$(executable_of bin vision-miner <"$messages")
[ -n "$tests_exe" ] && [ -f "$tests_exe" ] || die "cannot find the GPU test binary in cargo's output"

log "building vision-miner"
cargo build --release --locked -p vision-miner --bin vision-miner \
    --message-format=json-render-diagnostics >"$messages"
miner_exe=$(executable_of bin vision-miner <"$messages")
if [ -z "$miner_exe" ]; then
    # Only if cargo's output changed shape: its default place.
    miner_exe="${CARGO_TARGET_DIR:-$ROOT/target}/release/vision-miner"
fi
[ -f "$miner_exe" ] || die "cannot find the vision-miner binary (looked at $miner_exe)"
[ -n "$tests_miner_path" ] || tests_miner_path=$miner_exe

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
cp "$miner_exe" "$BUNDLE/vision-miner"
cp "$tests_exe" "$BUNDLE/gpu-tests"
# Strip the copies, not cargo's own artifacts (that would make cargo rebuild).
if command -v strip >/dev/null 2>&1; then
    strip "$BUNDLE/vision-miner" "$BUNDLE/gpu-tests"
else
    log "strip not found: the bundle keeps its symbols"
fi

# What the GPU machine can't find out for itself. key=value, one a line.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
fi
{
    echo "commit=$commit"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rustc=$(rustc -V 2>/dev/null || echo unknown)"
    echo "host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
    echo "glibc=$(ldd --version 2>/dev/null | head -n 1 || true)"
    # The tests run this path (CARGO_BIN_EXE_vision-miner, fixed at compile
    # time); gpu-check.sh links it to the bundle's binary where it is missing.
    echo "tests_miner_path=$tests_miner_path"
} >"$BUNDLE/manifest.txt"

# The Vulkan loader and GL dispatch libraries, for a GPU machine that has
# only the driver (gpu-check.sh unpacks them there when libvulkan is
# missing): .deb files in .gl/ at the repository root, fetched once where apt
# can (GPU_BUNDLE_NO_GL=1 skips it).
GL="$ROOT/.gl"
if [ "${GPU_BUNDLE_NO_GL:-}" != 1 ] && ! ls "$GL"/*.deb >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        log "fetching the Vulkan loader packages into $GL"
        lists=$(mktemp -d)
        apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
        mkdir -p "$lists/partial" "$lists/debs"
        # Into a folder of its own first: a download cut short must not
        # leave some packages in .gl/ that later runs take as complete.
        if apt-get "${apt_opts[@]}" update >/dev/null &&
            (cd "$lists/debs" && apt-get "${apt_opts[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null); then
            mkdir -p "$GL"
            mv "$lists"/debs/*.deb "$GL"/
            log "$(ls "$GL"/*.deb | wc -l) packages in $GL"
        else
            log "could not fetch the loader packages: a GPU machine without libvulkan will find no adapter"
        fi
        rm -rf "$lists"
    else
        log "no apt-get: no loader packages in $GL (a GPU machine without libvulkan will find no adapter)"
    fi
fi

ls -l "$BUNDLE" >&2
echo "bundle: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1))"
[ ! -d "$GL" ] || echo "loader packages: $GL ($(du -sh "$GL" | cut -f1))"
