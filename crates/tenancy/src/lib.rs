//! Tenancy: organizations (the tenants), and later memberships, invitations and API keys.
//!
//! - [`model`]: validated newtypes and entities.
//! - [`ports`]: the traits this domain needs from storage.
//! - [`organizations`], [`api_keys`], [`invitations`]: the use cases; [`error`]: what they
//!   answer; [`events`]: the security events they record.

pub mod api_keys;
pub mod error;
pub mod events;
pub mod invitations;
pub mod model;
pub mod organizations;
pub mod ports;

pub use api_keys::ApiKeys;
pub use error::TenancyError;
pub use invitations::Invitations;
pub use model::{
    ApiKey, Invitation, Member, Membership, NewOrganization, OrgName, OrgSettings, OrgSlug,
    Organization, Scope, SettingsChange,
};
pub use organizations::{AccountExit, Erased, OrgRef, Organizations, tombstone_message};
pub use ports::{
    ApiKeyRepoError, ApiKeyRepository, InvitationRepository, KeyHash, KeySecrets, MemberRepoError,
    MembershipRepository, OrgRepoError, OrganizationRepository, Sealer,
};
