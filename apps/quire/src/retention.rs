//! Retention: the periodic sweep that deletes, for each organization with a window set
//! (`PATCH /orgs/{org}`), its chat history, failed documents and document-access events older
//! than the window ([docs/audit.md](../../../docs/audit.md#retention)). Each deletion goes
//! through its domain's own path (failed documents through `Documents::delete_failed_before`:
//! rows, file and vectors), scoped to the one organization. The sweep is idempotent: two
//! processes running it at once delete the same rows once; `worker::sweep_retention`
//! still lets one process a round run it, through a lease in the cache.

use std::sync::Arc;

use kernel::TenantId;
use time::{Duration, OffsetDateTime};

/// What one round deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Organizations with a window.
    pub organizations: u64,
    /// Chat messages.
    pub messages: u64,
    /// Chat sessions.
    pub sessions: u64,
    /// Failed documents.
    pub documents: u64,
    /// Document-access events.
    pub access_events: u64,
}

/// The ports the sweep deletes through.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Which organizations have windows.
    pub orgs: Arc<dyn tenancy::OrganizationRepository>,
    /// Chat history.
    pub chat: Arc<dyn chat::ports::ChatStore>,
    /// Failed documents.
    pub documents: Arc<documents::Documents>,
    /// Access events.
    pub audit: Arc<dyn kernel::AuditLog>,
}

impl Retention {
    /// The sweep over the SQL store and the documents use case (its one delete path).
    #[must_use]
    pub fn over(store: &store_sql::SqlStore, documents: Arc<documents::Documents>) -> Self {
        Self {
            orgs: Arc::new(store.clone()),
            chat: Arc::new(store_sql::SqlChatStore::new(store)),
            documents,
            audit: Arc::new(store.clone()),
        }
    }
}

fn cutoff(now: OffsetDateTime, days: Option<u32>) -> Option<OffsetDateTime> {
    days.map(|d| now - Duration::days(i64::from(d)))
}

impl Retention {
    /// One round at `now`. A failure for one organization is logged and the round goes on
    /// with the next (the next round retries it).
    ///
    /// # Errors
    /// When the organizations cannot be listed.
    pub async fn sweep(&self, now: OffsetDateTime) -> anyhow::Result<Swept> {
        let orgs = self.orgs.with_retention().await?;
        let mut swept = Swept {
            organizations: orgs.len() as u64,
            ..Swept::default()
        };
        for org in orgs {
            if let Err(e) = self.sweep_one(org.id, &org.settings, now, &mut swept).await {
                tracing::warn!(tenant = %org.id, error = ?e, "a retention sweep failed; the next round retries");
            }
        }
        Ok(swept)
    }

    async fn sweep_one(
        &self,
        tenant: TenantId,
        s: &tenancy::OrgSettings,
        now: OffsetDateTime,
        swept: &mut Swept,
    ) -> anyhow::Result<()> {
        if let Some(before) = cutoff(now, s.chat_retention_days) {
            let (messages, sessions) = self.chat.delete_history_before(tenant, before).await?;
            swept.messages += messages;
            swept.sessions += sessions;
        }
        if let Some(before) = cutoff(now, s.failed_documents_retention_days) {
            swept.documents += self.documents.delete_failed_before(tenant, before).await?;
        }
        if let Some(before) = cutoff(now, s.access_trail_retention_days) {
            swept.access_events += self.audit.delete_access_before(tenant, before).await?;
        }
        Ok(())
    }
}
