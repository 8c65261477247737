//! The one error of the webhooks use cases.

use kernel::InvalidInput;

use crate::ports::StoreError;

/// What a webhooks use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No such endpoint or attempt in this organization.
    #[error("not found")]
    NotFound,
    /// The caller's role is below admin.
    #[error("only an admin manages webhooks")]
    Forbidden,
    /// A field is invalid (the URL's destination refused included).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The organization has as many endpoints as it may.
    #[error("an organization has at most {0} webhooks")]
    TooMany(usize),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => Self::Invalid(i),
            StoreError::Unknown(e) => Self::Store(e),
        }
    }
}
