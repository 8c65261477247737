//! The audit log port: security events (sign-ins and failures, throttling, password changes,
//! role changes, deletions, admin actions) with actor, tenant, client address, user agent and
//! time. Never a secret: no password, token or key is ever part of an event.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::{TenantId, UserId};
use crate::page::{Page, PageRequest};

/// Every action name an event may carry.
pub const ACTIONS: &[&str] = &[
    "auth.registered",
    "auth.login.succeeded",
    "auth.login.failed",
    "auth.code.requested",
    "auth.code.failed",
    "auth.throttled",
    "auth.refresh.reused",
    "auth.password.changed",
    "auth.password.reset_requested",
    "auth.password.reset",
    "user.deleted",
    "org.created",
    "org.renamed",
    "org.deleted",
    "organization.erased",
    "org.member.role_changed",
    "org.member.removed",
    "org.invitation.created",
    "org.invitation.accepted",
    "org.api_key.created",
    "org.api_key.revoked",
    "admin.user.updated",
    "admin.org.updated",
    "documents.collection.deleted",
    "documents.document.deleted",
    "export.requested",
    "export.completed",
    "export.downloaded",
];

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// The client address (as the rate limits see it).
    pub ip: String,
    /// The `User-Agent`, cut to 256 characters.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// A client at `ip` with `user_agent` (cut to 256 characters, control characters dropped).
    #[must_use]
    pub fn new(ip: impl Into<String>, user_agent: Option<&str>) -> Self {
        Self {
            ip: ip.into(),
            user_agent: user_agent
                .map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect()),
        }
    }
}

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When it happened.
    pub at: OffsetDateTime,
    /// What happened: a fixed dotted name (`auth.login.failed`, `org.member.role_changed`).
    pub action: &'static str,
    /// Who did it, when known.
    pub actor: Option<UserId>,
    /// The organization concerned, if any.
    pub tenant: Option<TenantId>,
    /// What it was done to (a user id, an email domain, a role change), never a secret.
    pub target: Option<String>,
    /// Where it came from.
    pub client: ClientInfo,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id (v7: ordered by time).
    pub id: uuid::Uuid,
    /// The event.
    pub event: AuditEvent,
}

/// Filters for reading the log (platform administrators).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only this organization.
    pub tenant: Option<TenantId>,
    /// Only this action.
    pub action: Option<String>,
    /// Not before.
    pub from: Option<OffsetDateTime>,
    /// Before.
    pub until: Option<OffsetDateTime>,
}

/// The audit log failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AuditError(#[from] pub anyhow::Error);

/// The action of an erased organization's tombstone: the one event of it that erasure keeps.
pub const ERASED: &str = "organization.erased";

/// Appends and reads security events. Append-only: nothing edits an event, and only the
/// erasure of an organization deletes its events ([`AuditLog::erase_tenant`]).
///
/// # Errors
/// [`AuditError`] when storage fails.
#[async_trait]
pub trait AuditLog: Send + Sync + fmt::Debug {
    /// Appends an event.
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;
    /// Events matching `query`, newest first.
    async fn query(
        &self,
        query: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, AuditError>;
    /// Deletes every event of `tenant` but its [`ERASED`] tombstones (erasing an
    /// organization); returns how many. Deleting none succeeds.
    async fn erase_tenant(&self, tenant: TenantId) -> Result<u64, AuditError>;
}

/// Records an event, logging (never propagating) a failure: a broken audit store must not
/// stop people from signing in, and the failure is visible in the logs and metrics.
pub async fn record(log: &dyn AuditLog, event: AuditEvent) {
    let action = event.action;
    if let Err(e) = log.record(event).await {
        tracing::error!(action, error = %e, "writing an audit event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl AuditLog for Broken {
        async fn record(&self, _: AuditEvent) -> Result<(), AuditError> {
            Err(AuditError(anyhow::anyhow!("disk full")))
        }
        async fn query(
            &self,
            _: &AuditQuery,
            _: &PageRequest,
        ) -> Result<Page<AuditRecord>, AuditError> {
            Err(AuditError(anyhow::anyhow!("disk full")))
        }
        async fn erase_tenant(&self, _: TenantId) -> Result<u64, AuditError> {
            Err(AuditError(anyhow::anyhow!("disk full")))
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_logged_not_returned() {
        let event = AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            action: "auth.login.succeeded",
            actor: None,
            tenant: None,
            target: None,
            client: ClientInfo::new("127.0.0.1", None),
        };
        // `record` returns `()`: callers cannot fail because the log did.
        let () = record(&Broken, event.clone()).await;
        assert!(
            Broken.record(event).await.is_err(),
            "the adapter itself does fail"
        );
    }

    #[test]
    fn every_action_name_is_dotted_lower_case() {
        for a in ACTIONS {
            assert!(
                a.contains('.')
                    && a.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{a}"
            );
        }
    }
}
