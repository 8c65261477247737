//! Usage and billing (tenant-scoped): `/usage`, `/usage/me`, `/usage/estimate`,
//! `/billing/plan`; and the DTOs `/admin/usage` shares.

use actix_web::{get, post, web};
use billing::UsageReport;
use kernel::Principal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::dto::usage::{ModelUsageDto, PlanDto, TotalsDto, WindowQuery};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, ValidJson};
use crate::state::AppState;
use crate::tenant::{Admin, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(usage)
        .service(my_usage)
        .service(estimate)
        .service(plan);
}

/// Usage of one kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindUsageDto {
    /// `chat` or `embedding`.
    kind: String,
    #[serde(flatten)]
    totals: TotalsDto,
}

/// Usage of one user or API key; both ids `null`: background work (ingestion, re-embedding).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorUsageDto {
    /// The user, when a user asked.
    user_id: Option<String>,
    /// The API key, when a key asked.
    api_key_id: Option<String>,
    #[serde(flatten)]
    totals: TotalsDto,
}

/// One bucket of a report's series: an hour over `24h`, a day over `7d` and `30d`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPointDto {
    /// The bucket's start (`since` plus a whole number of buckets); it ends where the next
    /// starts, the last at `until`.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    start: OffsetDateTime,
    #[serde(flatten)]
    totals: TotalsDto,
}

/// A usage report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportDto {
    /// `24h`, `7d` or `30d`.
    window: String,
    /// The window's start.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    since: OffsetDateTime,
    /// Its end (now).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    until: OffsetDateTime,
    /// Everything.
    totals: TotalsDto,
    /// By kind (`chat`, `embedding`).
    by_kind: Vec<KindUsageDto>,
    /// By model.
    by_model: Vec<ModelUsageDto>,
    /// By user or API key.
    by_user: Vec<ActorUsageDto>,
    /// Over time, oldest first: 24 hourly buckets over `24h`, 7 or 30 daily ones over `7d`
    /// and `30d`, counted from `since`, empty ones included; their sums add up to `totals`.
    series: Vec<SeriesPointDto>,
}

impl From<&UsageReport> for UsageReportDto {
    fn from(r: &UsageReport) -> Self {
        Self {
            window: r.window.as_str().to_owned(),
            since: r.since,
            until: r.until,
            totals: TotalsDto::from(&r.totals),
            by_kind: r
                .by_kind
                .iter()
                .map(|(k, t)| KindUsageDto {
                    kind: k.as_str().to_owned(),
                    totals: t.into(),
                })
                .collect(),
            by_model: r
                .by_model
                .iter()
                .map(|(m, t)| ModelUsageDto {
                    model: m.clone(),
                    kind: None,
                    totals: t.into(),
                })
                .collect(),
            by_user: r
                .by_actor
                .iter()
                .map(|(a, t)| ActorUsageDto {
                    user_id: match a {
                        Some(Principal::User(u)) => Some(u.to_string()),
                        _ => None,
                    },
                    api_key_id: match a {
                        Some(Principal::ApiKey(k)) => Some(k.to_string()),
                        _ => None,
                    },
                    totals: t.into(),
                })
                .collect(),
            series: r
                .series
                .iter()
                .map(|(start, t)| SeriesPointDto {
                    start: *start,
                    totals: t.into(),
                })
                .collect(),
        }
    }
}

/// The organization's usage by kind, model and user (admins and owners).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(WindowQuery, ("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = UsageReportDto),
        (status = 403, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[get("/usage")]
async fn usage(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    query: web::Query<WindowQuery>,
) -> Result<web::Json<UsageReportDto>, ApiError> {
    let window = query.window()?;
    let report = state
        .billing
        .usage(access.ctx.tenant_id(), window, None)
        .await?;
    Ok(web::Json(UsageReportDto::from(&report)))
}

/// The caller's own usage in the organization (any member, or an API key its own).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(WindowQuery, ("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses((status = 200, body = UsageReportDto), (status = 422, body = Problem))
)]
#[get("/usage/me")]
async fn my_usage(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<WindowQuery>,
) -> Result<web::Json<UsageReportDto>, ApiError> {
    let window = query.window()?;
    let report = state
        .billing
        .usage(access.ctx.tenant_id(), window, Some(access.ctx.principal()))
        .await?;
    Ok(web::Json(UsageReportDto::from(&report)))
}

/// One message of an estimate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateMessage {
    /// `system`, `user` or `assistant`.
    role: String,
    /// The text.
    content: String,
}

/// `POST /usage/estimate`: a chat request (`messages`) or a text to embed or send (`text`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// A chat model this organization may use, or an embedding model.
    model: String,
    /// The conversation (exclusive with `text`).
    messages: Option<Vec<EstimateMessage>>,
    /// A text (exclusive with `messages`).
    text: Option<String>,
    /// Most tokens to produce (chat models; default the configured answer budget).
    max_tokens: Option<u32>,
}

impl From<EstimateRequest> for billing::EstimateRequest {
    fn from(r: EstimateRequest) -> Self {
        Self {
            model: r.model,
            messages: r.messages.map(|m| {
                m.into_iter()
                    .map(|m| billing::EstimateMessage {
                        role: m.role,
                        content: m.content,
                    })
                    .collect()
            }),
            text: r.text,
            max_tokens: r.max_tokens,
        }
    }
}

/// What a call would cost at most.
#[derive(Debug, Serialize, ToSchema)]
pub struct EstimateDto {
    /// The model.
    model: String,
    /// Tokens the request sends (counted with the model's tokenizer, tiktoken).
    prompt_tokens: u64,
    /// The most tokens it may produce (0 for embeddings).
    max_completion_tokens: u64,
    /// The cost of both, in integer micro-units (0 for local models).
    estimated_cost: i64,
}

/// Counts a request's tokens and prices it, before it is sent.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = EstimateRequest,
    responses((status = 200, body = EstimateDto), (status = 422, body = Problem))
)]
#[post("/usage/estimate")]
async fn estimate(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    body: Body<EstimateRequest>,
) -> Result<web::Json<EstimateDto>, ApiError> {
    let ValidJson(body) = body?;
    let e = state
        .estimates
        .estimate(access.ctx.tenant_id(), body.into())
        .await?;
    Ok(web::Json(EstimateDto {
        model: e.model,
        prompt_tokens: e.prompt_tokens,
        max_completion_tokens: e.max_completion_tokens,
        estimated_cost: e.estimated_cost,
    }))
}

/// The organization's plan, limit and use this month.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses((status = 200, body = PlanDto))
)]
#[get("/billing/plan")]
async fn plan(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
) -> Result<web::Json<PlanDto>, ApiError> {
    let status = state.billing.plan_status(access.ctx.tenant_id()).await?;
    let storage = state.documents.storage(access.ctx.tenant_id()).await?;
    Ok(web::Json(PlanDto::new(status, storage)))
}
