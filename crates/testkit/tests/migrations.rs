//! Migrations: one schema on both backends, idempotent, and safe when servers start together.

use migration::MigratorTrait as _;

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
