//! Signed webhooks: an organization's endpoints, the events they subscribe to, and the
//! deliveries of those events, signed as the Standard Webhooks specification says
//! ([`signature`]), retried with backoff from a durable queue and logged per attempt.
//! See `docs/webhooks.md`.
//!
//! - [`model`]: `Endpoint`, `Secret`, `Delivery` (a row of the queue), `Attempt` (a row of
//!   the log), the URL's shape and the event names.
//! - [`ports`]: `WebhookStore`, `Sender` (HTTP, with the destination guard), `DeliverySignal`.
//! - [`service`]: `Webhooks`, the use cases, the fan-out of `kernel::Event`s (it implements
//!   `kernel::Events`) and `deliver_next`, what a delivery worker runs.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;
pub mod signature;

pub use error::WebhookError;
pub use model::{
    Attempt, AttemptId, Claim, Delivery, DeliveryId, DeliveryStatus, Endpoint, EndpointChange,
    NewEndpoint, Next, Secret, WebhookId,
};
pub use ports::{
    DeliverySignal, NoSignal, Outgoing, Refused, Sender, Sent, StoreError, WebhookStore,
};
pub use service::{DeliveryOutcome, DeliveryPolicy, WebhookPorts, Webhooks};
