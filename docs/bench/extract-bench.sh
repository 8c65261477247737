#!/usr/bin/env bash
# Extraction + chunking: Quire's extract crate (release build) against pypdf + tiktoken, over
# the very same PDFs (20 generated documents of 10 to 50 pages of prose, from a fixed seed,
# and the 24 real files of crates/extract/tests/fixtures/real-pdfs).
#
#   docs/bench/extract-bench.sh [DIR]        (needs: pip install pypdf tiktoken)
#
# Prints pages per second for each side and the ratio. Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR="${1:-${TMPDIR:-/tmp}/quire-extract-bench}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

# tiktoken fetches its ranks over the network; seed its cache from the file tiktoken-rs bundles.
if [ -z "${TIKTOKEN_CACHE_DIR:-}" ]; then
    export TIKTOKEN_CACHE_DIR="$DIR/.tiktoken-cache"
    mkdir -p "$TIKTOKEN_CACHE_DIR"
    asset="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-0.12.*/assets/cl100k_base.tiktoken | head -n 1)"
    key="$(printf '%s' 'https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken' | sha1sum | cut -d' ' -f1)"
    cp "$asset" "$TIKTOKEN_CACHE_DIR/$key"
fi

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== Rust (cargo bench -p extract --bench ingest, release)"
cargo bench -q -p extract --bench ingest -- "$DIR" | tee "$DIR/rust.txt"
echo "== Python ($(python3 -c 'import pypdf, tiktoken; print("pypdf", pypdf.__version__, "tiktoken", tiktoken.__version__)'))"
python3 docs/bench/extract_bench.py "$DIR" | tee "$DIR/python.txt"

rate() { # file label -> pages_per_s
    awk -v label="$2" '$2 == label { for (i = 3; i <= NF; i++) if ($i ~ /^pages_per_s=/) { sub(/^pages_per_s=/, "", $i); print $i } }' "$1"
}
py="$(rate "$DIR/python.txt" generated_single)"
cores="$(nproc)"
row() { printf '%-44s %9s %8s\n' "$1" "$2" "$3"; }
echo "== pages per second on the generated set (best of 5 rounds each)"
row "" "pages/s" "× pypdf"
row "pypdf + tiktoken count, 1 core" "$py" "1.0"
for pair in "generated_single|Quire extract + chunk, 1 thread" \
            "generated_parallel$cores|Quire extract + chunk, $cores threads" \
            "generated_process$cores|Quire extract only, $cores child processes"; do
    label="${pair%%|*}"
    r="$(rate "$DIR/rust.txt" "$label")"
    row "${pair#*|}" "$r" "$(awk -v r="$r" -v p="$py" 'BEGIN { printf "%.1f", r / p }')"
done
