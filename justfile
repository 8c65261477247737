# Recipes for Quire. The README's two commands need only cargo; these are shortcuts.

# Run the server on the embedded default (SQLite in ./data, in-process cache).
run:
    cargo run --release

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

# Load-test GET /health/ready on the embedded default (needs wrk: apt-get install wrk).
bench:
    bash docs/bench/health-ready.sh
    bash docs/bench/extract-bench.sh
