//! The document-access trail (docs/audit.md): who read a document, searched, or received which
//! documents in an answer's citations, by user or API key, with the request id; read by the
//! organization's admins (`GET /orgs/{org}/audit-log`) and platform admins; ids only, the
//! question text only when the organization opted in. Each scenario on SQLite with the
//! in-process cache and on PostgreSQL with Redis.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions};

testkit::on_both_backends!(
    trail_records_ids_and_only_admins_read_it,
    opt_in_keeps_the_question,
    a_batch_racing_an_erasure_leaves_nothing
);

/// A window short enough to wait out in a test.
fn two_second_window(s: &mut quire::Settings) {
    s.orgs.trail_read_window_secs = 2;
}

#[tokio::test]
async fn polls_are_coalesced_on_sqlite() {
    polls_are_coalesced(
        &testkit::spawn_app_with(TestOptions::default().tweak(two_second_window)).await,
    )
    .await;
}

#[tokio::test]
async fn polls_are_coalesced_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    polls_are_coalesced(
        &testkit::spawn_app_with(TestOptions::production().tweak(two_second_window)).await,
    )
    .await;
}

/// `document.read` events of `doc` by `actor` in the org's trail, once everything recorded
/// before a search of `marker` by `token` has been written (one writer, in order).
async fn reads_by(
    app: &TestApp,
    token: &str,
    org: &str,
    doc: &str,
    actor: &str,
    marker: &str,
) -> usize {
    search(app, token, org, marker).await;
    trail_until(app, token, org, "&action=document.searched", |i| {
        i.len() >= marker.len()
    })
    .await;
    let (s, page) = trail(
        app,
        token,
        org,
        &format!("&action=document.read&document={doc}&actor={actor}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().map_or(0, Vec::len)
}

/// N polls of a document by one user within the window: one event; another user's polls:
/// their own; after the window: a second event.
async fn polls_are_coalesced(app: &TestApp) {
    let (ann, org) = app.owner("ann").await;
    let ann_id = me(app, &ann).await;
    let coll = app.collection(&ann, &org, "Field notes").await;
    let doc = app
        .ready_document(&ann, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (mel, mel_id) = app.join(&ann, &org, "mel", "member").await;
    let poll = |token: String| {
        let doc = doc.clone();
        let org = org.clone();
        async move {
            let (s, b) = app
                .call_in(
                    &token,
                    Method::GET,
                    &format!("/api/v1/documents/{doc}"),
                    None,
                    Some(&org),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    let started = Instant::now();
    for _ in 0..5 {
        poll(ann.clone()).await;
    }
    for _ in 0..2 {
        poll(mel.clone()).await;
    }
    // The window must not have passed during the polls, or the test proves nothing.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the polls took {:?}",
        started.elapsed()
    );
    // Markers of growing length: each search waits for one more searched event.
    assert_eq!(reads_by(app, &ann, &org, &doc, &ann_id, "z").await, 1);
    assert_eq!(reads_by(app, &ann, &org, &doc, &mel_id, "ze").await, 1);
    // After the window the owner's next poll is a second event.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut marker = String::from("zeb");
    loop {
        poll(ann.clone()).await;
        let n = reads_by(app, &ann, &org, &doc, &ann_id, &marker).await;
        if n == 2 {
            break;
        }
        assert_eq!(n, 1, "more reads than polls outside the window");
        assert!(Instant::now() < deadline, "the window never ended");
        marker.push('z');
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The member's reads were not touched by the owner's.
    assert_eq!(
        reads_by(app, &ann, &org, &doc, &mel_id, &format!("{marker}z")).await,
        1
    );
}

/// A second connection to the app's database, as its login user (no row-level security on
/// PostgreSQL: a superuser), for what the test does behind the application's back.
async fn raw_connection(app: &TestApp) -> sea_orm::DatabaseConnection {
    use secrecy::ExposeSecret as _;
    let mut opts =
        sea_orm::ConnectOptions::new(app.settings.database_url().expose_secret().to_owned());
    // Two: one holds the erasure's transaction, the other watches the locks.
    opts.max_connections(2).sqlx_logging(false);
    if let Some(schema) = &app.settings.database.schema {
        opts.set_schema_search_path(schema.clone());
    }
    sea_orm::Database::connect(opts)
        .await
        .expect("a second connection")
}

/// An access batch of an organization that is being erased must not land after the erasure
/// has deleted the organization's events. The erasure is played by hand, in one open
/// transaction: the organization's row and its audit events deleted, not yet committed. A
/// batch of that organization written meanwhile must wait for it (PostgreSQL: the batch
/// locks the organization's row; SQLite: the one write lock) and then find no organization.
/// Checked to fail on PostgreSQL without the lock: the batch reads the row the open
/// transaction has not yet deleted, writes its events and commits, and they outlive the
/// erasure.
async fn a_batch_racing_an_erasure_leaves_nothing(app: &TestApp) {
    use kernel::audit::AuditLog as _;
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let (ann, org) = app.owner("ann").await;
    let ann_id = me(app, &ann).await;
    let tenant = kernel::TenantId::parse(&org).expect("an org id");
    let user = kernel::UserId::parse(&ann_id).expect("a user id");
    let store = app.store().await;
    let raw = raw_connection(app).await;
    let backend = raw.get_database_backend();
    let erasure = raw.begin().await.expect("an erasure's transaction");
    let pid: Option<i32> = if backend == sea_orm::DbBackend::Postgres {
        let row = erasure
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT pg_backend_pid() AS pid",
            ))
            .await
            .expect("the erasure's backend")
            .expect("a row");
        Some(row.try_get("", "pid").expect("a pid"))
    } else {
        None
    };
    for sql in [
        "DELETE FROM organizations WHERE id = $1",
        "DELETE FROM audit_log WHERE tenant_id = $1",
    ] {
        erasure
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [tenant.as_uuid().into()],
            ))
            .await
            .expect("erasing by hand");
    }
    let event = kernel::AuditEvent {
        at: time::OffsetDateTime::now_utc(),
        action: kernel::audit::DOCUMENT_READ,
        actor: Some(user),
        tenant: Some(tenant),
        target: None,
        client: kernel::audit::ClientInfo::default(),
        access: Some(kernel::audit::DocumentAccess {
            documents: vec![uuid::Uuid::now_v7()],
            ..Default::default()
        }),
    };
    let batch = tokio::spawn({
        let store = store.clone();
        async move { store.record_access(vec![event]).await }
    });
    if let Some(pid) = pid {
        // Until the batch has finished, or waits for the erasure's transaction.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting = raw
                .query_one_raw(sea_orm::Statement::from_sql_and_values(
                    backend,
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    [pid.into()],
                ))
                .await
                .expect("the lock waits")
                .expect("a row");
            let n: i64 = waiting.try_get("", "n").expect("a count");
            if n > 0 || batch.is_finished() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the batch neither ended nor waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    erasure.commit().await.expect("the erasure commits");
    batch
        .await
        .expect("the batch's task")
        .expect("the batch is written or left out");
    let left = store
        .query(
            &kernel::audit::AuditQuery {
                tenant: Some(tenant),
                ..Default::default()
            },
            &kernel::PageRequest::first(100).expect("page"),
        )
        .await
        .expect("the log");
    assert!(
        left.items.is_empty(),
        "the erased organization is back: {:?}",
        left.items
    );
}

const NOTES: &str = "Zebra migration.\n\nThe zebras cross the river in spring, followed by \
wildebeest. Rangers count them from the northern ridge every morning.";
const QUERY: &str = "where do zebras cross the river";
const QUESTION: &str = "When do the zebras cross the river?";

async fn me(app: &TestApp, token: &str) -> String {
    let (_, me) = app.call(token, Method::GET, "/api/v1/auth/me", None).await;
    me["user"]["id"].as_str().expect("user id").to_owned()
}

async fn search(app: &TestApp, token: &str, org: &str, query: &str) -> Value {
    let (s, found) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": query, "mode": "hybrid"})),
            Some(org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    found
}

async fn trail(app: &TestApp, token: &str, org: &str, query: &str) -> (StatusCode, Value) {
    app.call(
        token,
        Method::GET,
        &format!("/api/v1/orgs/{org}/audit-log?limit=100{query}"),
        None,
    )
    .await
}

/// The org's log filtered by `query`, polled until `want` says it holds what the test waits
/// for (the trail is written off the request path, within moments).
async fn trail_until(
    app: &TestApp,
    token: &str,
    org: &str,
    query: &str,
    want: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, page) = trail(app, token, org, query).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if want(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "the trail never showed what was expected for {query}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(items: &[Value], doc: &str) -> bool {
    items.iter().any(|e| {
        e["documents"]
            .as_array()
            .is_some_and(|d| d.contains(&json!(doc)))
    })
}

/// Every stored audit row, as text, for scanning.
async fn stored_rows(app: &TestApp) -> String {
    use kernel::audit::AuditLog as _;
    let store = app.store().await;
    let mut all = String::new();
    let mut page = kernel::PageRequest::first(100).expect("page");
    loop {
        let p = store
            .query(&kernel::audit::AuditQuery::default(), &page)
            .await
            .expect("audit rows");
        for r in &p.items {
            all.push_str(&format!("{r:?}\n"));
        }
        match p.next_cursor {
            Some(c) => {
                page = kernel::PageRequest::parse(Some(100), Some(&c.encode())).expect("page");
            }
            None => return all,
        }
    }
}

async fn trail_records_ids_and_only_admins_read_it(app: &TestApp) {
    let (ann, org) = app.owner("ann").await;
    let ann_id = me(app, &ann).await;
    let coll = app.collection(&ann, &org, "Field notes").await;
    let doc = app
        .ready_document(&ann, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (mel, mel_id) = app.join(&ann, &org, "mel", "member").await;
    let (vic, _) = app.join(&ann, &org, "vic", "viewer").await;
    let (s, key) = app
        .call(
            &ann,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let key_id = key["api_key"]["id"].as_str().expect("key id").to_owned();
    // Bob's organization, with its own document and searches.
    let (bob, bob_org) = app.owner("bob").await;
    let bob_coll = app.collection(&bob, &bob_org, "Bob's").await;
    let bob_doc = app
        .ready_document(&bob, &bob_org, "zebras.txt", NOTES, &bob_coll)
        .await;
    search(app, &bob, &bob_org, QUERY).await;

    // Reads, searches and an answer's citations.
    for path in [
        format!("/api/v1/documents/{doc}"),
        format!("/api/v1/documents/{doc}/chunks"),
    ] {
        let (s, b) = app
            .call_in(&ann, Method::GET, &path, None, Some(&org))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let found = search(app, &mel, &org, QUERY).await;
    assert_eq!(found["results"][0]["document_id"], json!(doc), "{found}");
    search(app, &secret, &org, QUERY).await;
    let (s, qa) = app
        .call_in(
            &mel,
            Method::POST,
            "/api/v1/ai/qa",
            Some(json!({"question": QUESTION})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{qa}");
    let cited = qa["sources"].as_array().is_some_and(|s| !s.is_empty());

    // The owner reads it, with every filter.
    // Two reads of one document by one user within the read window: one event (docs/audit.md,
    // "Coalesced reads").
    let reads = trail_until(app, &ann, &org, "&action=document.read", |i| !i.is_empty()).await;
    for e in &reads {
        assert_eq!(e["actor"], json!(ann_id), "{e}");
        assert_eq!(e["tenant"], json!(org), "{e}");
        assert_eq!(e["documents"], json!([doc]), "{e}");
        assert!(
            e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{e}"
        );
        assert_eq!(e["text"], Value::Null, "{e}");
    }
    let by_key = trail_until(app, &ann, &org, &format!("&key={key_id}"), |i| {
        names(i, &doc)
    })
    .await;
    assert!(
        by_key.iter().all(|e| e["actor_key"] == json!(key_id)
            && e["actor"].is_null()
            && e["action"] == "document.searched"),
        "{by_key:?}"
    );
    let mels = trail_until(app, &ann, &org, &format!("&actor={mel_id}"), |i| {
        i.iter().any(|e| e["action"] == "document.searched")
            && (!cited || i.iter().any(|e| e["action"] == "answer.cited"))
    })
    .await;
    assert!(mels.iter().all(|e| e["actor"] == json!(mel_id)), "{mels:?}");
    if cited {
        let answer = mels
            .iter()
            .find(|e| e["action"] == "answer.cited")
            .expect("answer.cited");
        assert_eq!(answer["documents"], json!([doc]), "{answer}");
    }
    let of_doc = trail_until(app, &ann, &org, &format!("&document={doc}"), |i| {
        i.len() >= 3
    })
    .await;
    assert!(
        of_doc.iter().all(|e| names(std::slice::from_ref(e), &doc)),
        "{of_doc:?}"
    );
    // A time range that ends before everything selects nothing.
    let (s, none) = trail(app, &ann, &org, "&until=2000-01-01T00:00:00Z").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(none["items"], json!([]), "{none}");
    // The org's security events are in its trail too.
    let security = trail_until(app, &ann, &org, "&action=org.invitation.accepted", |i| {
        i.len() == 2
    })
    .await;
    assert_eq!(security.len(), 2);
    // Cursor pagination: pages of 2 walk the whole log without repeats.
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let (s, page) = app
            .call(
                &ann,
                Method::GET,
                &format!("/api/v1/orgs/{org}/audit-log?limit=2{cursor}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for e in page["items"].as_array().expect("items") {
            let id = e["id"].as_str().expect("id").to_owned();
            assert!(!seen.contains(&id), "{id} twice");
            seen.push(id);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(seen.len() >= 8, "{}", seen.len());
    // Bad filters are 422s naming the field.
    for (q, field) in [
        ("&actor=nope", "actor"),
        ("&document=nope", "document"),
        ("&action=document.eaten", "action"),
        ("&from=yesterday", "from"),
        ("&cursor=%%%", "cursor"),
    ] {
        let (s, p) = trail(app, &ann, &org, q).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {p}");
        assert!(p.to_string().contains(field), "{q}: {p}");
    }

    // Members, viewers and keys below admin are refused; another org's admin sees nothing.
    for token in [&mel, &vic, &secret] {
        let (s, p) = trail(app, token, &org, "").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    }
    let (s, p) = trail(app, &bob, &org, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    // Bob's log holds bob's events only; ann's holds none of bob's.
    let bobs = trail_until(app, &bob, &bob_org, "&action=document.searched", |i| {
        !i.is_empty()
    })
    .await;
    assert!(
        bobs.iter().all(|e| e["tenant"] == json!(bob_org)),
        "{bobs:?}"
    );
    let (_, all_anns) = trail(app, &ann, &org, "").await;
    let text = all_anns.to_string();
    assert!(
        !text.contains(&bob_org) && !text.contains(&bob_doc),
        "{text}"
    );

    // A removed member's events stay; they can no longer read anything.
    let (s, _) = app
        .call(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{mel_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = trail(app, &mel, &org, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let kept = trail_until(app, &ann, &org, &format!("&actor={mel_id}"), |i| {
        i.len() >= mels.len()
    })
    .await;
    assert!(kept.iter().any(|e| e["action"] == "document.searched"));

    // The platform's log has both organizations' access events.
    let (pat, pat_id) = app.sign_in_by_code("pat").await;
    app.make_platform_admin(kernel::UserId::parse(&pat_id).expect("uuid"))
        .await;
    let (s, all) = app
        .call(
            &pat,
            Method::GET,
            "/api/v1/admin/audit-log?action=document.searched&limit=100",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let tenants: Vec<&Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| &e["tenant"])
        .collect();
    assert!(tenants.contains(&&json!(org)) && tenants.contains(&&json!(bob_org)));

    // Never the document's text or the question: not in any stored row.
    let rows = stored_rows(app).await;
    for needle in ["zebras cross", "Rangers count", QUERY, QUESTION] {
        assert!(
            !rows.contains(needle),
            "{needle} is stored in the audit log"
        );
    }
}

async fn opt_in_keeps_the_question(app: &TestApp) {
    let (ann, org) = app.owner("ann").await;
    let coll = app.collection(&ann, &org, "Field notes").await;
    let doc = app
        .ready_document(&ann, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (mel, _) = app.join(&ann, &org, "mel", "member").await;
    // Off by default; only an admin turns it on.
    let (s, o) = app
        .call(&ann, Method::GET, &format!("/api/v1/orgs/{org}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(o["settings"]["audit_question_text"], false, "{o}");
    let (s, _) = app
        .call(
            &mel,
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            Some(json!({"audit_question_text": true})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    search(app, &ann, &org, "before the opt in zebras").await;
    let (s, o) = app
        .call(
            &ann,
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            Some(json!({"audit_question_text": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["settings"]["audit_question_text"], true, "{o}");
    assert_eq!(o["name"], "ann", "a settings change keeps the name");
    let (s, p) = app
        .call(
            &ann,
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    search(app, &mel, &org, QUERY).await;
    let found = trail_until(app, &ann, &org, "&action=document.searched", |i| {
        i.iter().any(|e| e["text"] == json!(QUERY))
    })
    .await;
    // The search before the opt-in kept no text.
    assert!(
        found
            .iter()
            .any(|e| e["text"].is_null() && names(std::slice::from_ref(e), &doc)),
        "{found:?}"
    );
    let rows = stored_rows(app).await;
    assert!(
        !rows.contains("before the opt in"),
        "text before the opt-in"
    );
    assert!(
        !rows.contains("Rangers count"),
        "document text is never kept"
    );
    let (s, _) = trail_until(app, &ann, &org, "&action=org.settings_changed", |i| {
        !i.is_empty()
    })
    .await
    .first()
    .map(|e| (StatusCode::OK, e.clone()))
    .expect("the change is audited");
    assert_eq!(s, StatusCode::OK);
}
