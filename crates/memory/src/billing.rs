//! [`UsageLedger`] in memory: the events and the limit overrides in maps under one lock, so
//! every method is one critical section.
//!
//! The semantics are those of `store-sql` (the reference), checked by the same contract suite
//! (`testkit::contract::billing`): an event is stored once per id (a second append answers
//! `false` and changes nothing); counts above `i64::MAX` (what SQL's `BIGINT` holds) and a
//! negative cost are refused, as the SQL columns and CHECK constraints refuse them; the sums
//! count events with `at >= since`, of one tenant (or, for the platform, of every tenant),
//! grouped as the port says; a limit above `i64::MAX` is refused too. Times are compared as
//! SQL keeps them: UTC, at microsecond precision. One difference no caller should meet: a sum
//! past `i64::MAX` saturates here, where SQL answers an error.
//!
//! Deleting an organization elsewhere does not reach this ledger by itself: call
//! [`InMemoryUsageLedger::remove_tenant`] (what the SQL foreign keys do).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use anyhow::Context as _;
use async_trait::async_trait;
use billing::model::{TenantUsageRow, Totals, UsageEvent, UsageRow};
use billing::ports::{LedgerError, UsageLedger};
use kernel::{Principal, TenantId};
use time::{OffsetDateTime, UtcOffset};

#[derive(Debug, Default)]
struct Tables {
    events: HashMap<uuid::Uuid, UsageEvent>,
    limits: BTreeMap<TenantId, u64>,
}

impl Tables {
    /// `tenant`'s events at or after `since`.
    fn since(&self, tenant: TenantId, since: OffsetDateTime) -> impl Iterator<Item = &UsageEvent> {
        let since = utc_micros(since);
        self.events
            .values()
            .filter(move |e| e.tenant == tenant && e.at >= since)
    }
}

/// The usage ledger of every tenant, in maps under one lock.
#[derive(Debug, Default)]
pub struct InMemoryUsageLedger {
    tables: Mutex<Tables>,
}

impl InMemoryUsageLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> anyhow::Result<MutexGuard<'_, Tables>> {
        self.tables
            .lock()
            .map_err(|_| anyhow::anyhow!("in-memory usage ledger: lock poisoned"))
    }

    /// Removes everything of `tenant`: what deleting an organization does on SQL through its
    /// cascading foreign keys.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn remove_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        let mut t = self.lock()?;
        t.events.retain(|_, e| e.tenant != tenant);
        t.limits.remove(&tenant);
        Ok(())
    }
}

/// `t` in UTC, truncated to microseconds: as SQL keeps times.
fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    kernel::clock::truncate_to_micros(t.to_offset(UtcOffset::UTC))
}

/// `n` when SQL's `BIGINT` holds it.
fn fits_bigint(n: u64, what: &str) -> anyhow::Result<u64> {
    i64::try_from(n)
        .with_context(|| format!("in-memory usage ledger: {what} out of range: {n}"))?;
    Ok(n)
}

/// The event's sums, to add to a group's.
fn totals_of(e: &UsageEvent) -> Totals {
    Totals {
        prompt_tokens: e.prompt_tokens,
        completion_tokens: e.completion_tokens,
        cost_micros: e.cost_micros,
        events: 1,
        bytes: e.bytes,
    }
}

/// A caller as a map key (`Principal` has no order): users, then API keys, then none.
fn actor_key(actor: Option<Principal>) -> (u8, uuid::Uuid) {
    match actor {
        Some(Principal::User(u)) => (0, u.as_uuid()),
        Some(Principal::ApiKey(k)) => (1, k.as_uuid()),
        None => (2, uuid::Uuid::nil()),
    }
}

#[async_trait]
impl UsageLedger for InMemoryUsageLedger {
    async fn append(&self, event: &UsageEvent) -> Result<bool, LedgerError> {
        fits_bigint(event.prompt_tokens, "prompt tokens")?;
        fits_bigint(event.completion_tokens, "completion tokens")?;
        if event.cost_micros < 0 {
            return Err(anyhow::anyhow!(
                "in-memory usage ledger: negative cost {}",
                event.cost_micros
            )
            .into());
        }
        let mut t = self.lock()?;
        if t.events.contains_key(&event.id) {
            return Ok(false);
        }
        let mut stored = event.clone();
        stored.at = utc_micros(stored.at);
        t.events.insert(stored.id, stored);
        Ok(true)
    }

    async fn tokens_since(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
    ) -> Result<u64, LedgerError> {
        let t = self.lock()?;
        Ok(t.since(tenant, since).fold(0_u64, |sum, e| {
            sum.saturating_add(totals_of(e).total_tokens())
        }))
    }

    async fn totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
        actor: Option<Principal>,
        step: Option<time::Duration>,
    ) -> Result<Vec<UsageRow>, LedgerError> {
        let step_us = match step {
            Some(step) if step.whole_microseconds() > 0 => Some(step.whole_microseconds()),
            Some(step) => {
                return Err(anyhow::anyhow!("a series step must be positive: {step}").into());
            }
            None => None,
        };
        let start = utc_micros(since);
        let t = self.lock()?;
        let mut groups: BTreeMap<(&str, &str, (u8, uuid::Uuid), Option<u32>), UsageRow> =
            BTreeMap::new();
        for e in t
            .since(tenant, since)
            .filter(|e| actor.is_none() || e.actor == actor)
        {
            // As SQL: whole microseconds from the window's start over the step, saturating.
            let bucket = step_us.map(|step| {
                u32::try_from((e.at - start).whole_microseconds() / step).unwrap_or(u32::MAX)
            });
            groups
                .entry((
                    e.kind.as_str(),
                    e.model.as_str(),
                    actor_key(e.actor),
                    bucket,
                ))
                .or_insert_with(|| UsageRow {
                    kind: e.kind,
                    model: e.model.clone(),
                    actor: e.actor,
                    bucket,
                    totals: Totals::default(),
                })
                .totals
                .add(&totals_of(e));
        }
        Ok(groups.into_values().collect())
    }

    async fn totals_by_tenant(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<TenantUsageRow>, LedgerError> {
        let since = utc_micros(since);
        let t = self.lock()?;
        let mut groups: BTreeMap<(TenantId, &str, &str), TenantUsageRow> = BTreeMap::new();
        for e in t.events.values().filter(|e| e.at >= since) {
            groups
                .entry((e.tenant, e.kind.as_str(), e.model.as_str()))
                .or_insert_with(|| TenantUsageRow {
                    tenant: e.tenant,
                    kind: e.kind,
                    model: e.model.clone(),
                    totals: Totals::default(),
                })
                .totals
                .add(&totals_of(e));
        }
        Ok(groups.into_values().collect())
    }

    async fn limit_override(&self, tenant: TenantId) -> Result<Option<u64>, LedgerError> {
        Ok(self.lock()?.limits.get(&tenant).copied())
    }

    async fn set_limit_override(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<(), LedgerError> {
        let limit = limit
            .map(|l| fits_bigint(l, "monthly token limit"))
            .transpose()?;
        let mut t = self.lock()?;
        match limit {
            Some(limit) => {
                t.limits.insert(tenant, limit);
            }
            None => {
                t.limits.remove(&tenant);
            }
        }
        Ok(())
    }
}
