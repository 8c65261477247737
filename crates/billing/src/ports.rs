//! What billing needs from the outside: the ledger (SQL in production) and each
//! organization's plan (tenancy). Quota counters, stream slots and rate limits live in the
//! shared cache port ([`kernel::cache::Cache`]).

use std::fmt;

use async_trait::async_trait;
use kernel::{Principal, TenantId};
use time::OffsetDateTime;

use crate::model::{TenantUsageRow, UsageEvent, UsageRow};

/// The append-only usage ledger and the per-organization limit overrides.
///
/// Contract (checked by `testkit::contract::billing` on every adapter):
/// - `append` stores an event once: a second event with the same id is ignored and answers
///   `false`; events are never updated or deleted (an organization's deletion cascades);
/// - the sums count events with `at >= since`, of the given tenant only;
/// - `totals` groups by (kind, model, actor); with `actor`, only that actor's events.
#[async_trait]
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// Appends `event`; `false` when an event with its id is already there.
    async fn append(&self, event: &UsageEvent) -> anyhow::Result<bool>;

    /// Tokens (prompt + completion) billed to `tenant` since `since`.
    async fn tokens_since(&self, tenant: TenantId, since: OffsetDateTime) -> anyhow::Result<u64>;

    /// Sums of `tenant`'s events since `since` by kind, model and actor; only `actor`'s when
    /// given.
    async fn totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
        actor: Option<Principal>,
    ) -> anyhow::Result<Vec<UsageRow>>;

    /// Sums of every tenant's events since `since` by tenant, kind and model.
    async fn totals_by_tenant(&self, since: OffsetDateTime) -> anyhow::Result<Vec<TenantUsageRow>>;

    /// The monthly token limit an administrator set for `tenant` instead of its plan's.
    async fn limit_override(&self, tenant: TenantId) -> anyhow::Result<Option<u64>>;

    /// Sets (`Some`) or removes (`None`) `tenant`'s override.
    async fn set_limit_override(&self, tenant: TenantId, limit: Option<u64>) -> anyhow::Result<()>;
}

/// Each organization's plan name.
#[async_trait]
pub trait TenantPlans: Send + Sync + fmt::Debug {
    /// The plan `tenant` is on; `None` when the organization does not exist.
    async fn plan_of(&self, tenant: TenantId) -> anyhow::Result<Option<String>>;
}
