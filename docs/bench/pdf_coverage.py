#!/usr/bin/env python3
"""Per-file PDF coverage: Quire's extraction against pypdf's, side by side.

Usage: pdf_coverage.py QUIRE_JSONL FILE...
  QUIRE_JSONL: the output of `cargo run --release -p extract --example pdf-coverage -- FILE...`

For each file: whether each side gets text, how many characters, and signs of garbled text
(ligature glyphs, U+FFFD, mojibake, words run together). Exits 1 when a file pypdf reads gives
no text on Quire's side.
"""

import json
import logging
import os
import re
import signal
import sys

import pypdf

LIGATURES = re.compile("[\ufb00-\ufb06]")
MOJIBAKE = re.compile("(Ã.|Â.|â€|ï¿½)")
LONG_WORD = re.compile(r"[A-Za-z]{25,}")


def garbled(text):
    signs = []
    if LIGATURES.search(text):
        signs.append("ligature")
    if "\ufffd" in text:
        signs.append("U+FFFD")
    if MOJIBAKE.search(text):
        signs.append("mojibake")
    words = re.findall(r"[A-Za-z]+", text)
    if words and len(LONG_WORD.findall(text)) > max(1, len(words) // 50):
        signs.append("run-together")
    if sum(1 for c in text if 0xE000 <= ord(c) <= 0xF8FF) > 0:
        signs.append("private-use")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 20 and sum(len(line.strip()) == 1 for line in lines) > len(lines) // 3:
        signs.append("char-per-line")
    # Hebrew final letters begin no word: one at a word's start means the line came out reversed.
    if re.search(r"(?:^|\s)[\u05da\u05dd\u05df\u05e3\u05e5][\u05d0-\u05ea]", text):
        signs.append("reversed-rtl")
    return ",".join(signs) or "-"


def timeout(_sig, _frame):
    raise TimeoutError


def pypdf_text(path):
    signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    try:
        reader = pypdf.PdfReader(path)
        return "text", "\n\n".join((p.extract_text() or "") for p in reader.pages)
    except TimeoutError:
        return "timeout", ""
    except Exception as e:  # noqa: BLE001 - a broken file is an outcome
        return "raises " + type(e).__name__, ""
    finally:
        signal.alarm(0)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    logging.disable(logging.CRITICAL)
    ours = {}
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ours[os.path.basename(row["file"])] = row
    missing = 0
    counts = {"ours": 0, "pypdf": 0, "ours_garbled": 0, "pypdf_garbled": 0, "pypdf_raises": 0}
    print(f"| file | Quire | Quire garbled | pypdf | pypdf garbled |")
    print("|---|---|---|---|---|")
    for path in sys.argv[2:]:
        name = os.path.basename(path)
        status, ptext = pypdf_text(path)
        p_has = bool(ptext.strip())
        row = ours.get(name, {"status": "absent", "chars": 0, "text": ""})
        q_has = row["status"] == "text"
        qg = garbled(row["text"]) if q_has else "-"
        pg = garbled(ptext) if p_has else "-"
        counts["ours"] += q_has
        counts["pypdf"] += p_has
        counts["ours_garbled"] += qg != "-"
        counts["pypdf_garbled"] += pg != "-"
        counts["pypdf_raises"] += status.startswith("raises") or status == "timeout"
        quire = f"text, {row['chars']} chars" if q_has else row["status"]
        py = f"text, {len(ptext.strip())} chars" if p_has else ("no text" if status == "text" else status)
        print(f"| {name} | {quire} | {qg} | {py} | {pg} |")
        if p_has and not q_has:
            missing += 1
    print()
    print(
        f"files {len(sys.argv) - 2}: Quire text {counts['ours']} (garbled {counts['ours_garbled']}), "
        f"pypdf text {counts['pypdf']} (garbled {counts['pypdf_garbled']}), pypdf raised {counts['pypdf_raises']}, "
        f"pypdf-only files {missing}"
    )
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
