//! The rows of `jobs` that more than the queue writes: a document's upload and reindex queue
//! its job, and deleting a document or a collection cancels its unfinished jobs, each in the
//! transaction of its own change. The queue itself is `jobs.rs`. Times are written by
//! [`at_value`].

use anyhow::Context as _;
use documents::{DocumentId, Job, JobId, JobStatus, Stage, StoreError};
use kernel::TenantId;
use sea_orm::sea_query::{Expr, IntoCondition, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, QueryFilter, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::job::{Column, Entity, Model};
use crate::scope;
use crate::stored::{at_value, fit, null_time};

pub(crate) const QUEUED: &str = JobStatus::Queued.as_str();
pub(crate) const RUNNING: &str = JobStatus::Running.as_str();

pub(crate) fn to_domain(m: Model) -> Result<Job, StoreError> {
    Ok(Job {
        id: JobId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        kind: m
            .kind
            .parse()
            .map_err(|_| anyhow::anyhow!("stored job kind {:?}", m.kind))?,
        document_id: m.document_id.map(DocumentId::from_uuid),
        status: m
            .status
            .parse()
            .map_err(|_| anyhow::anyhow!("stored job status {:?}", m.status))?,
        stage: stage_of(m.stage)?,
        progress: m.progress,
        done: fit(m.done_units, "done units")?,
        total: fit(m.total_units, "total units")?,
        attempts: fit(m.attempts, "attempts")?,
        error: m.error,
        run_at: m.run_at,
        created_at: m.created_at,
        finished_at: m.finished_at,
    })
}

/// A stored stage (of a job or, while it is processed, of a document).
pub(crate) fn stage_of(stored: Option<String>) -> Result<Option<Stage>, StoreError> {
    Ok(stored
        .map(|s| {
            s.parse::<Stage>()
                .map_err(|_| anyhow::anyhow!("stored stage {s:?}"))
        })
        .transpose()?)
}

/// Stores a new job inside `txn`, its times written by [`at_value`].
pub(crate) async fn insert(txn: &DatabaseTransaction, job: Job) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    let values: [Value; 15] = [
        job.id.as_uuid().into(),
        job.tenant_id.as_uuid().into(),
        job.kind.as_str().into(),
        job.document_id.map(|d| d.as_uuid()).into(),
        job.status.as_str().into(),
        job.stage.map(|s| s.as_str().to_owned()).into(),
        job.progress.into(),
        fit::<u32, i32>(job.attempts, "attempts")?.into(),
        job.error.into(),
        at_value(backend, job.run_at),
        Option::<Uuid>::None.into(),
        null_time(),
        at_value(backend, job.created_at),
        at_value(backend, job.created_at),
        job.finished_at
            .map_or_else(null_time, |t| at_value(backend, t)),
    ];
    let insert = Query::insert()
        .into_table(Entity)
        .columns([
            Column::Id,
            Column::TenantId,
            Column::Kind,
            Column::DocumentId,
            Column::Status,
            Column::Stage,
            Column::Progress,
            Column::Attempts,
            Column::Error,
            Column::RunAt,
            Column::LeaseToken,
            Column::LeaseUntil,
            Column::CreatedAt,
            Column::UpdatedAt,
            Column::FinishedAt,
        ])
        .values(values.map(Expr::value))
        .context("building a job insert")?
        .to_owned();
    txn.execute(&insert).await.context("queueing a job")?;
    Ok(())
}

/// Cancels the tenant's unfinished (`queued` or `running`) jobs that match `which`, inside
/// `txn`: their leases end, so their workers' later writes change nothing.
pub(crate) async fn cancel_unfinished(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    which: impl IntoCondition,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let now = at_value(txn.get_database_backend(), now);
    Ok(scope::update::<Entity>(tenant)
        .col_expr(Column::Status, Expr::value(JobStatus::Canceled.as_str()))
        .col_expr(Column::FinishedAt, Expr::value(now.clone()))
        .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
        .col_expr(Column::LeaseUntil, Expr::value(null_time()))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(which)
        .filter(Column::Status.is_in([QUEUED, RUNNING]))
        .exec(txn)
        .await
        .context("cancelling jobs")?
        .rows_affected)
}
