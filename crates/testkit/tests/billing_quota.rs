//! Quotas, stream slots and rate limits of [`billing::Billing`] on both cache backends: the
//! in-process cache and Redis (a fresh key prefix per test), with the in-memory ledger.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use billing::ports::{TenantPlans, UsageLedger};
use billing::{
    Billing, BillingPorts, BillingSettings, Plan, Plans, RateBudget, RateClass, RateLimits,
    RateSubject,
};
use kernel::cache::Cache;
use kernel::metering::{Meter, MeterError, MeterScope, Tokens, UsageKind};
use kernel::{Principal, SystemClock, TenantId, UserId};
use memory::{InMemoryUsageLedger, InProcessCache};

/// Every organization is on the plan named here.
#[derive(Debug)]
struct OnPlan(&'static str);

#[async_trait]
impl TenantPlans for OnPlan {
    async fn plan_of(&self, _tenant: TenantId) -> anyhow::Result<Option<String>> {
        Ok(Some(self.0.to_owned()))
    }
}

fn settings() -> BillingSettings {
    BillingSettings {
        plans: Plans::new([
            (
                "free".to_owned(),
                Plan {
                    monthly_token_limit: Some(1_000),
                    max_concurrent_streams: 2,
                    max_storage_bytes: None,
                },
            ),
            (
                "enterprise".to_owned(),
                Plan {
                    monthly_token_limit: None,
                    max_concurrent_streams: 100,
                    max_storage_bytes: None,
                },
            ),
        ]),
        rate_limits: RateLimits {
            window: Duration::from_secs(60),
            budgets: [(
                RateClass::Chat,
                RateBudget {
                    per_ip: 10,
                    per_user: 3,
                    per_api_key: 3,
                    per_tenant: 5,
                },
            )]
            .into_iter()
            .collect(),
        },
        ..BillingSettings::default()
    }
}

fn billing(cache: Arc<dyn Cache>, ledger: Arc<InMemoryUsageLedger>, plan: &'static str) -> Billing {
    Billing::new(
        BillingPorts {
            ledger,
            plans_of: Arc::new(OnPlan(plan)),
            cache,
            clock: Arc::new(SystemClock),
        },
        settings(),
    )
}

fn scope(tenant: TenantId) -> MeterScope {
    MeterScope {
        tenant,
        actor: Some(Principal::User(UserId::new())),
        model: "gpt-4o-mini".to_owned(),
        kind: UsageKind::Chat,
        reference: "test".to_owned(),
    }
}

/// Runs `case` on the in-process cache, then on Redis.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(Arc<dyn Cache>) -> Fut,
    Fut: Future<Output = ()>,
{
    case(Arc::new(InProcessCache::new(10_000))).await;
    if let Some((redis, _guard)) = testkit::redis_cache().await {
        case(redis).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_against_a_quota_for_ten_let_exactly_ten_through() {
    on_both(|cache| async move {
        let ledger = Arc::new(InMemoryUsageLedger::new());
        let billing = Arc::new(billing(cache, ledger.clone(), "free"));
        let tenant = TenantId::new();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let billing = billing.clone();
                tokio::spawn(async move { billing.reserve(scope(tenant), 100).await })
            })
            .collect();
        let mut admitted = Vec::new();
        let mut refused = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(r) => admitted.push(r),
                Err(MeterError::QuotaExceeded {
                    resets_at,
                    limit,
                    used,
                }) => {
                    assert_eq!(limit, 1_000);
                    assert!(used > 900, "refused at {used}");
                    assert_eq!(
                        resets_at,
                        billing::service::period_of(resets_at - time::Duration::days(1)).1
                    );
                    refused += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(admitted.len(), 10);
        assert_eq!(refused, 40);
        // Settling the ten at what they reserved writes ten events: the month is used up.
        for r in admitted {
            billing
                .settle(
                    r,
                    Tokens {
                        prompt: 60,
                        completion: 40,
                    },
                )
                .await;
        }
        let status = billing.plan_status(tenant).await.expect("status");
        assert_eq!(status.used, 1_000);
        assert_eq!(status.remaining, Some(0));
        let rows = ledger
            .totals(tenant, status.period_start, None, None)
            .await
            .expect("totals");
        assert_eq!(rows.iter().map(|r| r.totals.events).sum::<u64>(), 10);
        assert!(matches!(
            billing.reserve(scope(tenant), 1).await,
            Err(MeterError::QuotaExceeded { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn settling_moves_the_counter_to_what_was_used_and_a_release_records_nothing() {
    on_both(|cache| async move {
        let ledger = Arc::new(InMemoryUsageLedger::new());
        let billing = billing(cache, ledger.clone(), "free");
        let tenant = TenantId::new();
        let r = billing.reserve(scope(tenant), 600).await.expect("fits");
        // While 600 are reserved, 500 more do not fit.
        assert!(billing.reserve(scope(tenant), 500).await.is_err());
        billing
            .settle(
                r,
                Tokens {
                    prompt: 80,
                    completion: 20,
                },
            )
            .await;
        // 100 used: 800 more fit, then 200 do not.
        let big = billing.reserve(scope(tenant), 800).await.expect("fits now");
        assert!(billing.reserve(scope(tenant), 200).await.is_err());
        billing.release(big).await;
        let status = billing.plan_status(tenant).await.expect("status");
        assert_eq!(status.used, 100, "the release wrote nothing");
        let rows = ledger
            .totals(tenant, status.period_start, None, None)
            .await
            .expect("totals");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].totals.prompt_tokens, 80);
        assert_eq!(rows[0].totals.completion_tokens, 20);
        // gpt-4o-mini: ⌈(80 × 150 000 + 20 × 600 000) / 10^6⌉ = 24 micro-dollars.
        assert_eq!(rows[0].totals.cost_micros, 24);
        assert!(billing.reserve(scope(tenant), 900).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_lost_counter_is_rebuilt_from_the_ledger() {
    let ledger = Arc::new(InMemoryUsageLedger::new());
    let tenant = TenantId::new();
    let first = billing(Arc::new(InProcessCache::new(100)), ledger.clone(), "free");
    let r = first.reserve(scope(tenant), 700).await.expect("fits");
    first
        .settle(
            r,
            Tokens {
                prompt: 700,
                completion: 0,
            },
        )
        .await;
    // A new cache (a restarted Redis, another process's empty memory): the counter starts
    // from the 700 in the ledger, not from zero.
    let second = billing(Arc::new(InProcessCache::new(100)), ledger, "free");
    assert!(matches!(
        second.reserve(scope(tenant), 400).await,
        Err(MeterError::QuotaExceeded { used: 700, .. })
    ));
    assert!(second.reserve(scope(tenant), 300).await.is_ok());
}

#[tokio::test]
async fn an_override_replaces_the_plan_limit_and_no_limit_means_none() {
    on_both(|cache| async move {
        let ledger = Arc::new(InMemoryUsageLedger::new());
        let billing = billing(cache.clone(), ledger.clone(), "free");
        let tenant = TenantId::new();
        billing
            .set_limit_override(tenant, Some(50))
            .await
            .expect("override");
        assert!(matches!(
            billing.reserve(scope(tenant), 100).await,
            Err(MeterError::QuotaExceeded { limit: 50, .. })
        ));
        let status = billing.plan_status(tenant).await.expect("status");
        assert_eq!(status.monthly_token_limit, Some(50));
        assert!(status.limit_overridden);
        billing
            .set_limit_override(tenant, None)
            .await
            .expect("back to the plan");
        assert!(billing.reserve(scope(tenant), 100).await.is_ok());

        let unlimited = self::billing(cache, ledger.clone(), "enterprise");
        let other = TenantId::new();
        let r = unlimited
            .reserve(scope(other), 10_000_000)
            .await
            .expect("no limit");
        unlimited
            .settle(
                r,
                Tokens {
                    prompt: 5,
                    completion: 5,
                },
            )
            .await;
        let status = unlimited.plan_status(other).await.expect("status");
        assert_eq!((status.used, status.remaining), (10, None));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_slots_are_capped_per_organization() {
    on_both(|cache| async move {
        let billing = Arc::new(billing(cache, Arc::new(InMemoryUsageLedger::new()), "free"));
        let tenant = TenantId::new();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let billing = billing.clone();
                tokio::spawn(async move { billing.open_stream(tenant).await })
            })
            .collect();
        let mut open = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(slot) => open.push(slot),
                Err(MeterError::TooManyStreams { limit, .. }) => assert_eq!(limit, 2),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(open.len(), 2);
        // Another organization has its own slots.
        let other = billing.open_stream(TenantId::new()).await.expect("other");
        billing.close_stream(other).await;
        // Giving one back lets one more in.
        let slot = open.pop().expect("a slot");
        billing.close_stream(slot).await;
        open.push(billing.open_stream(tenant).await.expect("freed"));
        assert!(billing.open_stream(tenant).await.is_err());
        for s in open {
            billing.close_stream(s).await;
        }
    })
    .await;
}

#[tokio::test]
async fn rate_limits_answer_with_the_tightest_budget() {
    on_both(|cache| async move {
        let billing = billing(cache, Arc::new(InMemoryUsageLedger::new()), "free");
        let tenant = TenantId::new();
        let alice = UserId::new();
        let bob = UserId::new();
        let subjects = |u: UserId| {
            [
                RateSubject::Ip("10.0.0.1".to_owned()),
                RateSubject::User(u),
                RateSubject::Tenant(tenant),
            ]
        };
        for left in [2, 1, 0] {
            let d = billing
                .check_rate(RateClass::Chat, &subjects(alice))
                .await
                .expect("cache")
                .expect("a budget applies");
            assert!(d.allowed);
            assert_eq!(
                (d.limit, d.remaining),
                (3, left),
                "the user's budget is tightest"
            );
            assert!(d.reset <= Duration::from_secs(60) && d.reset > Duration::ZERO);
        }
        let over = billing
            .check_rate(RateClass::Chat, &subjects(alice))
            .await
            .expect("cache")
            .expect("a budget");
        assert!(!over.allowed);
        assert_eq!(over.remaining, 0);
        // Bob has his own user budget, but Alice's four calls count for the organization:
        // Bob's first is its fifth (allowed, none left), his second is refused by it.
        let d = billing
            .check_rate(RateClass::Chat, &subjects(bob))
            .await
            .expect("cache")
            .expect("a budget");
        assert!(d.allowed);
        assert_eq!(
            (d.limit, d.remaining),
            (5, 0),
            "the organization is tightest now"
        );
        let d = billing
            .check_rate(RateClass::Chat, &subjects(bob))
            .await
            .expect("cache")
            .expect("a budget");
        assert!(!d.allowed, "the organization's budget of 5 is spent");
        assert_eq!(d.limit, 5);
        // A class without budgets is not limited.
        assert_eq!(
            billing
                .check_rate(RateClass::Upload, &subjects(bob))
                .await
                .expect("cache"),
            None
        );
    })
    .await;
}

/// The in-memory ledger, failing its first `failures` appends (a database outage).
#[derive(Debug)]
struct FlakyLedger {
    inner: InMemoryUsageLedger,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl UsageLedger for FlakyLedger {
    async fn append(
        &self,
        event: &billing::UsageEvent,
    ) -> Result<bool, billing::ports::LedgerError> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(anyhow::anyhow!("the database is down").into());
        }
        self.inner.append(event).await
    }

    async fn tokens_since(
        &self,
        tenant: TenantId,
        since: time::OffsetDateTime,
    ) -> Result<u64, billing::ports::LedgerError> {
        self.inner.tokens_since(tenant, since).await
    }

    async fn totals(
        &self,
        tenant: TenantId,
        since: time::OffsetDateTime,
        actor: Option<Principal>,
        step: Option<time::Duration>,
    ) -> Result<Vec<billing::UsageRow>, billing::ports::LedgerError> {
        self.inner.totals(tenant, since, actor, step).await
    }

    async fn totals_by_tenant(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Vec<billing::model::TenantUsageRow>, billing::ports::LedgerError> {
        self.inner.totals_by_tenant(since).await
    }

    async fn limit_override(
        &self,
        tenant: TenantId,
    ) -> Result<Option<u64>, billing::ports::LedgerError> {
        self.inner.limit_override(tenant).await
    }

    async fn set_limit_override(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<(), billing::ports::LedgerError> {
        self.inner.set_limit_override(tenant, limit).await
    }
}

#[tokio::test]
async fn a_ledger_outage_is_outlasted_and_one_reservation_settled_twice_counts_once() {
    on_both(|cache| async move {
        let ledger = Arc::new(FlakyLedger {
            inner: InMemoryUsageLedger::new(),
            failures: std::sync::atomic::AtomicU32::new(0),
        });
        let billing = Billing::new(
            BillingPorts {
                ledger: ledger.clone(),
                plans_of: Arc::new(OnPlan("free")),
                cache,
                clock: Arc::new(SystemClock),
            },
            settings(),
        );
        let tenant = TenantId::new();
        let r = billing.reserve(scope(tenant), 600).await.expect("fits");
        // What a sweeper reads back from an answer's message: the same reservation.
        let again = kernel::Reservation {
            id: r.id,
            scope: r.scope.clone(),
            reserved: r.reserved,
            request_id: r.request_id.clone(),
            period: r.period.clone(),
            at: r.at,
        };
        // Five failed writes (about 1.5 s of outage) before the ledger answers again.
        ledger
            .failures
            .store(5, std::sync::atomic::Ordering::SeqCst);
        let used = Tokens {
            prompt: 80,
            completion: 20,
        };
        billing.settle(r, used).await;
        assert_eq!(
            ledger.failures.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "every failure was tried through"
        );
        let status = billing.plan_status(tenant).await.expect("status");
        assert_eq!(status.used, 100, "written once the ledger came back");
        billing.settle(again, used).await;
        let status = billing.plan_status(tenant).await.expect("status");
        assert_eq!(status.used, 100, "the second settlement changes nothing");
        let rows = ledger
            .totals(tenant, status.period_start, None, None)
            .await
            .expect("totals");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].totals.events, 1);
        // 100 used: exactly 900 more fit.
        assert!(billing.reserve(scope(tenant), 901).await.is_err());
        assert!(billing.reserve(scope(tenant), 900).await.is_ok());
    })
    .await;
}

/// Events published, kept for the test to read.
#[derive(Debug, Default)]
struct Heard(std::sync::Mutex<Vec<kernel::Event>>);

impl kernel::Events for Heard {
    fn publish(&self, event: kernel::Event) {
        self.0.lock().expect("lock").push(event);
    }
}

#[tokio::test]
async fn usage_thresholds_are_published_once_per_period_at_80_and_100_percent() {
    on_both(|cache| async move {
        let heard = Arc::new(Heard::default());
        let ledger = Arc::new(InMemoryUsageLedger::new());
        let billing = billing(cache, ledger, "free").with_events(heard.clone());
        let tenant = TenantId::new();
        let spend = |n: u64| {
            let billing = &billing;
            async move {
                let r = billing.reserve(scope(tenant), n).await.expect("fits");
                billing
                    .settle(
                        r,
                        Tokens {
                            prompt: n,
                            completion: 0,
                        },
                    )
                    .await;
            }
        };
        let percents = |heard: &Heard| {
            heard
                .0
                .lock()
                .expect("lock")
                .iter()
                .map(|e| {
                    assert_eq!(e.kind, kernel::EventKind::UsageThreshold);
                    assert_eq!(e.tenant, tenant);
                    e.data["threshold_percent"].as_u64().expect("percent")
                })
                .collect::<Vec<_>>()
        };
        spend(790).await;
        assert!(percents(&heard).is_empty(), "79 %: nothing yet");
        spend(10).await;
        assert_eq!(percents(&heard), vec![80], "80 % reached");
        let first = heard.0.lock().expect("lock")[0].data.clone();
        assert_eq!(first["used_tokens"], 800);
        assert_eq!(first["limit_tokens"], 1_000);
        spend(100).await;
        assert_eq!(percents(&heard), vec![80], "once per period");
        spend(100).await;
        assert_eq!(percents(&heard), vec![80, 100], "100 % reached");
        // Another organization has its own thresholds: both at once when one call passes both.
        let other = TenantId::new();
        let r = billing.reserve(scope(other), 1_000).await.expect("fits");
        billing
            .settle(
                r,
                Tokens {
                    prompt: 1_000,
                    completion: 0,
                },
            )
            .await;
        let others: Vec<_> = heard
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.tenant == other)
            .map(|e| e.data["threshold_percent"].as_u64())
            .collect();
        assert_eq!(others, vec![Some(80), Some(100)]);
    })
    .await;
}
