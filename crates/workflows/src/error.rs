//! The one error of the workflows use cases.

use kernel::InvalidInput;

use crate::ports::StoreError;

/// What a workflows use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No such run or schedule in this organization.
    #[error("not found")]
    NotFound,
    /// The caller's role is below what the workflow needs.
    #[error("{0}")]
    Forbidden(String),
    /// A field is invalid (the workflow's name, its input, the cron expression).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The run already ended.
    #[error("{0}")]
    Conflict(String),
    /// What was asked for existed but its time is up (an expired export).
    #[error("{0}")]
    Gone(String),
    /// The organization has as many schedules as it may.
    #[error("an organization has at most {0} schedules")]
    TooMany(usize),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<StoreError> for WorkflowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => Self::Invalid(i),
            StoreError::Unknown(e) => Self::Store(e),
        }
    }
}
