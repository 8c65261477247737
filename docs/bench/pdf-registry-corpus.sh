#!/usr/bin/env bash
# PDF coverage, Quire against pypdf, on a real-world corpus nobody here wrote: the test PDFs that
# ship inside source packages on PyPI and npm (pypdf 7.1.1, ocrmypdf 17.13.0, pdftotext 4.0.0,
# pdf-parse 1.1.1: 131 files, encrypted, scanned, forms, CJK, broken ones among them).
#
#   docs/bench/pdf-registry-corpus.sh [DIR]    (needs: pip, npm; makes a venv with pypdf 7.1.0
#                                               and cryptography, which pypdf needs for AES)
#
# Prints one row per file (text or not, signs of garbling, each side) and the totals.
# Figures: docs/benchmarks.md, "PDF coverage on the PyPI and npm test corpora".
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-${TMPDIR:-/tmp}/quire-pdf-registry-corpus}"
mkdir -p "$DIR/sdist" "$DIR/unpacked" "$DIR/pdfs"
DIR="$(cd "$DIR" && pwd)"

for spec in pypdf==7.1.1 ocrmypdf==17.13.0 pdftotext==4.0.0; do
    pip download -q --no-deps --no-binary :all: "$spec" -d "$DIR/sdist"
done
(cd "$DIR/sdist" && npm pack -q pdf-parse@1.1.1 >/dev/null)
for f in "$DIR"/sdist/*.tar.gz "$DIR"/sdist/*.tgz; do tar xzf "$f" -C "$DIR/unpacked"; done
# Each file named after its package, so that names stay unique.
find "$DIR/unpacked" -iname '*.pdf' -print0 | while IFS= read -r -d '' p; do
    package="$(echo "${p#"$DIR"/unpacked/}" | cut -d/ -f1 | sed 's/-[0-9.]*$//')"
    cp "$p" "$DIR/pdfs/${package}__$(basename "$p")"
done

VENV="${VENV:-$DIR/venv}"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q pypdf==7.1.0 cryptography; }

# BIN: an already built `pdf-coverage` example (else it is built here, release profile).
if [ -z "${BIN:-}" ]; then
    cargo build -q --release -p extract --example pdf-coverage
    BIN=./target/release/examples/pdf-coverage
fi
"$BIN" "$DIR"/pdfs/*.pdf > "$DIR/quire.jsonl"
"$VENV/bin/python" docs/bench/pdf_coverage.py "$DIR/quire.jsonl" "$DIR"/pdfs/*.pdf
