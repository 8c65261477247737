//! [`AuditLog`] in memory (domain tests).

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use kernel::audit::{AuditError, AuditEvent, AuditLog, AuditQuery, AuditRecord};
use kernel::{Page, PageRequest};

/// Events in a vector, appended under a lock.
#[derive(Debug, Default)]
pub struct InMemoryAudit {
    events: Mutex<Vec<AuditRecord>>,
}

impl InMemoryAudit {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AuditLog for InMemoryAudit {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(AuditRecord {
                id: uuid::Uuid::now_v7(),
                event,
            });
        Ok(())
    }

    async fn query(
        &self,
        q: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, AuditError> {
        let before = match page.after() {
            Some(c) => Some(uuid::Uuid::try_parse(c.key()).map_err(|e| AuditError(e.into()))?),
            None => None,
        };
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let rows: Vec<AuditRecord> = events
            .iter()
            .rev()
            .filter(|r| before.is_none_or(|b| r.id < b))
            .filter(|r| q.actor.is_none_or(|a| r.event.actor == Some(a)))
            .filter(|r| q.tenant.is_none_or(|t| r.event.tenant == Some(t)))
            .filter(|r| q.action.as_deref().is_none_or(|a| r.event.action == a))
            .filter(|r| {
                q.key
                    .is_none_or(|k| r.event.access.as_ref().and_then(|a| a.key) == Some(k))
            })
            .filter(|r| {
                q.document.is_none_or(|d| {
                    r.event
                        .access
                        .as_ref()
                        .is_some_and(|a| a.documents.contains(&d))
                })
            })
            .filter(|r| q.from.is_none_or(|f| r.event.at >= f))
            .filter(|r| q.until.is_none_or(|u| r.event.at < u))
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page, |r| r.id.to_string()))
    }

    /// No organization here opts in: `access.text` is never kept.
    async fn record_access(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        for mut e in events {
            if let Some(a) = e.access.as_mut() {
                a.text = None;
            }
            self.record(e).await?;
        }
        Ok(())
    }

    async fn delete_access_before(
        &self,
        tenant: kernel::TenantId,
        before: time::OffsetDateTime,
    ) -> Result<u64, AuditError> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let len = events.len();
        events.retain(|r| {
            r.event.tenant != Some(tenant)
                || !kernel::audit::ACCESS_ACTIONS.contains(&r.event.action)
                || r.event.at >= before
        });
        Ok((len - events.len()) as u64)
    }

    async fn erase_tenant(&self, tenant: kernel::TenantId) -> Result<u64, AuditError> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let before = events.len();
        events
            .retain(|r| r.event.tenant != Some(tenant) || r.event.action == kernel::audit::ERASED);
        Ok((before - events.len()) as u64)
    }
}
