#!/usr/bin/env python3
"""pypdf + tiktoken over the PDFs the Rust bench wrote (crates/extract/benches/ingest.rs).

Usage: extract_bench.py DIR   (run docs/bench/extract-bench.sh for both, side by side)

Reads every gen-*.pdf and real-*.pdf in DIR, extracts the text of each page with pypdf and
counts its tokens with tiktoken (cl100k_base), on one core; the best of 5 rounds. Prints `python ...` lines of
key=value pairs. tiktoken downloads its ranks at run time; offline, seed its cache first (the
shell script does: see /work/shared/crate-notes.md).
"""

import glob
import logging
import os
import sys
import time

import pypdf
import tiktoken

ROUNDS = 5


def run(paths, enc):
    pages = tokens = failed = 0
    extracting = tokenizing = 0.0
    start = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        try:
            reader = pypdf.PdfReader(path)
            text_pages = [page.extract_text() or "" for page in reader.pages]
        except Exception:  # noqa: BLE001 - a broken file counts as failed, like the Rust side
            failed += 1
            continue
        finally:
            extracting += time.perf_counter() - t0
        text = "\n\n".join(text_pages)
        if not text.strip():
            failed += 1
            continue
        t0 = time.perf_counter()
        tokens += len(enc.encode_ordinary(text))
        tokenizing += time.perf_counter() - t0
        pages += len(text_pages)
    return pages, tokens, failed, time.perf_counter() - start, extracting, tokenizing


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    logging.disable(logging.CRITICAL)  # pypdf warns on every odd file
    enc = tiktoken.get_encoding("cl100k_base")
    enc.encode_ordinary("warm up")
    for label, prefix in (("generated_single", "gen-"), ("real_single", "real-")):
        paths = sorted(glob.glob(os.path.join(folder, prefix + "*.pdf")))
        # The machine may be shared: the best of a few rounds, as on the Rust side.
        best = min((run(paths, enc) for _ in range(ROUNDS)), key=lambda r: r[3])
        pages, tokens, failed, secs, extracting, tokenizing = best
        print(
            f"python {label} files={len(paths)} pages={pages} failed={failed} "
            f"tokens={tokens} seconds={secs:.3f} extract_s={extracting:.3f} "
            f"tokenize_s={tokenizing:.3f} pages_per_s={pages / secs:.1f}"
        )


if __name__ == "__main__":
    main()
