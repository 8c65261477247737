//! The one piece of shared state every handler receives.

use std::sync::Arc;
use std::time::Instant;

use identity::Accounts;
use kernel::cache::Cache;
use kernel::health::HealthCheck;
use settings::HttpSettings;
use utoipa::openapi::OpenApi;

use crate::metrics::Metrics;
use crate::openapi::{self, RouteTable};

/// Shared by all workers of one server process (behind `web::Data`).
pub struct AppState {
    /// HTTP limits, CORS and HSTS.
    pub http: HttpSettings,
    /// The cache/coordination port.
    pub cache: Arc<dyn Cache>,
    /// Accounts and tokens.
    pub accounts: Arc<Accounts>,
    /// Organizations and memberships.
    pub orgs: Arc<tenancy::Organizations>,
    /// Security events.
    pub audit: Arc<dyn kernel::AuditLog>,
    /// Organization API keys.
    pub api_keys: Arc<tenancy::ApiKeys>,
    /// Invitations.
    pub invitations: Arc<tenancy::Invitations>,
    /// Collections.
    pub collections: Arc<documents::Collections>,
    /// Documents and uploads.
    pub documents: Arc<documents::Documents>,
    /// Search and embeddings.
    pub retrieval: Arc<retrieval::Retrieval>,
    /// Credential-route attempts per client address per minute (`auth_rate_limit`).
    pub auth_attempts_per_ip: u32,
    /// Components checked by `/health/ready` (database, cache; later the provider).
    pub components: Vec<Arc<dyn HealthCheck>>,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// The generated OpenAPI document.
    pub openapi: OpenApi,
    /// Documented routes, for 405 answers.
    pub routes: RouteTable,
    /// When the process started serving.
    pub started_at: Instant,
    /// The `Strict-Transport-Security` value, when HSTS is on (computed once).
    pub(crate) hsts_header: Option<actix_web::http::header::HeaderValue>,
}

/// The domain use cases a server runs (built by the composition root).
#[derive(Debug)]
pub struct Services {
    /// Accounts and tokens.
    pub accounts: Arc<Accounts>,
    /// Organizations and memberships.
    pub orgs: Arc<tenancy::Organizations>,
    /// Security events.
    pub audit: Arc<dyn kernel::AuditLog>,
    /// Organization API keys.
    pub api_keys: Arc<tenancy::ApiKeys>,
    /// Invitations.
    pub invitations: Arc<tenancy::Invitations>,
    /// Collections.
    pub collections: Arc<documents::Collections>,
    /// Documents and uploads.
    pub documents: Arc<documents::Documents>,
    /// Search and embeddings.
    pub retrieval: Arc<retrieval::Retrieval>,
    /// Credential-route attempts per client address per minute (`auth_rate_limit`).
    pub auth_attempts_per_ip: u32,
}

impl AppState {
    /// The state for a server with these adapters and use cases.
    #[must_use]
    pub fn new(
        http: HttpSettings,
        cache: Arc<dyn Cache>,
        services: Services,
        components: Vec<Arc<dyn HealthCheck>>,
    ) -> Self {
        let Services {
            accounts,
            orgs,
            audit,
            api_keys,
            invitations,
            collections,
            documents,
            retrieval,
            auth_attempts_per_ip,
        } = services;
        let hsts_header = http
            .hsts
            .then(|| format!("max-age={}; includeSubDomains", http.hsts_max_age_secs))
            .and_then(|v| actix_web::http::header::HeaderValue::from_str(&v).ok());
        let openapi = openapi::document();
        let routes = RouteTable::from_openapi(&openapi);
        Self {
            http,
            cache,
            accounts,
            orgs,
            audit,
            api_keys,
            invitations,
            collections,
            documents,
            retrieval,
            auth_attempts_per_ip,
            components,
            metrics: Arc::new(Metrics::new()),
            openapi,
            routes,
            started_at: Instant::now(),
            hsts_header,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("http", &self.http)
            .field("cache", &self.cache)
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}
