//! What billing needs from the outside: the ledger (SQL in production) and each
//! organization's plan (tenancy). Quota counters, stream slots and rate limits live in the
//! shared cache port ([`kernel::cache::Cache`]).

use std::fmt;

use async_trait::async_trait;
use kernel::{Principal, TenantId};
use time::OffsetDateTime;

use crate::model::{TenantUsageRow, UsageEvent, UsageRow};

/// What the usage ledger can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storage failed, or a value does not fit what is stored (a count above the ledger's
    /// range, a negative cost, a malformed stored row); the cause chain is logged, never
    /// shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// The append-only usage ledger and the per-organization limit overrides.
///
/// # Errors
/// Every method answers [`LedgerError::Unknown`] when storage fails.
///
/// Contract (checked by `testkit::contract::billing` on every adapter):
/// - `append` stores an event once: a second event with the same id is ignored and answers
///   `false`; events are never updated or deleted (an organization's deletion cascades);
/// - the sums count events with `at >= since`, of the given tenant only;
/// - `totals` groups by (kind, model, actor); with `actor`, only that actor's events; with
///   `step`, also by bucket `⌊(at − since) / step⌋` (exact to the microsecond), in the same
///   one query.
#[async_trait]
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// Appends `event`; `false` when an event with its id is already there.
    async fn append(&self, event: &UsageEvent) -> Result<bool, LedgerError>;

    /// Tokens (prompt + completion) billed to `tenant` since `since`.
    async fn tokens_since(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
    ) -> Result<u64, LedgerError>;

    /// Sums of `tenant`'s events since `since` by kind, model and actor; only `actor`'s when
    /// given; with `step` (positive), by bucket of that length from `since` as well.
    async fn totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
        actor: Option<Principal>,
        step: Option<time::Duration>,
    ) -> Result<Vec<UsageRow>, LedgerError>;

    /// Sums of every tenant's events since `since` by tenant, kind and model.
    async fn totals_by_tenant(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<TenantUsageRow>, LedgerError>;

    /// The monthly token limit an administrator set for `tenant` instead of its plan's.
    async fn limit_override(&self, tenant: TenantId) -> Result<Option<u64>, LedgerError>;

    /// Sets (`Some`) or removes (`None`) `tenant`'s override.
    async fn set_limit_override(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<(), LedgerError>;
}

/// Each organization's plan name.
#[async_trait]
pub trait TenantPlans: Send + Sync + fmt::Debug {
    /// The plan `tenant` is on; `None` when the organization does not exist.
    async fn plan_of(&self, tenant: TenantId) -> anyhow::Result<Option<String>>;
}
