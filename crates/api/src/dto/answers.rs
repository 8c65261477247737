//! What an answer carries on every wire (chat, SSE and WebSocket events, the AI routes):
//! verified citations and token counts.

use chat::{Citation, Usage};
use serde::Serialize;
use utoipa::ToSchema;

/// A verified citation: `quote` occurs in the chunk at characters `start..end`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CitationDto {
    chunk_id: String,
    document_id: String,
    document_name: String,
    /// The page the chunk starts on (PDF).
    page: Option<u32>,
    /// Exactly as in the chunk.
    quote: String,
    /// The chunk's retrieval score.
    score: f32,
    /// Character offsets of the quote in the chunk's text.
    start: u32,
    end: u32,
}

impl From<&Citation> for CitationDto {
    fn from(c: &Citation) -> Self {
        Self {
            chunk_id: c.chunk_id.to_string(),
            document_id: c.document_id.to_string(),
            document_name: c.document_name.clone(),
            page: c.page,
            quote: c.quote.clone(),
            score: c.score,
            start: c.start,
            end: c.end,
        }
    }
}

/// Tokens of one answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDto {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl From<Usage> for UsageDto {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total(),
        }
    }
}
