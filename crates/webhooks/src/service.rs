//! `Webhooks`: the use cases (endpoints, the delivery log, redelivery), the fan-out of
//! published events into queued deliveries, and `deliver_next`, what a delivery worker runs.

use std::sync::Arc;
use std::time::Duration;

use kernel::{Clock, Event, Events, InvalidInput, Page, PageRequest, Role, TenantContext};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::WebhookError;
use crate::model::{
    Attempt, AttemptId, Claim, Delivery, DeliveryId, Endpoint, EndpointChange, MAX_ENDPOINTS,
    NewEndpoint, Next, Secret, WebhookId, check_url_shape, parse_events, short_error,
};
use crate::ports::{DeliverySignal, Outgoing, Sender, Sent, WebhookStore};
use crate::signature::sign;

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts of one delivery before it fails for good.
    pub max_attempts: u32,
    /// The pause after the first failed attempt; it doubles after each.
    pub backoff_base: Duration,
    /// The longest pause.
    pub backoff_max: Duration,
    /// How long a worker holds a delivery (more than the sender's timeout).
    pub lease: Duration,
    /// Whether `http://` endpoints are accepted (tests; https otherwise).
    pub allow_http: bool,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(6 * 3_600),
            lease: Duration::from_secs(60),
            allow_http: false,
        }
    }
}

impl DeliveryPolicy {
    /// The pause after failed attempt `attempt` (1-based): `base · 2^(attempt-1)`, at most
    /// `backoff_max`, less up to a tenth at random so that retries of many deliveries spread.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let pause = doubled.min(self.backoff_max);
        let mut r = [0u8; 1];
        let tenth = if getrandom::fill(&mut r).is_ok() {
            pause / 10 * u32::from(r[0]) / 255
        } else {
            Duration::ZERO
        };
        pause.saturating_sub(tenth)
    }
}

/// The ports `Webhooks` runs on.
#[derive(Debug, Clone)]
pub struct WebhookPorts {
    /// Storage.
    pub store: Arc<dyn WebhookStore>,
    /// The HTTP sender and destination guard.
    pub sender: Arc<dyn Sender>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Wakes a local worker.
    pub signal: Arc<dyn DeliverySignal>,
}

/// What a delivery worker's run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// It failed; it runs again later.
    Retrying,
    /// It failed for good.
    Failed,
    /// Its endpoint is disabled or gone: not sent.
    Dropped,
    /// Another worker took it over (the lease ended).
    LeaseLost,
}

/// The webhooks use cases.
#[derive(Debug, Clone)]
pub struct Webhooks {
    ports: WebhookPorts,
    policy: DeliveryPolicy,
}

fn require_admin(ctx: &TenantContext) -> Result<(), WebhookError> {
    if ctx.role().satisfies(Role::Admin) {
        Ok(())
    } else {
        Err(WebhookError::Forbidden)
    }
}

impl Webhooks {
    /// The use cases over `ports`.
    #[must_use]
    pub fn new(ports: WebhookPorts, policy: DeliveryPolicy) -> Self {
        Self { ports, policy }
    }

    async fn check_url(&self, url: &str) -> Result<(), WebhookError> {
        check_url_shape(url, self.policy.allow_http)?;
        self.ports
            .sender
            .check(url)
            .await
            .map_err(|why| InvalidInput::field("url", why.0))?;
        Ok(())
    }

    /// Registers an endpoint; the secret is in the answer and never again.
    ///
    /// # Errors
    /// `Forbidden` below admin, `Invalid` for a bad URL (a refused destination included) or
    /// events, `TooMany` past [`MAX_ENDPOINTS`].
    pub async fn create(
        &self,
        ctx: &TenantContext,
        new: NewEndpoint,
    ) -> Result<(Endpoint, String), WebhookError> {
        require_admin(ctx)?;
        let events = parse_events(&new.events)?;
        self.check_url(&new.url).await?;
        let tenant = ctx.tenant_id();
        if self.ports.store.list(tenant).await?.len() >= MAX_ENDPOINTS {
            return Err(WebhookError::TooMany(MAX_ENDPOINTS));
        }
        let now = self.ports.clock.now();
        let secret = Secret::generate()?;
        let shown = secret.reveal();
        let endpoint = Endpoint {
            id: WebhookId::new(),
            tenant_id: tenant,
            url: new.url,
            events,
            enabled: new.enabled.unwrap_or(true),
            secret,
            created_at: now,
            updated_at: now,
        };
        self.ports.store.create(&endpoint).await?;
        tracing::info!(tenant = %tenant, webhook = %endpoint.id, "webhook registered");
        Ok((endpoint, shown))
    }

    /// The organization's endpoints.
    ///
    /// # Errors
    /// `Forbidden` below admin; storage.
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<Endpoint>, WebhookError> {
        require_admin(ctx)?;
        Ok(self.ports.store.list(ctx.tenant_id()).await?)
    }

    /// One endpoint.
    ///
    /// # Errors
    /// `Forbidden` below admin, `NotFound`.
    pub async fn get(&self, ctx: &TenantContext, id: WebhookId) -> Result<Endpoint, WebhookError> {
        require_admin(ctx)?;
        self.ports
            .store
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    /// Changes an endpoint.
    ///
    /// # Errors
    /// As [`Webhooks::create`], and `NotFound`.
    pub async fn update(
        &self,
        ctx: &TenantContext,
        id: WebhookId,
        change: EndpointChange,
    ) -> Result<Endpoint, WebhookError> {
        let mut endpoint = self.get(ctx, id).await?;
        if let Some(events) = &change.events {
            endpoint.events = parse_events(events)?;
        }
        if let Some(url) = change.url {
            self.check_url(&url).await?;
            endpoint.url = url;
        }
        if let Some(enabled) = change.enabled {
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = self.ports.clock.now();
        if !self.ports.store.update(&endpoint).await? {
            return Err(WebhookError::NotFound);
        }
        Ok(endpoint)
    }

    /// Deletes an endpoint with its deliveries and their log.
    ///
    /// # Errors
    /// `Forbidden` below admin, `NotFound`.
    pub async fn delete(&self, ctx: &TenantContext, id: WebhookId) -> Result<(), WebhookError> {
        require_admin(ctx)?;
        if self.ports.store.delete(ctx.tenant_id(), id).await? {
            tracing::info!(tenant = %ctx.tenant_id(), webhook = %id, "webhook deleted");
            Ok(())
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// An endpoint's attempts, newest first.
    ///
    /// # Errors
    /// `Forbidden` below admin, `NotFound`, `Invalid` for a bad cursor.
    pub async fn attempts(
        &self,
        ctx: &TenantContext,
        id: WebhookId,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, WebhookError> {
        let endpoint = self.get(ctx, id).await?;
        Ok(self
            .ports
            .store
            .attempts(ctx.tenant_id(), endpoint.id, page)
            .await?)
    }

    /// Sends an attempt's event again, as a new delivery (same `webhook-id`, fresh attempts).
    ///
    /// # Errors
    /// `Forbidden` below admin, `NotFound`.
    pub async fn redeliver(
        &self,
        ctx: &TenantContext,
        attempt: AttemptId,
    ) -> Result<DeliveryId, WebhookError> {
        require_admin(ctx)?;
        let tenant = ctx.tenant_id();
        let attempt = self
            .ports
            .store
            .find_attempt(tenant, attempt)
            .await?
            .ok_or(WebhookError::NotFound)?;
        let earlier = self
            .ports
            .store
            .find_delivery(tenant, attempt.delivery_id)
            .await?
            .ok_or(WebhookError::NotFound)?;
        let endpoint = self.get(ctx, earlier.webhook_id).await?;
        let delivery = Delivery::queued(
            &endpoint,
            earlier.message_id,
            earlier.kind,
            earlier.payload,
            self.ports.clock.now(),
        );
        self.ports.store.enqueue(&delivery).await?;
        self.ports.signal.queued();
        Ok(delivery.id)
    }

    /// Queues `event` for each subscribed endpoint of its organization; how many.
    ///
    /// # Errors
    /// Storage.
    pub async fn fan_out(&self, event: &Event) -> Result<usize, WebhookError> {
        let endpoints = self
            .ports
            .store
            .subscribers(event.tenant, event.kind)
            .await?;
        if endpoints.is_empty() {
            return Ok(0);
        }
        let now = self.ports.clock.now();
        let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let payload = serde_json::json!({
            "type": event.kind.as_str(),
            "timestamp": now.format(&Rfc3339).map_err(anyhow::Error::new)?,
            "data": event.data,
        })
        .to_string();
        for endpoint in &endpoints {
            let delivery = Delivery::queued(
                endpoint,
                message_id.clone(),
                event.kind,
                payload.clone(),
                now,
            );
            self.ports.store.enqueue(&delivery).await?;
        }
        self.ports.signal.queued();
        Ok(endpoints.len())
    }

    /// Claims the next due delivery and makes its attempt; `Ok(None)` when none is due.
    ///
    /// # Errors
    /// Storage (the claim or the record of the attempt).
    pub async fn deliver_next(&self) -> Result<Option<DeliveryOutcome>, WebhookError> {
        let now = self.ports.clock.now();
        let Some(claim) = self.ports.store.claim(now, self.policy.lease).await? else {
            return Ok(None);
        };
        self.attempt(&claim).await.map(Some)
    }

    async fn attempt(&self, claim: &Claim) -> Result<DeliveryOutcome, WebhookError> {
        let d = &claim.delivery;
        let endpoint = self
            .ports
            .store
            .find(d.tenant_id, d.webhook_id)
            .await?
            .filter(|e| e.enabled);
        let Some(endpoint) = endpoint else {
            let now = self.ports.clock.now();
            return Ok(
                if self
                    .ports
                    .store
                    .settle(claim, None, Next::Drop, now)
                    .await?
                {
                    DeliveryOutcome::Dropped
                } else {
                    DeliveryOutcome::LeaseLost
                },
            );
        };
        let timestamp = self.ports.clock.now().unix_timestamp();
        let request = Outgoing {
            url: endpoint.url.clone(),
            id: d.message_id.clone(),
            timestamp,
            signature: sign(
                &endpoint.secret,
                &d.message_id,
                timestamp,
                d.payload.as_bytes(),
            ),
            body: d.payload.clone(),
        };
        let sent = self.ports.sender.send(request).await;
        let now = self.ports.clock.now();
        let (status_code, error, next) = self.judge(&sent, d.attempts, now);
        let attempt = Attempt {
            id: AttemptId::new(),
            tenant_id: d.tenant_id,
            webhook_id: d.webhook_id,
            delivery_id: d.id,
            kind: d.kind,
            attempt: d.attempts,
            status_code,
            error,
            created_at: now,
        };
        tracing::info!(
            tenant = %d.tenant_id,
            webhook = %d.webhook_id,
            delivery = %d.id,
            attempt = d.attempts,
            status = ?status_code,
            next = ?next,
            "webhook attempt"
        );
        if !self
            .ports
            .store
            .settle(claim, Some(&attempt), next, now)
            .await?
        {
            return Ok(DeliveryOutcome::LeaseLost);
        }
        Ok(match next {
            Next::Done => DeliveryOutcome::Delivered,
            Next::RetryAt(_) => DeliveryOutcome::Retrying,
            Next::GiveUp => DeliveryOutcome::Failed,
            Next::Drop => DeliveryOutcome::Dropped,
        })
    }

    /// The attempt's status code, error and what follows it.
    fn judge(
        &self,
        sent: &Sent,
        attempts: u32,
        now: OffsetDateTime,
    ) -> (Option<u16>, Option<String>, Next) {
        let retry = || {
            if attempts >= self.policy.max_attempts {
                Next::GiveUp
            } else {
                Next::RetryAt(now + self.policy.backoff(attempts))
            }
        };
        match sent {
            Sent::Status(code) if (200..300).contains(code) => (Some(*code), None, Next::Done),
            // The endpoint says it wants no more of this.
            Sent::Status(410) => (
                Some(410),
                Some("the endpoint answered 410 Gone".to_owned()),
                Next::GiveUp,
            ),
            Sent::Status(code) => (
                Some(*code),
                Some(format!("the endpoint answered {code}")),
                retry(),
            ),
            Sent::Failed(why) => (None, Some(short_error(why)), retry()),
            Sent::Refused(why) => (
                None,
                Some(short_error(&format!("destination refused: {why}"))),
                Next::GiveUp,
            ),
        }
    }
}

impl Events for Webhooks {
    /// Fans the event out on a task of its own: the publisher neither waits nor fails.
    fn publish(&self, event: Event) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(kind = %event.kind, "an event published outside a runtime was dropped");
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            if let Err(e) = this.fan_out(&event).await {
                tracing::warn!(
                    tenant = %event.tenant,
                    kind = %event.kind,
                    error = ?e,
                    "queuing webhook deliveries failed; the event is not delivered"
                );
            }
        });
    }
}
