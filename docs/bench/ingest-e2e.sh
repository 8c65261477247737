#!/usr/bin/env bash
# End to end ingestion (issue 17): upload → every document `ready` (extract, chunk, embed with
# the default local embedder, index) through the API of a release build on the embedded default
# (SQLite, a fresh data dir per set), against pypdf + tiktoken 400/40 chunking on the very same
# files, in the same run. OCR is off (`documents.ocr.enabled = false`), so scanned pages count
# on neither side.
#
#   docs/bench/ingest-e2e.sh [DIR]
#
# Sets: `generated` (40 PDFs of justified prose, 10 to 50 pages, reportlab, fixed seed) and
# `real` (../shared/fixtures/real-pdfs, pdf.js bug reports). Each set runs on its own fresh
# server: the client (docs/bench/ingest_e2e.py) uploads CONCURRENCY (8) files at a time and
# polls until nothing is queued or processing. Prints pages/s for both sides, the ratio, and the
# server's peak RSS (VmHWM; the extraction's child processes are apart). With BIG=1 it then
# ingests a 500-page ~25 MiB PDF and a 10,000-row CSV on a fresh server, watching the progress
# of `GET /documents/{id}` and `GET /jobs/{id}` as it goes, and prints the peak RSS.
#
# Env: BENCH_BIN (a built `quire`; default: cargo build --release -p quire), VENV (default
# ~/.cache/quire-bench/ingest-venv: pypdf 7.1.0, tiktoken 0.14.0, reportlab 5.1.0),
# CONCURRENCY, BIG. The rate limits on uploads are turned off for the run (a throughput test).
# Figures: docs/benchmarks.md, "End to end ingestion".
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
DIR="${1:-${TMPDIR:-/tmp}/quire-ingest-e2e}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
venv=${VENV:-$HOME/.cache/quire-bench/ingest-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pypdf==7.1.0 tiktoken==0.14.0 reportlab==5.1.0
fi
py="$venv/bin/python"

# tiktoken fetches its ranks over the network; seed its cache from the file tiktoken-rs bundles.
if [ -z "${TIKTOKEN_CACHE_DIR:-}" ]; then
  export TIKTOKEN_CACHE_DIR="$DIR/.tiktoken-cache"
  mkdir -p "$TIKTOKEN_CACHE_DIR"
  asset="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-0.12.*/assets/cl100k_base.tiktoken | head -n 1)"
  key="$(printf '%s' 'https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken' | sha1sum | cut -d' ' -f1)"
  cp "$asset" "$TIKTOKEN_CACHE_DIR/$key"
fi

bin=${BENCH_BIN:-}
if [ -z "$bin" ]; then
  cargo build -q --release --locked -p quire
  bin="${CARGO_TARGET_DIR:-target}/release/quire"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

[ -d "$DIR/generated" ] || "$py" docs/bench/ingest_e2e.py corpus "$DIR/generated"
generated=("$DIR"/generated/*.pdf)
real=("$root"/../shared/fixtures/real-pdfs/*.pdf)

server=""
cleanup() { [ -n "$server" ] && kill -TERM "$server" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# Starts `quire serve` on a fresh data dir, OCR off; sets `url` and `server`.
start_quire() {
  local data="$DIR/data-$1"
  rm -rf "$data" && mkdir -p "$data"
  env QUIRE_LOG__FILTER=warn \
    QUIRE_RATE_LIMITS__UPLOAD__PER_USER=0 QUIRE_RATE_LIMITS__UPLOAD__PER_IP=0 \
    QUIRE_RATE_LIMITS__UPLOAD__PER_TENANT=0 QUIRE_RATE_LIMITS__UPLOAD__PER_API_KEY=0 \
    QUIRE_DOCUMENTS__OCR__ENABLED=false \
    "$bin" serve --addr 127.0.0.1:0 --data-dir "$data" >"$data.log" 2>&1 &
  server=$!
  url=""
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^Quire listening on \(http:[^ ]*\).*/\1/p' "$data.log")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$data.log" >&2; exit 1; }
}

stop_quire() { # label -> prints the peak RSS line
  local hwm
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$server/status")
  echo "rss $1 server_peak_kib=$hwm"
  kill -TERM "$server"
  wait "$server" 2>/dev/null || true
  server=""
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
out="$DIR/results.txt"
: >"$out"
for set in generated real; do
  declare -n files="$set"
  start_quire "$set"
  "$py" docs/bench/ingest_e2e.py quire "$url" "$set" "${files[@]}" | tee -a "$out"
  stop_quire "$set" | tee -a "$out"
  "$py" docs/bench/ingest_e2e.py python "$set" "${files[@]}" | tee -a "$out"
done

rate() { awk -v side="$1" -v label="$2" '$1 == side && $2 == label { for (i = 3; i <= NF; i++) if ($i ~ /^pages_per_s=/) { sub(/^pages_per_s=/, "", $i); print $i } }' "$out"; }
echo "== pages per second, upload to ready (Quire) against extraction + 400/40 chunks (pypdf + tiktoken)"
printf '%-10s %14s %14s %8s\n' set quire pypdf ratio
for set in generated real; do
  q=$(rate quire "$set"); p=$(rate python "$set")
  printf '%-10s %14s %14s %8s\n' "$set" "$q" "$p" "$(awk -v q="$q" -v p="$p" 'BEGIN { printf "%.1fx", q / p }')"
done

if [ "${BIG:-0}" = "1" ]; then
  [ -f "$DIR/big/big-500.pdf" ] || "$py" docs/bench/ingest_e2e.py big "$DIR/big"
  echo "== big inputs: $(du -h "$DIR/big/big-500.pdf" | cut -f1) PDF of 500 pages, $(wc -l <"$DIR/big/big-10k.csv") CSV lines"
  for f in big-500.pdf big-10k.csv; do
    start_quire "${f%.*}"
    WATCH=1 CONCURRENCY=1 "$py" docs/bench/ingest_e2e.py quire "$url" "$f" "$DIR/big/$f"
    stop_quire "$f"
  done
fi
