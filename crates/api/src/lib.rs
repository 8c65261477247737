//! The HTTP edge of Quire: actix-web handlers, DTOs, extractors, middleware, problem+json
//! errors and the generated OpenAPI document.
//!
//! Handlers stay thin (DTO → use case → DTO). Everything a route needs reaches it through one
//! [`AppState`]. [`build_app`] assembles the routes and the middleware stack; the composition
//! root (`apps/quire`) builds the state from the configured adapters, and the OpenAPI document
//! with its route table once ([`Documented::build`]).

pub mod auth;
mod dto;
pub mod error;
pub mod extract;
pub mod limits;
mod metrics;
mod middleware;
pub mod openapi;
pub mod outage;
mod route_table;
mod routes;
mod sockets;
mod state;
pub mod tenant;
pub mod timeouts;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};
use utoipa_actix_web::AppExt as _;

pub use error::{ApiError, current_request_id};
pub use metrics::Metrics;
pub use openapi::Documented;
pub use route_table::RouteTable;
pub use state::{AppState, Services, WsSettings};

/// Extra plain actix routes, for tests that need a route of their own (never documented).
pub type ExtraRoutes = fn(&mut web::ServiceConfig);

/// The whole application: routes, error handling and middleware, around `state`, serving
/// `api`'s document (built once by the composition root: [`Documented::build`]).
pub fn build_app(
    state: web::Data<AppState>,
    api: Documented,
    extra: Option<ExtraRoutes>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.http.body_limit_bytes;
    let cors = middleware::cors(&state.http.cors_allowed_origins);
    // The document and the reference page come first: the `/api/v1` scope would otherwise
    // claim `/api/v1/openapi.json`.
    let (app, _) = App::new()
        .service(
            web::resource(routes::OPENAPI_PATH)
                .guard(actix_web::guard::Get())
                .app_data(web::Data::new(api.json))
                .to(routes::openapi_json),
        )
        .service(routes::docs())
        .route("/docs", web::get().to(routes::docs_redirect))
        .route("/console", web::get().to(routes::console_redirect))
        .into_utoipa_app()
        .configure(routes::configure)
        .split_for_parts();
    app.app_data(state)
        .app_data(api.routes)
        .app_data(web::PayloadConfig::new(limit))
        .app_data(extract::json_config(limit))
        .app_data(extract::query_config())
        .app_data(extract::path_config())
        .configure(|cfg| {
            if let Some(extra) = extra {
                extra(cfg);
            }
        })
        .default_service(web::to(routes::fallback))
        .wrap(actix_web::middleware::from_fn(limits::headers))
        .wrap(actix_web::middleware::from_fn(timeouts::timeout))
        .wrap(actix_web::middleware::Compress::default())
        .wrap(cors)
        .wrap(actix_web::middleware::from_fn(middleware::outages))
        .wrap(actix_web::middleware::from_fn(middleware::metrics))
        .wrap(actix_web::middleware::from_fn(middleware::edge))
}
