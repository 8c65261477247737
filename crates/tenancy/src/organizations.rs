//! The organization use cases. Who may call them is decided by the HTTP layer's tenant
//! extractor (a minimum role in the handler's signature); the finer rules live here: only an
//! owner grants or takes away ownership, and an organization always keeps an owner.

use std::sync::Arc;
use std::time::Duration;

use kernel::audit::AuditLog;
use kernel::cache::{Cache, CacheKey};
use kernel::memo::Memo;
use kernel::{
    ClientInfo, Clock, InvalidInput, Page, PageRequest, Role, TenantContext, TenantId, UserId,
};

use crate::error::TenancyError;
use crate::events::{actor_of, tenant_event};
use crate::model::{
    Member, Membership, NewOrganization, OrgName, OrgSettings, OrgSlug, Organization,
    SettingsChange,
};
use crate::ports::{MembershipRepository, OrgRepoError, OrganizationRepository, Sealer};
use kernel::audit::{AuditEvent, ERASED};
use kernel::erasure::TenantData;

/// The plans every deployment has (billing's configuration may add more; the HTTP layer checks
/// a plan name against billing before it is set).
pub const PLANS: &[&str] = &["free", "pro", "enterprise"];

/// How long a membership lookup is cached (changes invalidate it at once).
const MEMBERSHIP_TTL: Duration = Duration::from_secs(30);

/// How many organizations one account may own unless configured otherwise
/// (`orgs.max_owned_per_account`).
pub const DEFAULT_MAX_OWNED: u32 = 10;

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
    recent: Arc<Recent>,
    erasure: Arc<Erasure>,
}

/// What erasing an organization reaches beyond its rows, and the tombstone's sealer.
#[derive(Debug, Default)]
struct Erasure {
    data: Vec<Arc<dyn TenantData>>,
    sealer: Option<Arc<dyn Sealer>>,
}

/// What an erasure removed, by kind (`blobs`, `vector_spaces`, `cache_keys`, `audit_events`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// Counts by kind, in the order they were erased.
    pub counts: Vec<(&'static str, u64)>,
}

impl Erased {
    fn add(&mut self, kind: &'static str, n: u64) {
        match self.counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => *c += n,
            None => self.counts.push((kind, n)),
        }
    }

    fn summary(&self) -> String {
        self.counts
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The bytes an erasure tombstone's seal covers: the action, the tenant, the actor, the
/// time (whole seconds, as stored) and the counts (the target before ` seal=`).
#[must_use]
pub fn tombstone_message(event: &AuditEvent) -> Vec<u8> {
    let counts = event
        .target
        .as_deref()
        .and_then(|t| t.split(" seal=").next())
        .unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{counts}",
        event.action,
        event.tenant.map(|t| t.to_string()).unwrap_or_default(),
        event.actor.map(|a| a.to_string()).unwrap_or_default(),
        event.at.unix_timestamp(),
    )
    .into_bytes()
}

/// What the per-request lookups reuse ([`Organizations::with_recheck`]; off by default): each
/// read for at most the recheck time, and forgotten at once when anything changes through
/// these use cases ([`kernel::memo`]). Changes made through another server reach this one
/// within the recheck time (docs/security.md, "Revocation").
#[derive(Debug)]
struct Recent {
    /// Organization id or slug, as a request names it → the organization.
    orgs: Memo<String, Option<Organization>>,
    /// (organization, account) → the role.
    roles: Memo<(TenantId, UserId), Option<Role>>,
    /// Account → every organization with the role (`/auth/me`).
    mine: Memo<UserId, Vec<(Organization, Role)>>,
}

/// How many entries each of [`Recent`]'s memos keeps.
const RECENT_CAPACITY: usize = 4_096;

impl Recent {
    fn new(ttl: Duration) -> Self {
        Self {
            orgs: Memo::new(ttl, RECENT_CAPACITY),
            roles: Memo::new(ttl, RECENT_CAPACITY),
            mine: Memo::new(ttl, RECENT_CAPACITY),
        }
    }

    fn forget_all(&self) {
        self.orgs.forget_all();
        self.roles.forget_all();
        self.mine.forget_all();
    }
}

/// What an account deletion must do to organizations, found before the account goes.
#[derive(Debug, Clone, Default)]
pub struct AccountExit {
    /// Organizations left with no member: closed after the account is gone.
    pub orphans: Vec<TenantId>,
    /// Every organization the account belonged to: its cached memberships are forgotten.
    pub tenants: Vec<TenantId>,
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
            recent: Arc::new(Recent::new(Duration::ZERO)),
            erasure: Arc::new(Erasure::default()),
        }
    }

    /// These use cases erasing, with an organization, what `data` holds of it (files,
    /// vector indexes), and sealing the erasure's tombstone with `sealer` (without one, the
    /// tombstone carries no seal: `quire worker`, which erases nothing, has no signing key).
    #[must_use]
    pub fn with_erasure(
        mut self,
        data: Vec<Arc<dyn TenantData>>,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Self {
        self.erasure = Arc::new(Erasure { data, sealer });
        self
    }

    /// True when `event` is an erasure tombstone whose seal matches (no sealer: false).
    #[must_use]
    pub fn tombstone_intact(&self, event: &AuditEvent) -> bool {
        let (Some(sealer), Some(seal)) = (
            self.erasure.sealer.as_ref(),
            event
                .target
                .as_deref()
                .and_then(|t| t.split(" seal=").nth(1)),
        ) else {
            return false;
        };
        event.action == ERASED && sealer.verify(&tombstone_message(event), seal)
    }

    /// Erases what [`TenantData`] and the cache hold of `tenant`; one pass.
    async fn erase_outside(
        &self,
        tenant: TenantId,
        erased: &mut Erased,
    ) -> Result<(), TenancyError> {
        for data in &self.erasure.data {
            let n = data.erase_tenant(tenant).await.map_err(|e| {
                e.context(format!("erasing the {} of an organization", data.kind()))
            })?;
            erased.add(data.kind(), n);
        }
        let n = self
            .cache
            .purge_tenant(tenant)
            .await
            .map_err(|e| anyhow::anyhow!("purging an organization's cache keys: {e}"))?;
        erased.add("cache_keys", n);
        Ok(())
    }

    /// Erases the organization `tenant` (docs/security.md, "Erasure"), in this order:
    /// 1. what lies outside its rows (files, vector indexes, cache keys): a failure here
    ///    stops the erasure with the organization still there, and repeating it finishes;
    /// 2. its row, and with it every row of it (`ON DELETE CASCADE`): from then on no
    ///    lookup finds it, so no request or worker of it can write again (an insert fails
    ///    its foreign key);
    /// 3. step 1 again, for what a request in flight wrote between 1 and 2, and its audit
    ///    events: failures here are logged with the tenant id (nothing of it can come back);
    /// 4. a sealed `organization.erased` tombstone: the id, who, when, the counts.
    ///
    /// `false` when there was no such organization.
    async fn erase(
        &self,
        tenant: TenantId,
        actor: Option<UserId>,
        client: &ClientInfo,
    ) -> Result<bool, TenancyError> {
        let mut erased = Erased::default();
        self.erase_outside(tenant, &mut erased).await?;
        let deleted = self.orgs.delete(tenant).await?;
        self.recent.forget_all();
        if !deleted {
            return Ok(false);
        }
        if let Err(e) = self.erase_outside(tenant, &mut erased).await {
            tracing::error!(%tenant, error = %e, "the second pass of an erasure failed");
        }
        match self.audit.erase_tenant(tenant).await {
            Ok(n) => erased.add("audit_events", n),
            Err(e) => {
                tracing::error!(%tenant, error = %e, "erasing an organization's audit events failed")
            }
        }
        let mut event = AuditEvent {
            at: self
                .clock
                .now()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| self.clock.now()),
            action: ERASED,
            actor,
            tenant: Some(tenant),
            target: Some(erased.summary()),
            client: client.clone(),
            access: None,
        };
        if let Some(sealer) = &self.erasure.sealer {
            let seal = sealer.seal(&tombstone_message(&event));
            event.target = Some(format!("{} seal={seal}", erased.summary()));
        }
        kernel::audit::record(self.audit.as_ref(), event).await;
        tracing::info!(%tenant, erased = %erased.summary(), "organization erased");
        Ok(true)
    }

    /// These use cases reusing what an organization, membership or `/auth/me` lookup found
    /// for `ttl` (0 = read every time, the default), forgetting it all when anything changes
    /// through them.
    #[must_use]
    pub fn with_recheck(mut self, ttl: Duration) -> Self {
        self.recent = Arc::new(Recent::new(ttl));
        self
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
        self.recent.forget_all();
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
        let Some(reference) = OrgRef::parse(org) else {
            return Ok(None);
        };
        let now = self.clock.now();
        if let Some(found) = self.recent.orgs.get(org, now) {
            return Ok(found);
        }
        let ticket = self.recent.orgs.ticket(now);
        let found = match reference {
            OrgRef::Id(id) => self.orgs.find_by_id(id).await?,
            OrgRef::Slug(slug) => self.orgs.find_by_slug(&slug).await?,
        };
        self.recent.orgs.put(org.to_owned(), found.clone(), ticket);
        Ok(found)
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
        self.recent
            .roles
            .get_or_load((tenant, user), self.clock.now(), || {
                self.shared_role_of(tenant, user)
            })
            .await
    }

    /// [`Organizations::role_of`] through the shared cache.
    async fn shared_role_of(
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
        if role.is_none() && self.orgs.find_by_id(tenant).await?.is_none() {
            // No such organization (or an erased one): nothing is cached under its id.
            return Ok(None);
        }
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
        self.recent.forget_all();
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
        self.recent
            .mine
            .get_or_load(user, self.clock.now(), || async {
                Ok(self.members.for_user(user).await?)
            })
            .await
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
        self.recent.forget_all();
        self.audit("org.renamed", actor_of(ctx), org.id, None, client)
            .await;
        Ok(org)
    }

    /// Changes the organization's settings (the extractor checked admin or more); an empty
    /// change returns the organization as it is.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn update_settings(
        &self,
        ctx: &TenantContext,
        change: SettingsChange,
        client: &ClientInfo,
    ) -> Result<Organization, TenancyError> {
        let current = self
            .orgs
            .find_by_id(ctx.tenant_id())
            .await?
            .ok_or(TenancyError::NotFound)?;
        change.validate()?;
        if change.is_empty() {
            return Ok(current);
        }
        let settings = change.apply(current.settings, self.clock.now());
        let org = self
            .orgs
            .set_settings(ctx.tenant_id(), settings)
            .await?
            .ok_or(TenancyError::NotFound)?;
        self.recent.forget_all();
        self.audit(
            "org.settings_changed",
            actor_of(ctx),
            org.id,
            Some(settings_summary(&settings)),
            client,
        )
        .await;
        Ok(org)
    }

    /// Erases the organization and everything of it, leaving a sealed tombstone (the
    /// extractor checked owner; see `erase`).
    ///
    /// # Errors
    /// `NotFound`; `Unknown` when a store fails before the organization is gone (repeating
    /// the call finishes the erasure).
    pub async fn delete(
        &self,
        ctx: &TenantContext,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        if self.erase(ctx.tenant_id(), actor_of(ctx), client).await? {
            Ok(())
        } else {
            Err(TenancyError::NotFound)
        }
    }

    /// The members, a page at a time.
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn members(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Member>, TenancyError> {
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
                for m in members
                    .items
                    .iter()
                    .map(|m| &m.membership)
                    .filter(|m| m.user_id != user)
                {
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
            self.erase(*tenant, Some(user), &ClientInfo::default())
                .await?;
        }
        self.recent.forget_all();
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
        self.recent.forget_all();
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

/// What the audit log says of new settings (values only, never free text).
fn settings_summary(s: &OrgSettings) -> String {
    let days = |d: Option<u32>| d.map_or_else(|| "forever".to_owned(), |d| d.to_string());
    format!(
        "audit_question_text={} chat_retention_days={} failed_documents_retention_days={} access_trail_retention_days={}",
        s.audit_question_text(),
        days(s.chat_retention_days),
        days(s.failed_documents_retention_days),
        days(s.access_trail_retention_days),
    )
}
