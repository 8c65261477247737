//! Undocumented routes that only test apps mount, to drive the edge through the whole stack:
//! a JSON echo (extractor errors), a paginated echo (query errors), an internal error (opaque
//! 5xx), a slow handler gated by the test (graceful shutdown, timeouts) and a tenant-scoped
//! route needing `member` (the `X-Tenant-ID` extractor).

use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use api::ApiError;
use api::extract::{PageQuery, ValidJson};
use kernel::{FieldError, InvalidInput};
use serde::Deserialize;
use tokio::sync::Notify;

/// Lets a test know the slow handler started, and release it.
#[derive(Debug, Default)]
pub struct SlowGate {
    /// Notified when `/__test/slow` starts.
    pub started: Notify,
    /// `/__test/slow` answers once this is notified.
    pub release: Notify,
}

/// The gate of `/__test/slow` (one per test process: use it from one test per binary).
pub static SLOW_GATE: LazyLock<SlowGate> = LazyLock::new(SlowGate::default);

#[derive(Debug, Deserialize)]
struct Echo {
    /// 3 to 20 characters.
    name: String,
    /// 1 to 10.
    count: u32,
    #[serde(default)]
    tags: Vec<String>,
}

/// Checks its fields the way the domain's value types do: every failing field at once, as
/// [`InvalidInput`], which the API answers 422 with one error per field.
async fn echo(ValidJson(body): ValidJson<Echo>) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    if !(3..=20).contains(&body.name.chars().count()) {
        errors.push(FieldError::new("name", "must be 3 to 20 characters"));
    }
    if !(1..=10).contains(&body.count) {
        errors.push(FieldError::new("count", "must be between 1 and 10"));
    }
    InvalidInput::check(errors)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "name": body.name, "count": body.count, "tags": body.tags
    })))
}

async fn page(query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let page = query.to_request()?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "limit": page.limit(), "after": page.after().map(|c| c.key().to_owned())
    })))
}

async fn internal() -> Result<HttpResponse, ApiError> {
    Err(ApiError::Internal(
        anyhow::anyhow!("SELECT password FROM users at /srv/quire/src/db.rs:42")
            .context("loading the user"),
    ))
}

async fn tenant(t: api::tenant::Tenant<api::tenant::Member>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "tenant": t.ctx.tenant_id().to_string(), "role": t.ctx.role().as_str()
    }))
}

/// A handler that takes 1.5 s, on a route with the answer time limit.
async fn slow_answer() -> HttpResponse {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    HttpResponse::Ok().body("answered")
}

async fn slow() -> HttpResponse {
    SLOW_GATE.started.notify_one();
    SLOW_GATE.release.notified().await;
    HttpResponse::Ok().body("finished")
}

/// Mounts the test routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/__test/echo", web::post().to(echo))
        .route("/__test/page", web::get().to(page))
        .route("/__test/internal", web::get().to(internal))
        .route("/__test/slow", web::get().to(slow))
        .route("/__test/tenant", web::get().to(tenant))
        .service(
            web::resource("/__test/slow-answer")
                .wrap(actix_web::middleware::from_fn(
                    api::timeouts::limit::<api::timeouts::Answer>,
                ))
                .route(web::get().to(slow_answer)),
        );
}
