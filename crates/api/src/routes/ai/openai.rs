//! The OpenAI-compatible endpoints: `/ai/chat/completions`, `/ai/models`, `/ai/embeddings`.
//! Their errors are OpenAI's error object (`crate::error::ErrorDialect`).

use actix_web::{HttpResponse, get, post, web};
use chat::Completion;

use super::config::TenantModels;
use super::sse::{CompletionEvent, sse_response};
use super::wire::{
    AssistantMessageDto, ChoiceDto, ChunkMeta, CompletionRequest, CompletionResponse, ModelDto,
    ModelList, QuireResultDto,
};
use crate::dto::embeddings::{EmbeddingsRequest, EmbeddingsResponse, embed};
use crate::error::{ApiError, OpenAiError};
use crate::extract::{Body, ValidJson};
use crate::limits::{ChatRate, EmbeddingsRate};
use crate::state::AppState;
use crate::tenant::{Member, Tenant, Viewer};

/// Reads a whole completion into OpenAI's `chat.completion`.
pub(super) async fn collected(
    completion: Completion,
    grounded: bool,
) -> Result<CompletionResponse, ApiError> {
    let Completion { model, call } = completion;
    let answer = call.read_to_end().await.map_err(chat::ChatError::from)?;
    let usage = answer.usage;
    let finish_reason = super::wire::finish_reason(&answer);
    let meta = ChunkMeta::new(&model);
    tracing::info!(%model, prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens, "completion");
    Ok(CompletionResponse {
        id: meta.id,
        object: "chat.completion",
        created: meta.created,
        quire: grounded.then(|| QuireResultDto::verified(&answer.citations)),
        model,
        choices: vec![ChoiceDto {
            index: 0,
            message: AssistantMessageDto {
                role: "assistant",
                content: answer.text,
            },
            finish_reason,
        }],
        usage: usage.into(),
    })
}

/// OpenAI-compatible chat completion, optionally grounded in the organization's documents
/// (`quire`). With `stream: true` the answer is `text/event-stream` of
/// `data: {chat.completion.chunk}` lines ending with `data: [DONE]`; a model failure
/// mid-stream sends `data: {"error": {"message", "type": "provider_unavailable"}}` and ends.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "`chat.completion`, or with `stream` an event stream of `chat.completion.chunk`",
            content((CompletionResponse = "application/json"), (CompletionEvent = "text/event-stream"))),
        (status = 400, body = OpenAiError), (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, body = OpenAiError), (status = 422, body = OpenAiError), (status = 502, body = OpenAiError),
        (status = 429, description = "rate limited (`rate_limit_error`, see Retry-After), or the monthly token quota is used up (`insufficient_quota`)", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[post(
    "/ai/chat/completions",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn completions(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    body: Body<CompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let (input, delivery) = body.into_domain()?;
    let completion = state.chat.complete(&access.ctx, input).await?;
    if delivery.stream {
        return Ok(sse_response(completion, delivery));
    }
    let response = collected(completion, delivery.grounded).await?;
    Ok(HttpResponse::Ok().json(response))
}

/// Every model this organization may use, OpenAI-shaped: its chat models (the whitelist),
/// then the deployment's embedding models (the default first). `GET /ai/config` tells them
/// apart and gives their prices.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = ModelList),
        (status = 400, description = "no `X-Tenant-ID`", body = OpenAiError),
        (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, description = "not a member of this organization", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[get("/ai/models")]
pub(super) async fn models(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
) -> Result<web::Json<ModelList>, ApiError> {
    let models = TenantModels::of(&state, access.ctx.tenant_id()).await?;
    let data = models
        .names()
        .into_iter()
        .map(|id| ModelDto {
            id: id.to_owned(),
            object: "model",
            created: 0,
            owned_by: "quire",
        })
        .collect();
    Ok(web::Json(ModelList {
        object: "list",
        data,
    }))
}

/// Embeds text: the same as `POST /embeddings`, where an OpenAI client looks for it.
#[utoipa::path(
    operation_id = "ai_embeddings",
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 400, body = OpenAiError), (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, body = OpenAiError), (status = 422, body = OpenAiError), (status = 502, body = OpenAiError),
        (status = 429, description = "rate limited (`rate_limit_error`, see Retry-After), or the monthly token quota is used up (`insufficient_quota`)", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[post(
    "/ai/embeddings",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn embeddings(
    state: web::Data<AppState>,
    access: Tenant<Member, EmbeddingsRate>,
    body: Body<EmbeddingsRequest>,
) -> Result<web::Json<EmbeddingsResponse>, ApiError> {
    let ValidJson(body) = body?;
    embed(&state.retrieval, &access.ctx, body)
        .await
        .map(web::Json)
}
