//! Ports of the tenancy domain.

use async_trait::async_trait;
use kernel::{Page, PageRequest, Role, TenantId, UserId};
use time::OffsetDateTime;

use crate::model::{
    ApiKey, Member, Membership, NewOrganization, OrgName, OrgSettings, OrgSlug, Organization,
};

/// Failures of [`OrganizationRepository`].
#[derive(Debug, thiserror::Error)]
pub enum OrgRepoError {
    /// Another organization has this slug.
    #[error("the slug is taken")]
    SlugTaken,
    /// The would-be owner already owns the most organizations an account may own.
    #[error("the account owns too many organizations")]
    TooManyOwned,
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
/// - `create_with_owner` refuses with `TooManyOwned` when `owner` already owns `max_owned`
///   organizations, atomically: of concurrent creations by one account, no more than the cap
///   succeed;
/// - lookups of an unknown id or slug answer `Ok(None)`;
/// - `list` pages in creation order (ascending id) with a cursor after the last item.
///
/// # Errors
/// [`OrgRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait OrganizationRepository: Send + Sync + std::fmt::Debug {
    /// Creates an organization.
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError>;

    /// Creates an organization with `owner` as its first member (role owner), atomically,
    /// unless `owner` already owns `max_owned` organizations.
    async fn create_with_owner(
        &self,
        new: NewOrganization,
        owner: UserId,
        max_owned: u32,
    ) -> Result<Organization, OrgRepoError>;

    /// Renames an organization; `Ok(None)` when it does not exist.
    async fn rename(
        &self,
        id: TenantId,
        name: OrgName,
    ) -> Result<Option<Organization>, OrgRepoError>;

    /// Replaces an organization's settings; `Ok(None)` when it does not exist.
    async fn set_settings(
        &self,
        id: TenantId,
        settings: OrgSettings,
    ) -> Result<Option<Organization>, OrgRepoError>;

    /// Changes an organization's plan; `Ok(None)` when it does not exist.
    async fn set_plan(
        &self,
        id: TenantId,
        plan: &str,
    ) -> Result<Option<Organization>, OrgRepoError>;

    /// Deletes an organization and everything of it; `false` when it did not exist.
    async fn delete(&self, id: TenantId) -> Result<bool, OrgRepoError>;

    /// The organization with this id.
    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError>;

    /// The organization with this slug.
    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError>;

    /// The organizations with a retention window set (the retention sweep; every tenant).
    async fn with_retention(&self) -> Result<Vec<Organization>, OrgRepoError>;

    /// All organizations, oldest first (platform admin).
    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError>;
}

/// Failures of [`MembershipRepository`].
#[derive(Debug, thiserror::Error)]
pub enum MemberRepoError {
    /// The change would leave the organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// No such membership.
    #[error("no such member")]
    NotFound,
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] kernel::InvalidInput),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores memberships. Every method takes the tenant first.
///
/// Contract (`testkit::contract::memberships`): `set_role` and `remove` refuse, atomically, to
/// leave an organization without an owner (`LastOwner`), also when two owners act at once;
/// unknown members answer `NotFound`; `for_user` lists every organization of a user with the
/// role, oldest membership first.
///
/// # Errors
/// [`MemberRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait MembershipRepository: Send + Sync + std::fmt::Debug {
    /// The role of `user` in `tenant`, if a member.
    async fn role_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<Role>, MemberRepoError>;

    /// Adds a member (or changes nothing if already one).
    async fn add(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        now: OffsetDateTime,
    ) -> Result<Membership, MemberRepoError>;

    /// The members of `tenant` with their accounts' email and name (read together, in one
    /// query on SQL), in user-id order (so roughly by account age, ids being v7).
    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Member>, MemberRepoError>;

    /// Changes a member's role.
    async fn set_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<Membership, MemberRepoError>;

    /// Removes a member.
    async fn remove(&self, tenant: TenantId, user: UserId) -> Result<(), MemberRepoError>;

    /// Every organization `user` belongs to, with the role.
    async fn for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, MemberRepoError>;
}

/// The SHA-256 of an API key's secret: only this is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// Failures of [`ApiKeyRepository`].
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyRepoError {
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] kernel::InvalidInput),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores API keys. Every method but `find_by_hash` takes the tenant first; `find_by_hash` is
/// how a presented key finds its tenant.
///
/// Contract (`testkit::contract::api_keys`): revoked keys are not found by hash and not
/// listed; another tenant's key cannot be revoked or listed through this tenant.
///
/// # Errors
/// [`ApiKeyRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new key.
    async fn create(&self, key: ApiKey, hash: KeyHash) -> Result<ApiKey, ApiKeyRepoError>;
    /// The tenant's live keys, by id.
    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, ApiKeyRepoError>;
    /// Revokes a key of the tenant; `false` when there is no such live key.
    async fn revoke(
        &self,
        tenant: TenantId,
        id: kernel::ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<bool, ApiKeyRepoError>;
    /// The live key with this hash.
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, ApiKeyRepoError>;
    /// Records a use.
    async fn touch(
        &self,
        tenant: TenantId,
        id: kernel::ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<(), ApiKeyRepoError>;
}

/// Makes secrets (`prefix` + 256 random bits: `qk_` API keys, `qi_` invitations) and hashes
/// presented ones.
pub trait KeySecrets: Send + Sync + std::fmt::Debug {
    /// A new secret and its hash.
    ///
    /// # Errors
    /// When the system's random source fails.
    fn generate(&self, prefix: &'static str) -> anyhow::Result<(String, KeyHash)>;
    /// The hash of a presented secret.
    fn hash(&self, secret: &str) -> KeyHash;
}

/// Stores invitations by token hash.
///
/// Contract: `accept` spends a live invitation atomically (of concurrent callers one gets it);
/// expired, accepted, revoked or unknown tokens answer `None`; `pending` lists only the
/// tenant's live invitations (by id); `revoke` removes only the tenant's own.
///
/// # Errors
/// [`ApiKeyRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait InvitationRepository: Send + Sync + std::fmt::Debug {
    /// Stores an invitation.
    async fn create(
        &self,
        invitation: crate::model::Invitation,
        hash: KeyHash,
    ) -> Result<(), ApiKeyRepoError>;
    /// The live invitation with this token hash, if any (not spent).
    async fn find(
        &self,
        hash: &KeyHash,
        now: OffsetDateTime,
    ) -> Result<Option<crate::model::Invitation>, ApiKeyRepoError>;
    /// Marks the invitation accepted; `false` when someone else was first or it expired.
    async fn accept(&self, hash: &KeyHash, now: OffsetDateTime) -> Result<bool, ApiKeyRepoError>;
    /// The tenant's invitations that can still be accepted, by id.
    async fn pending(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<crate::model::Invitation>, ApiKeyRepoError>;
    /// Revokes (deletes) a pending invitation of the tenant; `false` when there is none.
    async fn revoke(&self, tenant: TenantId, id: uuid::Uuid) -> Result<bool, ApiKeyRepoError>;
}

/// Seals a record so that a change to it is detectable (the erasure tombstone): a keyed MAC
/// under a server secret.
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// The seal of `message` (printable, at most 80 characters).
    fn seal(&self, message: &[u8]) -> String;

    /// True when `seal` is the seal of `message` (compared in constant time).
    fn verify(&self, message: &[u8], seal: &str) -> bool;
}
