//! Tenant extractors: the minimum role a handler needs is part of its signature.
//!
//! - [`Tenant<R>`]: the organization named by `X-Tenant-ID` (id or slug), for tenant-scoped
//!   routes (documents, chat, …). Missing header → 400 `tenant_required`.
//! - [`OrgAccess<R>`]: the organization named by the `{org}` path segment (`/orgs/{org}/…`).
//!
//! Both authenticate the caller (an access token, or an organization API key `qk_…` that acts
//! for exactly its organization), resolve the organization, and check the membership (cached
//! briefly, invalidated on role changes and removals): not a member, or another
//! organization's key → 404 (never revealing that another tenant's organization exists); a
//! lower role than `R` → 403. The token is checked before the tenant header: 401 first.
//!
//! An API key acts for its creator: with its own role capped by the creator's current role
//! in the organization, and not at all (401) once the creator is no longer a member. It also
//! needs the route's [`Scope`]: the marker's own (`ManageMembers`, `ManageInvitations`,
//! `ManageKeys`), else `chat` on routes rate-limited as chat (they ask a model), `read` on
//! viewer routes and `write` on the others. Signed-in users are not scoped.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use billing::RateClass;
use kernel::{Principal, Role, TenantContext};
use tenancy::{Organization, Scope};

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::limits::{RateLimit, Unlimited};
use crate::state::AppState;

/// A minimum role, as a type.
pub trait MinRole: 'static {
    /// The role.
    const ROLE: Role;
    /// The scope an API key needs here, when the route names one (else see [`key_scope`]).
    const SCOPE: Option<Scope> = None;
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

/// Changes members' roles (admin+; keys need `members:manage`).
#[derive(Debug)]
pub struct ManageMembers;
/// Removes members, or leaves (any member for themselves; the rest is the service's rule;
/// keys need `members:manage`).
#[derive(Debug)]
pub struct RemoveMembers;
/// Invitations (admin+; keys need `invitations:manage`).
#[derive(Debug)]
pub struct ManageInvitations;
/// API keys (admin+; keys need `keys:manage`).
#[derive(Debug)]
pub struct ManageKeys;

impl MinRole for ManageMembers {
    const ROLE: Role = Role::Admin;
    const SCOPE: Option<Scope> = Some(Scope::MembersManage);
}
impl MinRole for RemoveMembers {
    const ROLE: Role = Role::Viewer;
    const SCOPE: Option<Scope> = Some(Scope::MembersManage);
}
impl MinRole for ManageInvitations {
    const ROLE: Role = Role::Admin;
    const SCOPE: Option<Scope> = Some(Scope::InvitationsManage);
}
impl MinRole for ManageKeys {
    const ROLE: Role = Role::Admin;
    const SCOPE: Option<Scope> = Some(Scope::KeysManage);
}

/// The scope an API key needs for a route with role marker `R` and rate class `L`.
#[must_use]
pub fn key_scope<R: MinRole, L: RateLimit>() -> Scope {
    match (R::SCOPE, L::CLASS) {
        (Some(s), _) => s,
        (None, Some(RateClass::Chat)) => Scope::Chat,
        (None, _) if R::ROLE == Role::Viewer => Scope::Read,
        (None, _) => Scope::Write,
    }
}

/// Who calls a tenant route: a signed-in user, or an API key of that very organization.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A signed-in account.
    User(CurrentUser),
    /// An organization API key (`qk_…`).
    ApiKey(tenancy::ApiKey),
}

impl Caller {
    /// The account, when the caller is one.
    #[must_use]
    pub fn user_id(&self) -> Option<kernel::UserId> {
        match self {
            Caller::User(u) => Some(u.user.id),
            Caller::ApiKey(_) => None,
        }
    }
}

/// A verified tenant for a caller holding at least role `R`, counted against the rate limits
/// of class `L` (see [`crate::limits`]).
#[derive(Debug)]
pub struct Access<R: MinRole, L: RateLimit = Unlimited> {
    /// Tenant, principal and role.
    pub ctx: TenantContext,
    /// The organization.
    pub org: Organization,
    /// Who calls.
    pub caller: Caller,
    _role: PhantomData<(R, L)>,
}

/// The tenant from `X-Tenant-ID`.
pub type Tenant<R, L = Unlimited> = Access<R, L>;

/// The organization from the `{org}` path segment.
#[derive(Debug)]
pub struct OrgAccess<R: MinRole>(pub Access<R>);

/// Authenticates the bearer token: an API key (`qk_…`) or an access token. A key comes back
/// with the role it acts with now (its own, capped by its creator's current role), and is
/// refused when its creator is no longer a member of its organization.
async fn caller(state: &AppState, token: Result<String, ApiError>) -> Result<Caller, ApiError> {
    let token = token?;
    if token.starts_with("qk_") {
        let mut key =
            state
                .api_keys
                .authenticate(&token)
                .await?
                .ok_or(ApiError::Unauthenticated(
                    "the API key is invalid or revoked",
                ))?;
        let creator_role = match key.created_by {
            Some(creator) => state.orgs.role_of(key.tenant_id, creator).await?,
            None => None,
        };
        key.role = key
            .acting_role(creator_role)
            .ok_or(ApiError::Unauthenticated(
                "the API key is no longer valid: whoever made it is no longer a member",
            ))?;
        return Ok(Caller::ApiKey(key));
    }
    let (user, session) = state.accounts.authenticate(&token).await?;
    Ok(Caller::User(CurrentUser { user, session }))
}

pub(crate) async fn resolve<R: MinRole, L: RateLimit>(
    state: web::Data<AppState>,
    token: Result<String, ApiError>,
    org: Result<String, ApiError>,
) -> Result<Access<R, L>, ApiError> {
    identify(&state, token, org.map(Some)).await?.narrow()
}

/// The caller of `token` in the organization `org` names (id or slug) with the role it holds
/// there, before any route's rule: a bad or revoked credential → 401; not a member, or another
/// organization's key → 404. `org` is `None` when the request named no organization: an API key
/// then acts for its own, and a signed-in user gets 400 `tenant_required` (a route that
/// allows this says so: the MCP endpoint). [`Access::narrow`] applies a route's rule.
pub(crate) async fn identify(
    state: &AppState,
    token: Result<String, ApiError>,
    org: Result<Option<String>, ApiError>,
) -> Result<Access<Viewer>, ApiError> {
    let caller = caller(state, token).await?;
    let org = match (org?, &caller) {
        (Some(org), _) => org,
        (None, Caller::ApiKey(key)) => key.tenant_id.to_string(),
        (None, Caller::User(_)) => {
            return Err(ApiError::BadRequest {
                code: "tenant_required",
                detail: "this route needs the X-Tenant-ID header (organization id or slug)"
                    .to_owned(),
            });
        }
    };
    let (org, role, principal) = match &caller {
        Caller::User(u) => {
            let (org, role) = state.orgs.resolve(&org, u.user.id).await?;
            (org, role, Principal::User(u.user.id))
        }
        Caller::ApiKey(key) => {
            // A key acts for exactly its organization: any other is "not found".
            let org = state
                .orgs
                .find(&org)
                .await?
                .filter(|o| o.id == key.tenant_id)
                .ok_or(ApiError::NotFound)?;
            (org, key.role, Principal::ApiKey(key.id))
        }
    };
    Ok(Access {
        ctx: TenantContext::new(org.id, principal, role),
        org,
        caller,
        _role: PhantomData,
    })
}

impl<R: MinRole, L: RateLimit> Access<R, L> {
    /// The same caller and organization for a route that needs role `R2` (403 below it) and,
    /// from an API key, the scope of `(R2, L2)` ([`key_scope`]; 403 without it). No second
    /// look at the credential: [`identify`] made it, for this request.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] or [`ApiError::ForbiddenBecause`].
    pub(crate) fn narrow<R2: MinRole, L2: RateLimit>(self) -> Result<Access<R2, L2>, ApiError> {
        if !self.ctx.role().satisfies(R2::ROLE) {
            return Err(ApiError::Forbidden);
        }
        if let Caller::ApiKey(key) = &self.caller
            && !key.has_scope(key_scope::<R2, L2>())
        {
            return Err(ApiError::ForbiddenBecause(
                "this API key's scopes do not allow this",
            ));
        }
        Ok(Access {
            ctx: self.ctx,
            org: self.org,
            caller: self.caller,
            _role: PhantomData,
        })
    }
}

impl<R: MinRole, L: RateLimit> Clone for Access<R, L> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx,
            org: self.org.clone(),
            caller: self.caller.clone(),
            _role: PhantomData,
        }
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))
}

/// The organization a request was admitted to (set by the tenant extractors; the per-tenant
/// metrics read it). Only a member's or key's admitted request carries one, so nobody can
/// charge requests to an organization they are not in.
#[derive(Debug, Clone, Copy)]
pub struct Metered(pub kernel::TenantId);

impl<R: MinRole, L: RateLimit> FromRequest for Access<R, L> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = crate::auth::bearer(req).map(str::to_owned);
        let org = match req
            .headers()
            .get("x-tenant-id")
            .map(|v| v.to_str().map(|s| s.trim().to_owned()))
        {
            None => Err(ApiError::BadRequest {
                code: "tenant_required",
                detail: "this route needs the X-Tenant-ID header (organization id or slug)"
                    .to_owned(),
            }),
            Some(Err(_)) => Err(ApiError::NotFound),
            Some(Ok(v)) if v.is_empty() => Err(ApiError::BadRequest {
                code: "tenant_required",
                detail: "X-Tenant-ID is empty".to_owned(),
            }),
            Some(Ok(v)) => Ok(v),
        };
        let state = state_of(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let access: Access<R, L> = resolve(state.clone(), token, org).await?;
            actix_web::HttpMessage::extensions_mut(&req).insert(Metered(access.ctx.tenant_id()));
            crate::limits::check::<L>(&req, &state, Some(&access.ctx)).await?;
            Ok(access)
        })
    }
}

impl<R: MinRole> FromRequest for OrgAccess<R> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = crate::auth::bearer(req).map(str::to_owned);
        let org = req
            .match_info()
            .get("org")
            .map(str::to_owned)
            .ok_or(ApiError::NotFound);
        let state = state_of(req);
        let req = req.clone();
        Box::pin(async move {
            let access: Access<R> = resolve(state?, token, org).await?;
            actix_web::HttpMessage::extensions_mut(&req).insert(Metered(access.ctx.tenant_id()));
            Ok(OrgAccess(access))
        })
    }
}
