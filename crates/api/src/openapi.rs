//! The OpenAPI document, generated from the handlers' annotations as they are registered
//! (utoipa-actix-web), so a route cannot exist without being documented. The same document
//! gives the [`RouteTable`] that answers 405 with `Allow`, and that later test sweeps walk.

use actix_web::App;
use actix_web::dev::ResourceDef;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_actix_web::AppExt as _;

use crate::error::{Problem, ProblemField};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Quire API",
        version = "1",
        description = "Chat with your documents: multi-tenant, streamed, cited. Errors are \
                       `application/problem+json` with a stable `code` and the `request_id`."
    ),
    components(schemas(Problem, ProblemField)),
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
        (name = "billing", description = "Usage (by kind, model and user), estimates and the plan with its monthly token quota")
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

/// Every documented path with its methods.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(ResourceDef, String, Vec<String>)>,
}

impl RouteTable {
    /// The table of `doc`'s paths.
    #[must_use]
    pub fn from_openapi(doc: &OpenApiDoc) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods: Vec<String> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(m, _)| m.to_owned())
                .collect();
                (ResourceDef::new(path.as_str()), path.clone(), methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods documented for the routes matching `path` (empty when none matches).
    #[must_use]
    pub fn allowed_methods(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .filter(|(def, _, _)| def.is_match(path))
            .flat_map(|(_, _, methods)| methods.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every `(method, path template)` pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes
            .iter()
            .flat_map(|(_, path, methods)| methods.iter().map(move |m| (m.as_str(), path.as_str())))
    }
}
