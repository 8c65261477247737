//! [`JobQueue`] on SQL: the durable queue of ingestion jobs, on PostgreSQL and SQLite.
//!
//! A job is due when it is `queued` and `run_at <= now`, or `running` with a lease that ended
//! (`lease_until < now`: its worker died, and the job is taken over). A claim is two steps:
//!
//! 1. the candidate tenants ([`CANDIDATES_SQL`]): the tenants with a due job, ordered by their
//!    count of running jobs with a live lease (fewest first), then when they were last served
//!    (their latest `claimed_at`; never served first), then their oldest due `run_at`, then
//!    their id: a round robin, so one tenant's thousands of queued jobs never starve another
//!    tenant's one job, even with a single worker. It walks the `(status, tenant_id, run_at, id)` index from tenant to tenant (a
//!    loose index scan) and probes each tenant's oldest due job and running count, so its cost
//!    grows with the number of tenants that have queued jobs, not with the number of jobs;
//! 2. for the first candidate that still has one, its oldest due job (`run_at`, then id) is
//!    leased: status `running`, a fresh lease token, `lease_until = now + lease`, one more
//!    attempt, no stage; its document shows `processing`.
//!
//! Step 1 is read once before any transaction, so an idle poll writes nothing and locks
//! nothing. Exactly once: on PostgreSQL step 2 reads the job `FOR UPDATE SKIP LOCKED` in the
//! claim's transaction, so concurrent claimers skip each other's rows, and the update repeats
//! the due condition, which a row claimed and committed meanwhile fails; on SQLite step 1 is
//! read again and step 2 runs in a `BEGIN IMMEDIATE` transaction, which holds the one write
//! lock from its first read to its commit. Fairness is exact on SQLite; on PostgreSQL claims
//! in flight at the same moment see the same running counts.
//!
//! Every later write (`progress`, `complete`, `fail`, `cancel`) is guarded by the lease:
//! `id`, `lease_token` and `status = 'running'` must still match, or nothing changes.
//! `fail` with [`Failure::Release`] (an outage) sets `attempts` back to its count before the
//! claim.
//!
//! Times: every time of `jobs` is written by [`at_value`] (fixed-width UTC text on SQLite,
//! whose text order is time order, so the queue's comparisons and its index are exact;
//! `timestamptz` on PostgreSQL). A job is inserted and a document's jobs are cancelled by
//! `job_rows`, which the documents' and collections' writes share.

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{
    Claim, DocumentStatus, Failure, Ingested, Job, JobFilter, JobId, JobQueue, JobStatus, NewChunk,
    Progress, StoreError,
};
use kernel::{Page, PageRequest, TenantId};
use sea_orm::sea_query::{Expr, ExprTrait as _, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set, Statement, UpdateMany,
    Value,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::job::{Column, Entity, Model};
use crate::entity::{chunk, document};
use crate::job_rows::{QUEUED, RUNNING, to_domain};
use crate::stored::{at_value, fit, lease_window, null_time, utc_micros};
use crate::{SqlStore, scope};

/// Rounds of a claim before it answers "nothing due" (PostgreSQL: every candidate's due jobs
/// may be held by concurrent claimers that have not committed yet).
const CLAIM_ROUNDS: usize = 3;
/// Chunks per `INSERT` (10 bound values each; SQLite allows 32,766 per statement).
const CHUNK_BATCH: usize = 100;

/// Step 1 of a claim: up to 32 tenants with a due job at `$1`, the one to serve first first.
/// Across tenants by design: this is the queue choosing whom to serve next; the job itself is
/// then read and leased through `scope`. The same SQL runs on both backends (sqlx binds `$1`
/// on SQLite too).
const CANDIDATES_SQL: &str = "\
WITH RECURSIVE queued(tenant_id) AS ( \
    SELECT (SELECT tenant_id FROM jobs WHERE status = 'queued' ORDER BY tenant_id LIMIT 1) \
    UNION ALL \
    SELECT (SELECT j.tenant_id FROM jobs AS j \
            WHERE j.status = 'queued' AND j.tenant_id > q.tenant_id \
            ORDER BY j.tenant_id LIMIT 1) \
    FROM queued AS q WHERE q.tenant_id IS NOT NULL \
), due(tenant_id, first_due) AS ( \
    SELECT q.tenant_id, \
           (SELECT j.run_at FROM jobs AS j \
            WHERE j.status = 'queued' AND j.tenant_id = q.tenant_id AND j.run_at <= $1 \
            ORDER BY j.run_at LIMIT 1) \
    FROM queued AS q WHERE q.tenant_id IS NOT NULL \
    UNION ALL \
    SELECT j.tenant_id, MIN(j.run_at) FROM jobs AS j \
    WHERE j.status = 'running' AND j.lease_until < $1 \
    GROUP BY j.tenant_id \
) \
SELECT d.tenant_id, \
       MIN(d.first_due) AS oldest, \
       (SELECT COUNT(*) FROM jobs AS r \
        WHERE r.status = 'running' AND r.tenant_id = d.tenant_id AND r.lease_until >= $1) \
         AS running, \
       (SELECT MAX(c.claimed_at) FROM jobs AS c WHERE c.tenant_id = d.tenant_id) AS served \
FROM due AS d \
WHERE d.first_due IS NOT NULL \
GROUP BY d.tenant_id \
ORDER BY running, served NULLS FIRST, oldest, d.tenant_id \
LIMIT 32";

/// The class of the PostgreSQL advisory locks that serialize one tenant's capped claims
/// (`"QJOB"`).
const CAP_LOCK_CLASS: i32 = 0x514A_4F42;

/// Takes, if free, the lock of one tenant's capped claims on PostgreSQL, until the
/// transaction ends.
const CAP_LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS locked";

/// Queued and due at `now`, or running with a lease that ended before `now`.
fn due(now: &Value) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(Column::Status.eq(QUEUED))
                .add(Column::RunAt.lte(now.clone())),
        )
        .add(
            Condition::all()
                .add(Column::Status.eq(RUNNING))
                .add(Column::LeaseUntil.lt(now.clone())),
        )
}

/// The oldest row of `select` (`run_at`, then id); on PostgreSQL locked, skipping rows other
/// claimers hold.
async fn oldest(
    txn: &DatabaseTransaction,
    select: Select<Entity>,
    what: &'static str,
) -> Result<Option<Model>, StoreError> {
    let mut select = select
        .order_by_asc(Column::RunAt)
        .order_by_asc(Column::Id)
        .limit(1);
    if txn.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    Ok(select.one(txn).await.context(what)?)
}

/// Step 1 of a claim ([`CANDIDATES_SQL`]) on `db`: the tenants to try, in order.
async fn candidate_tenants(
    db: &impl ConnectionTrait,
    now: &Value,
) -> Result<Vec<(TenantId, i64)>, StoreError> {
    let statement =
        Statement::from_sql_and_values(db.get_database_backend(), CANDIDATES_SQL, [now.clone()]);
    let rows = db
        .query_all_raw(statement)
        .await
        .context("choosing a tenant to serve")?;
    rows.into_iter()
        .map(|row| {
            let tenant = row
                .try_get::<Uuid>("", "tenant_id")
                .map(TenantId::from_uuid)
                .context("reading a candidate tenant")?;
            let running = row
                .try_get::<i64>("", "running")
                .context("reading a candidate's running jobs")?;
            Ok((tenant, running))
        })
        .collect()
}

/// The condition a write under `claim` needs: the job is still running under this lease.
fn held(claim: &Claim) -> Condition {
    Condition::all()
        .add(Column::Id.eq(claim.job.id.as_uuid()))
        .add(Column::LeaseToken.eq(claim.lease))
        .add(Column::Status.eq(RUNNING))
}

/// A progress value that fits the column: finite, in 0..=1.
fn clamp_progress(p: f32) -> f32 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl SqlStore {
    /// Whether `tenant` runs fewer than `cap` jobs under live leases, read inside `txn`. On
    /// PostgreSQL the claim first takes the tenant's advisory lock (without waiting: a tenant
    /// another claimer is serving right now is skipped, and no two claims can deadlock), so
    /// that claims made at the same moment cannot pass the cap together; on SQLite the
    /// claim's write lock already serializes them.
    async fn under_cap(
        txn: &DatabaseTransaction,
        tenant: TenantId,
        now: &Value,
        cap: u32,
    ) -> Result<bool, StoreError> {
        let backend = txn.get_database_backend();
        if backend == DbBackend::Postgres {
            let locked = txn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    CAP_LOCK_SQL,
                    [
                        Value::from(CAP_LOCK_CLASS),
                        Value::from(tenant.as_uuid().to_string()),
                    ],
                ))
                .await
                .context("locking a tenant's claims")?
                .map(|row| row.try_get::<bool>("", "locked"))
                .transpose()
                .context("reading a claim lock")?
                .unwrap_or(false);
            if !locked {
                return Ok(false);
            }
        }
        let running = scope::select::<Entity>(tenant)
            .filter(Column::Status.eq(RUNNING))
            .filter(Column::LeaseUntil.gte(now.clone()))
            .count(txn)
            .await
            .context("counting a tenant's running jobs")?;
        Ok(running < u64::from(cap))
    }

    /// Leases `tenant`'s oldest due job inside `txn`, if one is still free.
    async fn lease_oldest_due(
        txn: &DatabaseTransaction,
        tenant: TenantId,
        now: &Value,
        lease: Uuid,
        until: Value,
    ) -> Result<Option<Model>, StoreError> {
        // Two index probes rather than one `OR`: each reads one row in index order.
        let expired = oldest(
            txn,
            scope::select::<Entity>(tenant)
                .filter(Column::Status.eq(RUNNING))
                .filter(Column::LeaseUntil.lt(now.clone())),
            "choosing a job whose lease ended",
        )
        .await?;
        let queued = oldest(
            txn,
            scope::select::<Entity>(tenant)
                .filter(Column::Status.eq(QUEUED))
                .filter(Column::RunAt.lte(now.clone())),
            "choosing a due job",
        )
        .await?;
        let Some(job) = [expired, queued]
            .into_iter()
            .flatten()
            .min_by_key(|j| (j.run_at, j.id))
        else {
            return Ok(None);
        };
        let mut leased = scope::update::<Entity>(tenant)
            .col_expr(Column::Status, Expr::value(RUNNING))
            .col_expr(Column::LeaseToken, Expr::value(lease))
            .col_expr(Column::LeaseUntil, Expr::value(until))
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .col_expr(Column::Stage, Expr::value(Option::<String>::None))
            .col_expr(Column::DoneUnits, Expr::value(0))
            .col_expr(Column::TotalUnits, Expr::value(0))
            .col_expr(Column::ClaimedAt, Expr::value(now.clone()))
            .col_expr(Column::UpdatedAt, Expr::value(now.clone()))
            .filter(Column::Id.eq(job.id))
            .filter(due(now))
            .exec_with_returning(txn)
            .await
            .context("leasing a job")?;
        Ok(leased.pop())
    }

    /// Sets the document of a job, if it has one, to `status` (and `progress`, `error`), and
    /// its stage and units to `running`'s (none: cleared), inside `txn`.
    async fn set_document(
        txn: &DatabaseTransaction,
        job: &Job,
        status: DocumentStatus,
        progress: Option<f32>,
        running: Option<&Progress>,
        error: Option<Option<&str>>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let Some(document) = job.document_id else {
            return Ok(());
        };
        let (done, total) = units(running)?;
        let mut update = scope::update::<document::Entity>(job.tenant_id)
            .col_expr(document::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                document::Column::Stage,
                Expr::value(running.map(|p| p.stage.as_str())),
            )
            .col_expr(document::Column::DoneUnits, Expr::value(done))
            .col_expr(document::Column::TotalUnits, Expr::value(total))
            .col_expr(
                document::Column::UpdatedAt,
                Expr::value(at_value(txn.get_database_backend(), now)),
            )
            .filter(document::Column::Id.eq(document.as_uuid()));
        if let Some(p) = progress {
            update = update.col_expr(document::Column::Progress, Expr::value(p));
        }
        if let Some(e) = error {
            update = update.col_expr(document::Column::Error, Expr::value(e.map(str::to_owned)));
        }
        update
            .exec(txn)
            .await
            .context("updating a job's document")?;
        Ok(())
    }

    /// Applies `set` to the claimed job if its lease still holds, inside `txn`; whether it did.
    async fn write_held(
        txn: &DatabaseTransaction,
        claim: &Claim,
        set: impl FnOnce(UpdateMany<Entity>) -> UpdateMany<Entity>,
        what: &'static str,
    ) -> Result<bool, StoreError> {
        let update = set(scope::update::<Entity>(claim.job.tenant_id)).filter(held(claim));
        let changed = update.exec(txn).await.context(what)?.rows_affected;
        Ok(changed == 1)
    }
}

/// Ends a job's lease and sets its status (the last write under a claim).
/// The units done and in all of a running stage, as stored (0 and 0 without one).
fn units(running: Option<&Progress>) -> Result<(i32, i32), StoreError> {
    Ok(match running {
        Some(p) => (fit(p.done, "done units")?, fit(p.total, "total units")?),
        None => (0, 0),
    })
}

fn end_lease(update: UpdateMany<Entity>, status: JobStatus, now: &Value) -> UpdateMany<Entity> {
    update
        .col_expr(Column::Status, Expr::value(status.as_str()))
        .col_expr(Column::Stage, Expr::value(Option::<String>::None))
        .col_expr(Column::DoneUnits, Expr::value(0))
        .col_expr(Column::TotalUnits, Expr::value(0))
        .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
        .col_expr(Column::LeaseUntil, Expr::value(null_time()))
        .col_expr(Column::UpdatedAt, Expr::value(now.clone()))
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn find(&self, tenant: TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a job")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<Job>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut select = scope::select::<Entity>(tenant).order_by_desc(Column::Id);
            if let Some(k) = filter.kind {
                select = select.filter(Column::Kind.eq(k.as_str()));
            }
            if let Some(s) = filter.status {
                select = select.filter(Column::Status.eq(s.as_str()));
            }
            if let Some(d) = filter.document_id {
                select = select.filter(Column::DocumentId.eq(d.as_uuid()));
            }
            if let Some(before) = page.after_uuid()? {
                select = select.filter(Column::Id.lt(before));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing jobs")?;
            let items = rows
                .into_iter()
                .map(to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page, |j| j.id.to_string()))
        })
        .await
    }

    async fn claim_within(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        per_tenant: u32,
    ) -> Result<Option<Claim>, StoreError> {
        crate::rls::platform(async {
            let backend = self.db.get_database_backend();
            let (now, until) = lease_window(now, lease).context("the lease is too long")?;
            let (now_value, until) = (at_value(backend, now), at_value(backend, until));
            let token = Uuid::now_v7();
            // A read first: when nothing is due, no transaction is begun (on SQLite, no write lock
            // is taken), which is what an idle worker's every poll finds.
            let first = candidate_tenants(&self.db, &now_value).await?;
            if first.is_empty() {
                return Ok(None);
            }
            let txn = self.begin_write().await.context("starting a claim")?;
            // Under its write lock SQLite reads again and gets an exact answer. On PostgreSQL,
            // claims committing concurrently can change the answer at any moment anyway, so the
            // first read serves the first round.
            let mut reuse = (backend == DbBackend::Postgres).then_some(first);
            for _ in 0..CLAIM_ROUNDS {
                let tenants = match reuse.take() {
                    Some(tenants) => tenants,
                    None => candidate_tenants(&txn, &now_value).await?,
                };
                if tenants.is_empty() {
                    break;
                }
                for (tenant, running) in tenants {
                    if running >= i64::from(per_tenant)
                        || (per_tenant != u32::MAX
                            && !Self::under_cap(&txn, tenant, &now_value, per_tenant).await?)
                    {
                        continue;
                    }
                    let Some(row) =
                        Self::lease_oldest_due(&txn, tenant, &now_value, token, until.clone())
                            .await?
                    else {
                        continue;
                    };
                    let job = to_domain(row)?;
                    crate::rls::narrow(&txn, job.tenant_id)
                        .await
                        .context("narrowing a claim to its tenant")?;
                    Self::set_document(
                        &txn,
                        &job,
                        DocumentStatus::Processing,
                        None,
                        None,
                        None,
                        now,
                    )
                    .await?;
                    txn.commit().await.context("committing a claim")?;
                    return Ok(Some(Claim { job, lease: token }));
                }
            }
            txn.rollback().await.context("ending a claim")?;
            Ok(None)
        })
        .await
    }

    async fn progress(
        &self,
        claim: &Claim,
        progress: Progress,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.job.tenant_id, async {
            let backend = self.db.get_database_backend();
            let now = utc_micros(self.now());
            let progress = Progress {
                fraction: clamp_progress(progress.fraction),
                ..progress
            };
            let (done, total) = units(Some(&progress))?;
            let txn = self.begin_write().await.context("starting a heartbeat")?;
            let held = Self::write_held(
                &txn,
                claim,
                |u| {
                    u.col_expr(Column::Stage, Expr::value(progress.stage.as_str()))
                        .col_expr(Column::Progress, Expr::value(progress.fraction))
                        .col_expr(Column::DoneUnits, Expr::value(done))
                        .col_expr(Column::TotalUnits, Expr::value(total))
                        .col_expr(
                            Column::LeaseUntil,
                            Expr::value(at_value(backend, lease_until)),
                        )
                        .col_expr(Column::UpdatedAt, Expr::value(at_value(backend, now)))
                },
                "recording a job's progress",
            )
            .await?;
            if !held {
                txn.rollback().await.context("ending a heartbeat")?;
                return Ok(false);
            }
            Self::set_document(
                &txn,
                &claim.job,
                DocumentStatus::Processing,
                Some(progress.fraction),
                Some(&progress),
                None,
                now,
            )
            .await?;
            txn.commit().await.context("committing a heartbeat")?;
            Ok(true)
        })
        .await
    }

    async fn complete(
        &self,
        claim: &Claim,
        result: Ingested,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.job.tenant_id, async {
            let now = utc_micros(now);
            let stamp = at_value(self.db.get_database_backend(), now);
            let tenant = claim.job.tenant_id;
            let chunk_count: i32 = fit(result.chunks.len(), "chunk count")?;
            let token_count: i64 = fit(
                result
                    .chunks
                    .iter()
                    .map(|c| u64::from(c.draft.tokens))
                    .sum::<u64>(),
                "token count",
            )?;
            let pages: Option<i32> = result.pages.map(|p| fit(p, "pages")).transpose()?;
            let ocr_pages: i32 = fit(result.ocr_pages, "ocr pages")?;
            let txn = self.begin_write().await.context("starting a completion")?;
            let held = Self::write_held(
                &txn,
                claim,
                |u| {
                    end_lease(u, JobStatus::Succeeded, &stamp)
                        .col_expr(Column::Progress, Expr::value(1.0_f32))
                        .col_expr(Column::FinishedAt, Expr::value(stamp.clone()))
                },
                "completing a job",
            )
            .await?;
            if !held {
                txn.rollback().await.context("ending a completion")?;
                return Ok(false);
            }
            let Some(document_id) = claim.job.document_id else {
                txn.commit().await.context("committing a completion")?;
                return Ok(true);
            };
            let Some(document) = crate::document_rows::find_in(&txn, tenant, document_id).await?
            else {
                // The document is gone: nothing to store, and the job stays as it was.
                txn.rollback().await.context("ending a completion")?;
                return Ok(false);
            };
            scope::delete::<chunk::Entity>(tenant)
                .filter(chunk::Column::DocumentId.eq(document.id))
                .exec(&txn)
                .await
                .context("replacing a document's chunks")?;
            for batch in result.chunks.chunks(CHUNK_BATCH) {
                let rows = batch
                    .iter()
                    .map(|NewChunk { id, draft: c }| {
                        Ok(chunk::ActiveModel {
                            id: Set(id.as_uuid()),
                            tenant_id: Set(document.tenant_id),
                            document_id: Set(document.id),
                            collection_id: Set(document.collection_id),
                            ordinal: Set(fit(c.ordinal, "ordinal")?),
                            text: Set(c.text.clone()),
                            token_count: Set(fit(c.tokens, "chunk tokens")?),
                            page: Set(c.page.map(|p| fit(p, "page")).transpose()?),
                            start_char: Set(fit(c.start, "chunk start")?),
                            end_char: Set(fit(c.end, "chunk end")?),
                            ocr: Set(c.ocr),
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                chunk::Entity::insert_many(rows)
                    .exec_without_returning(&txn)
                    .await
                    .context("storing chunks")?;
            }
            scope::update::<document::Entity>(tenant)
                .col_expr(
                    document::Column::Status,
                    Expr::value(DocumentStatus::Ready.as_str()),
                )
                .col_expr(document::Column::Progress, Expr::value(1.0_f32))
                .col_expr(document::Column::Stage, Expr::value(Option::<String>::None))
                .col_expr(document::Column::DoneUnits, Expr::value(0))
                .col_expr(document::Column::TotalUnits, Expr::value(0))
                .col_expr(document::Column::Pages, Expr::value(pages))
                .col_expr(document::Column::OcrPages, Expr::value(ocr_pages))
                .col_expr(document::Column::ChunkCount, Expr::value(chunk_count))
                .col_expr(document::Column::TokenCount, Expr::value(token_count))
                .col_expr(document::Column::Error, Expr::value(Option::<String>::None))
                .col_expr(document::Column::UpdatedAt, Expr::value(stamp))
                .filter(document::Column::Id.eq(document.id))
                .exec(&txn)
                .await
                .context("marking a document ready")?;
            txn.commit().await.context("committing a completion")?;
            Ok(true)
        })
        .await
    }

    async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        failure: Failure,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.job.tenant_id, async {
            if let Failure::Final(status) = failure
                && !matches!(status, JobStatus::Failed | JobStatus::Dead)
            {
                return Err(anyhow::anyhow!(
                    "a job fails for good as failed or dead, not {}",
                    status.as_str()
                )
                .into());
            }
            let backend = self.db.get_database_backend();
            let now = utc_micros(now);
            let stamp = at_value(backend, now);
            let uncounted: i32 = fit(claim.job.attempts.saturating_sub(1), "attempts")?;
            let txn = self.begin_write().await.context("starting a failure")?;
            let held = Self::write_held(
                &txn,
                claim,
                |u| {
                    let u = u.col_expr(Column::Error, Expr::value(error.to_owned()));
                    match failure {
                        Failure::RetryAt(at) => end_lease(u, JobStatus::Queued, &stamp)
                            .col_expr(Column::RunAt, Expr::value(at_value(backend, at))),
                        // The claim counted this run; an outage gives it back.
                        Failure::Release(at) => end_lease(u, JobStatus::Queued, &stamp)
                            .col_expr(Column::RunAt, Expr::value(at_value(backend, at)))
                            .col_expr(Column::Attempts, Expr::value(uncounted)),
                        Failure::Final(status) => end_lease(u, status, &stamp)
                            .col_expr(Column::FinishedAt, Expr::value(stamp.clone())),
                    }
                },
                "recording a job's failure",
            )
            .await?;
            if !held {
                txn.rollback().await.context("ending a failure")?;
                return Ok(false);
            }
            let (status, error) = match failure {
                // Retrying: the document waits again, with no error to show.
                Failure::RetryAt(_) | Failure::Release(_) => (DocumentStatus::Queued, None),
                Failure::Final(_) => (DocumentStatus::Failed, Some(error)),
            };
            Self::set_document(&txn, &claim.job, status, Some(0.0), None, Some(error), now).await?;
            txn.commit().await.context("committing a failure")?;
            Ok(true)
        })
        .await
    }

    async fn cancel(&self, claim: &Claim, now: OffsetDateTime) -> Result<bool, StoreError> {
        crate::rls::tenant(claim.job.tenant_id, async {
            let stamp = at_value(self.db.get_database_backend(), now);
            let txn = self.begin_write().await.context("starting a cancel")?;
            let held = Self::write_held(
                &txn,
                claim,
                |u| {
                    end_lease(u, JobStatus::Canceled, &stamp)
                        .col_expr(Column::FinishedAt, Expr::value(stamp.clone()))
                },
                "cancelling a job",
            )
            .await?;
            if held {
                txn.commit().await.context("committing a cancel")?;
            } else {
                txn.rollback().await.context("ending a cancel")?;
            }
            Ok(held)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_fits_the_column() {
        assert!((clamp_progress(0.5) - 0.5).abs() < f32::EPSILON);
        assert!((clamp_progress(3.0) - 1.0).abs() < f32::EPSILON);
        assert!(clamp_progress(f32::NAN).abs() < f32::EPSILON);
        assert!(clamp_progress(-1.0).abs() < f32::EPSILON);
    }
}
