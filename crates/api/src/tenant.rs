//! Tenant extractors: the minimum role a handler needs is part of its signature.
//!
//! - [`Tenant<R>`]: the organization named by `X-Tenant-ID` (id or slug), for tenant-scoped
//!   routes (documents, chat, …). Missing header → 400 `tenant_required`.
//! - [`OrgAccess<R>`]: the organization named by the `{org}` path segment (`/orgs/{org}/…`).
//!
//! Both authenticate the caller, resolve the organization, and check the membership (cached
//! briefly, invalidated on role changes): not a member → 404 (never revealing that another
//! tenant's organization exists); a lower role than `R` → 403.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use kernel::{Principal, Role, TenantContext};
use tenancy::Organization;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;

/// A minimum role, as a type.
pub trait MinRole: 'static {
    /// The role.
    const ROLE: Role;
}

/// Any member (read access).
#[derive(Debug)]
pub struct Viewer;
/// Members write documents and chat.
#[derive(Debug)]
pub struct Member;
/// Admins manage members, collections, API keys.
#[derive(Debug)]
pub struct Admin;
/// Owners manage the plan and delete the organization.
#[derive(Debug)]
pub struct Owner;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Member {
    const ROLE: Role = Role::Member;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl MinRole for Owner {
    const ROLE: Role = Role::Owner;
}

/// A verified tenant for a caller holding at least role `R`.
#[derive(Debug)]
pub struct Access<R: MinRole> {
    /// Tenant, principal and role.
    pub ctx: TenantContext,
    /// The organization.
    pub org: Organization,
    /// The signed-in account.
    pub user: CurrentUser,
    _role: PhantomData<R>,
}

/// The tenant from `X-Tenant-ID`.
pub type Tenant<R> = Access<R>;

/// The organization from the `{org}` path segment.
#[derive(Debug)]
pub struct OrgAccess<R: MinRole>(pub Access<R>);

async fn resolve<R: MinRole>(
    state: web::Data<AppState>,
    user: CurrentUser,
    org: String,
) -> Result<Access<R>, ApiError> {
    let (org, role) = state.orgs.resolve(&org, user.user.id).await?;
    if !role.satisfies(R::ROLE) {
        return Err(ApiError::Forbidden);
    }
    Ok(Access {
        ctx: TenantContext::new(org.id, Principal::User(user.user.id), role),
        org,
        user,
        _role: PhantomData,
    })
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))
}

impl<R: MinRole> FromRequest for Access<R> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        let header = req
            .headers()
            .get("x-tenant-id")
            .map(|v| v.to_str().map(|s| s.trim().to_owned()));
        let state = state_of(req);
        Box::pin(async move {
            let user = user.await?;
            let org = match header {
                None => {
                    return Err(ApiError::BadRequest {
                        code: "tenant_required",
                        detail: "this route needs the X-Tenant-ID header (organization id or slug)"
                            .to_owned(),
                    });
                }
                Some(Err(_)) => return Err(ApiError::NotFound),
                Some(Ok(v)) if v.is_empty() => {
                    return Err(ApiError::BadRequest {
                        code: "tenant_required",
                        detail: "X-Tenant-ID is empty".to_owned(),
                    });
                }
                Some(Ok(v)) => v,
            };
            resolve(state?, user, org).await
        })
    }
}

impl<R: MinRole> FromRequest for OrgAccess<R> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        let org = req.match_info().get("org").map(str::to_owned);
        let state = state_of(req);
        Box::pin(async move {
            let user = user.await?;
            let org = org.ok_or(ApiError::NotFound)?;
            resolve(state?, user, org).await.map(OrgAccess)
        })
    }
}
