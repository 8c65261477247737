//! The middleware stack, outermost first:
//! 1. [`edge`]: request id (`X-Request-ID`), the request span and access log, problem+json for
//!    every error response (also those made outside handlers; OpenAI's error shape under
//!    `/api/v1/ai`: [`crate::error::ErrorDialect`]), security headers (a
//!    Content-Security-Policy on every response: [`DOCS_CSP`] on `/docs/`, [`CONSOLE_CSP`] on
//!    the web console, else [`API_CSP`]),
//!    and `Cache-Control: no-store` on every `/api/` answer that sets no `Cache-Control` itself;
//! 2. [`metrics`]: count, latency by route template and status, in-flight gauge;
//! 3. [`outages`]: each request runs in the server's [`crate::outage::Outages`]
//!    scope, and while a component every request needs is known down an API request is
//!    answered 503 `service_unavailable` at once;
//! 4. CORS from the configured allowlist ([`cors`]);
//! 5. compression (gzip);
//! 6. [`crate::timeouts::timeout`]: a handler that does not produce a response head in time
//!    is answered 503 (the route's [`crate::timeouts::TimeLimit`], else the default).
//!
//! Per route: the rate limit of the credential routes ([`crate::limits::by_address`]).

use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpResponse, ResponseError, web};
use tracing::Instrument as _;

use crate::error::{self, ApiError, PROBLEM_JSON};
use crate::state::AppState;

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-sent request id is echoed only if it is short and plain.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// True for bodies a handler chose: problem+json, or a documented JSON body such as the
/// readiness report. Anything else (empty, text) was made outside our handlers.
fn is_deliberate_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m == PROBLEM_JSON || m == "application/json"
        })
}

/// Rewrites an error response made outside our handlers (router, CORS, actix extractors) into
/// problem+json, keeping its status and headers such as `Allow` and `Retry-After`. JSON bodies
/// that handlers chose are kept.
fn ensure_problem(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_deliberate_json(res.headers())
    {
        return res;
    }
    let (req, old) = res.into_parts();
    let new = generic_problem(status, old.headers());
    ServiceResponse::new(req, new)
}

/// A problem body for `status`, keeping the other response's headers (`Allow`, `Retry-After`,
/// CORS) but not its content headers.
fn generic_problem(status: StatusCode, old_headers: &HeaderMap) -> HttpResponse {
    let detail = status
        .canonical_reason()
        .unwrap_or("the request failed")
        .to_owned();
    let mut new = error::problem_response(status, error::code_for_status(status), detail, None);
    for (name, value) in old_headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    new
}

/// The Content-Security-Policy of the API reference page (`/docs/`): Swagger UI's own files
/// only (scripts and styles from this origin; its inline style attributes; its `data:` icons),
/// requests to this origin only (the OpenAPI document, "try it out"), never framed, no form
/// posts, no `<base>`. Nothing from another origin loads, not even the validator badge.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The Content-Security-Policy of the web console (`/` and `/console/*`): its own scripts,
/// style sheet and icon only, no inline script or style (not even an attribute), requests to
/// this origin only (the API), never framed, forms posted nowhere but here, no `<base>`.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The Content-Security-Policy of every other response (JSON, problem+json, streams): a
/// browser that opens one runs and loads nothing.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Which Content-Security-Policy a path's answers carry.
#[derive(Debug, Clone, Copy)]
enum Page {
    Docs,
    Console,
    Api,
}

impl Page {
    fn of(path: &str) -> Self {
        if path == "/docs" || path.starts_with("/docs/") {
            Self::Docs
        } else if path == "/" || path == "/console" || path.starts_with("/console/") {
            Self::Console
        } else {
            Self::Api
        }
    }

    const fn csp(self) -> &'static str {
        match self {
            Self::Docs => DOCS_CSP,
            Self::Console => CONSOLE_CSP,
            Self::Api => API_CSP,
        }
    }
}

fn set_security_headers(headers: &mut HeaderMap, hsts: Option<&HeaderValue>, page: Page) {
    let csp = HeaderValue::from_static(page.csp());
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }
    if let Some(v) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
}

/// An error response rendered inside the request's scope (so it carries the request id),
/// handed to actix as an error because no `HttpRequest` is at hand to wrap it.
#[derive(Debug)]
struct Rendered {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)
    }
}

impl ResponseError for Rendered {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status).body(self.body.clone());
        for (name, value) in &self.headers {
            res.headers_mut().insert(name.clone(), value.clone());
        }
        res
    }
}

/// Renders an error that escaped the inner services as problem+json (or in the request's
/// [`error::ErrorDialect`]).
fn render(e: &Error) -> Rendered {
    let res = e.error_response();
    let res = if is_deliberate_json(res.headers()) {
        res
    } else {
        generic_problem(res.status(), res.headers())
    };
    // The status of what is sent (an OpenAI-shaped quota error is 429, not 402).
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().try_into_bytes().unwrap_or_default();
    Rendered {
        status,
        headers,
        body,
    }
}

/// The outermost middleware: see the module docs.
pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let hsts = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.hsts_header.clone());
    let page = Page::of(req.path());
    // Never the raw path or query: they may hold tokens. The route template is recorded below.
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %req.method(),
        route = tracing::field::Empty,
    );
    // API answers carry tokens, codes, key secrets and tenant data: no cache (browser or
    // proxy) may keep one unless its handler says otherwise.
    let api = req.path().starts_with("/api/");
    let dialect = error::ErrorDialect::of_path(req.match_info().as_str());
    let started = Instant::now();
    let result = kernel::metering::with_request_id(
        request_id.clone(),
        dialect.scope(async move {
            match next.call(req).await {
                Ok(res) => Ok(ensure_problem(res.map_into_boxed_body())),
                Err(e) => Err(render(&e)),
            }
        }),
    )
    .instrument(span.clone())
    .await;
    let id_header = HeaderValue::from_str(&request_id).ok();
    let (status, route, result) = match result {
        Ok(mut res) => {
            set_security_headers(res.headers_mut(), hsts.as_ref(), page);
            if api && !res.headers().contains_key(header::CACHE_CONTROL) {
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            if let Some(v) = id_header {
                res.headers_mut().insert(X_REQUEST_ID, v);
            }
            (res.status(), res.request().match_pattern(), Ok(res))
        }
        Err(mut rendered) => {
            set_security_headers(&mut rendered.headers, hsts.as_ref(), page);
            if api && !rendered.headers.contains_key(header::CACHE_CONTROL) {
                rendered
                    .headers
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            if let Some(v) = id_header {
                rendered.headers.insert(X_REQUEST_ID, v);
            }
            (rendered.status, None, Err(Error::from(rendered)))
        }
    };
    span.record("route", route.as_deref().unwrap_or("unmatched"));
    let status = status.as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::info!(status, elapsed_ms, "request");
        }
    });
    result
}

/// Counts requests by route template and status.
pub async fn metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let _in_flight = state.metrics.start_request();
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next
        .call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body);
    let (route, status, tenant) = match &res {
        Ok(r) => (
            r.request().match_pattern(),
            r.status(),
            actix_web::HttpMessage::extensions(r.request())
                .get::<crate::tenant::Metered>()
                .map(|m| m.0),
        ),
        Err(e) => (None, e.as_response_error().status_code(), None),
    };
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.observe(
        &method,
        route.as_deref().unwrap_or("unmatched"),
        status.as_u16(),
        seconds,
    );
    if let Some(tenant) = tenant {
        state
            .metrics
            .observe_tenant(tenant, status.as_u16(), seconds);
    }
    res
}

/// The middleware: runs the request in the server's [`Outages`] scope, or answers 503
/// `service_unavailable` at once while a component every request needs is known down
/// (API routes only but the document: the health routes, metrics and the reference page need
/// no backing service, or check them themselves).
pub async fn outages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(outages) = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.outages.clone())
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let path = req.path();
    if path.starts_with("/api/")
        && !path.ends_with("/openapi.json")
        && let Some(component) = outages.refusing()
    {
        return Ok(req.error_response(ApiError::Unavailable {
            component,
            busy: false,
        }));
    }
    outages
        .scope(next.call(req))
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// CORS for the configured origins only. A request from another origin is served without CORS
/// headers (the browser then withholds the response); a preflight from it is refused.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-tenant-id"),
            X_REQUEST_ID,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            X_REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(3600)
        .block_on_origin_mismatch(false);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_request_ids_are_echoed() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(sane_request_id(&ok).as_deref(), Some("abc-123_x.y:z"));
        for bad in ["", "has space", "<script>", &"a".repeat(129)] {
            let v = HeaderValue::from_str(bad).expect("header");
            assert_eq!(sane_request_id(&v), None, "{bad:?}");
        }
    }
}
