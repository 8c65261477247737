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
struct TenantRequestLabels {
    /// An organization id, or `other`.
    org: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    org: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantTokenLabels {
    /// An organization id, or `other`.
    org: String,
    /// `chat` or `embedding`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantDocumentLabels {
    /// An organization id, or `other`.
    org: String,
    /// `ready` or `failed`.
    outcome: &'static str,
}

/// Moves a counter's count from `from`'s series to `to`'s and removes `from`'s.
fn fold<L>(family: &Family<L, Counter>, from: &L, to: &L)
where
    L: Clone + std::hash::Hash + Eq,
{
    let n = family.get_or_create(from).get();
    family.remove(from);
    if n > 0 {
        family.get_or_create(to).inc_by(n);
    }
}

/// The label of every organization outside the top N.
pub const OTHER: &str = "other";

/// Which organizations have their own label: the top `n` by requests counted here, ranked by
/// a space-saving counter over at most `8 n` (at least 64) organizations, so its memory is
/// bounded whatever the number of tenants. A request is labelled with its organization when
/// it is in the top `n` at that moment, else `other`. When an organization enters a full top
/// `n`, the least active member leaves it: that member's request counts are added to
/// `other`'s and its series are removed (its latency histogram is removed, not folded), so
/// the sum over all series never counts a request twice or loses one, and at most `n + 1`
/// organization label values exist at any time.
#[derive(Debug)]
struct Ranking {
    n: usize,
    capacity: usize,
    counts: std::collections::HashMap<kernel::TenantId, u64>,
    top: Vec<kernel::TenantId>,
}

impl Ranking {
    fn new(n: usize) -> Self {
        Self {
            n,
            capacity: (8 * n).max(64),
            counts: std::collections::HashMap::new(),
            top: Vec::new(),
        }
    }

    /// Counts one request of `tenant`; returns its label and the organization that left the
    /// top `n` to make room, if one did.
    fn count(&mut self, tenant: kernel::TenantId) -> (String, Option<kernel::TenantId>) {
        if self.n == 0 {
            return (OTHER.to_owned(), None);
        }
        let count = if let Some(c) = self.counts.get_mut(&tenant) {
            *c += 1;
            *c
        } else {
            // Space-saving: a new organization replaces the least counted one (not in the top)
            // and inherits its count, an upper bound of its own.
            let mut inherited = 0;
            if self.counts.len() >= self.capacity
                && let Some((&victim, &c)) = self
                    .counts
                    .iter()
                    .filter(|(t, _)| !self.top.contains(t))
                    .min_by_key(|(_, c)| **c)
            {
                self.counts.remove(&victim);
                inherited = c;
            }
            self.counts.insert(tenant, inherited + 1);
            inherited + 1
        };
        if self.top.contains(&tenant) {
            return (tenant.to_string(), None);
        }
        if self.top.len() < self.n {
            self.top.push(tenant);
            return (tenant.to_string(), None);
        }
        let weakest = self
            .top
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| self.counts.get(t).copied().unwrap_or(0));
        match weakest {
            Some((i, &w)) if self.counts.get(&w).copied().unwrap_or(0) < count => {
                self.top[i] = tenant;
                (tenant.to_string(), Some(w))
            }
            _ => (OTHER.to_owned(), None),
        }
    }
}

impl Ranking {
    /// `tenant`'s label now, without counting anything: its id in the top `n`, else `other`.
    fn label(&self, tenant: kernel::TenantId) -> String {
        if self.top.contains(&tenant) {
            tenant.to_string()
        } else {
            OTHER.to_owned()
        }
    }
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
    tenant_requests: Family<TenantRequestLabels, Counter>,
    tenant_latency: Family<TenantLabels, Histogram>,
    tenant_tokens: Family<TenantTokenLabels, Counter>,
    tenant_documents: Family<TenantDocumentLabels, Counter>,
    ranking: std::sync::Mutex<Ranking>,
    /// Tokens and documents rank their organization too (a `quire worker` process, which
    /// serves no requests to rank by).
    ranked_by_work: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(10)
    }
}

impl Metrics {
    /// A fresh registry with every metric registered; `top_tenants` organizations get their
    /// own label on the per-tenant series.
    #[must_use]
    pub fn new(top_tenants: usize) -> Self {
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
        let tenant_requests = Family::<TenantRequestLabels, Counter>::default();
        let tenant_latency = Family::<TenantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "tenant_requests",
            "Requests of an organization's members and keys, by organization id (the most active, else `other`) and status class",
            tenant_requests.clone(),
        );
        registry.register(
            "tenant_request_duration_seconds",
            "Time to the response head of an organization's requests, by organization id (the most active, else `other`)",
            tenant_latency.clone(),
        );
        let tenant_tokens = Family::<TenantTokenLabels, Counter>::default();
        registry.register(
            "tenant_tokens",
            "Model tokens an organization was billed (prompt and completion, as settled in the ledger), by organization id (the most active by requests, else `other`) and kind",
            tenant_tokens.clone(),
        );
        let tenant_documents = Family::<TenantDocumentLabels, Counter>::default();
        registry.register(
            "tenant_documents",
            "Documents whose ingestion ended on this server, by organization id (the most active by requests, else `other`) and outcome (`ready`, or `failed` for good)",
            tenant_documents.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            in_flight,
            pool,
            trail_dropped,
            tenant_requests,
            tenant_latency,
            tenant_tokens,
            tenant_documents,
            ranking: std::sync::Mutex::new(Ranking::new(top_tenants)),
            ranked_by_work: false,
        }
    }

    /// [`Metrics::new`] for a process that serves no requests (`quire worker`): each
    /// settlement and each ingestion that ended counts as one unit of its organization's
    /// activity in the ranking, so the busiest organizations of its work get their own label.
    #[must_use]
    pub fn ranked_by_work(top_tenants: usize) -> Self {
        Self {
            ranked_by_work: true,
            ..Self::new(top_tenants)
        }
    }

    /// `tenant`'s label now: counted as one unit of activity when this registry ranks by work
    /// (folding the series of an organization that leaves the top N), else as it stands.
    fn label_of_work(&self, ranking: &mut Ranking, tenant: kernel::TenantId) -> String {
        if !self.ranked_by_work {
            return ranking.label(tenant);
        }
        let (org, left) = ranking.count(tenant);
        if let Some(left) = left {
            self.fold_into_other(&left.to_string());
        }
        org
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

    /// Counts one finished request of `tenant` (a member's or key's, after the tenant
    /// extractor admitted it) on the per-tenant series.
    pub fn observe_tenant(&self, tenant: kernel::TenantId, status: u16, seconds: f64) {
        let class = match status {
            500.. => "5xx",
            400..=499 => "4xx",
            300..=399 => "3xx",
            _ => "2xx",
        };
        let mut ranking = self
            .ranking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (org, left) = ranking.count(tenant);
        if let Some(left) = left {
            // Under the ranking's lock, so that no token or document is counted on the
            // series of an organization that has just left.
            self.fold_into_other(&left.to_string());
        }
        drop(ranking);
        self.tenant_requests
            .get_or_create(&TenantRequestLabels {
                org: org.clone(),
                class,
            })
            .inc();
        self.tenant_latency
            .get_or_create(&TenantLabels { org })
            .observe(seconds);
    }

    /// Every per-tenant counter of `gone` (which left the top N) added to `other`'s, and its
    /// series removed; its latency histogram is removed, not folded.
    fn fold_into_other(&self, gone: &str) {
        let org = |o: &str| o.to_owned();
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            fold(
                &self.tenant_requests,
                &TenantRequestLabels {
                    org: org(gone),
                    class,
                },
                &TenantRequestLabels {
                    org: org(OTHER),
                    class,
                },
            );
        }
        for kind in [kernel::UsageKind::Chat, kernel::UsageKind::Embedding] {
            let kind = kind.as_str();
            fold(
                &self.tenant_tokens,
                &TenantTokenLabels {
                    org: org(gone),
                    kind,
                },
                &TenantTokenLabels {
                    org: org(OTHER),
                    kind,
                },
            );
        }
        for outcome in ["ready", "failed"] {
            fold(
                &self.tenant_documents,
                &TenantDocumentLabels {
                    org: org(gone),
                    outcome,
                },
                &TenantDocumentLabels {
                    org: org(OTHER),
                    outcome,
                },
            );
        }
        self.tenant_latency.remove(&TenantLabels { org: org(gone) });
    }

    /// Counts `tokens` model tokens of `kind` billed to `tenant`, on its series if it is among
    /// the most active organizations (by requests), else on `other`'s.
    pub fn observe_tenant_tokens(
        &self,
        tenant: kernel::TenantId,
        kind: kernel::UsageKind,
        tokens: u64,
    ) {
        if tokens == 0 {
            return;
        }
        let mut ranking = self
            .ranking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let org = self.label_of_work(&mut ranking, tenant);
        self.tenant_tokens
            .get_or_create(&TenantTokenLabels {
                org,
                kind: kind.as_str(),
            })
            .inc_by(tokens);
    }

    /// Counts one document of `tenant` whose ingestion ended: `ready`, or failed for good.
    pub fn observe_tenant_document(&self, tenant: kernel::TenantId, ready: bool) {
        let mut ranking = self
            .ranking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let org = self.label_of_work(&mut ranking, tenant);
        self.tenant_documents
            .get_or_create(&TenantDocumentLabels {
                org,
                outcome: if ready { "ready" } else { "failed" },
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_organizations_plus_other_and_nothing_counted_twice() {
        let m = Metrics::new(2);
        let orgs: Vec<kernel::TenantId> = (0..5).map(|_| kernel::TenantId::new()).collect();
        // Activity shifts: the first two lead, then the last three overtake them.
        for (i, t) in orgs.iter().enumerate() {
            for _ in 0..(10 * (i + 1)) {
                m.observe_tenant(*t, 200, 0.001);
            }
        }
        let text = m.render(&[], 0).expect("render");
        let mut labels: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("quire_tenant_requests_total{"))
            .filter_map(|l| l.split("org=\"").nth(1)?.split('"').next())
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert!(labels.len() <= 3, "{labels:?}");
        assert!(labels.contains(&OTHER), "{labels:?}");
        let total: u64 = text
            .lines()
            .filter(|l| l.starts_with("quire_tenant_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 10 + 20 + 30 + 40 + 50, "{text}");
        // The two most active have their own label.
        for t in &orgs[3..] {
            assert!(labels.contains(&t.to_string().as_str()), "{labels:?}");
        }
    }

    #[test]
    fn tokens_and_documents_follow_the_ranking_and_are_folded_when_it_leaves() {
        let m = Metrics::new(1);
        let (first, second) = (kernel::TenantId::new(), kernel::TenantId::new());
        let series = |text: &str, org: &str, label: &str| -> u64 {
            let head = format!("{org}\",{label}}} ");
            text.lines()
                .filter_map(|l| l.split("{org=\"").nth(1))
                .find_map(|l| l.strip_prefix(&head))
                .map_or(0, |v| v.trim().parse().expect("a count"))
        };
        // Before any request, an organization has no label of its own.
        m.observe_tenant_tokens(first, kernel::UsageKind::Chat, 5);
        m.observe_tenant(first, 200, 0.001);
        m.observe_tenant_tokens(first, kernel::UsageKind::Chat, 7);
        m.observe_tenant_document(first, true);
        let text = m.render(&[], 0).expect("render");
        let (a, other) = (first.to_string(), OTHER.to_owned());
        assert_eq!(series(&text, &a, "kind=\"chat\""), 7, "{text}");
        assert_eq!(series(&text, &other, "kind=\"chat\""), 5, "{text}");
        assert_eq!(series(&text, &a, "outcome=\"ready\""), 1, "{text}");
        // `second` overtakes `first`, which leaves the top 1: its counts move to `other`.
        for _ in 0..3 {
            m.observe_tenant(second, 200, 0.001);
        }
        m.observe_tenant_tokens(second, kernel::UsageKind::Embedding, 3);
        let text = m.render(&[], 0).expect("render");
        assert!(!text.contains(&a), "{text}");
        assert_eq!(series(&text, &other, "kind=\"chat\""), 12, "{text}");
        assert_eq!(series(&text, &other, "outcome=\"ready\""), 1, "{text}");
        let b = second.to_string();
        assert_eq!(series(&text, &b, "kind=\"embedding\""), 3, "{text}");
    }

    #[test]
    fn zero_means_every_request_is_other() {
        let m = Metrics::new(0);
        m.observe_tenant(kernel::TenantId::new(), 500, 0.1);
        let text = m.render(&[], 0).expect("render");
        assert!(
            text.contains("quire_tenant_requests_total{org=\"other\",class=\"5xx\"} 1"),
            "{text}"
        );
    }
}
