//! The one piece of shared state every handler receives.

use std::sync::Arc;
use std::time::Instant;

use identity::Accounts;
use kernel::cache::Cache;
use kernel::health::HealthCheck;
use settings::HttpSettings;

use crate::metrics::Metrics;
use crate::outage::Outages;
use crate::sockets::OpenSockets;

/// Shared by all workers of one server process (behind `web::Data`): the domain use cases
/// ([`Services`], held once and reached through `Deref`: `state.chat`) and what the edge
/// itself keeps.
pub struct AppState {
    /// The domain use cases and their settings.
    services: Services,
    /// HTTP limits, CORS and HSTS.
    pub http: HttpSettings,
    /// The cache/coordination port.
    pub cache: Arc<dyn Cache>,
    /// The open WebSockets of this process, per client address.
    pub(crate) ws_open: Arc<OpenSockets>,
    /// The components `/health/ready` checks (database, cache, provider) and which of them
    /// requests found down.
    pub outages: Arc<Outages>,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// When the process started serving.
    pub started_at: Instant,
    /// The `Strict-Transport-Security` value, when HSTS is on (computed once).
    pub(crate) hsts_header: Option<actix_web::http::header::HeaderValue>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// WebSocket limits (from `chat.ws_*`).
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Close after this long without a client frame.
    pub idle_timeout: std::time::Duration,
    /// Ping interval.
    pub ping_interval: std::time::Duration,
    /// Largest frame or message from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Origins allowed (empty: none but requests without `Origin`).
    pub allowed_origins: Vec<String>,
    /// How often an open socket's access is checked again.
    pub reauth_interval: std::time::Duration,
    /// Open sockets per client address in this process.
    pub max_per_address: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            idle_timeout: std::time::Duration::from_secs(120),
            ping_interval: std::time::Duration::from_secs(20),
            max_frame_bytes: 64 * 1024,
            allowed_origins: Vec::new(),
            reauth_interval: std::time::Duration::from_secs(30),
            max_per_address: 64,
        }
    }
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
    /// Golden-set evaluations of search.
    pub evaluations: Arc<retrieval::evaluation::Evaluations>,
    /// Chat, completions and AI tasks.
    pub chat: Arc<chat::Chat>,
    /// Usage, plans, quotas and rate limits.
    pub billing: Arc<billing::Billing>,
    /// What a call would cost (`/usage/estimate`).
    pub estimates: Arc<billing::Estimates>,
    /// Outbound webhooks.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// Workflow runs and schedules.
    pub workflows: Arc<workflows::Workflows>,
    /// The document-access trail (reads, searches; chat records its answers' citations).
    pub trail: Arc<kernel::trail::BufferedTrail>,
    /// Seconds a non-streamed answer may take.
    pub chat_answer_timeout_secs: u64,
    /// Tokens an answer may take unless a request says.
    pub chat_max_answer_tokens: u32,
    /// WebSocket limits and origins.
    pub ws: WsSettings,
}

impl AppState {
    /// Hands a document-access event of `ctx`'s principal to the trail (never waits).
    pub fn trail_access(
        &self,
        ctx: &kernel::TenantContext,
        action: &'static str,
        documents: impl IntoIterator<Item = uuid::Uuid>,
        text: Option<&str>,
    ) {
        use kernel::AccessTrail as _;
        self.services.trail.record(kernel::AuditEvent::access(
            time::OffsetDateTime::now_utc(),
            ctx,
            action,
            documents,
            text,
        ));
    }

    /// The state for a server with these adapters and use cases, counting into `metrics`
    /// (made beforehand, so that the meter and the ingestion's events can count into it too).
    #[must_use]
    pub fn new(
        http: HttpSettings,
        cache: Arc<dyn Cache>,
        services: Services,
        components: Vec<Arc<dyn HealthCheck>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let hsts_header = http
            .hsts
            .then(|| format!("max-age={}; includeSubDomains", http.hsts_max_age_secs))
            .and_then(|v| actix_web::http::header::HeaderValue::from_str(&v).ok());
        Self {
            services,
            http,
            cache,
            ws_open: Arc::default(),
            outages: Arc::new(Outages::new(components)),
            metrics,
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
            .field("outages", &self.outages)
            .finish_non_exhaustive()
    }
}
