//! What the retrieval use cases answer.

use kernel::{InvalidInput, MeterError};

use crate::embedding::MeteredEmbedError;
use crate::ports::{EmbedError, IndexError};

/// What the retrieval use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A named collection is not the tenant's.
    #[error("not found")]
    NotFound,
    /// The embedding provider is unavailable (after its retries).
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The embedding provider refused the input.
    #[error("{0}")]
    Rejected(String),
    /// Metering refused the call (the organization's token quota is used up) or could not be
    /// reached; the provider was not called.
    #[error(transparent)]
    Metering(#[from] MeterError),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<IndexError> for RetrievalError {
    fn from(e: IndexError) -> Self {
        RetrievalError::Unknown(anyhow::Error::new(e))
    }
}

impl From<MeteredEmbedError> for RetrievalError {
    fn from(e: MeteredEmbedError) -> Self {
        match e {
            MeteredEmbedError::Metering(e) => RetrievalError::Metering(e),
            MeteredEmbedError::Embed(e) => e.into(),
        }
    }
}

impl From<EmbedError> for RetrievalError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Rejected(m) => RetrievalError::Rejected(m),
            EmbedError::Unavailable(m) => RetrievalError::ProviderUnavailable(m),
            EmbedError::Unknown(e) => RetrievalError::Unknown(e.context("embedding")),
        }
    }
}
