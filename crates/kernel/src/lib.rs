//! The shared kernel of Quire: the few types every domain crate speaks.
//!
//! Typed UUIDv7 ids ([`id`]), the tenant context and roles ([`tenant`]), the clock port
//! ([`clock`]), keyset pagination with opaque cursors ([`page`]), field-level validation errors
//! ([`error`]), the cache/coordination port ([`cache`]), the
//! process-local memo of recent reads ([`memo`]), the metering port ([`metering`]), the
//! health-check port ([`health`]) and the cleaning of names clients set ([`text`]).
//!
//! Architecture invariant: this crate, like every domain crate, does no I/O of its own and
//! depends on no web framework, ORM, HTTP client or cache driver (checked by
//! `apps/quire/tests/architecture.rs`).

pub mod audit;
pub mod cache;
pub mod clock;
pub mod erasure;
pub mod error;
pub mod events;
pub mod health;
pub mod id;
pub mod mail;
pub mod memo;
pub mod metering;
pub mod page;
pub mod retry;
pub mod tenant;
pub mod text;
pub mod trail;

pub use audit::{AccessTrail, AuditEvent, AuditLog, ClientInfo, NoTrail};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{FieldError, InvalidInput};
pub use events::{Event, EventKind, Events, NoEvents};
pub use id::{ApiKeyId, TenantId, UserId};
pub use metering::{Meter, MeterError, MeterScope, Reservation, StreamSlot, Tokens, UsageKind};
pub use page::{Cursor, Page, PageRequest};
pub use tenant::{Principal, Role, TenantContext};
