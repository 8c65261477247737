//! `quire worker`: a process that runs ingestion, webhook-delivery and workflow workers and the
//! retention sweep, and serves no API. With `telemetry.worker_metrics_addr` set it serves
//! `GET /metrics` on that address, from a registry of its own in the same shape as a server's
//! (docs/configuration.md): its ingestions, the tokens its embedding and workflow calls billed
//! (per tenant, observed at the meter and the ingestion's events like a server's), its
//! database and cache pools, and the access-trail events it lost. Nothing else is served
//! there; the address is meant for the scraper's network only.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use kernel::health::HealthCheck;
use kernel::trail::{BufferedTrail, TrailWriter};
use settings::Settings;
use store_sql::SqlStore;

use crate::tenant_metrics::{ObservedIngestion, ObservedMeter};
use crate::{DeliveryPool, Wake, WorkerPool, WorkflowPool};

/// A `quire worker` process, built and not yet running.
pub struct WorkerProcess {
    settings: Settings,
    store: SqlStore,
    cache: Arc<dyn kernel::cache::Cache>,
    work: crate::Work,
    wake: Arc<Wake>,
    webhooks: Arc<webhooks::Webhooks>,
    webhook_wake: Arc<Wake>,
    workflows: Arc<workflows::Workflows>,
    workflow_wake: Arc<Wake>,
    retention: crate::retention::Retention,
    trail_writer: TrailWriter,
    metrics: Option<(u16, Server)>,
    workers: usize,
}

impl std::fmt::Debug for WorkerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProcess")
            .field("store", &self.store)
            .field("workers", &self.workers)
            .field("metrics_port", &self.metrics_port())
            .finish_non_exhaustive()
    }
}

/// What the metrics listener renders.
struct Scrape {
    metrics: Arc<api::Metrics>,
    components: Vec<Arc<dyn HealthCheck>>,
    trail: Arc<BufferedTrail>,
}

async fn scrape(state: web::Data<Scrape>) -> HttpResponse {
    match state
        .metrics
        .render(&state.components, state.trail.dropped())
    {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering the worker's metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

impl WorkerProcess {
    /// Connects the adapters, migrates if configured, and binds the metrics listener when
    /// `telemetry.worker_metrics_addr` is set; [`WorkerProcess::run_until`] starts `workers`
    /// ingestion workers (default `documents.workers`) with the delivery and workflow workers.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated, or the metrics address cannot be bound.
    pub async fn build(settings: Settings, workers: Option<usize>) -> anyhow::Result<Self> {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let store = SqlStore::connect(&settings, clock.clone()).await?;
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let (cache, cache_health) = crate::cache_from_settings(&settings)?;
        let (webhooks, webhook_wake) =
            crate::webhooks_from_settings(&settings, &store, clock.clone())?;
        let billing = crate::billing_from_settings(
            &settings,
            &store,
            cache.clone(),
            clock.clone(),
            webhooks.clone(),
        );
        // The same per-tenant series as a server's, ranked by this process's work (it serves
        // no tenant's requests to rank by).
        let metrics = Arc::new(api::Metrics::ranked_by_work(
            settings.http.metrics_top_tenants,
        ));
        let meter: Arc<dyn kernel::Meter> =
            Arc::new(ObservedMeter::new(billing.clone(), metrics.clone()));
        let (ports, retrieval, work) = crate::pipelines(
            &settings,
            &store,
            clock.clone(),
            meter.clone(),
            Arc::new(ObservedIngestion::new(webhooks.clone(), metrics.clone())),
        )
        .await?;
        let wake = Arc::new(Wake::default());
        let workflow_wake = Arc::new(Wake::default());
        // Workflow runs and schedules are taken here too: a worker-only process acts through
        // the same use cases as a server (no signing key needed, see `quire::domain`).
        let (trail, trail_writer) = BufferedTrail::start(
            Arc::new(store.clone()),
            kernel::trail::CAPACITY,
            Duration::from_secs(settings.orgs.trail_read_window_secs),
        );
        let domain = crate::domain(
            &settings,
            &store,
            cache.clone(),
            clock,
            &ports,
            &retrieval,
            billing,
            meter,
            wake.clone(),
            webhooks.clone(),
            workflow_wake.clone(),
            trail.clone(),
        )?;
        let metrics = match settings.telemetry.worker_metrics_addr {
            Some(addr) => {
                let state = web::Data::new(Scrape {
                    metrics,
                    components: crate::components(&settings, &store, cache_health),
                    trail,
                });
                let listener =
                    TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
                let port = listener
                    .local_addr()
                    .context("reading the metrics address")?
                    .port();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/metrics", web::get().to(scrape))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)
                .context("serving the worker's metrics")?
                .run();
                tracing::info!(port, "worker metrics listening");
                Some((port, server))
            }
            None => None,
        };
        let count = workers.unwrap_or(settings.documents.workers).max(1);
        let retention = crate::retention::Retention::over(&store, domain.documents.clone());
        Ok(Self {
            settings,
            store,
            cache,
            work,
            wake,
            webhooks,
            webhook_wake,
            workflows: domain.workflows,
            workflow_wake,
            retention,
            trail_writer,
            metrics,
            workers: count,
        })
    }

    /// The port of the metrics listener, when there is one.
    #[must_use]
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    /// Runs the workers and sweepers and serves the metrics until `stop` completes, then lets the jobs in
    /// hand finish, writes the queued access events and closes the pool.
    ///
    /// # Errors
    /// When closing the pool fails.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(
            workers = self.workers,
            database = self.store.backend_name(),
            "worker running"
        );
        let settings = &self.settings;
        let deliveries = DeliveryPool::start(
            self.webhooks,
            self.webhook_wake,
            settings.webhooks.workers,
            Duration::from_millis(settings.webhooks.poll_interval_ms),
        );
        let pool = WorkerPool::start(
            self.work,
            self.wake,
            self.workers,
            Duration::from_millis(settings.documents.poll_interval_ms),
        );
        let runs = WorkflowPool::start(
            self.workflows,
            self.workflow_wake,
            settings.workflows.workers,
            Duration::from_millis(settings.workflows.poll_interval_ms),
        );
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let sweeper = crate::worker::sweep_abandoned_uploads(self.store.clone());
        let retention = crate::worker::sweep_retention(
            self.retention,
            self.cache,
            Duration::from_secs(self.settings.orgs.retention_sweep_secs),
        );
        stop.await;
        tracing::info!("stopping: finishing the jobs in hand");
        sweeper.abort();
        retention.abort();
        let grace = Duration::from_secs(self.settings.http.shutdown_timeout_secs);
        pool.shutdown(grace).await;
        deliveries.shutdown(grace).await;
        runs.shutdown(grace).await;
        self.trail_writer.stop().await;
        if let Some((handle, served)) = metrics {
            handle.stop(true).await;
            if let Ok(Err(e)) = served.await {
                tracing::warn!(error = %e, "the worker's metrics listener failed");
            }
        }
        self.store.close().await
    }
}
