//! `/api/v1/admin`: platform administration (users, organizations, the audit log).

use actix_web::{get, patch, put, web};
use kernel::{FieldError, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Client, PlatformAdmin};
use crate::dto::PageDto;
use crate::dto::audit::{AuditDto, AuditFilter};
use crate::dto::usage::{ModelUsageDto, PlanDto, TotalsDto, WindowQuery};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(search_users)
        .service(get_user)
        .service(update_user)
        .service(list_orgs)
        .service(update_org)
        .service(admin_usage)
        .service(get_org_models)
        .service(put_org_models)
        .service(audit_log);
}

/// An account as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserDto {
    id: String,
    email: String,
    name: String,
    is_platform_admin: bool,
    disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<&identity::User> for AdminUserDto {
    fn from(u: &identity::User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            is_platform_admin: u.is_platform_admin,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
        }
    }
}

/// `?q=` and the page.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserSearch {
    /// Part of the email to look for.
    q: Option<String>,
    /// Page size, 1–100 (default 20).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Searches accounts by email.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(UserSearch),
    responses((status = 200, body = PageDto<AdminUserDto>), (status = 403, body = Problem))
)]
#[get("/admin/users")]
async fn search_users(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<UserSearch>,
) -> Result<web::Json<PageDto<AdminUserDto>>, ApiError> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .to_request()?;
    let found = state
        .accounts
        .admin_search(query.q.as_deref(), &page)
        .await?;
    Ok(web::Json(PageDto::from_page(found, |u| {
        AdminUserDto::from(&u)
    })))
}

/// One account.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = AdminUserDto), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[get("/admin/users/{id}")]
async fn get_user(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    id: Id<UserId>,
) -> Result<web::Json<AdminUserDto>, ApiError> {
    let PathId(id) = id?;
    let user = state.accounts.admin_get(id).await?;
    Ok(web::Json(AdminUserDto::from(&user)))
}

/// `PATCH /admin/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Disable (ending every session at once) or enable the account.
    disabled: Option<bool>,
    /// Grant or take away the platform-administrator flag.
    is_platform_admin: Option<bool>,
}

/// Disables or enables an account, or changes its administrator flag (not one's own).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    request_body = UserPatch,
    responses(
        (status = 200, body = AdminUserDto),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[patch("/admin/users/{id}")]
async fn update_user(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Client(client): Client,
    id: Id<UserId>,
    body: Body<UserPatch>,
) -> Result<web::Json<AdminUserDto>, ApiError> {
    let PathId(id) = id?;
    let ValidJson(body) = body?;
    let user = state
        .accounts
        .admin_update(
            &admin.user,
            id,
            body.disabled,
            body.is_platform_admin,
            &client,
        )
        .await?;
    Ok(web::Json(AdminUserDto::from(&user)))
}

/// An organization as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrgDto {
    id: String,
    name: String,
    slug: String,
    plan: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// The plan, limit and use this month (on `PATCH` answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    billing: Option<PlanDto>,
}

impl From<&tenancy::Organization> for AdminOrgDto {
    fn from(o: &tenancy::Organization) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.as_str().to_owned(),
            slug: o.slug.as_str().to_owned(),
            plan: o.plan.clone(),
            created_at: o.created_at,
            billing: None,
        }
    }
}

/// Every organization, by id.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = PageDto<AdminOrgDto>), (status = 403, body = Problem))
)]
#[get("/admin/orgs")]
async fn list_orgs(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<AdminOrgDto>>, ApiError> {
    let page = state.orgs.admin_list(&query.to_request()?).await?;
    Ok(web::Json(PageDto::from_page(page, |o| {
        AdminOrgDto::from(&o)
    })))
}

/// `PATCH /admin/orgs/{id}`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    /// A configured plan (`free`, `pro`, `enterprise`, or one the configuration adds).
    plan: Option<String>,
    /// Tokens a month instead of the plan's; `null` goes back to the plan's.
    #[serde(default, deserialize_with = "crate::extract::double_option")]
    #[schema(value_type = Option<u64>)]
    monthly_token_limit: Option<Option<u64>>,
}

/// Changes an organization's plan and/or its monthly token limit.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "organization id")),
    request_body = OrgPatch,
    responses(
        (status = 200, body = AdminOrgDto),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[patch("/admin/orgs/{id}")]
async fn update_org(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Client(client): Client,
    id: Id<TenantId>,
    body: Body<OrgPatch>,
) -> Result<web::Json<AdminOrgDto>, ApiError> {
    let PathId(tenant) = id?;
    let ValidJson(body) = body?;
    if body.plan.is_none() && body.monthly_token_limit.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "plan",
            "give plan, monthly_token_limit or both",
        )]));
    }
    if let Some(plan) = &body.plan {
        state.billing.check_plan(plan)?;
    }
    let org = match &body.plan {
        Some(plan) => {
            state
                .orgs
                .admin_set_plan(admin.user.id, tenant, plan, &client)
                .await?
        }
        None => state
            .orgs
            .find(&tenant.to_string())
            .await?
            .ok_or(ApiError::NotFound)?,
    };
    if let Some(limit) = body.monthly_token_limit {
        state.billing.set_limit_override(org.id, limit).await?;
        kernel::audit::record(
            &*state.audit,
            kernel::AuditEvent {
                at: time::OffsetDateTime::now_utc(),
                action: "admin.org.quota_changed",
                actor: Some(admin.user.id),
                tenant: Some(org.id),
                target: Some(match limit {
                    Some(l) => format!("monthly_token_limit={l}"),
                    None => "monthly_token_limit=plan".to_owned(),
                }),
                client: client.clone(),
                access: None,
            },
        )
        .await;
    } else {
        // The plan changed: its limits apply from the next call.
        state.billing.limits_changed(org.id).await?;
    }
    let status = state.billing.plan_status(org.id).await?;
    let storage = state.documents.storage(org.id).await?;
    let mut dto = AdminOrgDto::from(&org);
    dto.billing = Some(PlanDto::new(status, storage));
    Ok(web::Json(dto))
}

/// One organization's usage, for `/admin/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsageDto {
    /// The organization.
    org_id: String,
    /// Its sums.
    totals: TotalsDto,
    /// By kind and model.
    by_model: Vec<ModelUsageDto>,
}

/// Usage across organizations.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUsageDto {
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
    /// Per organization, most tokens first.
    orgs: Vec<TenantUsageDto>,
}

/// Usage of every organization over a window.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(WindowQuery),
    responses(
        (status = 200, body = AdminUsageDto),
        (status = 403, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[get("/admin/usage")]
async fn admin_usage(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<WindowQuery>,
) -> Result<web::Json<AdminUsageDto>, ApiError> {
    let window = query.window()?;
    let report = state.billing.admin_usage(window).await?;
    Ok(web::Json(AdminUsageDto {
        window: report.window.as_str().to_owned(),
        since: report.since,
        until: report.until,
        totals: (&report.totals).into(),
        orgs: report
            .tenants
            .iter()
            .map(|(t, sum, rows)| TenantUsageDto {
                org_id: t.to_string(),
                totals: sum.into(),
                by_model: rows
                    .iter()
                    .map(|r| ModelUsageDto {
                        model: r.model.clone(),
                        kind: Some(r.kind.as_str().to_owned()),
                        totals: (&r.totals).into(),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// An organization's chat-model whitelist.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgModelsDto {
    /// The models its members may use.
    models: Vec<String>,
    /// Whether a platform admin set the list (else it is the configured default).
    custom: bool,
}

/// `PUT /admin/orgs/{id}/models`: a list of served models, or `null` for the default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgModelsRequest {
    /// 1 to 100 model names, or `null`.
    models: Option<Vec<String>>,
}

async fn org_models(state: &AppState, tenant: TenantId) -> Result<TenantId, ApiError> {
    state
        .orgs
        .find(&tenant.to_string())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(tenant)
}

/// An organization's chat-model whitelist.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "organization id")),
    responses((status = 200, body = OrgModelsDto), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[get("/admin/orgs/{id}/models")]
async fn get_org_models(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    id: Id<TenantId>,
) -> Result<web::Json<OrgModelsDto>, ApiError> {
    let PathId(tenant) = id?;
    let tenant = org_models(&state, tenant).await?;
    Ok(web::Json(OrgModelsDto {
        models: state.chat.allowed_models(tenant).await?,
        custom: state.chat.has_custom_models(tenant).await?,
    }))
}

/// Sets (or, with `null`, resets) an organization's chat-model whitelist.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "organization id")),
    request_body = OrgModelsRequest,
    responses(
        (status = 200, body = OrgModelsDto), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[put("/admin/orgs/{id}/models")]
#[tracing::instrument(skip_all, fields(admin = %admin.user.id))]
async fn put_org_models(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    id: Id<TenantId>,
    body: Body<OrgModelsRequest>,
) -> Result<web::Json<OrgModelsDto>, ApiError> {
    let PathId(tenant) = id?;
    let ValidJson(body) = body?;
    let tenant = org_models(&state, tenant).await?;
    let custom = body.models.is_some();
    let models = state.chat.set_allowed_models(tenant, body.models).await?;
    tracing::info!(%tenant, custom, "model whitelist changed");
    Ok(web::Json(OrgModelsDto { models, custom }))
}

/// Security and document-access events of every organization, newest first, with filters.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(AuditFilter),
    responses(
        (status = 200, body = PageDto<AuditDto>),
        (status = 403, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[get("/admin/audit-log")]
async fn audit_log(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<AuditFilter>,
) -> Result<web::Json<PageDto<AuditDto>>, ApiError> {
    Ok(web::Json(query.read(&state, None).await?))
}
