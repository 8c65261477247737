//! Rate limits of the expensive routes, through billing's budgets in the cache port.
//!
//! A handler names its class in its extractor (`Tenant<Member, ChatRate>`): after the caller
//! and the tenant are verified, one request is counted for the client address, the user or
//! API key, and the organization. The tightest budget goes into the request's extensions, and
//! [`headers`] writes it as `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` on
//! whatever the handler answers. Over a budget: 429 `rate_limited` with `Retry-After`.
//!
//! Counting happens after authentication, so nobody can spend another organization's budget by
//! naming it. When the cache is unreachable the request goes through (logged): a limiter
//! outage must not take chat down; quotas still hold, as they fail closed.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpRequest};
use billing::{RateClass, RateDecision, RateSubject};
use kernel::{Principal, TenantContext};

use crate::error::ApiError;
use crate::state::AppState;

/// A route's rate-limit class, as a type.
pub trait RateLimit: 'static {
    /// The class; `None`: not limited.
    const CLASS: Option<RateClass>;
}

/// Not rate-limited.
#[derive(Debug)]
pub struct Unlimited;
/// Answers, completions, AI tasks.
#[derive(Debug)]
pub struct ChatRate;
/// Embeddings and search.
#[derive(Debug)]
pub struct EmbeddingsRate;
/// Uploads and re-indexing.
#[derive(Debug)]
pub struct UploadRate;

impl RateLimit for Unlimited {
    const CLASS: Option<RateClass> = None;
}
impl RateLimit for ChatRate {
    const CLASS: Option<RateClass> = Some(RateClass::Chat);
}
impl RateLimit for EmbeddingsRate {
    const CLASS: Option<RateClass> = Some(RateClass::Embeddings);
}
impl RateLimit for UploadRate {
    const CLASS: Option<RateClass> = Some(RateClass::Upload);
}

/// Counts one request of `class` for the address of `req` and, when known, the caller and
/// organization of `ctx`. The decision is kept for [`headers`].
///
/// # Errors
/// [`ApiError::RateLimited`] when a budget is spent.
pub async fn check(
    req: &HttpRequest,
    state: &AppState,
    class: RateClass,
    ctx: Option<&TenantContext>,
) -> Result<(), ApiError> {
    let decision = count(state, class, crate::auth::client_ip(req), ctx).await;
    if let Some(d) = decision {
        req.extensions_mut().insert(d);
    }
    verdict(class, decision)
}

/// 429 when `decision` says the budget is spent.
///
/// # Errors
/// [`ApiError::RateLimited`].
pub fn verdict(class: RateClass, decision: Option<RateDecision>) -> Result<(), ApiError> {
    match decision {
        Some(d) if !d.allowed => {
            tracing::info!(class = %class, limit = d.limit, "rate limited");
            Err(ApiError::RateLimited {
                retry_after_secs: kernel::clock::whole_secs_up(d.reset).max(1),
            })
        }
        _ => Ok(()),
    }
}

/// Counts one request of `class` from `ip` (and `ctx`'s caller and organization); the
/// tightest budget, or `None` when none applies or the cache is down (logged).
pub async fn count(
    state: &AppState,
    class: RateClass,
    ip: String,
    ctx: Option<&TenantContext>,
) -> Option<RateDecision> {
    let mut subjects = vec![RateSubject::Ip(ip)];
    if let Some(ctx) = ctx {
        subjects.push(match ctx.principal() {
            Principal::User(u) => RateSubject::User(u),
            Principal::ApiKey(k) => RateSubject::ApiKey(k),
        });
        subjects.push(RateSubject::Tenant(ctx.tenant_id()));
    }
    match state.billing.check_rate(class, &subjects).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, class = %class, "the rate limiter is unavailable; letting the request through");
            None
        }
    }
}

/// Writes the `RateLimit-*` headers of a decision made while handling the request.
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut res = next.call(req).await?.map_into_boxed_body();
    let decision = res.request().extensions().get::<RateDecision>().copied();
    if let Some(d) = decision {
        set_headers(res.headers_mut(), &d);
    }
    Ok(res)
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` for `d`.
pub fn set_headers(headers: &mut actix_web::http::header::HeaderMap, d: &RateDecision) {
    let values = [
        ("ratelimit-limit", d.limit),
        ("ratelimit-remaining", d.remaining),
        ("ratelimit-reset", kernel::clock::whole_secs_up(d.reset)),
    ];
    for (name, value) in values {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}
