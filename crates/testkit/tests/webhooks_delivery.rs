//! `Webhooks::deliver_next` and the fan-out over the in-memory store, a scripted sender and a
//! manual clock: what each answer of an endpoint leads to (success, retry with backoff, give
//! up after the last attempt, `410 Gone`, a refused destination), disabled endpoints, and who
//! receives an event.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Event, EventKind, ManualClock, Principal, Role, TenantContext, TenantId, UserId};
use webhooks::{
    DeliveryOutcome, DeliveryPolicy, EndpointChange, NewEndpoint, NoSignal, Outgoing, Refused,
    Sender, Sent, WebhookError, WebhookPorts, Webhooks,
};

/// Answers from a script (then 204), and keeps what it was asked to send.
#[derive(Debug, Default)]
struct Scripted {
    answers: Mutex<VecDeque<Sent>>,
    sent: Mutex<Vec<Outgoing>>,
}

#[async_trait]
impl Sender for Scripted {
    async fn check(&self, url: &str) -> Result<(), Refused> {
        if url.contains("internal") {
            Err(Refused("a private address".to_owned()))
        } else {
            Ok(())
        }
    }

    async fn send(&self, request: Outgoing) -> Sent {
        self.sent.lock().expect("lock").push(request);
        self.answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Sent::Status(204))
    }
}

struct World {
    hooks: Webhooks,
    sender: Arc<Scripted>,
    clock: Arc<ManualClock>,
    admin: TenantContext,
}

fn world() -> World {
    let sender = Arc::new(Scripted::default());
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let hooks = Webhooks::new(
        WebhookPorts {
            store: Arc::new(memory::InMemoryWebhooks::new()),
            sender: sender.clone(),
            clock: clock.clone(),
            signal: Arc::new(NoSignal),
        },
        DeliveryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(15),
            lease: Duration::from_secs(60),
            allow_http: false,
        },
    );
    World {
        hooks,
        sender,
        clock,
        admin: TenantContext::new(TenantId::new(), Principal::User(UserId::new()), Role::Admin),
    }
}

fn new_endpoint(events: &[&str]) -> NewEndpoint {
    NewEndpoint {
        url: "https://hooks.example.com/q".to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: None,
    }
}

fn event(tenant: TenantId, kind: EventKind) -> Event {
    Event {
        tenant,
        kind,
        data: serde_json::json!({"document_id": "d"}),
    }
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_given_up() {
    let w = world();
    let (hook, _) = w
        .hooks
        .create(&w.admin, new_endpoint(&["document.ready"]))
        .await
        .expect("create");
    assert_eq!(
        w.hooks
            .fan_out(&event(w.admin.tenant_id(), EventKind::DocumentReady))
            .await
            .expect("fan out"),
        1
    );
    w.sender.answers.lock().expect("lock").extend([
        Sent::Status(500),
        Sent::Failed("no answer within 15 s".to_owned()),
        Sent::Status(503),
    ]);
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        Some(DeliveryOutcome::Retrying)
    );
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        None,
        "not due yet"
    );
    w.clock.advance(Duration::from_secs(8));
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        None,
        "the first pause is 9 to 10 s"
    );
    w.clock.advance(Duration::from_secs(2));
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        Some(DeliveryOutcome::Retrying)
    );
    w.clock.advance(Duration::from_secs(15));
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        Some(DeliveryOutcome::Failed),
        "the third attempt was the last"
    );
    w.clock.advance(Duration::from_secs(3_600));
    assert_eq!(w.hooks.deliver_next().await.expect("run"), None);
    let sent = w.sender.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.id == sent[0].id), "one webhook-id");
    assert_ne!(
        sent[0].timestamp, sent[1].timestamp,
        "a fresh timestamp per attempt"
    );
    assert_ne!(sent[0].signature, sent[1].signature);
    let log = w
        .hooks
        .attempts(
            &w.admin,
            hook.id,
            &kernel::PageRequest::first(10).expect("page"),
        )
        .await
        .expect("log");
    let codes: Vec<_> = log
        .items
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(codes, vec![(3, Some(503)), (2, None), (1, Some(500))]);
    assert_eq!(log.items[1].error.as_deref(), Some("no answer within 15 s"));
}

#[tokio::test]
async fn gone_and_refused_destinations_give_up_at_once() {
    for (answer, error) in [
        (Sent::Status(410), "the endpoint answered 410 Gone"),
        (
            Sent::Refused("resolves to 10.0.0.1".to_owned()),
            "destination refused: resolves to 10.0.0.1",
        ),
    ] {
        let w = world();
        let (hook, _) = w
            .hooks
            .create(&w.admin, new_endpoint(&["document.failed"]))
            .await
            .expect("create");
        w.hooks
            .fan_out(&event(w.admin.tenant_id(), EventKind::DocumentFailed))
            .await
            .expect("fan out");
        w.sender.answers.lock().expect("lock").push_back(answer);
        assert_eq!(
            w.hooks.deliver_next().await.expect("run"),
            Some(DeliveryOutcome::Failed)
        );
        w.clock.advance(Duration::from_secs(3_600));
        assert_eq!(w.hooks.deliver_next().await.expect("run"), None);
        let log = w
            .hooks
            .attempts(
                &w.admin,
                hook.id,
                &kernel::PageRequest::first(10).expect("page"),
            )
            .await
            .expect("log");
        assert_eq!(log.items.len(), 1);
        assert_eq!(log.items[0].error.as_deref(), Some(error));
    }
}

#[tokio::test]
async fn events_reach_only_enabled_subscribers_of_their_tenant() {
    let w = world();
    let (ready, _) = w
        .hooks
        .create(&w.admin, new_endpoint(&["document.ready"]))
        .await
        .expect("create");
    let (_answers, _) = w
        .hooks
        .create(&w.admin, new_endpoint(&["answer.completed"]))
        .await
        .expect("create");
    let other = TenantContext::new(TenantId::new(), Principal::User(UserId::new()), Role::Owner);
    w.hooks
        .create(&other, new_endpoint(&["document.ready"]))
        .await
        .expect("create");
    let ev = event(w.admin.tenant_id(), EventKind::DocumentReady);
    assert_eq!(w.hooks.fan_out(&ev).await.expect("fan out"), 1);
    // Queued, then disabled before its attempt: dropped, never sent.
    w.hooks
        .update(
            &w.admin,
            ready.id,
            EndpointChange {
                enabled: Some(false),
                ..EndpointChange::default()
            },
        )
        .await
        .expect("disable");
    assert_eq!(
        w.hooks.deliver_next().await.expect("run"),
        Some(DeliveryOutcome::Dropped)
    );
    assert!(w.sender.sent.lock().expect("lock").is_empty());
    assert_eq!(w.hooks.fan_out(&ev).await.expect("fan out"), 0, "disabled");
}

#[tokio::test]
async fn only_admins_manage_and_destinations_are_checked() {
    let w = world();
    for role in [Role::Viewer, Role::Member] {
        let ctx = TenantContext::new(w.admin.tenant_id(), Principal::User(UserId::new()), role);
        assert!(matches!(
            w.hooks
                .create(&ctx, new_endpoint(&["document.ready"]))
                .await,
            Err(WebhookError::Forbidden)
        ));
        assert!(matches!(
            w.hooks.list(&ctx).await,
            Err(WebhookError::Forbidden)
        ));
    }
    let refused = NewEndpoint {
        url: "https://internal.example.com/".to_owned(),
        ..new_endpoint(&["document.ready"])
    };
    assert!(matches!(
        w.hooks.create(&w.admin, refused).await,
        Err(WebhookError::Invalid(_))
    ));
    let (hook, secret) = w
        .hooks
        .create(&w.admin, new_endpoint(&["document.ready"]))
        .await
        .expect("create");
    assert!(secret.starts_with("whsec_"));
    let moved = w
        .hooks
        .update(
            &w.admin,
            hook.id,
            EndpointChange {
                url: Some("https://internal.example.com/".to_owned()),
                ..EndpointChange::default()
            },
        )
        .await;
    assert!(
        matches!(moved, Err(WebhookError::Invalid(_))),
        "checked on change too"
    );
    for _ in 0..19 {
        w.hooks
            .create(&w.admin, new_endpoint(&["document.ready"]))
            .await
            .expect("create");
    }
    assert!(matches!(
        w.hooks
            .create(&w.admin, new_endpoint(&["document.ready"]))
            .await,
        Err(WebhookError::TooMany(20))
    ));
}
