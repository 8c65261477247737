//! Attacks on the limits (issue 13): no call, provider, counter rebuild, counter expiry or
//! cache pressure takes an organization past its quota or its stream cap, or resets a
//! rate-limit window. Each case runs on the embedded default (SQLite + in-process cache) and
//! on production (PostgreSQL + Redis).
//!
//! The HTTP case drives the server; the others drive [`billing::Billing`] over the server's
//! own ledger (SQLite or PostgreSQL) and a cache of the same kind, with short counter
//! lifetimes that a server's settings (whole seconds) cannot express.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use billing::ports::{TenantPlans, UsageLedger};
use billing::{Billing, BillingPorts, BillingSettings, Plan, Plans, RateBudget, RateClass};
use billing::{RateLimits, RateSubject};
use kernel::cache::{Cache, CacheKey};
use kernel::metering::{Meter, MeterError, MeterScope, Tokens, UsageKind};
use kernel::{SystemClock, TenantId, UserId};
use memory::InProcessCache;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

// --- helpers --------------------------------------------------------------------------------

/// Makes `token`'s account a platform administrator.
async fn promote(app: &TestApp, token: &str) {
    let (_, me) = app.call(token, Method::GET, "/api/v1/auth/me", None).await;
    let id = UserId::parse(me["user"]["id"].as_str().unwrap_or_default()).expect("user id");
    app.make_platform_admin(id).await;
}

async fn get(app: &TestApp, token: &str, org: &str, path: &str) -> Value {
    let (status, body) = app.call_in(token, Method::GET, path, None, Some(org)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn embed(app: &TestApp, token: &str, org: &str, text: &str) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::POST,
        "/api/v1/embeddings",
        Some(json!({"input": [text]})),
        Some(org),
    )
    .await
}

/// Every organization is on the plan named here.
#[derive(Debug)]
struct OnPlan(&'static str);

#[async_trait]
impl TenantPlans for OnPlan {
    async fn plan_of(&self, _tenant: TenantId) -> anyhow::Result<Option<String>> {
        Ok(Some(self.0.to_owned()))
    }
}

/// A limit of 1 000 tokens and 2 streams, with the given lifetimes.
fn settings(quota_counter_ttl: Duration, stream_slot_ttl: Duration) -> BillingSettings {
    BillingSettings {
        plans: Plans::new([(
            "tight".to_owned(),
            Plan {
                monthly_token_limit: Some(1_000),
                max_concurrent_streams: 2,
                max_storage_bytes: None,
            },
        )]),
        fallback_plan: "tight".to_owned(),
        quota_counter_ttl,
        stream_slot_ttl,
        rate_limits: RateLimits {
            window: Duration::from_secs(60),
            budgets: [(
                RateClass::Chat,
                RateBudget {
                    per_ip: 0,
                    per_user: 3,
                    per_api_key: 3,
                    per_tenant: 0,
                },
            )]
            .into_iter()
            .collect(),
        },
        ..BillingSettings::default()
    }
}

/// Billing over a server's ledger and a cache of the server's kind, for one of its
/// organizations.
struct Rig {
    billing: Arc<Billing>,
    ledger: Arc<dyn UsageLedger>,
    cache: Arc<dyn Cache>,
    tenant: TenantId,
    /// On production: the Redis cache itself (to lose every key, as a restart does).
    redis: Option<Arc<cache_redis::RedisCache>>,
    _app: TestApp,
    _guard: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
}

impl Rig {
    async fn new(production: bool, settings: BillingSettings) -> Option<Self> {
        if production && testkit::services_skipped("PostgreSQL and Redis") {
            return None;
        }
        let app = spawn_app_with(if production {
            TestOptions::production()
        } else {
            TestOptions::default()
        })
        .await;
        let (_, org) = app.owner("payer").await;
        let tenant = TenantId::parse(&org).expect("org id");
        let ledger: Arc<dyn UsageLedger> =
            Arc::new(store_sql::SqlUsageLedger::new(&app.store().await));
        let (cache, redis, guard): (
            Arc<dyn Cache>,
            _,
            Option<Box<dyn std::fmt::Debug + Send + Sync>>,
        ) = if production {
            let (redis, guard) = testkit::redis_cache().await?;
            (redis.clone(), Some(redis), Some(Box::new(guard)))
        } else {
            (Arc::new(InProcessCache::new(10_000)), None, None)
        };
        let billing = Arc::new(Billing::new(
            BillingPorts {
                ledger: Arc::clone(&ledger),
                plans_of: Arc::new(OnPlan("tight")),
                cache: Arc::clone(&cache),
                clock: Arc::new(SystemClock),
            },
            settings,
        ));
        Some(Self {
            billing,
            ledger,
            cache,
            tenant,
            redis,
            _app: app,
            _guard: guard,
        })
    }

    fn scope(&self) -> MeterScope {
        MeterScope {
            tenant: self.tenant,
            actor: None,
            model: "quire-local-ngram-384".to_owned(),
            kind: UsageKind::Embedding,
            reference: "attack".to_owned(),
        }
    }

    /// What the ledger holds for this month.
    async fn ledger_used(&self) -> u64 {
        let (start, _) = billing::service::period_of(time::OffsetDateTime::now_utc());
        self.ledger
            .tokens_since(self.tenant, start)
            .await
            .expect("ledger")
    }
}

/// Runs `case` on the embedded default, then on PostgreSQL + Redis. The rig (and its
/// server) lives until the case ends, whichever of its fields the case uses.
async fn on_both<F, Fut>(settings: fn() -> BillingSettings, case: F)
where
    F: Fn(Arc<Rig>) -> Fut,
    Fut: Future<Output = ()>,
{
    for production in [false, true] {
        if let Some(rig) = Rig::new(production, settings()).await {
            let rig = Arc::new(rig);
            case(Arc::clone(&rig)).await;
        }
    }
}

// --- quotas ---------------------------------------------------------------------------------

/// Punctuation and symbols cost far more tokens per byte than prose: the old reservation (a
/// third of the bytes) let parallel calls through that together used 183 % of the limit.
async fn parallel_punctuation_embeddings(production: bool) {
    let app = spawn_app_with(if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    })
    .await;
    let text: String = "¿¡«»§¶†‡•…‰‹›™!?;:{}[]<>|~^"
        .chars()
        .cycle()
        .take(120)
        .collect();
    // What the text really costs, measured in an organization of its own.
    let (prober, probe_org) = app.owner("prober").await;
    let (status, probe) = embed(&app, &prober, &probe_org, &text).await;
    assert_eq!(status, StatusCode::OK, "{probe}");
    let tokens = probe["usage"]["prompt_tokens"].as_u64().expect("tokens");
    let bytes = text.len() as u64;
    assert!(
        tokens > bytes / 3 + 1,
        "the text must cost more than a third of its bytes ({tokens} tokens, {bytes} bytes)"
    );

    let (token, org) = app.owner("mallory").await;
    let (root, _) = app.owner("root").await;
    promote(&app, &root).await;
    let limit = tokens * 10 + tokens / 2;
    let (status, patched) = app
        .call(
            &root,
            Method::PATCH,
            &format!("/api/v1/admin/orgs/{org}"),
            Some(json!({"monthly_token_limit": limit})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    let calls = (0..40).map(|_| embed(&app, &token, &org, &text));
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::PAYMENT_REQUIRED && b["code"] == "quota_exceeded")
        .count();
    assert!(ok >= 1, "{answers:?}");
    assert_eq!(ok + refused, 40, "{answers:?}");

    let plan = get(&app, &token, &org, "/api/v1/billing/plan").await;
    let used = plan["used"].as_u64().expect("used");
    assert!(used <= limit, "used {used} of {limit}: {plan}");
    assert_eq!(
        used,
        ok as u64 * tokens,
        "every admitted call billed in full: {plan}"
    );
    let report = get(&app, &token, &org, "/api/v1/usage?window=30d").await;
    let ledger = report["totals"]["total_tokens"].as_u64().expect("total");
    assert!(
        ledger <= limit,
        "the ledger holds {ledger} of {limit}: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_punctuation_embeddings_cannot_exceed_the_quota() {
    parallel_punctuation_embeddings(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_punctuation_embeddings_cannot_exceed_the_quota_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    parallel_punctuation_embeddings(true).await;
}

fn hour_long() -> BillingSettings {
    settings(Duration::from_secs(3600), Duration::from_secs(60))
}

/// A provider that reports more than the call reserved (a chat answer past `max_tokens`, an
/// embedding model that counts differently) is billed no more than the reservation: the
/// quota holds whatever a provider says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reporting_more_than_was_reserved_cannot_exceed_the_quota() {
    on_both(hour_long, |rig| async move {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(rig.billing.reserve(rig.scope(), 250).await.expect("fits"));
        }
        assert!(matches!(
            rig.billing.reserve(rig.scope(), 1).await,
            Err(MeterError::QuotaExceeded { .. })
        ));
        for r in held {
            let used = Tokens {
                prompt: 200,
                completion: 5_000,
            };
            rig.billing.settle(r, used).await;
        }
        assert_eq!(rig.ledger_used().await, 1_000);
        let plan = rig.billing.plan_status(rig.tenant).await.expect("plan");
        assert_eq!(plan.used, 1_000);
        assert!(matches!(
            rig.billing.reserve(rig.scope(), 1).await,
            Err(MeterError::QuotaExceeded { .. })
        ));
    })
    .await;
}

fn short_counter() -> BillingSettings {
    settings(Duration::from_millis(300), Duration::from_secs(60))
}

/// The quota counter expires (or is evicted) while a reservation is in flight: the rebuilt
/// counter must still count it, or a second call is let through and both are billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_quota_counter_counts_reservations_in_flight() {
    on_both(short_counter, |rig| async move {
        let first = rig.billing.reserve(rig.scope(), 600).await.expect("fits");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The counter is gone and rebuilt from the ledger (empty) plus what is in flight.
        let second = rig.billing.reserve(rig.scope(), 600).await;
        assert!(
            matches!(second, Err(MeterError::QuotaExceeded { used: 600, .. })),
            "{second:?}"
        );
        let third = rig.billing.reserve(rig.scope(), 400).await.expect("fits");
        let used = Tokens {
            prompt: 600,
            completion: 0,
        };
        rig.billing.settle(first, used).await;
        rig.billing
            .settle(
                third,
                Tokens {
                    prompt: 400,
                    completion: 0,
                },
            )
            .await;
        assert_eq!(rig.ledger_used().await, 1_000);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(matches!(
            rig.billing.reserve(rig.scope(), 1).await,
            Err(MeterError::QuotaExceeded { used: 1_000, .. })
        ));
    })
    .await;
}

/// Every counter is lost (a cache restart) with a call in flight, and a second call is let
/// through against the rebuilt counter: the first one settles only what still fits, and the
/// counter is never lowered by a reservation it no longer holds (counted twice before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_restart_with_calls_in_flight_cannot_exceed_the_quota() {
    on_both(hour_long, |rig| async move {
        let first = rig.billing.reserve(rig.scope(), 600).await.expect("fits");
        let label = {
            let (start, _) = billing::service::period_of(time::OffsetDateTime::now_utc());
            format!("{:04}-{:02}", start.year(), u8::from(start.month()))
        };
        let base = CacheKey::tenant(rig.tenant, "quota", &[&label, "leased"]);
        // A restart: the base and its leases gone. The in-process cache loses them only with
        // its process; remove what can be removed and let Redis lose everything.
        rig.cache.delete(&base).await.expect("delete");
        if let Some(redis) = &rig.redis {
            redis.purge_prefix().await.expect("purge");
        }
        let restarted = rig.redis.is_some();
        let second = rig.billing.reserve(rig.scope(), 600).await;
        let used = Tokens {
            prompt: 600,
            completion: 0,
        };
        if restarted {
            let second = second.expect("the lost reservation cannot be known");
            rig.billing.settle(first, used).await;
            rig.billing.settle(second, used).await;
        } else {
            assert!(matches!(second, Err(MeterError::QuotaExceeded { .. })));
            rig.billing.settle(first, used).await;
        }
        let ledger = rig.ledger_used().await;
        assert!(ledger <= 1_000, "the ledger holds {ledger}");
        assert_eq!(ledger, if restarted { 1_000 } else { 600 });
        // And the counter agrees with the ledger: what is left fits, one more does not.
        let left = 1_000 - ledger;
        if left > 0 {
            let r = rig.billing.reserve(rig.scope(), left).await.expect("left");
            rig.billing.release(r).await;
        }
        assert!(matches!(
            rig.billing.reserve(rig.scope(), left + 1).await,
            Err(MeterError::QuotaExceeded { .. })
        ));
    })
    .await;
}

// --- stream slots ---------------------------------------------------------------------------

fn short_slots() -> BillingSettings {
    settings(Duration::from_secs(3600), Duration::from_millis(300))
}

/// Streams that run longer than the slot counter's lifetime keep their slots: the cap holds
/// for as long as they are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_keep_their_slots_past_the_counter_ttl() {
    on_both(short_slots, |rig| async move {
        let a = rig.billing.open_stream(rig.tenant).await.expect("first");
        let b = rig.billing.open_stream(rig.tenant).await.expect("second");
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let third = rig.billing.open_stream(rig.tenant).await;
        assert!(
            matches!(third, Err(MeterError::TooManyStreams { limit: 2, .. })),
            "{third:?}"
        );
        rig.billing.close_stream(a).await;
        let c = rig.billing.open_stream(rig.tenant).await.expect("freed");
        rig.billing.close_stream(b).await;
        rig.billing.close_stream(c).await;
    })
    .await;
}

/// A slot whose holder died (never given back) comes back once its lease runs out, instead
/// of locking the organization out for the counter's whole lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_a_dead_server_come_back_within_the_slot_ttl() {
    on_both(short_slots, |rig| async move {
        let a = rig.billing.open_stream(rig.tenant).await.expect("first");
        let b = rig.billing.open_stream(rig.tenant).await.expect("second");
        // The holder dies: its renewal stops with it.
        drop(a);
        assert!(rig.billing.open_stream(rig.tenant).await.is_err());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let c = rig
            .billing
            .open_stream(rig.tenant)
            .await
            .expect("came back");
        rig.billing.close_stream(b).await;
        rig.billing.close_stream(c).await;
    })
    .await;
}

// --- rate limits ----------------------------------------------------------------------------

/// Filling the cache with other entries must not evict a rate-limit window before it ends
/// (the in-process cache evicted the entries nearest expiry: the counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_counters_survive_cache_pressure() {
    let small: Arc<dyn Cache> = Arc::new(InProcessCache::new(64));
    let mut caches = vec![small];
    let redis = testkit::redis_cache().await;
    if let Some((r, _)) = &redis {
        caches.push(r.clone() as Arc<dyn Cache>);
    }
    for cache in caches {
        let ledger = Arc::new(memory::InMemoryUsageLedger::new());
        let billing = Billing::new(
            BillingPorts {
                ledger,
                plans_of: Arc::new(OnPlan("tight")),
                cache: Arc::clone(&cache),
                clock: Arc::new(SystemClock),
            },
            hour_long(),
        );
        let user = [RateSubject::User(UserId::new())];
        for _ in 0..3 {
            let d = billing
                .check_rate(RateClass::Chat, &user)
                .await
                .expect("rate")
                .expect("limited");
            assert!(d.allowed);
        }
        // Pressure: many plain values that live longer than the window.
        for i in 0..1_000 {
            let k = CacheKey::global("pressure", &[&i.to_string()]);
            cache
                .set(&k, b"filler", Duration::from_secs(3600))
                .await
                .expect("set");
        }
        let fourth = billing
            .check_rate(RateClass::Chat, &user)
            .await
            .expect("rate")
            .expect("limited");
        assert!(
            !fourth.allowed,
            "the window was reset by pressure: {fourth:?}"
        );
        assert_eq!(fourth.remaining, 0);
    }
}
