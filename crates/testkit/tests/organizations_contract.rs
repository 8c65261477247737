//! The organization repository contract on every adapter: in-memory, SQLite, PostgreSQL.

use std::sync::Arc;

use memory::InMemoryOrganizations;

#[tokio::test]
async fn in_memory_meets_the_contract() {
    let repo = InMemoryOrganizations::new(Arc::new(kernel::SystemClock));
    testkit::contract::organizations::run(&repo).await;
}

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let (store, _dir) = testkit::sqlite_store().await;
    testkit::contract::organizations::run(&store).await;
}

#[tokio::test]
async fn postgres_meets_the_contract() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    testkit::contract::organizations::run(&store).await;
}
