//! [`OrganizationRepository`] and [`MembershipRepository`] in memory, under one lock so that
//! creating an organization with its owner and the last-owner rule are atomic.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use kernel::{Clock, Page, PageRequest, Role, TenantId, UserId};
use tenancy::{
    Member, MemberRepoError, Membership, MembershipRepository, NewOrganization, OrgName,
    OrgRepoError, OrgSlug, Organization, OrganizationRepository,
};
use time::OffsetDateTime;

use crate::identity::InMemoryUsers;

#[derive(Debug, Default)]
struct Tables {
    orgs: BTreeMap<TenantId, Organization>,
    members: BTreeMap<(TenantId, UserId), Membership>,
}

/// Organizations (ordered by id, so by creation, ids being v7) and their memberships.
#[derive(Debug)]
pub struct InMemoryOrganizations {
    rows: RwLock<Tables>,
    clock: Arc<dyn Clock>,
    users: Option<Arc<InMemoryUsers>>,
}

impl InMemoryOrganizations {
    /// An empty repository; its members list shows empty emails and names until
    /// [`InMemoryOrganizations::with_users`] says where the accounts are.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            rows: RwLock::new(Tables::default()),
            clock,
            users: None,
        }
    }

    /// The members list reads the email and name of each member from `users` (and, as SQL's
    /// join, leaves out a member whose account is not there).
    #[must_use]
    pub fn with_users(mut self, users: Arc<InMemoryUsers>) -> Self {
        self.users = Some(users);
        self
    }
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("in-memory organizations: lock poisoned")
}

fn new_org(
    tables: &Tables,
    new: NewOrganization,
    now: OffsetDateTime,
) -> Result<Organization, OrgRepoError> {
    if tables.orgs.values().any(|o| o.slug == new.slug) {
        return Err(OrgRepoError::SlugTaken);
    }
    Ok(Organization {
        id: TenantId::new(),
        name: new.name,
        slug: new.slug,
        plan: "free".to_owned(),
        created_at: now,
        settings: tenancy::OrgSettings::default(),
    })
}

#[async_trait]
impl OrganizationRepository for InMemoryOrganizations {
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        let org = new_org(&t, new, self.clock.now())?;
        t.orgs.insert(org.id, org.clone());
        Ok(org)
    }

    async fn create_with_owner(
        &self,
        new: NewOrganization,
        owner: UserId,
        max_owned: u32,
    ) -> Result<Organization, OrgRepoError> {
        // Counted and inserted under one write lock: concurrent creations cannot pass the cap.
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        let owned = t
            .members
            .values()
            .filter(|m| m.user_id == owner && m.role == Role::Owner)
            .count();
        if owned >= max_owned as usize {
            return Err(OrgRepoError::TooManyOwned);
        }
        let now = self.clock.now();
        let org = new_org(&t, new, now)?;
        t.orgs.insert(org.id, org.clone());
        t.members.insert(
            (org.id, owner),
            Membership {
                tenant_id: org.id,
                user_id: owner,
                role: Role::Owner,
                created_at: now,
            },
        );
        Ok(org)
    }

    async fn rename(
        &self,
        id: TenantId,
        name: OrgName,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        Ok(t.orgs.get_mut(&id).map(|o| {
            o.name = name;
            o.clone()
        }))
    }

    async fn with_retention(&self) -> Result<Vec<Organization>, OrgRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        Ok(t.orgs
            .values()
            .filter(|o| {
                let s = &o.settings;
                s.chat_retention_days.is_some()
                    || s.failed_documents_retention_days.is_some()
                    || s.access_trail_retention_days.is_some()
            })
            .cloned()
            .collect())
    }

    async fn set_settings(
        &self,
        id: TenantId,
        settings: tenancy::OrgSettings,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        Ok(t.orgs.get_mut(&id).map(|o| {
            o.settings = settings;
            o.clone()
        }))
    }

    async fn set_plan(
        &self,
        id: TenantId,
        plan: &str,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        Ok(t.orgs.get_mut(&id).map(|o| {
            o.plan = plan.to_owned();
            o.clone()
        }))
    }

    async fn delete(&self, id: TenantId) -> Result<bool, OrgRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        t.members.retain(|(tenant, _), _| *tenant != id);
        Ok(t.orgs.remove(&id).is_some())
    }

    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError> {
        Ok(self
            .rows
            .read()
            .map_err(|_| poisoned())?
            .orgs
            .get(&id)
            .cloned())
    }

    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        Ok(t.orgs.values().find(|o| &o.slug == slug).cloned())
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        let start = match page.after_uuid()? {
            Some(id) => std::ops::Bound::Excluded(TenantId::from_uuid(id)),
            None => std::ops::Bound::Unbounded,
        };
        let items: Vec<Organization> = t
            .orgs
            .range((start, std::ops::Bound::Unbounded))
            .take(page.limit() as usize + 1)
            .map(|(_, o)| o.clone())
            .collect();
        Ok(Page::from_overfetch(items, page, |o| o.id.to_string()))
    }
}

impl InMemoryOrganizations {
    /// Applies `change` to the tenant's memberships and undoes it if no owner is left.
    fn change_keeping_an_owner(
        &self,
        tenant: TenantId,
        user: UserId,
        change: impl FnOnce(&mut BTreeMap<(TenantId, UserId), Membership>),
    ) -> Result<(), MemberRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        if !t.members.contains_key(&(tenant, user)) {
            return Err(MemberRepoError::NotFound);
        }
        let before = t.members.clone();
        change(&mut t.members);
        let owners = t
            .members
            .values()
            .filter(|m| m.tenant_id == tenant && m.role == Role::Owner)
            .count();
        if owners == 0 {
            t.members = before;
            return Err(MemberRepoError::LastOwner);
        }
        Ok(())
    }
}

#[async_trait]
impl MembershipRepository for InMemoryOrganizations {
    async fn role_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<Role>, MemberRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        Ok(t.members.get(&(tenant, user)).map(|m| m.role))
    }

    async fn add(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        now: OffsetDateTime,
    ) -> Result<Membership, MemberRepoError> {
        let mut t = self.rows.write().map_err(|_| poisoned())?;
        Ok(t.members
            .entry((tenant, user))
            .or_insert(Membership {
                tenant_id: tenant,
                user_id: user,
                role,
                created_at: now,
            })
            .clone())
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Member>, MemberRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        let after = page.after_uuid()?.map(UserId::from_uuid);
        let mut items: Vec<Member> = Vec::new();
        for m in t
            .members
            .values()
            .filter(|m| m.tenant_id == tenant && after.is_none_or(|a| m.user_id > a))
        {
            if items.len() > page.limit() as usize {
                break;
            }
            let (email, name) = match &self.users {
                None => (String::new(), String::new()),
                Some(users) => match users.account_of(m.user_id)? {
                    Some(account) => account,
                    None => continue,
                },
            };
            items.push(Member {
                membership: m.clone(),
                email,
                name,
            });
        }
        Ok(Page::from_overfetch(items, page, |m| {
            m.membership.user_id.to_string()
        }))
    }

    async fn set_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<Membership, MemberRepoError> {
        self.change_keeping_an_owner(tenant, user, |members| {
            if let Some(m) = members.get_mut(&(tenant, user)) {
                m.role = role;
            }
        })?;
        let t = self.rows.read().map_err(|_| poisoned())?;
        t.members
            .get(&(tenant, user))
            .cloned()
            .ok_or(MemberRepoError::NotFound)
    }

    async fn remove(&self, tenant: TenantId, user: UserId) -> Result<(), MemberRepoError> {
        self.change_keeping_an_owner(tenant, user, |members| {
            members.remove(&(tenant, user));
        })
    }

    async fn for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, MemberRepoError> {
        let t = self.rows.read().map_err(|_| poisoned())?;
        let mut out: Vec<(OffsetDateTime, Organization, Role)> = t
            .members
            .values()
            .filter(|m| m.user_id == user)
            .filter_map(|m| {
                t.orgs
                    .get(&m.tenant_id)
                    .map(|o| (m.created_at, o.clone(), m.role))
            })
            .collect();
        out.sort_by_key(|(at, o, _)| (*at, o.id));
        Ok(out.into_iter().map(|(_, o, r)| (o, r)).collect())
    }
}
