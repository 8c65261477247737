//! [`UsageLedger`] on SQL: [`SqlUsageLedger`], the `usage_events` ledger and the
//! `usage_limits` overrides.
//!
//! - `append` is one `INSERT … ON CONFLICT (id) DO NOTHING`: an event whose id is already
//!   there (a retried settlement) changes nothing and answers `false`, however many servers
//!   race. Events are never updated or deleted here; an organization's deletion cascades.
//! - The caller is stored as `user_id` or `api_key_id` (at most one; neither for background
//!   work), without foreign keys: the ledger outlives a deleted user or key.
//! - Counts are unsigned in the domain and `BIGINT` in SQL: a count above `i64::MAX` is
//!   refused, never wrapped; a negative cost is refused by the table's CHECK.
//! - Every sum is computed by the database (`SUM … GROUP BY`, `COALESCE` to 0, cast back to
//!   `BIGINT`, which PostgreSQL's `SUM` widens to `NUMERIC`), never by loading rows; a sum
//!   past `BIGINT` is an error, not a wrapped number.
//! - `at` is written by the one time encoder ([`at_value`]: fixed-width UTC text on
//!   SQLite, `timestamptz` on PostgreSQL), so `at >= since` is exact on both backends.
//! - A tenant's reads go through the tenant-scoping helper; [`UsageLedger::totals_by_tenant`]
//!   (platform administrators) is the one read over every tenant.

use anyhow::Context as _;
use async_trait::async_trait;
use billing::model::{TenantUsageRow, Totals, UsageEvent, UsageRow};
use billing::ports::{LedgerError, UsageLedger};
use kernel::{ApiKeyId, Principal, TenantId, UsageKind, UserId};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set, Value,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::{usage_event, usage_limit};
use crate::stored::{at_value, execute_timed, fit, utc_micros};
use crate::{SqlStore, scope};

/// The sums a grouped read selects after its group columns, in this order: prompt tokens,
/// completion tokens, cost, events.
const SUMS: [&str; 5] = [
    "CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT)",
    "CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT)",
    "CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT)",
    "CAST(COUNT(*) AS BIGINT)",
    "CAST(COALESCE(SUM(bytes), 0) AS BIGINT)",
];

/// The usage ledger on the SQL store's pool.
#[derive(Debug, Clone)]
pub struct SqlUsageLedger {
    store: SqlStore,
}

impl SqlUsageLedger {
    /// The ledger of `store` (sharing its pool; the migrations must have run).
    #[must_use]
    pub fn new(store: &SqlStore) -> Self {
        Self {
            store: store.clone(),
        }
    }

    /// `at` as stored on this backend.
    fn at(&self, t: OffsetDateTime) -> Value {
        at_value(self.store.db.get_database_backend(), t)
    }
}

// --- conversions ----------------------------------------------------------------------------

/// How the caller is stored: `(user_id, api_key_id)`.
fn actor_columns(actor: Option<Principal>) -> (Option<Uuid>, Option<Uuid>) {
    match actor {
        Some(Principal::User(u)) => (Some(u.as_uuid()), None),
        Some(Principal::ApiKey(k)) => (None, Some(k.as_uuid())),
        None => (None, None),
    }
}

fn actor_from_columns(user: Option<Uuid>, key: Option<Uuid>) -> anyhow::Result<Option<Principal>> {
    match (user, key) {
        (Some(u), None) => Ok(Some(Principal::User(UserId::from_uuid(u)))),
        (None, Some(k)) => Ok(Some(Principal::ApiKey(ApiKeyId::from_uuid(k)))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(anyhow::anyhow!(
            "stored usage events with both a user and an API key"
        )),
    }
}

fn kind_from_column(kind: &str) -> anyhow::Result<UsageKind> {
    UsageKind::parse(kind).ok_or_else(|| anyhow::anyhow!("stored usage kind {kind:?}"))
}

/// The sums of [`SUMS`] as the domain's totals.
fn totals(
    prompt: i64,
    completion: i64,
    cost: i64,
    events: i64,
    bytes: i64,
) -> anyhow::Result<Totals> {
    Ok(Totals {
        prompt_tokens: fit(prompt, "summed prompt tokens")?,
        completion_tokens: fit(completion, "summed completion tokens")?,
        cost_micros: cost,
        events: fit(events, "event count")?,
        bytes: fit(bytes, "summed bytes")?,
    })
}

/// `query` selecting only `columns`, then the sums of [`SUMS`], grouped by `columns`.
fn grouped_sums(
    query: Select<usage_event::Entity>,
    columns: &[usage_event::Column],
) -> Select<usage_event::Entity> {
    let mut query = query.select_only();
    for column in columns {
        query = query.column(*column);
    }
    for sum in SUMS {
        query = query.expr(Expr::cust(sum));
    }
    for column in columns {
        query = query.group_by(*column).order_by_asc(*column);
    }
    query
}

/// The SQL of an event's bucket: `⌊(at − since) / step⌋`, from `at` in whole microseconds
/// since the epoch (exact on both backends: SQLite reads the seconds and the fixed-width
/// fraction of the stored text, PostgreSQL's `EXTRACT(EPOCH …)` is `NUMERIC`). `since` and
/// `step` are the server's own numbers, written into the SQL as integer literals (so that
/// PostgreSQL sees the selected and the grouped expression as the same); never client input.
fn bucket_expr(
    backend: DbBackend,
    since: OffsetDateTime,
    step: time::Duration,
) -> anyhow::Result<String> {
    let since_us = i64::try_from(utc_micros(since).unix_timestamp_nanos() / 1_000)
        .context("the window's start out of range")?;
    let step_us = i64::try_from(step.whole_microseconds())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow::anyhow!("a series step must be positive: {step}"))?;
    let at_us = if backend == DbBackend::Postgres {
        "CAST(EXTRACT(EPOCH FROM \"at\") * 1000000 AS BIGINT)"
    } else {
        "(CAST(strftime('%s', \"at\") AS INTEGER) * 1000000 + CAST(substr(\"at\", 21, 6) AS INTEGER))"
    };
    Ok(format!(
        "CAST(({at_us} - {since_us}) / {step_us} AS BIGINT)"
    ))
}

// --- the port -------------------------------------------------------------------------------

#[async_trait]
impl UsageLedger for SqlUsageLedger {
    async fn append(&self, event: &UsageEvent) -> Result<bool, LedgerError> {
        crate::rls::tenant(event.tenant, async {
            let (user_id, api_key_id) = actor_columns(event.actor);
            let values: [Value; 13] = [
                event.id.into(),
                event.tenant.as_uuid().into(),
                user_id.into(),
                api_key_id.into(),
                event.model.clone().into(),
                event.kind.as_str().into(),
                event.reference.clone().into(),
                event.request_id.clone().into(),
                fit::<u64, i64>(event.prompt_tokens, "prompt tokens")?.into(),
                fit::<u64, i64>(event.completion_tokens, "completion tokens")?.into(),
                event.cost_micros.into(),
                fit::<u64, i64>(event.bytes, "bytes")?.into(),
                self.at(event.at),
            ];
            let insert = Query::insert()
                .into_table(usage_event::Entity)
                .columns([
                    usage_event::Column::Id,
                    usage_event::Column::TenantId,
                    usage_event::Column::UserId,
                    usage_event::Column::ApiKeyId,
                    usage_event::Column::Model,
                    usage_event::Column::Kind,
                    usage_event::Column::Reference,
                    usage_event::Column::RequestId,
                    usage_event::Column::PromptTokens,
                    usage_event::Column::CompletionTokens,
                    usage_event::Column::CostMicros,
                    usage_event::Column::Bytes,
                    usage_event::Column::At,
                ])
                .values(values.map(Expr::value))
                .context("building a usage event insert")?
                .on_conflict(
                    OnConflict::column(usage_event::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned();
            let inserted = self
                .store
                .db
                .execute(&insert)
                .await
                .with_context(|| format!("appending usage event {}", event.id))?
                .rows_affected();
            Ok(inserted == 1)
        })
        .await
    }

    async fn tokens_since(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
    ) -> Result<u64, LedgerError> {
        crate::rls::tenant(tenant, async {
            let (prompt, completion): (i64, i64) = scope::select::<usage_event::Entity>(tenant)
                .select_only()
                .expr(Expr::cust(SUMS[0]))
                .expr(Expr::cust(SUMS[1]))
                .filter(usage_event::Column::At.gte(self.at(since)))
                .into_tuple()
                .one(&self.store.db)
                .await
                .context("summing a tenant's tokens")?
                .unwrap_or_default();
            let prompt: u64 = fit(prompt, "summed prompt tokens")?;
            let completion: u64 = fit(completion, "summed completion tokens")?;
            Ok(prompt.saturating_add(completion))
        })
        .await
    }

    async fn totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
        actor: Option<Principal>,
        step: Option<time::Duration>,
    ) -> Result<Vec<UsageRow>, LedgerError> {
        let bucket = step
            .map(|step| bucket_expr(self.store.db.get_database_backend(), since, step))
            .transpose()?;
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<usage_event::Entity>(tenant)
                .filter(usage_event::Column::At.gte(self.at(since)));
            query = match actor {
                Some(Principal::User(u)) => {
                    query.filter(usage_event::Column::UserId.eq(u.as_uuid()))
                }
                Some(Principal::ApiKey(k)) => {
                    query.filter(usage_event::Column::ApiKeyId.eq(k.as_uuid()))
                }
                None => query,
            };
            let mut query = grouped_sums(
                query,
                &[
                    usage_event::Column::Kind,
                    usage_event::Column::Model,
                    usage_event::Column::UserId,
                    usage_event::Column::ApiKeyId,
                ],
            );
            // The bucket (or a constant 0 without a step) comes last, after the sums.
            query = match &bucket {
                Some(expr) => query
                    .expr(Expr::cust(expr.clone()))
                    .group_by(Expr::cust(expr.clone())),
                None => query.expr(Expr::cust("CAST(0 AS BIGINT)")),
            };
            let rows: Vec<(
                String,
                String,
                Option<Uuid>,
                Option<Uuid>,
                i64,
                i64,
                i64,
                i64,
                i64,
                i64,
            )> = query
                .into_tuple()
                .all(&self.store.db)
                .await
                .context("summing a tenant's usage")?;
            let rows = rows
                .into_iter()
                .map(
                    |(kind, model, user, key, prompt, completion, cost, events, bytes, index)| {
                        Ok(UsageRow {
                            kind: kind_from_column(&kind)?,
                            model,
                            actor: actor_from_columns(user, key)?,
                            // Far-future events (a skewed clock) saturate; the report clamps.
                            bucket: bucket
                                .is_some()
                                .then(|| u32::try_from(index.max(0)).unwrap_or(u32::MAX)),
                            totals: totals(prompt, completion, cost, events, bytes)?,
                        })
                    },
                )
                .collect::<anyhow::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn totals_by_tenant(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<TenantUsageRow>, LedgerError> {
        crate::rls::platform(async {
            // Every tenant's: the platform administrators' report, the one unscoped read.
            let query =
                usage_event::Entity::find().filter(usage_event::Column::At.gte(self.at(since)));
            let rows: Vec<(Uuid, String, String, i64, i64, i64, i64, i64)> = grouped_sums(
                query,
                &[
                    usage_event::Column::TenantId,
                    usage_event::Column::Kind,
                    usage_event::Column::Model,
                ],
            )
            .into_tuple()
            .all(&self.store.db)
            .await
            .context("summing every tenant's usage")?;
            let rows = rows
                .into_iter()
                .map(
                    |(tenant, kind, model, prompt, completion, cost, events, bytes)| {
                        Ok(TenantUsageRow {
                            tenant: TenantId::from_uuid(tenant),
                            kind: kind_from_column(&kind)?,
                            model,
                            totals: totals(prompt, completion, cost, events, bytes)?,
                        })
                    },
                )
                .collect::<anyhow::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn limit_override(&self, tenant: TenantId) -> Result<Option<u64>, LedgerError> {
        crate::rls::tenant(tenant, async {
            let limit = scope::select::<usage_limit::Entity>(tenant)
                .one(&self.store.db)
                .await
                .context("reading a limit override")?
                .map(|m| fit(m.monthly_token_limit, "stored monthly token limit"))
                .transpose()?;
            Ok(limit)
        })
        .await
    }

    async fn set_limit_override(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<(), LedgerError> {
        crate::rls::tenant(tenant, async {
            let Some(limit) = limit else {
                scope::delete::<usage_limit::Entity>(tenant)
                    .exec(&self.store.db)
                    .await
                    .context("removing a limit override")?;
                return Ok(());
            };
            let upsert = usage_limit::Entity::insert(usage_limit::ActiveModel {
                tenant_id: Set(tenant.as_uuid()),
                monthly_token_limit: Set(fit(limit, "monthly token limit")?),
                updated_at: Set(self.store.now()),
            })
            .on_conflict(
                OnConflict::column(usage_limit::Column::TenantId)
                    .update_columns([
                        usage_limit::Column::MonthlyTokenLimit,
                        usage_limit::Column::UpdatedAt,
                    ])
                    .to_owned(),
            );
            execute_timed(&self.store.db, &upsert)
                .await
                .context("storing a limit override")?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_columns() {
        for actor in [
            None,
            Some(Principal::User(UserId::new())),
            Some(Principal::ApiKey(ApiKeyId::new())),
        ] {
            let (user, key) = actor_columns(actor);
            assert_eq!(actor_from_columns(user, key).ok(), Some(actor));
        }
        assert!(actor_from_columns(Some(Uuid::now_v7()), Some(Uuid::now_v7())).is_err());
    }

    #[test]
    fn sums_out_of_range_are_errors() {
        assert_eq!(
            totals(1, 2, 3, 4, 5).ok(),
            Some(Totals {
                prompt_tokens: 1,
                completion_tokens: 2,
                cost_micros: 3,
                events: 4,
                bytes: 5,
            })
        );
        assert!(totals(-1, 0, 0, 1, 0).is_err());
        assert!(totals(0, -1, 0, 1, 0).is_err());
        assert!(kind_from_column("image").is_err());
    }
}
