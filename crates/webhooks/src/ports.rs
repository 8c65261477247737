//! What the webhooks domain needs from outside: storage (endpoints, the delivery queue, the
//! attempt log), the HTTP sender with its destination guard, and the signal that wakes a
//! local delivery worker.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{EventKind, InvalidInput, Page, PageRequest, TenantId};
use time::OffsetDateTime;

use crate::model::{Attempt, AttemptId, Claim, Delivery, DeliveryId, Endpoint, Next, WebhookId};

/// Failures of [`WebhookStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores endpoints, the delivery queue and the attempt log.
///
/// Contract (checked on every adapter by `testkit::contract::webhooks`): every method but
/// `claim` is scoped to `tenant`, and another tenant's endpoint, delivery or attempt is "not
/// found"; deleting an endpoint deletes its deliveries and attempts; deleting its organization
/// deletes the endpoint. `claim` leases one due delivery (`queued` with `run_at <= now`, or
/// `running` with an ended lease) at most once at a time across every process; `settle` changes
/// nothing unless the claim's lease still holds.
#[async_trait]
pub trait WebhookStore: Send + Sync + fmt::Debug {
    /// Stores a new endpoint.
    async fn create(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// The tenant's endpoints, oldest first.
    async fn list(&self, tenant: TenantId) -> Result<Vec<Endpoint>, StoreError>;

    /// One endpoint.
    async fn find(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Endpoint>, StoreError>;

    /// Replaces the endpoint's url, events, enabled flag and `updated_at`; whether it exists.
    async fn update(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;

    /// Deletes an endpoint with its deliveries and attempts; whether it existed.
    async fn delete(&self, tenant: TenantId, id: WebhookId) -> Result<bool, StoreError>;

    /// The tenant's enabled endpoints subscribed to `kind`.
    async fn subscribers(
        &self,
        tenant: TenantId,
        kind: EventKind,
    ) -> Result<Vec<Endpoint>, StoreError>;

    /// Queues a delivery.
    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// One delivery.
    async fn find_delivery(
        &self,
        tenant: TenantId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Leases the oldest due delivery until `now + lease` (status `running`, one more attempt).
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError>;

    /// Ends the claim: logs `attempt` (if one was made) and applies `next`, atomically; false
    /// (and nothing written) when the lease no longer holds.
    async fn settle(
        &self,
        claim: &Claim,
        attempt: Option<&Attempt>,
        next: Next,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// An endpoint's attempts, newest first.
    async fn attempts(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError>;

    /// One attempt.
    async fn find_attempt(
        &self,
        tenant: TenantId,
        id: AttemptId,
    ) -> Result<Option<Attempt>, StoreError>;
}

/// One signed request to make.
#[derive(Clone)]
pub struct Outgoing {
    /// The endpoint's URL.
    pub url: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp` (Unix seconds).
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: String,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the body (tenant data) nor the signature.
        f.debug_struct("Outgoing")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer (connection, TLS, timeout): a short reason.
    Failed(String),
    /// The destination is not allowed (it resolved to a private address, say): a short reason.
    Refused(String),
}

/// A destination the guard refuses: a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Sends deliveries, and guards destinations.
///
/// Contract: `check` and `send` refuse a URL whose host is, or resolves to, an address the
/// operator has not allowed (private, loopback, link-local, unique-local, multicast,
/// unspecified, …); `send` connects only to an address it checked (no second lookup), follows
/// no redirect, keeps no response body, and ends within its timeout.
#[async_trait]
pub trait Sender: Send + Sync + fmt::Debug {
    /// Whether deliveries to `url` would be allowed now (at registration).
    async fn check(&self, url: &str) -> Result<(), Refused>;

    /// Makes one attempt.
    async fn send(&self, request: Outgoing) -> Sent;
}

/// Wakes a local delivery worker when a delivery is queued.
pub trait DeliverySignal: Send + Sync + fmt::Debug {
    /// A delivery was queued.
    fn queued(&self);
}

/// Wakes nobody (workers poll).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSignal;

impl DeliverySignal for NoSignal {
    fn queued(&self) {}
}
