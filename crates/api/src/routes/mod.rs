//! Route registration. Every documented route is registered here, through
//! utoipa-actix-web, so it lands in the OpenAPI document.

mod admin;
mod ai;
mod auth;
mod billing;
mod chat;
pub(crate) mod chat_ws;
mod collections;
mod console;
mod documents;
mod evaluations;
mod exports;
mod mcp;
pub(crate) mod orgs;
mod platform;
mod retrieval;
mod users;
mod webhooks;
pub(crate) mod workflows;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::route_table::RouteTable;

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    platform::configure(cfg);
    console::configure(cfg);
    cfg.service(
        utoipa_actix_web::scope("/api/v1")
            .configure(auth::configure)
            .configure(orgs::configure)
            .configure(exports::configure)
            .configure(users::configure)
            .configure(admin::configure)
            .configure(collections::configure)
            .configure(documents::configure)
            .configure(retrieval::configure)
            .configure(evaluations::configure)
            .configure(chat::configure)
            .configure(chat_ws::configure)
            .configure(ai::configure)
            .configure(billing::configure)
            .configure(webhooks::configure)
            .configure(mcp::configure)
            .configure(workflows::configure),
    );
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The API reference page at `/docs/`, with its assets compiled into the binary (no CDN),
/// reading the document at [`OPENAPI_PATH`] ([`openapi_json`]).
pub fn docs() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from(OPENAPI_PATH))
}

/// `GET /api/v1/openapi.json`: the document, serialized once at start-up
/// ([`crate::Documented`]) and shared by every worker.
pub async fn openapi_json(json: web::Data<web::Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(header::ContentType::json())
        .body(json.get_ref().clone())
}

/// `/docs` → `/docs/`.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `/console` → `/` (the console's page; its files are under `/console/`).
pub async fn console_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/"))
        .finish()
}

/// No route matched: 405 with `Allow` when the path exists for other methods, else 404.
pub async fn fallback(
    req: HttpRequest,
    routes: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let allowed = routes.allowed_methods(req.path());
    if allowed.is_empty() {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}
