//! Tenant-scoped AI routes (`X-Tenant-ID`): the OpenAI-compatible `/ai/chat/completions`,
//! `/ai/models` and `/ai/embeddings` (an official OpenAI client with the base URL
//! `<host>/api/v1/ai` works unchanged), and the AI tasks: `/ai/summarize`, `/ai/qa`,
//! `/ai/mindmap` and `/documents/{id}/analyze`. Viewers list models; members call them.
//!
//! A streamed completion is OpenAI's server-sent events: `data: {chat.completion.chunk}` lines
//! ending with `data: [DONE]`, and a `: keep-alive` comment while the model is silent. The
//! response body owns the model's stream, so a client that goes away drops the upstream call
//! with it.

use std::time::Duration;

use actix_web::{HttpResponse, get, post, web};
use chat::{
    AnalysisTask, Answer, CallEvent, Citation, Completion, CompletionInput, Grounding, MindNode,
    ModelCall, PromptMessage, PromptRole, SummaryStyle, TaskInput,
};
use documents::{CollectionId, DocumentId};
use kernel::{FieldError, InvalidInput};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::chat::{CitationDto, UsageDto};
use super::retrieval::{self, EmbeddingsRequest, EmbeddingsResponse};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, ValidJson};
use crate::limits::{ChatRate, EmbeddingsRate};
use crate::state::AppState;
use crate::tenant::{Member, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(completions)
        .service(models)
        .service(embeddings)
        .service(summarize)
        .service(qa)
        .service(mindmap)
        .service(analyze);
}

/// The `type` of the error event that ends a stream the model broke.
const STREAM_ERROR_TYPE: &str = "provider_unavailable";

/// A streamed completion whose model is silent this long sends an SSE comment. actix notices
/// that a client went away only when a write fails (actix-web#1313), so without it a stalled
/// model would keep its upstream call open for a client long gone.
const HEARTBEAT: Duration = Duration::from_secs(2);

// --- shared DTOs ---------------------------------------------------------------------------

/// What grounded answers add to OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuireResultDto {
    /// The answer's verified citations (unverifiable ones are dropped).
    citations: Vec<CitationDto>,
}

impl QuireResultDto {
    fn verified(citations: &[Citation]) -> Self {
        Self {
            citations: citations.iter().map(CitationDto::from).collect(),
        }
    }
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

/// What an AI task reads: exactly one of `first` and `document_id`.
fn task_input(
    first: (&str, Option<String>),
    document_id: Option<String>,
    errors: &mut Vec<FieldError>,
    make: fn(String) -> TaskInput,
) -> Option<TaskInput> {
    let (name, value) = first;
    match (value, document_id) {
        (Some(v), None) => Some(make(v)),
        (None, Some(d)) => match DocumentId::parse(&d) {
            Ok(id) => Some(TaskInput::Document(id)),
            Err(_) => {
                errors.push(FieldError::new("document_id", "must be a document id"));
                None
            }
        },
        _ => {
            let message = format!("give exactly one of {name} and document_id");
            errors.push(FieldError::new(name, message.clone()));
            errors.push(FieldError::new("document_id", message));
            None
        }
    }
}

// --- completions ---------------------------------------------------------------------------

/// Text, or OpenAI's content parts (only `text` parts are supported).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// `[{type: "text", text}]`.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// Must be `text`.
    #[serde(rename = "type")]
    kind: String,
    /// The text.
    text: Option<String>,
}

/// One message of the conversation (other OpenAI fields, such as `name`, are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    role: String,
    /// The text; `null` reads as empty.
    content: Option<MessageContent>,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    include_usage: Option<bool>,
}

/// Quire's extension of the completion request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuireOptions {
    /// Only these collections (every document of the organization when absent).
    collection_ids: Option<Vec<String>>,
    /// Chunks to retrieve, 1 to 50 (default 8).
    top_k: Option<u32>,
}

/// `POST /ai/chat/completions`: OpenAI's request. Fields Quire does not use (`top_p`, `user`,
/// `seed`, …) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema, validator::Validate)]
pub struct CompletionRequest {
    /// A model of `GET /ai/models`.
    model: String,
    /// The conversation, oldest first: 1 to 500 messages.
    messages: Vec<CompletionMessage>,
    /// Stream `chat.completion.chunk` events (default false).
    stream: Option<bool>,
    /// Sampling temperature, 0 to 2.
    temperature: Option<f32>,
    /// Most tokens to produce, 1 to 32,768 (OpenAI's older name).
    max_tokens: Option<u32>,
    /// Most tokens to produce (wins over `max_tokens`).
    max_completion_tokens: Option<u32>,
    /// With `stream`: `include_usage` adds a last chunk with the usage.
    stream_options: Option<StreamOptions>,
    /// Number of choices: only 1.
    n: Option<u32>,
    /// Ground the answer in the organization's documents and return verified citations in
    /// `quire.citations` (with the OpenAI Python client: `extra_body={"quire": {...}}`).
    quire: Option<QuireOptions>,
}

/// How a completion is answered.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    stream: bool,
    include_usage: bool,
    grounded: bool,
}

fn prompt_message(
    i: usize,
    m: CompletionMessage,
    errors: &mut Vec<FieldError>,
) -> Option<PromptMessage> {
    let role = match m.role.as_str() {
        "system" | "developer" => Some(PromptRole::System),
        "user" => Some(PromptRole::User),
        "assistant" => Some(PromptRole::Assistant),
        _ => {
            errors.push(FieldError::new(
                format!("messages[{i}].role"),
                "must be system, developer, user or assistant",
            ));
            None
        }
    };
    let content = match m.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t,
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => texts.push(t),
                    _ => errors.push(FieldError::new(
                        format!("messages[{i}].content[{j}]"),
                        "only text parts ({\"type\": \"text\", \"text\": …}) are supported",
                    )),
                }
            }
            texts.join("\n")
        }
    };
    Some(PromptMessage::new(role?, content))
}

impl CompletionRequest {
    fn into_domain(self) -> Result<(CompletionInput, Delivery), ApiError> {
        let mut errors = Vec::new();
        if self.n.is_some_and(|n| n != 1) {
            errors.push(FieldError::new("n", "only 1 choice is supported"));
        }
        let messages: Vec<PromptMessage> = self
            .messages
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| prompt_message(i, m, &mut errors))
            .collect();
        let grounding = self.quire.map(|q| Grounding {
            collections: collection_ids(q.collection_ids, "quire.collection_ids", &mut errors),
            top_k: q.top_k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        });
        if !errors.is_empty() {
            return Err(InvalidInput(errors).into());
        }
        let delivery = Delivery {
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            grounded: grounding.is_some(),
        };
        let input = CompletionInput {
            model: self.model,
            messages,
            temperature: self.temperature,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            grounding,
        };
        Ok((input, delivery))
    }
}

/// The assistant's message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessageDto {
    /// Always `assistant`.
    role: &'static str,
    /// The answer (grounded answers cite sources as `[S1]`).
    content: String,
}

/// The one choice.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChoiceDto {
    index: u32,
    message: AssistantMessageDto,
    /// Always `stop`.
    finish_reason: &'static str,
}

/// OpenAI's `chat.completion`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionResponse {
    /// `chatcmpl-<uuid>`.
    id: String,
    /// Always `chat.completion`.
    object: &'static str,
    /// Unix seconds.
    created: i64,
    model: String,
    choices: Vec<ChoiceDto>,
    usage: UsageDto,
    /// Present when the request was grounded (`quire` given).
    #[serde(skip_serializing_if = "Option::is_none")]
    quire: Option<QuireResultDto>,
}

/// What every chunk of one completion shares.
#[derive(Debug, Clone)]
struct ChunkMeta {
    id: String,
    created: i64,
    model: String,
}

impl ChunkMeta {
    fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            model: model.to_owned(),
        }
    }
}

/// A `chat.completion.chunk`.
#[derive(Debug, Serialize)]
struct ChunkDto<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quire: Option<QuireResultDto>,
}

#[derive(Debug, Serialize)]
struct ChunkChoice {
    index: u32,
    delta: DeltaDto,
    finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
struct DeltaDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// `data: <json>` and a blank line.
fn sse_frame(value: &impl Serialize) -> web::Bytes {
    match serde_json::to_string(value) {
        Ok(json) => web::Bytes::from(format!("data: {json}\n\n")),
        Err(e) => {
            tracing::error!(error = %e, "a stream event could not be serialized");
            error_frame("an event could not be encoded")
        }
    }
}

/// The event that ends a stream the model broke (the OpenAI client raises it as an error).
fn error_frame(message: &str) -> web::Bytes {
    sse_frame(&serde_json::json!({
        "error": {"message": message, "type": STREAM_ERROR_TYPE}
    }))
}

/// Where a streamed completion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Body,
    Finish,
    Usage,
    Done,
    End,
}

/// A streamed completion: the model call, and its answer once it is done.
struct Streamed {
    call: ModelCall,
    meta: ChunkMeta,
    delivery: Delivery,
    phase: Phase,
    answer: Answer,
}

impl Streamed {
    fn chunk(&self, delta: DeltaDto, finish: Option<&'static str>) -> ChunkDto<'_> {
        ChunkDto {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
            quire: None,
        }
    }

    /// The next content chunk (or a heartbeat comment); `None` (in phase `Finish`) once the
    /// model is done, or the error frame (then phase `End`) when it broke.
    async fn next_delta(&mut self) -> Option<web::Bytes> {
        let Ok(next) = tokio::time::timeout(HEARTBEAT, self.call.next()).await else {
            return Some(web::Bytes::from_static(b": keep-alive\n\n"));
        };
        match next {
            Some(CallEvent::Delta(t)) => {
                let delta = DeltaDto {
                    role: None,
                    content: Some(t),
                };
                Some(sse_frame(&self.chunk(delta, None)))
            }
            Some(CallEvent::Finished(answer)) => {
                self.answer = answer;
                self.phase = Phase::Finish;
                None
            }
            Some(CallEvent::Failed(f)) => {
                tracing::warn!(error = %f.error, "the model stream broke");
                self.phase = Phase::End;
                Some(error_frame(&f.error.to_string()))
            }
            None => {
                self.phase = Phase::End;
                None
            }
        }
    }

    /// The next frame, or `None` after the last.
    async fn next_frame(&mut self) -> Option<web::Bytes> {
        if self.phase == Phase::Body
            && let Some(frame) = self.next_delta().await
        {
            return Some(frame);
        }
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Body;
                let delta = DeltaDto {
                    role: Some("assistant"),
                    content: Some(String::new()),
                };
                Some(sse_frame(&self.chunk(delta, None)))
            }
            Phase::Finish => {
                self.phase = if self.delivery.include_usage {
                    Phase::Usage
                } else {
                    Phase::Done
                };
                let usage = self.answer.usage;
                tracing::info!(
                    model = %self.meta.model,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    "completion streamed"
                );
                let mut chunk = self.chunk(DeltaDto::default(), Some("stop"));
                if self.delivery.grounded {
                    chunk.quire = Some(QuireResultDto::verified(&self.answer.citations));
                }
                Some(sse_frame(&chunk))
            }
            Phase::Usage => {
                self.phase = Phase::Done;
                let mut chunk = self.chunk(DeltaDto::default(), None);
                chunk.choices.clear();
                chunk.usage = Some(self.answer.usage.into());
                Some(sse_frame(&chunk))
            }
            Phase::Done => {
                self.phase = Phase::End;
                Some(web::Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Phase::Body | Phase::End => None,
        }
    }
}

/// The `text/event-stream` response of a streamed completion.
fn sse_response(completion: Completion, delivery: Delivery) -> HttpResponse {
    let state = Streamed {
        meta: ChunkMeta::new(&completion.model),
        call: completion.call,
        delivery,
        phase: Phase::Start,
        answer: Answer::default(),
    };
    let span = tracing::Span::current();
    let frames = futures_util::stream::unfold(state, move |mut s| {
        async move {
            let frame = s.next_frame().await?;
            Some((Ok::<_, ApiError>(frame), s))
        }
        .instrument(span.clone())
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(frames)
}

/// Reads a whole completion into OpenAI's `chat.completion`.
async fn collected(completion: Completion, grounded: bool) -> Result<CompletionResponse, ApiError> {
    let Completion { model, call } = completion;
    let answer = call.read_to_end().await.map_err(chat::ChatError::from)?;
    let usage = answer.usage;
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
            finish_reason: "stop",
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
            content((CompletionResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/ai/chat/completions")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn completions(
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

// --- models and embeddings -----------------------------------------------------------------

/// One model, OpenAI-shaped.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    /// The name to send as `model`.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Always 0.
    created: i64,
    /// Always `quire`.
    owned_by: &'static str,
}

/// OpenAI's model list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<ModelDto>,
}

/// The models this organization may use (its whitelist), OpenAI-shaped.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses((status = 200, body = ModelList), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/ai/models")]
async fn models(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
) -> Result<web::Json<ModelList>, ApiError> {
    let names = state.chat.allowed_models(access.ctx.tenant_id()).await?;
    let data = names
        .into_iter()
        .map(|id| ModelDto {
            id,
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
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/ai/embeddings")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn embeddings(
    state: web::Data<AppState>,
    access: Tenant<Member, EmbeddingsRate>,
    body: Body<EmbeddingsRequest>,
) -> Result<web::Json<EmbeddingsResponse>, ApiError> {
    let ValidJson(body) = body?;
    retrieval::embed(&state, &access.ctx, body)
        .await
        .map(web::Json)
}

// --- AI tasks ------------------------------------------------------------------------------

/// `POST /ai/summarize`: exactly one of `text` and `document_id`.
#[derive(Debug, Deserialize, ToSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// The text to summarize, up to 200,000 characters.
    text: Option<String>,
    /// A ready document of the organization (its first 60,000 characters are read).
    document_id: Option<String>,
    /// `concise` (default: 2 to 4 sentences), `detailed` or `bullets` (lines starting `- `).
    style: Option<String>,
    /// A model of `GET /ai/models` (default: the organization's default).
    model: Option<String>,
}

impl SummarizeRequest {
    fn into_domain(self) -> Result<(TaskInput, SummaryStyle, Option<String>), ApiError> {
        let mut errors = Vec::new();
        let input = task_input(
            ("text", self.text),
            self.document_id,
            &mut errors,
            TaskInput::Text,
        );
        let style = match self.style.as_deref() {
            None => SummaryStyle::Concise,
            Some(s) => SummaryStyle::parse(s).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "style",
                    "must be concise, detailed or bullets",
                ));
                SummaryStyle::Concise
            }),
        };
        match input {
            Some(input) if errors.is_empty() => Ok((input, style, self.model)),
            _ => Err(InvalidInput(errors).into()),
        }
    }
}

/// A summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryResponse {
    summary: String,
    /// The model that wrote it.
    model: String,
    usage: UsageDto,
}

/// Summarizes text or a document.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = SummarizeRequest,
    responses(
        (status = 200, body = SummaryResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/ai/summarize")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn summarize(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    body: Body<SummarizeRequest>,
) -> Result<web::Json<SummaryResponse>, ApiError> {
    let ValidJson(body) = body?;
    let (input, style, model) = body.into_domain()?;
    let answer = state
        .chat
        .summarize(&access.ctx, input, style, model.as_deref())
        .await?;
    tracing::info!(model = %answer.model, style = style.as_str(), "summary");
    Ok(web::Json(SummaryResponse {
        summary: answer.text,
        model: answer.model,
        usage: answer.usage.into(),
    }))
}

/// `POST /ai/qa`.
#[derive(Debug, Deserialize, ToSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
pub struct QaRequest {
    /// The question, 1 to 16,000 characters.
    question: String,
    /// Only these collections (every document of the organization when absent).
    collection_ids: Option<Vec<String>>,
    /// Chunks to retrieve, 1 to 50 (default 8).
    top_k: Option<u32>,
    /// A model of `GET /ai/models` (default: the organization's default).
    model: Option<String>,
}

/// A grounded answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct QaResponse {
    /// The answer, citing sources as `[S1]`.
    answer: String,
    /// The verified citations.
    sources: Vec<CitationDto>,
    /// The model that wrote it.
    model: String,
    usage: UsageDto,
}

/// Answers one question from the organization's documents, with verified citations.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = QaRequest,
    responses(
        (status = 200, body = QaResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/ai/qa")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn qa(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    body: Body<QaRequest>,
) -> Result<web::Json<QaResponse>, ApiError> {
    let ValidJson(body) = body?;
    let mut errors = Vec::new();
    let collections = collection_ids(body.collection_ids, "collection_ids", &mut errors);
    InvalidInput::check(errors)?;
    let top_k = body.top_k.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
    let answer = state
        .chat
        .qa(
            &access.ctx,
            &body.question,
            collections,
            top_k,
            body.model.as_deref(),
        )
        .await?;
    tracing::info!(model = %answer.model, sources = answer.citations.len(), "question answered");
    Ok(web::Json(QaResponse {
        answer: answer.text,
        sources: answer.citations.iter().map(CitationDto::from).collect(),
        model: answer.model,
        usage: answer.usage.into(),
    }))
}

/// `POST /ai/mindmap`: exactly one of `topic` and `document_id`.
#[derive(Debug, Deserialize, ToSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
pub struct MindmapRequest {
    /// A topic, 1 to 200 characters, searched in the organization's documents.
    topic: Option<String>,
    /// A ready document of the organization.
    document_id: Option<String>,
    /// Levels below the root, 1 to 4 (default 2).
    depth: Option<u32>,
    /// A model of `GET /ai/models` (default: the organization's default).
    model: Option<String>,
}

impl MindmapRequest {
    fn into_domain(self) -> Result<(TaskInput, u8, Option<String>), ApiError> {
        let mut errors = Vec::new();
        let input = task_input(
            ("topic", self.topic),
            self.document_id,
            &mut errors,
            TaskInput::Topic,
        );
        let depth = self.depth.unwrap_or(2);
        if !(1..=4).contains(&depth) {
            errors.push(FieldError::new("depth", "must be between 1 and 4"));
        }
        match (input, u8::try_from(depth)) {
            (Some(input), Ok(depth)) if errors.is_empty() => Ok((input, depth, self.model)),
            _ => Err(InvalidInput(errors).into()),
        }
    }
}

/// A node of a mind map.
#[derive(Debug, Serialize, ToSchema)]
pub struct MindNodeDto {
    label: String,
    #[schema(no_recursion)]
    children: Vec<MindNodeDto>,
}

impl From<MindNode> for MindNodeDto {
    fn from(n: MindNode) -> Self {
        Self {
            label: n.label,
            children: n.children.into_iter().map(Self::from).collect(),
        }
    }
}

/// A mind map.
#[derive(Debug, Serialize, ToSchema)]
pub struct MindmapResponse {
    /// The root, labelled with the topic.
    root: MindNodeDto,
    /// The model that drew it.
    model: String,
    /// Tokens of every attempt.
    usage: UsageDto,
}

/// A mind map of a topic or a document. A model reply that is not a usable tree is asked for
/// once more; a second bad one is 502 `provider_unavailable`.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = MindmapRequest,
    responses(
        (status = 200, body = MindmapResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/ai/mindmap")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn mindmap(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    body: Body<MindmapRequest>,
) -> Result<web::Json<MindmapResponse>, ApiError> {
    let ValidJson(body) = body?;
    let (input, depth, model) = body.into_domain()?;
    let (root, model, usage) = state
        .chat
        .mindmap(&access.ctx, input, depth, model.as_deref())
        .await?;
    tracing::info!(%model, depth, "mind map");
    Ok(web::Json(MindmapResponse {
        root: root.into(),
        model,
        usage: usage.into(),
    }))
}

/// `POST /documents/{id}/analyze`.
#[derive(Debug, Deserialize, ToSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// Any of `summary`, `keywords`, `entities`, `sentiment` (at least one).
    tasks: Vec<String>,
    /// A model of `GET /ai/models` (default: the organization's default).
    model: Option<String>,
}

impl AnalyzeRequest {
    fn tasks(&self) -> Result<Vec<AnalysisTask>, ApiError> {
        let mut errors = Vec::new();
        if self.tasks.is_empty() {
            errors.push(FieldError::new("tasks", "name at least one task"));
        }
        let tasks = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let task = AnalysisTask::parse(t);
                if task.is_none() {
                    errors.push(FieldError::new(
                        format!("tasks[{i}]"),
                        "must be summary, keywords, entities or sentiment",
                    ));
                }
                task
            })
            .collect();
        InvalidInput::check(errors)?;
        Ok(tasks)
    }
}

/// A named entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityDto {
    /// As written in the document.
    text: String,
    /// `person`, `organization`, `place`, `date`, `number` or `other`.
    #[serde(rename = "type")]
    kind: String,
}

/// The overall sentiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentimentDto {
    /// `positive`, `negative` or `neutral`.
    label: String,
    /// -1 (negative) to 1 (positive).
    score: f32,
}

/// The analysis: exactly the fields asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyzeResponse {
    document_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keywords: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entities: Option<Vec<EntityDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sentiment: Option<SentimentDto>,
    /// The model that wrote it.
    model: String,
    /// Tokens of every attempt.
    usage: UsageDto,
}

/// Analyzes a document: any of a summary, keywords, named entities and sentiment.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = AnalyzeRequest,
    responses(
        (status = 200, body = AnalyzeResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)
    )
)]
#[post("/documents/{id}/analyze")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn analyze(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    path: web::Path<String>,
    body: Body<AnalyzeRequest>,
) -> Result<web::Json<AnalyzeResponse>, ApiError> {
    let id = DocumentId::parse(&path).map_err(|_| ApiError::NotFound)?;
    // Another tenant's document is "not found", whatever the body says.
    state.documents.get(&access.ctx, id).await?;
    let ValidJson(body) = body?;
    let tasks = body.tasks()?;
    let (a, model, usage) = state
        .chat
        .analyze(&access.ctx, id, tasks, body.model.as_deref())
        .await?;
    tracing::info!(%model, "document analyzed");
    Ok(web::Json(AnalyzeResponse {
        document_id: id.to_string(),
        summary: a.summary,
        keywords: a.keywords,
        entities: a.entities.map(|es| {
            es.into_iter()
                .map(|e| EntityDto {
                    text: e.text,
                    kind: e.kind,
                })
                .collect()
        }),
        sentiment: a.sentiment.map(|s| SentimentDto {
            label: s.label,
            score: s.score,
        }),
        model,
        usage: usage.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> CompletionRequest {
        serde_json::from_value(body).expect("a completion request")
    }

    #[test]
    fn openai_requests_map_to_the_domain() {
        let (input, delivery) = request(serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": "there"}], "name": "ann"},
                {"role": "assistant", "content": null}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "top_p": 0.5,
            "n": 1
        }))
        .into_domain()
        .expect("valid");
        let roles: Vec<_> = input.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [PromptRole::System, PromptRole::User, PromptRole::Assistant]
        );
        assert_eq!(input.messages[1].content, "Hello\nthere");
        assert_eq!(input.messages[2].content, "");
        assert_eq!(input.max_tokens, Some(20));
        assert!(input.grounding.is_none());
        assert!(delivery.stream && delivery.include_usage && !delivery.grounded);
    }

    #[test]
    fn bad_roles_parts_n_and_collections_are_named() {
        let err = request(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "tool", "content": "x"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
            "n": 2,
            "quire": {"collection_ids": ["nope"]}
        }))
        .into_domain()
        .expect_err("invalid");
        let ApiError::Validation(fields) = err else {
            panic!("a validation error, got {err:?}");
        };
        let mut names: Vec<_> = fields.into_iter().map(|f| f.field).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "messages[0].role",
                "messages[1].content[0]",
                "n",
                "quire.collection_ids[0]"
            ]
        );
    }

    #[test]
    fn tasks_need_exactly_one_input() {
        let none = SummarizeRequest {
            text: None,
            document_id: None,
            style: None,
            model: None,
        }
        .into_domain()
        .expect_err("neither");
        let ApiError::Validation(fields) = none else {
            panic!("a validation error");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["text", "document_id"]);
        let deep = MindmapRequest {
            topic: Some("x".into()),
            document_id: None,
            depth: Some(5),
            model: None,
        }
        .into_domain()
        .expect_err("too deep");
        assert!(matches!(deep, ApiError::Validation(f) if f[0].field == "depth"));
    }

    #[test]
    fn error_frames_are_openai_errors() {
        let frame = error_frame("down");
        let text = std::str::from_utf8(&frame).expect("utf-8");
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let v: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("data: ").trim()).expect("json");
        assert_eq!(v["error"]["type"], "provider_unavailable");
        assert_eq!(v["error"]["message"], "down");
    }
}
