//! Tenant-scoped collection routes (`X-Tenant-ID`): collections (knowledge bases) with their
//! chunking settings and totals. Viewers read; admins manage.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use documents::{ChunkingSettings, Collection, CollectionChange, CollectionId, NewCollection};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::Client;
use crate::dto::PageDto;
use crate::dto::chunking::ChunkingDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson, double_option};
use crate::state::AppState;
use crate::tenant::{Admin, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_collection)
        .service(list_collections)
        .service(get_collection)
        .service(update_collection)
        .service(delete_collection)
        .service(collection_stats);
}

/// A collection (knowledge base).
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionDto {
    id: String,
    name: String,
    description: Option<String>,
    chunking: ChunkingDto,
    /// The embedding model of its vectors; `null`: the deployment's default.
    embedding_model: Option<String>,
    /// The languages OCR reads its scanned PDF pages in (Tesseract codes such as `eng`,
    /// `deu`); `null`: the deployment's default (`documents.ocr.languages`).
    ocr_languages: Option<Vec<String>>,
    /// How many of a search's first results are reranked; `null`: no reranking.
    rerank_top_n: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Collection> for CollectionDto {
    fn from(c: Collection) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.as_str().to_owned(),
            description: c.description,
            chunking: ChunkingDto::from_domain(c.chunking),
            embedding_model: c.embedding_model,
            ocr_languages: c.ocr_languages.map(|l| l.codes().to_vec()),
            rerank_top_n: c.rerank_top_n,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `POST /collections`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// 1 to 200 characters.
    name: String,
    /// Up to 2,000 characters.
    description: Option<String>,
    /// Default: 400 tokens, 40 overlap, `cl100k_base`.
    chunking: Option<ChunkingDto>,
    /// An embedding model of this deployment; default: the deployment's default.
    embedding_model: Option<String>,
    /// 1 to 8 Tesseract language codes (`eng`, `deu`, `chi_sim`...) for OCR of scanned
    /// pages; default: the deployment's default.
    ocr_languages: Option<Vec<String>>,
    /// Rerank the first N results of its searches (1 to 150; needs `rerank.base_url`);
    /// default `null`: off.
    rerank_top_n: Option<u32>,
}

/// Creates a collection (admin).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = CreateCollection,
    responses(
        (status = 201, body = CollectionDto),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[post("/collections")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn create_collection(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    body: Body<CreateCollection>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let chunking = body
        .chunking
        .map(|c| c.into_domain().apply(ChunkingSettings::default()))
        .transpose()?;
    let c = state
        .collections
        .create(
            &access.ctx,
            NewCollection {
                name: body.name,
                description: body.description,
                chunking,
                embedding_model: body.embedding_model,
                ocr_languages: body.ocr_languages,
                rerank_top_n: body.rerank_top_n,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(CollectionDto::from(c)))
}

/// The tenant's collections, oldest first.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<CollectionDto>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/collections")]
async fn list_collections(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<CollectionDto>>, ApiError> {
    let page = state
        .collections
        .list(&access.ctx, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, CollectionDto::from)))
}

/// One collection.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = CollectionDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/collections/{id}")]
async fn get_collection(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<CollectionId>,
) -> Result<web::Json<CollectionDto>, ApiError> {
    let PathId(id) = id?;
    let c = state.collections.get(&access.ctx, id).await?;
    Ok(web::Json(c.into()))
}

/// `PATCH /collections/{id}`: absent fields stay; `description: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchCollection {
    /// 1 to 200 characters.
    name: Option<String>,
    /// Up to 2,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// New chunking settings: they apply to documents ingested or reindexed afterwards.
    chunking: Option<ChunkingDto>,
    /// A new embedding model (`null`: back to the default). The collection re-embeds in the
    /// background; search uses the old vectors until the new ones are complete.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    embedding_model: Option<Option<String>>,
    /// New OCR languages (`null`: back to the default); they apply to documents ingested or
    /// reindexed afterwards.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    ocr_languages: Option<Option<Vec<String>>>,
    /// Rerank the first N results of its searches (1 to 150); `null` turns reranking off.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    rerank_top_n: Option<Option<u32>>,
}

/// Changes a collection (admin).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = PatchCollection,
    responses(
        (status = 200, body = CollectionDto), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[patch("/collections/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn update_collection(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<CollectionId>,
    body: Body<PatchCollection>,
) -> Result<web::Json<CollectionDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let c = state
        .collections
        .update(
            &access.ctx,
            id,
            CollectionChange {
                name: body.name,
                description: body.description,
                chunking: body.chunking.map(ChunkingDto::into_domain),
                embedding_model: body.embedding_model,
                ocr_languages: body.ocr_languages,
                rerank_top_n: body.rerank_top_n,
            },
        )
        .await?;
    Ok(web::Json(c.into()))
}

/// Deletes a collection with its documents, chunks and files (admin).
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/collections/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn delete_collection(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    Client(client): Client,
    id: Id<CollectionId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.collections.delete(&access.ctx, id, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Totals of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsDto {
    documents: u64,
    chunks: u64,
    tokens: u64,
    bytes: u64,
}

/// A collection's totals.
#[utoipa::path(
    tag = "documents",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = StatsDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/collections/{id}/stats")]
async fn collection_stats(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<CollectionId>,
) -> Result<web::Json<StatsDto>, ApiError> {
    let PathId(id) = id?;
    let s = state.collections.stats(&access.ctx, id).await?;
    Ok(web::Json(StatsDto {
        documents: s.documents,
        chunks: s.chunks,
        tokens: s.tokens,
        bytes: s.bytes,
    }))
}
