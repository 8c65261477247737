//! Tenant-scoped chat routes (`X-Tenant-ID`): sessions, messages (plain or streamed over
//! SSE, resumable with `Last-Event-ID`), feedback and assistants. Viewers read assistants;
//! members chat. A session belongs to the caller who started it: anyone else gets 404.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chat::stream::Sequenced;
use chat::{
    AnswerError, Assistant, AssistantFields, AssistantId, ChatSessionId, Locale, Message,
    MessageId, Rating, Session, SessionFields, StreamEvent, Subscription,
};
use documents::CollectionId;
use kernel::{FieldError, InvalidInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::dto::PageDto;
use crate::dto::answers::{CitationDto, UsageDto};
use crate::error::{ApiError, Problem, rfc3339};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson, collection_ids, double_option};
use crate::limits::ChatRate;
use crate::state::AppState;
use crate::tenant::{Member, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_session)
        .service(list_sessions)
        .service(get_session)
        .service(update_session)
        .service(delete_session)
        .service(list_messages)
        .service(post_message)
        .service(resume_stream)
        .service(feedback)
        .service(create_assistant)
        .service(list_assistants)
        .service(get_assistant)
        .service(update_assistant)
        .service(delete_assistant);
}

fn parse_collections(
    ids: Option<Vec<String>>,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<CollectionId>> {
    ids.map(|ids| collection_ids(&ids, "collection_ids", errors))
}

fn parse_assistant(
    id: Option<Option<String>>,
    errors: &mut Vec<FieldError>,
) -> Option<Option<AssistantId>> {
    id.map(|o| {
        o.and_then(|s| {
            AssistantId::parse(&s)
                .map_err(|_| {
                    errors.push(FieldError::new("assistant_id", "must be an assistant id"))
                })
                .ok()
        })
    })
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    id: String,
    title: String,
    collection_ids: Vec<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    assistant_id: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Session> for SessionDto {
    fn from(s: Session) -> Self {
        Self {
            id: s.id.to_string(),
            title: s.title,
            collection_ids: s.collection_ids.iter().map(ToString::to_string).collect(),
            model: s.model,
            system_prompt: s.system_prompt,
            assistant_id: s.assistant_id.map(|a| a.to_string()),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// `POST /chat/sessions` and `PATCH /chat/sessions/{id}`: absent fields stay (or default);
/// `null` clears `model`, `system_prompt` and `assistant_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Up to 200 characters (default "New chat").
    title: Option<String>,
    /// Up to 20 collections answers are grounded in (empty: every document).
    collection_ids: Option<Vec<String>>,
    /// A model on the organization's whitelist (`GET /ai/models`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    model: Option<Option<String>>,
    /// Extra instructions, up to 8,000 characters.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    system_prompt: Option<Option<String>>,
    /// An assistant whose preset applies.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    assistant_id: Option<Option<String>>,
}

impl SessionRequest {
    fn into_domain(self) -> Result<SessionFields, ApiError> {
        let mut errors = Vec::new();
        let collection_ids = parse_collections(self.collection_ids, &mut errors);
        let assistant_id = parse_assistant(self.assistant_id, &mut errors);
        InvalidInput::check(errors)?;
        Ok(SessionFields {
            title: self.title,
            collection_ids,
            model: self.model,
            system_prompt: self.system_prompt,
            assistant_id,
        })
    }
}

/// Starts a conversation.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = SessionRequest,
    responses(
        (status = 201, body = SessionDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[post("/chat/sessions")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn create_session(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    body: Body<SessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let s = state
        .chat
        .create_session(&access.ctx, body.into_domain()?)
        .await?;
    Ok(HttpResponse::Created().json(SessionDto::from(s)))
}

/// The caller's sessions, newest first.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<SessionDto>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/chat/sessions")]
async fn list_sessions(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<SessionDto>>, ApiError> {
    let page = state
        .chat
        .sessions(&access.ctx, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, SessionDto::from)))
}

/// One of the caller's sessions.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = SessionDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/chat/sessions/{id}")]
async fn get_session(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<ChatSessionId>,
) -> Result<web::Json<SessionDto>, ApiError> {
    let PathId(id) = id?;
    let s = state.chat.session(&access.ctx, id).await?;
    Ok(web::Json(s.into()))
}

/// Changes a session.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = SessionRequest,
    responses(
        (status = 200, body = SessionDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[patch("/chat/sessions/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn update_session(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<ChatSessionId>,
    body: Body<SessionRequest>,
) -> Result<web::Json<SessionDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let s = state
        .chat
        .update_session(&access.ctx, id, body.into_domain()?)
        .await?;
    Ok(web::Json(s.into()))
}

/// Deletes a session with its messages.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/chat/sessions/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn delete_session(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<ChatSessionId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.chat.delete_session(&access.ctx, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    id: String,
    /// `user` or `assistant`.
    role: &'static str,
    content: String,
    citations: Vec<CitationDto>,
    /// Assistant messages: tokens.
    usage: Option<UsageDto>,
    /// `complete`; `incomplete` for an answer cancelled or failed (before or after its
    /// first token) or left by a server that stopped; `streaming` while it is written (its
    /// text and usage so far, checkpointed about every second).
    status: &'static str,
    /// Assistant messages: the model.
    model: Option<String>,
    /// An `incomplete` answer: why it ended early.
    error: Option<String>,
    created_at: String,
}

impl From<Message> for MessageDto {
    fn from(m: Message) -> Self {
        Self {
            id: m.id.to_string(),
            role: m.role.as_str(),
            citations: m.citations.iter().map(CitationDto::from).collect(),
            content: m.content,
            usage: m.usage.map(UsageDto::from),
            status: m.status.as_str(),
            model: m.model,
            error: m.error,
            created_at: rfc3339(m.created_at),
        }
    }
}

/// A session's messages, oldest first.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path), PageQuery),
    responses((status = 200, body = PageDto<MessageDto>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/chat/sessions/{id}/messages")]
async fn list_messages(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<ChatSessionId>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<MessageDto>>, ApiError> {
    let PathId(id) = id?;
    let page = state
        .chat
        .messages(&access.ctx, id, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, MessageDto::from)))
}

/// `POST /chat/sessions/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// The question, 1 to 16,000 characters.
    content: String,
    /// `true`: `text/event-stream` of `delta`, `citations`, `done` (or `error`) events.
    #[serde(default)]
    stream: bool,
    /// The prompt templates' language (`en`, `fa`); guessed from the question when absent.
    locale: Option<String>,
}

/// The stored answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    message: MessageDto,
}

/// The wire payload of a stream event (SSE `data` and WebSocket frames).
#[must_use]
pub(crate) fn event_payload(event: &StreamEvent) -> serde_json::Value {
    match event {
        StreamEvent::Delta { text } => serde_json::json!({ "text": text }),
        StreamEvent::Citations { citations } => serde_json::json!({
            "citations": citations.iter().map(CitationDto::from).collect::<Vec<_>>()
        }),
        StreamEvent::Done { message_id, usage } => serde_json::json!({
            "message_id": message_id.to_string(),
            "usage": UsageDto::from(*usage),
        }),
        StreamEvent::Error(e) => {
            serde_json::json!({ "code": answer_error_code(e), "detail": e.to_string() })
        }
    }
}

/// The wire code of an answer that ended early.
fn answer_error_code(e: &AnswerError) -> &'static str {
    match e {
        AnswerError::Cancelled => "cancelled",
        AnswerError::ProviderRejected(_) => "provider_error",
        AnswerError::ProviderUnavailable(_) | AnswerError::ProviderDown(_) => {
            "provider_unavailable"
        }
        AnswerError::ModelFailed => "internal",
        AnswerError::NotStored => "storage_unavailable",
        AnswerError::SessionDeleted => "not_found",
        AnswerError::Incomplete => "incomplete",
        AnswerError::Stalled => "stalled",
    }
}

/// One server-sent event of an answer stream (`text/event-stream`); `: keep-alive` comments
/// between events carry nothing.
#[derive(Debug, ToSchema)]
pub struct AnswerEvent {
    /// `<message id>:<position>`: send it back as `Last-Event-ID` to resume after it.
    id: String,
    /// What `data` holds: `delta` (`{"text"}`), `citations` (`{"citations"}`), `done`
    /// (`{"message_id", "usage"}`) or `error` (`{"code", "detail"}`); the last event is
    /// `done` or `error`.
    #[schema(pattern = "^(delta|citations|done|error)$")]
    event: &'static str,
    /// The event's JSON.
    data: String,
}

fn sse_frame(e: &Sequenced) -> web::Bytes {
    let event = AnswerEvent {
        id: e.id.to_string(),
        event: e.event.name(),
        data: event_payload(&e.event).to_string(),
    };
    web::Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id, event.event, event.data
    ))
}

/// How often a silent stream sends an SSE comment: actix notices a client that went away
/// only when a write fails, so a stalled model would otherwise keep an orphaned run alive.
const SSE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// An SSE response viewing `sub`. Dropping the response (the client went away) drops the
/// viewer, and the run is cancelled when no other viewer is left (on its server, or following
/// it from another).
fn sse(sub: Subscription) -> HttpResponse {
    let body = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        // `next` is cancel-safe: an event is consumed only when it is returned.
        match tokio::time::timeout(SSE_KEEP_ALIVE, sub.next()).await {
            Err(_) => Some((
                Ok::<_, ApiError>(web::Bytes::from_static(b": keep-alive\n\n")),
                Some(sub),
            )),
            Ok(None) => None,
            Ok(Some(e)) => {
                let frame = sse_frame(&e);
                let next = (!e.event.is_last()).then_some(sub);
                Some((Ok(frame), next))
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

fn last_event_id(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asks a question. Not streamed: 200 with the stored answer. Streamed: SSE events `delta`
/// `{text}`, `citations` `{citations}`, `done` `{message_id, usage}` or `error` `{code,
/// detail}`, each with an id for `Last-Event-ID`. A request carrying `Last-Event-ID` resumes
/// that stream instead of asking again.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(
        ("X-Tenant-ID" = String, Header, description = "organization id or slug"),
        ("id" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "resume a stream after this event")
    ),
    request_body = PostMessage,
    responses(
        (status = 200, description = "the answer; with `stream`, an event stream of `delta`, `citations`, `done` (or `error`) events",
            content((MessageResponse = "application/json"), (AnswerEvent = "text/event-stream"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem),
        (status = 503, description = "`storage_unavailable`: the answer could not be stored while the database was down (see Retry-After)", body = Problem)
    )
)]
#[post(
    "/chat/sessions/{id}/messages",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn post_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    id: Id<ChatSessionId>,
    body: Body<PostMessage>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    if let Some(last) = last_event_id(&req) {
        return Ok(sse(state.chat.resume(&access.ctx, id, &last).await?));
    }
    let locale = body.locale.as_deref().map(Locale::from_tag);
    if body.stream {
        let sub = state
            .chat
            .send(&access.ctx, id, &body.content, locale)
            .await?;
        return Ok(sse(sub));
    }
    let m = state
        .chat
        .answer(&access.ctx, id, &body.content, locale)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse { message: m.into() }))
}

/// Resumes an answer stream after `Last-Event-ID` (the id of the last event received), on any
/// server: live while it runs on this server or just ended; while it runs on another server,
/// followed through its stored message (the text arrives as that server checkpoints it, at
/// most a second apart, and this viewer keeps the answer from being cancelled as unwatched);
/// else replayed from the stored answer. 404 unless the id is of an answer in this session.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(
        ("X-Tenant-ID" = String, Header, description = "organization id or slug"),
        ("id" = String, Path),
        ("Last-Event-ID" = String, Header, description = "the last event received")
    ),
    responses(
        (status = 200, description = "the answer's events after `Last-Event-ID`", content_type = "text/event-stream", body = AnswerEvent),
        (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[get("/chat/sessions/{id}/stream")]
async fn resume_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<ChatSessionId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    // A missing header is 422 once the session is known to be the caller's.
    let last = last_event_id(&req).unwrap_or_default();
    Ok(sse(state.chat.resume(&access.ctx, id, &last).await?))
}

/// `POST /chat/messages/{id}/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// `up` or `down`.
    rating: String,
    /// Up to 2,000 characters.
    comment: Option<String>,
}

/// The stored rating.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackDto {
    message_id: String,
    rating: &'static str,
    comment: Option<String>,
    created_at: String,
}

/// Rates an answer (one rating per caller and message; a new one replaces it).
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = FeedbackRequest,
    responses(
        (status = 200, body = FeedbackDto), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[post("/chat/messages/{id}/feedback")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn feedback(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<MessageId>,
    body: Body<FeedbackRequest>,
) -> Result<web::Json<FeedbackDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let rating = Rating::parse(&body.rating)
        .ok_or_else(|| InvalidInput::field("rating", "must be up or down"))?;
    let f = state
        .chat
        .feedback(&access.ctx, id, rating, body.comment)
        .await?;
    Ok(web::Json(FeedbackDto {
        message_id: f.message_id.to_string(),
        rating: f.rating.as_str(),
        comment: f.comment,
        created_at: rfc3339(f.created_at),
    }))
}

/// An assistant: a reusable preset.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantDto {
    id: String,
    name: String,
    instructions: String,
    model: Option<String>,
    collection_ids: Vec<String>,
    temperature: Option<f32>,
    created_at: String,
    updated_at: String,
}

impl From<Assistant> for AssistantDto {
    fn from(a: Assistant) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name,
            instructions: a.instructions,
            model: a.model,
            collection_ids: a.collection_ids.iter().map(ToString::to_string).collect(),
            temperature: a.temperature,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// `POST /assistants` (name required) and `PATCH /assistants/{id}` (absent fields stay;
/// `null` clears `model` and `temperature`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantRequest {
    /// 1 to 100 characters.
    name: Option<String>,
    /// Up to 8,000 characters, added to the system prompt below Quire's rules.
    instructions: Option<String>,
    /// A model on the whitelist.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    model: Option<Option<String>>,
    /// Up to 20 collections.
    collection_ids: Option<Vec<String>>,
    /// 0 to 2.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f32>)]
    temperature: Option<Option<f32>>,
}

impl AssistantRequest {
    fn into_domain(self) -> Result<AssistantFields, ApiError> {
        let mut errors = Vec::new();
        let collection_ids = parse_collections(self.collection_ids, &mut errors);
        InvalidInput::check(errors)?;
        Ok(AssistantFields {
            name: self.name,
            instructions: self.instructions,
            model: self.model,
            collection_ids,
            temperature: self.temperature,
        })
    }
}

/// Creates an assistant.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = AssistantRequest,
    responses(
        (status = 201, body = AssistantDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[post("/assistants")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn create_assistant(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    body: Body<AssistantRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let a = state
        .chat
        .create_assistant(&access.ctx, body.into_domain()?)
        .await?;
    Ok(HttpResponse::Created().json(AssistantDto::from(a)))
}

/// The organization's assistants, oldest first.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<AssistantDto>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/assistants")]
async fn list_assistants(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<AssistantDto>>, ApiError> {
    let page = state
        .chat
        .assistants(&access.ctx, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, AssistantDto::from)))
}

/// One assistant.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = AssistantDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/assistants/{id}")]
async fn get_assistant(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<AssistantId>,
) -> Result<web::Json<AssistantDto>, ApiError> {
    let PathId(id) = id?;
    let a = state.chat.assistant(&access.ctx, id).await?;
    Ok(web::Json(a.into()))
}

/// Changes an assistant: only its creator or an admin (or owner); another member gets 403.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = AssistantRequest,
    responses(
        (status = 200, body = AssistantDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[patch("/assistants/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn update_assistant(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<AssistantId>,
    body: Body<AssistantRequest>,
) -> Result<web::Json<AssistantDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let a = state
        .chat
        .update_assistant(&access.ctx, id, body.into_domain()?)
        .await?;
    Ok(web::Json(a.into()))
}

/// Deletes an assistant (sessions naming it go on without it): only its creator or an admin
/// (or owner); another member gets 403.
#[utoipa::path(
    tag = "chat",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/assistants/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn delete_assistant(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<AssistantId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.chat.delete_assistant(&access.ctx, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
