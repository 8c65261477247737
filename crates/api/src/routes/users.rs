//! `/api/v1/users/me`: the signed-in account's profile, preferences and deletion.

use actix_web::{HttpResponse, delete, get, patch, put, web};
use identity::model::{DisplayName, Profile};
use kernel::FieldError;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Client, CurrentUser};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, ValidJson};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_profile)
        .service(patch_profile)
        .service(get_preferences)
        .service(put_preferences)
        .service(delete_me);
}

/// The profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileDto {
    display_name: String,
    avatar_url: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
}

impl From<&identity::User> for ProfileDto {
    fn from(u: &identity::User) -> Self {
        Self {
            display_name: u.name.as_str().to_owned(),
            avatar_url: u.profile.avatar_url.clone(),
            locale: u.profile.locale.clone(),
            timezone: u.profile.timezone.clone(),
        }
    }
}

/// The signed-in account's profile.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses((status = 200, body = ProfileDto), (status = 401, body = Problem))
)]
#[get("/users/me/profile")]
async fn get_profile(user: CurrentUser) -> web::Json<ProfileDto> {
    web::Json(ProfileDto::from(&user.user))
}

/// Present and `null` (clear) are different from absent (keep).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

/// `PATCH /users/me/profile`: the fields given are replaced; `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// 1 to 100 characters.
    display_name: Option<String>,
    /// An http(s) URL, or null.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Option<String>>,
    /// A language tag such as `en` or `fa-IR`, or null.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    locale: Option<Option<String>>,
    /// A time-zone name such as `Europe/Berlin`, or null.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    timezone: Option<Option<String>>,
}

fn apply(
    current: Option<String>,
    patch: Option<Option<String>>,
    check: fn(&str) -> Result<String, kernel::InvalidInput>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match patch {
        None => current,
        Some(None) => None,
        Some(Some(v)) => match check(&v) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.extend(e.0);
                current
            }
        },
    }
}

/// Updates the profile.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    request_body = ProfilePatch,
    responses((status = 200, body = ProfileDto), (status = 401, body = Problem), (status = 422, body = Problem))
)]
#[patch("/users/me/profile")]
async fn patch_profile(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Body<ProfilePatch>,
) -> Result<web::Json<ProfileDto>, ApiError> {
    let ValidJson(body) = body?;
    let mut errors = Vec::new();
    let name = match &body.display_name {
        Some(n) => DisplayName::parse(n, "display_name").unwrap_or_else(|e| {
            errors.extend(e.0);
            user.user.name.clone()
        }),
        None => user.user.name.clone(),
    };
    let old = user.user.profile.clone();
    let profile = Profile {
        avatar_url: apply(
            old.avatar_url,
            body.avatar_url,
            Profile::avatar_url,
            &mut errors,
        ),
        locale: apply(old.locale, body.locale, Profile::locale, &mut errors),
        timezone: apply(old.timezone, body.timezone, Profile::timezone, &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let updated = state
        .accounts
        .update_profile(&user.user, name, profile)
        .await?;
    Ok(web::Json(ProfileDto::from(&updated)))
}

/// Any JSON object of at most 16 KiB.
#[derive(Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Preferences(serde_json::Map<String, serde_json::Value>);

/// The preferences document (`{}` until one is stored).
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "a JSON object", body = serde_json::Value), (status = 401, body = Problem))
)]
#[get("/users/me/preferences")]
async fn get_preferences(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let json = state.accounts.preferences(&user.user).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

/// Replaces the preferences document.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "any JSON object of at most 16 KiB"),
    responses(
        (status = 200, body = serde_json::Value),
        (status = 401, body = Problem),
        (status = 422, description = "not an object, or over 16 KiB", body = Problem)
    )
)]
#[put("/users/me/preferences")]
async fn put_preferences(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Body<Preferences>,
) -> Result<HttpResponse, ApiError> {
    let ValidJson(body) = body?;
    let json = serde_json::to_string(&body).map_err(|e| {
        ApiError::Internal(anyhow::Error::new(e).context("serializing preferences"))
    })?;
    state.accounts.set_preferences(&user.user, &json).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

/// Deletes the account: its sessions end and its memberships go. Refused with 409 while the
/// account is the only owner of an organization that has other members; organizations where
/// it is the only member are deleted with it.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem),
        (status = 409, description = "the only owner of an organization with other members", body = Problem)
    )
)]
#[delete("/users/me")]
#[tracing::instrument(skip_all, fields(user_id = %user.user.id))]
async fn delete_me(
    state: web::Data<AppState>,
    user: CurrentUser,
    Client(client): Client,
) -> Result<HttpResponse, ApiError> {
    let exit = state.orgs.before_account_deletion(user.user.id).await?;
    state.accounts.delete_account(&user.user, &client).await?;
    state
        .orgs
        .after_account_deletion(user.user.id, &exit)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
