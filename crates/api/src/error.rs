//! One API error type, rendered as `application/problem+json` exactly as the API contract says:
//! `{type, title, status, detail, code, request_id, errors?}`; or, on the OpenAI-compatible
//! routes under `/api/v1/ai`, as OpenAI's error object (`{"error": {message, type, code,
//! param}}`), so that OpenAI's SDKs raise their typed exceptions. Which of the two a request
//! gets is its [`ErrorDialect`], set once per request by the edge middleware; every error body
//! of that request (a handler's, an extractor's, the router's, a middleware's) is written in it.
//!
//! 5xx bodies are opaque: the cause chain goes to the log (with the request id), never to the
//! client.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use kernel::{FieldError, InvalidInput};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The id of the request this task serves, if any (set by the edge middleware through
/// [`kernel::metering::with_request_id`], so the usage ledger sees it too).
#[must_use]
pub fn current_request_id() -> Option<String> {
    kernel::metering::request_id()
}

/// How the error bodies of a request are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDialect {
    /// `application/problem+json` (the API contract's shape).
    Problem,
    /// OpenAI's error object ([`OpenAiError`]), with the status OpenAI's SDKs expect: a used-up
    /// quota is 429 (`insufficient_quota`) instead of 402.
    OpenAi,
}

tokio::task_local! {
    static DIALECT: ErrorDialect;
}

/// The prefix of the routes that answer errors in OpenAI's shape.
const OPENAI_PREFIX: &str = "/api/v1/ai";

impl ErrorDialect {
    /// The dialect of a request to `path` (as the router matches it, percent-decoded): OpenAI's
    /// under `/api/v1/ai`, else problem+json.
    #[must_use]
    pub fn of_path(path: &str) -> Self {
        match path.strip_prefix(OPENAI_PREFIX) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => ErrorDialect::OpenAi,
            _ => ErrorDialect::Problem,
        }
    }

    /// Runs `fut` (a request) with this dialect.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        DIALECT.scope(self, fut).await
    }

    /// The dialect of the request this task serves (problem+json outside any).
    #[must_use]
    pub fn current() -> Self {
        DIALECT.try_with(|d| *d).unwrap_or(ErrorDialect::Problem)
    }
}

/// OpenAI's error body: `{"error": {message, type, code, param}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiError {
    /// The error.
    pub error: OpenAiErrorBody,
}

/// The error object of [`OpenAiError`].
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// What went wrong, for people (with every invalid field and why).
    pub message: String,
    /// OpenAI's error class, from the status: `invalid_request_error` (400, 405, 409, 413,
    /// 415, 422), `authentication_error` (401), `permission_error` (403), `not_found_error`
    /// (404), `rate_limit_error` or `insufficient_quota` (429), `server_error` (5xx, and an
    /// error event that ends a stream).
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// Quire's stable machine code, the same as problem+json's `code` elsewhere
    /// (`validation_failed`, `unauthenticated`, `quota_exceeded`, `provider_unavailable`, ...).
    pub code: String,
    /// The first invalid field (`model`, `messages[0].role`), else `null`.
    pub param: Option<String>,
    /// Every invalid field, for `validation_failed` (Quire's extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
    /// When the monthly quota starts again (RFC 3339), for `quota_exceeded` (Quire's
    /// extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

impl OpenAiError {
    /// An error of OpenAI's class `type_` with Quire's `code`.
    #[must_use]
    pub fn new(type_: &'static str, code: &str, message: String) -> Self {
        Self {
            error: OpenAiErrorBody {
                message,
                type_,
                code: code.to_owned(),
                param: None,
                errors: None,
                resets_at: None,
            },
        }
    }

    /// OpenAI's class for an error answered with `status` and Quire's `code`.
    fn type_for(status: StatusCode, code: &str) -> &'static str {
        match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            402 | 429 if code == "quota_exceeded" => "insufficient_quota",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }
}

/// A problem document (RFC 9457) with Quire's `code`, `request_id` and field `errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:quire:problem:{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// A stable machine string: `validation_failed`, `unauthenticated`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `rate_limited`, `quota_exceeded`,
    /// `storage_limit_exceeded`,
    /// `payload_too_large`, `unsupported_media_type`, `provider_unavailable`, `timeout`,
    /// `org_limit_reached` (403: the account owns as many organizations as it may),
    /// `unavailable` (metering could not be reached), `service_unavailable` (the database or
    /// the cache could not be reached), `storage_unavailable`, `internal`.
    pub code: String,
    /// The request's id (also in the `X-Request-ID` header).
    pub request_id: String,
    /// Field-level errors, for `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
    /// When the monthly quota starts again (RFC 3339), for `quota_exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

/// One field that failed validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// The field's path in the request (`email`, `items[2].name`, `limit`).
    pub field: String,
    /// Why it failed.
    pub message: String,
}

/// Every error a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, missing tenant header).
    #[error("{detail}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// 422: fields failed validation.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 401, with what failed (never which of email or password).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// 403.
    #[error("not allowed")]
    Forbidden,
    /// 403 with the rule that refused.
    #[error("{0}")]
    ForbiddenBecause(&'static str),
    /// 403 `email_unverified`: the account's address must be confirmed first (the message
    /// says how).
    #[error("{0}")]
    EmailUnverified(String),
    /// 403 with a code of its own: a limit of the account was reached
    /// (`org_limit_reached`).
    #[error("{detail}")]
    LimitReached {
        /// The stable code.
        code: &'static str,
        /// Which limit, and what to do.
        detail: String,
    },
    /// 404.
    #[error("not found")]
    NotFound,
    /// 405, with the methods the path does allow.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<String>),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 410: it existed, its time is up.
    #[error("{0}")]
    Gone(String),
    /// 413.
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429, retry after the given seconds.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 402: the organization's monthly token quota would be passed.
    #[error("the organization's monthly token quota is used up; it resets at {}", rfc3339(*resets_at))]
    QuotaExceeded {
        /// When the quota period starts again.
        resets_at: time::OffsetDateTime,
    },
    /// 402: the organization's stored files would pass its plan's storage.
    #[error(
        "the organization's storage is full: {used} of {limit} bytes are used; delete documents or change the plan"
    )]
    StorageLimitExceeded {
        /// The plan's storage, in bytes.
        limit: u64,
        /// Bytes already stored.
        used: u64,
    },
    /// 503: metering (the quota counter or the ledger) could not be reached; nothing was
    /// called.
    #[error("usage metering is unavailable; try again shortly")]
    MeteringUnavailable,
    /// 503: the handler did not answer within the request timeout.
    #[error("the request took too long")]
    Timeout,
    /// 503: the database stayed down longer than the work was retried (an answer's end).
    #[error("storage is unavailable; try again shortly")]
    StorageUnavailable,
    /// 502: the model provider could not be reached (after its retries).
    #[error("the model provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// 503 `provider_unavailable` with `Retry-After`: the provider failed a call a moment
    /// ago, so this one was not tried.
    #[error("the model provider is down; try again in {retry_after_secs} s")]
    ProviderDown {
        /// Seconds until it is tried again.
        retry_after_secs: u64,
    },
    /// 503: a backing service (`database`, `cache`) could not be reached, or was too busy to
    /// serve in time; nothing the request asked for was done or it was undone.
    #[error("the {component} is {}; try again shortly", if *.busy { "busy" } else { "unavailable" })]
    Unavailable {
        /// The component, as `/health` names it.
        component: &'static str,
        /// It answers but had nothing free in time (load), rather than not answering.
        busy: bool,
    },
    /// 500: anything unexpected. The chain is logged; the client sees an opaque body.
    /// Build it with [`ApiError::unexpected`], which tells outages apart.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl ApiError {
    /// An error nobody classified: [`ApiError::Unavailable`] when a component of the server
    /// recognizes it as its outage ([`crate::outage`]), else [`ApiError::Internal`].
    #[must_use]
    pub fn unexpected(e: anyhow::Error) -> Self {
        let chain: &(dyn std::error::Error + 'static) = e.as_ref();
        match crate::outage::explain(chain) {
            Some((component, outage)) => {
                tracing::warn!(component, ?outage, error = %Chain(chain), "a request met an outage");
                ApiError::Unavailable {
                    component,
                    busy: outage == kernel::health::Outage::Busy,
                }
            }
            None => ApiError::Internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::unexpected(e)
    }
}

/// `t` as an RFC 3339 string (how every time is written on the wire).
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl From<billing::BillingError> for ApiError {
    fn from(e: billing::BillingError) -> Self {
        use billing::BillingError as B;
        match e {
            B::Invalid(i) => ApiError::Validation(i.0),
            B::NotFound => ApiError::NotFound,
            B::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<kernel::MeterError> for ApiError {
    fn from(e: kernel::MeterError) -> Self {
        use kernel::MeterError as M;
        match e {
            M::QuotaExceeded { resets_at, .. } => ApiError::QuotaExceeded { resets_at },
            M::TooManyStreams { retry_after, .. } => ApiError::RateLimited {
                retry_after_secs: kernel::clock::whole_secs_up(retry_after).max(1),
            },
            M::Unavailable(e) => {
                tracing::error!(error = %Chain(e.as_ref()), "metering is unavailable");
                ApiError::MeteringUnavailable
            }
        }
    }
}

impl From<documents::DocumentsError> for ApiError {
    fn from(e: documents::DocumentsError) -> Self {
        use documents::DocumentsError as D;
        match e {
            D::Invalid(i) => ApiError::Validation(i.0),
            D::NotFound => ApiError::NotFound,
            D::TooLarge { limit } => ApiError::PayloadTooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            D::StorageFull { limit, used } => ApiError::StorageLimitExceeded { limit, used },
            // An extraction of the same organization ends within the extract timeout.
            D::Busy => ApiError::RateLimited {
                retry_after_secs: 1,
            },
            D::Unsupported(d) => ApiError::UnsupportedMediaType(d.to_string()),
            D::Extract(documents::ExtractError::Unavailable(e)) => {
                ApiError::unexpected(e.context("the extractor is unavailable"))
            }
            D::Extract(x) => {
                if let documents::ExtractError::Crashed(reason) = &x {
                    tracing::warn!(reason = %reason, "extraction crashed");
                }
                ApiError::Validation(vec![FieldError::new("file", x.public_message())])
            }
            D::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<retrieval::RetrievalError> for ApiError {
    fn from(e: retrieval::RetrievalError) -> Self {
        use retrieval::RetrievalError as R;
        match e {
            R::Invalid(i) => ApiError::Validation(i.0),
            R::NotFound => ApiError::NotFound,
            R::ProviderUnavailable(m) => {
                tracing::warn!(reason = %m, "the embedding provider is unavailable");
                ApiError::ProviderUnavailable(m)
            }
            R::Rejected(m) => ApiError::Validation(vec![FieldError::new("input", m)]),
            R::Metering(e) => ApiError::from(e),
            R::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<chat::ChatError> for ApiError {
    fn from(e: chat::ChatError) -> Self {
        use chat::ChatError as C;
        match e {
            C::Invalid(i) => ApiError::Validation(i.0),
            C::NotFound => ApiError::NotFound,
            C::UnknownModel { model, allowed } => ApiError::BadRequest {
                code: "validation_failed",
                detail: format!(
                    "the model {model:?} is not available to this organization; allowed: {}",
                    allowed.join(", ")
                ),
            },
            C::ProviderUnavailable(m) => {
                tracing::warn!(reason = %m, "the model provider is unavailable");
                ApiError::ProviderUnavailable(m)
            }
            C::ProviderDown(wait) => ApiError::ProviderDown {
                retry_after_secs: kernel::clock::whole_secs_up(wait).max(1),
            },
            C::ProviderRejected(m) => ApiError::Validation(vec![FieldError::new("messages", m)]),
            C::InvalidModelOutput(m) => ApiError::ProviderUnavailable(m),
            C::Cancelled => ApiError::ProviderUnavailable("the answer was cancelled".to_owned()),
            C::Forbidden(why) => ApiError::ForbiddenBecause(why),
            C::Metering(e) => ApiError::from(e),
            C::StorageUnavailable => ApiError::StorageUnavailable,
            C::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<identity::AuthError> for ApiError {
    fn from(e: identity::AuthError) -> Self {
        use identity::AuthError as A;
        match e {
            A::Invalid(i) => ApiError::Validation(i.0),
            A::EmailTaken => ApiError::Conflict("an account with this email exists".to_owned()),
            A::BadCredentials => ApiError::Unauthenticated("wrong email or password"),
            A::InvalidToken => ApiError::Unauthenticated("the token is invalid or expired"),
            A::Busy => ApiError::RateLimited {
                retry_after_secs: 1,
            },
            A::Throttled(wait) => ApiError::RateLimited {
                // Whole seconds, rounded up: a client that waits this long is let in.
                retry_after_secs: kernel::clock::whole_secs_up(wait),
            },
            A::NotFound => ApiError::NotFound,
            A::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<tenancy::TenancyError> for ApiError {
    fn from(e: tenancy::TenancyError) -> Self {
        use tenancy::TenancyError as T;
        match e {
            T::Invalid(i) => ApiError::Validation(i.0),
            T::SlugTaken => ApiError::Conflict("an organization with this slug exists".to_owned()),
            e @ T::TooManyOrganizations(_) => ApiError::LimitReached {
                code: "org_limit_reached",
                detail: e.to_string(),
            },
            T::NotFound => ApiError::NotFound,
            T::Forbidden(why) => ApiError::ForbiddenBecause(why),
            e @ T::EmailUnverified => ApiError::EmailUnverified(e.to_string()),
            e @ T::SoleOwner(_) => ApiError::Conflict(e.to_string()),
            T::LastOwner => {
                ApiError::Conflict("an organization must keep at least one owner".to_owned())
            }
            T::Unknown(e) => ApiError::unexpected(e),
        }
    }
}

impl From<webhooks::WebhookError> for ApiError {
    fn from(e: webhooks::WebhookError) -> Self {
        use webhooks::WebhookError as W;
        match e {
            W::NotFound => ApiError::NotFound,
            W::Forbidden => ApiError::Forbidden,
            W::Invalid(i) => ApiError::Validation(i.0),
            e @ W::TooMany(_) => ApiError::LimitReached {
                code: "webhook_limit_reached",
                detail: e.to_string(),
            },
            W::Store(e) => ApiError::unexpected(e),
        }
    }
}

impl From<workflows::WorkflowError> for ApiError {
    fn from(e: workflows::WorkflowError) -> Self {
        use workflows::WorkflowError as W;
        match e {
            W::NotFound => ApiError::NotFound,
            W::Forbidden(_) => ApiError::Forbidden,
            W::Invalid(i) => ApiError::Validation(i.0),
            W::Conflict(m) => ApiError::Conflict(m),
            W::Gone(m) => ApiError::Gone(m),
            e @ W::TooMany(_) => ApiError::LimitReached {
                code: "schedule_limit_reached",
                detail: e.to_string(),
            },
            W::Store(e) => ApiError::unexpected(e),
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::Validation(e.0)
    }
}

impl ApiError {
    /// The stable machine code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden | ApiError::ForbiddenBecause(_) => "forbidden",
            ApiError::EmailUnverified(_) => "email_unverified",
            ApiError::LimitReached { code, .. } => code,
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::StorageLimitExceeded { .. } => "storage_limit_exceeded",
            ApiError::MeteringUnavailable => "unavailable",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::Timeout => "timeout",
            ApiError::StorageUnavailable => "storage_unavailable",
            ApiError::ProviderUnavailable(_) | ApiError::ProviderDown { .. } => {
                "provider_unavailable"
            }
            ApiError::Internal(_) => "internal",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Validation(_) => "one or more fields are invalid".to_owned(),
            ApiError::NotFound => "the resource does not exist".to_owned(),
            ApiError::Forbidden => "your role does not allow this".to_owned(),
            ApiError::MethodNotAllowed(allow) => {
                format!("this path allows {}", allow.join(", "))
            }
            ApiError::Internal(_) => "an internal error occurred".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The code for a status when nothing more specific is known (responses made outside a
/// handler: the router, CORS, the protocol layer).
#[must_use]
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "validation_failed",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        402 => "quota_exceeded",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        502 => "provider_unavailable",
        503 | 504 => "timeout",
        _ => "internal",
    }
}

/// A problem response for `status` with `code` and `detail`.
#[must_use]
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<Vec<ProblemField>>,
) -> HttpResponse {
    problem_with(status, code, detail, errors, None)
}

fn problem_with(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<Vec<ProblemField>>,
    resets_at: Option<String>,
) -> HttpResponse {
    if ErrorDialect::current() == ErrorDialect::OpenAi {
        return openai_error(status, code, detail, errors, resets_at);
    }
    let body = Problem {
        type_: format!("urn:quire:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        request_id: current_request_id().unwrap_or_default(),
        errors,
        resets_at,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(json)
}

/// The OpenAI-shaped answer of an error: `application/json` `{"error": {...}}`. A quota or
/// storage limit (402 in problem+json) is a 429 `insufficient_quota` with `x-should-retry:
/// false`, so that the SDKs raise `RateLimitError` at once instead of retrying.
fn openai_error(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<Vec<ProblemField>>,
    resets_at: Option<String>,
) -> HttpResponse {
    let status = if status == StatusCode::PAYMENT_REQUIRED {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        status
    };
    let message = match &errors {
        Some(fields) if !fields.is_empty() => {
            let list: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!("{detail}: {}", list.join("; "))
        }
        _ => detail,
    };
    let mut body = OpenAiError::new(OpenAiError::type_for(status, code), code, message);
    body.error.param = errors
        .as_ref()
        .and_then(|f| f.first())
        .map(|f| f.field.clone());
    body.error.errors = errors;
    let no_retry = body.error.type_ == "insufficient_quota";
    body.error.resets_at = resets_at;
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = HttpResponse::build(status);
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    if no_retry {
        res.insert_header(("x-should-retry", "false"));
    }
    res.body(json)
}

/// Formats an error with its whole `source()` chain, for the log.
#[derive(Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden
            | ApiError::ForbiddenBecause(_)
            | ApiError::EmailUnverified(_)
            | ApiError::LimitReached { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::QuotaExceeded { .. } | ApiError::StorageLimitExceeded { .. } => {
                StatusCode::PAYMENT_REQUIRED
            }
            ApiError::Timeout
            | ApiError::MeteringUnavailable
            | ApiError::StorageUnavailable
            | ApiError::Unavailable { .. }
            | ApiError::ProviderDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ProviderUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            let chain: &(dyn std::error::Error + 'static) = e.as_ref();
            tracing::error!(error = %Chain(chain), "internal error");
        }
        let errors = match self {
            ApiError::Validation(fields) => {
                // Sorted by field, whichever layer found them: a stable order for clients.
                let mut out: Vec<ProblemField> = fields
                    .iter()
                    .map(|f| ProblemField {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    })
                    .collect();
                out.sort_by(|a, b| a.field.cmp(&b.field));
                Some(out)
            }
            _ => None,
        };
        let resets_at = match self {
            ApiError::QuotaExceeded { resets_at } => Some(rfc3339(*resets_at)),
            _ => None,
        };
        let mut res = problem_with(
            self.status_code(),
            self.code(),
            self.detail(),
            errors,
            resets_at,
        );
        match self {
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                    res.headers_mut().insert(header::ALLOW, v);
                }
            }
            ApiError::Unauthenticated(_) => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_secs }
            | ApiError::ProviderDown { retry_after_secs } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::StorageUnavailable
            | ApiError::MeteringUnavailable
            | ApiError::Unavailable { .. } => {
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::outage::RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_opaque() {
        let err = ApiError::Internal(anyhow::anyhow!("SELECT * FROM secrets at /srv/x.rs"));
        assert_eq!(err.detail(), "an internal error occurred");
        assert_eq!(err.code(), "internal");
    }

    #[test]
    fn only_paths_under_ai_speak_openai() {
        for path in [
            "/api/v1/ai",
            "/api/v1/ai/",
            "/api/v1/ai/models",
            "/api/v1/ai/x/y",
        ] {
            assert_eq!(ErrorDialect::of_path(path), ErrorDialect::OpenAi, "{path}");
        }
        for path in [
            "/api/v1/aimodels",
            "/api/v1/embeddings",
            "/api/v1",
            "/ai/models",
            "/",
        ] {
            assert_eq!(ErrorDialect::of_path(path), ErrorDialect::Problem, "{path}");
        }
        assert_eq!(
            ErrorDialect::current(),
            ErrorDialect::Problem,
            "outside any request"
        );
    }

    fn body_of(res: HttpResponse) -> serde_json::Value {
        let bytes =
            actix_web::body::MessageBody::try_into_bytes(res.into_body()).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[tokio::test]
    async fn the_openai_dialect_writes_openai_errors() {
        let quota = ApiError::QuotaExceeded {
            resets_at: time::macros::datetime!(2027-01-01 0:00 UTC),
        };
        let res = ErrorDialect::OpenAi
            .scope(async { quota.error_response() })
            .await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let header_of = |res: &HttpResponse, name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header_of(&res, "x-should-retry").as_deref(), Some("false"));
        assert_eq!(
            header_of(&res, "content-type").as_deref(),
            Some("application/json")
        );
        let body = body_of(res);
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["code"], "quota_exceeded");
        assert_eq!(body["error"]["resets_at"], "2027-01-01T00:00:00Z");
        assert_eq!(body["error"]["param"], serde_json::Value::Null);

        let invalid = ApiError::Validation(vec![
            FieldError::new("model", "unknown"),
            FieldError::new("input", "empty"),
        ]);
        let res = ErrorDialect::OpenAi
            .scope(async { invalid.error_response() })
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_of(res);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "input", "the first field, sorted");
        assert_eq!(
            body["error"]["message"],
            "one or more fields are invalid: input: empty; model: unknown"
        );
        assert_eq!(body["error"]["errors"][1]["field"], "model");

        // The same error elsewhere: problem+json, 402.
        let res = ErrorDialect::Problem
            .scope(async { quota.error_response() })
            .await;
        assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            header_of(&res, "content-type").as_deref(),
            Some(PROBLEM_JSON)
        );
        assert!(res.headers().get("x-should-retry").is_none());
    }

    #[test]
    fn chain_shows_every_cause() {
        let err = anyhow::anyhow!("root cause")
            .context("middle")
            .context("top");
        let chain: &(dyn std::error::Error + 'static) = err.as_ref();
        assert_eq!(Chain(chain).to_string(), "top: middle: root cause");
    }
}
