//! The [`AuditLog`] contract.

use std::time::Duration;

use kernel::audit::{AuditEvent, AuditLog, AuditQuery};
use kernel::{ClientInfo, Clock as _, PageRequest, SystemClock, TenantId, UserId};

/// Runs every case against an empty `log`.
pub async fn run(log: &dyn AuditLog) {
    let (ann, bob) = (UserId::new(), UserId::new());
    let acme = TenantId::new();
    let start = SystemClock.now();
    let client = ClientInfo::new("203.0.113.9", Some("curl/8\u{7}"));
    assert_eq!(
        client.user_agent.as_deref(),
        Some("curl/8"),
        "control characters are dropped"
    );
    let events = [
        ("auth.login.succeeded", Some(ann), None),
        ("auth.login.failed", Some(bob), None),
        ("org.created", Some(ann), Some(acme)),
        ("org.member.role_changed", Some(ann), Some(acme)),
        ("auth.login.succeeded", Some(bob), None),
    ];
    for (i, (action, actor, tenant)) in events.iter().enumerate() {
        log.record(AuditEvent {
            at: start + Duration::from_secs(u64::try_from(i).unwrap_or(0)),
            action,
            actor: *actor,
            tenant: *tenant,
            target: Some(format!("event {i}")),
            client: client.clone(),
            access: None,
        })
        .await
        .expect("record");
    }

    // Newest first, in pages.
    let all = AuditQuery::default();
    let first = log
        .query(&all, &PageRequest::first(2).expect("page"))
        .await
        .expect("query");
    let targets: Vec<_> = first
        .items
        .iter()
        .map(|r| r.event.target.clone().unwrap_or_default())
        .collect();
    assert_eq!(targets, ["event 4", "event 3"]);
    let rest = log
        .query(
            &all,
            &PageRequest::first(10)
                .expect("page")
                .next(first.next_cursor.expect("more")),
        )
        .await
        .expect("query");
    assert_eq!(rest.items.len(), 3);
    assert!(rest.next_cursor.is_none());
    let stored = &rest.items[2].event;
    assert_eq!(
        (stored.action, stored.actor, stored.client.ip.as_str()),
        ("auth.login.succeeded", Some(ann), "203.0.113.9")
    );
    assert_eq!(stored.client.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(stored.at, start);

    // Filters.
    let count = |q: AuditQuery| async move {
        log.query(&q, &PageRequest::first(100).expect("page"))
            .await
            .expect("query")
            .items
            .len()
    };
    assert_eq!(
        count(AuditQuery {
            actor: Some(ann),
            ..AuditQuery::default()
        })
        .await,
        3
    );
    assert_eq!(
        count(AuditQuery {
            tenant: Some(acme),
            ..AuditQuery::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AuditQuery {
            action: Some("auth.login.succeeded".into()),
            ..AuditQuery::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AuditQuery {
            from: Some(start + Duration::from_secs(1)),
            until: Some(start + Duration::from_secs(3)),
            ..AuditQuery::default()
        })
        .await,
        2
    );

    // Erasing a tenant deletes its events but its tombstones, and nobody else's.
    log.record(AuditEvent {
        at: start + Duration::from_secs(9),
        action: kernel::audit::ERASED,
        actor: Some(ann),
        tenant: Some(acme),
        target: Some("blobs=0".into()),
        client: client.clone(),
        access: None,
    })
    .await
    .expect("record");
    assert_eq!(log.erase_tenant(acme).await.expect("erase"), 2);
    let of_acme = AuditQuery {
        tenant: Some(acme),
        ..AuditQuery::default()
    };
    let left = log
        .query(&of_acme, &PageRequest::first(10).expect("page"))
        .await
        .expect("query");
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0].event.action, kernel::audit::ERASED);
    assert_eq!(count(AuditQuery::default()).await, 4, "the others' stay");
    assert_eq!(log.erase_tenant(acme).await.expect("again"), 0);
}
