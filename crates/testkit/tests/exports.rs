//! An organization's export (docs/exports.md): owners only (admins, members, viewers, API keys
//! and another organization's owner refused); the archive's manifest checks out, every table
//! of the catalog that holds tenant data is exported or deliberately left out, every exported
//! table's rows of the organization are there and nothing of another tenant is; the download
//! ends when the export expires; `quire import` refuses a tampered archive and an organization
//! it imported already, and an export of one deployment (SQLite) imported into another
//! (PostgreSQL) searches, answers and lists its chat history there.

use std::io::Write as _;

use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::{TestApp, TestOptions, spawn_app_with};

const NOTES: &str = "Zebra migration.\n\nThe zebras cross the river in spring, followed by \
wildebeest. Rangers count them from the northern ridge every morning.";

struct Tenant {
    token: String,
    org: String,
    user: String,
    doc: String,
    session: String,
}

async fn user_id(app: &TestApp, token: &str) -> String {
    let (_, me) = app.call(token, Method::GET, "/api/v1/auth/me", None).await;
    me["user"]["id"].as_str().expect("id").to_owned()
}

/// An organization with a collection, a ready document, a chat session with a cited answer.
async fn populate(app: &TestApp, who: &str) -> Tenant {
    let (token, org) = app.owner(who).await;
    let coll = app.collection(&token, &org, "Field notes").await;
    let doc = app
        .ready_document(&token, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (s, session) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"title": "zebras", "collection_ids": [coll]})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let session = session["id"].as_str().expect("session id").to_owned();
    let (s, answer) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            Some(json!({"content": "When do the zebras cross the river?", "stream": false})),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert!(
        !answer["message"]["citations"]
            .as_array()
            .expect("citations")
            .is_empty(),
        "{answer}"
    );
    let user = user_id(app, &token).await;
    Tenant {
        token,
        org,
        user,
        doc,
        session,
    }
}

/// A new account that is a `role` of `org`; its token.
async fn joined(app: &TestApp, who: &str, org: &str, role: Role) -> String {
    let (token, _) = app.owner(who).await;
    let id = UserId::parse(&user_id(app, &token).await).expect("uuid");
    app.store()
        .await
        .add(
            TenantId::parse(org).expect("org"),
            id,
            role,
            SystemClock.now(),
        )
        .await
        .expect("membership");
    token
}

async fn start(app: &TestApp, token: &str, org: &str) -> (StatusCode, Value) {
    app.call(
        token,
        Method::POST,
        &format!("/api/v1/orgs/{org}/exports"),
        None,
    )
    .await
}

/// Waits for export `run` to end; the run.
async fn ended(app: &TestApp, token: &str, org: &str, run: &str) -> Value {
    // Generous: the large organization's export on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let (s, r) = app
            .call(
                token,
                Method::GET,
                &format!("/api/v1/orgs/{org}/exports/{run}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        if r["status"] != "queued" && r["status"] != "running" {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the export never ended: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn download(app: &TestApp, token: &str, org: &str, run: &str) -> (StatusCode, Vec<u8>) {
    let res = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/orgs/{org}/exports/{run}/download")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = res.status();
    (status, res.bytes().await.expect("body").to_vec())
}

/// An owner's export, run to its end and downloaded.
async fn export(app: &TestApp, t: &Tenant) -> (Value, Vec<u8>) {
    let (s, run) = start(app, &t.token, &t.org).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().expect("run id").to_owned();
    let run = ended(app, &t.token, &t.org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // Streamed with its length and checksum: the bytes are the manifest's.
    let res = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/orgs/{}/exports/{id}/download", t.org)))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length = header("content-length");
    let checksum = header("x-checksum-sha256");
    let bytes = res.bytes().await.expect("body").to_vec();
    let sha256 = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert_eq!(
        run["result"]["sha256"],
        sha256.as_str(),
        "the bytes are the run's"
    );
    assert_eq!(checksum.as_deref(), Some(sha256.as_str()));
    assert_eq!(run["result"]["bytes"], json!(bytes.len()));
    assert_eq!(length, Some(bytes.len().to_string()));
    (run, bytes)
}

/// The `export` line of the organization's usage over the last 24 hours (`null`: none).
async fn exported_usage(app: &TestApp, token: &str, org: &str) -> Value {
    let (s, report) = app
        .call_in(
            token,
            Method::GET,
            "/api/v1/usage?window=24h",
            None,
            Some(org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    testkit::usage_of_kind(&report, "export")
        .cloned()
        .unwrap_or(Value::Null)
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write");
    f
}

/// Every entry of the archive, decompressed.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).expect("entry");
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).expect("read");
            (e.name().to_owned(), out)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(bytes).expect("write");
    }
    zip.finish().expect("finish");
    out.into_inner()
}

async fn connect(app: &TestApp) -> DatabaseConnection {
    let url = secrecy::ExposeSecret::expose_secret(&app.settings.database_url()).to_owned();
    let mut opts = sea_orm::ConnectOptions::new(url);
    if app.settings.is_postgres() {
        opts.set_schema_search_path(app.settings.database.schema.clone().unwrap_or_default());
    }
    Database::connect(opts).await.expect("the app's database")
}

/// Tables of the catalog with a `tenant_id` column.
async fn tenant_tables(app: &TestApp, db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let rows = if app.settings.is_postgres() {
        db.query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT DISTINCT table_name::text AS t FROM information_schema.columns \
             WHERE table_schema = $1 AND column_name = 'tenant_id' ORDER BY 1",
            [app.settings
                .database
                .schema
                .clone()
                .unwrap_or_default()
                .into()],
        ))
        .await
    } else {
        db.query_all_raw(Statement::from_string(
            backend,
            "SELECT DISTINCT m.name AS t FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'tenant_id' ORDER BY 1",
        ))
        .await
    };
    rows.expect("catalog")
        .iter()
        .map(|r| r.try_get("", "t").expect("t"))
        .collect()
}

async fn count(db: &DatabaseConnection, table: &str, column: &str, id: &str) -> i64 {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        format!("SELECT count(*) AS n FROM \"{table}\" WHERE \"{column}\"::text = '{id}'")
    } else {
        format!(
            "SELECT count(*) AS n FROM \"{table}\" WHERE lower(CAST(\"{column}\" AS TEXT)) = '{id}' \
             OR lower(hex(\"{column}\")) = '{}'",
            id.replace('-', "")
        )
    };
    db.query_one_raw(Statement::from_string(backend, sql))
        .await
        .expect("count")
        .expect("a row")
        .try_get("", "n")
        .expect("n")
}

async fn scenario(app: &TestApp) {
    let a = populate(app, "expa").await;
    let b = populate(app, "expb").await;

    // Nobody but A's owner, signed in: A's admin, member and viewer; B's owner; A's key.
    let mut below = Vec::new();
    for (who, role) in [
        ("expadm", Role::Admin),
        ("expmem", Role::Member),
        ("expview", Role::Viewer),
    ] {
        let token = joined(app, who, &a.org, role).await;
        let (s, e) = start(app, &token, &a.org).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {e}");
        below.push(token);
    }
    let (s, _) = start(app, &b.token, &a.org).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another organization's owner");
    let (s, key) = app
        .call(
            &a.token,
            Method::POST,
            &format!("/api/v1/orgs/{}/api-keys", a.org),
            Some(json!({"name": "ci", "role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let (s, _) = start(app, &secret, &a.org).await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "a key: {s}"
    );
    // Not through the workflows routes either.
    let (s, e) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/workflows/trigger",
            Some(json!({"workflow": "export_organization"})),
            Some(&a.org),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    let (run, bytes) = export(app, &a).await;
    let id = run["id"].as_str().expect("id").to_owned();
    let result = &run["result"];
    assert_eq!(result["bytes"].as_u64(), Some(bytes.len() as u64), "{run}");
    // Metered (docs/billing.md, "Exports"): one `export` entry of the archive's bytes, no
    // tokens, in the organization's usage and nobody else's.
    let metered = exported_usage(app, &a.token, &a.org).await;
    assert_eq!(
        metered["bytes"].as_u64(),
        Some(bytes.len() as u64),
        "{metered}"
    );
    assert_eq!(metered["requests"], 1, "{metered}");
    assert_eq!(metered["total_tokens"], 0, "{metered}");
    assert_eq!(exported_usage(app, &b.token, &b.org).await, Value::Null);

    // The export's routes and archive refuse everyone else too.
    let admin = below[0].clone();
    for t in below.iter().chain([&b.token, &secret]) {
        let (s, _) = download(app, t, &a.org, &id).await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
            "{s}"
        );
        let (s, _) = app
            .call(
                t,
                Method::GET,
                &format!("/api/v1/orgs/{}/exports/{id}", a.org),
                None,
            )
            .await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
            "{s}"
        );
    }
    // B's owner with B's org in the path still does not reach A's export.
    let (s, _) = download(app, &b.token, &b.org, &id).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Below owner, the workflow run shows without what the archive holds.
    let (s, r) = app
        .call_in(
            &admin,
            Method::GET,
            &format!("/api/v1/workflows/runs/{id}"),
            None,
            Some(&a.org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["result"].is_null(), "{r}");

    // The manifest checks out.
    let file = write_temp(&bytes);
    let mut checked = quire::export::Checked::open(file.path()).expect("a valid archive");
    assert_eq!(checked.manifest["organization"]["id"], a.org.as_str());

    // Every table of the catalog with tenant data is exported or deliberately left out.
    let db = connect(app).await;
    for table in tenant_tables(app, &db).await {
        assert!(
            store_sql::EXPORTED.contains(&table.as_str())
                || store_sql::LEFT_OUT.iter().any(|(t, _)| *t == table),
            "{table} holds tenant data but is neither exported nor left out on purpose"
        );
    }
    // Every exported table's rows of A are there.
    for table in store_sql::EXPORTED {
        let column = if *table == "organizations" {
            "id"
        } else {
            "tenant_id"
        };
        let stored = count(&db, table, column, &a.org).await;
        let rows = checked.rows(&format!("{table}.ndjson")).expect("rows");
        // The export's own audit events, and its own usage entry, come after it was built.
        if *table == "usage_events" {
            assert_eq!(rows.len() as i64 + 1, stored, "{table}");
        } else if *table != "audit_log" {
            assert_eq!(rows.len() as i64, stored, "{table}");
        }
        for r in &rows {
            let owner = if *table == "organizations" {
                &r["id"]
            } else {
                &r["tenant_id"]
            };
            assert_eq!(owner, a.org.as_str(), "{table}: {r}");
        }
        if [
            "documents",
            "chunks",
            "chat_sessions",
            "chat_messages",
            "memberships",
        ]
        .contains(table)
        {
            assert!(stored > 0, "{table} has rows to export");
        }
    }
    let messages = checked.rows("chat_messages.ndjson").expect("messages");
    assert!(
        messages
            .iter()
            .any(|m| m["citations"].as_str().is_some_and(|c| c.contains(&a.doc))),
        "a message cites the document: {messages:?}"
    );
    assert_eq!(
        checked.read(&format!("files/{}", a.doc)).expect("the file"),
        NOTES.as_bytes()
    );
    let members = checked.rows("members.ndjson").expect("members");
    assert!(
        members
            .iter()
            .any(|m| m["email"] == "expa@example.com" && m["role"] == "owner")
    );
    let keys = checked.rows("api_keys.ndjson").expect("keys");
    assert!(keys.iter().all(|k| k["key_hash"] == json!([])), "{keys:?}");

    // Nothing of B anywhere in A's archive.
    for (name, content) in entries(&bytes) {
        let text = String::from_utf8_lossy(&content).to_lowercase();
        for id in [&b.org, &b.user, &b.doc, &b.session] {
            assert!(
                !text.contains(&id.to_lowercase())
                    && !text.contains(&id.replace('-', "").to_lowercase()),
                "{name} holds B's id {id}"
            );
        }
    }

    // Audited.
    let (_, me) = app
        .call(&a.token, Method::GET, "/api/v1/auth/me", None)
        .await;
    let me = UserId::parse(me["user"]["id"].as_str().expect("id")).expect("uuid");
    let store = app.store().await;
    for action in ["export.requested", "export.completed", "export.downloaded"] {
        let q = kernel::audit::AuditQuery {
            action: Some(action.to_owned()),
            tenant: TenantId::parse(&a.org).ok(),
            ..Default::default()
        };
        let page = kernel::audit::AuditLog::query(
            &store,
            &q,
            &kernel::PageRequest::first(10).expect("page"),
        )
        .await
        .expect("audit");
        assert!(
            page.items.iter().any(|r| r.event.actor == Some(me)),
            "{action} audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_on_sqlite() {
    let app = spawn_app_with(TestOptions::default()).await;
    scenario(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_on_postgres_and_redis() {
    if testkit::services_skipped("exports on PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    scenario(&app).await;
}

fn expire_at_once(s: &mut quire::Settings) {
    s.workflows.export_ttl_secs = 0;
}

/// The archive of export `id` of `org` from the app's blob store.
async fn archive(app: &TestApp, org: &str, id: &str) -> Result<Vec<u8>, documents::BlobError> {
    let blobs = quire::blob_store(&app.settings, &app.store().await).expect("blobs");
    let key = quire::export::archive_key(
        TenantId::parse(org).expect("org"),
        workflows::RunId::parse(id).expect("run"),
    );
    blobs.read(&key).await
}

/// Waits until the archive of export `id` is deleted (by the workers' periodic sweep).
async fn swept(app: &TestApp, org: &str, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match archive(app, org, id).await {
            Err(documents::BlobError::NotFound) => return,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the expired archive was never swept"
            ),
            Err(e) => panic!("reading the archive: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A succeeded export of a new owner's organization: (token, org, run id).
async fn exported(app: &TestApp, who: &str) -> (String, String, String) {
    let (token, org) = app.owner(who).await;
    let (s, run) = start(app, &token, &org).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().expect("id").to_owned();
    let run = ended(app, &token, &org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    (token, org, id)
}

/// With a TTL of 0, the workers' sweep deletes the archive without any download; the
/// download then answers 410.
async fn expired_scenario(app: &TestApp) {
    let (token, org, id) = exported(app, "expgone").await;
    swept(app, &org, &id).await;
    let (s, _) = download(app, &token, &org, &id).await;
    assert_eq!(s, StatusCode::GONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_export_is_swept_on_sqlite() {
    let app = spawn_app_with(TestOptions::default().tweak(expire_at_once)).await;
    expired_scenario(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_export_is_swept_on_postgres_and_redis() {
    if testkit::services_skipped("export sweep on PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production().tweak(expire_at_once)).await;
    expired_scenario(&app).await;
}

/// Sets the stored expiry of export `id` in the past (what its TTL does in time).
async fn expire(db: &DatabaseConnection, id: &str) {
    let backend = db.get_database_backend();
    let at = "2000-01-01T00:00:00.000000Z";
    let sql = if backend == sea_orm::DbBackend::Postgres {
        format!("UPDATE workflow_runs SET archive_expires_at = '{at}' WHERE id::text = '{id}'")
    } else {
        format!(
            "UPDATE workflow_runs SET archive_expires_at = '{at}' \
             WHERE lower(CAST(id AS TEXT)) = '{id}' OR lower(hex(id)) = '{}'",
            id.replace('-', "")
        )
    };
    let done = db
        .execute_raw(Statement::from_string(backend, sql))
        .await
        .expect("expire");
    assert_eq!(done.rows_affected(), 1);
}

/// Two organizations' exports; one expires: the sweep deletes its archive only, and the other
/// organization's unexpired archive stays downloadable.
async fn sweep_scenario(app: &TestApp) {
    let (_, org_a, run_a) = exported(app, "sweepa").await;
    let (token_b, org_b, run_b) = exported(app, "sweepb").await;
    let db = connect(app).await;
    expire(&db, &run_a).await;
    swept(app, &org_a, &run_a).await;
    // Several sweeps later, the unexpired archive is still there.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(archive(app, &org_b, &run_b).await.is_ok(), "untouched");
    let (s, _) = download(app, &token_b, &org_b, &run_b).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_keeps_unexpired_archives_on_sqlite() {
    let app = spawn_app_with(TestOptions::default()).await;
    sweep_scenario(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_keeps_unexpired_archives_on_postgres_and_redis() {
    if testkit::services_skipped("export sweep on PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    sweep_scenario(&app).await;
}

/// Exported from SQLite, imported into PostgreSQL: the owner (with an account there already)
/// and a member (without one) arrive; search, the chat history with its citations and a new
/// answer work; a tampered archive and a second import are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_from_sqlite_to_postgres() {
    if testkit::services_skipped("import into PostgreSQL") {
        return;
    }
    let one = spawn_app_with(TestOptions::default()).await;
    let a = populate(&one, "movea").await;
    joined(&one, "moveb", &a.org, Role::Member).await;
    let (_, bytes) = export(&one, &a).await;

    let two = spawn_app_with(TestOptions::production()).await;
    // The owner has an account on the second deployment already (another id).
    let res = two
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "movea@example.com", "password": "correct horse battery", "name": "A"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let token = body["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let store = two.store().await;
    let clock: std::sync::Arc<dyn kernel::Clock> = std::sync::Arc::new(SystemClock);

    // Tampered: a changed entry, an added entry.
    let mut changed = entries(&bytes);
    for (name, content) in &mut changed {
        if name == "members.ndjson" {
            *content = String::from_utf8_lossy(content)
                .replace("\"member\"", "\"owner\"")
                .into_bytes();
        }
    }
    let f = write_temp(&rezip(&changed));
    let e = quire::export::import(&two.settings, &store, clock.clone(), f.path())
        .await
        .expect_err("a changed archive");
    assert!(e.to_string().contains("checksum"), "{e:#}");
    let mut added = entries(&bytes);
    added.push(("files/extra".to_owned(), b"sneaky".to_vec()));
    let f = write_temp(&rezip(&added));
    let e = quire::export::import(&two.settings, &store, clock.clone(), f.path())
        .await
        .expect_err("an added entry");
    assert!(e.to_string().contains("not in its manifest"), "{e:#}");
    let org_id = uuid::Uuid::parse_str(&a.org).expect("uuid");
    assert!(
        !store
            .organization_taken(org_id, "movea")
            .await
            .expect("look"),
        "nothing was imported"
    );

    let f = write_temp(&bytes);
    let done = quire::export::import(&two.settings, &store, clock.clone(), f.path())
        .await
        .expect("imported");
    assert_eq!(done.new_accounts, vec!["moveb@example.com".to_owned()]);
    assert_eq!(done.files, 1);
    let again = quire::export::import(&two.settings, &store, clock, f.path())
        .await
        .expect_err("imported twice");
    assert!(again.to_string().contains("exists"), "{again:#}");

    // The owner's account here is the organization's owner.
    let (s, org) = two
        .call(
            &token,
            Method::GET,
            &format!("/api/v1/orgs/{}", a.org),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{org}");
    assert_eq!(org["role"], "owner");
    // The documents and the chat history are there, with citations.
    let (s, docs) = two
        .call_in(&token, Method::GET, "/api/v1/documents", None, Some(&a.org))
        .await;
    assert_eq!(s, StatusCode::OK, "{docs}");
    assert_eq!(docs["items"][0]["name"], "zebras.txt", "{docs}");
    assert_eq!(docs["items"][0]["status"], "ready", "{docs}");
    let (s, history) = two
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/chat/sessions/{}/messages", a.session),
            None,
            Some(&a.org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let items = history["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|m| m["citations"].as_array().is_some_and(|c| !c.is_empty())),
        "{history}"
    );
    // Search works once the vectors are rebuilt from the chunks (the keyword half at once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, found) = two
            .call_in(
                &token,
                Method::POST,
                "/api/v1/search",
                Some(json!({"query": "zebras crossing the river", "mode": "vector"})),
                Some(&a.org),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        if found["results"][0]["document_name"] == "zebras.txt" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "search never found it: {found}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // And a new answer cites the imported document.
    let (s, answer) = two
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{}/messages", a.session),
            Some(json!({"content": "Who counts the zebras?", "stream": false})),
            Some(&a.org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["message"]["citations"][0]["document_id"],
        a.doc.as_str(),
        "{answer}"
    );
}

/// Documents of the large organization: more than one import batch (500 rows) of documents,
/// of chunks, and of their usage events.
const MANY: usize = 520;

fn bulk_settings(s: &mut quire::Settings) {
    s.documents.workers = 2;
    // Shorter than the export of this organization takes in a debug build: the build keeps
    // its run by beating (docs/exports.md, "Large organizations").
    s.workflows.lease_secs = 1;
    s.rate_limits.upload = billing::RateBudget {
        per_ip: 100_000,
        per_user: 100_000,
        per_api_key: 100_000,
        per_tenant: 100_000,
    };
}

/// A larger organization (520 documents) moves from SQLite to PostgreSQL: the export outlasts
/// its lease and succeeds on its first attempt, and the import loads every row and file
/// through batches. With `QUIRE_BENCH_ARCHIVE=<path>` the archive is kept there for
/// `docs/bench/import-rss.sh`, which measures the import's peak memory.
#[tokio::test]
async fn a_large_organization_moves_in_batches() {
    if testkit::services_skipped("import into PostgreSQL") {
        return;
    }
    let one = spawn_app_with(TestOptions::default().tweak(bulk_settings)).await;
    let (token, org) = one.owner("bulk").await;
    let coll = one.collection(&token, &org, "Bulk").await;
    let mut ids = Vec::with_capacity(MANY);
    for i in 0..MANY {
        let text = format!("Note {i}. The zebras cross the river at ford number {i} in spring.");
        let (s, up) = one
            .upload(
                &token,
                &org,
                &format!("note-{i}.txt"),
                text.as_bytes(),
                Some(&coll),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{up}");
        ids.push(up["document"]["id"].as_str().expect("an id").to_owned());
    }
    for id in &ids {
        assert_eq!(one.settled(&token, &org, id).await["status"], "ready");
    }
    let t = Tenant {
        token: token.clone(),
        org: org.clone(),
        user: user_id(&one, &token).await,
        doc: ids[0].clone(),
        session: String::new(),
    };
    let (run, bytes) = export(&one, &t).await;
    assert_eq!(run["attempts"], 1, "the export kept its lease: {run}");
    assert_eq!(run["result"]["counts"]["documents"], json!(MANY), "{run}");
    if let Ok(path) = std::env::var("QUIRE_BENCH_ARCHIVE") {
        std::fs::write(&path, &bytes).expect("the archive kept for the bench");
    }

    let two = spawn_app_with(TestOptions::production()).await;
    let store = two.store().await;
    let f = write_temp(&bytes);
    let done = quire::export::import(
        &two.settings,
        &store,
        std::sync::Arc::new(SystemClock),
        f.path(),
    )
    .await
    .expect("imported");
    assert_eq!(done.files, MANY as u64);
    let rows = |table: &str| {
        done.rows
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(rows("documents"), MANY as u64);
    assert!(rows("chunks") >= MANY as u64, "{:?}", done.rows);
    assert!(rows("usage_events") >= MANY as u64, "{:?}", done.rows);
    // The owner signs in on the new deployment and reads the last document and its file's
    // chunks there.
    let (owner, _) = two.sign_in_by_code("bulk").await;
    let last = ids.last().expect("a document");
    let (s, doc) = two
        .call_in(
            &owner,
            Method::GET,
            &format!("/api/v1/documents/{last}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], "ready", "{doc}");
}
