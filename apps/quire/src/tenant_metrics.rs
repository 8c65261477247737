//! The per-tenant token and ingestion series of `/metrics` (`quire_tenant_tokens_total`,
//! `quire_tenant_documents_total`), observed at the ports where those things happen: the meter
//! every model and embedding call settles through, and the events the ingestion pipeline
//! publishes when a document ends. The domains know nothing of it; the labels follow the same
//! bounded ranking as the per-tenant request series ([`api::Metrics`]).

use std::sync::Arc;

use api::Metrics;
use async_trait::async_trait;
use kernel::{
    Event, EventKind, Events, Meter, MeterError, MeterScope, Reservation, StreamSlot, TenantId,
    Tokens,
};

/// A [`Meter`] that counts what each settlement billed on the tenant's token series, then
/// hands everything to the meter it wraps.
#[derive(Debug)]
pub struct ObservedMeter {
    inner: Arc<dyn Meter>,
    metrics: Arc<Metrics>,
}

impl ObservedMeter {
    /// `inner`, observed into `metrics`.
    #[must_use]
    pub fn new(inner: Arc<dyn Meter>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Meter for ObservedMeter {
    async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError> {
        self.inner.reserve(scope, tokens).await
    }

    async fn settle(&self, reservation: Reservation, used: Tokens) {
        let (tenant, kind) = (reservation.scope.tenant, reservation.scope.kind);
        // What the ledger records: never more than the reservation (see `Meter::settle`).
        let billed = used.total().min(reservation.reserved);
        self.inner.settle(reservation, used).await;
        self.metrics.observe_tenant_tokens(tenant, kind, billed);
    }

    async fn release(&self, reservation: Reservation) {
        self.inner.release(reservation).await;
    }

    async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError> {
        self.inner.open_stream(tenant).await
    }

    async fn close_stream(&self, slot: StreamSlot) {
        self.inner.close_stream(slot).await;
    }
}

/// [`Events`] that count each document whose ingestion ended (`document.ready`,
/// `document.failed`) on the tenant's document series, then hand every event on.
#[derive(Debug)]
pub struct ObservedIngestion {
    inner: Arc<dyn Events>,
    metrics: Arc<Metrics>,
}

impl ObservedIngestion {
    /// `inner`, observed into `metrics`.
    #[must_use]
    pub fn new(inner: Arc<dyn Events>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl Events for ObservedIngestion {
    fn publish(&self, event: Event) {
        match event.kind {
            EventKind::DocumentReady => self.metrics.observe_tenant_document(event.tenant, true),
            EventKind::DocumentFailed => {
                self.metrics.observe_tenant_document(event.tenant, false);
            }
            _ => {}
        }
        self.inner.publish(event);
    }
}
