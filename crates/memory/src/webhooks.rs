//! [`WebhookStore`] in memory: endpoints, deliveries and attempts in maps ordered by id, under
//! one lock (so a claim is exactly once).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use kernel::{EventKind, Page, PageRequest, TenantId};
use time::OffsetDateTime;
use uuid::Uuid;
use webhooks::{
    Attempt, AttemptId, Claim, Delivery, DeliveryId, DeliveryStatus, Endpoint, Next, StoreError,
    WebhookId, WebhookStore,
};

#[derive(Debug, Clone)]
struct Leased {
    delivery: Delivery,
    lease: Option<(Uuid, OffsetDateTime)>,
}

#[derive(Debug, Default)]
struct State {
    endpoints: BTreeMap<WebhookId, Endpoint>,
    deliveries: BTreeMap<DeliveryId, Leased>,
    attempts: BTreeMap<AttemptId, Attempt>,
}

/// Webhooks in memory.
#[derive(Debug, Default)]
pub struct InMemoryWebhooks {
    state: Mutex<State>,
}

impl InMemoryWebhooks {
    /// Nothing stored.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes an organization's endpoints, deliveries and attempts (what its deletion
    /// cascades to on SQL).
    pub fn remove_tenant(&self, tenant: TenantId) {
        let mut state = self.state();
        state.endpoints.retain(|_, e| e.tenant_id != tenant);
        state
            .deliveries
            .retain(|_, d| d.delivery.tenant_id != tenant);
        state.attempts.retain(|_, a| a.tenant_id != tenant);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_due(row: &Leased, now: OffsetDateTime) -> bool {
    match row.delivery.status {
        DeliveryStatus::Queued => row.delivery.run_at <= now,
        DeliveryStatus::Running => row.lease.is_some_and(|(_, until)| until < now),
        _ => false,
    }
}

#[async_trait]
impl WebhookStore for InMemoryWebhooks {
    async fn create(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.state().endpoints.insert(endpoint.id, endpoint.clone());
        Ok(())
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .state()
            .endpoints
            .values()
            .filter(|e| e.tenant_id == tenant)
            .cloned()
            .collect())
    }

    async fn find(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Endpoint>, StoreError> {
        Ok(self
            .state()
            .endpoints
            .get(&id)
            .filter(|e| e.tenant_id == tenant)
            .cloned())
    }

    async fn update(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.endpoints.get_mut(&endpoint.id) {
            Some(e) if e.tenant_id == endpoint.tenant_id => {
                e.url.clone_from(&endpoint.url);
                e.events.clone_from(&endpoint.events);
                e.enabled = endpoint.enabled;
                e.updated_at = endpoint.updated_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, tenant: TenantId, id: WebhookId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state
            .endpoints
            .get(&id)
            .is_none_or(|e| e.tenant_id != tenant)
        {
            return Ok(false);
        }
        state.endpoints.remove(&id);
        state.deliveries.retain(|_, d| d.delivery.webhook_id != id);
        state.attempts.retain(|_, a| a.webhook_id != id);
        Ok(true)
    }

    async fn subscribers(
        &self,
        tenant: TenantId,
        kind: EventKind,
    ) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .list(tenant)
            .await?
            .into_iter()
            .filter(|e| e.wants(kind))
            .collect())
    }

    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.state().deliveries.insert(
            delivery.id,
            Leased {
                delivery: delivery.clone(),
                lease: None,
            },
        );
        Ok(())
    }

    async fn find_delivery(
        &self,
        tenant: TenantId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .state()
            .deliveries
            .get(&id)
            .filter(|d| d.delivery.tenant_id == tenant)
            .map(|d| d.delivery.clone()))
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let until = time::Duration::try_from(lease)
            .ok()
            .and_then(|l| now.checked_add(l))
            .ok_or_else(|| anyhow::anyhow!("the lease is too long"))?;
        let mut state = self.state();
        let Some(row) = state
            .deliveries
            .values_mut()
            .filter(|row| is_due(row, now))
            .min_by_key(|row| (row.delivery.run_at, row.delivery.id))
        else {
            return Ok(None);
        };
        let token = Uuid::now_v7();
        row.delivery.status = DeliveryStatus::Running;
        row.delivery.attempts += 1;
        row.lease = Some((token, until));
        Ok(Some(Claim {
            delivery: row.delivery.clone(),
            lease: token,
        }))
    }

    async fn settle(
        &self,
        claim: &Claim,
        attempt: Option<&Attempt>,
        next: Next,
        _now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(row) = state.deliveries.get_mut(&claim.delivery.id) else {
            return Ok(false);
        };
        if row.delivery.status != DeliveryStatus::Running
            || row.lease.map(|(token, _)| token) != Some(claim.lease)
        {
            return Ok(false);
        }
        row.lease = None;
        let (status, run_at) = next.outcome();
        row.delivery.status = status;
        if let Some(at) = run_at {
            row.delivery.run_at = at;
        }
        if let Some(a) = attempt {
            state.attempts.insert(a.id, a.clone());
        }
        Ok(true)
    }

    async fn attempts(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError> {
        let before = page.after_uuid()?.map(AttemptId::from_uuid);
        let rows: Vec<Attempt> = self
            .state()
            .attempts
            .values()
            .rev()
            .filter(|a| a.tenant_id == tenant && a.webhook_id == webhook)
            .filter(|a| before.is_none_or(|b| a.id < b))
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page, |a| a.id.to_string()))
    }

    async fn find_attempt(
        &self,
        tenant: TenantId,
        id: AttemptId,
    ) -> Result<Option<Attempt>, StoreError> {
        Ok(self
            .state()
            .attempts
            .get(&id)
            .filter(|a| a.tenant_id == tenant)
            .cloned())
    }
}
