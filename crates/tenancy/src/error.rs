//! What the tenancy use cases answer.

use kernel::InvalidInput;

use crate::ports::{ApiKeyRepoError, MemberRepoError, OrgRepoError};

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

impl From<ApiKeyRepoError> for TenancyError {
    fn from(e: ApiKeyRepoError) -> Self {
        match e {
            ApiKeyRepoError::Invalid(i) => TenancyError::Invalid(i),
            ApiKeyRepoError::Unknown(e) => TenancyError::Unknown(e),
        }
    }
}
