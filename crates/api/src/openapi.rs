//! The OpenAPI document, generated from the handlers' annotations as they are registered
//! (utoipa-actix-web), so a route cannot exist without being documented. The same document
//! gives the [`RouteTable`](crate::RouteTable) that answers 405 with `Allow`, and test sweeps
//! walk it. The composition root builds both once ([`Documented::build`]).

use actix_web::App;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_actix_web::AppExt as _;

use crate::error::{OpenAiError, OpenAiErrorBody, Problem, ProblemField};
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

/// The document for every registered route.
#[must_use]
pub fn document() -> OpenApiDoc {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    doc
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
