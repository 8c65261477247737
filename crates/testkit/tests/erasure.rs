//! Erasing an organization leaves nothing behind (docs/security.md, "Erasure"): after
//! `DELETE /orgs/{org}` no table (enumerated from the catalog, so a table added later is
//! covered), no blob file, no search hit and no cache key holds the erased tenant's id, but
//! for the signed `organization.erased` tombstone in the audit log; its API keys and tokens
//! are refused at once; the other tenant is intact.

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

const NOTES: &str = "Zebra migration.\n\nThe zebras cross the river in spring, followed by \
wildebeest. Rangers count them from the northern ridge every morning.";

/// Everything a tenant makes through the API: a collection, a ready document (blob, chunks,
/// vectors, keyword postings), an evaluation, an API key, a chat session, a webhook, a workflow
/// schedule and run, an export (its archive), searches (usage, cache). Returns the owner's token, the org id and the key's secret.
async fn populate(app: &TestApp, who: &str) -> (String, String, String) {
    let (token, org) = app.owner(who).await;
    let coll = app.collection(&token, &org, "Field notes").await;
    let doc = app
        .ready_document(&token, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (s, evaluation) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/evaluations",
            Some(json!({"collection_ids": [coll],
                        "cases": [{"question": "zebras", "expected_document_ids": [doc]}]})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{evaluation}");
    let (s, key) = app
        .call(
            &token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "ci", "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let calls = [
        ("/api/v1/chat/sessions", json!({"title": "zebras"})),
        (
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["document.ready"]}),
        ),
        (
            "/api/v1/workflows/schedules",
            json!({"workflow": "export_usage", "cron": "0 3 * * MON"}),
        ),
        (
            "/api/v1/workflows/trigger",
            json!({"workflow": "reindex_collection", "input": {"collection_id": coll}}),
        ),
    ];
    for (path, body) in calls {
        let (s, b) = app
            .call_in(&token, Method::POST, path, Some(body), Some(&org))
            .await;
        assert!(s.is_success(), "{path}: {s} {b}");
    }
    // An export: its archive is a blob of the organization, erased with it.
    let (s, run) = app
        .call(
            &token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/exports"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let run = run["id"].as_str().expect("run").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, r) = app
            .call(
                &token,
                Method::GET,
                &format!("/api/v1/orgs/{org}/exports/{run}"),
                None,
            )
            .await;
        if r["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the export: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for t in [&token, &secret] {
        let found = search(app, t, &org).await;
        assert_eq!(found.0, StatusCode::OK, "{}", found.1);
        assert_eq!(found.1["results"][0]["document_name"], "zebras.txt");
    }
    (token, org, secret)
}

async fn search(app: &TestApp, token: &str, org: &str) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::POST,
        "/api/v1/search",
        Some(json!({"query": "zebras crossing the river", "mode": "hybrid"})),
        Some(org),
    )
    .await
}

/// The forms an id takes in storage: hyphenated, simple hex (text, hex-encoded bytes, `bytea`).
fn forms(id: &str) -> [String; 2] {
    let id = id.to_lowercase();
    let simple = id.replace('-', "");
    [id, simple]
}

/// `table.column` holding `id` in any form, with the row count, over every table of the
/// catalog (the tombstone row of the audit log excepted).
async fn scan_tables(
    db: &DatabaseConnection,
    postgres: bool,
    schema: &str,
    id: &str,
) -> Vec<String> {
    let backend = db.get_database_backend();
    let columns: Vec<(String, String)> =
        if postgres {
            db.query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = $1 ORDER BY 1, 2",
            [schema.into()],
        ))
        .await
        .expect("catalog")
        .iter()
        .map(|r| (r.try_get("", "t").expect("t"), r.try_get("", "c").expect("c")))
        .collect()
        } else {
            db.query_all_raw(Statement::from_string(
                backend,
                "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' ORDER BY 1, 2",
            ))
            .await
            .expect("catalog")
            .iter()
            .map(|r| {
                (
                    r.try_get("", "t").expect("t"),
                    r.try_get("", "c").expect("c"),
                )
            })
            .collect()
        };
    assert!(
        columns.len() > 50,
        "the catalog lists the tables: {columns:?}"
    );
    let [hyphenated, simple] = forms(id);
    let mut found = Vec::new();
    for (table, column) in columns {
        let text = if postgres {
            format!("lower(\"{column}\"::text)")
        } else {
            format!("lower(CAST(\"{column}\" AS TEXT))")
        };
        let hex = if postgres {
            text.clone()
        } else {
            format!("lower(hex(\"{column}\"))")
        };
        let except = if table == "audit_log" {
            " AND action <> 'organization.erased'"
        } else {
            ""
        };
        let sql = format!(
            "SELECT count(*) AS n FROM \"{table}\" WHERE ({text} LIKE '%{hyphenated}%' \
             OR {text} LIKE '%{simple}%' OR {hex} LIKE '%{simple}%'){except}"
        );
        let row = db
            .query_one_raw(Statement::from_string(backend, sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .expect("a count");
        let n: i64 = row.try_get("", "n").expect("n");
        if n > 0 {
            found.push(format!("{table}.{column} ({n} rows)"));
        }
    }
    found
}

/// Files and folders under `dir` whose path names `id`.
fn scan_files(dir: &std::path::Path, id: &str) -> Vec<String> {
    let [hyphenated, simple] = forms(id);
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let s = p.to_string_lossy().to_lowercase();
            if s.contains(&hyphenated) || s.contains(&simple) {
                found.push(p.display().to_string());
            }
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    found
}

/// Redis keys under the app's prefix naming `id`.
async fn scan_redis(app: &TestApp, id: &str) -> Vec<String> {
    let url = testkit::redis_url();
    let client = deadpool_redis::redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let pattern = format!("{}:*", app.settings.cache.key_prefix);
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    let [hyphenated, simple] = forms(id);
    loop {
        let (next, keys): (u64, Vec<String>) = deadpool_redis::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        found.extend(
            keys.into_iter()
                .filter(|k| k.to_lowercase().contains(&hyphenated) || k.contains(&simple)),
        );
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

async fn scenario(app: &TestApp, redis: bool) {
    let (ta, a, key_a) = populate(app, "erasa").await;
    let (tb, b, key_b) = populate(app, "erasb").await;
    // Let the queued workflow runs and ingestion settle so they are rows, not in-flight.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Nobody but the owner erases: another tenant's owner, a member's key.
    let (s, _) = app
        .call(&tb, Method::DELETE, &format!("/api/v1/orgs/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant");
    let (s, _) = app
        .call(&key_a, Method::DELETE, &format!("/api/v1/orgs/{a}"), None)
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "a key: {s}"
    );

    // The race: a large document of A is being ingested (its job claimed by a worker) when A
    // is erased; whatever the worker does afterwards must bring nothing of A back.
    let big: String = (0..4_000)
        .map(|i| format!("Paragraph {i} about zebra herd {i} and the river crossing.\n\n"))
        .collect();
    let (s, up) = app.upload(&ta, &a, "big.txt", big.as_bytes(), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let big_id = up["document"]["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, doc) = app
            .call_in(
                &ta,
                Method::GET,
                &format!("/api/v1/documents/{big_id}"),
                None,
                Some(&a),
            )
            .await;
        if doc["status"] != "queued" || std::time::Instant::now() > deadline {
            eprintln!("erasing while the document is {}", doc["status"]);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let (s, e) = app
        .call(&ta, Method::DELETE, &format!("/api/v1/orgs/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");

    // Its key and tokens are refused at once; its id is gone.
    let (s, _) = search(app, &key_a, &a).await;
    assert!(
        s == StatusCode::UNAUTHORIZED || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    let (s, _) = search(app, &ta, &a).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(&ta, Method::GET, &format!("/api/v1/orgs/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(&ta, Method::DELETE, &format!("/api/v1/orgs/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "erasing twice");

    // Let the worker that held A's job finish with it (it must not bring anything back).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let postgres = app.settings.is_postgres();
    let url = secrecy::ExposeSecret::expose_secret(&app.settings.database_url()).to_owned();
    let schema = app.settings.database.schema.clone().unwrap_or_default();
    let mut opts = sea_orm::ConnectOptions::new(url);
    if postgres {
        opts.set_schema_search_path(schema.clone());
    }
    let db = Database::connect(opts).await.expect("the app's database");
    let mut left = scan_tables(&db, postgres, &schema, &a).await;
    left.extend(scan_files(&app.settings.data_dir, &a));
    if redis {
        left.extend(scan_redis(app, &a).await);
    }
    assert!(
        left.is_empty(),
        "the erased tenant {a} is still in: {left:#?}"
    );

    // The tombstone is there, once, and names what was removed.
    let tomb = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT target FROM audit_log WHERE action = 'organization.erased'",
        ))
        .await
        .expect("audit");
    assert_eq!(tomb.len(), 1, "one tombstone");
    tombstone_is_sealed(app, &ta, &tb, &a).await;

    // B is intact: its search still finds its document, with its token and its key.
    for t in [&tb, &key_b] {
        let (s, found) = search(app, t, &b).await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(
            found["results"][0]["document_name"], "zebras.txt",
            "{found}"
        );
    }
    assert!(!scan_tables(&db, postgres, &schema, &b).await.is_empty());
    assert!(!scan_files(&app.settings.data_dir, &b).is_empty() || postgres);
}

/// Webhooks to a closed local port (deliveries fail and stay queued for retry).
fn local_hooks(s: &mut quire::Settings) {
    s.webhooks.allow_http = true;
    s.webhooks.allow_private_destinations = true;
}

/// The tombstone reads through the admin audit route (platform admins only), carries the
/// counts and a seal that verifies under the server's key and breaks when anything changes.
async fn tombstone_is_sealed(app: &TestApp, ta: &str, tb: &str, a: &str) {
    use tenancy::Sealer as _;
    let path = format!("/api/v1/admin/audit-log?action=organization.erased&tenant={a}");
    let (s, _) = app.call(ta, Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not a platform admin");
    let (_, me) = app.call(tb, Method::GET, "/api/v1/auth/me", None).await;
    let admin = kernel::UserId::parse(me["user"]["id"].as_str().expect("id")).expect("uuid");
    app.make_platform_admin(admin).await;
    let (s, page) = app.call(tb, Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    let target = items[0]["target"].as_str().expect("target");
    assert!(
        target.contains("blobs=3")
            && target.contains("vector_spaces=")
            && target.contains(" seal=hmac-sha256:"),
        "{target}"
    );

    let store = app.store().await;
    let query = kernel::audit::AuditQuery {
        action: Some("organization.erased".to_owned()),
        ..Default::default()
    };
    let records = kernel::audit::AuditLog::query(
        &store,
        &query,
        &kernel::PageRequest::first(10).expect("page"),
    )
    .await
    .expect("audit");
    let event = records.items[0].event.clone();
    let keys = quire::signing_keys(&app.settings, false).expect("keys");
    let sealer = crypto::HmacSealer::from_secret(keys[0].as_bytes());
    let seal = |e: &kernel::AuditEvent| {
        let t = e.target.as_deref().expect("target");
        let seal = t.split(" seal=").nth(1).expect("seal").to_owned();
        sealer.verify(&tenancy::tombstone_message(e), &seal)
    };
    assert!(seal(&event), "the seal verifies");
    let mut changed = event.clone();
    changed.target = event
        .target
        .as_ref()
        .map(|t| t.replace("blobs=3", "blobs=0"));
    assert!(!seal(&changed), "changed counts");
    let mut changed = event.clone();
    changed.actor = None;
    assert!(!seal(&changed), "changed actor");
    let mut changed = event.clone();
    changed.at += time::Duration::seconds(1);
    assert!(!seal(&changed), "changed time");
    let other = crypto::HmacSealer::from_secret(b"another deployment");
    let t = event.target.as_deref().expect("target");
    assert!(!other.verify(
        &tenancy::tombstone_message(&event),
        t.split(" seal=").nth(1).expect("seal")
    ));
}

#[tokio::test]
async fn erasure_on_sqlite_with_files_and_hnsw() {
    let app = spawn_app_with(TestOptions::default().tweak(local_hooks)).await;
    scenario(&app, false).await;
}

#[tokio::test]
async fn erasure_on_postgres_and_redis() {
    if testkit::services_skipped("erasure on PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production().tweak(local_hooks)).await;
    scenario(&app, true).await;
}

#[tokio::test]
async fn erasure_on_pgvector() {
    if testkit::services_skipped("erasure on pgvector") || testkit::pgvector_url().is_none() {
        return;
    }
    let app = spawn_app_with(TestOptions {
        pgvector: true,
        ..TestOptions::production().tweak(local_hooks)
    })
    .await;
    scenario(&app, true).await;
}

/// Something holding tenant data whose first erase fails (a disk error, an outage).
#[derive(Debug, Default)]
struct Flaky {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl kernel::erasure::TenantData for Flaky {
    fn kind(&self) -> &'static str {
        "files"
    }

    async fn erase_tenant(&self, _: kernel::TenantId) -> anyhow::Result<u64> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            anyhow::bail!("disk unavailable");
        }
        Ok(1)
    }
}

/// An erasure that fails before the organization is gone leaves it in place and answers an
/// error; repeating it finishes, with one tombstone whose seal verifies.
#[tokio::test]
async fn a_failed_erasure_is_finished_by_repeating_it() {
    use std::sync::Arc;
    let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
    let store = Arc::new(memory::InMemoryOrganizations::new(clock.clone()));
    let audit = Arc::new(memory::InMemoryAudit::new());
    let flaky = Arc::new(Flaky::default());
    let orgs = tenancy::Organizations::new(
        store.clone(),
        store,
        Arc::new(memory::InProcessCache::new(1_000)),
        clock,
        audit.clone(),
    )
    .with_erasure(
        vec![flaky.clone()],
        Some(Arc::new(crypto::HmacSealer::from_secret(b"key"))),
    );
    let owner = kernel::UserId::new();
    let client = kernel::ClientInfo::default();
    let org = orgs
        .create(owner, "Acme", "acme", &client)
        .await
        .expect("org");
    let ctx =
        kernel::TenantContext::new(org.id, kernel::Principal::User(owner), kernel::Role::Owner);

    let first = orgs.delete(&ctx, &client).await;
    assert!(
        matches!(first, Err(tenancy::TenancyError::Unknown(_))),
        "{first:?}"
    );
    assert!(
        orgs.find("acme").await.expect("find").is_some(),
        "still there"
    );

    orgs.delete(&ctx, &client)
        .await
        .expect("the repeat finishes");
    assert!(orgs.find("acme").await.expect("find").is_none());
    assert!(matches!(
        orgs.delete(&ctx, &client).await,
        Err(tenancy::TenancyError::NotFound)
    ));
    let page = kernel::audit::AuditLog::query(
        audit.as_ref(),
        &kernel::audit::AuditQuery {
            tenant: Some(org.id),
            ..Default::default()
        },
        &kernel::PageRequest::first(10).expect("page"),
    )
    .await
    .expect("audit");
    assert_eq!(page.items.len(), 1, "only the tombstone: {page:?}");
    let tomb = &page.items[0].event;
    assert_eq!(tomb.action, "organization.erased");
    assert_eq!(tomb.actor, Some(owner));
    assert!(
        tomb.target
            .as_deref()
            .is_some_and(|t| t.starts_with("files=2 cache_keys=")),
        "{tomb:?}"
    );
    assert!(orgs.tombstone_intact(tomb));
    let mut forged = tomb.clone();
    forged.tenant = Some(kernel::TenantId::new());
    assert!(!orgs.tombstone_intact(&forged), "moved to another tenant");
}
