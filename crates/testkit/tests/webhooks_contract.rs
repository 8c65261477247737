//! The webhook store's contract on every adapter: in memory, SQLite and PostgreSQL, every case
//! on a fresh store.

use testkit::contract::webhooks::WebhookPorts;

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    testkit::contract::webhooks::$case(&WebhookPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::webhooks::$case(&WebhookPorts::sql(store)).await;
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
                    testkit::contract::webhooks::$case(&WebhookPorts::sql(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    endpoints_round_trip,
    tenants_never_see_each_others_webhooks,
    subscribers_are_enabled_and_subscribed,
    claims_lease_once_and_settle_needs_the_lease,
    final_states_and_order,
    attempts_are_logged_newest_first,
    concurrent_claims_are_exclusive,
    deletes_cascade,
);
