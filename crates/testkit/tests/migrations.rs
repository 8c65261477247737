//! Migrations: one schema on both backends, idempotent, and safe when servers start together.

use migration::MigratorTrait as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection, DbBackend, Statement,
};

#[tokio::test]
async fn sqlite_migrates_once_and_reports_nothing_pending() {
    let (store, _dir) = testkit::sqlite_store().await;
    assert!(store.pending_migrations().await.expect("status").is_empty());
    let again = store.migrate().await.expect("a second run is a no-op");
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
}

#[tokio::test]
async fn concurrent_postgres_migrations_serialize() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    let a = testkit::postgres_store_in(&schema).await;
    let b = testkit::postgres_store_in(&schema).await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let ra = ra.expect("first migrator");
    let rb = rb.expect("second migrator waits on the advisory lock, then finds nothing to do");
    let mut applied = [ra, rb].concat();
    applied.sort();
    let mut all: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    all.sort();
    assert_eq!(
        applied, all,
        "each migration is applied exactly once across both servers"
    );
    assert!(a.pending_migrations().await.expect("status").is_empty());
    assert_eq!(a.backend_name(), "postgres");
}

/// What `SELECT {column} FROM {table} ORDER BY {column}` answers, as text.
async fn stored_texts(db: &DatabaseConnection, table: &str, column: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Sqlite,
        format!("SELECT {column} AS t FROM {table} ORDER BY {column}"),
    ))
    .await
    .expect("reads")
    .iter()
    .map(|row| row.try_get::<String>("", "t").expect("text"))
    .collect()
}

/// Times written on SQLite before `m20261206_000018_stored_times` (sqlx's RFC 3339, whose
/// fraction drops trailing zeros, so `…:05Z` sorts after `…:05.5Z`) are rewritten in the one
/// stored form (fixed-width, six fraction digits), whose text order is time order.
#[tokio::test]
async fn sqlite_times_written_in_sqlx_form_are_rewritten_fixed_width() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // One connection, so that the pragma below holds for the inserts.
    let db = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
        .await
        .expect("SQLite opens");
    let all = migration::Migrator::migrations();
    let before = all
        .iter()
        .position(|m| m.name() == "m20261206_000018_stored_times")
        .expect("the migration is listed");
    migration::Migrator::up(&db, Some(u32::try_from(before).expect("few migrations")))
        .await
        .expect("the schema as it was before");
    // Rows as the old code wrote them (no organizations: this test is about the times).
    db.execute_unprepared("PRAGMA foreign_keys = OFF")
        .await
        .expect("pragma");
    let insert = |sql: String| {
        let db = &db;
        async move { db.execute_unprepared(&sql).await.expect("insert") }
    };
    for (tenant, at) in [
        (1, "2026-11-22T10:00:05.5Z"),
        (2, "2026-11-22T10:00:05Z"),
        (3, "2026-11-22T10:00:04.999999Z"),
        (4, "2026-11-22T10:00:05.000001Z"),
    ] {
        insert(format!(
            "INSERT INTO tenant_models (tenant_id, models, updated_at) \
             VALUES (x'{tenant:032x}', '[]', '{at}')"
        ))
        .await;
        insert(format!(
            "INSERT INTO dev_outbox (id, at, recipient, subject, body) \
             VALUES (x'{tenant:032x}', '{at}', 'a@example.com', 's', 'b')"
        ))
        .await;
        insert(format!(
            "INSERT INTO message_feedback \
             (tenant_id, message_id, principal_key, rating, comment, created_at) \
             VALUES (x'{tenant:032x}', x'{tenant:032x}', 'u:{tenant}', 'up', NULL, '{at}')"
        ))
        .await;
    }
    assert_eq!(
        stored_texts(&db, "tenant_models", "updated_at").await[3],
        "2026-11-22T10:00:05Z",
        "the old form sorts a whole second after its own fractions"
    );

    migration::Migrator::up(&db, None).await.expect("migrates");

    let expected = [
        "2026-11-22T10:00:04.999999Z",
        "2026-11-22T10:00:05.000000Z",
        "2026-11-22T10:00:05.000001Z",
        "2026-11-22T10:00:05.500000Z",
    ];
    assert_eq!(
        stored_texts(&db, "tenant_models", "updated_at").await,
        expected
    );
    assert_eq!(
        stored_texts(&db, "message_feedback", "created_at").await,
        expected
    );
    assert_eq!(stored_texts(&db, "dev_outbox", "at").await, expected);
    assert!(
        migration::Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .is_empty()
    );
}
