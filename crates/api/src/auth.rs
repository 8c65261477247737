//! The authentication extractor: `Authorization: Bearer <access token>` → the signed-in
//! account. A handler that takes [`CurrentUser`] can only run for a valid, unrevoked token of
//! an enabled account.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use identity::User;
use identity::ports::SessionId;

use crate::error::ApiError;
use crate::state::AppState;

/// The account behind the request's access token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The account.
    pub user: User,
    /// The login session the token belongs to.
    pub session: SessionId,
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated("an access token is required"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("the Authorization header is malformed"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthenticated(
        "the Authorization header is malformed",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthenticated(
            "use `Authorization: Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req).map(str::to_owned);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            if token.starts_with("qk_") {
                return Err(ApiError::Unauthenticated(
                    "this route needs a signed-in user; API keys act only on their organization's routes",
                ));
            }
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let (user, session) = state.accounts.authenticate(&token).await?;
            Ok(CurrentUser { user, session })
        })
    }
}

/// The client's address for rate limits: the TCP peer, or, when `http.trust_forwarded_for` is
/// on (behind one proxy that appends to `X-Forwarded-For`), the right-most entry: the address
/// that proxy saw. Entries to its left come from the client and could be forged.
#[must_use]
pub fn client_ip(req: &HttpRequest) -> String {
    let trust = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.http.trust_forwarded_for);
    if trust
        && let Some(first) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    {
        return first.to_string();
    }
    req.peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

/// The requesting client (address and user agent), for rate limits and the audit log.
#[derive(Debug, Clone)]
pub struct Client(pub kernel::ClientInfo);

impl FromRequest for Client {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        std::future::ready(Ok(Client(kernel::ClientInfo::new(client_ip(req), ua))))
    }
}

/// A signed-in platform administrator (`/api/v1/admin/*`); anyone else gets 403.
#[derive(Debug, Clone)]
pub struct PlatformAdmin(pub CurrentUser);

impl FromRequest for PlatformAdmin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            if !user.user.is_platform_admin {
                return Err(ApiError::ForbiddenBecause("platform administrators only"));
            }
            Ok(PlatformAdmin(user))
        })
    }
}
