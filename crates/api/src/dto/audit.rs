//! The audit log on the wire: `GET /admin/audit-log` (every organization) and
//! `GET /orgs/{org}/audit-log` (one organization's security and document-access events).

use kernel::audit::{AuditQuery, AuditRecord};
use kernel::{ApiKeyId, FieldError, Page, PageRequest, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::dto::PageDto;
use crate::error::ApiError;
use crate::state::AppState;

/// Audit-log filters of an organization's log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgAuditFilter {
    /// Only events by this user id.
    actor: Option<String>,
    /// Only document-access events by this API key id.
    key: Option<String>,
    /// Only this action (`document.read`, `document.searched`, `answer.cited`,
    /// `org.member.removed`, …).
    action: Option<String>,
    /// Only document-access events naming this document id.
    document: Option<String>,
    /// Not before this time (RFC 3339).
    from: Option<String>,
    /// Before this time (RFC 3339).
    until: Option<String>,
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Audit-log filters of the platform's log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only events of this organization id.
    tenant: Option<String>,
    /// Only events by this user id.
    actor: Option<String>,
    /// Only document-access events by this API key id.
    key: Option<String>,
    /// Only this action (`auth.login.failed`, `document.read`, …).
    action: Option<String>,
    /// Only document-access events naming this document id.
    document: Option<String>,
    /// Not before this time (RFC 3339).
    from: Option<String>,
    /// Before this time (RFC 3339).
    until: Option<String>,
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl From<OrgAuditFilter> for AuditFilter {
    fn from(f: OrgAuditFilter) -> Self {
        Self {
            tenant: None,
            actor: f.actor,
            key: f.key,
            action: f.action,
            document: f.document,
            from: f.from,
            until: f.until,
            limit: f.limit,
            cursor: f.cursor,
        }
    }
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    action: String,
    /// The user who acted.
    actor: Option<String>,
    /// The API key that acted (document-access events).
    actor_key: Option<String>,
    tenant: Option<String>,
    target: Option<String>,
    ip: String,
    user_agent: Option<String>,
    /// The request it served (document-access events).
    request_id: Option<String>,
    /// The documents read, found or cited (document-access events).
    documents: Vec<String>,
    /// The search query or question, only when the organization keeps them
    /// (`audit_question_text`).
    text: Option<String>,
}

impl From<AuditRecord> for AuditDto {
    fn from(r: AuditRecord) -> Self {
        let access = r.event.access.unwrap_or_default();
        Self {
            id: r.id.to_string(),
            at: r.event.at,
            action: r.event.action.to_owned(),
            actor: r.event.actor.map(|a| a.to_string()),
            actor_key: access.key.map(|k| k.to_string()),
            tenant: r.event.tenant.map(|t| t.to_string()),
            target: r.event.target,
            ip: r.event.client.ip,
            user_agent: r.event.client.user_agent,
            request_id: access.request_id,
            documents: access.documents.iter().map(ToString::to_string).collect(),
            text: access.text,
        }
    }
}

impl AuditFilter {
    fn parse(&self) -> Result<(AuditQuery, PageRequest), ApiError> {
        let mut errors = Vec::new();
        let mut time = |field: &str, v: &Option<String>| {
            v.as_deref().and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| errors.push(FieldError::new(field, "must be an RFC 3339 time")))
                    .ok()
            })
        };
        let from = time("from", &self.from);
        let until = time("until", &self.until);
        let mut id = |field: &str, v: &Option<String>, what: &str| {
            v.as_deref().and_then(|s| {
                uuid::Uuid::try_parse(s)
                    .map_err(|_| errors.push(FieldError::new(field, format!("must be {what}"))))
                    .ok()
            })
        };
        let actor = id("actor", &self.actor, "a user id").map(UserId::from_uuid);
        let tenant = id("tenant", &self.tenant, "an organization id").map(TenantId::from_uuid);
        let key = id("key", &self.key, "an API key id").map(ApiKeyId::from_uuid);
        let document = id("document", &self.document, "a document id");
        if let Some(a) = self.action.as_deref()
            && !kernel::audit::ACTIONS.contains(&a)
        {
            errors.push(FieldError::new("action", "is not a known action"));
        }
        let page = match PageRequest::parse(self.limit, self.cursor.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend(e.0);
                None
            }
        };
        if let Some(c) = page.as_ref().and_then(PageRequest::after)
            && uuid::Uuid::try_parse(c.key()).is_err()
        {
            errors.push(FieldError::new("cursor", "is not a valid cursor"));
        }
        match page {
            Some(page) if errors.is_empty() => Ok((
                AuditQuery {
                    actor,
                    tenant,
                    action: self.action.clone(),
                    from,
                    until,
                    key,
                    document,
                },
                page,
            )),
            _ => Err(ApiError::Validation(errors)),
        }
    }

    /// The page of events these filters select, `tenant` (when given) overriding the
    /// filter's own organization.
    pub(crate) async fn read(
        &self,
        state: &AppState,
        tenant: Option<TenantId>,
    ) -> Result<PageDto<AuditDto>, ApiError> {
        let (mut query, page) = self.parse()?;
        if tenant.is_some() {
            query.tenant = tenant;
        }
        let records: Page<AuditRecord> = state
            .audit
            .query(&query, &page)
            .await
            .map_err(|e| ApiError::unexpected(e.0))?;
        Ok(PageDto::from_page(records, AuditDto::from))
    }
}
