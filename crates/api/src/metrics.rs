//! Prometheus metrics (OpenMetrics text) for the HTTP edge and the connection pools.
//!
//! One registry per application instance (no global recorder), so tests that run several apps
//! in one process see only their own figures.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use kernel::health::HealthCheck;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    component: String,
    state: &'static str,
}

/// The application's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    in_flight: Gauge<i64, AtomicI64>,
    pool: Family<PoolLabels, Gauge<i64, AtomicI64>>,
    trail_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quire");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.25 ms … ~8 s.
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let pool = Family::<PoolLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by method, route template and status",
            latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "pool_connections",
            "Connection pools: open, idle and maximum connections by component",
            pool.clone(),
        );
        let trail_dropped = Counter::default();
        registry.register(
            "audit_trail_dropped",
            "Document-access events lost: the trail's queue was full, or the audit log kept failing",
            trail_dropped.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            in_flight,
            pool,
            trail_dropped,
        }
    }

    /// Counts one finished request. `route` is the route template (`/api/v1/jobs/{id}`), never
    /// the raw path, so label values stay few and carry no ids or tokens.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Marks a request as started; the guard marks it finished when dropped.
    #[must_use]
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(Arc::clone(self))
    }

    /// The OpenMetrics text, with pool figures read now.
    ///
    /// # Errors
    /// Only if formatting fails.
    pub fn render(
        &self,
        components: &[Arc<dyn HealthCheck>],
        trail_dropped: u64,
    ) -> Result<String, std::fmt::Error> {
        let seen = self.trail_dropped.get();
        if trail_dropped > seen {
            self.trail_dropped.inc_by(trail_dropped - seen);
        }
        for c in components {
            if let Some(stats) = c.pool_stats() {
                for (state, value) in [
                    ("open", stats.size),
                    ("idle", stats.idle),
                    ("max", stats.max),
                ] {
                    self.pool
                        .get_or_create(&PoolLabels {
                            component: c.component().to_owned(),
                            state,
                        })
                        .set(i64::from(value));
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}
