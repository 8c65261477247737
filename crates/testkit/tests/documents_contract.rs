//! The documents storage and job queue contracts on every adapter: in memory, SQLite and
//! PostgreSQL, every case on a fresh store (fresh maps; its own SQLite file; its own
//! migrated PostgreSQL schema).

use testkit::contract::documents::DocumentPorts;

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($suite:ident :: $case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    testkit::contract::$suite::$case(&DocumentPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::$suite::$case(&DocumentPorts::of(store)).await;
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
                    testkit::contract::$suite::$case(&DocumentPorts::of(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    documents::collections_crud_and_pagination,
    documents::collections_are_tenant_scoped,
    documents::collection_stats_sum_documents,
    documents::collection_delete_takes_documents,
    documents::documents_create_find_list,
    documents::documents_are_tenant_scoped,
    documents::duplicates,
    documents::chunks_page_by_ordinal,
    documents::document_delete,
    documents::reindex,
    documents::organization_delete_takes_everything,
    documents::storage_limit_holds_under_concurrency,
    jobs::claims_are_exactly_once,
    jobs::claims_are_fair_across_tenants,
    jobs::claims_take_turns_between_tenants,
    jobs::retries_wait_for_their_time,
    jobs::outages_use_no_attempt,
    jobs::expired_leases_are_taken_over,
    jobs::complete_replaces_chunks,
    jobs::final_failures_fail_the_document,
    jobs::cancelled_jobs_are_never_claimed,
    jobs::deleted_document_claim_cannot_complete,
    jobs::claims_respect_the_cap_per_tenant,
    jobs::jobs_are_listed_per_tenant_with_filters,
);
