//! Tenant-scoped evaluation routes (`X-Tenant-ID`): a golden set of cases run against the
//! organization's collections in each search mode, its figures stored with the settings that
//! produced them. Admins run (as they manage collections); viewers read.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, post, web};
use kernel::{FieldError, InvalidInput};
use retrieval::evaluation::{
    Evaluation, EvaluationId, EvaluationRequest, GoldenItemInput, GoldenSet, ModeResult, SetSource,
};
use retrieval::{Fusion, FusionMethod, SearchMode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::dto::PageDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson};
use crate::limits::EmbeddingsRate;
use crate::state::AppState;
use crate::tenant::{Admin, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(run_evaluation)
        .service(list_evaluations)
        .service(get_evaluation);
}

/// One case of a golden set: a question and at least one of what answers it. A result is
/// relevant when it matches any of them; each expected document, chunk and the answer is one
/// target of recall.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseDto {
    /// The question, as a search query (1 to 2,000 characters).
    question: String,
    /// Documents that answer it (1 to 20 ids): any of their chunks is a hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_document_ids: Option<Vec<String>>,
    /// Chunks that answer it (1 to 20 ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_chunk_ids: Option<Vec<String>>,
    /// Text a retrieved chunk must contain (case and runs of white space ignored; 1 to 1,000
    /// characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_answer: Option<String>,
}

/// `hybrid`'s fusion: a method and a weight per leg.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionDto {
    /// `rrf` (weighted reciprocal rank, default) or `minmax` (weighted sum of min-max scaled
    /// scores).
    method: Option<String>,
    /// The keyword (BM25) leg's weight, 0 to 100.
    keyword: f32,
    /// The vector leg's weight, 0 to 100 (not both 0).
    vector: f32,
}

impl From<Fusion> for FusionDto {
    fn from(f: Fusion) -> Self {
        Self {
            method: Some(f.method.as_str().to_owned()),
            keyword: f.keyword,
            vector: f.vector,
        }
    }
}

/// `POST /evaluations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunEvaluation {
    /// The collections each question searches (1 to 100); every document of the organization
    /// when absent.
    collection_ids: Option<Vec<String>>,
    /// The golden set (1 to 1,000 cases); or `set_id`.
    cases: Option<Vec<CaseDto>>,
    /// An earlier evaluation of the organization whose questions to run again.
    set_id: Option<String>,
    /// Modes, each once: `keyword`, `vector`, `hybrid` (default: all three).
    modes: Option<Vec<String>>,
    /// `recall@k`'s cut-off and each search's depth, 10 to 50 (default 10).
    k: Option<u32>,
    /// `hybrid`'s fusion for this run instead of the configured one (to try weights).
    fusion: Option<FusionDto>,
    /// `false`: no reranking even if the collection turns it on (to measure without it).
    rerank: Option<bool>,
}

impl RunEvaluation {
    fn into_domain(self) -> Result<EvaluationRequest, ApiError> {
        let mut errors = Vec::new();
        let collections = self
            .collection_ids
            .map(|ids| crate::extract::collection_ids(&ids, "collection_ids", &mut errors));
        let set = match (self.cases, self.set_id) {
            (Some(cases), None) => {
                let inputs = cases
                    .into_iter()
                    .map(|c| GoldenItemInput {
                        question: c.question,
                        documents: c.expected_document_ids,
                        chunks: c.expected_chunk_ids,
                        answer: c.expected_answer,
                    })
                    .collect();
                match GoldenSet::new(inputs, "cases") {
                    Ok(set) => Some(SetSource::Inline(set)),
                    Err(e) => {
                        errors.extend(e.0);
                        None
                    }
                }
            }
            (None, Some(id)) => match id.parse::<EvaluationId>() {
                Ok(id) => Some(SetSource::Stored(id)),
                Err(_) => {
                    errors.push(FieldError::new("set_id", "is not an id"));
                    None
                }
            },
            _ => {
                errors.push(FieldError::new(
                    "cases",
                    "send exactly one of cases and set_id",
                ));
                None
            }
        };
        let modes = self.modes.map(|modes| {
            modes
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    SearchMode::parse(m).or_else(|| {
                        errors.push(FieldError::new(
                            format!("modes[{i}]"),
                            "must be keyword, vector or hybrid",
                        ));
                        None
                    })
                })
                .collect::<Vec<_>>()
        });
        let fusion = self.fusion.and_then(|f| {
            let method = match f.method.as_deref() {
                None => FusionMethod::Rrf,
                Some(m) => FusionMethod::parse(m).unwrap_or_else(|| {
                    errors.push(FieldError::new("fusion.method", "must be rrf or minmax"));
                    FusionMethod::Rrf
                }),
            };
            Fusion::new(method, f.keyword, f.vector, "fusion")
                .map_err(|e| errors.extend(e.0))
                .ok()
        });
        let Some(set) = set else {
            return Err(InvalidInput(errors).into());
        };
        match EvaluationRequest::new(collections, set, modes, self.k, fusion) {
            Ok(mut r) if errors.is_empty() => {
                r.rerank = self.rerank.unwrap_or(true);
                Ok(r)
            }
            Ok(_) => Err(InvalidInput(errors).into()),
            Err(e) => {
                errors.extend(e.0);
                Err(InvalidInput(errors).into())
            }
        }
    }
}

/// The figures of one mode (means over the cases, 0 to 1).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeResultDto {
    /// Cases run.
    cases: usize,
    /// `hybrid`'s fusion (`null` for the other modes).
    fusion: Option<FusionDto>,
    recall_at_1: f64,
    recall_at_5: f64,
    recall_at_10: f64,
    /// Recall within the run's `k`.
    recall_at_k: f64,
    mrr_at_10: f64,
    ndcg_at_10: f64,
}

impl ModeResultDto {
    fn from_domain(r: &ModeResult, cases: usize) -> Self {
        let m = &r.metrics;
        Self {
            cases,
            fusion: r.fusion.map(FusionDto::from),
            recall_at_1: m.recall_at_1,
            recall_at_5: m.recall_at_5,
            recall_at_10: m.recall_at_10,
            recall_at_k: m.recall_at_k,
            mrr_at_10: m.mrr_at_10,
            ndcg_at_10: m.ndcg_at_10,
        }
    }
}

/// An evaluation: the figures of each mode and the settings that produced them.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationDto {
    id: String,
    /// `succeeded`: an evaluation runs within its request.
    status: &'static str,
    /// The collections searched (`null`: every document of the organization).
    collection_ids: Option<Vec<String>>,
    /// `recall_at_k`'s cut-off and each search's depth.
    k: u32,
    /// The models of the searched vectors when it ran, comma-separated (`null`: none yet).
    embedding_model: Option<String>,
    /// Whether results were reranked.
    rerank: bool,
    /// The figures, by mode (`keyword`, `vector`, `hybrid`).
    results: BTreeMap<String, ModeResultDto>,
    /// The golden set (only in `GET /evaluations/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cases: Option<Vec<CaseDto>>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl EvaluationDto {
    fn from_domain(e: &Evaluation, with_cases: bool) -> Self {
        let ids = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        let cases = with_cases.then(|| {
            e.items
                .items()
                .iter()
                .map(|i| {
                    let x = &i.expected;
                    CaseDto {
                        question: i.question.clone(),
                        expected_document_ids: ids(&x
                            .documents
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()),
                        expected_chunk_ids: ids(&x
                            .chunks
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()),
                        expected_answer: x.answer.clone(),
                    }
                })
                .collect()
        });
        let n = e.items.items().len();
        Self {
            id: e.id.to_string(),
            status: "succeeded",
            collection_ids: e
                .collection_ids
                .as_ref()
                .map(|c| c.iter().map(ToString::to_string).collect()),
            k: e.k,
            embedding_model: e.embedding_model.clone(),
            rerank: e.rerank,
            results: e
                .results
                .iter()
                .map(|r| (r.mode.as_str().to_owned(), ModeResultDto::from_domain(r, n)))
                .collect(),
            cases,
            created_at: e.created_at,
        }
    }
}

/// Runs a golden set against a collection in each mode (admin) and stores the figures.
#[utoipa::path(
    tag = "retrieval",
    operation_id = "run_evaluation",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = RunEvaluation,
    responses(
        (status = 201, body = EvaluationDto),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
        (status = 402, description = "the monthly token quota is used up", body = Problem), (status = 429, description = "rate limited: see Retry-After", body = Problem)
    )
)]
#[post(
    "/evaluations",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn run_evaluation(
    state: web::Data<AppState>,
    access: Tenant<Admin, EmbeddingsRate>,
    body: Body<RunEvaluation>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let request = body.into_domain()?;
    let e = state.evaluations.run(&access.ctx, request).await?;
    tracing::info!(
        evaluation = %e.id,
        cases = e.items.items().len(),
        modes = e.results.len(),
        "evaluation"
    );
    Ok(HttpResponse::Created().json(EvaluationDto::from_domain(&e, false)))
}

/// The organization's evaluations, oldest first (without their golden sets).
#[utoipa::path(
    tag = "retrieval",
    operation_id = "list_evaluations",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<EvaluationDto>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))
)]
#[get("/evaluations")]
async fn list_evaluations(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<EvaluationDto>>, ApiError> {
    let page = state
        .evaluations
        .list(access.ctx.tenant_id(), &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, |e| {
        EvaluationDto::from_domain(&e, false)
    })))
}

/// One evaluation, with its golden set.
#[utoipa::path(
    tag = "retrieval",
    operation_id = "get_evaluation",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses((status = 200, body = EvaluationDto), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/evaluations/{id}")]
async fn get_evaluation(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<EvaluationId>,
) -> Result<web::Json<EvaluationDto>, ApiError> {
    let PathId(id) = id?;
    let e = state.evaluations.get(access.ctx.tenant_id(), id).await?;
    Ok(web::Json(EvaluationDto::from_domain(&e, true)))
}
