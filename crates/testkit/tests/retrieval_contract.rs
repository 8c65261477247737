//! The storage contracts of retrieval (spaces, vector rows, the keyword index, the chunk
//! catalog) on every adapter: in memory, SQLite and PostgreSQL, every case on a fresh store
//! (fresh maps; its own SQLite file; its own migrated PostgreSQL schema).

use testkit::contract::retrieval::RetrievalPorts;

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    testkit::contract::retrieval::$case(&RetrievalPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some((store, _guard)) = testkit::postgres_store().await else {
                        return;
                    };
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    spaces_one_live_per_scope_under_races,
    spaces_activate_and_replace,
    spaces_claims_and_leases,
    spaces_cascade,
    spaces_active_not_on_the_default,
    vector_rows_seq_paging_missing,
    vector_rows_retain_and_cascade,
    keyword_bm25_ranks_rare_words_first,
    keyword_is_tenant_and_collection_scoped,
    keyword_allow_is_exact,
    keyword_follows_stored_chunks,
    keyword_hostile_queries,
    keyword_unicode,
    catalog_records,
    catalog_metadata_filter,
    catalog_scan_pages,
);
