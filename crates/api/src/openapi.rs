//! The OpenAPI document, generated from the handlers' annotations as they are registered
//! (utoipa-actix-web), so a route cannot exist without being documented. The same document
//! gives the [`RouteTable`](crate::RouteTable) that answers 405 with `Allow`, and test sweeps
//! walk it. The composition root builds both once ([`Documented::build`]).

use actix_web::App;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi as OpenApiDoc, Ref, RefOr, Response};
use utoipa_actix_web::AppExt as _;

use crate::error::{
    ErrorDialect, OpenAiError, OpenAiErrorBody, PROBLEM_JSON, Problem, ProblemField,
};
use crate::route_table::RouteTable;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Quire API",
        version = "1",
        description = "Chat with your documents: multi-tenant, streamed, cited. Errors are \
                       `application/problem+json` with a stable `code` and the `request_id`, except under \
                       `/api/v1/ai`, where they are OpenAI's error object (`OpenAiError`) with \
                       the same `code`. \
                       Any API route may answer 503 `service_unavailable` (the database or \
                       the cache is down) with `Retry-After`."
    ),
    components(schemas(Problem, ProblemField, OpenAiError, OpenAiErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Health, metrics and documentation (no auth)"),
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "orgs", description = "Organizations (tenants) and their members"),
        (name = "users", description = "The signed-in account's profile and preferences"),
        (name = "admin", description = "Platform administration (platform administrators only)"),
        (name = "documents", description = "Collections, uploads, chunks and ingestion jobs"),
        (name = "retrieval", description = "Search (hybrid, vector, keyword), embeddings and plain-text ingestion"),
        (name = "chat", description = "Sessions, streamed cited answers (SSE and WebSocket), feedback and assistants"),
        (name = "ai", description = "OpenAI-compatible completions, models and embeddings; summaries, Q&A, mind maps, analysis"),
        (name = "billing", description = "Usage (by kind, model and user), estimates and the plan with its monthly token quota"),
        (name = "webhooks", description = "Signed outbound webhooks: endpoints, their delivery log, redelivery"),
        (name = "mcp", description = "The Model Context Protocol server (Streamable HTTP, JSON-RPC): tools search, ask, list_documents, read_document (docs/mcp.md)"),
        (name = "workflows", description = "Background workflows: kinds, runs with progress, result and cancel, cron schedules")
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme (PASETO access tokens or `qk_` API keys).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("PASETO v4.public")
                    .build(),
            ),
        );
    }
}

/// The document for every registered route, with the error answers each operation's shape
/// implies ([`ErrorAnswers`]).
#[must_use]
pub fn document() -> OpenApiDoc {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    utoipa::Modify::modify(&ErrorAnswers, &mut doc);
    doc
}

/// Completes every operation's error answers, so that a generated client knows each status it
/// can get and its body, from what the document already says about the operation (one place,
/// instead of a copy in each annotation):
///
/// - under `/api/` (but the document itself): 503 (a backing service is down, or the handler
///   ran out of time) and 500;
/// - `security`: 401 (no token, a bad, expired or revoked one);
/// - the `X-Tenant-ID` header: 400 (`tenant_required`), 404 (not a member: never "exists but
///   not yours"), 403 (the role or the API key's scopes do not allow it);
/// - the `{org}` path segment: 404 and 403 as above; any other path segment: 404 (it does not
///   parse, or names nothing the caller may see);
/// - query parameters: 422 (a value of the wrong type or out of range);
/// - a request body: 400 (not JSON, unreadable), 413 (over `http.body_limit_bytes`, or the
///   upload limit), 415 (another media type), 422 (a field fails validation).
///
/// The statuses only one route answers (409, 402, 429, 502, ...) stay in its annotation. An
/// answer without a description gets its status's (OpenAPI 3.1 requires one). Every error
/// answer's body is then made the one the server sends: `application/problem+json`
/// ([`Problem`]), or under `/api/v1/ai` OpenAI's error object as `application/json`
/// ([`OpenAiError`], [`crate::error::ErrorDialect`]). An answer an annotation gives a body of
/// its own (the readiness report of `/health/ready`'s 503) keeps it.
#[derive(Debug)]
pub struct ErrorAnswers;

impl utoipa::Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for (path, item) in &mut openapi.paths.paths {
            let dialect = ErrorDialect::of_path(path);
            let api = path.starts_with("/api/") && path != crate::routes::OPENAPI_PATH;
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for status in implied_errors(op, api) {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(describe(status))));
                }
                for (status, response) in &mut op.responses.responses {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let code = status.parse().unwrap_or(0);
                    if response.description.is_empty() {
                        response.description = describe(code).to_owned();
                    }
                    if (400..600).contains(&code) {
                        set_error_body(response, dialect);
                    }
                }
            }
        }
    }
}

/// The error statuses `op` can answer by its shape (see [`ErrorAnswers`]).
fn implied_errors(op: &Operation, api: bool) -> Vec<u16> {
    let mut out = Vec::new();
    if api {
        out.extend([500, 503]);
    }
    if op.security.as_ref().is_some_and(|s| {
        s.iter()
            .any(|r| *r != utoipa::openapi::security::SecurityRequirement::default())
    }) {
        out.push(401);
    }
    for param in op.parameters.iter().flatten() {
        let RefOr::T(param) = param else { continue };
        match param.parameter_in {
            ParameterIn::Header if param.name.eq_ignore_ascii_case("x-tenant-id") => {
                out.extend([400, 403, 404]);
            }
            ParameterIn::Path if param.name == "org" => out.extend([403, 404]),
            ParameterIn::Path => out.push(404),
            ParameterIn::Query | ParameterIn::QueryString => out.push(422),
            _ => {}
        }
    }
    if op.request_body.is_some() {
        out.extend([400, 413, 415, 422]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What a status means, in general terms, for an answer its annotation does not describe
/// (OpenAPI 3.1 requires a description; an annotation says more).
fn describe(status: u16) -> &'static str {
    match status {
        400 => {
            "The request could not be read: the body is not JSON (`validation_failed`), or \
             `X-Tenant-ID` is missing (`tenant_required`)"
        }
        401 => {
            "No valid credential: the token is missing, malformed, expired or revoked (`unauthenticated`)"
        }
        403 => "The caller's role, or the API key's scopes, do not allow this (`forbidden`)",
        404 => "Not found, or not visible to the caller (`not_found`)",
        413 => "The body is larger than the server accepts (`payload_too_large`)",
        415 => {
            "The body's media type is not the one this operation reads (`unsupported_media_type`)"
        }
        422 => "A field or parameter failed validation; `errors` names each (`validation_failed`)",
        500 => {
            "An unexpected error; the body is opaque and the log has the request id (`internal`)"
        }
        503 => {
            "A backing service is down or busy (`service_unavailable`, with `Retry-After`), or \
             the request took too long (`timeout`)"
        }
        _ => actix_web::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("An answer"),
    }
}

/// Makes `response`'s body the error body of `dialect`, unless an annotation gave it a body
/// of its own.
fn set_error_body(response: &mut Response, dialect: ErrorDialect) {
    let ours = |content: &RefOr<Content>| match content {
        RefOr::T(c) => match &c.schema {
            None => true,
            Some(RefOr::Ref(r)) => {
                r.ref_location.ends_with("/Problem") || r.ref_location.ends_with("/OpenAiError")
            }
            Some(RefOr::T(_)) => false,
        },
        RefOr::Ref(_) => false,
    };
    if !response.content.values().all(ours) {
        return;
    }
    let (media_type, schema) = match dialect {
        ErrorDialect::Problem => (PROBLEM_JSON, "Problem"),
        ErrorDialect::OpenAi => ("application/json", "OpenAiError"),
    };
    response.content.clear();
    response.content.insert(
        media_type.to_owned(),
        RefOr::T(Content::new(Some(Ref::from_schema_name(schema)))),
    );
}

/// The OpenAPI document, serialized once, and the route table read from it: built once by the
/// composition root and shared by every worker (each worker holds a reference, never a copy:
/// the document as Rust values is a few megabytes).
#[derive(Clone)]
pub struct Documented {
    /// The document as served at `/api/v1/openapi.json`.
    pub json: actix_web::web::Bytes,
    /// Its paths and methods, for 405 answers.
    pub routes: actix_web::web::Data<RouteTable>,
}

impl Documented {
    /// The document of every registered route and its table.
    ///
    /// # Panics
    /// Never in practice: the document is plain data, and serializing it cannot fail.
    #[must_use]
    pub fn build() -> Self {
        let document = document();
        let routes = actix_web::web::Data::new(RouteTable::from_openapi(&document));
        #[allow(clippy::expect_used)] // our own static document, not client input
        let json = serde_json::to_vec(&document).expect("the OpenAPI document serializes");
        Self {
            json: json.into(),
            routes,
        }
    }
}

impl std::fmt::Debug for Documented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documented")
            .field("routes", &self.routes)
            .field("json_bytes", &self.json.len())
            .finish_non_exhaustive()
    }
}
