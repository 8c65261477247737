#!/usr/bin/env bash
# A PostgreSQL with pgvector for the pgvector suites, from the PyPI package pgserver 0.1.4
# (PostgreSQL 16.2 + pgvector 0.6.2, binaries under pgserver/pginstall/bin). It runs as an
# unprivileged user (initdb refuses root), trusts local connections, listens on 127.0.0.1 only
# (port $QUIRE_PGVECTOR_PORT, default 5433), and has a database `test`.
#
# Idempotent: when it already answers, it only prints the URL. The URL is the last line of
# stdout (`.ci/run` exports it as QUIRE_TEST_PGVECTOR_URL); progress goes to stderr.
set -euo pipefail

port="${QUIRE_PGVECTOR_PORT:-5433}"
data="${QUIRE_PGVECTOR_DIR:-/tmp/quire-pgvector}"
user="quirepg"
url="postgres://postgres@127.0.0.1:${port}/test"
log() { printf 'pgvector: %s\n' "$*" >&2; }

# pgserver's bin folder (installing the package when it is missing).
bin_dir() {
  python3 - <<'EOF' 2>/dev/null
import os, pgserver
print(os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin"))
EOF
}
bin=$(bin_dir || true)
if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
  log "installing pgserver==0.1.4"
  python3 -m pip install --quiet --disable-pip-version-check pgserver==0.1.4 >&2
  bin=$(bin_dir)
fi
[ -x "$bin/pg_ctl" ] || { log "no pg_ctl under $bin"; exit 1; }

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }

if ! ready; then
  if [ "$(id -u)" = "0" ]; then
    if ! id "$user" >/dev/null 2>&1; then
      log "creating the system user $user"
      useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    fi
    as_user() { runuser -u "$user" -- "$@"; }
    # The server's user must reach its binaries and libraries, and pip installed them under
    # root's home: run a readable copy.
    # The binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout.
    site=$(dirname "$(dirname "$(dirname "$bin")")")
    copy="${data}-install"
    if [ ! -x "$copy/pgserver/pginstall/bin/pg_ctl" ]; then
      log "copying the binaries to $copy"
      rm -rf "$copy"
      mkdir -p "$copy/pgserver"
      cp -a "$site/pgserver/pginstall" "$copy/pgserver/"
      cp -a "$site/pgserver.libs" "$copy/"
      chmod -R a+rX "$copy"
    fi
    bin="$copy/pgserver/pginstall/bin"
  else
    as_user() { "$@"; }
  fi
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initdb into $data"
    rm -rf "$data"
    mkdir -p "$data"
    [ "$(id -u)" = "0" ] && chown "$user" "$data"
    chmod 700 "$data"
    as_user "$bin/initdb" --pgdata="$data" --auth=trust --username=postgres \
      --encoding=UTF8 --locale=C >/dev/null
  fi
  log "starting on 127.0.0.1:$port"
  # No Unix socket outside the data folder (/var/run/postgresql may not be writable).
  as_user "$bin/pg_ctl" --pgdata="$data" --log="$data/server.log" --wait --timeout=60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data -c max_connections=200 -c fsync=off" \
    start >/dev/null
fi

for _ in $(seq 1 120); do
  ready && break
  sleep 0.5
done
ready || { log "not reachable on 127.0.0.1:$port (see $data/server.log)"; exit 1; }

if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  log "creating database test"
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test 2>/dev/null \
    || "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1
fi
echo "$url"
