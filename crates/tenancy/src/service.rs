//! The organization use cases. Who may call them is decided by the HTTP layer's tenant
//! extractor (a minimum role in the handler's signature); the finer rules live here: only an
//! owner grants or takes away ownership, and an organization always keeps an owner.

use std::sync::Arc;
use std::time::Duration;

use kernel::audit::{self, AuditEvent, AuditLog};
use kernel::cache::{Cache, CacheKey};
use kernel::{
    ClientInfo, Clock, InvalidInput, Page, PageRequest, Role, TenantContext, TenantId, UserId,
};

use crate::model::{Membership, NewOrganization, OrgName, OrgSlug, Organization, Scope};
use crate::ports::{MemberRepoError, MembershipRepository, OrgRepoError, OrganizationRepository};

/// The plans every deployment has (billing's configuration may add more; the HTTP layer checks
/// a plan name against billing before it is set).
pub const PLANS: &[&str] = &["free", "pro", "enterprise"];

/// How long a membership lookup is cached (changes invalidate it at once).
const MEMBERSHIP_TTL: Duration = Duration::from_secs(30);

/// How many organizations one account may own unless configured otherwise
/// (`orgs.max_owned_per_account`).
pub const DEFAULT_MAX_OWNED: u32 = 10;

/// What the organization use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The slug is taken.
    #[error("the slug is taken")]
    SlugTaken,
    /// No such organization or member (or not one the caller may know of).
    #[error("not found")]
    NotFound,
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The organization must keep an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// The account's email address is not proven yet (only a verified owner of an address
    /// may accept what was sent to it).
    #[error(
        "confirm your email address first: request a code (POST /api/v1/auth/code/request) and \
         send it to POST /api/v1/auth/email/verify"
    )]
    EmailUnverified,
    /// The account already owns the most organizations it may (the cap).
    #[error(
        "an account may own at most {0} organizations: delete one or hand its ownership to someone else first"
    )]
    TooManyOrganizations(u32),
    /// The user is the only owner of an organization that has other members.
    #[error(
        "you are the only owner of {0}, which has other members: make someone else an owner first"
    )]
    SoleOwner(String),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<OrgRepoError> for TenancyError {
    fn from(e: OrgRepoError) -> Self {
        match e {
            OrgRepoError::SlugTaken => TenancyError::SlugTaken,
            // The caller that knows the cap says which it is.
            OrgRepoError::TooManyOwned => TenancyError::TooManyOrganizations(0),
            OrgRepoError::Invalid(i) => TenancyError::Invalid(i),
            OrgRepoError::Unknown(e) => TenancyError::Unknown(e),
        }
    }
}

impl From<MemberRepoError> for TenancyError {
    fn from(e: MemberRepoError) -> Self {
        match e {
            MemberRepoError::LastOwner => TenancyError::LastOwner,
            MemberRepoError::NotFound => TenancyError::NotFound,
            MemberRepoError::Invalid(i) => TenancyError::Invalid(i),
            MemberRepoError::Unknown(e) => TenancyError::Unknown(e),
        }
    }
}

/// How a request names an organization: its id or its slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    /// By id.
    Id(TenantId),
    /// By slug.
    Slug(OrgSlug),
}

impl OrgRef {
    /// Reads an id or a slug; `None` when it is neither (so it names nothing).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(id) = TenantId::parse(s) {
            return Some(OrgRef::Id(id));
        }
        OrgSlug::parse(s).ok().map(OrgRef::Slug)
    }
}

/// The organization use cases.
#[derive(Debug, Clone)]
pub struct Organizations {
    orgs: Arc<dyn OrganizationRepository>,
    members: Arc<dyn MembershipRepository>,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
    max_owned: u32,
}

/// What an account deletion must do to organizations, found before the account goes.
#[derive(Debug, Clone, Default)]
pub struct AccountExit {
    /// Organizations left with no member: closed after the account is gone.
    pub orphans: Vec<TenantId>,
    /// Every organization the account belonged to: its cached memberships are forgotten.
    pub tenants: Vec<TenantId>,
}

/// Records a security event of one organization (a failed write is logged, not returned).
async fn tenant_event(
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
        },
    )
    .await;
}

/// The user behind a tenant context, when it is a user (not an API key).
fn actor_of(ctx: &TenantContext) -> Option<UserId> {
    match ctx.principal() {
        kernel::Principal::User(u) => Some(u),
        kernel::Principal::ApiKey(_) => None,
    }
}

fn membership_key(tenant: TenantId, user: UserId) -> CacheKey {
    CacheKey::tenant(tenant, "membership", &[&user.to_string()])
}

impl Organizations {
    /// The use cases over these adapters.
    #[must_use]
    pub fn new(
        orgs: Arc<dyn OrganizationRepository>,
        members: Arc<dyn MembershipRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        Self {
            orgs,
            members,
            cache,
            clock,
            audit,
            max_owned: DEFAULT_MAX_OWNED,
        }
    }

    /// These use cases with a cap of `max_owned` organizations per owning account (at least 1).
    #[must_use]
    pub fn with_max_owned(mut self, max_owned: u32) -> Self {
        self.max_owned = max_owned.max(1);
        self
    }

    async fn audit(
        &self,
        action: &'static str,
        actor: Option<UserId>,
        tenant: TenantId,
        target: Option<String>,
        client: &ClientInfo,
    ) {
        tenant_event(
            &*self.audit,
            self.clock.now(),
            action,
            actor,
            tenant,
            target,
            client,
        )
        .await;
    }

    /// Creates an organization owned by `owner`, unless `owner` already owns the most an
    /// account may (each organization has its own free quota, so the cap bounds what one
    /// account can spend).
    ///
    /// # Errors
    /// `Invalid` with every failing field; `SlugTaken`; `TooManyOrganizations`.
    pub async fn create(
        &self,
        owner: UserId,
        name: &str,
        slug: &str,
        client: &ClientInfo,
    ) -> Result<Organization, TenancyError> {
        let name = OrgName::parse(name);
        let slug = OrgSlug::parse(slug);
        let (name, slug) = match (name, slug) {
            (Ok(n), Ok(s)) => (n, s),
            (n, s) => {
                let mut errors = Vec::new();
                for e in [n.err(), s.err()].into_iter().flatten() {
                    errors.extend(e.0);
                }
                return Err(TenancyError::Invalid(InvalidInput(errors)));
            }
        };
        let org = self
            .orgs
            .create_with_owner(NewOrganization { name, slug }, owner, self.max_owned)
            .await
            .map_err(|e| match e {
                OrgRepoError::TooManyOwned => TenancyError::TooManyOrganizations(self.max_owned),
                e => e.into(),
            })?;
        self.audit(
            "org.created",
            Some(owner),
            org.id,
            Some(org.slug.as_str().to_owned()),
            client,
        )
        .await;
        Ok(org)
    }

    /// Resolves `org` for `user`: the organization and the user's role in it. Anything the
    /// user is not a member of is `NotFound`, so nobody learns that another tenant's
    /// organization exists.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn resolve(
        &self,
        org: &str,
        user: UserId,
    ) -> Result<(Organization, Role), TenancyError> {
        let org = self.find(org).await?.ok_or(TenancyError::NotFound)?;
        let role = self
            .role_of(org.id, user)
            .await?
            .ok_or(TenancyError::NotFound)?;
        Ok((org, role))
    }

    /// The organization named by an id or a slug, whoever asks (callers check access).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn find(&self, org: &str) -> Result<Option<Organization>, TenancyError> {
        Ok(match OrgRef::parse(org) {
            None => None,
            Some(OrgRef::Id(id)) => self.orgs.find_by_id(id).await?,
            Some(OrgRef::Slug(slug)) => self.orgs.find_by_slug(&slug).await?,
        })
    }

    /// The user's role in `tenant`, cached briefly (every change invalidates it).
    ///
    /// # Errors
    /// When storage fails (a cache failure falls back to storage).
    pub async fn role_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<Role>, TenancyError> {
        let key = membership_key(tenant, user);
        if let Ok(Some(bytes)) = self.cache.get(&key).await {
            let cached = std::str::from_utf8(&bytes).ok();
            match cached {
                Some("-") => return Ok(None),
                Some(r) => {
                    if let Ok(role) = r.parse() {
                        return Ok(Some(role));
                    }
                }
                None => {}
            }
        }
        let role = self.members.role_of(tenant, user).await?;
        let value = role.map_or("-", Role::as_str);
        if let Err(e) = self.cache.set(&key, value.as_bytes(), MEMBERSHIP_TTL).await {
            tracing::warn!(error = %e, "caching a membership failed");
        }
        Ok(role)
    }

    /// Forgets the cached membership of `user` in `tenant` after it was added elsewhere (an
    /// invitation accepted), so a cached "not a member" does not linger.
    pub async fn member_added(&self, tenant: TenantId, user: UserId) {
        self.forget(tenant, user).await;
    }

    async fn forget(&self, tenant: TenantId, user: UserId) {
        if let Err(e) = self.cache.delete(&membership_key(tenant, user)).await {
            tracing::warn!(error = %e, "invalidating a cached membership failed");
        }
    }

    /// The organizations `user` belongs to, with the role, a page at a time (by id).
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn for_user(
        &self,
        user: UserId,
        page: &PageRequest,
    ) -> Result<Page<(Organization, Role)>, TenancyError> {
        let mut all = self.members.for_user(user).await?;
        all.sort_by_key(|(o, _)| o.id);
        let after = page.after_uuid()?.map(TenantId::from_uuid);
        let rows: Vec<_> = all
            .into_iter()
            .filter(|(o, _)| after.is_none_or(|a| o.id > a))
            .take(page.limit() as usize + 1)
            .collect();
        Ok(Page::from_overfetch(rows, page, |(o, _)| o.id.to_string()))
    }

    /// Every organization of `user`, with the role (for `/auth/me`).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn all_for_user(
        &self,
        user: UserId,
    ) -> Result<Vec<(Organization, Role)>, TenancyError> {
        Ok(self.members.for_user(user).await?)
    }

    /// Renames the organization (the extractor checked admin or more).
    ///
    /// # Errors
    /// `Invalid`, `NotFound`.
    pub async fn rename(
        &self,
        ctx: &TenantContext,
        name: &str,
        client: &ClientInfo,
    ) -> Result<Organization, TenancyError> {
        let name = OrgName::parse(name)?;
        let org = self
            .orgs
            .rename(ctx.tenant_id(), name)
            .await?
            .ok_or(TenancyError::NotFound)?;
        self.audit("org.renamed", actor_of(ctx), org.id, None, client)
            .await;
        Ok(org)
    }

    /// Deletes the organization and everything in it (the extractor checked owner).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete(
        &self,
        ctx: &TenantContext,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        if !self.orgs.delete(ctx.tenant_id()).await? {
            return Err(TenancyError::NotFound);
        }
        self.audit("org.deleted", actor_of(ctx), ctx.tenant_id(), None, client)
            .await;
        Ok(())
    }

    /// The members, a page at a time.
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn members(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Membership>, TenancyError> {
        Ok(self.members.list(ctx.tenant_id(), page).await?)
    }

    /// Changes a member's role. Admins manage members; only an owner grants or takes away
    /// ownership; the last owner stays.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `LastOwner`.
    pub async fn set_role(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
        client: &ClientInfo,
    ) -> Result<Membership, TenancyError> {
        let current = self
            .members
            .role_of(ctx.tenant_id(), user)
            .await?
            .ok_or(TenancyError::NotFound)?;
        if (role == Role::Owner || current == Role::Owner) && ctx.role() != Role::Owner {
            return Err(TenancyError::Forbidden(
                "only an owner grants or takes away ownership",
            ));
        }
        let m = self.members.set_role(ctx.tenant_id(), user, role).await?;
        self.forget(ctx.tenant_id(), user).await;
        let change = format!("user {user}: {current} -> {role}");
        self.audit(
            "org.member.role_changed",
            actor_of(ctx),
            ctx.tenant_id(),
            Some(change),
            client,
        )
        .await;
        Ok(m)
    }

    /// Removes a member: an admin removes others, anyone may leave; only an owner removes an
    /// owner; the last owner stays.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `LastOwner`.
    pub async fn remove(
        &self,
        ctx: &TenantContext,
        actor: Option<UserId>,
        user: UserId,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        let current = self
            .members
            .role_of(ctx.tenant_id(), user)
            .await?
            .ok_or(TenancyError::NotFound)?;
        let leaving = actor == Some(user);
        if !leaving && !ctx.role().satisfies(Role::Admin) {
            return Err(TenancyError::Forbidden(
                "only an admin removes other members",
            ));
        }
        if current == Role::Owner && !leaving && ctx.role() != Role::Owner {
            return Err(TenancyError::Forbidden("only an owner removes an owner"));
        }
        self.members.remove(ctx.tenant_id(), user).await?;
        self.forget(ctx.tenant_id(), user).await;
        self.audit(
            "org.member.removed",
            actor,
            ctx.tenant_id(),
            Some(format!("user {user}")),
            client,
        )
        .await;
        Ok(())
    }

    /// Checks that `user` may delete their account, and returns what must follow the
    /// deletion ([`Organizations::after_account_deletion`]): the organizations that would be
    /// left with no member, and every organization of the account.
    ///
    /// # Errors
    /// `SoleOwner` naming the first organization where `user` is the only owner and others
    /// are members.
    pub async fn before_account_deletion(&self, user: UserId) -> Result<AccountExit, TenancyError> {
        let mut to_close = Vec::new();
        let mut tenants = Vec::new();
        for (org, role) in self.members.for_user(user).await? {
            tenants.push(org.id);
            let (mut owners, mut others) = (0usize, 0usize);
            let mut page = PageRequest::first(100)?;
            loop {
                let members = self.members.list(org.id, &page).await?;
                for m in members.items.iter().filter(|m| m.user_id != user) {
                    others += 1;
                    if m.role == Role::Owner {
                        owners += 1;
                    }
                }
                match members.next_cursor {
                    Some(c) => page = page.next(c),
                    None => break,
                }
            }
            if others == 0 {
                to_close.push(org.id);
            } else if role == Role::Owner && owners == 0 {
                return Err(TenancyError::SoleOwner(org.slug.as_str().to_owned()));
            }
        }
        Ok(AccountExit {
            orphans: to_close,
            tenants,
        })
    }

    /// After an account is deleted: forgets its cached memberships (so its API keys and any
    /// open access die at once, not when the cache entry expires) and deletes organizations
    /// it left without members.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn after_account_deletion(
        &self,
        user: UserId,
        exit: &AccountExit,
    ) -> Result<(), TenancyError> {
        for tenant in &exit.tenants {
            self.forget(*tenant, user).await;
        }
        for tenant in &exit.orphans {
            self.orgs.delete(*tenant).await?;
        }
        Ok(())
    }

    /// Every organization, by id (platform administrators).
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn admin_list(&self, page: &PageRequest) -> Result<Page<Organization>, TenancyError> {
        Ok(self.orgs.list(page).await?)
    }

    /// Changes an organization's plan (platform administrators).
    ///
    /// `plan` must be one of billing's configured plans (the caller checks it); here it must
    /// only look like a plan name: 1 to 40 lower-case letters, digits, `-` or `_`.
    ///
    /// # Errors
    /// `Invalid` for a malformed plan name; `NotFound`.
    pub async fn admin_set_plan(
        &self,
        admin: UserId,
        id: TenantId,
        plan: &str,
        client: &ClientInfo,
    ) -> Result<Organization, TenancyError> {
        let well_formed = (1..=40).contains(&plan.len())
            && plan
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(InvalidInput::field(
                "plan",
                "must be 1 to 40 lower-case letters, digits, - or _",
            )
            .into());
        }
        let org = self
            .orgs
            .set_plan(id, plan)
            .await?
            .ok_or(TenancyError::NotFound)?;
        self.audit(
            "admin.org.updated",
            Some(admin),
            id,
            Some(format!("plan={plan}")),
            client,
        )
        .await;
        Ok(org)
    }

    /// The clock (for callers that stamp new rows).
    #[must_use]
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }
}

/// API keys of organizations: a key acts for exactly its organization, with its role.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    keys: Arc<dyn crate::ports::ApiKeyRepository>,
    secrets: Arc<dyn crate::ports::KeySecrets>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
}

/// Longest key name.
const MAX_KEY_NAME: usize = 100;

impl From<crate::ports::ApiKeyRepoError> for TenancyError {
    fn from(e: crate::ports::ApiKeyRepoError) -> Self {
        match e {
            crate::ports::ApiKeyRepoError::Invalid(i) => TenancyError::Invalid(i),
            crate::ports::ApiKeyRepoError::Unknown(e) => TenancyError::Unknown(e),
        }
    }
}

impl ApiKeys {
    /// The use cases over these adapters.
    #[must_use]
    pub fn new(
        keys: Arc<dyn crate::ports::ApiKeyRepository>,
        secrets: Arc<dyn crate::ports::KeySecrets>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        Self {
            keys,
            secrets,
            clock,
            audit,
        }
    }

    /// Creates a key; returns it and its secret (shown once). A key's role is at most the
    /// creator's and never `owner`; its scopes are `scopes`, or [`Scope::defaults_for`] its
    /// role when `None`, and each must be allowed to the key's role (so never more than the
    /// creator's role allows).
    ///
    /// # Errors
    /// `Invalid` name, role or scopes; `Forbidden` for a role above the creator's.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        name: &str,
        role: Role,
        scopes: Option<Vec<Scope>>,
        client: &ClientInfo,
    ) -> Result<(crate::model::ApiKey, String), TenancyError> {
        let name = kernel::text::clean_name(name);
        let name = name.as_str();
        if name.is_empty()
            || name.chars().count() > MAX_KEY_NAME
            || name.chars().any(char::is_control)
        {
            return Err(InvalidInput::field(
                "name",
                "must be 1 to 100 characters, no control characters",
            )
            .into());
        }
        if role == Role::Owner {
            return Err(InvalidInput::field("role", "an API key cannot be an owner").into());
        }
        if !ctx.role().satisfies(role) {
            return Err(TenancyError::Forbidden(
                "a key cannot have a higher role than its creator",
            ));
        }
        let mut scopes = scopes.unwrap_or_else(|| Scope::defaults_for(role));
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(InvalidInput::field("scopes", "must name at least one scope").into());
        }
        if let Some(s) = scopes.iter().find(|s| !role.satisfies(s.min_role())) {
            return Err(InvalidInput::field(
                "scopes",
                format!("{s} needs a key role of at least {}", s.min_role()),
            )
            .into());
        }
        let (secret, hash) = self.secrets.generate("qk_")?;
        let now = self.clock.now();
        let key = crate::model::ApiKey {
            id: kernel::ApiKeyId::new(),
            tenant_id: ctx.tenant_id(),
            name: name.to_owned(),
            role,
            scopes,
            prefix: secret.chars().take(11).collect(),
            created_by: actor_of(ctx),
            created_at: now,
            last_used_at: None,
        };
        let key = self.keys.create(key, hash).await?;
        let target = format!("key {} ({role}; {})", key.id, Scope::join(&key.scopes));
        tenant_event(
            &*self.audit,
            now,
            "org.api_key.created",
            actor_of(ctx),
            ctx.tenant_id(),
            Some(target),
            client,
        )
        .await;
        Ok((key, secret))
    }

    /// The organization's live keys.
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<crate::model::ApiKey>, TenancyError> {
        Ok(self.keys.list(ctx.tenant_id(), page).await?)
    }

    /// Revokes a key of the organization at once.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke(
        &self,
        ctx: &TenantContext,
        id: kernel::ApiKeyId,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        let now = self.clock.now();
        if !self.keys.revoke(ctx.tenant_id(), id, now).await? {
            return Err(TenancyError::NotFound);
        }
        let target = format!("key {id}");
        tenant_event(
            &*self.audit,
            now,
            "org.api_key.revoked",
            actor_of(ctx),
            ctx.tenant_id(),
            Some(target),
            client,
        )
        .await;
        Ok(())
    }

    /// The live key behind a presented secret, if any (recording the use at most once a
    /// minute).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn authenticate(
        &self,
        secret: &str,
    ) -> Result<Option<crate::model::ApiKey>, TenancyError> {
        if !secret.starts_with("qk_") || secret.len() > 128 {
            return Ok(None);
        }
        let Some(key) = self.keys.find_by_hash(&self.secrets.hash(secret)).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if key
            .last_used_at
            .is_none_or(|t| now - t > time::Duration::minutes(1))
        {
            self.keys.touch(key.tenant_id, key.id, now).await?;
        }
        Ok(Some(key))
    }
}

/// How long an invitation can be accepted.
const INVITATION_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Invitations: an admin invites an email address with a role; the signed-in account with
/// that email accepts with the token from the mail (or the creation response).
#[derive(Debug, Clone)]
pub struct Invitations {
    invitations: Arc<dyn crate::ports::InvitationRepository>,
    members: Arc<dyn MembershipRepository>,
    orgs: Arc<dyn OrganizationRepository>,
    secrets: Arc<dyn crate::ports::KeySecrets>,
    mailer: Arc<dyn kernel::mail::Mailer>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
}

impl Invitations {
    /// The use cases over these adapters.
    #[must_use]
    pub fn new(
        invitations: Arc<dyn crate::ports::InvitationRepository>,
        members: Arc<dyn MembershipRepository>,
        orgs: Arc<dyn OrganizationRepository>,
        secrets: Arc<dyn crate::ports::KeySecrets>,
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
    ) -> Result<(crate::model::Invitation, String), TenancyError> {
        let email = identity::EmailAddress::parse(email)?;
        if !ctx.role().satisfies(role) {
            return Err(TenancyError::Forbidden(
                "an invitation cannot give a higher role than the inviter's",
            ));
        }
        let (token, hash) = self.secrets.generate("qi_")?;
        let now = self.clock.now();
        let invitation = crate::model::Invitation {
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
    async fn inviter_still_may(
        &self,
        invitation: &crate::model::Invitation,
    ) -> Result<(), TenancyError> {
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
    ) -> Result<Page<crate::model::Invitation>, TenancyError> {
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
