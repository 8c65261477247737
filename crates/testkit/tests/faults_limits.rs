//! The fault suite for limits (items 1 and 2 of issue 15): [`billing::Billing`] over a server's
//! ledger and a private Redis ([`testkit::faults::PrivateRedis`]) that is restarted or stalled
//! (`SIGSTOP`) with answers in flight. The stream cap and the quota hold, no counter goes
//! negative, and every counter converges to the ledger within the bounds of `docs/faults.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use billing::ports::{TenantPlans, UsageLedger};
use billing::{Billing, BillingPorts, BillingSettings, Plan, Plans};
use kernel::metering::{Meter, MeterError, MeterScope, StreamSlot, Tokens, UsageKind};
use kernel::{SystemClock, TenantId};
use testkit::faults::{self, PrivateRedis};
use testkit::{TestApp, spawn_app};

const LIMIT: u64 = 1_000;
const CAP: u32 = 4;
/// A slot's lease: renewed every 300 ms.
const SLOT_TTL: Duration = Duration::from_millis(900);

#[derive(Debug)]
struct Tight;

#[async_trait]
impl TenantPlans for Tight {
    async fn plan_of(&self, _: TenantId) -> anyhow::Result<Option<String>> {
        Ok(Some("tight".to_owned()))
    }
}

/// Billing over the server's SQLite ledger and the private Redis, for one organization.
struct Rig {
    billing: Arc<Billing>,
    ledger: Arc<dyn UsageLedger>,
    tenant: TenantId,
    _app: TestApp,
}

impl Rig {
    async fn new(redis: &PrivateRedis) -> Self {
        let app = spawn_app().await;
        let (_, org) = app.owner("payer").await;
        let tenant = TenantId::parse(&org).expect("org id");
        let ledger: Arc<dyn UsageLedger> =
            Arc::new(store_sql::SqlUsageLedger::new(&app.store().await));
        let cache = Arc::new(
            cache_redis::RedisCache::new(&redis.url(), "faults", 8).expect("a Redis pool"),
        );
        let billing = Arc::new(Billing::new(
            BillingPorts {
                ledger: Arc::clone(&ledger),
                plans_of: Arc::new(Tight),
                cache,
                clock: Arc::new(SystemClock),
            },
            BillingSettings {
                plans: Plans::new([(
                    "tight".to_owned(),
                    Plan {
                        monthly_token_limit: Some(LIMIT),
                        max_concurrent_streams: CAP,
                        max_storage_bytes: None,
                    },
                )]),
                fallback_plan: "tight".to_owned(),
                quota_counter_ttl: Duration::from_secs(3600),
                stream_slot_ttl: SLOT_TTL,
                ..BillingSettings::default()
            },
        ));
        Self {
            billing,
            ledger,
            tenant,
            _app: app,
        }
    }

    fn scope(&self) -> MeterScope {
        MeterScope {
            tenant: self.tenant,
            actor: None,
            model: "quire-local-ngram-384".to_owned(),
            kind: UsageKind::Chat,
            reference: "faults".to_owned(),
        }
    }

    async fn ledger_used(&self) -> u64 {
        let (start, _) = billing::service::period_of(time::OffsetDateTime::now_utc());
        self.ledger
            .tokens_since(self.tenant, start)
            .await
            .expect("ledger")
    }

    /// Opens streams until one is refused; answers those opened and the refusal.
    async fn open_all(&self, most: usize) -> (Vec<StreamSlot>, Option<MeterError>) {
        let mut open = Vec::new();
        for _ in 0..most {
            match self.billing.open_stream(self.tenant).await {
                Ok(s) => open.push(s),
                Err(e) => return (open, Some(e)),
            }
        }
        (open, None)
    }

    /// The stream counter is exactly `CAP` free slots: `CAP` open, one more refused (a
    /// negative counter would let a fifth in). Closes them again.
    async fn all_slots_free(&self) -> bool {
        let (open, refused) = self.open_all(CAP as usize + 1).await;
        let free = open.len() == CAP as usize
            && matches!(refused, Some(MeterError::TooManyStreams { .. }));
        for s in open {
            self.billing.close_stream(s).await;
        }
        free
    }

    /// The quota counter agrees with the ledger: what is left fits, one token more does not.
    async fn quota_agrees_with_ledger(&self) -> bool {
        let left = LIMIT - self.ledger_used().await;
        if left > 0 {
            match self.billing.reserve(self.scope(), left).await {
                Ok(r) => self.billing.release(r).await,
                Err(_) => return false,
            }
        }
        matches!(
            self.billing.reserve(self.scope(), left + 1).await,
            Err(MeterError::QuotaExceeded { .. })
        )
    }
}

fn tokens(n: u64) -> Tokens {
    Tokens {
        prompt: n,
        completion: 0,
    }
}

/// Item 1: Redis restarts (empty) with 4 streams open on a cap of 4 and 800 of 1 000 tokens
/// reserved. New streams are refused until the streams in flight hold their slots again
/// (one renewal period, with a `Retry-After` for it), so there are never more than 4 at once;
/// the settlements record only what fits (the ledger and `/billing/plan` never pass the
/// limit); once everything ends the counters agree with the ledger and are never negative.
/// Before: 8 streams ran at once (the new 4 beside the 4 in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_answers_in_flight_breaks_no_limit() {
    if !faults::available("a_redis_restart_with_answers_in_flight_breaks_no_limit") {
        return;
    }
    let mut redis = PrivateRedis::start_new();
    let rig = Rig::new(&redis).await;
    let (streams, refused) = rig.open_all(CAP as usize + 1).await;
    assert_eq!(streams.len(), CAP as usize);
    assert!(matches!(refused, Some(MeterError::TooManyStreams { .. })));
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        in_flight.push(rig.billing.reserve(rig.scope(), 200).await.expect("fits"));
    }

    redis.stop();
    redis.start();

    // At once, and for as long as the streams in flight run: not one more stream.
    let period = SLOT_TTL / 3;
    let mut refusals = Vec::new();
    let until = Instant::now() + period * 4;
    while Instant::now() < until {
        let (extra, refused) = rig.open_all(1).await;
        assert!(
            extra.is_empty(),
            "a stream over the cap of {CAP} was let in after the restart"
        );
        if let Some(MeterError::TooManyStreams { retry_after, .. }) = refused {
            refusals.push(retry_after);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!refusals.is_empty());
    assert!(
        refusals
            .iter()
            .all(|r| *r >= Duration::from_secs(1) && *r <= Duration::from_secs(1).max(period)),
        "Retry-After within a renewal period: {refusals:?}"
    );

    // New calls reserve against the rebuilt counter (the ledger: 0); the lost reservations
    // then record only what still fits.
    let late = rig.billing.reserve(rig.scope(), 600).await.expect("fits");
    for r in in_flight {
        rig.billing.settle(r, tokens(200)).await;
    }
    rig.billing.settle(late, tokens(600)).await;
    let ledger = rig.ledger_used().await;
    assert!(ledger <= LIMIT, "the ledger holds {ledger} over {LIMIT}");
    let plan = rig.billing.plan_status(rig.tenant).await.expect("plan");
    assert!(
        plan.used <= LIMIT,
        "/billing/plan used {} over {LIMIT}",
        plan.used
    );
    assert_eq!(plan.used, ledger);

    for s in streams {
        rig.billing.close_stream(s).await;
    }
    assert!(rig.all_slots_free().await, "every slot is free again");
    assert!(rig.quota_agrees_with_ledger().await);
}

/// Item 2: Redis stalls (`SIGSTOP`) for 8 s while 4 answers end (their slots and
/// reservations cannot be given back). Within a slot's lease after Redis answers again the
/// organization has all its slots back, and within the quota repair (its first pause, 1 s,
/// doubling) the quota counter agrees with the ledger: no lock-out, no false 402.
/// Before: the stale reservations held 800 tokens for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_while_answers_end_locks_no_one_out() {
    if !faults::available("a_redis_stall_while_answers_end_locks_no_one_out") {
        return;
    }
    let mut redis = PrivateRedis::start_new();
    let rig = Rig::new(&redis).await;
    let (streams, _) = rig.open_all(CAP as usize).await;
    assert_eq!(streams.len(), CAP as usize);
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        in_flight.push(rig.billing.reserve(rig.scope(), 200).await.expect("fits"));
    }

    redis.pause();
    let ending: Vec<_> = streams
        .into_iter()
        .zip(in_flight)
        .map(|(slot, reservation)| {
            let billing = Arc::clone(&rig.billing);
            tokio::spawn(async move {
                billing.settle(reservation, tokens(50)).await;
                billing.close_stream(slot).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(8)).await;
    redis.resume();
    let resumed = Instant::now();
    for e in ending {
        e.await.expect("the answers ended");
    }

    // The bound: a slot's lease (plus a renewal's slack); the quota: the repair's pauses.
    let bound = SLOT_TTL + Duration::from_secs(20);
    loop {
        if rig.all_slots_free().await && rig.quota_agrees_with_ledger().await {
            break;
        }
        assert!(
            resumed.elapsed() < bound,
            "still locked out {:?} after Redis answered again (ledger {})",
            resumed.elapsed(),
            rig.ledger_used().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.ledger_used().await <= LIMIT);
}
