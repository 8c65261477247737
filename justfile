# Recipes for Quire. The README's two commands need only cargo; these are shortcuts.

# Run the server on the embedded default (SQLite in ./data, in-process cache).
run:
    cargo run --release

# The binary the container image ships (deploy/Dockerfile): the `dist` profile (release plus
# thin LTO) with every adapter (`full`: Redis, the OpenAI-compatible provider, SMTP).
dist:
    cargo build --profile dist --locked -p quire --features full

# The whole test suite (PostgreSQL and Redis on localhost; see README).
test:
    cargo test --workspace

# What CI runs: services, fmt, clippy, tests.
ci:
    bash .ci/run

lint:
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Apply database migrations (QUIRE_DATABASE__URL picks PostgreSQL).
migrate:
    cargo run --release -- migrate

# The benchmarks of docs/benchmarks.md: GET /health/ready under load (needs wrk: apt-get
# install wrk), authenticated reads against the FastAPI peer (wrk, PostgreSQL, Redis), extraction against pypdf, and search at 100,000 chunks × 1,536 dimensions on the
# embedded index and on pgvector (.ci/pgvector.sh starts the PostgreSQL it needs), and chat:
# server-added time to first token and memory per open WebSocket, and the soak of issue 15
# (22 min: the release server under a mixed load, then one fault a minute).
bench:
    bash docs/bench/health-ready.sh
    bash docs/bench/requests.sh
    bash docs/bench/extract-bench.sh
    QUIRE_TEST_PGVECTOR_URL="$(bash .ci/pgvector.sh | tail -n 1)" cargo bench -p testkit --bench retrieval
    cargo bench -p local-ai --bench embed
    cargo bench -p testkit --bench chat -- --streams 1,50,200 --sockets 1000
    cargo build --profile bench -p quire --features full
    QUIRE_TEST_PG_BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")" cargo bench -p testkit --bench soak
