//! The [`WebhookStore`] contract: endpoints round trip (their secret included) and are scoped
//! to their organization; `subscribers` are the enabled endpoints subscribed to the event; a
//! due delivery is claimed by one claimer only, counted as an attempt, and settled only under
//! its lease; a retry is due at its time and an ended lease is taken over; attempts are logged
//! newest first, paged; deleting an endpoint takes its deliveries and attempts, and deleting
//! an organization takes its endpoints.
//!
//! Each case takes [`WebhookPorts`] over one fresh store; times are explicit values.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kernel::{EventKind, PageRequest, TenantId};
use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
use time::OffsetDateTime;
use webhooks::{
    Attempt, AttemptId, Delivery, DeliveryStatus, Endpoint, Next, Secret, WebhookId, WebhookStore,
};

use super::CascadingOrganizations;
use super::documents::at_ms;

/// The ports of one store, as the cases need them.
#[derive(Debug, Clone)]
pub struct WebhookPorts {
    /// Organizations (the SQL rows reference them).
    pub orgs: Arc<dyn OrganizationRepository>,
    /// The store under test.
    pub store: Arc<dyn WebhookStore>,
}

impl WebhookPorts {
    /// The SQL store.
    #[must_use]
    pub fn sql(store: store_sql::SqlStore) -> Self {
        Self {
            orgs: Arc::new(store.clone()),
            store: Arc::new(store),
        }
    }

    /// The in-memory adapter, beside in-memory organizations whose delete cascades into it.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let store = Arc::new(memory::InMemoryWebhooks::new());
        Self {
            orgs: Arc::new(CascadingOrganizations::new(
                memory::InMemoryOrganizations::new(clock),
                Box::new({
                    let store = store.clone();
                    move |id| {
                        store.remove_tenant(id);
                        Ok(())
                    }
                }),
            )),
            store,
        }
    }
}

async fn organization(p: &WebhookPorts, slug: &str) -> TenantId {
    p.orgs
        .create(NewOrganization {
            name: OrgName::parse(slug).expect("name"),
            slug: OrgSlug::parse(slug).expect("slug"),
        })
        .await
        .expect("organization")
        .id
}

/// Organizations `hooks-a` and `hooks-b`.
async fn two(p: &WebhookPorts) -> (TenantId, TenantId) {
    (
        organization(p, "hooks-a").await,
        organization(p, "hooks-b").await,
    )
}

/// A stored endpoint of `tenant` for `events`.
async fn endpoint(
    p: &WebhookPorts,
    tenant: TenantId,
    events: &[EventKind],
    enabled: bool,
) -> Endpoint {
    let e = Endpoint {
        id: WebhookId::new(),
        tenant_id: tenant,
        url: "https://hooks.example.com/quire".to_owned(),
        events: events.to_vec(),
        enabled,
        secret: Secret::generate().expect("secret"),
        created_at: at_ms(1),
        updated_at: at_ms(1),
    };
    p.store.create(&e).await.expect("create");
    e
}

/// A queued delivery of `e`, due at `at`.
async fn queued(p: &WebhookPorts, e: &Endpoint, at: OffsetDateTime) -> Delivery {
    let d = Delivery::queued(
        e,
        format!("msg_{}", uuid::Uuid::now_v7().simple()),
        EventKind::DocumentReady,
        r#"{"type":"document.ready","timestamp":"2026-11-22T10:00:00Z","data":{}}"#.to_owned(),
        at,
    );
    p.store.enqueue(&d).await.expect("enqueue");
    d
}

fn attempt_of(d: &Delivery, n: u32, code: Option<u16>, at: OffsetDateTime) -> Attempt {
    Attempt {
        id: AttemptId::new(),
        tenant_id: d.tenant_id,
        webhook_id: d.webhook_id,
        delivery_id: d.id,
        kind: d.kind,
        attempt: n,
        status_code: code,
        error: code.filter(|c| *c >= 300).map(|c| format!("answered {c}")),
        created_at: at,
    }
}

const LEASE: Duration = Duration::from_secs(60);

/// Create, find, list, update; the secret round trips; list is oldest first.
pub async fn endpoints_round_trip(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let first = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let second = endpoint(
        p,
        a,
        &[EventKind::AnswerCompleted, EventKind::UsageThreshold],
        false,
    )
    .await;
    assert_eq!(
        p.store.find(a, first.id).await.expect("find"),
        Some(first.clone())
    );
    assert_eq!(
        p.store.list(a).await.expect("list"),
        vec![first.clone(), second.clone()]
    );
    let changed = Endpoint {
        url: "https://other.example.com/x?y=1".to_owned(),
        events: vec![EventKind::WorkflowCompleted],
        enabled: false,
        updated_at: at_ms(5),
        ..first.clone()
    };
    assert!(p.store.update(&changed).await.expect("update"));
    let read = p
        .store
        .find(a, first.id)
        .await
        .expect("find")
        .expect("some");
    assert_eq!(read, changed);
    assert_eq!(
        read.secret, first.secret,
        "the secret is not changed by an update"
    );
    let ghost = Endpoint {
        id: WebhookId::new(),
        ..changed
    };
    assert!(!p.store.update(&ghost).await.expect("update"));
}

/// Another organization's endpoint, delivery and attempt are not found, not changed, not
/// deleted, not listed.
pub async fn tenants_never_see_each_others_webhooks(p: &WebhookPorts) {
    let (a, b) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let d = queued(p, &e, at_ms(10)).await;
    let claim = p
        .store
        .claim(at_ms(10), LEASE)
        .await
        .expect("claim")
        .expect("due");
    let attempt = attempt_of(&d, 1, Some(500), at_ms(11));
    assert!(
        p.store
            .settle(&claim, Some(&attempt), Next::GiveUp, at_ms(11))
            .await
            .expect("settle")
    );
    assert_eq!(p.store.find(b, e.id).await.expect("find"), None);
    assert!(p.store.list(b).await.expect("list").is_empty());
    assert!(
        p.store
            .subscribers(b, EventKind::DocumentReady)
            .await
            .expect("subscribers")
            .is_empty()
    );
    assert_eq!(p.store.find_delivery(b, d.id).await.expect("find"), None);
    assert_eq!(
        p.store.find_attempt(b, attempt.id).await.expect("find"),
        None
    );
    let page = PageRequest::first(10).expect("page");
    assert!(
        p.store
            .attempts(b, e.id, &page)
            .await
            .expect("attempts")
            .items
            .is_empty()
    );
    let hijack = Endpoint {
        tenant_id: b,
        enabled: false,
        ..e.clone()
    };
    assert!(!p.store.update(&hijack).await.expect("update"));
    assert!(!p.store.delete(b, e.id).await.expect("delete"));
    assert_eq!(p.store.find(a, e.id).await.expect("find"), Some(e));
    assert_eq!(
        p.store.find_attempt(a, attempt.id).await.expect("find"),
        Some(attempt)
    );
}

/// Only enabled endpoints subscribed to the event.
pub async fn subscribers_are_enabled_and_subscribed(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let both = endpoint(
        p,
        a,
        &[EventKind::DocumentReady, EventKind::DocumentFailed],
        true,
    )
    .await;
    let _off = endpoint(p, a, &[EventKind::DocumentReady], false).await;
    let other = endpoint(p, a, &[EventKind::AnswerCompleted], true).await;
    let ids = |v: Vec<Endpoint>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(p
            .store
            .subscribers(a, EventKind::DocumentReady)
            .await
            .expect("s")),
        vec![both.id]
    );
    assert_eq!(
        ids(p
            .store
            .subscribers(a, EventKind::AnswerCompleted)
            .await
            .expect("s")),
        vec![other.id]
    );
    assert!(
        p.store
            .subscribers(a, EventKind::UsageThreshold)
            .await
            .expect("s")
            .is_empty()
    );
}

/// A delivery is due at `run_at`, claimed once, counted, settled only under its lease; a
/// retry is due at its time; an ended lease is taken over.
pub async fn claims_lease_once_and_settle_needs_the_lease(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let d = queued(p, &e, at_ms(1_000)).await;
    assert!(
        p.store
            .claim(at_ms(999), LEASE)
            .await
            .expect("claim")
            .is_none(),
        "not due before run_at"
    );
    let first = p
        .store
        .claim(at_ms(1_000), LEASE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(first.delivery.id, d.id);
    assert_eq!(first.delivery.attempts, 1);
    assert_eq!(first.delivery.status, DeliveryStatus::Running);
    assert_eq!(first.delivery.payload, d.payload);
    assert!(
        p.store
            .claim(at_ms(1_001), LEASE)
            .await
            .expect("claim")
            .is_none(),
        "a leased delivery is not claimed again"
    );
    let forged = webhooks::Claim {
        lease: uuid::Uuid::now_v7(),
        ..first.clone()
    };
    assert!(
        !p.store
            .settle(&forged, None, Next::Done, at_ms(1_002))
            .await
            .expect("settle"),
        "a wrong lease settles nothing"
    );
    let retry_at = at_ms(5_000);
    assert!(
        p.store
            .settle(
                &first,
                Some(&attempt_of(&d, 1, Some(500), at_ms(1_002))),
                Next::RetryAt(retry_at),
                at_ms(1_002)
            )
            .await
            .expect("settle")
    );
    assert!(
        !p.store
            .settle(&first, None, Next::Done, at_ms(1_003))
            .await
            .expect("settle"),
        "a settled claim settles nothing more"
    );
    let stored = p
        .store
        .find_delivery(a, d.id)
        .await
        .expect("find")
        .expect("some");
    assert_eq!(stored.status, DeliveryStatus::Queued);
    assert_eq!(stored.run_at, retry_at);
    assert!(
        p.store
            .claim(at_ms(4_999), LEASE)
            .await
            .expect("claim")
            .is_none()
    );
    let second = p
        .store
        .claim(retry_at, LEASE)
        .await
        .expect("claim")
        .expect("due again");
    assert_eq!(second.delivery.attempts, 2);
    // Its worker dies: after the lease another claimer takes it over.
    let after_lease = retry_at + LEASE + Duration::from_millis(1);
    assert!(
        p.store
            .claim(retry_at + LEASE, LEASE)
            .await
            .expect("claim")
            .is_none()
    );
    let third = p
        .store
        .claim(after_lease, LEASE)
        .await
        .expect("claim")
        .expect("taken over");
    assert_eq!(third.delivery.attempts, 3);
    assert!(
        !p.store
            .settle(&second, None, Next::Done, after_lease)
            .await
            .expect("settle"),
        "the dead worker's lease is gone"
    );
    assert!(
        p.store
            .settle(&third, None, Next::Done, after_lease)
            .await
            .expect("settle")
    );
    let done = p
        .store
        .find_delivery(a, d.id)
        .await
        .expect("find")
        .expect("some");
    assert_eq!(done.status, DeliveryStatus::Succeeded);
    assert!(
        p.store
            .claim(at_ms(1_000_000), LEASE)
            .await
            .expect("claim")
            .is_none()
    );
}

/// Give up and drop are final; the oldest due delivery goes first.
pub async fn final_states_and_order(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let later = queued(p, &e, at_ms(20)).await;
    let sooner = queued(p, &e, at_ms(10)).await;
    let c1 = p
        .store
        .claim(at_ms(30), LEASE)
        .await
        .expect("c")
        .expect("due");
    assert_eq!(c1.delivery.id, sooner.id, "oldest run_at first");
    assert!(
        p.store
            .settle(&c1, None, Next::GiveUp, at_ms(31))
            .await
            .expect("s")
    );
    let c2 = p
        .store
        .claim(at_ms(30), LEASE)
        .await
        .expect("c")
        .expect("due");
    assert_eq!(c2.delivery.id, later.id);
    assert!(
        p.store
            .settle(&c2, None, Next::Drop, at_ms(31))
            .await
            .expect("s")
    );
    assert!(
        p.store
            .claim(at_ms(10_000_000), LEASE)
            .await
            .expect("c")
            .is_none()
    );
    let status = |d: Delivery| d.status;
    assert_eq!(
        p.store
            .find_delivery(a, sooner.id)
            .await
            .expect("f")
            .map(status),
        Some(DeliveryStatus::Failed)
    );
    assert_eq!(
        p.store
            .find_delivery(a, later.id)
            .await
            .expect("f")
            .map(status),
        Some(DeliveryStatus::Dropped)
    );
}

/// Attempts are listed newest first, paged, only the endpoint's own.
pub async fn attempts_are_logged_newest_first(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let other = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let mut logged = Vec::new();
    for n in 0..5u64 {
        let d = queued(p, &e, at_ms(n)).await;
        let c = p
            .store
            .claim(at_ms(n), LEASE)
            .await
            .expect("c")
            .expect("due");
        let attempt = attempt_of(&d, 1, Some(204), at_ms(n));
        assert!(
            p.store
                .settle(&c, Some(&attempt), Next::Done, at_ms(n))
                .await
                .expect("s")
        );
        logged.push(attempt);
    }
    let od = queued(p, &other, at_ms(100)).await;
    let c = p
        .store
        .claim(at_ms(100), LEASE)
        .await
        .expect("c")
        .expect("due");
    assert!(
        p.store
            .settle(
                &c,
                Some(&attempt_of(&od, 1, None, at_ms(100))),
                Next::GiveUp,
                at_ms(100)
            )
            .await
            .expect("s")
    );
    logged.reverse();
    let first = p
        .store
        .attempts(a, e.id, &PageRequest::first(3).expect("page"))
        .await
        .expect("attempts");
    assert_eq!(first.items, logged[..3].to_vec());
    let cursor = first.next_cursor.expect("more");
    let rest = p
        .store
        .attempts(a, e.id, &PageRequest::first(3).expect("page").next(cursor))
        .await
        .expect("attempts");
    assert_eq!(rest.items, logged[3..].to_vec());
    assert!(rest.next_cursor.is_none());
}

/// Concurrent claimers never take the same delivery.
pub async fn concurrent_claims_are_exclusive(p: &WebhookPorts) {
    let (a, _) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let mut queued_ids = HashSet::new();
    for n in 0..12 {
        queued_ids.insert(queued(p, &e, at_ms(n)).await.id);
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = p.store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = store.claim(at_ms(1_000), LEASE).await.expect("claim") {
                    mine.push(c.delivery.id);
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.expect("task") {
            assert!(seen.insert(id), "claimed twice");
        }
    }
    assert_eq!(seen, queued_ids);
}

/// Deleting an endpoint takes its deliveries and attempts; deleting an organization takes its
/// endpoints.
pub async fn deletes_cascade(p: &WebhookPorts) {
    let (a, b) = two(p).await;
    let e = endpoint(p, a, &[EventKind::DocumentReady], true).await;
    let d = queued(p, &e, at_ms(1)).await;
    let c = p
        .store
        .claim(at_ms(1), LEASE)
        .await
        .expect("c")
        .expect("due");
    let attempt = attempt_of(&d, 1, Some(500), at_ms(2));
    assert!(
        p.store
            .settle(&c, Some(&attempt), Next::RetryAt(at_ms(3)), at_ms(2))
            .await
            .expect("s")
    );
    assert!(p.store.delete(a, e.id).await.expect("delete"));
    assert!(!p.store.delete(a, e.id).await.expect("delete"), "once");
    assert_eq!(p.store.find_delivery(a, d.id).await.expect("f"), None);
    assert_eq!(p.store.find_attempt(a, attempt.id).await.expect("f"), None);
    assert!(
        p.store
            .claim(at_ms(1_000), LEASE)
            .await
            .expect("c")
            .is_none(),
        "nothing left to send for a deleted endpoint"
    );
    let kept = endpoint(p, b, &[EventKind::DocumentReady], true).await;
    queued(p, &kept, at_ms(1)).await;
    p.orgs.delete(b).await.expect("delete org");
    assert!(p.store.list(b).await.expect("list").is_empty());
    assert!(
        p.store
            .claim(at_ms(1_000), LEASE)
            .await
            .expect("c")
            .is_none()
    );
}
