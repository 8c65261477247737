//! Invitations: an admin invites an email address with a role; the signed-in account with that
//! email accepts with the token from the mail.

use std::sync::Arc;

use kernel::audit::AuditLog;
use kernel::{ClientInfo, Clock, Page, PageRequest, Role, TenantContext, TenantId, UserId};

use crate::error::TenancyError;
use crate::events::{actor_of, tenant_event};
use crate::model::{Invitation, Organization};
use crate::ports::{
    InvitationRepository, KeySecrets, MembershipRepository, OrganizationRepository,
};

/// How long an invitation can be accepted.
const INVITATION_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Invitations: an admin invites an email address with a role; the signed-in account with
/// that email accepts with the token from the mail (or the creation response).
#[derive(Debug, Clone)]
pub struct Invitations {
    invitations: Arc<dyn InvitationRepository>,
    members: Arc<dyn MembershipRepository>,
    orgs: Arc<dyn OrganizationRepository>,
    secrets: Arc<dyn KeySecrets>,
    mailer: Arc<dyn kernel::mail::Mailer>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
}

impl Invitations {
    /// The use cases over these adapters.
    #[must_use]
    pub fn new(
        invitations: Arc<dyn InvitationRepository>,
        members: Arc<dyn MembershipRepository>,
        orgs: Arc<dyn OrganizationRepository>,
        secrets: Arc<dyn KeySecrets>,
        mailer: Arc<dyn kernel::mail::Mailer>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        Self {
            invitations,
            members,
            orgs,
            secrets,
            mailer,
            clock,
            audit,
        }
    }

    async fn record(
        &self,
        action: &'static str,
        actor: Option<UserId>,
        tenant: TenantId,
        target: String,
        client: &ClientInfo,
    ) {
        tenant_event(
            &*self.audit,
            self.clock.now(),
            action,
            actor,
            tenant,
            Some(target),
            client,
        )
        .await;
    }

    /// Invites `email` with `role` (at most the inviter's; owner only by an owner). The token
    /// is returned (shown once) and mailed.
    ///
    /// # Errors
    /// `Invalid` email or role; `Forbidden` for a role above the inviter's.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        org: &Organization,
        email: &str,
        role: Role,
        client: &ClientInfo,
    ) -> Result<(Invitation, String), TenancyError> {
        let email = identity::EmailAddress::parse(email)?;
        if !ctx.role().satisfies(role) {
            return Err(TenancyError::Forbidden(
                "an invitation cannot give a higher role than the inviter's",
            ));
        }
        let (token, hash) = self.secrets.generate("qi_")?;
        let now = self.clock.now();
        let invitation = Invitation {
            id: uuid::Uuid::now_v7(),
            tenant_id: ctx.tenant_id(),
            email: email.as_str().to_owned(),
            role,
            invited_by: actor_of(ctx),
            created_at: now,
            expires_at: now + INVITATION_TTL,
        };
        self.invitations.create(invitation.clone(), hash).await?;
        let mail = kernel::mail::Mail {
            to: invitation.email.clone(),
            subject: format!("You are invited to {} on Quire", org.name.as_str()),
            body: format!(
                "You are invited to join {} on Quire as {role}.\n\n\
                 Sign in (or sign up) with this email address and accept with this token \
                 (valid 7 days, usable once):\n\n{token}\n",
                org.name.as_str()
            ),
        };
        if let Err(e) = self.mailer.send(mail).await {
            tracing::error!(error = %e, "sending an invitation mail failed");
        }
        self.record(
            "org.invitation.created",
            actor_of(ctx),
            ctx.tenant_id(),
            format!("{role} invitation"),
            client,
        )
        .await;
        Ok((invitation, token))
    }

    /// An invitation lives only as long as its inviter's right to give it: the inviter must
    /// still be a member, with a role that invites (admin or owner) and at least the
    /// invitation's role. An inviter removed, demoted or deleted leaves no working invitation.
    async fn inviter_still_may(&self, invitation: &Invitation) -> Result<(), TenancyError> {
        let inviter_role = match invitation.invited_by {
            Some(u) => self.members.role_of(invitation.tenant_id, u).await?,
            None => None,
        };
        if inviter_role.is_some_and(|r| r.satisfies(Role::Admin) && r.satisfies(invitation.role)) {
            Ok(())
        } else {
            Err(TenancyError::Forbidden(
                "this invitation is no longer valid: whoever sent it can no longer invite with this role",
            ))
        }
    }

    /// The organization's invitations that can still be accepted (never their tokens).
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn pending(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Invitation>, TenancyError> {
        Ok(self
            .invitations
            .pending(ctx.tenant_id(), self.clock.now(), page)
            .await?)
    }

    /// Revokes a pending invitation of the organization at once.
    ///
    /// # Errors
    /// `NotFound` when the organization has no such pending invitation.
    pub async fn revoke(
        &self,
        ctx: &TenantContext,
        id: uuid::Uuid,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        if !self.invitations.revoke(ctx.tenant_id(), id).await? {
            return Err(TenancyError::NotFound);
        }
        self.record(
            "org.invitation.revoked",
            actor_of(ctx),
            ctx.tenant_id(),
            format!("invitation {id}"),
            client,
        )
        .await;
        Ok(())
    }

    /// Accepts an invitation for the signed-in `account`: it joins with the invitation's role
    /// (an existing membership is kept as it is). Only a verified owner of the invited
    /// address may: an account registered with someone else's address never proved it.
    ///
    /// # Errors
    /// `NotFound` for an unknown, used or expired token; `EmailUnverified` while the account's
    /// address is not proven; `Forbidden` when the invitation is for another email address, or its inviter can no
    /// longer give it (removed, demoted or deleted); revoked tokens are `NotFound`.
    pub async fn accept(
        &self,
        account: &identity::User,
        token: &str,
        client: &ClientInfo,
    ) -> Result<(Organization, Role), TenancyError> {
        let (user, email) = (account.id, &account.email);
        if !token.starts_with("qi_") || token.len() > 128 {
            return Err(TenancyError::NotFound);
        }
        let hash = self.secrets.hash(token);
        let now = self.clock.now();
        let invitation = self
            .invitations
            .find(&hash, now)
            .await?
            .ok_or(TenancyError::NotFound)?;
        if invitation.email != email.as_str() {
            return Err(TenancyError::Forbidden(
                "this invitation is for another email address",
            ));
        }
        if account.email_verified_at.is_none() {
            return Err(TenancyError::EmailUnverified);
        }
        self.inviter_still_may(&invitation).await?;
        if !self.invitations.accept(&hash, now).await? {
            return Err(TenancyError::NotFound);
        }
        let membership = self
            .members
            .add(invitation.tenant_id, user, invitation.role, now)
            .await?;
        let org = self
            .orgs
            .find_by_id(invitation.tenant_id)
            .await?
            .ok_or(TenancyError::NotFound)?;
        self.record(
            "org.invitation.accepted",
            Some(user),
            org.id,
            format!("as {}", membership.role),
            client,
        )
        .await;
        Ok((org, membership.role))
    }
}
