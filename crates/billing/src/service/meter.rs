//! [`Billing`] as the metering port ([`Meter`]) that chat and retrieval call: a reservation
//! is a lease on the tenant's monthly quota counter in the cache port (rebuilt from the ledger
//! when missing), settled into the ledger and the counter, or released; a stream slot is a
//! lease on the tenant's stream counter, given back when its keeper drops.

use async_trait::async_trait;
use kernel::TenantId;
use kernel::cache::Bounded;
use kernel::metering::{self, Meter, MeterError, MeterScope, Reservation, StreamSlot, Tokens};

use super::{Billing, Recorded, non_negative, period_label, period_of, to_i64, unavailable};
use crate::model::UsageEvent;

#[async_trait]
impl Meter for Billing {
    async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError> {
        let now = self.ports.clock.now();
        let (start, end) = period_of(now);
        let limits = self
            .limits(scope.tenant)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable(anyhow::anyhow!("the organization does not exist")))?;
        let id = uuid::Uuid::now_v7();
        let reservation = |period: String| Reservation {
            id,
            scope: scope.clone(),
            reserved: tokens,
            request_id: metering::request_id(),
            period,
            at: now,
        };
        let Some(limit) = limits.monthly_token_limit else {
            // No limit: nothing to count against, only the ledger.
            return Ok(reservation(String::new()));
        };
        let label = period_label(start);
        let key = Self::quota_key(scope.tenant, &label);
        for _ in 0..3 {
            match self
                .ports
                .cache
                .lease_within(
                    &key,
                    &id.to_string(),
                    to_i64(tokens),
                    to_i64(limit),
                    self.quota_lease_ttl(),
                )
                .await
                .map_err(unavailable)?
            {
                Bounded::Added(_) => return Ok(reservation(label)),
                Bounded::Refused(counter) => {
                    tracing::info!(
                        tenant = %scope.tenant,
                        requested = tokens,
                        used = counter.value,
                        limit,
                        "quota exceeded"
                    );
                    return Err(MeterError::QuotaExceeded {
                        resets_at: end,
                        limit,
                        used: non_negative(counter.value),
                    });
                }
                // Rebuilt from the ledger; the reservations in flight are leases and count.
                Bounded::Missing => {
                    self.rebuild_quota(scope.tenant, &key, start, end, now)
                        .await?;
                }
            }
        }
        Err(unavailable(anyhow::anyhow!(
            "the quota counter vanished while it was being rebuilt"
        )))
    }

    async fn settle(&self, reservation: Reservation, used: Tokens) {
        let Reservation {
            id,
            scope,
            reserved,
            request_id,
            period,
            at,
        } = reservation;
        let lease = id.to_string();
        let key = (!period.is_empty()).then(|| Self::quota_key(scope.tenant, &period));
        // What may be recorded: never more than was reserved, and, when the reservation's
        // lease was lost, never more than still fits.
        let mut allowed = reserved;
        let mut quota = None;
        if let Some(key) = &key
            && used.total() > 0
        {
            let limit = self
                .limits(scope.tenant)
                .await
                .ok()
                .flatten()
                .and_then(|l| l.monthly_token_limit);
            quota = limit;
            if let Some(limit) = limit {
                let (start, _) = period_of(at);
                match self
                    .settleable(scope.tenant, key, &lease, reserved, limit, start)
                    .await
                {
                    Ok(n) => allowed = n,
                    Err(e) => {
                        tracing::warn!(error = %e, tenant = %scope.tenant, "checking a reservation's lease failed; settling within the reservation");
                    }
                }
            }
        }
        let recorded = clamp(used, allowed);
        if recorded != used {
            tracing::warn!(
                tenant = %scope.tenant,
                reservation = %id,
                model = %scope.model,
                kind = %scope.kind,
                reserved,
                allowed,
                used = used.total(),
                recorded = recorded.total(),
                "a call used more than it could be billed for; the usage is clamped"
            );
        }
        // What the counter's base gains: nothing when the same reservation was already
        // settled (its settlement added it).
        let mut counted = recorded.total();
        if recorded.total() > 0 {
            let event = UsageEvent {
                id,
                tenant: scope.tenant,
                actor: scope.actor,
                cost_micros: self.settings.prices.cost(&scope.model, recorded),
                model: scope.model,
                kind: scope.kind,
                reference: scope.reference,
                request_id,
                prompt_tokens: recorded.prompt,
                completion_tokens: recorded.completion,
                bytes: 0,
                at: self.ports.clock.now(),
            };
            if self.record(&event).await == Recorded::Duplicate {
                counted = 0;
            }
        }
        let Some(key) = key else {
            return;
        };
        // After the ledger write: a rebuild in between counts the event and the lease both,
        // so the counter can only be over (refusing), never under. With no base left, the
        // next rebuild reads the event from the ledger.
        if let Err(e) = self
            .ports
            .cache
            .end_lease(&key, &lease, to_i64(counted))
            .await
        {
            tracing::warn!(error = %e, tenant = %scope.tenant, "ending a quota reservation failed; repairing the counter when the cache returns");
            self.repair_quota(key, lease);
            return;
        }
        if let Some(limit) = quota
            && counted > 0
        {
            let (_, end) = period_of(at);
            self.publish_thresholds(scope.tenant, &key, &period, limit, end)
                .await;
        }
    }

    async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError> {
        let limits = self
            .limits(tenant)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable(anyhow::anyhow!("the organization does not exist")))?;
        let key = Self::streams_key(tenant);
        let mut slot = StreamSlot::new(tenant);
        let lease = slot.lease.to_string();
        let ttl = self.settings.stream_slot_ttl;
        for _ in 0..3 {
            match self
                .ports
                .cache
                .lease_within(&key, &lease, 1, i64::from(limits.max_streams), ttl)
                .await
                .map_err(unavailable)?
            {
                Bounded::Added(_) => {
                    slot.keeper = Some(self.keep_slot(key, lease, ttl, limits.max_streams));
                    return Ok(slot);
                }
                Bounded::Refused(counter) => {
                    return Err(MeterError::TooManyStreams {
                        limit: limits.max_streams,
                        retry_after: self.stream_retry_after(counter),
                    });
                }
                Bounded::Missing => self.create_stream_counter(&key, limits.max_streams).await?,
            }
        }
        Err(unavailable(anyhow::anyhow!(
            "the stream counter vanished while it was being created"
        )))
    }

    async fn close_stream(&self, slot: StreamSlot) {
        let StreamSlot {
            tenant,
            lease,
            keeper,
        } = slot;
        drop(keeper);
        let key = Self::streams_key(tenant);
        if let Err(e) = self
            .ports
            .cache
            .end_lease(&key, &lease.to_string(), 0)
            .await
        {
            tracing::warn!(error = %e, tenant = %tenant, "giving a stream slot back failed; its lease expires");
        }
    }
}

/// `used`, lowered to at most `allowed` tokens in all: completion tokens go first.
fn clamp(used: Tokens, allowed: u64) -> Tokens {
    if used.total() <= allowed {
        return used;
    }
    let prompt = used.prompt.min(allowed);
    Tokens {
        prompt,
        completion: allowed - prompt,
    }
}
