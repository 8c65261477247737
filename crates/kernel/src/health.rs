//! The health-check port: each backing service (database, cache, the model provider) reports
//! whether it answers, for `/health/ready`, `/health` and `/metrics`, and recognizes its own
//! outages in an error, so that a request failing because of one answers 503 rather than 500.

use async_trait::async_trait;

/// A component the server needs in order to serve.
#[async_trait]
pub trait HealthCheck: Send + Sync + std::fmt::Debug {
    /// The component's name as reported (`database`, `cache`, `provider`).
    fn component(&self) -> &'static str;

    /// Answers `Ok` when the component works right now.
    ///
    /// # Errors
    /// The reason it does not; it goes to the log, never to a client.
    async fn check(&self) -> anyhow::Result<()>;

    /// Whether `error` (or an error in its `source()` chain) says this component could not be
    /// reached ([`Outage::Down`]) or was too busy to serve in time ([`Outage::Busy`]), as
    /// opposed to a request it refused or a bug (`None`).
    fn explains(&self, error: &(dyn std::error::Error + 'static)) -> Option<Outage> {
        let _ = error;
        None
    }

    /// Whether every request needs this component (the database): while it is known to be
    /// down, requests are answered 503 at once instead of each waiting for it.
    fn every_request_needs(&self) -> bool {
        false
    }

    /// Connection-pool figures, for components that pool connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// How a component failed a request (see [`HealthCheck::explains`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// It could not be reached.
    Down,
    /// It answers, but had nothing free in time (every pooled connection busy).
    Busy,
}

/// A snapshot of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now (idle or in use).
    pub size: u32,
    /// Of those, the idle ones.
    pub idle: u32,
    /// The most the pool may open.
    pub max: u32,
}

/// `error` and its `source()` chain.
pub fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}
