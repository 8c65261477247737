//! [`JobQueue`] in memory: claims fair across tenants (fewest jobs running under a live
//! lease, then the oldest due `run_at`, then the tenant id) that take over jobs whose lease
//! ended, and writes under a claim that change nothing unless the job is still `running`
//! under the claim's lease token (see the parent module for the semantics it shares with
//! `store-sql`).

use async_trait::async_trait;
use documents::{
    Chunk, Claim, DocumentStatus, Failure, Ingested, Job, JobFilter, JobId, JobQueue, JobStatus,
    NewChunk, Progress, StoreError,
};
use kernel::{Page, PageRequest, TenantId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{InMemoryDocuments, clamp_progress, fit, fits_a_row, utc_micros};

#[async_trait]
impl JobQueue for InMemoryDocuments {
    async fn find(&self, tenant: TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self
            .lock()?
            .jobs
            .get(&id)
            .filter(|r| r.job.tenant_id == tenant)
            .map(|r| r.job.clone()))
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<Job>, StoreError> {
        let before = page.after_uuid()?;
        let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
        let items: Vec<Job> = self
            .lock()?
            .jobs
            .values()
            .rev()
            .map(|r| &r.job)
            .filter(|j| j.tenant_id == tenant)
            .filter(|j| filter.kind.is_none_or(|k| j.kind == k))
            .filter(|j| filter.status.is_none_or(|s| j.status == s))
            .filter(|j| filter.document_id.is_none_or(|d| j.document_id == Some(d)))
            .filter(|j| before.is_none_or(|b| j.id.as_uuid() < b))
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page, |j| j.id.to_string()))
    }

    async fn claim_within(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        per_tenant: u32,
    ) -> Result<Option<Claim>, StoreError> {
        let now = utc_micros(now);
        let until = time::Duration::try_from(lease)
            .ok()
            .and_then(|l| now.checked_add(l))
            .ok_or_else(|| anyhow::anyhow!("the lease is too long"))?;
        let mut t = self.lock()?;
        let cap = usize::try_from(per_tenant).unwrap_or(usize::MAX);
        let Some(id) = t
            .candidate_tenants(now)
            .into_iter()
            .filter(|(_, running)| *running < cap)
            .find_map(|(tenant, _)| t.oldest_due(tenant, now))
        else {
            return Ok(None);
        };
        let token = Uuid::now_v7();
        let Some(row) = t.jobs.get_mut(&id) else {
            return Ok(None);
        };
        row.job.status = JobStatus::Running;
        row.job.stage = None;
        row.job.done = 0;
        row.job.total = 0;
        row.job.attempts = row.job.attempts.saturating_add(1);
        row.lease_token = Some(token);
        row.lease_until = Some(until);
        row.claimed_at = Some(now);
        let job = row.job.clone();
        t.set_document(&job, DocumentStatus::Processing, None, None, None, now);
        Ok(Some(Claim { job, lease: token }))
    }

    async fn progress(
        &self,
        claim: &Claim,
        progress: Progress,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = utc_micros(self.clock.now());
        let progress = Progress {
            fraction: clamp_progress(progress.fraction),
            ..progress
        };
        let mut t = self.lock()?;
        let Some(row) = t.held_mut(claim) else {
            return Ok(false);
        };
        row.job.stage = Some(progress.stage);
        row.job.progress = progress.fraction;
        row.job.done = progress.done;
        row.job.total = progress.total;
        row.lease_until = Some(utc_micros(lease_until));
        t.set_document(
            &claim.job,
            DocumentStatus::Processing,
            Some(progress.fraction),
            Some(&progress),
            None,
            now,
        );
        Ok(true)
    }

    async fn complete(
        &self,
        claim: &Claim,
        result: Ingested,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = utc_micros(now);
        let tenant = claim.job.tenant_id;
        let chunk_count: u32 = fit(result.chunks.len(), "chunk count")?;
        let token_count: u64 = result
            .chunks
            .iter()
            .map(|c| u64::from(c.draft.tokens))
            .sum();
        for c in &result.chunks {
            fits_a_row(&c.draft)?;
        }
        let mut t = self.lock()?;
        if t.held_mut(claim).is_none() {
            return Ok(false);
        }
        if let Some(document_id) = claim.job.document_id {
            if t.document(tenant, document_id).is_none() {
                // The document is gone: nothing to store, and the job stays as it was.
                return Ok(false);
            }
            let mut chunks: Vec<Chunk> = result
                .chunks
                .into_iter()
                .map(|NewChunk { id, draft: c }| Chunk {
                    id,
                    document_id,
                    ordinal: c.ordinal,
                    text: c.text,
                    tokens: c.tokens,
                    page: c.page,
                    start: c.start,
                    end: c.end,
                    ocr: c.ocr,
                })
                .collect();
            chunks.sort_by_key(|c| c.ordinal);
            t.chunks.insert((tenant, document_id), chunks);
            if let Some(d) = t.document_mut(tenant, document_id) {
                d.status = DocumentStatus::Ready;
                d.stage = None;
                d.done = 0;
                d.total = 0;
                d.progress = 1.0;
                d.pages = result.pages;
                d.ocr_pages = result.ocr_pages;
                d.chunks = chunk_count;
                d.tokens = token_count;
                d.error = None;
                d.updated_at = now;
            }
        }
        if let Some(row) = t.held_mut(claim) {
            row.end_lease(JobStatus::Succeeded);
            row.job.progress = 1.0;
            row.job.finished_at = Some(now);
        }
        Ok(true)
    }

    async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        failure: Failure,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if let Failure::Final(status) = failure
            && !matches!(status, JobStatus::Failed | JobStatus::Dead)
        {
            return Err(anyhow::anyhow!(
                "a job fails for good as failed or dead, not {}",
                status.as_str()
            )
            .into());
        }
        let now = utc_micros(now);
        let mut t = self.lock()?;
        let Some(row) = t.held_mut(claim) else {
            return Ok(false);
        };
        row.job.error = Some(error.to_owned());
        let (status, error) = match failure {
            Failure::RetryAt(at) => {
                row.end_lease(JobStatus::Queued);
                row.job.run_at = utc_micros(at);
                // Retrying: the document waits again, with no error to show.
                (DocumentStatus::Queued, None)
            }
            Failure::Release(at) => {
                row.end_lease(JobStatus::Queued);
                row.job.run_at = utc_micros(at);
                // The claim counted this run; an outage gives it back.
                row.job.attempts = claim.job.attempts.saturating_sub(1);
                (DocumentStatus::Queued, None)
            }
            Failure::Final(status) => {
                row.end_lease(status);
                row.job.finished_at = Some(now);
                (DocumentStatus::Failed, Some(error))
            }
        };
        t.set_document(&claim.job, status, Some(0.0), None, Some(error), now);
        Ok(true)
    }

    async fn cancel(&self, claim: &Claim, now: OffsetDateTime) -> Result<bool, StoreError> {
        let now = utc_micros(now);
        let mut t = self.lock()?;
        let Some(row) = t.held_mut(claim) else {
            return Ok(false);
        };
        row.end_lease(JobStatus::Canceled);
        row.job.finished_at = Some(now);
        Ok(true)
    }
}
