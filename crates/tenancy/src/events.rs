//! The security events of an organization, shared by its use cases.

use kernel::audit::{self, AuditEvent, AuditLog};
use kernel::{ClientInfo, TenantContext, TenantId, UserId};

/// Records a security event of one organization (a failed write is logged, not returned).
pub(crate) async fn tenant_event(
    log: &dyn AuditLog,
    at: time::OffsetDateTime,
    action: &'static str,
    actor: Option<UserId>,
    tenant: TenantId,
    target: Option<String>,
    client: &ClientInfo,
) {
    audit::record(
        log,
        AuditEvent {
            at,
            action,
            actor,
            tenant: Some(tenant),
            target,
            client: client.clone(),
            access: None,
        },
    )
    .await;
}

/// The user behind a tenant context, when it is a user (not an API key).
pub(crate) fn actor_of(ctx: &TenantContext) -> Option<UserId> {
    match ctx.principal() {
        kernel::Principal::User(u) => Some(u),
        kernel::Principal::ApiKey(_) => None,
    }
}
