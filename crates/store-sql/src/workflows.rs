//! [`WorkflowStore`] on SQL: the queue of workflow runs and the schedules.
//!
//! The queue follows the job queue's discipline (`jobs`, as `webhooks` does): a run is due when
//! it is `queued`, or `running` with a lease that ended (its worker died). A claim first reads
//! whether anything is due without a transaction (an idle poll locks nothing), then, in a write
//! transaction, reads the oldest due row (`FOR UPDATE SKIP LOCKED` on PostgreSQL, under
//! SQLite's `BEGIN IMMEDIATE` write lock) and leases it with an update that repeats the due
//! condition. Every later write is guarded by the lease token.
//!
//! A schedule fires by a compare-and-set on `next_run_at` (`UPDATE … WHERE id = ? AND
//! next_run_at = <the value read>`) in the transaction that inserts its run: of two schedulers
//! that read the same due row, the second's update matches nothing (PostgreSQL re-checks the
//! condition after the first commits; SQLite serializes writers), so it inserts no run.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{Page, PageRequest, Role, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use workflows::model::{actor_column, parse_actor};
use workflows::{
    Beat, Claim, CronExpr, Ending, Run, RunFilter, RunId, RunStatus, Schedule, ScheduleId,
    StoreError, WorkflowKind, WorkflowStore,
};

use crate::entity::{workflow_run, workflow_schedule};
use crate::stored::{at_value, execute_timed, fit, lease_window, null_time, utc_micros};
use crate::{SqlStore, scope};

fn stored<T>(what: &str, value: &str, parse: impl FnOnce(&str) -> Option<T>) -> anyhow::Result<T> {
    parse(value).with_context(|| format!("stored {what} {value:?}"))
}

fn json_of(what: &str, s: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(s).with_context(|| format!("stored {what} is not JSON"))
}

fn run_of(m: workflow_run::Model) -> Result<Run, StoreError> {
    Ok(Run {
        id: RunId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        kind: stored("workflow", &m.kind, WorkflowKind::parse)?,
        input: json_of("input", &m.input)?,
        status: stored("run status", &m.status, RunStatus::parse)?,
        progress: m.progress,
        result: m
            .result
            .as_deref()
            .map(|r| json_of("result", r))
            .transpose()?,
        artifact: m.artifact,
        error: m.error,
        actor: stored("actor", &m.actor, parse_actor)?,
        role: stored("role", &m.role, |r| r.parse::<Role>().ok())?,
        schedule_id: m.schedule_id.map(ScheduleId::from_uuid),
        attempts: fit(m.attempts, "attempts")?,
        cancel_requested: m.cancel_requested,
        created_at: m.created_at,
        finished_at: m.finished_at,
    })
}

fn schedule_of(m: workflow_schedule::Model) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: ScheduleId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        kind: stored("workflow", &m.kind, WorkflowKind::parse)?,
        input: json_of("input", &m.input)?,
        cron: CronExpr::parse(&m.cron, "cron")
            .map_err(|e| anyhow::anyhow!("stored cron {:?}: {e}", m.cron))?,
        next_run_at: m.next_run_at,
        actor: stored("actor", &m.actor, parse_actor)?,
        role: stored("role", &m.role, |r| r.parse::<Role>().ok())?,
        created_at: m.created_at,
    })
}

fn run_row(run: &Run) -> Result<workflow_run::Model, StoreError> {
    Ok(workflow_run::Model {
        id: run.id.as_uuid(),
        tenant_id: run.tenant_id.as_uuid(),
        kind: run.kind.as_str().to_owned(),
        input: run.input.to_string(),
        status: run.status.as_str().to_owned(),
        progress: run.progress,
        result: run.result.as_ref().map(ToString::to_string),
        artifact: run.artifact.clone(),
        error: run.error.clone(),
        actor: actor_column(run.actor),
        role: run.role.as_str().to_owned(),
        schedule_id: run.schedule_id.map(|s| s.as_uuid()),
        attempts: fit(run.attempts, "attempts")?,
        cancel_requested: run.cancel_requested,
        lease_token: None,
        lease_until: None,
        archive_expires_at: None,
        created_at: utc_micros(run.created_at),
        updated_at: utc_micros(run.created_at),
        finished_at: run.finished_at.map(utc_micros),
    })
}

/// Queued, or running with a lease that ended before `now`.
fn due(now: &Value) -> Condition {
    use workflow_run::Column;
    Condition::any()
        .add(Column::Status.eq(RunStatus::Queued.as_str()))
        .add(
            Condition::all()
                .add(Column::Status.eq(RunStatus::Running.as_str()))
                .add(Column::LeaseUntil.lt(now.clone())),
        )
}

impl SqlStore {
    async fn insert_run(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        run: &Run,
    ) -> Result<(), StoreError> {
        execute_timed(
            conn,
            &workflow_run::Entity::insert(workflow_run::ActiveModel::from(run_row(run)?)),
        )
        .await
        .context("queuing a workflow run")?;
        Ok(())
    }
}

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn enqueue(&self, run: &Run) -> Result<(), StoreError> {
        crate::rls::tenant(run.tenant_id, async {
            self.insert_run(&self.db, run).await
        })
        .await
    }

    async fn find(&self, tenant: TenantId, id: RunId) -> Result<Option<Run>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<workflow_run::Entity>(tenant)
                .filter(workflow_run::Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a workflow run")?
                .map(run_of)
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        crate::rls::tenant(tenant, async {
            use workflow_run::{Column, Entity};
            let mut select = scope::select::<Entity>(tenant).order_by_desc(Column::Id);
            if let Some(s) = filter.status {
                select = select.filter(Column::Status.eq(s.as_str()));
            }
            if let Some(k) = filter.kind {
                select = select.filter(Column::Kind.eq(k.as_str()));
            }
            if let Some(before) = page.after_uuid()? {
                select = select.filter(Column::Id.lt(before));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing workflow runs")?;
            let items = rows
                .into_iter()
                .map(run_of)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page, |r| r.id.to_string()))
        })
        .await
    }

    async fn cancel(
        &self,
        tenant: TenantId,
        id: RunId,
        now: OffsetDateTime,
    ) -> Result<Option<Run>, StoreError> {
        crate::rls::tenant(tenant, async {
            use workflow_run::{Column, Entity};
            let stamp = self.at(now);
            let txn = self.begin_write().await.context("starting a cancel")?;
            // A queued run ends at once; a running one is asked to stop at its next step.
            scope::update::<Entity>(tenant)
                .col_expr(Column::Status, Expr::value(RunStatus::Cancelled.as_str()))
                .col_expr(Column::FinishedAt, Expr::value(stamp.clone()))
                .col_expr(Column::UpdatedAt, Expr::value(stamp.clone()))
                .filter(Column::Id.eq(id.as_uuid()))
                .filter(Column::Status.eq(RunStatus::Queued.as_str()))
                .exec(&txn)
                .await
                .context("cancelling a queued run")?;
            scope::update::<Entity>(tenant)
                .col_expr(Column::CancelRequested, Expr::value(true))
                .col_expr(Column::UpdatedAt, Expr::value(stamp))
                .filter(Column::Id.eq(id.as_uuid()))
                .filter(Column::Status.eq(RunStatus::Running.as_str()))
                .exec(&txn)
                .await
                .context("asking a running run to stop")?;
            let row = scope::select::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .one(&txn)
                .await
                .context("reading a cancelled run")?;
            txn.commit().await.context("committing a cancel")?;
            row.map(run_of).transpose()
        })
        .await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        crate::rls::platform(async {
            use workflow_run::{Column, Entity};
            let backend = self.db.get_database_backend();
            let (now, until) = lease_window(now, lease).context("the lease is too long")?;
            let now_value = at_value(backend, now);
            // Across tenants by design: the queue choosing what to run next. The row is then
            // leased through `scope`.
            let oldest = Entity::find()
                .filter(due(&now_value))
                .order_by_asc(Column::Id)
                .limit(1);
            let Some((txn, row)) = self
                .lock_first(oldest)
                .await
                .context("choosing a due workflow run")?
            else {
                return Ok(None);
            };
            let token = Uuid::now_v7();
            let mut leased = scope::update::<Entity>(TenantId::from_uuid(row.tenant_id))
                .col_expr(Column::Status, Expr::value(RunStatus::Running.as_str()))
                .col_expr(Column::LeaseToken, Expr::value(token))
                .col_expr(Column::LeaseUntil, Expr::value(at_value(backend, until)))
                .col_expr(
                    Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(Expr::col(Column::Attempts), 1),
                )
                .col_expr(Column::UpdatedAt, Expr::value(now_value.clone()))
                .filter(Column::Id.eq(row.id))
                .filter(due(&now_value))
                .exec_with_returning(&txn)
                .await
                .context("leasing a workflow run")?;
            let Some(row) = leased.pop() else {
                txn.rollback().await.context("ending a claim")?;
                return Ok(None);
            };
            txn.commit().await.context("committing a claim")?;
            Ok(Some(Claim {
                run: run_of(row)?,
                lease: token,
            }))
        })
        .await
    }

    async fn heartbeat(
        &self,
        claim: &Claim,
        progress: f32,
        until: OffsetDateTime,
    ) -> Result<Beat, StoreError> {
        crate::rls::tenant(claim.run.tenant_id, async {
            use workflow_run::{Column, Entity};
            let r = &claim.run;
            let mut rows = scope::update::<Entity>(r.tenant_id)
                .col_expr(Column::Progress, Expr::value(progress))
                .col_expr(Column::LeaseUntil, Expr::value(self.at(until)))
                .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
                .filter(Column::Id.eq(r.id.as_uuid()))
                .filter(Column::LeaseToken.eq(claim.lease))
                .filter(Column::Status.eq(RunStatus::Running.as_str()))
                .exec_with_returning(&self.db)
                .await
                .context("a workflow run's heartbeat")?;
            Ok(match rows.pop() {
                None => Beat::Lost,
                Some(row) if row.cancel_requested => Beat::CancelRequested,
                Some(_) => Beat::Held,
            })
        })
        .await
    }

    async fn finish(
        &self,
        claim: &Claim,
        ending: &Ending,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.run.tenant_id, async {
            use workflow_run::{Column, Entity};
            let r = &claim.run;
            let stamp = self.at(now);
            let mut update = scope::update::<Entity>(r.tenant_id)
                .col_expr(Column::Status, Expr::value(ending.status().as_str()))
                .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
                .col_expr(Column::LeaseUntil, Expr::value(null_time()))
                .col_expr(Column::FinishedAt, Expr::value(stamp.clone()))
                .col_expr(Column::UpdatedAt, Expr::value(stamp))
                .filter(Column::Id.eq(r.id.as_uuid()))
                .filter(Column::LeaseToken.eq(claim.lease))
                .filter(Column::Status.eq(RunStatus::Running.as_str()));
            match ending {
                Ending::Succeeded {
                    result,
                    artifact,
                    archive_expires_at,
                } => {
                    let expires =
                        archive_expires_at.map_or_else(null_time, |at| self.at(utc_micros(at)));
                    update = update
                        .col_expr(Column::ArchiveExpiresAt, Expr::value(expires))
                        .col_expr(Column::Progress, Expr::value(1.0_f32))
                        .col_expr(Column::Result, Expr::value(Some(result.to_string())))
                        .col_expr(Column::Artifact, Expr::value(artifact.clone()));
                }
                Ending::Failed(e) => {
                    update = update.col_expr(Column::Error, Expr::value(Some(e.clone())));
                }
                Ending::Cancelled => {}
            }
            let changed = update
                .exec(&self.db)
                .await
                .context("ending a workflow run")?
                .rows_affected;
            Ok(changed == 1)
        })
        .await
    }

    async fn create_schedule(&self, s: &Schedule) -> Result<(), StoreError> {
        crate::rls::tenant(s.tenant_id, async {
            let row = workflow_schedule::Model {
                id: s.id.as_uuid(),
                tenant_id: s.tenant_id.as_uuid(),
                kind: s.kind.as_str().to_owned(),
                input: s.input.to_string(),
                cron: s.cron.as_str().to_owned(),
                next_run_at: utc_micros(s.next_run_at),
                actor: actor_column(s.actor),
                role: s.role.as_str().to_owned(),
                created_at: utc_micros(s.created_at),
            };
            execute_timed(
                &self.db,
                &workflow_schedule::Entity::insert(workflow_schedule::ActiveModel::from(row)),
            )
            .await
            .context("storing a schedule")?;
            Ok(())
        })
        .await
    }

    async fn schedules(&self, tenant: TenantId) -> Result<Vec<Schedule>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<workflow_schedule::Entity>(tenant)
                .order_by_asc(workflow_schedule::Column::Id)
                .all(&self.db)
                .await
                .context("listing schedules")?
                .into_iter()
                .map(schedule_of)
                .collect()
        })
        .await
    }

    async fn delete_schedule(&self, tenant: TenantId, id: ScheduleId) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            let gone = scope::delete::<workflow_schedule::Entity>(tenant)
                .filter(workflow_schedule::Column::Id.eq(id.as_uuid()))
                .exec(&self.db)
                .await
                .context("deleting a schedule")?
                .rows_affected;
            Ok(gone == 1)
        })
        .await
    }

    async fn due_schedules(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError> {
        crate::rls::platform(async {
            use workflow_schedule::{Column, Entity};
            // Across tenants by design: the scheduler's look for due rows.
            Entity::find()
                .filter(Column::NextRunAt.lte(self.at(utc_micros(now))))
                .order_by_asc(Column::NextRunAt)
                .order_by_asc(Column::Id)
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .all(&self.db)
                .await
                .context("looking for due schedules")?
                .into_iter()
                .map(schedule_of)
                .collect()
        })
        .await
    }

    async fn expired_archives(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        // CROSS-TENANT by design (the expired-archive sweep): reads every organization's
        // runs, so it runs as the platform role under row-level security.
        crate::rls::platform(async {
            use workflow_run::{Column, Entity};
            Entity::find()
                .filter(Column::ArchiveExpiresAt.lte(self.at(utc_micros(now))))
                .order_by_asc(Column::ArchiveExpiresAt)
                .order_by_asc(Column::Id)
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .all(&self.db)
                .await
                .context("looking for expired export archives")?
                .into_iter()
                .map(run_of)
                .collect()
        })
        .await
    }

    async fn archive_deleted(&self, tenant: TenantId, id: RunId) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            use workflow_run::{Column, Entity};
            let changed = scope::update::<Entity>(tenant)
                .col_expr(Column::ArchiveExpiresAt, Expr::value(null_time()))
                .filter(Column::Id.eq(id.as_uuid()))
                .filter(Column::ArchiveExpiresAt.is_not_null())
                .exec(&self.db)
                .await
                .context("marking an export archive deleted")?
                .rows_affected;
            Ok(changed == 1)
        })
        .await
    }

    async fn fire(
        &self,
        schedule: &Schedule,
        next: OffsetDateTime,
        run: &Run,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(schedule.tenant_id, async {
            use workflow_schedule::{Column, Entity};
            let txn = self
                .begin_write()
                .await
                .context("starting to fire a schedule")?;
            let moved = scope::update::<Entity>(schedule.tenant_id)
                .col_expr(Column::NextRunAt, Expr::value(self.at(utc_micros(next))))
                .filter(Column::Id.eq(schedule.id.as_uuid()))
                .filter(Column::NextRunAt.eq(self.at(utc_micros(schedule.next_run_at))))
                .exec(&txn)
                .await
                .context("moving a schedule on")?
                .rows_affected;
            if moved != 1 {
                txn.rollback().await.context("ending a firing")?;
                return Ok(false);
            }
            self.insert_run(&txn, run).await?;
            txn.commit().await.context("committing a firing")?;
            Ok(true)
        })
        .await
    }
}
