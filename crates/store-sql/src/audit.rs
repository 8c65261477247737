//! [`AuditLog`] on SQL: one append-only table, read newest first.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::audit::{AuditError, AuditEvent, AuditLog, AuditQuery, AuditRecord, ClientInfo};
use kernel::{Page, PageRequest, TenantId, UserId};
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
        },
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn record(&self, e: AuditEvent) -> Result<(), AuditError> {
        crate::rls::maybe_tenant(e.tenant, async {
            let row = ActiveModel {
                id: Set(Uuid::now_v7()),
                at: Set(e.at),
                action: Set(e.action.to_owned()),
                actor: Set(e.actor.map(|a| a.as_uuid())),
                tenant_id: Set(e.tenant.map(|t| t.as_uuid())),
                target: Set(e.target.map(|t| kernel::text::head(&t, 255).to_owned())),
                ip: Set(kernel::text::head(&e.client.ip, 64).to_owned()),
                user_agent: Set(e.client.user_agent),
            };
            execute_timed(&self.db, &Entity::insert(row))
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
