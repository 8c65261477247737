//! Tenant-scoped documents routes (`X-Tenant-ID`): formats, uploads, extraction, documents,
//! chunks and jobs. Viewers read; members upload, reindex and delete documents.

use actix_multipart::{Multipart, MultipartError};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use documents::{
    Chunk, ChunkingSettings, CollectionId, Document, DocumentFilter, DocumentId, Format, Job,
    JobFilter, JobId, JobKind, JobStatus,
};
use futures_util::StreamExt as _;
use kernel::{FieldError, InvalidInput};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::Client;
use crate::dto::PageDto;
use crate::dto::chunking::ChunkingDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Id, PageQuery, PathId};
use crate::limits::UploadRate;
use crate::state::AppState;
use crate::tenant::{Member, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(formats)
        .service(upload)
        .service(extract)
        .service(list_documents)
        .service(get_document)
        .service(document_chunks)
        .service(delete_document)
        .service(reindex)
        .service(list_jobs)
        .service(get_job);
}

/// Room for the multipart framing and the small fields around the file.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// Longest `collection_id` field.
const MAX_SMALL_FIELD: usize = 128;

/// One accepted format.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormatDto {
    /// `pdf`, `docx`, `html`, `markdown`, `text`, `csv`.
    format: &'static str,
    /// Accepted file name extensions.
    extensions: &'static [&'static str],
    /// The usual media type.
    media_type: &'static str,
    /// Largest file, in bytes.
    max_bytes: u64,
    /// Most pages (PDF only).
    max_pages: Option<u32>,
}

/// The accepted formats and limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormatsDto {
    formats: Vec<FormatDto>,
    /// Largest file, in bytes.
    max_file_bytes: u64,
    /// Most pages of a PDF.
    max_pages: u32,
    /// Most characters of text kept from one file.
    max_text_chars: u64,
    /// Largest `metadata`, in bytes.
    max_metadata_bytes: usize,
    /// How extraction is isolated: `process` or `thread`.
    isolation: &'static str,
    /// The default chunking of a collection.
    default_chunking: ChunkingDto,
}

/// The accepted formats with their limits, as configured.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses((status = 200, body = FormatsDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/documents/formats")]
async fn formats(state: web::Data<AppState>, _access: Tenant<Viewer>) -> web::Json<FormatsDto> {
    let limits = state.documents.limits();
    web::Json(FormatsDto {
        formats: Format::ALL
            .iter()
            .copied()
            .map(|f| FormatDto {
                format: f.as_str(),
                extensions: f.extensions(),
                media_type: f.media_type(),
                max_bytes: limits.max_file_bytes,
                max_pages: (f == Format::Pdf).then_some(limits.extract.max_pages),
            })
            .collect(),
        max_file_bytes: limits.max_file_bytes,
        max_pages: limits.extract.max_pages,
        max_text_chars: limits.extract.max_chars,
        max_metadata_bytes: documents::model::MAX_METADATA_BYTES,
        isolation: state.documents.isolation(),
        default_chunking: ChunkingDto::from_domain(ChunkingSettings::default()),
    })
}

/// A document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDto {
    id: String,
    name: String,
    /// `pdf`, `docx`, `html`, `markdown`, `text`, `csv`.
    format: &'static str,
    bytes: u64,
    pages: Option<u32>,
    /// Pages read by OCR (scanned pages without a text layer); their chunks say `ocr: true`.
    ocr_pages: u32,
    /// `queued`, `processing`, `ready` or `failed`.
    status: &'static str,
    /// 0..1 through the stages of the current job.
    progress: f32,
    /// While `processing`: `extracting`, `chunking`, `embedding` or `indexing`.
    stage: Option<&'static str>,
    /// While `processing`: units of the stage done (see `unit`); 0 while not known.
    done: u32,
    /// While `processing`: units of the stage in all; 0 while not known.
    total: u32,
    /// While `processing`: what `done` and `total` count, `pages` (extracting) or `chunks`.
    unit: Option<&'static str>,
    chunks: u32,
    tokens: u64,
    /// Why it failed, for people (`the PDF is encrypted; upload an unprotected copy`); never
    /// an internal cause chain, which goes to the server log with the job's id.
    error: Option<String>,
    #[schema(value_type = Object)]
    metadata: serde_json::Map<String, serde_json::Value>,
    collection_id: Option<String>,
    /// SHA-256 of the file, hex.
    content_hash: String,
    /// The current (or last) job.
    job_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Document> for DocumentDto {
    fn from(d: Document) -> Self {
        Self {
            id: d.id.to_string(),
            name: d.name,
            format: d.format.as_str(),
            bytes: d.bytes,
            pages: d.pages,
            ocr_pages: d.ocr_pages,
            status: d.status.as_str(),
            progress: d.progress,
            stage: d.stage.map(documents::Stage::as_str),
            done: d.done,
            total: d.total,
            unit: d.stage.map(documents::Stage::unit),
            chunks: d.chunks,
            tokens: d.tokens,
            error: d.error,
            metadata: d.metadata,
            collection_id: d.collection_id.map(|c| c.to_string()),
            content_hash: d.content_hash,
            job_id: d.job_id.map(|j| j.to_string()),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// `202` of an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadDto {
    document: DocumentDto,
    job_id: Option<String>,
    /// The same content was already in this collection: nothing new was stored and
    /// `document` is the earlier copy (answered with 200, not 202).
    duplicate: bool,
}

/// The multipart form of `POST /documents` (documentation only).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file (its name's extension must agree with its content).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The collection to add it to.
    collection_id: Option<String>,
    /// A JSON object of at most 16 KiB.
    metadata: Option<String>,
}

fn multipart_error(e: &MultipartError) -> ApiError {
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible
        | MultipartError::BoundaryMissing => {
            ApiError::UnsupportedMediaType("the body must be multipart/form-data".to_owned())
        }
        other => ApiError::BadRequest {
            code: "validation_failed",
            detail: format!("the multipart body could not be read: {other}"),
        },
    }
}

/// Refuses at once a body whose declared length is past the limit.
fn check_declared_length(req: &HttpRequest, max_file: u64) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max_file.saturating_add(MULTIPART_SLACK) => Err(ApiError::PayloadTooLarge {
            limit: usize::try_from(max_file).unwrap_or(usize::MAX),
        }),
        _ => Ok(()),
    }
}

/// Reads a small text field whole, refusing it past `max` bytes.
async fn small_field(
    field: &mut actix_multipart::Field,
    name: &str,
    max: usize,
) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(part) = field.next().await {
        let part = part.map_err(|e| multipart_error(&e))?;
        if buf.len() + part.len() > max {
            return Err(ApiError::from(InvalidInput::field(
                name,
                format!("must be at most {max} bytes"),
            )));
        }
        buf.extend_from_slice(&part);
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::from(InvalidInput::field(name, "must be UTF-8 text")))
}

fn field_name(field: &actix_multipart::Field) -> String {
    field.name().unwrap_or_default().to_owned()
}

fn file_name(field: &actix_multipart::Field) -> Option<String> {
    field
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .map(str::to_owned)
}

/// Uploads a file (member): multipart with `file`, optional `collection_id` and `metadata`
/// (a JSON object of at most 16 KiB). The file streams to storage; past the size limit the
/// upload is refused at once (413). The format is decided by the content and must agree
/// with the name's extension (415). Answers 202 with the `queued` document and its job;
/// identical content already in the collection answers 200 with the earlier document and
/// `duplicate: true`, storing nothing.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, body = UploadDto), (status = 200, description = "duplicate content", body = UploadDto),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 402, description = "storage_limit_exceeded: the organization's files would pass its plan's storage", body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 413, description = "payload_too_large: the file is over documents.max_file_bytes", body = Problem),
        (status = 415, body = Problem),
        (status = 422, body = Problem),
        (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post(
    "/documents",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Upload>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Tenant<Member, UploadRate>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    let docs = &state.documents;
    check_declared_length(&req, docs.limits().max_file_bytes)?;
    let mut upload = None;
    let mut collection = None;
    let mut metadata = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| multipart_error(&e))?;
        match field_name(&field).as_str() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::from(InvalidInput::field(
                        "file",
                        "only one file per upload",
                    )));
                }
                let mut up = docs.begin_upload(&access.ctx).await?;
                up.set_name(file_name(&field).as_deref());
                while let Some(part) = field.next().await {
                    let part = part.map_err(|e| multipart_error(&e))?;
                    docs.push(&mut up, &part).await?;
                }
                upload = Some(up);
            }
            "collection_id" => {
                let raw = small_field(&mut field, "collection_id", MAX_SMALL_FIELD).await?;
                let raw = raw.trim();
                if !raw.is_empty() {
                    collection = Some(CollectionId::parse(raw).map_err(|_| {
                        ApiError::from(InvalidInput::field(
                            "collection_id",
                            "must be a collection id",
                        ))
                    })?);
                }
            }
            "metadata" => {
                metadata = Some(
                    small_field(&mut field, "metadata", documents::model::MAX_METADATA_BYTES)
                        .await?,
                );
            }
            other => {
                return Err(ApiError::from(InvalidInput::field(
                    kernel::text::head(other, 64),
                    "unknown field (expected file, collection_id, metadata)",
                )));
            }
        }
    }
    let upload =
        upload.ok_or_else(|| ApiError::from(InvalidInput::field("file", "a file is required")))?;
    let done = docs
        .finish_upload(&access.ctx, upload, collection, metadata.as_deref())
        .await?;
    let body = UploadDto {
        duplicate: done.duplicate,
        job_id: done.job_id.map(|j| j.to_string()),
        document: done.document.into(),
    };
    Ok(if body.duplicate {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Accepted().json(body)
    })
}

/// The text of a file (`POST /documents/extract`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtractDto {
    format: &'static str,
    /// Pages (PDF), else null.
    pages: Option<u32>,
    /// Pages read by OCR (scanned pages without a text layer).
    ocr_pages: u32,
    /// The document's title, when the format has one.
    title: Option<String>,
    text: String,
}

/// The multipart form of `POST /documents/extract` (documentation only).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ExtractForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Extracts the text of a file without storing anything (member). An organization runs at
/// most `documents.max_concurrent_extractions - 1` of these at once per server (at least 1),
/// so it never holds every extraction slot; one more gets 429 with `Retry-After: 1`.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body(content = ExtractForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, body = ExtractDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, description = "the file cannot be read (encrypted, damaged, no text)", body = Problem),
        (status = 429, description = "rate limited (see Retry-After), or the organization's extractions at once are all in use", body = Problem)
    )
)]
#[post(
    "/documents/extract",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Upload>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn extract(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Tenant<Member, UploadRate>,
    mut form: Multipart,
) -> Result<web::Json<ExtractDto>, ApiError> {
    let docs = &state.documents;
    let max = docs.limits().max_file_bytes;
    check_declared_length(&req, max)?;
    let mut file: Option<(Option<String>, Vec<u8>)> = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| multipart_error(&e))?;
        if field_name(&field) != "file" || file.is_some() {
            return Err(ApiError::from(InvalidInput::field(
                "file",
                "send exactly one field, `file`",
            )));
        }
        let mut bytes = Vec::new();
        while let Some(part) = field.next().await {
            let part = part.map_err(|e| multipart_error(&e))?;
            if u64::try_from(bytes.len() + part.len()).unwrap_or(u64::MAX) > max {
                return Err(ApiError::PayloadTooLarge {
                    limit: usize::try_from(max).unwrap_or(usize::MAX),
                });
            }
            bytes.extend_from_slice(&part);
        }
        file = Some((file_name(&field), bytes));
    }
    let (name, bytes) =
        file.ok_or_else(|| ApiError::from(InvalidInput::field("file", "a file is required")))?;
    let (format, text) = docs
        .extract_only(&access.ctx, name.as_deref(), bytes)
        .await?;
    Ok(web::Json(ExtractDto {
        format: format.as_str(),
        pages: text.pages(),
        ocr_pages: u32::try_from(text.ocr_pages.len()).unwrap_or(u32::MAX),
        title: text.title,
        text: text.text,
    }))
}

/// Filters of `GET /documents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this collection.
    collection_id: Option<String>,
    /// Only this status: `queued`, `processing`, `ready`, `failed`.
    status: Option<String>,
}

/// The tenant's documents, newest first.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), DocumentQuery),
    responses((status = 200, body = PageDto<DocumentDto>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))
)]
#[get("/documents")]
async fn list_documents(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<DocumentQuery>,
) -> Result<web::Json<PageDto<DocumentDto>>, ApiError> {
    let mut errors = Vec::new();
    let collection_id = match query.collection_id.as_deref().map(CollectionId::parse) {
        Some(Err(_)) => {
            errors.push(FieldError::new("collection_id", "must be a collection id"));
            None
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let status = match query.status.as_deref().map(str::parse) {
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "status",
                "must be queued, processing, ready or failed",
            ));
            None
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .to_request()?;
    let docs = state
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
    Ok(web::Json(PageDto::from_page(docs, DocumentDto::from)))
}

/// One document, with its status and progress.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = DocumentDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/documents/{id}")]
async fn get_document(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<DocumentId>,
) -> Result<web::Json<DocumentDto>, ApiError> {
    let PathId(id) = id?;
    let d = state.documents.get(&access.ctx, id).await?;
    state.trail_access(
        &access.ctx,
        kernel::audit::DOCUMENT_READ,
        [id.as_uuid()],
        None,
    );
    Ok(web::Json(d.into()))
}

/// A chunk of a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkDto {
    id: String,
    ordinal: u32,
    text: String,
    tokens: u32,
    /// The page it starts on (PDF).
    page: Option<u32>,
    /// Start, in characters (Unicode scalar values) of the extracted text.
    start: u64,
    /// End (exclusive), in characters.
    end: u64,
    /// Some of its text was read by OCR from a scanned page (it may hold recognition errors).
    ocr: bool,
}

impl From<Chunk> for ChunkDto {
    fn from(c: Chunk) -> Self {
        Self {
            id: c.id.to_string(),
            ordinal: c.ordinal,
            text: c.text,
            tokens: c.tokens,
            page: c.page,
            start: c.start,
            end: c.end,
            ocr: c.ocr,
        }
    }
}

/// A document's chunks, in order.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path), PageQuery),
    responses((status = 200, body = PageDto<ChunkDto>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/documents/{id}/chunks")]
async fn document_chunks(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<DocumentId>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<ChunkDto>>, ApiError> {
    let PathId(id) = id?;
    let page = state
        .documents
        .chunks(&access.ctx, id, &query.to_request()?)
        .await?;
    state.trail_access(
        &access.ctx,
        kernel::audit::DOCUMENT_READ,
        [id.as_uuid()],
        None,
    );
    Ok(web::Json(PageDto::from_page(page, ChunkDto::from)))
}

/// Deletes a document: its file, chunks and vectors, and stops its job (member).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/documents/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn delete_document(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    Client(client): Client,
    id: Id<DocumentId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.documents.delete(&access.ctx, id, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `202` of a reindex.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRef {
    job_id: String,
}

/// Reruns the pipeline on a document (member).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 202, body = JobRef), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/documents/{id}/reindex")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn reindex(
    state: web::Data<AppState>,
    access: Tenant<Member, UploadRate>,
    id: Id<DocumentId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    let job = state.documents.reindex(&access.ctx, id).await?;
    Ok(HttpResponse::Accepted().json(JobRef {
        job_id: job.to_string(),
    }))
}

/// A background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    id: String,
    /// `ingest` or `reindex`.
    kind: &'static str,
    /// `queued`, `running`, `succeeded`, `failed`, `dead` (retries used up) or `canceled`.
    status: &'static str,
    /// `extracting`, `chunking`, `embedding`, `indexing` while running.
    stage: Option<&'static str>,
    /// 0..1.
    progress: f32,
    /// While running: units of the stage done (see `unit`); 0 while not known.
    done: u32,
    /// While running: units of the stage in all; 0 while not known.
    total: u32,
    /// While running: what `done` and `total` count, `pages` (extracting) or `chunks`.
    unit: Option<&'static str>,
    /// Runs started.
    attempts: u32,
    /// The last error, for people; never an internal cause chain (that goes to the server log
    /// with the job's id).
    error: Option<String>,
    document_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<OffsetDateTime>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        Self {
            id: j.id.to_string(),
            kind: j.kind.as_str(),
            status: j.status.as_str(),
            stage: j.stage.map(documents::Stage::as_str),
            progress: j.progress,
            done: j.done,
            total: j.total,
            unit: j.stage.map(documents::Stage::unit),
            attempts: j.attempts,
            error: j.error,
            document_id: j.document_id.map(|d| d.to_string()),
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

/// Filters of `GET /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this kind: `ingest`, `reindex`.
    kind: Option<String>,
    /// Only this status: `queued`, `running`, `succeeded`, `failed`, `dead`, `canceled`.
    status: Option<String>,
    /// Only this document's jobs.
    document_id: Option<String>,
}

/// The organization's ingestion jobs, newest first (workflow runs are at
/// `GET /workflows/runs`).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), JobQuery),
    responses(
        (status = 200, body = PageDto<JobDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/jobs")]
async fn list_jobs(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<JobQuery>,
) -> Result<web::Json<PageDto<JobDto>>, ApiError> {
    let mut errors = Vec::new();
    let kind = match query.kind.as_deref().map(str::parse::<JobKind>) {
        Some(Err(_)) => {
            errors.push(FieldError::new("kind", "must be ingest or reindex"));
            None
        }
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let status = match query.status.as_deref().map(str::parse::<JobStatus>) {
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "status",
                "must be queued, running, succeeded, failed, dead or canceled",
            ));
            None
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let document_id = match query.document_id.as_deref().map(DocumentId::parse) {
        Some(Err(_)) => {
            errors.push(FieldError::new("document_id", "must be a document id"));
            None
        }
        Some(Ok(d)) => Some(d),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .to_request()?;
    let jobs = state
        .documents
        .jobs(
            &access.ctx,
            &JobFilter {
                kind,
                status,
                document_id,
            },
            &page,
        )
        .await?;
    Ok(web::Json(PageDto::from_page(jobs, JobDto::from)))
}

/// One job, with its progress.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = JobDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/jobs/{id}")]
async fn get_job(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<JobId>,
) -> Result<web::Json<JobDto>, ApiError> {
    let PathId(id) = id?;
    Ok(web::Json(
        state.documents.job(&access.ctx, id).await?.into(),
    ))
}
