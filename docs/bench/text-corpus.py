#!/usr/bin/env python3
"""Gathers English technical prose found offline on the machine into a folder of text files,
for the retrieval bench's real-text mode (`--corpus <dir>`, docs/benchmarks.md).

    python3 docs/bench/text-corpus.py /tmp/qcorpus

Writes one file per source (nothing is committed; the folder is the bench's input):

- `cargo-<crate>.txt`: the newest version of each crate in ~/.cargo/registry/src: its Markdown
  files, then the doc comments (`///`, `//!`) of its Rust files, markers stripped;
- `python-<module>.txt`: the docstrings of each module of the Python standard library
  (`/usr/lib/python3.*`), read with `ast` (nothing is imported or run).

Files under 200 bytes are skipped. The result depends on what the machine holds (the crates
its builds fetched, its Python): the bench prints how many chunks it made.
"""

import ast
import glob
import os
import re
import sys


def newest_crates(root):
    """{crate: its newest version's folder} under every registry source folder."""
    best = {}
    for src in glob.glob(os.path.join(root, "*")):
        for d in os.listdir(src):
            m = re.match(r"^(.*)-(\d+(?:\.\d+)*)(?:[-+].*)?$", d)
            if not m:
                continue
            name, version = m.group(1), tuple(int(p) for p in m.group(2).split("."))
            if name not in best or version > best[name][0]:
                best[name] = (version, os.path.join(src, d))
    return {name: path for name, (_, path) in best.items()}


def crate_text(path):
    parts = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(".md"):
                with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                    parts.append(fh.read())
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.endswith(".rs"):
                continue
            lines = []
            with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    m = re.match(r"^\s*//[/!](?:\s(.*))?$", line.rstrip("\n"))
                    if m:
                        lines.append(m.group(1) or "")
                    elif lines and lines[-1] != "":
                        lines.append("")
            if lines:
                parts.append("\n".join(lines))
    return "\n\n".join(parts)


def python_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            tree = ast.parse(fh.read())
    except (SyntaxError, ValueError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d:
                docs.append(d)
    return "\n\n".join(docs)


def write(out, name, text):
    if len(text.encode("utf-8")) < 200:
        return 0
    with open(os.path.join(out, name), "w", encoding="utf-8") as fh:
        fh.write(text)
    return len(text.encode("utf-8"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: text-corpus.py <output folder>")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = files = 0
    registry = os.path.expanduser("~/.cargo/registry/src")
    for name, path in sorted(newest_crates(registry).items()):
        n = write(out, f"cargo-{name}.txt", crate_text(path))
        total += n
        files += n > 0
    for lib in sorted(glob.glob("/usr/lib/python3.*")):
        for dirpath, dirnames, filenames in os.walk(lib):
            dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "site-packages", "dist-packages"))
            for f in sorted(filenames):
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), lib)
                    name = "python-" + rel[:-3].replace(os.sep, ".") + ".txt"
                    n = write(out, name, python_text(os.path.join(dirpath, f)))
                    total += n
                    files += n > 0
    print(f"{files} files, {total / 1e6:.1f} MB in {out}")


if __name__ == "__main__":
    main()
