//! Ports of the tenancy domain.

use async_trait::async_trait;
use kernel::{Page, PageRequest, TenantId};

use crate::model::{NewOrganization, OrgSlug, Organization};

/// Failures of [`OrganizationRepository`].
#[derive(Debug, thiserror::Error)]
pub enum OrgRepoError {
    /// Another organization has this slug.
    #[error("the slug is taken")]
    SlugTaken,
    /// The request was malformed (a cursor that was not made by this list).
    #[error(transparent)]
    Invalid(#[from] kernel::InvalidInput),
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores organizations.
///
/// Contract (checked on every adapter by `testkit::contract::organizations`):
/// - `create` assigns a fresh v7 id, plan `free`, and refuses a taken slug with `SlugTaken`;
/// - lookups of an unknown id or slug answer `Ok(None)`;
/// - `list` pages in creation order (ascending id) with a cursor after the last item.
///
/// # Errors
/// [`OrgRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait OrganizationRepository: Send + Sync + std::fmt::Debug {
    /// Creates an organization.
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError>;

    /// The organization with this id.
    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError>;

    /// The organization with this slug.
    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError>;

    /// All organizations, oldest first (platform admin).
    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError>;
}
