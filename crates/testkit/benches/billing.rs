//! Billing benchmark: what metering adds to a billable call, reservation + settlement, in µs.
//!
//! A call costs billing one reservation before the provider (the organization's limits, read
//! from the cache; one atomic bounded increment) and one settlement after it (a ledger write;
//! one increment correcting the counter). This binary times that pair through
//! [`billing::Billing`]'s metering port, the same code the server runs, on:
//!
//! - `memory`: the in-process cache (the embedded default) with the ledger in SQLite (a file
//!   in a temporary folder, as the embedded default keeps it) and, apart, with the in-memory
//!   ledger (the cache's share alone);
//! - `redis`: Redis on 127.0.0.1 (`QUIRE_TEST_REDIS_URL`) with the ledger in PostgreSQL
//!   (`QUIRE_TEST_DATABASE_URL`, a schema of its own) and, apart, with the in-memory ledger.
//!
//! Each setup runs `--calls` pairs one after another (the latency a request sees), then the
//! same number spread over `--tasks` concurrent tasks (throughput, and the latency under
//! contention: every task bills the same organization, so all of them hit one counter).
//!
//! ```text
//! cargo bench -p testkit --bench billing -- [--calls 5000] [--tasks 16] [--skip-redis]
//! ```
//! See docs/benchmarks.md for results.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use billing::ports::{TenantPlans, UsageLedger};
use billing::{Billing, BillingPorts, BillingSettings};
use kernel::cache::Cache;
use kernel::metering::{Meter, MeterScope, Tokens, UsageKind};
use kernel::{Principal, SystemClock, TenantId, UserId};

/// Every organization is on `enterprise`'s stream cap with a limit no bench reaches.
#[derive(Debug)]
struct Pro;

#[async_trait]
impl TenantPlans for Pro {
    async fn plan_of(&self, _tenant: TenantId) -> anyhow::Result<Option<String>> {
        Ok(Some("pro".to_owned()))
    }
}

struct Args {
    calls: usize,
    tasks: usize,
    redis: bool,
}

fn args() -> Args {
    let mut out = Args {
        calls: 5_000,
        tasks: 16,
        redis: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--calls" => out.calls = it.next().and_then(|v| v.parse().ok()).expect("--calls N"),
            "--tasks" => out.tasks = it.next().and_then(|v| v.parse().ok()).expect("--tasks N"),
            "--skip-redis" => out.redis = false,
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn scope(tenant: TenantId, user: UserId) -> MeterScope {
    MeterScope {
        tenant,
        actor: Some(Principal::User(user)),
        model: "gpt-4o-mini".to_owned(),
        kind: UsageKind::Chat,
        reference: "bench".to_owned(),
    }
}

/// One reservation and its settlement: (reservation, settlement) times.
async fn pair(billing: &Billing, tenant: TenantId, user: UserId) -> (Duration, Duration) {
    let started = Instant::now();
    let r = billing
        .reserve(scope(tenant, user), 1_500)
        .await
        .expect("reserve");
    let reserved = started.elapsed();
    billing
        .settle(
            r,
            Tokens {
                prompt: 700,
                completion: 300,
            },
        )
        .await;
    (reserved, started.elapsed() - reserved)
}

async fn run(
    name: &str,
    cache: Arc<dyn Cache>,
    ledger: Arc<dyn UsageLedger>,
    tenant: TenantId,
    a: &Args,
) {
    let billing = Arc::new(Billing::new(
        BillingPorts {
            ledger,
            plans_of: Arc::new(Pro),
            cache,
            clock: Arc::new(SystemClock),
        },
        BillingSettings::default(),
    ));
    let user = UserId::new();
    // Warm up: the limits are cached and the counter exists, as on a busy server.
    for _ in 0..50 {
        pair(&billing, tenant, user).await;
    }
    let mut one: Vec<Duration> = Vec::with_capacity(a.calls);
    let mut reserve: Vec<Duration> = Vec::with_capacity(a.calls);
    let mut settle: Vec<Duration> = Vec::with_capacity(a.calls);
    for _ in 0..a.calls {
        let (r, s) = pair(&billing, tenant, user).await;
        reserve.push(r);
        settle.push(s);
        one.push(r + s);
    }
    one.sort();
    reserve.sort();
    settle.sort();
    let per_task = a.calls / a.tasks.max(1);
    let started = Instant::now();
    let handles: Vec<_> = (0..a.tasks)
        .map(|_| {
            let billing = billing.clone();
            tokio::spawn(async move {
                let mut own = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let (r, s) = pair(&billing, tenant, user).await;
                    own.push(r + s);
                }
                own
            })
        })
        .collect();
    let mut many: Vec<Duration> = Vec::new();
    for h in handles {
        many.extend(h.await.expect("task"));
    }
    let wall = started.elapsed();
    many.sort();
    println!(
        "{name:<28} one at a time: p50 {:>7.1} µs  p99 {:>7.1} µs (reserve p50 {:>6.1}, settle p50 {:>6.1}) | {} tasks: p50 {:>7.1} µs  p99 {:>7.1} µs  {:>7.0} pairs/s",
        percentile(&one, 0.5),
        percentile(&one, 0.99),
        percentile(&reserve, 0.5),
        percentile(&settle, 0.5),
        a.tasks,
        percentile(&many, 0.5),
        percentile(&many, 0.99),
        many.len() as f64 / wall.as_secs_f64(),
    );
}

/// An organization in `store` (the ledger's rows need one).
async fn organization(store: &store_sql::SqlStore) -> TenantId {
    let org = tenancy::ports::OrganizationRepository::create(
        store,
        tenancy::NewOrganization {
            name: tenancy::OrgName::parse("Bench").expect("name"),
            slug: tenancy::OrgSlug::parse(&format!("b-{}", TenantId::new())).expect("slug"),
        },
    )
    .await
    .expect("organization");
    org.id
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!(
        "billing: reservation + settlement per call, {} calls ({} cores)",
        a.calls,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );

    let memory: Arc<dyn Cache> = Arc::new(memory::InProcessCache::new(100_000));
    run(
        "memory cache, memory ledger",
        memory.clone(),
        Arc::new(memory::InMemoryUsageLedger::new()),
        TenantId::new(),
        &a,
    )
    .await;
    let (sqlite, _dir) = testkit::sqlite_store().await;
    let tenant = organization(&sqlite).await;
    run(
        "memory cache, SQLite ledger",
        memory,
        Arc::new(store_sql::SqlUsageLedger::new(&sqlite)),
        tenant,
        &a,
    )
    .await;

    if !a.redis {
        return;
    }
    let (redis, _redis_guard) = testkit::redis_cache().await.expect("Redis");
    run(
        "Redis, memory ledger",
        redis.clone(),
        Arc::new(memory::InMemoryUsageLedger::new()),
        TenantId::new(),
        &a,
    )
    .await;
    let (postgres, _pg_guard) = testkit::postgres_store().await.expect("PostgreSQL");
    let tenant = organization(&postgres).await;
    run(
        "Redis, PostgreSQL ledger",
        redis,
        Arc::new(store_sql::SqlUsageLedger::new(&postgres)),
        tenant,
        &a,
    )
    .await;
}
