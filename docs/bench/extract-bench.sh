#!/usr/bin/env bash
# Extraction + chunking: Quire's extract crate (release build) against pypdf + tiktoken, over
# the very same PDFs (20 generated documents of 10 to 50 pages of prose, from a fixed seed,
# and the 24 real files of crates/extract/tests/fixtures/real-pdfs).
#
#   docs/bench/extract-bench.sh [DIR]        (needs: pip install pypdf tiktoken reportlab)
#
# Prints pages per second for each side and the ratio, on the generated and on the real files,
# then the per-file coverage of both sides (text or not, signs of garbling) on the real files
# and on a corpus docs/bench/pdf_corpus.py writes (CJK, TrueType subsets, justified text,
# glyph-by-glyph placement, right-to-left, a 500-page file), with the peak RSS of extracting
# the 500-page file. Figures: docs/benchmarks.md.
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

real_py="$(rate "$DIR/python.txt" real_single)"
real_rs="$(rate "$DIR/rust.txt" real_single)"
echo "== pages per second on the real files (pages of files that gave text)"
row "pypdf + tiktoken count, 1 core" "$real_py" "1.0"
row "Quire extract + chunk, 1 thread" "$real_rs" "$(awk -v r="$real_rs" -v p="$real_py" 'BEGIN { printf "%.1f", r / p }')"

echo "== coverage per file (cargo run --release -p extract --example pdf-coverage)"
cargo build -q --release -p extract --example pdf-coverage
bin="${CARGO_TARGET_DIR:-target}/release/examples/pdf-coverage"
real=(crates/extract/tests/fixtures/real-pdfs/*.pdf)
"$bin" "${real[@]}" > "$DIR/coverage-real.jsonl"
python3 docs/bench/pdf_coverage.py "$DIR/coverage-real.jsonl" "${real[@]}" || true
python3 docs/bench/pdf_corpus.py "$DIR/corpus"
made=()
for f in "$DIR"/corpus/*.pdf; do [ "$(basename "$f")" = big-500.pdf ] || made+=("$f"); done
"$bin" "${made[@]}" > "$DIR/coverage-made.jsonl"
python3 docs/bench/pdf_coverage.py "$DIR/coverage-made.jsonl" "${made[@]}" || true
echo "== the 500-page file ($(du -m "$DIR/corpus/big-500.pdf" | cut -f1) MB), in process"
/usr/bin/time -f "peak RSS %M KiB, %e s" "$bin" "$DIR/corpus/big-500.pdf" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["status"], r["pages"], "pages,", r["chars"], "chars,", round(r["seconds"], 2), "s extracting")'
