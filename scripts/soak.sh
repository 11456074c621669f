#!/usr/bin/env bash
# Soak run (not part of CI): a coordinator on its embedded devnet with
# several CPU miners for a long while, then a report of what a long run
# does to it: resident memory and open file descriptors over time, the
# ledger and data directory size, share latency, blocks and payouts.
#
#   scripts/soak.sh [SECONDS (default 3600)] [MINERS (default 4)]
#
# Prints one line per sample and a JSON summary at the end; record the
# summary in docs/PERFORMANCE.md with the machine it ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-3600}"
miners="${2:-4}"
sample_every=60
(( duration < 600 )) && sample_every=10

# SOAK_BIN_DIR runs binaries built earlier (a copy, so the tree can change
# while an hour-long run goes on); by default they are built here.
bin="${SOAK_BIN_DIR:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --locked -p vision-coordinator -p vision-miner
    bin=target/release
fi
dir="$(mktemp -d -t vision-soak-XXXXXX)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# Blocks every ~10 s for a couple of CPU miners; rewards settle quickly.
"$bin/vision-coordinator" --data-dir "$dir/pool" --bind "127.0.0.1:$port" \
    --devnet-difficulty 20000 --block-time 10 --share-difficulty 500 --target-share-seconds 3 \
    --coinbase-maturity 1 --confirmations 2 --payout-threshold 100000000 --reward-poll-ms 1000 \
    > "$dir/pool.out" 2> "$dir/pool.log" &
pool_pid=$!
pids+=("$pool_pid")
for _ in $(seq 50); do grep -q serving "$dir/pool.out" 2>/dev/null && break; sleep 0.2; done

# The miners run at the lowest priority: the coordinator (what a soak
# measures) keeps its share of the CPU, and the machine stays usable.
for i in $(seq "$miners"); do
    nice -n 19 "$bin/vision-miner" --pool "$url" --wallet "land1soak$i" --worker "soak$i" --backend cpu \
        --threads 1 --no-api --status-interval 3600 > /dev/null 2>&1 &
    pids+=("$!")
done

rss() { awk '/VmRSS/ {print $2}' "/proc/$pool_pid/status"; }
fds() { ls "/proc/$pool_pid/fd" | wc -l; }
metric() { curl -s "$url/pool/metrics" | python3 -c "import json,sys; m=json.load(sys.stdin); print($1)"; }

start=$(date +%s)
first_rss=""
echo "seconds rss_kib fds ledger_shares share_p99_ms blocks_found"
while (( $(date +%s) - start < duration )); do
    sleep "$sample_every"
    kill -0 "$pool_pid" || { echo "the coordinator died" >&2; exit 1; }
    r=$(rss); [[ -z "$first_rss" ]] && first_rss=$r
    echo "$(( $(date +%s) - start )) $r $(fds) $(metric 'm["ledger_shares"]') $(metric 'm["share_response"]["p99_ms"]') $(metric 'm["blocks_found"]')"
done

paid=$(scripts/export-payouts.sh "$url" | python3 -c "import json,sys; print(sum(1 for p in json.load(sys.stdin) if p['status']=='paid'))")
cat <<EOF
{"seconds": $duration, "miners": $miners, "rss_kib_first_sample": $first_rss, "rss_kib_end": $(rss),
 "fds_end": $(fds), "ledger_shares": $(metric 'm["ledger_shares"]'), "data_dir_kib": $(du -sk "$dir/pool" | cut -f1),
 "share_p50_ms": $(metric 'm["share_response"]["p50_ms"]'), "share_p99_ms": $(metric 'm["share_response"]["p99_ms"]'),
 "blocks_found": $(metric 'm["blocks_found"]'), "payouts_paid": $paid,
 "warnings_logged": $(grep -c WARN "$dir/pool.log" || true), "errors_logged": $(grep -c ERROR "$dir/pool.log" || true)}
EOF
