#!/usr/bin/env bash
# Checks the OpenAPI document against a live server with schemathesis (PyPI), as a client
# generated from it would meet the server: every answer's status, content type and body must be
# the ones the document gives, and no input may get a 5xx. See docs/openapi.md.
#
#   bash .ci/schemathesis.sh            # builds the debug `quire` binary if needed
#   ST_QUIRE_BIN=target/release/quire bash .ci/schemathesis.sh
#
# It starts the embedded default (SQLite in a temporary folder, the in-process cache) on a free
# loopback port, registers an account with an organization and a platform administrator, and
# runs schemathesis with the four checks, authenticated as each. It exits non-zero on any
# failure. Environment: SCHEMATHESIS_PYTHON (an interpreter with schemathesis; else a venv with
# the pinned version is made under the target folder), ST_MAX_EXAMPLES (per operation, default
# 100), ST_SEED (default: a fixed seed, so that a run can be replayed).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Hypothesis generates the inputs: pinned too, so that a seed replays the same run.
HYPOTHESIS_VERSION=6.170.27
target="${CARGO_TARGET_DIR:-$PWD/target}"

if [ -z "${SCHEMATHESIS_PYTHON:-}" ]; then
  venv="$target/schemathesis-venv"
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION' or m.version('hypothesis') != '$HYPOTHESIS_VERSION')" 2>/dev/null; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      apt-get update -qq && apt-get install -y --no-install-recommends python3 python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
  fi
  SCHEMATHESIS_PYTHON="$venv/bin/python"
fi
st="$(dirname "$SCHEMATHESIS_PYTHON")/st"
echo "schemathesis $("$SCHEMATHESIS_PYTHON" -c 'import importlib.metadata as m; print(m.version("schemathesis"))')"

bin="${ST_QUIRE_BIN:-}"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  cargo build --quiet -p quire
  bin="$target/debug/quire"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "--- the server's log (last lines) ---"
    tail -n 40 "$work/server.log"
  fi
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$("$SCHEMATHESIS_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# The rate limits are off so that the checks reach the handlers (each route's 429 is still
# documented); the credential routes' budget is raised for the same reason. Nothing else differs
# from the embedded default.
env QUIRE_LOG__FORMAT=json QUIRE_LOG__FILTER=warn QUIRE_HTTP__WORKERS=2 \
  QUIRE_AUTH__ATTEMPTS_PER_IP_PER_MINUTE=1000000 \
  QUIRE_RATE_LIMITS__CHAT__PER_USER=0 QUIRE_RATE_LIMITS__CHAT__PER_API_KEY=0 \
  QUIRE_RATE_LIMITS__CHAT__PER_IP=0 QUIRE_RATE_LIMITS__CHAT__PER_TENANT=0 \
  QUIRE_RATE_LIMITS__EMBEDDINGS__PER_USER=0 QUIRE_RATE_LIMITS__EMBEDDINGS__PER_API_KEY=0 \
  QUIRE_RATE_LIMITS__EMBEDDINGS__PER_IP=0 QUIRE_RATE_LIMITS__EMBEDDINGS__PER_TENANT=0 \
  QUIRE_RATE_LIMITS__UPLOAD__PER_USER=0 QUIRE_RATE_LIMITS__UPLOAD__PER_API_KEY=0 \
  QUIRE_RATE_LIMITS__UPLOAD__PER_IP=0 QUIRE_RATE_LIMITS__UPLOAD__PER_TENANT=0 \
  "$bin" serve --addr "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!

# Waits for the server, then registers an account and makes its organization.
"$SCHEMATHESIS_PYTHON" - "$base" "$work/env" <<'PY'
import json, sys, time, urllib.request, urllib.error

base, out = sys.argv[1], sys.argv[2]

def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)

for _ in range(240):
    try:
        urllib.request.urlopen(base + "/health/live", timeout=2)
        break
    except (urllib.error.URLError, ConnectionError):
        time.sleep(0.5)
else:
    sys.exit("the server did not start")
call("POST", "/api/v1/auth/register",
     {"email": "admin@example.com", "password": "correct horse battery", "name": "Administrator"})
reg = call("POST", "/api/v1/auth/register",
           {"email": "schemathesis@example.com", "password": "correct horse battery", "name": "Schemathesis"})
token = reg["tokens"]["access_token"]
org = call("POST", "/api/v1/orgs", {"name": "Schemathesis", "slug": "schemathesis"}, token)
with open(out, "w") as f:
    f.write(f"ST_TOKEN={token}\nST_ORG={org['id']}\nST_USER={reg['user']['id']}\n")
PY
# shellcheck disable=SC1091
. "$work/env"
export ST_TOKEN ST_ORG
"$bin" create-admin admin@example.com --data-dir "$work/data" >/dev/null
ST_ADMIN_TOKEN="$("$SCHEMATHESIS_PYTHON" - "$base" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/api/v1/auth/login", method="POST",
    data=json.dumps({"email": "admin@example.com", "password": "correct horse battery"}).encode(),
    headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as res:
    print(json.load(res)["access_token"])
PY
)"
export ST_ADMIN_TOKEN

# The organization and the tenant header are pinned to the account's own, so that the checks
# reach past the 404 of a random organization; every other input is generated.
cat >"$work/schemathesis.toml" <<'TOML'
# Nothing is kept between runs (no `.schemathesis/` in the working tree): each run stands alone.
cache = { enabled = false }
headers = { Authorization = "Bearer ${ST_TOKEN}", "X-Tenant-ID" = "${ST_ORG}" }

[parameters]
"path.org" = "${ST_ORG}"
"header.X-Tenant-ID" = "${ST_ORG}"
TOML
cat >"$work/schemathesis-admin.toml" <<'TOML'
cache = { enabled = false }
headers = { Authorization = "Bearer ${ST_ADMIN_TOKEN}" }
TOML

started=$(date +%s)
status=0
run() {
  SCHEMATHESIS_HOOKS="$PWD/.ci/schemathesis_hooks.py" \
    "$st" --config-file "$1" run "$base/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-100}" \
    --seed "${ST_SEED:-19}" \
    --workers 2 \
    --request-timeout 30 \
    --generation-database none \
    --no-color "${@:2}" || status=$?
}
# As the organization's owner: every operation but the platform administration (below) and
# three that would end the run's own identity, not for what they answer: logging out revokes
# the token every later request sends, and deleting the account or the organization removes
# what every later request names. (Their answers are checked by tests/openapi_contract.rs and
# the suites of their routes.)
echo "==> as an organization owner"
run "$work/schemathesis.toml" \
  --exclude-path-regex '^/api/v1/admin/' \
  --exclude-path /api/v1/auth/logout \
  --exclude-path /api/v1/users/me \
  --exclude-name 'DELETE /api/v1/orgs/{org}'
# As a platform administrator (another account, promoted by `quire create-admin`): the
# administration routes, which answer anyone else 403.
echo "==> as a platform administrator"
run "$work/schemathesis-admin.toml" --include-path-regex '^/api/v1/admin/'
echo "schemathesis took $(( $(date +%s) - started ))s"
exit "$status"
