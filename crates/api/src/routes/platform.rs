//! Platform endpoints (no auth): liveness, readiness, health, metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use futures_util::future::join_all;
use kernel::health::HealthCheck;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Chain};
use crate::state::AppState;

/// How long one component check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(live)
        .service(ready)
        .service(health)
        .service(metrics);
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `ok`.
    status: &'static str,
}

/// One component's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `up` or `down`.
    status: &'static str,
    /// How long the check took, in milliseconds.
    latency_ms: f64,
}

/// Readiness or health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ready`/`not_ready` (readiness) or `ok`/`degraded` (health).
    status: &'static str,
    /// Components that are down.
    failing: Vec<&'static str>,
    /// Every component by name.
    components: BTreeMap<&'static str, ComponentHealth>,
    /// The server's version.
    version: &'static str,
    /// Seconds since the server started.
    uptime_secs: u64,
}

async fn check_one(c: &Arc<dyn HealthCheck>) -> (&'static str, ComponentHealth) {
    let started = Instant::now();
    let up = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            let chain: &(dyn std::error::Error + 'static) = e.as_ref();
            tracing::warn!(component = c.component(), error = %Chain(chain), "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(component = c.component(), "health check timed out");
            false
        }
    };
    let component = ComponentHealth {
        status: if up { "up" } else { "down" },
        latency_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    };
    (c.component(), component)
}

async fn report(state: &AppState, ok: &'static str, not_ok: &'static str) -> HealthReport {
    let results = join_all(state.outages.components().iter().map(check_one)).await;
    let failing: Vec<&'static str> = results
        .iter()
        .filter(|(_, h)| h.status == "down")
        .map(|(name, _)| *name)
        .collect();
    HealthReport {
        status: if failing.is_empty() { ok } else { not_ok },
        failing,
        components: results.into_iter().collect(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started_at.elapsed().as_secs(),
    }
}

/// The process is up.
#[utoipa::path(tag = "platform", responses((status = 200, body = Live)))]
#[get("/health/live")]
async fn live() -> web::Json<Live> {
    web::Json(Live { status: "ok" })
}

/// Ready to serve: the database, the cache and the model provider (when one is configured)
/// answer. 503 names the failing components.
#[utoipa::path(
    tag = "platform",
    responses(
        (status = 200, body = HealthReport),
        (status = 503, description = "a component is down", body = HealthReport)
    )
)]
#[get("/health/ready")]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = report(&state, "ready", "not_ready").await;
    let mut res = if report.failing.is_empty() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}

/// Every component with its status and check latency (always 200; see `status`).
#[utoipa::path(tag = "platform", responses((status = 200, body = HealthReport)))]
#[get("/health")]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let report = report(&state, "ok", "degraded").await;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}

/// Prometheus metrics (OpenMetrics text): requests by route template and status, latency
/// histogram, in-flight requests, connection-pool figures.
#[utoipa::path(
    tag = "platform",
    responses((status = 200, content_type = "application/openmetrics-text", body = String))
)]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .render(state.outages.components(), state.trail.dropped())
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("rendering metrics")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
