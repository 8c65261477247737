//! Tenant-scoped AI routes (`X-Tenant-ID`): the OpenAI-compatible `/ai/chat/completions`,
//! `/ai/models` and `/ai/embeddings` (an official OpenAI client with the base URL
//! `<host>/api/v1/ai` works unchanged), `/ai/config`, and the AI tasks: `/ai/summarize`,
//! `/ai/qa`, `/ai/mindmap` and `/documents/{id}/analyze`. Viewers list models and read the
//! configuration; members call them. Every error under `/ai` is OpenAI's error object
//! (`crate::error::ErrorDialect`); `/documents/{id}/analyze` answers problem+json as the rest
//! of the API.
//!
//! A streamed completion is OpenAI's server-sent events: `data: {chat.completion.chunk}` lines
//! ending with `data: [DONE]`, and a `: keep-alive` comment while the model is silent. The
//! response body owns the model's stream, so a client that goes away drops the upstream call
//! with it.
//!
//! `wire` holds OpenAI's request and response shapes, `sse` the encoder of a streamed
//! completion, `openai` the OpenAI-compatible endpoints, `config` the organization's models
//! and `/ai/config`, `tasks` the AI tasks.

mod config;
mod openai;
mod sse;
mod tasks;
mod wire;

use documents::CollectionId;
use kernel::FieldError;
use utoipa_actix_web::service_config::ServiceConfig;

use config::ai_config;
use openai::{completions, embeddings, models};
use tasks::{analyze, mindmap, qa, summarize};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(completions)
        .service(models)
        .service(embeddings)
        .service(ai_config)
        .service(summarize)
        .service(qa)
        .service(mindmap)
        .service(analyze);
}

/// Parses collection ids, naming each bad one `{field}[i]`; an empty list is refused.
fn collection_ids(
    ids: Option<Vec<String>>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<CollectionId>> {
    let ids = ids?;
    if ids.is_empty() {
        errors.push(FieldError::new(
            field,
            "must not be empty (omit it to use every collection)",
        ));
    }
    Some(crate::extract::collection_ids(&ids, field, errors))
}
