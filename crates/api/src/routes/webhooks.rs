//! Tenant-scoped webhook routes (`X-Tenant-ID`, admin+): endpoints, their delivery log, and
//! redelivery. The secret is in the creation's answer only. See docs/webhooks.md.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use webhooks::{Attempt, AttemptId, Endpoint, EndpointChange, NewEndpoint, WebhookId};

use crate::dto::PageDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson};
use crate::state::AppState;
use crate::tenant::{Admin, Tenant};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(list_deliveries)
        .service(redeliver);
}

/// A webhook endpoint (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    id: String,
    url: String,
    /// Event names: `document.ready`, `document.failed`, `workflow.completed`,
    /// `answer.completed`, `usage.threshold`.
    events: Vec<String>,
    enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Endpoint> for WebhookDto {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id.to_string(),
            url: e.url,
            events: e.events.iter().map(|k| k.as_str().to_owned()).collect(),
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A webhook endpoint just created, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookDto {
    #[serde(flatten)]
    webhook: WebhookDto,
    /// `whsec_` + base64: the Standard Webhooks signing secret. Never shown again.
    secret: String,
}

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (a public destination), at most 2,000 characters.
    url: String,
    /// One or more event names.
    events: Vec<String>,
    /// Default: true.
    enabled: Option<bool>,
}

/// Registers a webhook endpoint (admin). The answer carries its secret, once.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = CreatedWebhookDto),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[post("/webhooks")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn create_webhook(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    body: Body<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let (endpoint, secret) = state
        .webhooks
        .create(
            &access.ctx,
            NewEndpoint {
                url: body.url,
                events: body.events,
                enabled: body.enabled,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedWebhookDto {
        webhook: endpoint.into(),
        secret,
    }))
}

/// The organization's webhook endpoints, oldest first (admin).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = PageDto<WebhookDto>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)
    )
)]
#[get("/webhooks")]
async fn list_webhooks(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
) -> Result<web::Json<PageDto<WebhookDto>>, ApiError> {
    let all = state.webhooks.list(&access.ctx).await?;
    Ok(web::Json(PageDto::from_page(
        kernel::Page {
            items: all,
            next_cursor: None,
        },
        WebhookDto::from,
    )))
}

/// One webhook endpoint (admin).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 200, body = WebhookDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)
    )
)]
#[get("/webhooks/{id}")]
async fn get_webhook(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<WebhookId>,
) -> Result<web::Json<WebhookDto>, ApiError> {
    let PathId(id) = id?;
    Ok(web::Json(state.webhooks.get(&access.ctx, id).await?.into()))
}

/// `PATCH /webhooks/{id}`: absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// Changes a webhook endpoint (admin); disabling it stops its deliveries, queued ones
/// included.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    request_body = PatchWebhook,
    responses(
        (status = 200, body = WebhookDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[patch("/webhooks/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn update_webhook(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<WebhookId>,
    body: Body<PatchWebhook>,
) -> Result<web::Json<WebhookDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let endpoint = state
        .webhooks
        .update(
            &access.ctx,
            id,
            EndpointChange {
                url: body.url,
                events: body.events,
                enabled: body.enabled,
            },
        )
        .await?;
    Ok(web::Json(endpoint.into()))
}

/// Deletes a webhook endpoint with its queued deliveries and its log (admin).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 204, description = "deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)
    )
)]
#[delete("/webhooks/{id}")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn delete_webhook(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.webhooks.delete(&access.ctx, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// The attempt's id (what `POST /webhooks/deliveries/{id}/redeliver` takes).
    id: String,
    /// The event name.
    event: String,
    /// The endpoint's HTTP status, when it answered.
    status_code: Option<u16>,
    /// Why the attempt failed, when it did (never the response body).
    error: Option<String>,
    /// 1 for a delivery's first attempt.
    attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Attempt> for DeliveryDto {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            event: a.kind.as_str().to_owned(),
            status_code: a.status_code,
            error: a.error,
            attempt: a.attempt,
            created_at: a.created_at,
        }
    }
}

/// An endpoint's delivery log, one entry per attempt, newest first (admin).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path), PageQuery),
    responses(
        (status = 200, body = PageDto<DeliveryDto>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)
    )
)]
#[get("/webhooks/{id}/deliveries")]
async fn list_deliveries(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<WebhookId>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<DeliveryDto>>, ApiError> {
    let PathId(id) = id?;
    let page = state
        .webhooks
        .attempts(&access.ctx, id, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, DeliveryDto::from)))
}

/// The delivery queued by a redelivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliveryDto {
    /// The new delivery's id.
    delivery_id: String,
    /// `queued`.
    status: &'static str,
}

/// Sends an attempt's event again, as a new delivery with the same `webhook-id` (admin).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug"), ("id" = String, Path, description = "an attempt's id from the delivery log")),
    responses(
        (status = 202, body = RedeliveryDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)
    )
)]
#[post("/webhooks/deliveries/{id}/redeliver")]
#[tracing::instrument(skip_all, fields(tenant = %access.ctx.tenant_id()))]
async fn redeliver(
    state: web::Data<AppState>,
    access: Tenant<Admin>,
    id: Id<AttemptId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    let delivery = state.webhooks.redeliver(&access.ctx, id).await?;
    Ok(HttpResponse::Accepted().json(RedeliveryDto {
        delivery_id: delivery.to_string(),
        status: "queued",
    }))
}
