//! `POST /api/v1/mcp`: a Model Context Protocol server over the Streamable HTTP transport, with
//! the tools `search`, `ask`, `list_documents` and `read_document` on the caller's organization.
//!
//! - **Transport**: the official Rust SDK (`rmcp`) speaks the protocol: its Streamable HTTP
//!   service runs here per request, stateless (no `Mcp-Session-Id`; every POST carries its own
//!   credentials) and answering `application/json`. `GET` (a server-initiated stream) and
//!   `DELETE` (ending a session) are 405, as the transport allows a server without them.
//! - **Who**: `Authorization: Bearer` with an access token and `X-Tenant-ID`, or an API key
//!   (`X-Tenant-ID` optional: a key acts for its own organization). Checked on every POST
//!   before the protocol layer sees it ([`crate::tenant::identify`], the HTTP routes' check):
//!   a revoked key, a signed-out session or a removed member is refused at the next message
//!   (401/404 problem+json, as anywhere in the API).
//! - **What each tool may do** is its HTTP route's rule, through the same use cases: `search`
//!   as `POST /search` (viewer, `read` scope, embeddings rate), `ask` as `POST /ai/qa`
//!   (member, `chat` scope, chat rate, metered against the plan), `list_documents` and
//!   `read_document` as `GET /documents` and `GET /documents/{id}/chunks` (viewer, `read`).
//!   A refusal (403, 404, 429 with `retry_after_secs`, 402 `quota_exceeded` with `resets_at`,
//!   503) is the tool's result with `isError: true` and `{code, detail, request_id}`; bad
//!   arguments are JSON-RPC error -32602 naming every field, as a 422 would.
//! - HTTP-level refusals of the transport (406 without both `application/json` and
//!   `text/event-stream` in `Accept`, 415, 413, a malformed message) are problem+json too.
//! - Logs carry the request id, the tenant and the tool; never arguments, answers or tokens.

use std::convert::Infallible;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, post, web};
use documents::{CollectionId, DocumentFilter, DocumentId};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use kernel::{FieldError, InvalidInput, PageRequest};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa_actix_web::service_config::ServiceConfig;

use super::documents::{ChunkDto, DocumentDto};
use super::retrieval::{SearchRequest, SearchResultDto};
use crate::dto::PageDto;
use crate::dto::answers::{CitationDto, UsageDto};
use crate::error::{ApiError, Chain, Problem, current_request_id, problem_response};
use crate::limits::{ChatRate, EmbeddingsRate, RateLimit, Unlimited};
use crate::state::AppState;
use crate::tenant::{Access, Member, MinRole, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(mcp);
}

/// The longest text of one error `detail` taken from the transport's answer.
const MAX_DETAIL_CHARS: usize = 300;

/// A Model Context Protocol server (Streamable HTTP, stateless, JSON answers).
#[utoipa::path(
    tag = "mcp",
    security(("bearer" = [])),
    params(
        ("X-Tenant-ID" = Option<String>, Header, description = "organization id or slug; required with an access token, optional with an API key (its own organization)"),
    ),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "One JSON-RPC 2.0 message of the Model Context Protocol (`initialize`, \
            `tools/list`, `tools/call`, `ping`, a notification). `Accept` must list both \
            `application/json` and `text/event-stream`. See docs/mcp.md."
    ),
    responses(
        (status = 200, description = "the JSON-RPC response (a tool's refusal is a result with `isError: true`; bad arguments are error -32602)", body = Object, content_type = "application/json"),
        (status = 202, description = "a notification was accepted"),
        (status = 400, description = "not a JSON-RPC message of the protocol, a bad `MCP-Protocol-Version`, or `tenant_required`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not a member of the organization", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`Accept` lacks `application/json` or `text/event-stream`", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")
    )
)]
#[post(
    "/mcp",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
async fn mcp(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let token = crate::auth::bearer(&req).map(str::to_owned);
    let access = crate::tenant::identify(&state, token, tenant_header(&req)).await?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "an MCP message is application/json".to_owned(),
        ));
    }
    let limit = state.http.body_limit_bytes;
    let body = body.map_err(|e| {
        e.as_error::<actix_web::error::PayloadError>()
            .map_or(ApiError::PayloadTooLarge { limit }, |pe| {
                crate::extract::payload_error(pe, limit)
            })
    })?;
    let server = Quire {
        request_id: current_request_id().unwrap_or_default(),
        ip: crate::auth::client_ip(&req),
        state: state.clone(),
        access,
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(limit)
        // Credentials are bearer headers, never cookies: a rebound DNS name gains nothing, and
        // the server answers whatever name it is deployed under (CORS is the app's).
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let answer = service.handle(http_request(&req, body)).await;
    Ok(http_response(answer).await)
}

/// `X-Tenant-ID`, when sent: not UTF-8 names no organization (404); empty is 400.
fn tenant_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("x-tenant-id").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Err(_)) => Err(ApiError::NotFound),
        Some(Ok(v)) if v.trim().is_empty() => Err(ApiError::BadRequest {
            code: "tenant_required",
            detail: "X-Tenant-ID is empty".to_owned(),
        }),
        Some(Ok(v)) => Ok(Some(v.trim().to_owned())),
    }
}

/// The request as the SDK's service reads it (`http` 1 types; actix-web speaks `http` 0.2).
fn http_request(
    req: &HttpRequest,
    body: web::Bytes,
) -> http::Request<http_body_util::Full<web::Bytes>> {
    let mut out = http::Request::new(http_body_util::Full::new(body));
    *out.method_mut() = http::Method::POST;
    if let Ok(uri) = req.uri().path().parse() {
        *out.uri_mut() = uri;
    }
    let headers = out.headers_mut();
    // The credentials were checked above; the protocol layer never holds them.
    let secret =
        |name: &header::HeaderName| name == header::AUTHORIZATION || name == header::COOKIE;
    for (name, value) in req.headers().iter().filter(|(n, _)| !secret(n)) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    out
}

/// The service's answer as an actix response; an HTTP-level refusal becomes problem+json with
/// what the transport said (its text, or its JSON-RPC error's message).
async fn http_response(answer: http::Response<BoxBody<web::Bytes, Infallible>>) -> HttpResponse {
    let (parts, body) = answer.into_parts();
    let status = match StatusCode::from_u16(parts.status.as_u16()) {
        // The media type was checked before: the SDK says 415 for a body it cannot parse.
        Ok(StatusCode::UNSUPPORTED_MEDIA_TYPE) => StatusCode::BAD_REQUEST,
        Ok(status) => status,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_client_error() || status.is_server_error() {
        let Ok(collected) = body.collect().await;
        let bytes = collected.to_bytes();
        let detail = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let mut detail: String = detail.trim().chars().take(MAX_DETAIL_CHARS).collect();
        if status.is_server_error() {
            // 5xx bodies are opaque; what the SDK said goes to the log with the request id.
            tracing::error!(status = status.as_u16(), error = %detail, "the MCP transport failed");
            detail = "an internal error occurred".to_owned();
        }
        let code = match status {
            StatusCode::NOT_ACCEPTABLE => "not_acceptable",
            other => crate::error::code_for_status(other),
        };
        tracing::info!(status = status.as_u16(), code, "MCP message refused");
        let mut res = problem_response(status, code, detail, None);
        if let Some(allow) = parts
            .headers
            .get(http::header::ALLOW)
            .and_then(|v| header::HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            res.headers_mut().insert(header::ALLOW, allow);
        }
        return res;
    }
    let mut res = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_str().as_bytes()),
            header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            res.append_header((name, value));
        }
    }
    // JSON answers are whole; a stream (the SDK falls back to one when a handler sends a
    // notification first, which these tools do not) is passed on as it comes.
    res.streaming(body.into_data_stream())
}

/// The server of one request: who calls, for which organization.
#[derive(Clone)]
struct Quire {
    state: web::Data<AppState>,
    access: Access<Viewer>,
    ip: String,
    request_id: String,
}

impl std::fmt::Debug for Quire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quire")
            .field("tenant", &self.access.ctx.tenant_id())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

const INSTRUCTIONS: &str = "Quire: the documents of one organization. `search` finds passages, \
    `ask` answers a question from them with verified citations (it uses the organization's \
    token quota), `list_documents` and `read_document` browse and read them.";

impl ServerHandler for Quire {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("quire", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::info_span!(
            "mcp_tool",
            request_id = %self.request_id,
            tenant = %self.access.ctx.tenant_id(),
            tool = %request.name,
        );
        // The tool runs on the SDK's task: the request id goes with it (logs, usage ledger).
        kernel::metering::with_request_id(self.request_id.clone(), self.call(request))
            .instrument(span)
            .await
    }
}

/// What a tool answers: the text a model reads, and the same as structured content.
struct Answer {
    text: String,
    structured: Value,
}

impl Quire {
    async fn call(&self, request: CallToolRequestParams) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let outcome = match request.name.as_ref() {
            "search" => self.search(args).await,
            "ask" => self.ask(args).await,
            "list_documents" => self.list_documents(args).await,
            "read_document" => self.read_document(args).await,
            _ => {
                return Err(ErrorData::invalid_params(
                    "no such tool: `tools/list` names the tools",
                    None,
                ));
            }
        };
        match outcome {
            Ok(answer) => {
                tracing::info!("tool answered");
                let mut result = CallToolResult::success(vec![ContentBlock::text(answer.text)]);
                result.structured_content = Some(answer.structured);
                Ok(result.into())
            }
            Err(e) => self.refusal(e),
        }
    }

    /// Bad arguments → JSON-RPC -32602 naming every field; any other refusal → the tool's
    /// error result, shaped like the route's problem+json.
    fn refusal(&self, e: ApiError) -> Result<CallToolResponse, ErrorData> {
        use actix_web::ResponseError as _;
        match &e {
            ApiError::Validation(fields) => {
                let errors: Vec<Value> = fields
                    .iter()
                    .map(|f| json!({"field": f.field, "message": f.message}))
                    .collect();
                let list: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect();
                tracing::info!(fields = fields.len(), "tool arguments refused");
                return Err(ErrorData::invalid_params(
                    format!("invalid arguments: {}", list.join("; ")),
                    Some(json!({"code": "validation_failed", "errors": errors})),
                ));
            }
            ApiError::BadRequest { code, detail } => {
                return Err(ErrorData::invalid_params(
                    detail.clone(),
                    Some(json!({"code": code})),
                ));
            }
            ApiError::Internal(inner) => {
                let chain: &(dyn std::error::Error + 'static) = inner.as_ref();
                tracing::error!(error = %Chain(chain), "tool failed");
            }
            other => tracing::info!(code = other.code(), "tool refused"),
        }
        let mut error = json!({
            "code": e.code(),
            "status": e.status_code().as_u16(),
            "detail": e.detail(),
            "request_id": self.request_id,
        });
        match &e {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::ProviderDown { retry_after_secs } => {
                error["retry_after_secs"] = json!(retry_after_secs);
            }
            ApiError::QuotaExceeded { resets_at } => {
                error["resets_at"] = json!(crate::error::rfc3339(*resets_at));
            }
            _ => {}
        }
        let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: {}",
            e.code(),
            e.detail()
        ))]);
        result.structured_content = Some(json!({ "error": error }));
        Ok(result.into())
    }

    /// The caller for a tool with the rule of its HTTP route (role `R`, key scope and rate
    /// class `L`), its request counted as the route's would be.
    async fn access<R: MinRole, L: RateLimit>(&self) -> Result<Access<R, L>, ApiError> {
        let access = self.access.clone().narrow::<R, L>()?;
        crate::limits::admit::<L>(&self.state, self.ip.clone(), Some(&access.ctx)).await?;
        Ok(access)
    }

    async fn search(&self, args: JsonObject) -> Result<Answer, ApiError> {
        let access = self.access::<Viewer, EmbeddingsRate>().await?;
        let query = arguments::<SearchRequest>(args)?.into_domain()?;
        let hits = self.state.retrieval.search(&access.ctx, &query).await?;
        self.state.trail_access(
            &access.ctx,
            kernel::audit::DOCUMENTS_SEARCHED,
            hits.iter().map(|h| h.chunk.document_id.as_uuid()),
            Some(&query.text),
        );
        let mut text = String::new();
        for (i, hit) in hits.iter().enumerate() {
            let page = hit
                .chunk
                .page
                .map(|p| format!(", page {p}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "[{}] {} (document {}{page}, score {:.3})\n{}\n\n",
                i + 1,
                hit.chunk.document_name,
                hit.chunk.document_id,
                hit.score,
                hit.chunk.text
            ));
        }
        if hits.is_empty() {
            text.push_str("No passage matched.");
        }
        let results: Vec<SearchResultDto> = hits.into_iter().map(SearchResultDto::from).collect();
        tracing::info!(
            mode = query.mode.as_str(),
            results = results.len(),
            "search"
        );
        Ok(Answer {
            text: text.trim_end().to_owned(),
            structured: json!({ "results": results }),
        })
    }

    async fn ask(&self, args: JsonObject) -> Result<Answer, ApiError> {
        let access = self.access::<Member, ChatRate>().await?;
        let args = arguments::<AskArgs>(args)?;
        let mut errors = Vec::new();
        let collections = args
            .collection_ids
            .map(|ids| crate::extract::collection_ids(&ids, "collection_ids", &mut errors));
        InvalidInput::check(errors)?;
        let top_k = args.top_k.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
        let answer = self
            .state
            .chat
            .qa(
                &access.ctx,
                &args.question,
                collections,
                top_k,
                args.model.as_deref(),
            )
            .await?;
        let mut text = answer.text.clone();
        if !answer.citations.is_empty() {
            text.push_str("\n\nSources:");
            for (i, c) in answer.citations.iter().enumerate() {
                let page = c.page.map(|p| format!(", page {p}")).unwrap_or_default();
                text.push_str(&format!(
                    "\n[S{}] {} (document {}{page}): \"{}\"",
                    i + 1,
                    c.document_name,
                    c.document_id,
                    c.quote
                ));
            }
        }
        tracing::info!(model = %answer.model, sources = answer.citations.len(), "question answered");
        let sources: Vec<CitationDto> = answer.citations.iter().map(CitationDto::from).collect();
        Ok(Answer {
            text,
            structured: json!({
                "answer": answer.text,
                "sources": sources,
                "model": answer.model,
                "usage": UsageDto::from(answer.usage),
            }),
        })
    }

    async fn list_documents(&self, args: JsonObject) -> Result<Answer, ApiError> {
        let access = self.access::<Viewer, Unlimited>().await?;
        let args = arguments::<ListArgs>(args)?;
        let mut errors = Vec::new();
        let collection_id = match args.collection_id.as_deref().map(CollectionId::parse) {
            Some(Err(_)) => {
                errors.push(FieldError::new("collection_id", "must be a collection id"));
                None
            }
            other => other.and_then(Result::ok),
        };
        let status = match args.status.as_deref().map(str::parse) {
            Some(Err(_)) => {
                errors.push(FieldError::new(
                    "status",
                    "must be queued, processing, ready or failed",
                ));
                None
            }
            other => other.and_then(Result::ok),
        };
        let page = PageRequest::parse(args.limit, args.cursor.as_deref());
        let page = match page {
            Ok(p) if errors.is_empty() => p,
            Ok(_) => return Err(InvalidInput(errors).into()),
            Err(e) => {
                errors.extend(e.0);
                return Err(InvalidInput(errors).into());
            }
        };
        let docs = self
            .state
            .documents
            .list(
                &access.ctx,
                &DocumentFilter {
                    collection_id,
                    status,
                },
                &page,
            )
            .await?;
        let mut text = String::new();
        for d in &docs.items {
            text.push_str(&format!(
                "{} | {} | {} | {} | {} chunks\n",
                d.id,
                d.name,
                d.format.as_str(),
                d.status.as_str(),
                d.chunks
            ));
        }
        if docs.items.is_empty() {
            text.push_str("No documents.");
        }
        if let Some(next) = &docs.next_cursor {
            text.push_str(&format!("More: call again with cursor {}", next.encode()));
        }
        let page = PageDto::from_page(docs, DocumentDto::from);
        Ok(Answer {
            text: text.trim_end().to_owned(),
            structured: serde_json::to_value(page).map_err(anyhow::Error::from)?,
        })
    }

    async fn read_document(&self, args: JsonObject) -> Result<Answer, ApiError> {
        let access = self.access::<Viewer, Unlimited>().await?;
        let args = arguments::<ReadArgs>(args)?;
        let id = DocumentId::parse(&args.document_id)
            .map_err(|_| InvalidInput::field("document_id", "must be a document id"))?;
        let page = PageRequest::parse(args.limit, args.cursor.as_deref())?;
        let docs = &self.state.documents;
        let document = docs.get(&access.ctx, id).await?;
        let chunks = docs.chunks(&access.ctx, id, &page).await?;
        self.state.trail_access(
            &access.ctx,
            kernel::audit::DOCUMENT_READ,
            [id.as_uuid()],
            None,
        );
        let mut text = format!(
            "{} ({}, {}, {} chunks)\n\n",
            document.name,
            document.format.as_str(),
            document.status.as_str(),
            document.chunks
        );
        text.push_str(&join_chunks(&chunks.items));
        let next_cursor = chunks.next_cursor.as_ref().map(kernel::Cursor::encode);
        if let Some(next) = &next_cursor {
            text.push_str(&format!("\n\n(More: call again with cursor {next})"));
        }
        let chunk_list: Vec<ChunkDto> = chunks.items.into_iter().map(ChunkDto::from).collect();
        tracing::info!(chunks = chunk_list.len(), "document read");
        Ok(Answer {
            text,
            structured: json!({
                "document": DocumentDto::from(document),
                "chunks": chunk_list,
                "next_cursor": next_cursor,
            }),
        })
    }
}

/// The text of consecutive chunks without the overlap they share: each chunk's characters
/// before the previous chunk's end are left out (offsets are characters of the extracted text).
fn join_chunks(chunks: &[documents::Chunk]) -> String {
    let mut out = String::new();
    let mut end: Option<u64> = None;
    for c in chunks {
        let chars = u64::try_from(c.text.chars().count()).unwrap_or(u64::MAX);
        let skip = match end {
            // Offsets that agree with the text: skip the shared characters.
            Some(prev) if prev > c.start && c.end.saturating_sub(c.start) == chars => {
                usize::try_from(prev - c.start).unwrap_or(usize::MAX)
            }
            Some(_) => {
                out.push_str("\n\n");
                0
            }
            None => 0,
        };
        out.extend(c.text.chars().skip(skip));
        end = Some(c.end);
    }
    out
}

/// A tool's arguments into `T`: a wrong, unknown or missing field → 422-like errors naming
/// it. The message never repeats the value sent (the SDK logs JSON-RPC errors it answers).
fn arguments<T: DeserializeOwned>(args: JsonObject) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let message = match message.split_once(", expected ") {
            Some((head, expected))
                if head.starts_with("invalid type") || head.starts_with("invalid value") =>
            {
                format!("expected {expected}")
            }
            _ => message,
        };
        let (field, message) = match (field.as_str(), message.strip_prefix("missing field `")) {
            (".", Some(rest)) => (
                rest.split('`').next().unwrap_or("arguments").to_owned(),
                "is required".to_owned(),
            ),
            (".", None) => ("arguments".to_owned(), message),
            (p, _) => (p.to_owned(), message),
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// `ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    question: String,
    collection_ids: Option<Vec<String>>,
    top_k: Option<u32>,
    model: Option<String>,
}

/// `list_documents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    collection_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `read_document`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    document_id: String,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The tools, with their input schemas.
fn tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .open_world(false);
    let ids = json!({"type": "array", "items": {"type": "string"}, "maxItems": 100,
        "description": "only these collections (ids); every document of the organization when absent"});
    let page = |what: &str| {
        json!({
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": format!("{what} per page (default 20)")},
            "cursor": {"type": "string", "description": "`next_cursor` of the previous page"},
        })
    };
    let mut list_props = json!({
        "collection_id": {"type": "string", "description": "only this collection"},
        "status": {"type": "string", "enum": ["queued", "processing", "ready", "failed"]},
    });
    let mut read_props = json!({
        "document_id": {"type": "string", "description": "a document id from `list_documents` or `search`"},
    });
    for props in [&mut list_props, &mut read_props] {
        if let (Some(target), Value::Object(extra)) = (props.as_object_mut(), page("items")) {
            target.extend(extra);
        }
    }
    vec![
        Tool::new(
            "search",
            "Searches the organization's documents and returns the best passages with their \
             document, page and score.",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "collection_ids": ids,
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "description": "results (default 8)"},
                    "min_score": {"type": "number"},
                    "mode": {"type": "string", "enum": ["hybrid", "vector", "keyword"]},
                    "filter": {"type": "object", "description": "metadata key: exact value"},
                },
                "required": ["query"],
                "additionalProperties": false,
            })),
        )
        .with_annotations(read_only.clone().idempotent(true)),
        Tool::new(
            "ask",
            "Answers a question from the organization's documents, citing its sources as [S1], \
             [S2] with verified quotes. Uses the organization's token quota.",
            schema(json!({
                "type": "object",
                "properties": {
                    "question": {"type": "string", "minLength": 1, "maxLength": 16000},
                    "collection_ids": ids,
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "description": "passages to read (default 8)"},
                    "model": {"type": "string", "description": "a model the organization may use (default: its default)"},
                },
                "required": ["question"],
                "additionalProperties": false,
            })),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "list_documents",
            "Lists the organization's documents, newest first: id, name, format, status.",
            schema(json!({
                "type": "object",
                "properties": list_props,
                "additionalProperties": false,
            })),
        )
        .with_annotations(read_only.clone().idempotent(true)),
        Tool::new(
            "read_document",
            "Reads a document's text, a page of chunks at a time.",
            schema(json!({
                "type": "object",
                "properties": read_props,
                "required": ["document_id"],
                "additionalProperties": false,
            })),
        )
        .with_annotations(read_only.idempotent(true)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str, start: u64, end: u64) -> documents::Chunk {
        documents::Chunk {
            id: documents::ChunkId::new(),
            document_id: DocumentId::new(),
            ordinal: 0,
            text: text.to_owned(),
            tokens: 1,
            page: None,
            start,
            end,
            ocr: false,
        }
    }

    #[test]
    fn chunks_join_without_their_overlap() {
        let joined = join_chunks(&[chunk("héllo wor", 0, 9), chunk("world!", 6, 12)]);
        assert_eq!(joined, "héllo world!");
        // Offsets that disagree with the text: nothing is cut, the chunks are separated.
        let joined = join_chunks(&[chunk("abc", 0, 3), chunk("xyz", 1, 99)]);
        assert_eq!(joined, "abc\n\nxyz");
    }

    #[test]
    fn arguments_name_the_bad_field() {
        let args = |v: Value| match v {
            Value::Object(m) => m,
            _ => JsonObject::new(),
        };
        let fields = |e: ApiError| match e {
            ApiError::Validation(f) => f.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let missing = arguments::<ReadArgs>(args(json!({}))).expect_err("missing");
        assert_eq!(fields(missing), ["document_id"]);
        let wrong = arguments::<ReadArgs>(args(json!({"document_id": "x", "limit": "9"})))
            .expect_err("wrong type");
        assert_eq!(fields(wrong), ["limit"]);
        let unknown =
            arguments::<AskArgs>(args(json!({"question": "q", "x": 1}))).expect_err("unknown");
        assert_eq!(fields(unknown), ["x"]);
        // The value sent is not repeated (it could be anything, a document's text included).
        let secret =
            arguments::<ReadArgs>(args(json!({"document_id": "d", "limit": "secret text"})))
                .expect_err("wrong type");
        assert!(!format!("{secret:?}").contains("secret text"), "{secret:?}");
    }

    #[test]
    fn every_tool_has_an_object_schema() {
        let names: Vec<String> = tools().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, ["search", "ask", "list_documents", "read_document"]);
        for t in tools() {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
        }
    }
}
