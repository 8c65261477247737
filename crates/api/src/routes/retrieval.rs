//! Tenant-scoped retrieval routes (`X-Tenant-ID`): search, embeddings and plain-text
//! ingestion. Viewers search; members embed and ingest.

use actix_web::{HttpResponse, post, web};
use documents::CollectionId;
use kernel::{FieldError, InvalidInput};
use retrieval::{Hit, MetadataFilter, SearchMode, SearchQuery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::dto::embeddings::{EmbeddingsRequest, EmbeddingsResponse, embed};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, ValidJson};
use crate::limits::{EmbeddingsRate, UploadRate};
use crate::state::AppState;
use crate::tenant::{Member, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(search).service(embeddings).service(ingest);
}

/// Most documents of one `POST /vector/ingest`.
const MAX_INGEST_DOCUMENTS: usize = 100;

/// `POST /search`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for: 1 to 2,000 characters.
    query: String,
    /// Only these collections (at most 100); every document of the organization when absent.
    collection_ids: Option<Vec<String>>,
    /// Results, 1 to 50 (default 8).
    top_k: Option<u32>,
    /// Drop results scoring lower (see `score`).
    min_score: Option<f32>,
    /// `hybrid` (default), `vector` or `keyword`.
    mode: Option<String>,
    /// Only chunks of documents whose metadata has each key with exactly this value
    /// (strings, numbers, booleans).
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Map<String, serde_json::Value>>,
}

impl SearchRequest {
    pub(crate) fn into_domain(self) -> Result<SearchQuery, ApiError> {
        let mut errors = Vec::new();
        let mode = match self.mode.as_deref() {
            None => SearchMode::default(),
            Some(m) => SearchMode::parse(m).unwrap_or_else(|| {
                errors.push(FieldError::new("mode", "must be hybrid, vector or keyword"));
                SearchMode::default()
            }),
        };
        let collections = self
            .collection_ids
            .map(|ids| crate::extract::collection_ids(&ids, "collection_ids", &mut errors));
        let filter =
            match MetadataFilter::new(self.filter.unwrap_or_default().into_iter().collect()) {
                Ok(f) => f,
                Err(e) => {
                    errors.extend(e.0);
                    MetadataFilter::default()
                }
            };
        let query = SearchQuery::new(
            &self.query,
            collections,
            self.top_k,
            self.min_score,
            mode,
            filter,
        );
        match query {
            Ok(q) if errors.is_empty() => Ok(q),
            Ok(_) => Err(InvalidInput(errors).into()),
            Err(e) => {
                errors.extend(e.0);
                Err(InvalidInput(errors).into())
            }
        }
    }
}

/// One search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResultDto {
    chunk_id: String,
    document_id: String,
    document_name: String,
    collection_id: Option<String>,
    /// Position of the chunk in its document, from 0.
    ordinal: u32,
    /// The page it starts on (PDF), from 1.
    page: Option<u32>,
    text: String,
    /// `vector`: cosine similarity (-1..1); `keyword`: BM25 (0 and up); `hybrid`: reciprocal
    /// rank fusion scaled to 0..1 (1.0: first in both rankings).
    score: f32,
}

impl From<Hit> for SearchResultDto {
    fn from(h: Hit) -> Self {
        Self {
            chunk_id: h.chunk.chunk_id.to_string(),
            document_id: h.chunk.document_id.to_string(),
            document_name: h.chunk.document_name,
            collection_id: h.chunk.collection_id.map(|c| c.to_string()),
            ordinal: h.chunk.ordinal,
            page: h.chunk.page,
            text: h.chunk.text,
            score: h.score,
        }
    }
}

/// The results, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    results: Vec<SearchResultDto>,
}

/// Searches the organization's documents.
#[utoipa::path(
    tag = "retrieval",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/search")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn search(
    state: web::Data<AppState>,
    access: Tenant<Viewer, EmbeddingsRate>,
    body: Body<SearchRequest>,
) -> Result<web::Json<SearchResponse>, ApiError> {
    let ValidJson(body) = body?;
    let query = body.into_domain()?;
    let hits = state.retrieval.search(&access.ctx, &query).await?;
    state.trail_access(
        &access.ctx,
        kernel::audit::DOCUMENTS_SEARCHED,
        hits.iter().map(|h| h.chunk.document_id.as_uuid()),
        Some(&query.text),
    );
    tracing::info!(mode = query.mode.as_str(), results = hits.len(), "search");
    Ok(web::Json(SearchResponse {
        results: hits.into_iter().map(SearchResultDto::from).collect(),
    }))
}

/// Embeds text (OpenAI-shaped).
#[utoipa::path(
    tag = "retrieval",
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
#[post("/embeddings")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn embeddings(
    state: web::Data<AppState>,
    access: Tenant<Member, EmbeddingsRate>,
    body: Body<EmbeddingsRequest>,
) -> Result<web::Json<EmbeddingsResponse>, ApiError> {
    let ValidJson(body) = body?;
    embed(&state.retrieval, &access.ctx, body)
        .await
        .map(web::Json)
}

/// One text of `POST /vector/ingest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestDocument {
    /// The text (within the upload size limit).
    content: String,
    /// A JSON object of at most 16 KiB; a string `title` (or `name`) names the document.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /vector/ingest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The collection the texts join.
    collection_id: String,
    /// 1 to 100 texts.
    documents: Vec<IngestDocument>,
}

/// One queued text.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestedDto {
    document_id: String,
    /// The ingestion job (`GET /jobs/{id}`).
    job_id: Option<String>,
    /// The same text was already in the collection: nothing new was stored.
    duplicate: bool,
}

/// The queued documents, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    documents: Vec<IngestedDto>,
}

/// Ingests plain texts without files, through the same pipeline as uploads.
#[utoipa::path(
    tag = "retrieval",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = IngestRequest,
    responses(
        (status = 202, body = IngestResponse),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 402, description = "storage_limit_exceeded: the organization's files would pass its plan's storage", body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post("/vector/ingest")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn ingest(
    state: web::Data<AppState>,
    access: Tenant<Member, UploadRate>,
    body: Body<IngestRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let mut errors = Vec::new();
    let collection = CollectionId::parse(&body.collection_id).ok();
    if collection.is_none() {
        errors.push(FieldError::new("collection_id", "no such collection"));
    }
    if body.documents.is_empty() || body.documents.len() > MAX_INGEST_DOCUMENTS {
        errors.push(FieldError::new(
            "documents",
            format!("must hold 1 to {MAX_INGEST_DOCUMENTS} texts"),
        ));
    }
    let limit = state.documents.limits().max_file_bytes;
    let mut prepared = Vec::with_capacity(body.documents.len());
    for (i, d) in body.documents.iter().enumerate() {
        if d.content.trim().is_empty() {
            errors.push(FieldError::new(
                format!("documents[{i}].content"),
                "must not be empty",
            ));
        } else if u64::try_from(d.content.len()).unwrap_or(u64::MAX) > limit {
            errors.push(FieldError::new(
                format!("documents[{i}].content"),
                format!("must be at most {limit} bytes"),
            ));
        }
        let metadata = d.metadata.clone().unwrap_or_default();
        let name = ["title", "name"]
            .iter()
            .find_map(|k| metadata.get(*k).and_then(|v| v.as_str()))
            .map_or_else(|| format!("text-{}", i + 1), str::to_owned);
        let raw = serde_json::Value::Object(metadata).to_string();
        if let Err(e) = documents::uploads::parse_metadata(Some(&raw)) {
            errors.extend(
                e.0.into_iter()
                    .map(|f| FieldError::new(format!("documents[{i}].{}", f.field), f.message)),
            );
        }
        prepared.push((name, raw));
    }
    let (Some(collection), true) = (collection, errors.is_empty()) else {
        return Err(InvalidInput(errors).into());
    };
    // The collection must be the tenant's before anything is stored.
    state.collections.get(&access.ctx, collection).await?;
    let mut out = Vec::with_capacity(prepared.len());
    for (d, (name, raw)) in body.documents.iter().zip(prepared) {
        let up = state
            .documents
            .ingest_text(&access.ctx, Some(collection), &name, &d.content, Some(&raw))
            .await?;
        out.push(IngestedDto {
            document_id: up.document.id.to_string(),
            job_id: up.job_id.map(|j| j.to_string()),
            duplicate: up.duplicate,
        });
    }
    tracing::info!(documents = out.len(), "texts queued");
    Ok(HttpResponse::Accepted().json(IngestResponse { documents: out }))
}
