//! The metering port: every call that costs tokens reserves its maximum before the provider is
//! called and settles to the actual count afterwards, exactly once.
//!
//! Chat and retrieval call it; billing implements it (quota counters in the cache port, the
//! ledger in SQL). A [`Reservation`] is a handle: [`Meter::settle`] or [`Meter::release`]
//! consume it, so one reservation can never be settled twice.
//!
//! The request id of the HTTP request a call serves travels in a task-local ([`request_id`]),
//! set by the HTTP layer's request-id middleware, so the ledger can name it without every use
//! case passing it along.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::TenantId;
use crate::tenant::Principal;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `fut` with `id` as the current request id (see [`request_id`]).
pub async fn with_request_id<F: Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The id of the HTTP request the current task serves, when there is one (a background job
/// has none).
#[must_use]
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// What a billable call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageKind {
    /// A chat completion (answers, completions, AI tasks): prompt and completion tokens.
    Chat,
    /// An embedding call (search queries, `/embeddings`, ingestion): prompt tokens only.
    Embedding,
    /// An organization's export archive: bytes, no tokens (docs/billing.md, "Exports").
    Export,
}

impl UsageKind {
    /// The wire name (`chat`, `embedding`, `export`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            UsageKind::Chat => "chat",
            UsageKind::Embedding => "embedding",
            UsageKind::Export => "export",
        }
    }

    /// The kind with this wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(UsageKind::Chat),
            "embedding" => Some(UsageKind::Embedding),
            "export" => Some(UsageKind::Export),
            _ => None,
        }
    }
}

impl fmt::Display for UsageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who and what a call is billed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterScope {
    /// The organization that pays.
    pub tenant: TenantId,
    /// The user or API key that asked; `None` for background work (ingestion, re-embedding).
    pub actor: Option<Principal>,
    /// The model called.
    pub model: String,
    /// Chat or embedding.
    pub kind: UsageKind,
    /// What the call served, for the ledger: a message id, `document:<id>`, `reembed:<id>`…
    pub reference: String,
}

/// Tokens a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Tokens sent (for embeddings, all of them).
    pub prompt: u64,
    /// Tokens produced.
    pub completion: u64,
}

impl Tokens {
    /// Both together.
    #[must_use]
    pub const fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// Tokens set aside for one call. Consumed by [`Meter::settle`] or [`Meter::release`]; a
/// reservation that is dropped instead stays counted until the quota counter is next
/// rebuilt from the ledger (billing documents when).
#[derive(Debug)]
#[must_use = "a reservation must be settled or released"]
pub struct Reservation {
    /// The id the ledger entry will carry (unique: settling twice cannot happen, and a retried
    /// write is recognised).
    pub id: uuid::Uuid,
    /// Who and what is billed.
    pub scope: MeterScope,
    /// Tokens set aside.
    pub reserved: u64,
    /// The HTTP request the call serves, if any (captured when reserving).
    pub request_id: Option<String>,
    /// The quota period the tokens were set aside in (its counter is adjusted on settlement).
    pub period: String,
    /// When the reservation was made.
    pub at: OffsetDateTime,
}

/// A slot for one open stream, held while the stream runs. Give it back with
/// [`Meter::close_stream`]; a dropped slot stops being renewed and expires with its lease.
#[derive(Debug)]
#[must_use = "a stream slot must be given back"]
pub struct StreamSlot {
    /// The organization whose streams are counted.
    pub tenant: TenantId,
    /// The slot's lease in the organization's stream counter.
    pub lease: uuid::Uuid,
    /// Renews the lease while the slot is held (none for meters without leases).
    pub keeper: Option<SlotKeeper>,
}

impl StreamSlot {
    /// A slot of `tenant` with a new lease id and nothing renewing it.
    pub fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            lease: uuid::Uuid::now_v7(),
            keeper: None,
        }
    }
}

/// The task that renews a stream slot's lease; dropping it stops the task.
#[derive(Debug)]
pub struct SlotKeeper(tokio::task::AbortHandle);

impl SlotKeeper {
    /// Stops `task` when dropped.
    #[must_use]
    pub fn new(task: tokio::task::AbortHandle) -> Self {
        Self(task)
    }
}

impl Drop for SlotKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What metering can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The organization's quota would be passed: nothing was reserved.
    #[error("the monthly token quota is used up until {resets_at}")]
    QuotaExceeded {
        /// When the quota period starts again.
        resets_at: OffsetDateTime,
        /// The period's limit.
        limit: u64,
        /// Tokens counted so far this period, reservations included.
        used: u64,
    },
    /// The organization already has as many open streams as its cap allows.
    #[error("at most {limit} answers may stream at once")]
    TooManyStreams {
        /// The cap.
        limit: u32,
        /// When asking again makes sense: a second while streams run (one frees when an
        /// answer ends); the time left after a cache restart, while the streams in flight
        /// take their slots back.
        retry_after: std::time::Duration,
    },
    /// The quota counter or the ledger could not be reached.
    #[error("metering unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Reserves, settles and records token usage.
#[async_trait]
pub trait Meter: Send + Sync + fmt::Debug {
    /// Sets `tokens` aside for a call of `scope`, before the provider is called.
    ///
    /// # Errors
    /// [`MeterError::QuotaExceeded`] when they do not fit; [`MeterError::Unavailable`].
    async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError>;

    /// Records what the call used in the ledger (once) and corrects the quota counter from
    /// the reservation to the actual count. Never more than was reserved is recorded: a call
    /// that used more is clamped to its reservation (and the difference logged), so the quota
    /// holds whatever a provider reports. A call that used nothing is a release. Failures are
    /// logged, not returned: the call has happened either way.
    async fn settle(&self, reservation: Reservation, used: Tokens);

    /// Gives the reservation back unused (the call failed before anything was billed).
    async fn release(&self, reservation: Reservation) {
        self.settle(reservation, Tokens::default()).await;
    }

    /// Takes a slot for one open stream of `tenant`.
    ///
    /// # Errors
    /// [`MeterError::TooManyStreams`]; [`MeterError::Unavailable`].
    async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError>;

    /// Gives a stream slot back.
    async fn close_stream(&self, slot: StreamSlot);
}

/// A meter that allows everything and records nothing (unit tests of other domains).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unmetered;

#[async_trait]
impl Meter for Unmetered {
    async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError> {
        Ok(Reservation {
            id: uuid::Uuid::now_v7(),
            scope,
            reserved: tokens,
            request_id: request_id(),
            period: String::new(),
            at: OffsetDateTime::now_utc(),
        })
    }

    async fn settle(&self, _reservation: Reservation, _used: Tokens) {}

    async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError> {
        Ok(StreamSlot::new(tenant))
    }

    async fn close_stream(&self, _slot: StreamSlot) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_id_is_seen_inside_its_scope_only() {
        assert_eq!(request_id(), None);
        let seen = with_request_id("req-1".to_owned(), async { request_id() }).await;
        assert_eq!(seen.as_deref(), Some("req-1"));
        assert_eq!(request_id(), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in [UsageKind::Chat, UsageKind::Embedding] {
            assert_eq!(UsageKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(UsageKind::parse("other"), None);
    }
}
