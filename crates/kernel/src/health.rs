//! The health-check port: each backing service (database, cache, later the model provider)
//! reports whether it answers, for `/health/ready`, `/health` and `/metrics`.

use async_trait::async_trait;

/// A component the server needs in order to serve.
#[async_trait]
pub trait HealthCheck: Send + Sync + std::fmt::Debug {
    /// The component's name as reported (`database`, `cache`).
    fn component(&self) -> &'static str;

    /// Answers `Ok` when the component works right now.
    ///
    /// # Errors
    /// The reason it does not; it goes to the log, never to a client.
    async fn check(&self) -> anyhow::Result<()>;

    /// Connection-pool figures, for components that pool connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
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
