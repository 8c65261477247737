//! Rate limits, through billing's budgets in the cache port: one [`RateLimit`] type per class,
//! one way to count ([`count`]) and to refuse ([`verdict`]).
//!
//! A tenant route names its class in its extractor (`Tenant<Member, ChatRate>`): after the caller
//! and the tenant are verified, one request is counted for the client address, the user or
//! API key, and the organization. The tightest budget goes into the request's extensions, and
//! [`headers`] writes it as `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` on
//! whatever the handler answers. Over a budget: 429 `rate_limited` with `Retry-After`.
//!
//! Counting happens after authentication, so nobody can spend another organization's budget by
//! naming it. The credential routes, which nobody is signed in to, name [`AuthRate`] in their
//! attribute ([`by_address`]: the client address only). A WebSocket counts each question
//! with [`admit`] for its route's class, as its route would. When the cache is unreachable the
//! request goes through (logged): a limiter outage must not take chat down; quotas still hold,
//! as they fail closed. The credential routes fail closed too.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpRequest, ResponseError as _, web};
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
/// The credential routes (sign-in, registration, refresh, codes, resets), per address.
#[derive(Debug)]
pub struct AuthRate;

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
impl RateLimit for AuthRate {
    const CLASS: Option<RateClass> = Some(RateClass::Auth);
}

/// Counts one request of the route's class `L` for the address of `req` and, when known, the
/// caller and organization of `ctx`. The decision is kept for [`headers`].
///
/// # Errors
/// [`ApiError::RateLimited`] when a budget is spent.
pub async fn check<L: RateLimit>(
    req: &HttpRequest,
    state: &AppState,
    ctx: Option<&TenantContext>,
) -> Result<(), ApiError> {
    let decision = count::<L>(state, crate::auth::client_ip(req), ctx).await?;
    if let Some(d) = decision {
        req.extensions_mut().insert(d);
    }
    verdict::<L>(decision)
}

/// Counts one request of class `L` from `ip` (and `ctx`'s caller and organization) where no
/// HTTP answer carries the headers: each question asked over a WebSocket.
///
/// # Errors
/// [`ApiError::RateLimited`] when a budget is spent.
pub async fn admit<L: RateLimit>(
    state: &AppState,
    ip: String,
    ctx: Option<&TenantContext>,
) -> Result<(), ApiError> {
    verdict::<L>(count::<L>(state, ip, ctx).await?)
}

/// 429 when `decision` (of class `L`) says the budget is spent.
///
/// # Errors
/// [`ApiError::RateLimited`].
fn verdict<L: RateLimit>(decision: Option<RateDecision>) -> Result<(), ApiError> {
    match (L::CLASS, decision) {
        (Some(class), Some(d)) if !d.allowed => {
            tracing::info!(class = %class, limit = d.limit, "rate limited");
            Err(ApiError::RateLimited {
                retry_after_secs: kernel::clock::whole_secs_up(d.reset).max(1),
            })
        }
        _ => Ok(()),
    }
}

/// Counts one request of class `L` from `ip` (and `ctx`'s caller and organization); the
/// tightest budget, or `None` when none applies, `L` is not limited, or the cache is down
/// (logged).
///
/// # Errors
/// [`ApiError::Unavailable`] (503) when the cache is down and `class` is [`RateClass::Auth`], which
/// fails closed: a credential route is not answered while the limiter cannot count.
async fn count<L: RateLimit>(
    state: &AppState,
    ip: String,
    ctx: Option<&TenantContext>,
) -> Result<Option<RateDecision>, ApiError> {
    let Some(class) = L::CLASS else {
        return Ok(None);
    };
    let mut subjects = vec![RateSubject::Ip(ip)];
    if let Some(ctx) = ctx {
        subjects.push(match ctx.principal() {
            Principal::User(u) => RateSubject::User(u),
            Principal::ApiKey(k) => RateSubject::ApiKey(k),
        });
        subjects.push(RateSubject::Tenant(ctx.tenant_id()));
    }
    match state.billing.check_rate(class, &subjects).await {
        Ok(d) => Ok(d),
        Err(e) if class == RateClass::Auth => Err(ApiError::unexpected(
            anyhow::Error::new(e).context("the rate limiter"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, class = %class, "the rate limiter is unavailable; letting the request through");
            Ok(None)
        }
    }
}

/// The rate limit `L` of a route nobody is signed in to, counted for the client address
/// (`wrap = "actix_web::middleware::from_fn(crate::limits::by_address::<crate::limits::AuthRate>)"`
/// on the credential routes: billing's `auth` class, `auth.attempts_per_ip_per_minute`). Sends
/// the `RateLimit-*` headers on every answer, and 429 `rate_limited` with `Retry-After` once
/// the budget is spent (recorded in the audit log). Runs before the handler, so before any
/// password is hashed.
pub async fn by_address<L: RateLimit>(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let (Some(state), Some(_)) = (req.app_data::<web::Data<AppState>>().cloned(), L::CLASS) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let ip = crate::auth::client_ip(req.request());
    let decision = match count::<L>(&state, ip.clone(), None).await {
        Ok(d) => d,
        // Answered here, with the request, so that it is logged and counted under its route.
        Err(e) => return Ok(req.error_response(e).map_into_boxed_body()),
    };
    let mut res = match verdict::<L>(decision) {
        Err(refused) => {
            let ua = req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            kernel::audit::record(
                &*state.audit,
                kernel::AuditEvent {
                    at: time::OffsetDateTime::now_utc(),
                    action: "auth.throttled",
                    actor: None,
                    tenant: None,
                    target: Some("address limit".to_owned()),
                    client: kernel::ClientInfo::new(ip, ua.as_deref()),
                    access: None,
                },
            )
            .await;
            let (http_req, _) = req.into_parts();
            ServiceResponse::new(http_req, refused.error_response())
        }
        Ok(()) => next.call(req).await?.map_into_boxed_body(),
    };
    if let Some(d) = decision {
        set_headers(res.headers_mut(), &d);
    }
    agree_with_refusal(&mut res);
    Ok(res)
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
    agree_with_refusal(&mut res);
    Ok(res)
}

/// On a 429 (this budget spent, or another limit such as the stream cap): the `RateLimit-*`
/// headers say what the refusal says, `RateLimit-Remaining: 0` and a `RateLimit-Reset` no
/// sooner than `Retry-After`, never a budget left that the answer contradicts.
fn agree_with_refusal(res: &mut ServiceResponse<BoxBody>) {
    if res.status() != actix_web::http::StatusCode::TOO_MANY_REQUESTS
        || res.headers().get("ratelimit-limit").is_none()
    {
        return;
    }
    let headers = res.headers_mut();
    let number = |h: &actix_web::http::header::HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let reset = number(headers, "ratelimit-reset")
        .unwrap_or(0)
        .max(number(headers, header::RETRY_AFTER.as_str()).unwrap_or(0));
    headers.insert(
        HeaderName::from_static("ratelimit-remaining"),
        HeaderValue::from(0_u64),
    );
    headers.insert(
        HeaderName::from_static("ratelimit-reset"),
        HeaderValue::from(reset),
    );
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
