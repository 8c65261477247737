//! [`AuditLog`] on SQL: one append-only table, read newest first.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::audit::{
    AuditError, AuditEvent, AuditLog, AuditQuery, AuditRecord, ClientInfo, DocumentAccess,
};
use kernel::{ApiKeyId, Page, PageRequest, TenantId, UserId};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use crate::SqlStore;
use crate::entity::audit::{ActiveModel, Column, Entity, Model};
use crate::stored::execute_timed;

/// Known actions, so a stored name maps back to the `&'static str` of the event type.
fn action_name(stored: &str) -> &'static str {
    kernel::audit::ACTIONS
        .iter()
        .copied()
        .find(|a| *a == stored)
        .unwrap_or("unknown")
}

fn to_record(m: Model) -> AuditRecord {
    AuditRecord {
        id: m.id,
        event: AuditEvent {
            at: m.at,
            action: action_name(&m.action),
            actor: m.actor.map(UserId::from_uuid),
            tenant: m.tenant_id.map(TenantId::from_uuid),
            target: m.target,
            client: ClientInfo {
                ip: m.ip,
                user_agent: m.user_agent,
            },
            access: (m.actor_key.is_some() || m.documents.is_some() || m.request_id.is_some())
                .then(|| DocumentAccess {
                    key: m.actor_key.map(ApiKeyId::from_uuid),
                    request_id: m.request_id,
                    documents: m
                        .documents
                        .as_deref()
                        .unwrap_or("")
                        .split_ascii_whitespace()
                        .filter_map(|d| Uuid::try_parse(d).ok())
                        .collect(),
                    text: m.detail,
                }),
        },
    }
}

fn to_row(e: AuditEvent) -> ActiveModel {
    let access = e.access.unwrap_or_default();
    let documents = (!access.documents.is_empty()).then(|| {
        access
            .documents
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    });
    ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(e.at),
        action: Set(e.action.to_owned()),
        actor: Set(e.actor.map(|a| a.as_uuid())),
        tenant_id: Set(e.tenant.map(|t| t.as_uuid())),
        target: Set(e.target.map(|t| kernel::text::head(&t, 255).to_owned())),
        ip: Set(kernel::text::head(&e.client.ip, 64).to_owned()),
        user_agent: Set(e.client.user_agent),
        actor_key: Set(access.key.map(|k| k.as_uuid())),
        request_id: Set(access
            .request_id
            .map(|r| kernel::text::head(&r, 128).to_owned())),
        documents: Set(documents),
        detail: Set(access.text),
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn record(&self, e: AuditEvent) -> Result<(), AuditError> {
        crate::rls::maybe_tenant(e.tenant, async move {
            execute_timed(&self.db, &Entity::insert(to_row(e)))
                .await
                .context("appending an audit event")?;
            Ok(())
        })
        .await
    }

    async fn query(
        &self,
        q: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, AuditError> {
        crate::rls::maybe_tenant(q.tenant, async {
            let mut select = Entity::find().order_by_desc(Column::Id);
            if let Some(actor) = q.actor {
                select = select.filter(Column::Actor.eq(actor.as_uuid()));
            }
            if let Some(tenant) = q.tenant {
                select = select.filter(Column::TenantId.eq(tenant.as_uuid()));
            }
            if let Some(action) = &q.action {
                select = select.filter(Column::Action.eq(action.as_str()));
            }
            if let Some(key) = q.key {
                select = select.filter(Column::ActorKey.eq(key.as_uuid()));
            }
            if let Some(document) = q.document {
                // Ids are fixed-width, so a substring match is exact (scanned within the other
                // filters, the organization's index first).
                select = select.filter(Column::Documents.contains(document.to_string()));
            }
            if let Some(from) = q.from {
                select = select.filter(Column::At.gte(self.at(from)));
            }
            if let Some(until) = q.until {
                select = select.filter(Column::At.lt(self.at(until)));
            }
            if let Some(before) = page.after_uuid().map_err(anyhow::Error::new)? {
                select = select.filter(Column::Id.lt(before));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("reading the audit log")?;
            let records = rows.into_iter().map(to_record).collect();
            Ok(Page::from_overfetch(records, page, |r: &AuditRecord| {
                r.id.to_string()
            }))
        })
        .await
    }

    async fn record_access(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        // The batch mixes organizations and is written all or none, in one transaction that
        // starts with no tenant (row-level security on PostgreSQL: no tenant row in reach) and
        // is narrowed to each organization in turn before its share is written. An event that
        // names no organization is not an access event of anyone's: left out.
        let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<AuditEvent>> =
            std::collections::BTreeMap::new();
        for e in events {
            if let Some(t) = e.tenant {
                by_tenant.entry(t).or_default().push(e);
            }
        }
        if by_tenant.is_empty() {
            return Ok(());
        }
        // A write transaction from its start (SQLite: `BEGIN IMMEDIATE`), since it reads before it
        // writes: a deferred one would fail at once, not wait, when another writer holds the lock.
        let txn = self
            .begin_write()
            .await
            .context("beginning an audit batch")?;
        for (tenant, events) in by_tenant {
            crate::rls::narrow(&txn, tenant)
                .await
                .context("scoping an audit batch to its organization")?;
            record_access_of(&txn, tenant, events).await?;
        }
        txn.commit().await.context("committing an audit batch")?;
        Ok(())
    }

    async fn delete_access_before(
        &self,
        tenant: TenantId,
        before: time::OffsetDateTime,
    ) -> Result<u64, AuditError> {
        crate::rls::tenant(tenant, async {
            let removed = Entity::delete_many()
                .filter(Column::TenantId.eq(tenant.as_uuid()))
                .filter(Column::Action.is_in(kernel::audit::ACCESS_ACTIONS.iter().copied()))
                .filter(Column::At.lt(self.at(before)))
                .exec(&self.db)
                .await
                .context("deleting expired access events")?
                .rows_affected;
            Ok(removed)
        })
        .await
    }

    async fn erase_tenant(&self, tenant: TenantId) -> Result<u64, AuditError> {
        crate::rls::tenant(tenant, async {
            let removed = Entity::delete_many()
                .filter(Column::TenantId.eq(tenant.as_uuid()))
                .filter(Column::Action.ne(kernel::audit::ERASED))
                .exec(&self.db)
                .await
                .context("erasing an organization's audit events")?
                .rows_affected;
            Ok(removed)
        })
        .await
    }
}

/// One organization's share of an access batch, in `txn` narrowed to it. An access event
/// queued just before its organization was erased must not bring the organization's id back:
/// the events of an organization that no longer exists are left out; the question text is kept
/// only from the organization's opt-in on.
///
/// The organization's row is read with a key-share lock (PostgreSQL; SQLite's one write lock
/// already serializes the batch with the erasure), held to the batch's commit: an erasure
/// deleting the row waits for the batch, whose rows its later audit pass then deletes, and a
/// batch that comes after the deletion (committed or not yet) finds no row and writes nothing.
/// Without the lock a batch that read the row just before the deletion could commit after the
/// erasure's audit pass and leave the erased id behind.
async fn record_access_of(
    txn: &sea_orm::DatabaseTransaction,
    tenant: TenantId,
    events: Vec<AuditEvent>,
) -> Result<(), AuditError> {
    use crate::entity::organization;
    // `organizations` is not a tenant table: readable whatever the tenant.
    let Some(since) = organization::Entity::find_by_id(tenant.as_uuid())
        .select_only()
        .column(organization::Column::AuditQuestionTextSince)
        .lock(sea_orm::sea_query::LockType::KeyShare)
        .into_tuple::<Option<time::OffsetDateTime>>()
        .one(txn)
        .await
        .context("reading the organization of an audit batch")?
    else {
        return Ok(());
    };
    let rows: Vec<ActiveModel> = events
        .into_iter()
        .map(|mut e| {
            if since.is_none_or(|since| e.at < since)
                && let Some(a) = e.access.as_mut()
            {
                a.text = None;
            }
            to_row(e)
        })
        .collect();
    // A few hundred rows per statement keeps every backend under its bind-parameter limit.
    for chunk in rows.chunks(200) {
        execute_timed(txn, &Entity::insert_many(chunk.to_vec()))
            .await
            .context("appending audit events")?;
    }
    Ok(())
}
