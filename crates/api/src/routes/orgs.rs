//! `/api/v1/orgs`: organizations and their members.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use kernel::{Role, UserId};
use serde::{Deserialize, Serialize};
use tenancy::{Member, Membership, Organization};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Client, CurrentUser};
use crate::dto::PageDto;
use crate::dto::audit::{AuditDto, OrgAuditFilter};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Id, PageQuery, PathId, ValidJson};
use crate::state::AppState;
use crate::tenant::{
    Access, Admin, Caller, ManageInvitations, ManageKeys, ManageMembers, MinRole, OrgAccess, Owner,
    RemoveMembers, Viewer,
};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create)
        .service(list)
        .service(get_org)
        .service(rename)
        .service(delete_org)
        .service(members)
        .service(set_role)
        .service(remove_member)
        .service(create_key)
        .service(list_keys)
        .service(revoke_key)
        .service(invite)
        .service(list_invitations)
        .service(revoke_invitation)
        .service(accept_invitation)
        .service(audit_log);
}

/// An organization, with the caller's role in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgDto {
    id: String,
    name: String,
    slug: String,
    plan: String,
    /// The caller's role.
    role: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    settings: OrgSettingsDto,
}

/// What the organization's admins set (`PATCH /orgs/{org}`); every member sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgSettingsDto {
    /// The document-access trail keeps search queries and questions (off: ids only).
    audit_question_text: bool,
    /// Days chat history is kept (`null`: forever).
    chat_retention_days: Option<u32>,
    /// Days a failed document is kept (`null`: forever).
    failed_documents_retention_days: Option<u32>,
    /// Days document-access events are kept (`null`: forever).
    access_trail_retention_days: Option<u32>,
}

impl OrgDto {
    fn new(o: &Organization, role: Role) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.as_str().to_owned(),
            slug: o.slug.as_str().to_owned(),
            plan: o.plan.clone(),
            role: role.as_str().to_owned(),
            created_at: o.created_at,
            settings: OrgSettingsDto {
                audit_question_text: o.settings.audit_question_text(),
                chat_retention_days: o.settings.chat_retention_days,
                failed_documents_retention_days: o.settings.failed_documents_retention_days,
                access_trail_retention_days: o.settings.access_trail_retention_days,
            },
        }
    }
}

/// `POST /orgs`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrg {
    /// 1 to 120 characters.
    name: String,
    /// 3 to 48 characters of a-z, 0-9 and inner hyphens; unique.
    slug: String,
}

/// Creates an organization; the caller becomes its owner.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    request_body = CreateOrg,
    responses(
        (status = 201, body = OrgDto),
        (status = 401, body = Problem),
        (status = 403, description = "`org_limit_reached`: the account owns as many organizations as it may (`orgs.max_owned_per_account`)", body = Problem),
        (status = 409, description = "the slug is taken", body = Problem),
        (status = 422, body = Problem)
    )
)]
#[post("/orgs")]
#[tracing::instrument(skip_all, fields(user_id = %user.user.id))]
async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    Client(client): Client,
    body: Body<CreateOrg>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let org = state
        .orgs
        .create(user.user.id, &body.name, &body.slug, &client)
        .await?;
    Ok(HttpResponse::Created().json(OrgDto::new(&org, Role::Owner)))
}

/// The caller's organizations, by id.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = PageDto<OrgDto>), (status = 401, body = Problem))
)]
#[get("/orgs")]
async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<OrgDto>>, ApiError> {
    let page = state
        .orgs
        .for_user(user.user.id, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, |(o, r)| {
        OrgDto::new(&o, r)
    })))
}

/// One organization (any member).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    responses((status = 200, body = OrgDto), (status = 404, body = Problem))
)]
#[get("/orgs/{org}")]
async fn get_org(OrgAccess(access): OrgAccess<Viewer>) -> web::Json<OrgDto> {
    web::Json(OrgDto::new(&access.org, access.ctx.role()))
}

/// `PATCH /orgs/{org}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameOrg {
    /// A new name, 1 to 120 characters.
    name: Option<String>,
    /// Keep search queries and questions in the document-access trail (off by default).
    audit_question_text: Option<bool>,
    /// Days chat history is kept, 1 to 3650; `null`: forever (the default).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    chat_retention_days: Option<Option<u32>>,
    /// Days a failed document is kept, 1 to 3650; `null`: forever (the default).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    failed_documents_retention_days: Option<Option<u32>>,
    /// Days document-access events are kept, 1 to 3650; `null`: forever (the default).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    access_trail_retention_days: Option<Option<u32>>,
}

/// A field that is present, `null` included (`Some(None)`); absent is `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// Renames an organization or changes its settings (admin or owner); at least one field.
/// The slug never changes.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    request_body = RenameOrg,
    responses(
        (status = 200, body = OrgDto),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[patch("/orgs/{org}")]
async fn rename(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Admin>,
    Client(client): Client,
    body: Body<RenameOrg>,
) -> Result<web::Json<OrgDto>, ApiError> {
    let ValidJson(body) = body?;
    let change = tenancy::SettingsChange {
        audit_question_text: body.audit_question_text,
        chat_retention_days: body.chat_retention_days,
        failed_documents_retention_days: body.failed_documents_retention_days,
        access_trail_retention_days: body.access_trail_retention_days,
    };
    let Some(name) = body.name.as_deref() else {
        if change.is_empty() {
            return Err(kernel::InvalidInput::field(
                "name",
                "is required unless a setting changes",
            )
            .into());
        }
        let org = state
            .orgs
            .update_settings(&access.ctx, change, &client)
            .await?;
        return Ok(web::Json(OrgDto::new(&org, access.ctx.role())));
    };
    let mut org = state.orgs.rename(&access.ctx, name, &client).await?;
    if !change.is_empty() {
        org = state
            .orgs
            .update_settings(&access.ctx, change, &client)
            .await?;
    }
    Ok(web::Json(OrgDto::new(&org, access.ctx.role())))
}

/// Erases an organization (owner): every row, file, vector, cache key, queued job and audit
/// event of it, leaving a sealed `organization.erased` tombstone in the platform audit log. A
/// failure before the organization is gone answers 500 and repeating the call finishes it.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    responses(
        (status = 204, description = "erased; its tokens, keys and ids are refused from now on"),
        (status = 403, body = Problem),
        (status = 404, body = Problem)
    )
)]
#[delete("/orgs/{org}")]
async fn delete_org(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Owner>,
    Client(client): Client,
) -> Result<HttpResponse, ApiError> {
    state.orgs.delete(&access.ctx, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A member.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDto {
    user_id: String,
    role: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    joined_at: OffsetDateTime,
    /// The account's email (in the members list; absent from a role change's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// The account's display name (in the members list; absent from a role change's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl From<Membership> for MemberDto {
    fn from(m: Membership) -> Self {
        Self {
            user_id: m.user_id.to_string(),
            role: m.role.as_str().to_owned(),
            joined_at: m.created_at,
            email: None,
            name: None,
        }
    }
}

impl From<Member> for MemberDto {
    fn from(m: Member) -> Self {
        Self {
            email: Some(m.email),
            name: Some(m.name),
            ..Self::from(m.membership)
        }
    }
}

/// The members with their email and name (any member may see them).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<MemberDto>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/members")]
async fn members(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Viewer>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<MemberDto>>, ApiError> {
    let page = state
        .orgs
        .members(&access.ctx, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, MemberDto::from)))
}

/// `PATCH /orgs/{org}/members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetRole {
    /// `owner`, `admin`, `member` or `viewer`.
    role: String,
}

/// A role from a request body; `allowed` names the roles the route takes.
fn role_field(s: &str, allowed: &'static str) -> Result<Role, ApiError> {
    s.parse()
        .map_err(|_| ApiError::Validation(vec![kernel::FieldError::new("role", allowed)]))
}

/// Changes a member's role (admin or owner; only an owner grants or takes away ownership; the
/// last owner stays). An API key needs the `members:manage` scope.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "organization id or slug"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    request_body = SetRole,
    responses(
        (status = 200, body = MemberDto),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "the last owner cannot be demoted", body = Problem),
        (status = 422, body = Problem)
    )
)]
#[patch("/orgs/{org}/members/{user_id}")]
async fn set_role(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageMembers>,
    Client(client): Client,
    id: Id<UserId>,
    body: Body<SetRole>,
) -> Result<web::Json<MemberDto>, ApiError> {
    let PathId(user) = id?;
    let ValidJson(body) = body?;
    let role = role_field(&body.role, "must be one of owner, admin, member, viewer")?;
    let m = state
        .orgs
        .set_role(&access.ctx, user, role, &client)
        .await?;
    Ok(web::Json(m.into()))
}

/// Removes a member (admin or owner), or leaves (any member removing themselves). Only an
/// owner removes an owner; the last owner stays. An API key needs the `members:manage` scope.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "organization id or slug"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "the last owner cannot be removed", body = Problem)
    )
)]
#[delete("/orgs/{org}/members/{user_id}")]
async fn remove_member(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<RemoveMembers>,
    Client(client): Client,
    id: Id<UserId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(user) = id?;
    state
        .orgs
        .remove(&access.ctx, access.caller.user_id(), user, &client)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who made an API key: `null` once that account is gone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyCreatorDto {
    id: String,
    email: String,
    name: String,
}

/// An API key as the API shows it (never its secret after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    id: String,
    name: String,
    /// The highest role it acts with; never above its creator's current role.
    role: String,
    /// What it may do: `read`, `write`, `chat`, `members:manage`, `invitations:manage`,
    /// `keys:manage`.
    scopes: Vec<String>,
    /// Who made it (the key acts for them, and dies when they leave the organization).
    created_by: Option<KeyCreatorDto>,
    /// The first characters of the secret, to recognise it.
    prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<OffsetDateTime>,
}

impl ApiKeyDto {
    fn new(k: &tenancy::ApiKey, created_by: Option<KeyCreatorDto>) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            role: k.role.as_str().to_owned(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_by,
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// The creators of `keys`, each looked up once (a page holds a few creators at most).
async fn creators(
    state: &AppState,
    keys: &[tenancy::ApiKey],
) -> Result<std::collections::HashMap<UserId, KeyCreatorDto>, ApiError> {
    let mut found = std::collections::HashMap::new();
    for id in keys.iter().filter_map(|k| k.created_by) {
        if found.contains_key(&id) {
            continue;
        }
        match state.accounts.admin_get(id).await {
            Ok(u) => {
                found.insert(
                    id,
                    KeyCreatorDto {
                        id: id.to_string(),
                        email: u.email.as_str().to_owned(),
                        name: u.name.as_str().to_owned(),
                    },
                );
            }
            Err(identity::AuthError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// `POST /orgs/{org}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1 to 100 characters.
    name: String,
    /// `admin`, `member` or `viewer`; at most the creator's role.
    role: String,
    /// What the key may do. Default: `read`, plus `write` and `chat` for member and admin
    /// keys. `members:manage`, `invitations:manage` and `keys:manage` (admin keys only) must
    /// be asked for by name. Each must be allowed to the key's role.
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// A new key and its secret: shown this once, stored only as a hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    api_key: ApiKeyDto,
    /// `qk_…`: use it as `Authorization: Bearer qk_…`.
    secret: String,
}

fn signed_in<R: MinRole>(access: &Access<R>, what: &'static str) -> Result<(), ApiError> {
    match access.caller {
        Caller::User(_) => Ok(()),
        Caller::ApiKey(_) => Err(ApiError::ForbiddenBecause(what)),
    }
}

fn scopes_field(scopes: Option<Vec<String>>) -> Result<Option<Vec<tenancy::Scope>>, ApiError> {
    scopes
        .map(|names| {
            names
                .iter()
                .map(|s| tenancy::Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(ApiError::from)
}

/// Creates an API key (admin or owner, signed in: keys never make keys). The key acts for
/// its creator: never above the creator's current role, and not at all once the creator
/// leaves the organization.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    request_body = CreateApiKey,
    responses(
        (status = 201, body = CreatedApiKey),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[post("/orgs/{org}/api-keys")]
async fn create_key(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageKeys>,
    Client(client): Client,
    body: Body<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    signed_in(
        &access,
        "API keys are made by signed-in users, not by other keys",
    )?;
    let role = role_field(&body.role, "must be one of admin, member, viewer")?;
    let scopes = scopes_field(body.scopes)?;
    let (key, secret) = state
        .api_keys
        .create(&access.ctx, &body.name, role, scopes, &client)
        .await?;
    let creator = match &access.caller {
        Caller::User(u) => Some(KeyCreatorDto {
            id: u.user.id.to_string(),
            email: u.user.email.as_str().to_owned(),
            name: u.user.name.as_str().to_owned(),
        }),
        Caller::ApiKey(_) => None,
    };
    Ok(HttpResponse::Created().json(CreatedApiKey {
        api_key: ApiKeyDto::new(&key, creator),
        secret,
    }))
}

/// The organization's live API keys, with who made each (admin or owner; keys need
/// `keys:manage`).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), PageQuery),
    responses((status = 200, body = PageDto<ApiKeyDto>), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/api-keys")]
async fn list_keys(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageKeys>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<ApiKeyDto>>, ApiError> {
    let page = state
        .api_keys
        .list(&access.ctx, &query.to_request()?)
        .await?;
    let creators = creators(&state, &page.items).await?;
    Ok(web::Json(PageDto::from_page(page, |k| {
        let creator = k.created_by.and_then(|u| creators.get(&u).cloned());
        ApiKeyDto::new(&k, creator)
    })))
}

/// Revokes an API key at once (admin or owner; keys need `keys:manage`).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "organization id or slug"),
        ("id" = String, Path, description = "API key id")
    ),
    responses((status = 204, description = "revoked"), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/api-keys/{id}")]
async fn revoke_key(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageKeys>,
    Client(client): Client,
    id: Id<kernel::ApiKeyId>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.api_keys.revoke(&access.ctx, id, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /orgs/{org}/invitations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// The invitee's email: only the account with this email may accept.
    email: String,
    /// `owner`, `admin`, `member` or `viewer`; at most the inviter's.
    role: String,
}

/// An invitation (never its token, after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationDto {
    id: String,
    email: String,
    role: String,
    /// The inviter's user id. The invitation works only while the inviter may still invite
    /// with this role.
    invited_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<tenancy::Invitation> for InvitationDto {
    fn from(i: tenancy::Invitation) -> Self {
        Self {
            id: i.id.to_string(),
            email: i.email,
            role: i.role.as_str().to_owned(),
            invited_by: i.invited_by.map(|u| u.to_string()),
            expires_at: i.expires_at,
            created_at: i.created_at,
        }
    }
}

/// The invitation and its token (shown once; also sent by mail).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvitation {
    invitation: InvitationDto,
    /// `qi_…`: accept with `POST /invitations/{token}/accept`.
    token: String,
}

/// Invites an email address into the organization (admin or owner, signed in), with a role
/// at most the inviter's. The invitation dies with the inviter's right to give it.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    request_body = CreateInvitation,
    responses(
        (status = 201, body = CreatedInvitation),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[post("/orgs/{org}/invitations")]
async fn invite(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageInvitations>,
    Client(client): Client,
    body: Body<CreateInvitation>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    signed_in(
        &access,
        "invitations are sent by signed-in users, not by API keys",
    )?;
    let role = role_field(&body.role, "must be one of owner, admin, member, viewer")?;
    let (invitation, token) = state
        .invitations
        .create(&access.ctx, &access.org, &body.email, role, &client)
        .await?;
    Ok(HttpResponse::Created().json(CreatedInvitation {
        invitation: invitation.into(),
        token,
    }))
}

/// The organization's pending invitations, by id (admin or owner; keys need
/// `invitations:manage`). Tokens are never shown again.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), PageQuery),
    responses(
        (status = 200, body = PageDto<InvitationDto>),
        (status = 403, body = Problem),
        (status = 404, body = Problem)
    )
)]
#[get("/orgs/{org}/invitations")]
async fn list_invitations(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageInvitations>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<InvitationDto>>, ApiError> {
    let page = state
        .invitations
        .pending(&access.ctx, &query.to_request()?)
        .await?;
    Ok(web::Json(PageDto::from_page(page, InvitationDto::from)))
}

/// Revokes a pending invitation at once (admin or owner; keys need `invitations:manage`).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "organization id or slug"),
        ("id" = String, Path, description = "invitation id")
    ),
    responses(
        (status = 204, description = "revoked"),
        (status = 403, body = Problem),
        (status = 404, description = "no such pending invitation in this organization", body = Problem)
    )
)]
#[delete("/orgs/{org}/invitations/{id}")]
async fn revoke_invitation(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<ManageInvitations>,
    Client(client): Client,
    id: Id<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let PathId(id) = id?;
    state.invitations.revoke(&access.ctx, id, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invitation: the signed-in account whose email it names joins the organization.
/// The account's email must be confirmed (a mailed code used): an account registered with an
/// address nobody proved gets 403 `email_unverified`.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("token" = String, Path, description = "the invitation token (qi_…)")),
    responses(
        (status = 200, body = OrgDto),
        (status = 401, body = Problem),
        (status = 403, description = "the invitation is for another email (`forbidden`), or the account's email is not confirmed yet (`email_unverified`: confirm it with `POST /auth/email/verify`)", body = Problem),
        (status = 404, description = "unknown, used or expired", body = Problem)
    )
)]
#[post("/invitations/{token}/accept")]
async fn accept_invitation(
    state: web::Data<AppState>,
    user: CurrentUser,
    Client(client): Client,
    path: web::Path<String>,
) -> Result<web::Json<OrgDto>, ApiError> {
    let (org, role) = state.invitations.accept(&user.user, &path, &client).await?;
    state.orgs.member_added(org.id, user.user.id).await;
    Ok(web::Json(OrgDto::new(&org, role)))
}

/// The organization's security and document-access events (admin or owner), newest first,
/// with filters: who read which document, searched, or received which documents in an
/// answer's citations, by user or API key, with the request id. Ids only; search queries and
/// questions only when the organization keeps them (`audit_question_text`).
#[utoipa::path(
    operation_id = "org_audit_log",
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), OrgAuditFilter),
    responses(
        (status = 200, body = PageDto<AuditDto>),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[get("/orgs/{org}/audit-log")]
async fn audit_log(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Admin>,
    query: web::Query<OrgAuditFilter>,
) -> Result<web::Json<PageDto<AuditDto>>, ApiError> {
    let filter = crate::dto::audit::AuditFilter::from(query.into_inner());
    Ok(web::Json(
        filter.read(&state, Some(access.ctx.tenant_id())).await?,
    ))
}
