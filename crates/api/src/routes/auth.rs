//! `/api/v1/auth`: registration, login, refresh, logout, and the signed-in account.

use actix_web::{HttpResponse, get, post, web};
use identity::{TokenPair, User};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Client, CurrentUser};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, ValidJson};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(register)
        .service(login)
        .service(refresh)
        .service(logout)
        .service(change_password)
        .service(forgot_password)
        .service(request_code)
        .service(verify_code)
        .service(reset_password)
        .service(confirm_email)
        .service(me);
}

/// An account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    id: String,
    email: String,
    name: String,
    is_platform_admin: bool,
    /// When the owner of the address proved it (used a mailed code or reset token); `null`
    /// until then. An account with an unconfirmed email cannot accept invitations.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    email_verified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            is_platform_admin: u.is_platform_admin,
            email_verified_at: u.email_verified_at,
            created_at: u.created_at,
        }
    }
}

/// Tokens: a short-lived PASETO access token and an opaque, single-use refresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokensDto {
    access_token: String,
    refresh_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

impl From<TokenPair> for TokensDto {
    fn from(t: TokenPair) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
        }
    }
}

/// `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Normalized to lower case.
    email: String,
    /// 8 to 128 characters, not one of the 10,000 most common passwords.
    password: String,
    /// 1 to 100 characters.
    name: String,
}

/// The new account and its tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    user: UserDto,
    tokens: TokensDto,
}

/// Creates an account and signs it in. The email is not confirmed yet: a code goes to it,
/// to send to `POST /auth/email/verify` (until then the account cannot accept invitations).
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = Registered),
        (status = 409, description = "the email is taken", body = Problem),
        (status = 422, description = "invalid fields", body = Problem),
        (status = 429, description = "too many attempts from this address", body = Problem)
    )
)]
#[post(
    "/auth/register",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn register(
    Client(client): Client,
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, tokens) = state
        .accounts
        .register(&body.email, &body.password, &body.name, &client)
        .await?;
    Ok(HttpResponse::Created().json(Registered {
        user: UserDto::from(&user),
        tokens: tokens.into(),
    }))
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// Signs in with email and password. An unknown email and a wrong password get the same answer.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokensDto),
        (status = 401, description = "wrong email or password", body = Problem),
        (status = 422, description = "invalid fields", body = Problem),
        (status = 429, description = "too many attempts (per address, per account): see Retry-After", body = Problem)
    )
)]
#[post(
    "/auth/login",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn login(
    Client(client): Client,
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<LoginRequest>,
) -> Result<web::Json<TokensDto>, ApiError> {
    let (_, tokens) = state
        .accounts
        .login(&body.email, &body.password, &client)
        .await?;
    Ok(web::Json(tokens.into()))
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// Exchanges a refresh token for new tokens. The presented token is spent; presenting a spent
/// token again revokes its whole session.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = TokensDto),
        (status = 401, description = "unknown, spent, expired or revoked", body = Problem),
        (status = 429, description = "too many attempts from this address", body = Problem)
    )
)]
#[post(
    "/auth/refresh",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn refresh(
    Client(client): Client,
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<RefreshRequest>,
) -> Result<web::Json<TokensDto>, ApiError> {
    let tokens = state.accounts.refresh(&body.refresh_token, &client).await?;
    Ok(web::Json(tokens.into()))
}

/// Ends the session of the refresh token: its access tokens stop working at once.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "signed out (also for unknown tokens)"))
)]
#[post("/auth/logout")]
#[tracing::instrument(skip_all)]
async fn logout(
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.logout(&body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One organization the account belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipDto {
    org_id: String,
    org_slug: String,
    org_name: String,
    role: String,
}

/// The signed-in account and its memberships.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    user: UserDto,
    memberships: Vec<MembershipDto>,
}

/// The signed-in account.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, description = "no valid access token", body = Problem)
    )
)]
#[get("/auth/me")]
#[tracing::instrument(skip_all, fields(user_id = %current.user.id))]
async fn me(state: web::Data<AppState>, current: CurrentUser) -> Result<web::Json<Me>, ApiError> {
    let memberships = state
        .orgs
        .all_for_user(current.user.id)
        .await?
        .into_iter()
        .map(|(o, role)| MembershipDto {
            org_id: o.id.to_string(),
            org_slug: o.slug.as_str().to_owned(),
            org_name: o.name.as_str().to_owned(),
            role: role.as_str().to_owned(),
        })
        .collect();
    Ok(web::Json(Me {
        user: UserDto::from(&current.user),
        memberships,
    }))
}

/// `POST /auth/password/change`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    current_password: String,
    /// 8 to 128 characters, not one of the 10,000 most common passwords.
    new_password: String,
}

/// Changes the password. Every other session of the account ends; this one stays.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "changed"),
        (status = 401, body = Problem),
        (status = 422, description = "wrong current password, or a weak new one", body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post("/auth/password/change")]
#[tracing::instrument(skip_all, fields(user_id = %current.user.id))]
async fn change_password(
    Client(client): Client,
    state: web::Data<AppState>,
    current: CurrentUser,
    body: Body<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    state
        .accounts
        .change_password(
            &current.user,
            current.session,
            &body.current_password,
            &body.new_password,
            &client,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /auth/password/forgot`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotPassword {
    email: String,
}

/// Sends a reset token to the account's email, if there is such an account. Always 202: the
/// answer never tells whether the email is registered.
#[utoipa::path(
    tag = "auth",
    request_body = ForgotPassword,
    responses(
        (status = 202, description = "accepted (whatever the email)"),
        (status = 422, body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post(
    "/auth/password/forgot",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn forgot_password(
    state: web::Data<AppState>,
    Client(client): Client,
    ValidJson(body): ValidJson<ForgotPassword>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.forgot_password(&body.email, &client).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /auth/password/reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPassword {
    /// The token from the reset mail (single use, 30 minutes).
    token: String,
    /// 8 to 128 characters, not one of the 10,000 most common passwords.
    new_password: String,
}

/// Sets a new password with a reset token; every session of the account ends.
#[utoipa::path(
    tag = "auth",
    request_body = ResetPassword,
    responses(
        (status = 204, description = "the password is changed"),
        (status = 422, description = "the token is invalid, used or expired; or a weak password", body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post(
    "/auth/password/reset",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn reset_password(
    state: web::Data<AppState>,
    Client(client): Client,
    ValidJson(body): ValidJson<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .reset_password(&body.token, &body.new_password, &client)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /auth/code/request`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRequest {
    email: String,
}

/// Mails a 6-digit sign-in code (valid 10 minutes, single use). Always 202.
#[utoipa::path(
    tag = "auth",
    request_body = CodeRequest,
    responses(
        (status = 202, description = "accepted (whatever the email)"),
        (status = 422, body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post(
    "/auth/code/request",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn request_code(
    state: web::Data<AppState>,
    Client(client): Client,
    ValidJson(body): ValidJson<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.request_code(&body.email, &client).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /auth/code/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeVerify {
    email: String,
    /// The 6 digits from the mail.
    code: String,
}

/// Signs in with an emailed code; the first successful code creates the account. On an
/// account whose email was not confirmed, the code is the first proof of the address: a
/// password set before it is removed and every session of the account ends. Attempts are
/// limited per code and client address, and per email address over the hour.
#[utoipa::path(
    tag = "auth",
    request_body = CodeVerify,
    responses(
        (status = 200, body = TokensDto),
        (status = 401, description = "wrong, used or expired code", body = Problem),
        (status = 422, body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post(
    "/auth/code/verify",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all)]
async fn verify_code(
    state: web::Data<AppState>,
    Client(client): Client,
    ValidJson(body): ValidJson<CodeVerify>,
) -> Result<web::Json<TokensDto>, ApiError> {
    let (_, tokens) = state
        .accounts
        .verify_code(&body.email, &body.code, &client)
        .await?;
    Ok(web::Json(tokens.into()))
}

/// `POST /auth/email/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmEmail {
    /// The 6 digits from the registration mail, or from `POST /auth/code/request`.
    code: String,
}

/// Confirms the signed-in account's email with a code mailed to it. The password and the
/// sessions stay. Already confirmed: answers the account unchanged.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = ConfirmEmail,
    responses(
        (status = 200, body = UserDto),
        (status = 401, body = Problem),
        (status = 422, description = "wrong, used or expired code", body = Problem),
        (status = 429, body = Problem)
    )
)]
#[post(
    "/auth/email/verify",
    wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"
)]
#[tracing::instrument(skip_all, fields(user_id = %current.user.id))]
async fn confirm_email(
    state: web::Data<AppState>,
    Client(client): Client,
    current: CurrentUser,
    body: Body<ConfirmEmail>,
) -> Result<web::Json<UserDto>, ApiError> {
    let ValidJson(body) = body?;
    let user = state
        .accounts
        .confirm_email(&current.user, &body.code, &client)
        .await?;
    Ok(web::Json(UserDto::from(&user)))
}
