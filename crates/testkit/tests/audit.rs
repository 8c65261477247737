//! The audit log: its contract on every adapter, and the events the routes record.

use kernel::PageRequest;
use kernel::audit::{AuditLog as _, AuditQuery};
use memory::InMemoryAudit;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

#[tokio::test]
async fn in_memory_meets_the_contract() {
    testkit::contract::audit::run(&InMemoryAudit::new()).await;
}

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let (store, _dir) = testkit::sqlite_store().await;
    testkit::contract::audit::run(&store).await;
}

#[tokio::test]
async fn postgres_meets_the_contract() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    testkit::contract::audit::run(&store).await;
}

const SECRET: &str = "correct horse battery";

async fn send(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("user-agent", "quire-test/1.0")
        .header("x-forwarded-for", "203.0.113.77")
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("sent");
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn security_events_are_recorded_without_secrets() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.failures_per_account_ip = 2;
    }))
    .await;
    let (_, reg) = send(
        &app,
        "/api/v1/auth/register",
        None,
        json!({"email": "ann@example.com", "password": SECRET, "name": "Ann"}),
    )
    .await;
    let token = reg["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    send(
        &app,
        "/api/v1/auth/login",
        None,
        json!({"email": "ann@example.com", "password": SECRET}),
    )
    .await;
    for _ in 0..2 {
        send(
            &app,
            "/api/v1/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "wrong secret!"}),
        )
        .await;
    }
    let (s, _) = send(
        &app,
        "/api/v1/auth/login",
        None,
        json!({"email": "ann@example.com", "password": SECRET}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    send(
        &app,
        "/api/v1/orgs",
        Some(&token),
        json!({"name": "Acme", "slug": "acme"}),
    )
    .await;

    let store = app.store().await;
    let page = store
        .query(
            &AuditQuery::default(),
            &PageRequest::first(100).expect("page"),
        )
        .await
        .expect("audit log");
    let mut actions: Vec<&str> = page.items.iter().map(|r| r.event.action).collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "auth.registered",
            "auth.login.succeeded",
            "auth.login.failed",
            "auth.login.failed",
            "auth.throttled",
            "org.created"
        ]
    );
    let user_id = reg["user"]["id"].as_str().expect("id");
    for r in &page.items {
        assert_eq!(r.event.client.ip, "203.0.113.77");
        assert_eq!(r.event.client.user_agent.as_deref(), Some("quire-test/1.0"));
        let text = format!("{:?}", r.event);
        assert!(
            !text.contains(SECRET) && !text.contains("wrong secret"),
            "{text}"
        );
        assert!(!text.contains(&token), "{text}");
        if r.event.action != "auth.throttled" {
            assert_eq!(
                r.event.actor.map(|a| a.to_string()).as_deref(),
                Some(user_id),
                "{text}"
            );
        }
    }
    let created = page
        .items
        .iter()
        .find(|r| r.event.action == "org.created")
        .expect("org.created");
    assert!(created.event.tenant.is_some());
}
