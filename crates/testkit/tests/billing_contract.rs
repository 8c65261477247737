//! The usage-ledger contract on every adapter: in memory, SQLite and PostgreSQL, every case on
//! a fresh store (fresh maps; its own SQLite file; its own migrated PostgreSQL schema). Then
//! what only SQL has: the table's constraints, whatever writes the row, and the migration's
//! `down`, through a second connection to the same database.

use migration::MigratorTrait as _;
use testkit::contract::billing::{BillingPorts, counted, event, world};
use testkit::contract::documents::{T0, at_ms};

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    testkit::contract::billing::$case(&BillingPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::billing::$case(&BillingPorts::sql(store)).await;
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
                    testkit::contract::billing::$case(&BillingPorts::sql(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    append_is_idempotent_by_id,
    tokens_since_counts_the_tenants_events_from_since,
    totals_group_by_kind_model_and_actor,
    totals_split_by_bucket,
    tenants_never_see_each_others_rows,
    totals_by_tenant_covers_every_tenant,
    limit_overrides_set_replace_remove,
    large_values_round_trip,
    concurrent_appends_are_all_counted,
    organization_delete_takes_its_ledger,
);

use testkit::SqlDb as Db;

/// The table refuses two actors, an unknown kind and negative counts, whatever writes the
/// row: copies of a stored event's row with one column changed.
async fn sql_constraints(db: &Db) {
    let p = BillingPorts::sql(db.store.clone());
    let w = world(&p).await;
    let stored = counted(event(w.a, Some(w.ann), at_ms(1)), 10, 5, 3);
    assert!(p.ledger.append(&stored).await.expect("append"));
    let new_id = match db.raw.get_database_backend() {
        sea_orm::DbBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    let copy = |column: &str, value: &str| {
        let columns = [
            "tenant_id",
            "user_id",
            "api_key_id",
            "model",
            "kind",
            "reference",
            "request_id",
            "prompt_tokens",
            "completion_tokens",
            "cost_micros",
            "at",
        ];
        let values: Vec<String> = columns
            .iter()
            .map(|c| {
                if *c == column {
                    value.to_owned()
                } else {
                    format!("e.{c}")
                }
            })
            .collect();
        format!(
            "INSERT INTO usage_events (id, {}) SELECT {new_id}, {} FROM usage_events AS e",
            columns.join(", "),
            values.join(", ")
        )
    };
    for (column, value) in [
        ("api_key_id", "e.user_id"),
        ("kind", "'image'"),
        ("prompt_tokens", "-1"),
        ("completion_tokens", "-1"),
        ("cost_micros", "-1"),
    ] {
        assert!(
            db.execute(&copy(column, value)).await.is_err(),
            "{column} = {value} is refused"
        );
    }
    for (column, value) in [("user_id", "NULL"), ("kind", "'embedding'")] {
        db.execute(&copy(column, value))
            .await
            .unwrap_or_else(|e| panic!("{column} = {value} is stored: {e}"));
    }
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM usage_events").await, 4);
    assert_eq!(
        p.ledger.tokens_since(w.a, T0).await.expect("tokens"),
        60,
        "the copies count, read back like any event"
    );
    assert!(
        db.execute(
            "INSERT INTO usage_limits (tenant_id, monthly_token_limit, updated_at) \
             SELECT tenant_id, -1, at FROM usage_events LIMIT 1"
        )
        .await
        .is_err(),
        "a negative limit is refused"
    );
    assert!(
        p.ledger
            .append(&event(w.a, None, at_ms(2)))
            .await
            .expect("append"),
        "the ledger still writes"
    );
    let orphan = event(kernel::TenantId::new(), None, at_ms(3));
    assert!(
        p.ledger.append(&orphan).await.is_err(),
        "an event needs its organization"
    );
}

/// The migration's `down` drops both tables, and `up` brings them back, empty.
async fn sql_down_and_up(db: &Db) {
    let p = BillingPorts::sql(db.store.clone());
    let w = world(&p).await;
    assert!(
        p.ledger
            .append(&event(w.a, None, at_ms(1)))
            .await
            .expect("append")
    );
    let tables = "SELECT COUNT(*) AS n FROM usage_events";
    assert_eq!(db.count(tables).await, 1);
    // Down to before the usage migration (and every later one, whose `down` runs too).
    let names: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let usage = names
        .iter()
        .position(|n| n == "m20261122_000014_usage")
        .expect("the usage migration");
    let undone = u32::try_from(names.len() - usage).expect("few migrations");
    migration::Migrator::down(&db.raw, Some(undone))
        .await
        .expect("down");
    assert!(db.execute(tables).await.is_err(), "usage_events is gone");
    assert!(
        db.execute("SELECT 1 FROM usage_limits").await.is_err(),
        "usage_limits is gone"
    );
    assert_eq!(
        db.store.pending_migrations().await.expect("status"),
        names[usage..].to_vec()
    );
    migration::Migrator::up(&db.raw, None).await.expect("up");
    assert_eq!(db.count(tables).await, 0);
    assert!(
        p.ledger
            .append(&event(w.a, None, at_ms(1)))
            .await
            .expect("append")
    );
    p.ledger
        .set_limit_override(w.a, Some(5))
        .await
        .expect("override");
    assert_eq!(p.ledger.limit_override(w.a).await.expect("read"), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_constraints() {
    sql_constraints(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_constraints() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    sql_constraints(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_down_and_up() {
    sql_down_and_up(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_and_up() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    sql_down_and_up(&db).await;
}
