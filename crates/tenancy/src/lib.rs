//! Tenancy: organizations (the tenants), and later memberships, invitations and API keys.
//!
//! - [`model`]: validated newtypes and entities.
//! - [`ports`]: the traits this domain needs from storage.

pub mod model;
pub mod ports;
pub mod service;

pub use model::{
    ApiKey, Invitation, Membership, NewOrganization, OrgName, OrgSlug, Organization, Scope,
};
pub use ports::{
    ApiKeyRepoError, ApiKeyRepository, InvitationRepository, KeyHash, KeySecrets, MemberRepoError,
    MembershipRepository, OrgRepoError, OrganizationRepository,
};
pub use service::{AccountExit, ApiKeys, Invitations, OrgRef, Organizations, TenancyError};
