//! The vector index contract on every adapter: `HnswIndex` over the in-memory rows, over
//! SQLite rows and over PostgreSQL rows (no pgvector: the fallback path), and `PgVectorIndex`
//! on the PostgreSQL with pgvector (`QUIRE_TEST_PGVECTOR_URL`, `.ci/pgvector.sh`). Every case
//! on a fresh store (fresh maps; its own SQLite file; its own migrated PostgreSQL schema).

use std::sync::Arc;

use async_trait::async_trait;
use documents::DocumentId;
use kernel::TenantId;
use retrieval::{Space, VectorRows};
use testkit::contract::vectors::{Ids, Instance, PgVectorWorld, VectorWorld};
use vector_hnsw::{HnswConfig, HnswIndex};

/// Spaces from this many vectors are approximate in these tests.
const THRESHOLD: usize = 1_000;

/// Small enough for a debug build: the recall case builds 5,000 × 64 in a few seconds.
fn hnsw_config() -> HnswConfig {
    HnswConfig {
        exact_threshold: THRESHOLD,
        m: 8,
        ef_construction: 40,
        ef_search: 128,
        load_page: 500,
        build_batch: 1_000,
        ..HnswConfig::default()
    }
}

/// `HnswIndex` instances over one set of rows.
struct HnswWorld {
    ids: Ids,
    rows: Arc<dyn VectorRows>,
}

#[async_trait]
impl VectorWorld for HnswWorld {
    fn threshold(&self) -> usize {
        THRESHOLD
    }
    async fn tenant(&self) -> TenantId {
        self.ids.tenant().await
    }
    async fn space(&self, tenant: TenantId, dim: u32) -> Space {
        self.ids.space(tenant, dim).await
    }
    async fn documents(&self, tenant: TenantId, n: usize) -> Vec<DocumentId> {
        self.ids.documents(tenant, n).await
    }
    async fn open(&self) -> Instance {
        let index = Arc::new(HnswIndex::new(self.rows.clone(), hnsw_config()));
        let (a, b) = (index.clone(), index.clone());
        Instance::new(
            index,
            move || {
                let a = a.clone();
                Box::pin(async move { a.settle().await })
            },
            move |space| {
                let b = b.clone();
                Box::pin(async move {
                    b.stats(space)
                        .await
                        .is_some_and(|s| s.graph.is_some() && s.vectors >= THRESHOLD)
                })
            },
        )
    }
}

/// One test per case and adapter: `memory::case`, `sqlite::case`, `postgres::case` and
/// `pgvector::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (ids, rows) = Ids::memory();
                    let world = HnswWorld { ids, rows: Arc::new(rows) };
                    testkit::contract::vectors::$case(&world).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    let world = HnswWorld { ids: Ids::sql(&store), rows: Arc::new(store) };
                    testkit::contract::vectors::$case(&world).await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, _guard)) = testkit::postgres_store().await else {
                        return;
                    };
                    let world = HnswWorld { ids: Ids::sql(&store), rows: Arc::new(store) };
                    testkit::contract::vectors::$case(&world).await;
                }
            )*
        }

        mod pgvector {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, _guard)) = testkit::contract::vectors::pgvector_store().await
                    else {
                        return;
                    };
                    let world = PgVectorWorld::new(store, THRESHOLD);
                    testkit::contract::vectors::$case(&world).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    exact_below_the_threshold,
    recall_above_the_threshold,
    searches_see_only_their_space,
    small_scopes_are_never_starved,
    upsert_replaces,
    missing_names_chunks_without_vectors,
    retain_keeps_only_the_kept,
    drop_space_removes_its_vectors,
    vectors_persist_across_a_restart,
    instances_share_one_truth,
);

/// Without pgvector (the PostgreSQL on 5432), `try_new` answers `None`: the app falls back to
/// the embedded index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_is_none_without_the_extension() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    let got = store_sql::PgVectorIndex::try_new(&store, THRESHOLD)
        .await
        .expect("no error");
    assert!(got.is_none(), "5432 has no pgvector");
    let (sqlite, _dir) = testkit::sqlite_store().await;
    assert!(
        store_sql::PgVectorIndex::try_new(&sqlite, THRESHOLD)
            .await
            .expect("no error")
            .is_none()
    );
}

/// Many schemas starting at once on the pgvector PostgreSQL: the extension and the tables are
/// created once each, without a unique-violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_set_up_is_race_safe() {
    testkit::init_test_tracing();
    let mut stores = Vec::new();
    for _ in 0..4 {
        let Some(s) = testkit::contract::vectors::pgvector_store().await else {
            return;
        };
        stores.push(s);
    }
    let mut tasks = Vec::new();
    for (store, _) in &stores {
        for _ in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store_sql::PgVectorIndex::try_new(&store, THRESHOLD).await
            }));
        }
    }
    for t in tasks {
        let index = t.await.expect("joined").expect("set up");
        assert!(index.is_some());
    }
}
