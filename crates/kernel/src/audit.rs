//! The audit log port: security events (sign-ins and failures, throttling, password changes,
//! role changes, deletions, admin actions) with actor, tenant, client address, user agent and
//! time. Never a secret: no password, token or key is ever part of an event.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::{ApiKeyId, TenantId, UserId};
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
    "org.settings_changed",
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
    DOCUMENT_READ,
    DOCUMENTS_SEARCHED,
    ANSWER_CITED,
];

/// Document access: a document, its chunks or its file was read (REST or MCP).
pub const DOCUMENT_READ: &str = "document.read";
/// Document access: a search ran; `documents` are the documents of its hits.
pub const DOCUMENTS_SEARCHED: &str = "document.searched";
/// Document access: an answer ended citing `documents`.
pub const ANSWER_CITED: &str = "answer.cited";
/// The document-access actions ([`AccessTrail`]), the ones retention's trail window covers.
pub const ACCESS_ACTIONS: &[&str] = &[DOCUMENT_READ, DOCUMENTS_SEARCHED, ANSWER_CITED];

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
    /// A document-access event's details (`None` for security events).
    pub access: Option<DocumentAccess>,
}

/// What a document-access event adds: the API key that acted (when a key did), the request,
/// the documents, and the question or query only when the organization opted in. Never
/// document text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentAccess {
    /// The API key that acted (its creator is not the actor: the key is).
    pub key: Option<ApiKeyId>,
    /// The HTTP request it served.
    pub request_id: Option<String>,
    /// The documents read, found or cited, without repeats, at most [`MAX_DOCUMENTS`].
    pub documents: Vec<uuid::Uuid>,
    /// The search query or question, when the organization opted in (at most
    /// [`MAX_TEXT_CHARS`] characters); `None` otherwise.
    pub text: Option<String>,
}

/// Documents one access event names at most (a search's page of hits is within it).
pub const MAX_DOCUMENTS: usize = 100;
/// Characters of a question or query an access event keeps at most.
pub const MAX_TEXT_CHARS: usize = 2_000;

impl AuditEvent {
    /// A document-access event of `ctx`'s principal in `ctx`'s organization, at `at`, in the
    /// current request ([`crate::metering::request_id`]). `documents` lose repeats and are
    /// cut to [`MAX_DOCUMENTS`]; `text` is cut to [`MAX_TEXT_CHARS`] (and stored only if the
    /// organization opted in: [`AuditLog::record_access`]).
    #[must_use]
    pub fn access(
        at: OffsetDateTime,
        ctx: &crate::TenantContext,
        action: &'static str,
        documents: impl IntoIterator<Item = uuid::Uuid>,
        text: Option<&str>,
    ) -> Self {
        let (actor, key) = match ctx.principal() {
            crate::Principal::User(u) => (Some(u), None),
            crate::Principal::ApiKey(k) => (None, Some(k)),
        };
        let mut seen = std::collections::HashSet::new();
        let documents = documents
            .into_iter()
            .filter(|d| seen.insert(*d))
            .take(MAX_DOCUMENTS)
            .collect();
        Self {
            at,
            action,
            actor,
            tenant: Some(ctx.tenant_id()),
            target: None,
            client: ClientInfo::default(),
            access: Some(DocumentAccess {
                key,
                request_id: crate::metering::request_id(),
                documents,
                text: text.map(|t| t.chars().take(MAX_TEXT_CHARS).collect()),
            }),
        }
    }
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
    /// Only access events by this API key.
    pub key: Option<ApiKeyId>,
    /// Only access events naming this document.
    pub document: Option<uuid::Uuid>,
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
    /// Appends the access trail's events (a batch of [`AccessTrail`]'s), all or none. The
    /// organization's opt-in is enforced here, the one place every access event passes:
    /// `access.text` is kept only for an organization whose settings keep question text,
    /// and events of an organization that no longer exists (erased while they waited), or
    /// that name none, are left out.
    async fn record_access(&self, events: Vec<AuditEvent>) -> Result<(), AuditError>;
    /// Retention: deletes `tenant`'s document-access events ([`ACCESS_ACTIONS`]) before
    /// `before`; returns how many. Security events are never deleted this way.
    async fn delete_access_before(
        &self,
        tenant: TenantId,
        before: OffsetDateTime,
    ) -> Result<u64, AuditError>;
}

/// Where document-access events go: `record` returns at once and cannot fail, like
/// [`crate::Events::publish`]; the adapter (`kernel::trail::BufferedTrail`) writes them to the
/// [`AuditLog`] in batches.
pub trait AccessTrail: Send + Sync + fmt::Debug {
    /// Hands `event` over.
    fn record(&self, event: AuditEvent);
}

/// Access events go nowhere (unit tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrail;

impl AccessTrail for NoTrail {
    fn record(&self, _event: AuditEvent) {}
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
        async fn record_access(&self, _: Vec<AuditEvent>) -> Result<(), AuditError> {
            Err(AuditError(anyhow::anyhow!("disk full")))
        }
        async fn delete_access_before(
            &self,
            _: TenantId,
            _: OffsetDateTime,
        ) -> Result<u64, AuditError> {
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
            access: None,
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
