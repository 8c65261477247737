//! A collection's chunking settings on the wire: a collection's own, and the defaults
//! `GET /documents/formats` reports.

use documents::{ChunkingChange, ChunkingSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A collection's chunking settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkingDto {
    /// Most tokens per chunk, 32–8192 (default 400).
    max_tokens: Option<u32>,
    /// Tokens shared by neighbouring chunks, less than half of `max_tokens` (default 40).
    overlap: Option<u32>,
    /// `cl100k_base` (default) or `o200k_base`.
    tokenizer: Option<String>,
}

impl ChunkingDto {
    pub(crate) fn into_domain(self) -> ChunkingChange {
        ChunkingChange {
            max_tokens: self.max_tokens,
            overlap: self.overlap,
            tokenizer: self.tokenizer,
        }
    }

    pub(crate) fn from_domain(c: ChunkingSettings) -> Self {
        Self {
            max_tokens: Some(c.max_tokens()),
            overlap: Some(c.overlap()),
            tokenizer: Some(c.tokenizer().as_str().to_owned()),
        }
    }
}
