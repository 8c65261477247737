//! Tenant-scoped workflow routes (`X-Tenant-ID`): the kinds, triggering, runs with their
//! progress and result, cancel, an export's CSV, and schedules. Viewers read; members trigger
//! and cancel (admins for the usage export); admins schedule. See docs/workflows.md.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, web};
use kernel::FieldError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use workflows::{Run, RunFilter, RunId, RunStatus, Schedule, ScheduleId, WorkflowKind};

use crate::dto::PageDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson};
use crate::limits::ChatRate;
use crate::state::AppState;
use crate::tenant::{Admin, Member, Tenant, Viewer};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_workflows)
        .service(trigger)
        .service(list_runs)
        .service(get_run)
        .service(download)
        .service(cancel)
        .service(list_schedules)
        .service(create_schedule)
        .service(delete_schedule);
}

/// A workflow kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowDto {
    /// `summarize_collection`, `analyze_documents`, `reindex_collection`, `export_usage`.
    name: &'static str,
    description: &'static str,
    /// The JSON Schema of `input`.
    #[schema(value_type = Object)]
    input_schema: serde_json::Value,
    /// The lowest role that may trigger, schedule or cancel it.
    min_role: &'static str,
    /// Whether it calls the model (metered against the plan like chat).
    uses_model: bool,
}

/// The workflow kinds.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowsDto {
    items: Vec<WorkflowDto>,
}

/// One run of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDto {
    id: String,
    /// The workflow's name.
    workflow: &'static str,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    status: &'static str,
    /// 0..1.
    progress: f32,
    /// The input, with its defaults filled in.
    #[schema(value_type = Object)]
    input: serde_json::Value,
    /// What it produced, once succeeded (a JSON object; an export's CSV is at its
    /// `download`).
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    /// Why it failed.
    error: Option<String>,
    /// A cancel was asked while it ran: it stops at its next step.
    cancel_requested: bool,
    /// The schedule that fired it.
    schedule_id: Option<String>,
    /// Runs started (a run whose worker stopped is resumed by another).
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<OffsetDateTime>,
}

impl From<Run> for RunDto {
    fn from(r: Run) -> Self {
        Self {
            id: r.id.to_string(),
            workflow: r.kind.as_str(),
            status: r.status.as_str(),
            progress: r.progress,
            input: r.input,
            result: r.result,
            error: r.error,
            cancel_requested: r.cancel_requested,
            schedule_id: r.schedule_id.map(|s| s.to_string()),
            attempts: r.attempts,
            created_at: r.created_at,
            finished_at: r.finished_at,
        }
    }
}

/// A schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDto {
    id: String,
    workflow: &'static str,
    #[schema(value_type = Object)]
    input: serde_json::Value,
    /// Five fields (minute hour day month weekday), UTC.
    cron: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    next_run_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Schedule> for ScheduleDto {
    fn from(s: Schedule) -> Self {
        Self {
            id: s.id.to_string(),
            workflow: s.kind.as_str(),
            input: s.input,
            cron: s.cron.as_str().to_owned(),
            next_run_at: s.next_run_at,
            created_at: s.created_at,
        }
    }
}

/// `POST /workflows/trigger`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// A name of `GET /workflows`.
    workflow: String,
    /// The workflow's input (see its `input_schema`).
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// A cron expression (five fields, UTC): schedule the workflow instead of running it now
    /// (admins).
    schedule: Option<String>,
}

/// What `POST /workflows/trigger` queued: a run, or with `schedule`, a schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggeredDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<RunDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleDto>,
}

/// `POST /workflows/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// A name of `GET /workflows`.
    workflow: String,
    /// The workflow's input.
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// Five fields (minute hour day month weekday), UTC; `@daily` and the like too.
    cron: String,
}

/// The filters of `GET /workflows/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only this status: `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    status: Option<String>,
    /// Only this workflow.
    workflow: Option<String>,
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The workflow kinds, with their input schemas.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = WorkflowsDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/workflows")]
async fn list_workflows(_access: Tenant<Viewer>) -> web::Json<WorkflowsDto> {
    web::Json(WorkflowsDto {
        items: WorkflowKind::ALL
            .into_iter()
            .map(|k| WorkflowDto {
                name: k.as_str(),
                description: k.description(),
                input_schema: k.input_schema(),
                min_role: k.min_role().as_str(),
                uses_model: k.uses_model(),
            })
            .collect(),
    })
}

/// Queues a run of a workflow (202 with the run), or with `schedule` schedules it (admins;
/// 202 with the schedule). Rate limited as the AI tasks.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = TriggerRequest,
    responses(
        (status = 202, body = TriggeredDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "below the workflow's role, or the schedule limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")
    )
)]
#[post("/workflows/trigger")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn trigger(
    state: web::Data<AppState>,
    access: Tenant<Member, ChatRate>,
    body: Body<TriggerRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let input = body.input.unwrap_or(serde_json::Value::Null);
    let answer = match body.schedule {
        Some(cron) => TriggeredDto {
            run: None,
            schedule: Some(
                state
                    .workflows
                    .schedule(&access.ctx, &body.workflow, &input, &cron, "schedule")
                    .await?
                    .into(),
            ),
        },
        None => TriggeredDto {
            run: Some(
                state
                    .workflows
                    .trigger(&access.ctx, &body.workflow, &input)
                    .await?
                    .into(),
            ),
            schedule: None,
        },
    };
    Ok(HttpResponse::Accepted().json(answer))
}

/// The organization's runs, newest first.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), RunQuery),
    responses(
        (status = 200, body = PageDto<RunDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/workflows/runs")]
async fn list_runs(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    query: web::Query<RunQuery>,
) -> Result<web::Json<PageDto<RunDto>>, ApiError> {
    let mut errors = Vec::new();
    let status = query.status.as_deref().and_then(|s| {
        RunStatus::parse(s).or_else(|| {
            errors.push(FieldError::new(
                "status",
                "must be queued, running, succeeded, failed or cancelled",
            ));
            None
        })
    });
    let kind = query.workflow.as_deref().and_then(|s| {
        WorkflowKind::parse(s).or_else(|| {
            errors.push(FieldError::new(
                "workflow",
                "must be a name of GET /workflows",
            ));
            None
        })
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .to_request()?;
    let runs = state
        .workflows
        .runs(&access.ctx, &RunFilter { status, kind }, &page)
        .await?;
    Ok(web::Json(PageDto::from_page(runs, RunDto::from)))
}

/// One run: status, progress, result or error.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 200, body = RunDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/workflows/runs/{id}")]
async fn get_run(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<RunId>,
) -> Result<web::Json<RunDto>, ApiError> {
    let PathId(id) = id?;
    Ok(web::Json(
        state.workflows.run(&access.ctx, id).await?.into(),
    ))
}

/// An export's CSV (`text/csv`), once the run succeeded (the role of its workflow: admins).
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 200, body = String, content_type = "text/csv"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run, or one without a CSV", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run has not ended", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/workflows/runs/{id}/download")]
async fn download(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
    id: Id<RunId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    let csv = state.workflows.download(&access.ctx, id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"usage-{id}.csv\""),
        ))
        .body(csv))
}

/// Cancels a run: a queued one ends `cancelled` at once, a running one stops at its next step.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 202, body = RunDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run already ended", body = Problem, content_type = "application/problem+json")
    )
)]
#[post("/workflows/runs/{id}/cancel")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn cancel(
    state: web::Data<AppState>,
    access: Tenant<Member>,
    id: Id<RunId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    let run = state.workflows.cancel(&access.ctx, id).await?;
    Ok(HttpResponse::Accepted().json(RunDto::from(run)))
}

/// The organization's schedules, oldest first.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = PageDto<ScheduleDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/workflows/schedules")]
async fn list_schedules(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
) -> Result<web::Json<PageDto<ScheduleDto>>, ApiError> {
    let all = state.workflows.schedules(&access.ctx).await?;
    Ok(web::Json(PageDto::from_page(
        kernel::Page {
            items: all,
            next_cursor: None,
        },
        ScheduleDto::from,
    )))
}

/// Schedules a workflow on a cron expression (admins). A missed occurrence (no server ran)
/// runs once when a server is back; several servers never run one twice.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = ScheduleRequest,
    responses(
        (status = 201, body = ScheduleDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "below admin, or the schedule limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    )
)]
#[post("/workflows/schedules")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn create_schedule(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    body: Body<ScheduleRequest>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let input = body.input.unwrap_or(serde_json::Value::Null);
    let schedule = state
        .workflows
        .schedule(&access.ctx, &body.workflow, &input, &body.cron, "cron")
        .await?;
    Ok(HttpResponse::Created().json(ScheduleDto::from(schedule)))
}

/// Deletes a schedule (admins); its runs stay.
#[utoipa::path(
    tag = "workflows",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 204),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[delete("/workflows/schedules/{id}")]
async fn delete_schedule(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<ScheduleId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.workflows.unschedule(&access.ctx, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
