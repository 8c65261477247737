#!/usr/bin/env bash
# Authenticated JSON reads under load, Quire against the Python stack it replaces, in one run
# on the same machine (issue 16): `GET /health/live` (the ceiling: no work), `GET
# /api/v1/auth/me` and `GET /api/v1/documents?limit=20` (tenant-scoped, a full page) on the
# embedded default (SQLite + in-process cache) and on PostgreSQL + Redis, then the FastAPI peer's
# `GET /api/v1/auth/me` (../shared/bench-peers/fastapi: FastAPI + uvicorn 2 workers +
# SQLAlchemy + python-jose) on SQLite and, when PostgreSQL is reachable, on PostgreSQL. One
# server is under load at a time; wrk (Debian's `wrk`) runs on the same cores. Prints a table
# and the ratios the issue asks for.
#
# Usage: docs/bench/requests.sh [seconds] [connections]       (default 10 s, 64 connections)
# Env: BENCH_BIN (a built `quire` binary with the `full` features; default: build it), PEERS (default ../shared/bench-peers), PG_URL (default postgres://postgres@127.0.0.1:5432/test;
#      empty: skip PostgreSQL), REDIS_URL (default redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
peers=${PEERS:-../shared/bench-peers}
pg_url=${PG_URL-postgres://postgres@127.0.0.1:5432/test}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
bin=${BENCH_BIN:-}
if [ -z "$bin" ]; then
  # The `bench` profile writes to target/release, like `release`.
  cargo build --profile bench -p quire --features full
  bin="${CARGO_TARGET_DIR:-target}/release/quire"
fi

work=$(mktemp -d)
pids=()
tag="bench_requests_$$"
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$pg_url" ]; then
    psql "$pg_url" -qc "DROP SCHEMA IF EXISTS $tag CASCADE" >/dev/null 2>&1 || true
    psql "${pg_url%/*}/postgres" -qc "DROP DATABASE IF EXISTS $tag" >/dev/null 2>&1 || true
  fi
  redis-cli -u "$redis_url" --scan --pattern "$tag:*" 2>/dev/null | xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Starts `quire serve` with extra env (NAME=value…); sets `url` to its base URL and `server`
# to its pid.
start_quire() {
  local name=$1; shift
  mkdir -p "$work/$name"
  env QUIRE_LOG__FILTER=warn "$@" "$bin" serve --addr 127.0.0.1:0 --data-dir "$work/$name" \
    >"$work/$name.log" 2>&1 &
  server=$!
  pids+=("$server")
  url=""
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^Quire listening on \(http:[^ ]*\).*/\1/p' "$work/$name.log")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$work/$name.log" >&2; exit 1; }
}

# Registers an account, makes an organization and uploads 25 small notes; prints "TOKEN ORG".
seed() {
  local url=$1 token org
  token=$(curl -sf "$url/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"correct horse battery","name":"Bench"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])')
  org=$(curl -sf "$url/api/v1/orgs" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"Bench","slug":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for i in $(seq 1 25); do
    printf 'Note %s: the quarterly report of team %s, with figures and a summary.\n' "$i" "$i" >"$work/note$i.txt"
    curl -sf "$url/api/v1/documents" -H "authorization: Bearer $token" -H "x-tenant-id: $org" \
      -F "file=@$work/note$i.txt" >/dev/null
  done
  echo "$token $org"
}

results="$work/results"
: >"$results"
# load NAME URL [header…]: runs wrk and records "NAME req/s p50 p99".
load() {
  local name=$1 url=$2; shift 2
  local args=()
  for h in "$@"; do args+=(-H "$h"); done
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "${args[@]}" "$url")
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  echo "$name $rps $p50 $p99 ${non2xx:-0}" | tee -a "$results"
}

echo "== $(nproc) cores; wrk -t2 -c$conns -d${secs}s on the same cores; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

start_quire embedded
read -r token org < <(seed "$url")
load quire-embedded-live "$url/health/live"
load quire-embedded-me "$url/api/v1/auth/me" "Authorization: Bearer $token"
load quire-embedded-documents "$url/api/v1/documents?limit=20" "Authorization: Bearer $token" "X-Tenant-ID: $org"
kill -TERM "$server"

if [ -n "$pg_url" ] && psql "$pg_url" -qc 'select 1' >/dev/null 2>&1; then
  key=$("$bin" keygen)
  start_quire production QUIRE_DATABASE__URL="$pg_url" QUIRE_DATABASE__SCHEMA="$tag" \
    QUIRE_CACHE__BACKEND=redis QUIRE_CACHE__REDIS_URL="$redis_url" QUIRE_CACHE__KEY_PREFIX="$tag" \
    QUIRE_AUTH__SIGNING_KEYS="[\"$key\"]"
  read -r token org < <(seed "$url")
  load quire-postgres-live "$url/health/live"
  load quire-postgres-me "$url/api/v1/auth/me" "Authorization: Bearer $token"
  load quire-postgres-documents "$url/api/v1/documents?limit=20" "Authorization: Bearer $token" "X-Tenant-ID: $org"
  kill -TERM "$server"
fi

read -r peer_pid peer_token < <(bash "$peers/fastapi/run.sh" 18001)
pids+=("$peer_pid")
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18001/health/ready >/dev/null && break; sleep 0.2; done
load peer-sqlite-me "http://127.0.0.1:18001/api/v1/auth/me" "Authorization: Bearer $peer_token"
kill -TERM "$peer_pid"
if [ -n "$pg_url" ] && psql "$pg_url" -qc 'select 1' >/dev/null 2>&1; then
  venv=${PEER_VENV:-$HOME/.cache/quire-bench/fastapi-venv}
  "$venv/bin/pip" install -q asyncpg >/dev/null
  psql "${pg_url%/*}/postgres" -qc "CREATE DATABASE $tag" >/dev/null
  # The peer's seed inserts the membership before the user it names, which PostgreSQL's
  # foreign keys refuse (SQLite does not enforce them): its own database checks none.
  psql "${pg_url%/*}/postgres" -qc "ALTER DATABASE $tag SET session_replication_role = replica" >/dev/null
  peer_db="postgresql+asyncpg://${pg_url#postgres://}"
  peer_db="${peer_db%/*}/$tag"
  read -r peer_pid peer_token < <(PEER_DB="$peer_db" bash "$peers/fastapi/run.sh" 18002)
  pids+=("$peer_pid")
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18002/health/ready >/dev/null && break; sleep 0.2; done
  load peer-postgres-me "http://127.0.0.1:18002/api/v1/auth/me" "Authorization: Bearer $peer_token"
  kill -TERM "$peer_pid"
fi

python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, bad = line.split()
    rows[name] = (float(rps), p50, p99, int(bad))
print()
print("| request | req/s | p50 | p99 | non-2xx |")
print("|---|---:|---:|---:|---:|")
for name, (rps, p50, p99, bad) in rows.items():
    print(f"| {name} | {rps:,.0f} | {p50} | {p99} | {bad} |")
print()
for backend, peer in (("embedded", "peer-sqlite-me"), ("postgres", "peer-postgres-me")):
    live = rows.get(f"quire-{backend}-live")
    if not live:
        continue
    for read in ("me", "documents"):
        r = rows.get(f"quire-{backend}-{read}")
        if not r:
            continue
        line = f"{backend} {read}: {r[0] / live[0]:.1%} of /health/live"
        if peer in rows:
            line += f", {r[0] / rows[peer][0]:.1f}x the peer's /auth/me ({peer})"
        print(line)
PY
