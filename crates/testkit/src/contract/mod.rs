//! Port contract suites: each takes any adapter of a port and checks the contract its trait
//! documents. Every adapter's test calls the same suite, so adapters cannot drift apart.

pub mod audit;
pub mod billing;
pub mod blobs;
pub mod cache;
pub mod chat;
pub mod documents;
pub mod jobs;
pub mod memberships;
pub mod organizations;
pub mod retrieval;
pub mod sessions;
pub mod users;
pub mod vectors;
pub mod webhooks;
pub mod workflows;

use kernel::{Page, PageRequest, TenantId, UserId};
use tenancy::ports::{OrgRepoError, OrganizationRepository};
use tenancy::{NewOrganization, OrgName, OrgSlug, Organization};

/// What an in-memory store does when an organization is deleted (SQL cascades instead).
type OnDelete = Box<dyn Fn(TenantId) -> anyhow::Result<()> + Send + Sync>;

/// In-memory organizations whose delete also removes the tenant from the in-memory stores a
/// suite uses, as the foreign keys' cascades do on SQL.
pub(crate) struct CascadingOrganizations {
    orgs: memory::InMemoryOrganizations,
    on_delete: OnDelete,
}

impl CascadingOrganizations {
    pub(crate) fn new(orgs: memory::InMemoryOrganizations, on_delete: OnDelete) -> Self {
        Self { orgs, on_delete }
    }
}

impl std::fmt::Debug for CascadingOrganizations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CascadingOrganizations")
            .field("orgs", &self.orgs)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl OrganizationRepository for CascadingOrganizations {
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError> {
        self.orgs.create(new).await
    }

    async fn create_with_owner(
        &self,
        new: NewOrganization,
        owner: UserId,
        max_owned: u32,
    ) -> Result<Organization, OrgRepoError> {
        self.orgs.create_with_owner(new, owner, max_owned).await
    }

    async fn rename(
        &self,
        id: TenantId,
        name: OrgName,
    ) -> Result<Option<Organization>, OrgRepoError> {
        self.orgs.rename(id, name).await
    }

    async fn set_plan(
        &self,
        id: TenantId,
        plan: &str,
    ) -> Result<Option<Organization>, OrgRepoError> {
        self.orgs.set_plan(id, plan).await
    }

    async fn with_retention(&self) -> Result<Vec<Organization>, OrgRepoError> {
        self.orgs.with_retention().await
    }

    async fn set_settings(
        &self,
        id: TenantId,
        settings: tenancy::OrgSettings,
    ) -> Result<Option<Organization>, OrgRepoError> {
        self.orgs.set_settings(id, settings).await
    }

    async fn delete(&self, id: TenantId) -> Result<bool, OrgRepoError> {
        let deleted = self.orgs.delete(id).await?;
        if deleted {
            (self.on_delete)(id).map_err(OrgRepoError::Unknown)?;
        }
        Ok(deleted)
    }

    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError> {
        self.orgs.find_by_id(id).await
    }

    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError> {
        self.orgs.find_by_slug(slug).await
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError> {
        self.orgs.list(page).await
    }
}
