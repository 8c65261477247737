//! Retention (docs/audit.md#retention): an organization's admins set how many days chat
//! history, failed documents and document-access events are kept; the sweep deletes what is
//! older, through each domain's own delete path, and touches no other organization. On SQLite
//! with the in-process cache and on PostgreSQL with Redis.
//!
//! The sweep runs here as the server's sweeper runs it (`quire::retention::Retention`), at a
//! time 40 days ahead, so nothing has to be backdated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}

const NOTES: &str = "Zebra migration.\n\nThe zebras cross the river in spring, followed by \
wildebeest. Rangers count them from the northern ridge every morning.";

/// What one organization holds: a chat session with an answered question, a failed document,
/// a ready one, and access events.
struct Held {
    token: String,
    org: String,
    session: String,
    failed: String,
    ready: String,
}

async fn populate(app: &TestApp, who: &str) -> Held {
    let (token, org) = app.owner(who).await;
    let coll = app.collection(&token, &org, "Notes").await;
    let ready = app
        .ready_document(&token, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (s, up) = app
        .upload(&token, &org, "blank.txt", b"   \n\n\t  ", Some(&coll))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let failed = up["document"]["id"].as_str().expect("id").to_owned();
    assert_eq!(app.settled(&token, &org, &failed).await["status"], "failed");
    let (s, session) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"title": "zebras"})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let session = session["id"].as_str().expect("id").to_owned();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/chat/sessions/{session}/messages")))
        .bearer_auth(&token)
        .header("X-Tenant-ID", &org)
        .json(&json!({"content": "When do the zebras cross?", "stream": true}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let _ = res.text().await.expect("the answer");
    let (s, _) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": "zebras"})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    Held {
        token,
        org,
        session,
        failed,
        ready,
    }
}

async fn messages(app: &TestApp, h: &Held) -> (StatusCode, usize) {
    let (s, page) = app
        .call_in(
            &h.token,
            Method::GET,
            &format!("/api/v1/chat/sessions/{}/messages", h.session),
            None,
            Some(&h.org),
        )
        .await;
    (s, page["items"].as_array().map_or(0, Vec::len))
}

async fn status(app: &TestApp, h: &Held, doc: &str) -> StatusCode {
    app.call_in(
        &h.token,
        Method::GET,
        &format!("/api/v1/documents/{doc}"),
        None,
        Some(&h.org),
    )
    .await
    .0
}

/// The organization's access events (waiting until the trail has written `at_least`).
async fn access_events(app: &TestApp, h: &Held, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, page) = app
            .call(
                &h.token,
                Method::GET,
                &format!(
                    "/api/v1/orgs/{}/audit-log?action=document.searched&limit=100",
                    h.org
                ),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let n = page["items"].as_array().map_or(0, Vec::len);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn patch(app: &TestApp, token: &str, org: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        token,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}"),
        Some(body),
    )
    .await
}

/// The sweep the server runs, over the app's database, files and settings.
async fn retention(app: &TestApp) -> quire::retention::Retention {
    let store = app.store().await;
    let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
    let (ports, _, _) = quire::pipelines(
        &app.settings,
        &store,
        clock,
        Arc::new(kernel::metering::Unmetered),
        Arc::new(kernel::NoEvents),
    )
    .await
    .expect("pipelines");
    let documents = Arc::new(documents::Documents::new(
        ports.for_uploads(),
        quire::document_limits(&app.settings),
        Arc::new(quire::Wake::default()),
    ));
    quire::retention::Retention::over(&store, documents)
}

async fn scenario(app: &TestApp) {
    let a = populate(app, "ann").await;
    let b = populate(app, "bob").await;
    assert!(access_events(app, &a, 1).await >= 1);
    let b_events = access_events(app, &b, 1).await;
    assert!(b_events >= 1);
    assert_eq!(messages(app, &a).await, (StatusCode::OK, 2));

    // Only admins set windows, within 1..=3650 days or null.
    let (mel, _) = app.owner("mel").await;
    let (s, _) = patch(app, &mel, &a.org, json!({"chat_retention_days": 30})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a stranger");
    for bad in [json!(0), json!(3651), json!(-1), json!("30")] {
        let (s, p) = patch(app, &a.token, &a.org, json!({"chat_retention_days": bad})).await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{bad}: {s} {p}"
        );
    }
    let (s, o) = patch(
        app,
        &a.token,
        &a.org,
        json!({
            "chat_retention_days": 30,
            "failed_documents_retention_days": 30,
            "access_trail_retention_days": 30,
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["settings"]["chat_retention_days"], 30, "{o}");
    assert_eq!(o["settings"]["access_trail_retention_days"], 30, "{o}");

    let sweep = retention(app).await;
    // Within the window nothing goes.
    let now = time::OffsetDateTime::now_utc();
    let swept = sweep.sweep(now).await.expect("sweep");
    assert_eq!(
        (swept.messages, swept.documents, swept.access_events),
        (0, 0, 0)
    );
    // 40 days on, ann's old history, failed document and access events go; bob's stay.
    let swept = sweep
        .sweep(now + time::Duration::days(40))
        .await
        .expect("sweep");
    assert_eq!(swept.organizations, 1, "{swept:?}");
    assert_eq!((swept.messages, swept.sessions), (2, 1), "{swept:?}");
    assert_eq!(swept.documents, 1, "{swept:?}");
    assert!(swept.access_events >= 1, "{swept:?}");

    assert_eq!(messages(app, &a).await.0, StatusCode::NOT_FOUND);
    assert_eq!(status(app, &a, &a.failed).await, StatusCode::NOT_FOUND);
    assert_eq!(
        status(app, &a, &a.ready).await,
        StatusCode::OK,
        "ready stays"
    );
    let (s, log) = app
        .call(
            &a.token,
            Method::GET,
            &format!("/api/v1/orgs/{}/audit-log?limit=100", a.org),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = log["items"].as_array().expect("items");
    assert!(
        !items.iter().any(|e| e["action"] == "document.searched"),
        "ann's access events are gone: {log}"
    );
    assert!(
        items.iter().any(|e| e["action"] == "org.created"),
        "security events are not swept: {log}"
    );
    assert!(
        items
            .iter()
            .any(|e| e["action"] == "documents.document.deleted" && e["target"] == json!(a.failed)),
        "the failed document went through the one delete path: {log}"
    );
    // The ready document is still searchable.
    let (s, found) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": "zebras"})),
            Some(&a.org),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        found["results"][0]["document_id"],
        json!(a.ready),
        "{found}"
    );

    // Bob set nothing: everything of his is where it was.
    assert_eq!(messages(app, &b).await, (StatusCode::OK, 2));
    assert_eq!(status(app, &b, &b.failed).await, StatusCode::OK);
    assert!(access_events(app, &b, b_events).await >= b_events);

    // Back to forever: the next sweep passes ann by.
    let (s, o) = patch(
        app,
        &a.token,
        &a.org,
        json!({
            "chat_retention_days": null,
            "failed_documents_retention_days": null,
            "access_trail_retention_days": null,
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["settings"]["chat_retention_days"], Value::Null, "{o}");
    let swept = sweep
        .sweep(now + time::Duration::days(400))
        .await
        .expect("sweep");
    assert_eq!(swept.organizations, 0, "{swept:?}");
}
