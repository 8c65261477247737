//! [`WebhookStore`] on SQL: endpoints, the delivery queue and the attempt log.
//!
//! The queue follows the job queue's discipline (`jobs`): a delivery is due when it is
//! `queued` with `run_at <= now`, or `running` with a lease that ended (its worker died). A
//! claim first reads whether anything is due without a transaction (an idle poll locks
//! nothing), then, in a write transaction, reads the oldest due row (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, under SQLite's `BEGIN IMMEDIATE` write lock) and leases it with an update
//! that repeats the due condition. There is no per-tenant fairness: a delivery is one short
//! HTTP call, not an ingestion. Every later write is guarded by the lease token.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{EventKind, Page, PageRequest, TenantId};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use webhooks::{
    Attempt, AttemptId, Claim, Delivery, DeliveryId, DeliveryStatus, Endpoint, Next, Secret,
    StoreError, WebhookId, WebhookStore,
};

use crate::entity::{webhook, webhook_attempt, webhook_delivery};
use crate::stored::{at_value, execute_timed, fit, lease_window, null_time, utc_micros};
use crate::{SqlStore, scope};

fn kind_of(name: &str) -> Result<EventKind, StoreError> {
    EventKind::parse(name)
        .ok_or_else(|| StoreError::Unknown(anyhow::anyhow!("stored event name {name:?}")))
}

fn endpoint_of(m: webhook::Model) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: WebhookId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        url: m.url,
        events: m
            .events
            .split_whitespace()
            .map(kind_of)
            .collect::<Result<_, _>>()?,
        enabled: m.enabled,
        secret: Secret::from_bytes(m.secret)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn events_column(events: &[EventKind]) -> String {
    events
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn delivery_of(m: webhook_delivery::Model) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: DeliveryId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        webhook_id: WebhookId::from_uuid(m.webhook_id),
        message_id: m.message_id,
        kind: kind_of(&m.event)?,
        payload: m.payload,
        status: DeliveryStatus::parse(&m.status)
            .ok_or_else(|| anyhow::anyhow!("stored delivery status {:?}", m.status))?,
        attempts: fit(m.attempts, "attempts")?,
        run_at: m.run_at,
        created_at: m.created_at,
    })
}

fn attempt_of(m: webhook_attempt::Model) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        id: AttemptId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        webhook_id: WebhookId::from_uuid(m.webhook_id),
        delivery_id: DeliveryId::from_uuid(m.delivery_id),
        kind: kind_of(&m.event)?,
        attempt: fit(m.attempt, "attempt")?,
        status_code: m.status_code.map(|c| fit(c, "status code")).transpose()?,
        error: m.error,
        created_at: m.created_at,
    })
}

/// Queued and due at `now`, or running with a lease that ended before `now`.
fn due(now: &Value) -> Condition {
    use webhook_delivery::Column;
    Condition::any()
        .add(
            Condition::all()
                .add(Column::Status.eq(DeliveryStatus::Queued.as_str()))
                .add(Column::RunAt.lte(now.clone())),
        )
        .add(
            Condition::all()
                .add(Column::Status.eq(DeliveryStatus::Running.as_str()))
                .add(Column::LeaseUntil.lt(now.clone())),
        )
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        crate::rls::tenant(endpoint.tenant_id, async {
            let row = webhook::Model {
                id: endpoint.id.as_uuid(),
                tenant_id: endpoint.tenant_id.as_uuid(),
                url: endpoint.url.clone(),
                events: events_column(&endpoint.events),
                enabled: endpoint.enabled,
                secret: endpoint.secret.bytes().to_vec(),
                created_at: utc_micros(endpoint.created_at),
                updated_at: utc_micros(endpoint.updated_at),
            };
            execute_timed(
                &self.db,
                &webhook::Entity::insert(webhook::ActiveModel::from(row)),
            )
            .await
            .context("storing a webhook")?;
            Ok(())
        })
        .await
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<Endpoint>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<webhook::Entity>(tenant)
                .order_by_asc(webhook::Column::Id)
                .all(&self.db)
                .await
                .context("listing webhooks")?
                .into_iter()
                .map(endpoint_of)
                .collect()
        })
        .await
    }

    async fn find(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Endpoint>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<webhook::Entity>(tenant)
                .filter(webhook::Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a webhook")?
                .map(endpoint_of)
                .transpose()
        })
        .await
    }

    async fn update(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        crate::rls::tenant(endpoint.tenant_id, async {
            let changed = scope::update::<webhook::Entity>(endpoint.tenant_id)
                .col_expr(webhook::Column::Url, Expr::value(endpoint.url.clone()))
                .col_expr(
                    webhook::Column::Events,
                    Expr::value(events_column(&endpoint.events)),
                )
                .col_expr(webhook::Column::Enabled, Expr::value(endpoint.enabled))
                .col_expr(
                    webhook::Column::UpdatedAt,
                    Expr::value(self.at(endpoint.updated_at)),
                )
                .filter(webhook::Column::Id.eq(endpoint.id.as_uuid()))
                .exec(&self.db)
                .await
                .context("changing a webhook")?
                .rows_affected;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete(&self, tenant: TenantId, id: WebhookId) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            // The foreign keys cascade to deliveries and attempts; deleted explicitly as well so
            // that a SQLite connection without `foreign_keys` keeps the contract.
            let txn = self
                .begin_write()
                .await
                .context("starting a webhook delete")?;
            scope::delete::<webhook_attempt::Entity>(tenant)
                .filter(webhook_attempt::Column::WebhookId.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a webhook's attempts")?;
            scope::delete::<webhook_delivery::Entity>(tenant)
                .filter(webhook_delivery::Column::WebhookId.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a webhook's deliveries")?;
            let gone = scope::delete::<webhook::Entity>(tenant)
                .filter(webhook::Column::Id.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a webhook")?
                .rows_affected;
            txn.commit().await.context("committing a webhook delete")?;
            Ok(gone == 1)
        })
        .await
    }

    async fn subscribers(
        &self,
        tenant: TenantId,
        kind: EventKind,
    ) -> Result<Vec<Endpoint>, StoreError> {
        crate::rls::tenant(tenant, async {
            // At most `MAX_ENDPOINTS` rows: the event filter is applied here, not in SQL.
            let all = self.list(tenant).await?;
            Ok(all.into_iter().filter(|e| e.wants(kind)).collect())
        })
        .await
    }

    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        crate::rls::tenant(delivery.tenant_id, async {
            let row = webhook_delivery::Model {
                id: delivery.id.as_uuid(),
                tenant_id: delivery.tenant_id.as_uuid(),
                webhook_id: delivery.webhook_id.as_uuid(),
                message_id: delivery.message_id.clone(),
                event: delivery.kind.as_str().to_owned(),
                payload: delivery.payload.clone(),
                status: delivery.status.as_str().to_owned(),
                attempts: fit(delivery.attempts, "attempts")?,
                run_at: utc_micros(delivery.run_at),
                lease_token: None,
                lease_until: None,
                created_at: utc_micros(delivery.created_at),
                updated_at: utc_micros(delivery.created_at),
            };
            execute_timed(
                &self.db,
                &webhook_delivery::Entity::insert(webhook_delivery::ActiveModel::from(row)),
            )
            .await
            .context("queuing a webhook delivery")?;
            Ok(())
        })
        .await
    }

    async fn find_delivery(
        &self,
        tenant: TenantId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<webhook_delivery::Entity>(tenant)
                .filter(webhook_delivery::Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a webhook delivery")?
                .map(delivery_of)
                .transpose()
        })
        .await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        crate::rls::platform(async {
            use webhook_delivery::{Column, Entity};
            let backend = self.db.get_database_backend();
            let (now, until) = lease_window(now, lease).context("the lease is too long")?;
            let now_value = at_value(backend, now);
            // Across tenants by design: the queue choosing what to send next. The row is then
            // leased through `scope`.
            let oldest = Entity::find()
                .filter(due(&now_value))
                .order_by_asc(Column::RunAt)
                .order_by_asc(Column::Id)
                .limit(1);
            let Some((txn, row)) = self
                .lock_first(oldest)
                .await
                .context("choosing a due delivery")?
            else {
                return Ok(None);
            };
            let token = Uuid::now_v7();
            let mut leased = scope::update::<Entity>(TenantId::from_uuid(row.tenant_id))
                .col_expr(
                    Column::Status,
                    Expr::value(DeliveryStatus::Running.as_str()),
                )
                .col_expr(Column::LeaseToken, Expr::value(token))
                .col_expr(Column::LeaseUntil, Expr::value(at_value(backend, until)))
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
                .col_expr(Column::UpdatedAt, Expr::value(now_value.clone()))
                .filter(Column::Id.eq(row.id))
                .filter(due(&now_value))
                .exec_with_returning(&txn)
                .await
                .context("leasing a delivery")?;
            let Some(row) = leased.pop() else {
                txn.rollback().await.context("ending a claim")?;
                return Ok(None);
            };
            txn.commit().await.context("committing a claim")?;
            Ok(Some(Claim {
                delivery: delivery_of(row)?,
                lease: token,
            }))
        })
        .await
    }

    async fn settle(
        &self,
        claim: &Claim,
        attempt: Option<&Attempt>,
        next: Next,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.delivery.tenant_id, async {
            use webhook_delivery::{Column, Entity};
            let backend = self.db.get_database_backend();
            let stamp = at_value(backend, now);
            let d = &claim.delivery;
            let (status, run_at) = next.outcome();
            let txn = self
                .begin_write()
                .await
                .context("starting to settle a delivery")?;
            let mut update = scope::update::<Entity>(d.tenant_id)
                .col_expr(Column::Status, Expr::value(status.as_str()))
                .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
                .col_expr(Column::LeaseUntil, Expr::value(null_time()))
                .col_expr(Column::UpdatedAt, Expr::value(stamp))
                .filter(Column::Id.eq(d.id.as_uuid()))
                .filter(Column::LeaseToken.eq(claim.lease))
                .filter(Column::Status.eq(DeliveryStatus::Running.as_str()));
            if let Some(at) = run_at {
                update = update.col_expr(Column::RunAt, Expr::value(at_value(backend, at)));
            }
            let held = update
                .exec(&txn)
                .await
                .context("settling a delivery")?
                .rows_affected
                == 1;
            if !held {
                txn.rollback().await.context("ending a settle")?;
                return Ok(false);
            }
            if let Some(a) = attempt {
                let row = webhook_attempt::Model {
                    id: a.id.as_uuid(),
                    tenant_id: a.tenant_id.as_uuid(),
                    webhook_id: a.webhook_id.as_uuid(),
                    delivery_id: a.delivery_id.as_uuid(),
                    event: a.kind.as_str().to_owned(),
                    attempt: fit(a.attempt, "attempt")?,
                    status_code: a.status_code.map(i32::from),
                    error: a.error.clone(),
                    created_at: utc_micros(a.created_at),
                };
                execute_timed(
                    &txn,
                    &webhook_attempt::Entity::insert(webhook_attempt::ActiveModel::from(row)),
                )
                .await
                .context("logging a webhook attempt")?;
            }
            txn.commit().await.context("committing a settle")?;
            Ok(true)
        })
        .await
    }

    async fn attempts(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError> {
        crate::rls::tenant(tenant, async {
            use webhook_attempt::{Column, Entity};
            let mut select = scope::select::<Entity>(tenant)
                .filter(Column::WebhookId.eq(webhook.as_uuid()))
                .order_by_desc(Column::Id);
            if let Some(before) = page.after_uuid()? {
                select = select.filter(Column::Id.lt(before));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing webhook attempts")?;
            let items = rows
                .into_iter()
                .map(attempt_of)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page, |a| a.id.to_string()))
        })
        .await
    }

    async fn find_attempt(
        &self,
        tenant: TenantId,
        id: AttemptId,
    ) -> Result<Option<Attempt>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<webhook_attempt::Entity>(tenant)
                .filter(webhook_attempt::Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a webhook attempt")?
                .map(attempt_of)
                .transpose()
        })
        .await
    }
}
