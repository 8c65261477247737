#!/usr/bin/env bash
# Load test of GET /health/ready on the embedded default (SQLite + in-process cache), bench
# profile (the settings the figures were measured with: thin LTO), with wrk from Debian's
# packages (apt-get install wrk). Prints wrk's report.
# Usage: docs/bench/health-ready.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-64}
secs=${2:-20}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
# The `bench` profile writes to target/release, like `release`.
cargo build --profile bench -p quire
data=$(mktemp -d)
log="$data/server.log"
QUIRE_LOG__FILTER=warn target/release/quire serve --addr 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^Quire listening on \(http:[^ ]*\).*/\1/p' "$log")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$log"; exit 1; }
echo "server: $url ($(nproc) cores; wrk and the server share them)"
wrk -t2 -c"$conns" -d"${secs}s" --latency "$url/health/ready"
