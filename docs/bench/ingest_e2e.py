#!/usr/bin/env python3
"""End-to-end ingestion, Quire's API against pypdf + tiktoken (issue 17). Run by
docs/bench/ingest-e2e.sh, which builds and starts the server; each subcommand prints
`key=value` lines.

    ingest_e2e.py corpus DIR            writes the generated set: prose PDFs from a fixed seed
    ingest_e2e.py big DIR               writes big-500.pdf (500 pages, ~25 MiB) and big-10k.csv
    ingest_e2e.py quire URL LABEL FILE...
        registers an account and an organization, uploads FILEs as a client would (CONCURRENCY
        uploads in flight, default 8), polls until no document is queued or processing, and
        prints the pages of the `ready` documents, the wall time (first upload to last
        document settled) and pages/s. With WATCH=1 it also polls `GET /documents/{id}` and
        `GET /jobs/{id}` of each upload while it runs and prints the progress it saw.
    ingest_e2e.py python LABEL FILE...
        pypdf `extract_text` per page, then tiktoken `cl100k_base` chunks of 400 tokens with 40
        of overlap (encoded once, each window decoded), one process; pages of files with text.

Only the standard library on the client side (http.client); pypdf, tiktoken and reportlab
(pinned by the shell script's venv) for the rest.
"""

import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus(folder):
    """40 PDFs of justified prose, 10 to 50 pages each, Helvetica, as reportlab writes them."""
    sys.path.insert(0, HERE)
    import pdf_corpus  # noqa: PLC0415 - the same prose as the coverage corpus

    os.makedirs(folder, exist_ok=True)
    rng = random.Random(1717)
    for i in range(40):
        pages = 10 + rng.randrange(41)
        pdf_corpus.justified(os.path.join(folder, f"gen-{i:02}.pdf"), rng, "Helvetica", pages)


def big(folder):
    sys.path.insert(0, HERE)
    import pdf_corpus  # noqa: PLC0415

    os.makedirs(folder, exist_ok=True)
    rng = random.Random(500)
    # pdf_corpus.big's pages (60 lines of prose and an incompressible image each), with a
    # larger image: about 24 MiB, just under documents.max_file_bytes (25 MiB).
    from PIL import Image  # noqa: PLC0415 - reportlab's own dependency
    from reportlab.lib.pagesizes import A4  # noqa: PLC0415
    from reportlab.lib.utils import ImageReader  # noqa: PLC0415
    from reportlab.pdfgen import canvas  # noqa: PLC0415

    c = canvas.Canvas(os.path.join(folder, "big-500.pdf"), pagesize=A4)
    c.setPageCompression(1)
    for _ in range(500):
        img = Image.frombytes("RGB", (114, 114), rng.randbytes(114 * 114 * 3))
        c.drawImage(ImageReader(img), 400, 700, 128, 128)
        c.setFont("Helvetica", 10)
        text = pdf_corpus.prose(rng, 420).split()
        for line in range(60):
            c.drawString(40, 680 - line * 11, " ".join(text[line * 7 : line * 7 + 7]))
        c.showPage()
    c.save()
    with open(os.path.join(folder, "big-10k.csv"), "w", encoding="utf-8") as f:
        f.write("id,customer,city,product,quantity,price,note\n")
        for i in range(10_000):
            f.write(
                f"{i},{pdf_corpus.prose(rng, 2)},{rng.choice(['Lyon', 'Oslo', 'Kyoto', 'Lima'])},"
                f"item-{rng.randrange(500)},{rng.randrange(1, 99)},{rng.randrange(100, 99999) / 100},"
                f"\"{pdf_corpus.prose(rng, 12)}\"\n"
            )


class Client:
    """One keep-alive connection; not shared between threads."""

    def __init__(self, url, token=None, tenant=None):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.token, self.tenant = token, tenant

    def call(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        if self.tenant:
            h["x-tenant-id"] = self.tenant
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["content-type"] = "application/json"
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def upload(self, path):
        boundary = uuid.uuid4().hex
        with open(path, "rb") as f:
            content = f.read()
        name = os.path.basename(path)
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.call(
            "POST", "/api/v1/documents", body, {"content-type": f"multipart/form-data; boundary={boundary}"}
        )


def count(client, status):
    return len(client.call("GET", f"/api/v1/documents?status={status}&limit=100")["items"])


def quire(url, label, files):
    c = Client(url)
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    token = c.call(
        "POST", "/api/v1/auth/register", {"email": email, "password": "correct horse battery", "name": "Bench"}
    )["tokens"]["access_token"]
    c.token = token
    org = c.call("POST", "/api/v1/orgs", {"name": "Bench", "slug": f"bench-{uuid.uuid4().hex[:8]}"})["id"]
    concurrency = int(os.environ.get("CONCURRENCY", "8"))
    watch = os.environ.get("WATCH") == "1"
    todo = list(files)
    lock = threading.Lock()
    uploaded, refused, seen = [], [], {}

    def uploader():
        me = Client(url, token, org)
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop(0)
            try:
                r = me.upload(path)
                with lock:
                    uploaded.append((r["document"]["id"], r["job_id"]))
            except RuntimeError as e:
                with lock:
                    refused.append(f"{os.path.basename(path)}: {e}")

    def watcher(stop):
        me = Client(url, token, org)
        while not stop.is_set():
            with lock:
                ids = list(uploaded)
            for doc, job in ids:
                d = me.call("GET", f"/api/v1/documents/{doc}")
                j = me.call("GET", f"/api/v1/jobs/{job}") if job else {}
                if d["status"] in ("queued", "processing") or j.get("status") == "running":
                    key = (doc, d["status"], round(d["progress"], 2), d.get("stage"), d.get("done"), d.get("total"), d.get("unit"))
                    if key not in seen:
                        seen[key] = (d, j)
            time.sleep(0.05)

    start = time.perf_counter()
    threads = [threading.Thread(target=uploader) for _ in range(concurrency)]
    for t in threads:
        t.start()
    stop = threading.Event()
    w = threading.Thread(target=watcher, args=(stop,)) if watch else None
    if w:
        w.start()
    uploads_done = None
    poll = Client(url, token, org)
    while True:
        if uploads_done is None and not any(t.is_alive() for t in threads):
            uploads_done = time.perf_counter() - start
        if uploads_done is not None and count(poll, "queued") == 0 and count(poll, "processing") == 0:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    stop.set()
    if w:
        w.join()
    ready = failed = pages = chunks = 0
    errors = {}
    cursor = None
    while True:
        q = "/api/v1/documents?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = poll.call("GET", q)
        for d in page["items"]:
            if d["status"] == "ready":
                ready += 1
                pages += d["pages"] or 0
                chunks += d["chunks"]
            elif d["status"] == "failed":
                failed += 1
                errors[d["error"]] = errors.get(d["error"], 0) + 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    print(
        f"quire {label} files={len(files)} ready={ready} failed={failed} refused={len(refused)} "
        f"pages={pages} chunks={chunks} uploads_s={uploads_done:.3f} seconds={wall:.3f} "
        f"pages_per_s={pages / wall:.1f}"
    )
    for e, n in sorted(errors.items(), key=lambda x: -x[1]):
        print(f"#   failed x{n}: {e}")
    for r in refused:
        print(f"#   refused: {r}")
    if watch:
        for (doc, status, progress, stage, done, total, unit), (_, j) in sorted(
            seen.items(), key=lambda kv: kv[0][2]
        ):
            print(
                f"progress {label} document={doc[-8:]} status={status} progress={progress} "
                f"stage={stage} done={done} total={total} unit={unit} "
                f"job=({j.get('stage')} {j.get('done')}/{j.get('total')} {j.get('unit')})"
            )


def python(label, files):
    import logging  # noqa: PLC0415

    import pypdf  # noqa: PLC0415
    import tiktoken  # noqa: PLC0415

    logging.disable(logging.CRITICAL)  # pypdf warns on every odd file
    enc = tiktoken.get_encoding("cl100k_base")
    enc.encode_ordinary("warm up")
    pages = chunks = with_text = raised = 0
    start = time.perf_counter()
    for path in files:
        try:
            reader = pypdf.PdfReader(path)
            text_pages = [page.extract_text() or "" for page in reader.pages]
        except Exception:  # noqa: BLE001 - a broken file counts as failed, like Quire's
            raised += 1
            continue
        text = "\n\n".join(text_pages)
        if not text.strip():
            continue
        tokens = enc.encode_ordinary(text)
        for s in range(0, max(len(tokens) - 40, 1), 360):
            enc.decode(tokens[s : s + 400])
            chunks += 1
        with_text += 1
        pages += len(text_pages)
    wall = time.perf_counter() - start
    print(
        f"python {label} files={len(files)} with_text={with_text} raised={raised} pages={pages} "
        f"chunks={chunks} seconds={wall:.3f} pages_per_s={pages / wall:.1f}"
    )


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "corpus":
        corpus(args[0])
    elif cmd == "big":
        big(args[0])
    elif cmd == "quire" and len(args) >= 3:
        quire(args[0], args[1], args[2:])
    elif cmd == "python" and len(args) >= 2:
        python(args[0], args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
