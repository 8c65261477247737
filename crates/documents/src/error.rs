//! The one error of the documents use cases.

use kernel::InvalidInput;

use crate::ports::{BlobError, DetectError, ExtractError, StoreError};

/// What the documents use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No such collection, document or job in this tenant.
    #[error("not found")]
    NotFound,
    /// The file is larger than the limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The organization's original files would pass its plan's storage.
    #[error(
        "the organization's storage is full: {used} of {limit} bytes are used; delete documents or change the plan"
    )]
    StorageFull {
        /// The plan's storage, in bytes.
        limit: u64,
        /// Bytes already stored.
        used: u64,
    },
    /// The format is not accepted, or content and name disagree.
    #[error(transparent)]
    Unsupported(#[from] DetectError),
    /// The organization already runs as many extractions without storage
    /// (`POST /documents/extract`) as it may at once in this process.
    #[error("this organization is already extracting as many files as it may at once")]
    Busy,
    /// Extraction failed (`POST /documents/extract`).
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<StoreError> for DocumentsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => DocumentsError::Invalid(i),
            StoreError::Unknown(e) => DocumentsError::Unknown(e),
        }
    }
}

impl From<BlobError> for DocumentsError {
    fn from(e: BlobError) -> Self {
        DocumentsError::Unknown(anyhow::Error::new(e).context("blob store"))
    }
}
