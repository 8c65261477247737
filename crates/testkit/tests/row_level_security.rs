//! Row-level security on PostgreSQL (docs/security.md, "Row-level security"): the database
//! itself refuses another tenant's rows, whatever the application's queries say.
//!
//! Two tenants fill every kind of tenant table through the API; then, on one connection as the
//! application role `quire_app`:
//! - with no tenant set, every table that has a `tenant_id` column (listed from the catalog,
//!   so a table added later is covered) returns no row, and every such table has row-level
//!   security enabled and forced with the tenant policy;
//! - with tenant A set, only A's rows; writing a row of B is refused;
//! - the platform role reads across tenants only the tables of its paths.
//!
//! Each check is also run after the rule is taken away (policy dropped, security disabled, a
//! policy that lets everything through), and must then fail.
//!
//! SQLite has no row-level security: its scoping is the application's alone.

use reqwest::Method;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};
use testkit::{TestApp, TestOptions, spawn_app_with};

const NOTES: &str = "Zebra migration.\n\nThe zebras cross the river in spring.";

async fn populate(app: &TestApp, who: &str) -> String {
    let (token, org) = app.owner(who).await;
    let coll = app.collection(&token, &org, "Field notes").await;
    app.ready_document(&token, &org, "zebras.txt", NOTES, &coll)
        .await;
    let (s, b) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(serde_json::json!({"title": "zebras"})),
            Some(&org),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    // An answered question: finished chat messages (the platform must not read them).
    let session = b["id"].as_str().expect("a session id");
    let (s, b) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            Some(serde_json::json!({"content": "When do the zebras cross?", "stream": false})),
            Some(&org),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    org
}

/// True when `sql` fails in `txn` (permission or policy), which goes on after it.
async fn refused(txn: &DatabaseTransaction, sql: &str) -> bool {
    txn.execute_unprepared("SAVEPOINT try_it")
        .await
        .expect("savepoint");
    let result = txn.execute_unprepared(sql).await;
    txn.execute_unprepared("ROLLBACK TO SAVEPOINT try_it")
        .await
        .expect("rollback to");
    match result {
        Err(_) => true,
        // An UPDATE or DELETE no policy lets through touches nothing.
        Ok(r) => r.rows_affected() == 0 && !sql.starts_with("SELECT"),
    }
}

/// A superuser connection to the app's schema (superusers bypass row-level security; each
/// check switches role inside its transaction).
async fn superuser(app: &TestApp) -> (DatabaseConnection, String) {
    let url = testkit::postgres_url();
    let schema = app.settings.database.schema.clone().expect("a schema");
    let mut opts = ConnectOptions::new(url);
    opts.set_schema_search_path(schema.clone());
    (Database::connect(opts).await.expect("database"), schema)
}

async fn strings(txn: &DatabaseTransaction, sql: &str, values: Vec<sea_orm::Value>) -> Vec<String> {
    txn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .iter()
    .map(|r| r.try_get_by_index::<String>(0).expect("text"))
    .collect()
}

async fn count(txn: &DatabaseTransaction, sql: &str) -> i64 {
    txn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count")
}

/// The tables of `schema` with a `tenant_id` column.
async fn tenant_tables(txn: &DatabaseTransaction, schema: &str) -> Vec<String> {
    strings(
        txn,
        "SELECT c.table_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t USING (table_schema, table_name) \
         WHERE c.table_schema = $1 AND c.column_name = 'tenant_id' \
           AND t.table_type = 'BASE TABLE' ORDER BY 1",
        vec![schema.into()],
    )
    .await
}

/// Every way the schema fails the rule; empty when row-level security holds. Runs in `txn`
/// (as the superuser), switching to `quire_app` for the reads and back.
async fn violations(txn: &DatabaseTransaction, schema: &str, a: &str, b: &str) -> Vec<String> {
    let mut found = Vec::new();
    let tables = tenant_tables(txn, schema).await;
    assert!(
        tables.len() >= 20,
        "the catalog lists the tenant tables: {tables:?}"
    );
    // The database blob store's file bytes are tenant rows too.
    for t in ["blobs", "blob_parts"] {
        assert!(
            tables.iter().any(|x| x == t),
            "{t} has no tenant_id: {tables:?}"
        );
    }
    for t in &tables {
        let protected = strings(
            txn,
            "SELECT (c.relrowsecurity AND c.relforcerowsecurity)::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            vec![schema.into(), t.as_str().into()],
        )
        .await;
        if protected != ["true"] {
            found.push(format!("{t}: row-level security not enabled and forced"));
        }
        let policy = strings(
            txn,
            "SELECT qual FROM pg_policies WHERE schemaname = $1 AND tablename = $2 \
             AND policyname = 'quire_tenant' AND 'public' = ANY (roles)",
            vec![schema.into(), t.as_str().into()],
        )
        .await;
        if policy.len() != 1 || !policy[0].contains("quire.tenant") {
            found.push(format!("{t}: no tenant policy ({policy:?})"));
        }
    }
    let tenanted = |tenant: &str| {
        format!(
            "SELECT set_config('role', 'quire_app', true), set_config('quire.tenant', '{tenant}', true)"
        )
    };
    // No tenant: no row of any tenant table.
    txn.execute_unprepared(&tenanted(""))
        .await
        .expect("as the app");
    for t in &tables {
        let n = count(txn, &format!("SELECT count(*) FROM \"{t}\"")).await;
        if n > 0 {
            found.push(format!("{t}: {n} rows visible with no tenant set"));
        }
    }
    // Tenant A: A's rows only, and there are some.
    txn.execute_unprepared(&tenanted(a))
        .await
        .expect("as tenant A");
    let mut seen_a = 0;
    for t in &tables {
        seen_a += count(
            txn,
            &format!("SELECT count(*) FROM \"{t}\" WHERE tenant_id = '{a}'"),
        )
        .await;
        let other = count(
            txn,
            &format!("SELECT count(*) FROM \"{t}\" WHERE tenant_id <> '{a}'"),
        )
        .await;
        if other > 0 {
            found.push(format!(
                "{t}: {other} rows of another tenant visible under tenant A"
            ));
        }
    }
    if seen_a < 5 {
        found.push(format!("tenant A sees only {seen_a} of its rows"));
    }
    // Tenant A writing B's row: refused.
    txn.execute_unprepared("SAVEPOINT write_b")
        .await
        .expect("savepoint");
    let write = txn
        .execute_unprepared(&format!(
            "INSERT INTO collections SELECT (jsonb_populate_record(c, jsonb_build_object(\
             'id', gen_random_uuid(), 'tenant_id', '{b}', 'name', 'smuggled'))).* \
             FROM collections c LIMIT 1"
        ))
        .await;
    txn.execute_unprepared("ROLLBACK TO SAVEPOINT write_b")
        .await
        .expect("rollback to");
    match write {
        Err(e) if e.to_string().contains("row-level security") => {}
        other => found.push(format!("writing B's collection under A: {other:?}")),
    }
    // Tenant A moving its own row to B: refused.
    txn.execute_unprepared("SAVEPOINT move_b")
        .await
        .expect("savepoint");
    let moved = txn
        .execute_unprepared(&format!("UPDATE collections SET tenant_id = '{b}'"))
        .await;
    txn.execute_unprepared("ROLLBACK TO SAVEPOINT move_b")
        .await
        .expect("rollback to");
    match moved {
        Err(e) if e.to_string().contains("row-level security") => {}
        other => found.push(format!("moving A's collection to B: {other:?}")),
    }
    // The platform role: across tenants on its tables only.
    txn.execute_unprepared(
        "SELECT set_config('role', 'quire_platform', true), set_config('quire.tenant', '', true)",
    )
    .await
    .expect("as the platform");
    let tenants = count(txn, "SELECT count(DISTINCT tenant_id) FROM memberships").await;
    if tenants < 2 {
        found.push(format!(
            "the platform role sees {tenants} tenants' memberships"
        ));
    }
    for t in [
        "documents",
        "chunks",
        "chat_sessions",
        "keyword_postings",
        "blob_parts",
    ] {
        txn.execute_unprepared("SAVEPOINT platform_read")
            .await
            .expect("savepoint");
        let n = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT count(*) FROM \"{t}\""),
            ))
            .await;
        txn.execute_unprepared("ROLLBACK TO SAVEPOINT platform_read")
            .await
            .expect("rollback to");
        // No grant (`blob_parts`) or no row.
        if let Ok(Some(row)) = n {
            let n: i64 = row.try_get_by_index(0).expect("a count");
            if n > 0 {
                found.push(format!("{t}: {n} rows visible to the platform role"));
            }
        }
    }
    // The four paths narrowed by migration 31: only what each reads.
    let finished = count(txn, "SELECT count(*) FROM chat_messages").await;
    if finished > 0 {
        found.push(format!(
            "chat_messages: {finished} finished messages visible to the platform role"
        ));
    }
    let usage = count(txn, "SELECT count(DISTINCT tenant_id) FROM usage_events").await;
    if usage < 2 {
        found.push(format!("the platform role sums {usage} tenants' usage"));
    }
    for (sql, what) in [
        (
            "SELECT user_id, reference, request_id FROM usage_events",
            "usage_events: the platform role reads who called",
        ),
        (
            "DELETE FROM usage_events",
            "usage_events: the platform role deletes",
        ),
        (
            "SELECT name FROM collections",
            "collections: the platform role reads names",
        ),
        (
            "UPDATE chat_messages SET content = 'x'",
            "chat_messages: the platform role writes",
        ),
        (
            "UPDATE audit_log SET target = 'x'",
            "audit_log: the platform role edits events",
        ),
    ] {
        if !refused(txn, sql).await {
            found.push(what.to_owned());
        }
    }
    let smuggled = format!(
        "INSERT INTO audit_log (id, at, action, tenant_id, ip) \
         VALUES (gen_random_uuid(), now(), 'org.created', '{a}', '')"
    );
    if !refused(txn, &smuggled).await {
        found.push("audit_log: the platform role writes a tenant's event".to_owned());
    }
    if refused(
        txn,
        "INSERT INTO audit_log (id, at, action, tenant_id, ip) \
         VALUES (gen_random_uuid(), now(), 'platform.test', NULL, '')",
    )
    .await
    {
        found.push("audit_log: the platform role cannot write a platform event".to_owned());
    }
    // The blob sweeps' listing: which tenants have blobs, and nothing else of them.
    let blob_tenants = count(txn, "SELECT count(DISTINCT tenant_id) FROM blobs").await;
    if blob_tenants < 2 {
        found.push(format!(
            "the platform role sees {blob_tenants} tenants' blobs"
        ));
    }
    txn.execute_unprepared("SAVEPOINT blob_keys")
        .await
        .expect("savepoint");
    let keys = txn.execute_unprepared("SELECT key, bytes FROM blobs").await;
    txn.execute_unprepared("ROLLBACK TO SAVEPOINT blob_keys")
        .await
        .expect("rollback to");
    if keys.is_ok() {
        found.push("blobs: the platform role reads keys".to_owned());
    }
    txn.execute_unprepared("SELECT set_config('role', 'none', true)")
        .await
        .expect("back to the superuser");
    found
}

async fn check(
    db: &DatabaseConnection,
    schema: &str,
    a: &str,
    b: &str,
    sabotage: Option<&str>,
) -> Vec<String> {
    let txn = db.begin().await.expect("begin");
    if let Some(sql) = sabotage {
        txn.execute_unprepared(sql).await.expect("sabotage");
    }
    let found = violations(&txn, schema, a, b).await;
    txn.rollback().await.expect("rollback");
    found
}

#[tokio::test]
async fn postgres_refuses_other_tenants_rows_by_itself() {
    if testkit::services_skipped("row-level security on PostgreSQL") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    let a = populate(&app, "ann").await;
    let b = populate(&app, "bob").await;
    let (db, schema) = superuser(&app).await;

    let found = check(&db, &schema, &a, &b, None).await;
    assert!(found.is_empty(), "row-level security holds: {found:#?}");

    // The checks fail when the rule is taken away.
    for (sabotage, expect) in [
        (
            "DROP POLICY quire_tenant ON chunks",
            "chunks: no tenant policy",
        ),
        (
            "ALTER TABLE documents DISABLE ROW LEVEL SECURITY",
            "documents: row-level security not enabled",
        ),
        (
            "ALTER TABLE documents DISABLE ROW LEVEL SECURITY",
            "documents: 2 rows visible with no tenant set",
        ),
        (
            "CREATE POLICY leak ON chat_sessions USING (true)",
            "chat_sessions: 2 rows visible with no tenant set",
        ),
        (
            "CREATE POLICY leak ON collections USING (true) WITH CHECK (true)",
            "writing B's collection under A",
        ),
        (
            "CREATE POLICY leak ON chunks TO quire_platform USING (true)",
            "rows visible to the platform role",
        ),
        (
            "ALTER TABLE blob_parts DISABLE ROW LEVEL SECURITY",
            "blob_parts: row-level security not enabled",
        ),
        (
            "CREATE POLICY leak ON chat_messages TO quire_platform USING (true)",
            "finished messages visible to the platform role",
        ),
        (
            "GRANT SELECT ON usage_events TO quire_platform",
            "usage_events: the platform role reads who called",
        ),
        (
            "GRANT SELECT ON collections TO quire_platform; \
             CREATE POLICY leak ON collections TO quire_platform USING (true)",
            "collections: the platform role reads names",
        ),
        (
            "CREATE POLICY leak ON audit_log FOR INSERT TO quire_platform WITH CHECK (true)",
            "audit_log: the platform role writes a tenant's event",
        ),
        (
            "DROP POLICY quire_tenant ON blobs",
            "blobs: no tenant policy",
        ),
        (
            "GRANT SELECT ON blobs TO quire_platform",
            "blobs: the platform role reads keys",
        ),
        (
            "GRANT SELECT ON blob_parts TO quire_platform; \
             CREATE POLICY leak ON blob_parts TO quire_platform USING (true)",
            "blob_parts: 2 rows visible to the platform role",
        ),
    ] {
        let found = check(&db, &schema, &a, &b, Some(sabotage)).await;
        assert!(
            found.iter().any(|f| f.contains(expect)),
            "{sabotage}: expected {expect:?} in {found:#?}"
        );
    }

    // The application's own connections run as `quire_app`, under row-level security.
    let store = app.store().await;
    let (role, row_security) = store.session_role().await.expect("the session's role");
    assert_eq!((role.as_str(), row_security.as_str()), ("quire_app", "on"));
}
