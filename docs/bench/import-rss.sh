#!/usr/bin/env bash
# Peak memory (maximum resident set size) of `quire import` of a large organization's archive
# (docs/benchmarks.md, "Import of a large organization"). Without an archive argument it makes
# one first: the exports test `a_large_organization_moves_in_batches` (520 documents; it needs
# the PostgreSQL and Redis of the test environment, QUIRE_TEST_*) keeps its archive where
# QUIRE_BENCH_ARCHIVE says. Then it imports the archive into a fresh SQLite data folder with
# the binary of `profile` (default `dev`, the debug build; `release` for production figures)
# under GNU time, and prints the archive's sizes and the import's peak RSS.
# Usage: docs/bench/import-rss.sh [archive.zip] [profile]
set -euo pipefail
cd "$(dirname "$0")/../.."
archive=${1:-}
profile=${2:-dev}
[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time"; exit 1; }
if [ -z "$archive" ]; then
  archive=$(mktemp --suffix=.zip)
  QUIRE_BENCH_ARCHIVE="$archive" cargo test -p testkit --test exports \
    a_large_organization_moves_in_batches >/dev/null
fi
cargo build --profile "$profile" -p quire --bin quire
dir=debug
[ "$profile" = dev ] || dir=release
target=${CARGO_TARGET_DIR:-target}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
echo "archive: $(stat -c %s "$archive") bytes compressed, $(unzip -l "$archive" | tail -1 | awk '{print $1}') bytes of entries"
QUIRE_LOG__FILTER=warn /usr/bin/time -v "$target/$dir/quire" import --data-dir "$data" "$archive" \
  2>"$data/time.txt" | head -3
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$data/time.txt"
