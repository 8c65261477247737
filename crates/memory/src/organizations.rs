//! [`OrganizationRepository`] in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use kernel::{Clock, InvalidInput, Page, PageRequest, TenantId};
use tenancy::{NewOrganization, OrgRepoError, OrgSlug, Organization, OrganizationRepository};

/// Organizations in a map ordered by id (so by creation, ids being v7).
#[derive(Debug)]
pub struct InMemoryOrganizations {
    rows: RwLock<BTreeMap<TenantId, Organization>>,
    clock: Arc<dyn Clock>,
}

impl InMemoryOrganizations {
    /// An empty repository.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            rows: RwLock::new(BTreeMap::new()),
            clock,
        }
    }
}

fn poisoned() -> OrgRepoError {
    OrgRepoError::Unknown(anyhow::anyhow!("in-memory organizations: lock poisoned"))
}

#[async_trait]
impl OrganizationRepository for InMemoryOrganizations {
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        if rows.values().any(|o| o.slug == new.slug) {
            return Err(OrgRepoError::SlugTaken);
        }
        let org = Organization {
            id: TenantId::new(),
            name: new.name,
            slug: new.slug,
            plan: "free".to_owned(),
            created_at: self.clock.now(),
        };
        rows.insert(org.id, org.clone());
        Ok(org)
    }

    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError> {
        Ok(self.rows.read().map_err(|_| poisoned())?.get(&id).cloned())
    }

    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError> {
        let rows = self.rows.read().map_err(|_| poisoned())?;
        Ok(rows.values().find(|o| &o.slug == slug).cloned())
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError> {
        let rows = self.rows.read().map_err(|_| poisoned())?;
        let start = match page.after() {
            Some(c) => std::ops::Bound::Excluded(
                TenantId::parse(c.key())
                    .map_err(|_| InvalidInput::field("cursor", "is not a valid cursor"))?,
            ),
            None => std::ops::Bound::Unbounded,
        };
        let items: Vec<Organization> = rows
            .range((start, std::ops::Bound::Unbounded))
            .take(page.limit() as usize + 1)
            .map(|(_, o)| o.clone())
            .collect();
        Ok(Page::from_overfetch(items, page, |o| o.id.to_string()))
    }
}
