//! The AI tasks: `/ai/summarize`, `/ai/qa`, `/ai/mindmap` and `/documents/{id}/analyze`.

use actix_web::{post, web};
use chat::{AnalysisTask, MindNode, SummaryStyle, TaskInput};
use documents::DocumentId;
use kernel::{FieldError, InvalidInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::collection_ids;
use crate::dto::answers::{CitationDto, UsageDto};
use crate::error::{ApiError, OpenAiError, Problem};
use crate::extract::{Body, Id, PathId, ValidJson};
use crate::limits::ChatRate;
use crate::state::AppState;
use crate::tenant::{Member, Tenant};

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

/// `POST /ai/summarize`: exactly one of `text` and `document_id`.
#[derive(Debug, Deserialize, ToSchema)]
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
        (status = 400, body = OpenAiError), (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, body = OpenAiError), (status = 422, body = OpenAiError), (status = 502, body = OpenAiError),
        (status = 429, description = "rate limited (`rate_limit_error`, see Retry-After), or the monthly token quota is used up (`insufficient_quota`)", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[post(
    "/ai/summarize",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn summarize(
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
#[derive(Debug, Deserialize, ToSchema)]
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
        (status = 400, body = OpenAiError), (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, body = OpenAiError), (status = 422, body = OpenAiError), (status = 502, body = OpenAiError),
        (status = 429, description = "rate limited (`rate_limit_error`, see Retry-After), or the monthly token quota is used up (`insufficient_quota`)", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[post(
    "/ai/qa",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn qa(
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
#[derive(Debug, Deserialize, ToSchema)]
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
        (status = 400, body = OpenAiError), (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, body = OpenAiError), (status = 422, body = OpenAiError), (status = 502, body = OpenAiError),
        (status = 429, description = "rate limited (`rate_limit_error`, see Retry-After), or the monthly token quota is used up (`insufficient_quota`)", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[post(
    "/ai/mindmap",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn mindmap(
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
#[derive(Debug, Deserialize, ToSchema)]
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
#[post(
    "/documents/{id}/analyze",
    wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Answer>)"
)]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
pub(super) async fn analyze(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    id: Id<DocumentId>,
    body: Body<AnalyzeRequest>,
) -> Result<web::Json<AnalyzeResponse>, ApiError> {
    let PathId(id) = id?;
    // Another tenant's document is "not found", whatever the body says.
    state.documents.get(&access.ctx, id).await?;
    let ValidJson(body) = body?;
    let tasks = body.tasks()?;
    let (a, model, usage) = state
        .chat
        .analyze(&access.ctx, id, tasks, body.model.as_deref())
        .await?;
    state.trail_access(
        &access.ctx,
        kernel::audit::DOCUMENT_READ,
        [id.as_uuid()],
        None,
    );
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
}
