#!/usr/bin/env bash
# Writes every payout batch a coordinator has made, newest first, to stdout
# as one JSON array, for backups and reconciliation (docs/OPERATIONS.md).
#
#   scripts/export-payouts.sh URL [PAGE]
#
# URL: the coordinator (http://127.0.0.1:7072). PAGE: batches per request,
# 1-1000 (default 1000). Pages through `GET /pool/payouts?before=ID`, so a
# history of any length is read without one huge answer. Needs bash, curl,
# grep and sed (no jq, no python3). Pages are written as they come; where a
# request fails it exits non-zero, with a line on stderr, and without the
# closing `]`: a partial export never reads as a whole one. It is not a
# snapshot: a batch the chain refused and that is split into one batch per
# payee while it runs can be missed (the parent is gone, its parts are newer
# than the first page); export with payouts held, or twice.
set -euo pipefail

url=${1:?usage: export-payouts.sh URL [PAGE]}
page=${2:-1000}
url=${url%/}

first=1
before=""
while :; do
    # (--retry: a busy pool's 503 or 429, waiting its Retry-After.)
    body=$(curl -sSf --retry 5 --max-time 60 "$url/pool/payouts?limit=$page${before:+&before=$before}") || {
        echo "export-payouts: reading $url/pool/payouts failed" >&2
        exit 1
    }
    inner=$(printf '%s' "$body" | sed -e 's/^\[//' -e 's/\]$//')
    [ -z "$inner" ] && break
    # The coordinator writes compact JSON: each batch's own "id" is the only
    # `"id":` (a quoted string holding one is escaped, `\"id\":`).
    last=$(printf '%s' "$inner" | grep -o '"id":[0-9]*' | tail -n 1 | sed 's/"id"://' || true)
    if [ -z "$last" ] || { [ -n "$before" ] && [ "$last" -ge "$before" ]; }; then
        echo "export-payouts: an unexpected answer from $url/pool/payouts" >&2
        exit 1
    fi
    if [ $first -eq 1 ]; then printf '['; else printf ','; fi
    printf '%s' "$inner"
    first=0
    before=$last
done
[ $first -eq 0 ] || printf '['
printf ']\n'
