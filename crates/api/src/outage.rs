//! Outages of a backing service, as requests meet them.
//!
//! A request that fails because the database or the cache could not be reached answers 503
//! `service_unavailable` naming the component, with `Retry-After`, never 500 `internal`: each
//! [`HealthCheck`] recognizes its own outages in an error ([`HealthCheck::explains`]), and the
//! `outages` middleware (`middleware.rs`) runs every request inside [`Outages::scope`], so
//! that `ApiError::unexpected` can ask.
//!
//! A component every request needs (the database) is also a gate: once a request has met its
//! outage, the API answers 503 at once ([`Outages::refusing`]) instead of letting each request
//! wait the pool's acquire timeout, until a probe (its health check, every
//! [`PROBE_EVERY`]) passes again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel::health::{HealthCheck, Outage};

/// How often a component known to be down is checked again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Seconds a client is asked to wait (`Retry-After`) after an outage answer.
pub const RETRY_AFTER_SECS: u64 = 5;

tokio::task_local! {
    static CURRENT: Arc<Outages>;
}

/// The components of one server and which of the gating ones are known to be down.
#[derive(Debug)]
pub struct Outages {
    components: Vec<Arc<dyn HealthCheck>>,
    /// Components every request needs that a request found down, until a probe passes.
    down: Mutex<Vec<&'static str>>,
}

impl Outages {
    /// Watches `components`.
    #[must_use]
    pub fn new(components: Vec<Arc<dyn HealthCheck>>) -> Self {
        Self {
            components,
            down: Mutex::new(Vec::new()),
        }
    }

    /// The components, for the health routes and metrics.
    #[must_use]
    pub fn components(&self) -> &[Arc<dyn HealthCheck>] {
        &self.components
    }

    /// Runs `fut` (a request) with these outages as the current ones.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// A component every request needs that is known to be down now.
    #[must_use]
    pub fn refusing(&self) -> Option<&'static str> {
        self.lock().first().copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<&'static str>> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The component whose outage `error` shows, and how, if any; a gating one that is down
    /// starts being probed (a busy one is not gated: the next request may find it free).
    fn explain(
        self: &Arc<Self>,
        error: &(dyn std::error::Error + 'static),
    ) -> Option<(&'static str, Outage)> {
        let (component, outage) = self
            .components
            .iter()
            .find_map(|c| Some((c, c.explains(error)?)))?;
        let name = component.component();
        if outage == Outage::Down && component.every_request_needs() {
            let newly = {
                let mut down = self.lock();
                let newly = !down.contains(&name);
                if newly {
                    down.push(name);
                }
                newly
            };
            if newly && let Ok(rt) = tokio::runtime::Handle::try_current() {
                tracing::warn!(
                    component = name,
                    "a component every request needs is down: requests are refused until it answers"
                );
                rt.spawn(probe(self.clone(), component.clone()));
            }
        }
        Some((name, outage))
    }
}

/// Checks `component` every [`PROBE_EVERY`] until it answers, then lets requests in again.
async fn probe(outages: Arc<Outages>, component: Arc<dyn HealthCheck>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if matches!(
            tokio::time::timeout(PROBE_TIMEOUT, component.check()).await,
            Ok(Ok(()))
        ) {
            let name = component.component();
            outages.lock().retain(|c| *c != name);
            tracing::info!(component = name, "the component answers again");
            return;
        }
    }
}

/// The component whose outage `error` shows, and how, asked of the request's [`Outages`]
/// (none outside a request).
pub(crate) fn explain(error: &(dyn std::error::Error + 'static)) -> Option<(&'static str, Outage)> {
    CURRENT.try_with(|o| o.explain(error)).ok().flatten()
}
