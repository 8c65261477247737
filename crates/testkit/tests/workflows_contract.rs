//! The workflow store's contract on every adapter: in memory, SQLite and PostgreSQL, every case
//! on a fresh store.

use testkit::contract::workflows::WorkflowPorts;

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    testkit::contract::workflows::$case(&WorkflowPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::workflows::$case(&WorkflowPorts::sql(store)).await;
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
                    testkit::contract::workflows::$case(&WorkflowPorts::sql(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    runs_round_trip_and_stay_in_their_tenant,
    claims_lease_once_and_a_dead_workers_run_is_taken_over,
    expired_archives_are_listed_until_marked_deleted,
    cancel_stops_queued_and_running_runs,
    concurrent_claims_are_exclusive,
    schedules_fire_once_under_a_race_and_after_downtime,
    schedules_stay_in_their_tenant_and_deletes_cascade,
    a_running_run_stops_at_its_next_step_when_cancelled,
    a_long_export_keeps_its_lease,
);
