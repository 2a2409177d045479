#!/usr/bin/env bash
# Audit throughput: start a gate on a fresh data directory, fill its log with
# decisions (tollgate-bench gate, closed loop), then time a full proofcheck audit
# through tlog-tiles and an incremental one. Prints proofcheck's own summary.
#   usage: scripts/bench-audit.sh [fill-seconds]
set -euo pipefail
bin="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release"
fill="${1:-30}"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin/tollgate" serve --listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/banner" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$dir/banner" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^tollgate listening on //p' "$dir/banner")"
log_key="$(awk '/log key/ {print $3}' "$dir/banner")"
gate_key="$(awk '/gate key/ {print $3}' "$dir/banner")"
echo "filling $url for ${fill}s ..."
"$bin/tollgate-bench" gate --url "$url" --token-file "$dir/data/demo.token" --duration "$fill" --connections 32 --rate 0 | tail -1
echo "full audit:"
"$bin/proofcheck" --token-file "$dir/data/demo.token" audit --log "$url" --log-key "$log_key" --gate-key "$gate_key" --state "$dir/state.json"
"$bin/tollgate-bench" gate --url "$url" --token-file "$dir/data/demo.token" --duration 2 --connections 16 --rate 0 >/dev/null
echo "incremental audit:"
"$bin/proofcheck" --token-file "$dir/data/demo.token" audit --log "$url" --log-key "$log_key" --gate-key "$gate_key" --state "$dir/state.json"
