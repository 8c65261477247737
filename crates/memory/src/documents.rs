//! [`CollectionRepository`], [`DocumentRepository`] and [`JobQueue`](documents::JobQueue)
//! (in `queue.rs`) in memory, all under one lock: every method is one critical section, so
//! what the SQL adapter does in a transaction is atomic here too, and a claim hands each due
//! job to exactly one caller.
//!
//! The semantics are those of `store-sql` (the reference), checked by the same contract
//! suites (`testkit::contract::documents` and `::jobs`): every method is scoped to its tenant;
//! collections list oldest first and documents newest first, by id, with the id as cursor;
//! chunks list by ordinal, the ordinal being the cursor; deleting a collection or a document
//! takes its documents and chunks and cancels their unfinished jobs; a reindex cancels the
//! unfinished jobs too. Claims are fair across tenants (fewest jobs running under a live
//! lease, then the oldest due `run_at`, then the tenant id) and take over jobs whose lease
//! ended. Every write under a claim needs the job still `running` under the claim's lease
//! token, or changes nothing and answers `false`.
//!
//! The queue keeps its times as SQL does: UTC, at microsecond precision. A method fails
//! before it changes anything, so an error never leaves half a change behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use documents::{
    BlobKey, Chunk, ChunkDraft, Claim, Collection, CollectionId, CollectionPatch,
    CollectionRepository, CollectionStats, Document, DocumentFilter, DocumentId,
    DocumentRepository, DocumentStatus, Job, JobId, JobStatus, Progress, StoreError, Stored,
};
use kernel::{Clock, InvalidInput, Page, PageRequest, TenantId};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

mod queue;

/// A job and the lease that holds it while it runs.
#[derive(Debug, Clone)]
struct JobRow {
    job: Job,
    lease_token: Option<Uuid>,
    lease_until: Option<OffsetDateTime>,
    /// When it was last claimed.
    claimed_at: Option<OffsetDateTime>,
}

impl JobRow {
    /// Queued and due at `now`, or running with a lease that ended before `now`.
    fn is_due(&self, now: OffsetDateTime) -> bool {
        match self.job.status {
            JobStatus::Queued => self.job.run_at <= now,
            JobStatus::Running => self.lease_until.is_some_and(|until| until < now),
            _ => false,
        }
    }

    /// Running under a lease that has not ended at `now`.
    fn is_running_at(&self, now: OffsetDateTime) -> bool {
        self.job.status == JobStatus::Running && self.lease_until.is_some_and(|u| u >= now)
    }

    /// Still running under `claim`'s lease (the guard of every write under a claim).
    fn is_held_by(&self, claim: &Claim) -> bool {
        self.job.status == JobStatus::Running && self.lease_token == Some(claim.lease)
    }

    /// Ends the lease with `status` (the last write under a claim, or a cancel).
    fn end_lease(&mut self, status: JobStatus) {
        self.job.status = status;
        self.job.stage = None;
        self.job.done = 0;
        self.job.total = 0;
        self.lease_token = None;
        self.lease_until = None;
    }
}

#[derive(Debug, Default)]
struct Tables {
    collections: BTreeMap<CollectionId, Collection>,
    documents: BTreeMap<DocumentId, Document>,
    /// Each document's chunks, ordered by ordinal, under the document's tenant.
    chunks: BTreeMap<(TenantId, DocumentId), Vec<Chunk>>,
    jobs: BTreeMap<JobId, JobRow>,
}

impl Tables {
    fn collection(&self, tenant: TenantId, id: CollectionId) -> Option<&Collection> {
        self.collections.get(&id).filter(|c| c.tenant_id == tenant)
    }

    fn document(&self, tenant: TenantId, id: DocumentId) -> Option<&Document> {
        self.documents.get(&id).filter(|d| d.tenant_id == tenant)
    }

    fn document_mut(&mut self, tenant: TenantId, id: DocumentId) -> Option<&mut Document> {
        self.documents
            .get_mut(&id)
            .filter(|d| d.tenant_id == tenant)
    }

    /// Cancels the tenant's unfinished jobs of these documents: their leases end, so their
    /// workers' later writes change nothing.
    fn cancel_unfinished(
        &mut self,
        tenant: TenantId,
        documents: &[DocumentId],
        now: OffsetDateTime,
    ) {
        let now = utc_micros(now);
        for row in self.jobs.values_mut().filter(|r| {
            r.job.tenant_id == tenant
                && !r.job.status.is_final()
                && r.job.document_id.is_some_and(|d| documents.contains(&d))
        }) {
            row.job.status = JobStatus::Canceled;
            row.job.finished_at = Some(now);
            row.lease_token = None;
            row.lease_until = None;
        }
    }

    /// Removes the tenant's documents `ids` and their chunks.
    fn remove_documents(&mut self, tenant: TenantId, ids: &[DocumentId]) {
        for id in ids {
            self.chunks.remove(&(tenant, *id));
            if self.document(tenant, *id).is_some() {
                self.documents.remove(id);
            }
        }
    }

    /// Bytes of the tenant's documents.
    fn storage_used(&self, tenant: TenantId) -> u64 {
        self.documents
            .values()
            .filter(|d| d.tenant_id == tenant)
            .fold(0u64, |sum, d| sum.saturating_add(d.bytes))
    }

    /// The tenants with a due job, the one to serve first first, each with its count of
    /// jobs running under a live lease.
    fn candidate_tenants(&self, now: OffsetDateTime) -> Vec<(TenantId, usize)> {
        // tenant -> (running under a live lease, last served, oldest due run_at); `None`
        // (never served) sorts first, as in the SQL adapter.
        type Rank = (usize, Option<OffsetDateTime>, Option<OffsetDateTime>);
        let mut tenants: BTreeMap<TenantId, Rank> = BTreeMap::new();
        for row in self.jobs.values() {
            let entry = tenants.entry(row.job.tenant_id).or_default();
            if row.is_running_at(now) {
                entry.0 += 1;
            }
            entry.1 = entry.1.max(row.claimed_at);
            if row.is_due(now) {
                entry.2 = Some(entry.2.map_or(row.job.run_at, |o| o.min(row.job.run_at)));
            }
        }
        let mut due: Vec<(usize, Option<OffsetDateTime>, OffsetDateTime, TenantId)> = tenants
            .into_iter()
            .filter_map(|(tenant, (running, served, oldest))| {
                oldest.map(|o| (running, served, o, tenant))
            })
            .collect();
        due.sort();
        due.into_iter()
            .map(|(running, .., tenant)| (tenant, running))
            .collect()
    }

    /// The tenant's oldest due job (`run_at`, then id).
    fn oldest_due(&self, tenant: TenantId, now: OffsetDateTime) -> Option<JobId> {
        self.jobs
            .values()
            .filter(|r| r.job.tenant_id == tenant && r.is_due(now))
            .min_by_key(|r| (r.job.run_at, r.job.id))
            .map(|r| r.job.id)
    }

    /// Sets the job's document, if it has one and it still exists, to `status` (and
    /// `progress`, `error`), and its stage and units to `running`'s (none: cleared).
    fn set_document(
        &mut self,
        job: &Job,
        status: DocumentStatus,
        progress: Option<f32>,
        running: Option<&Progress>,
        error: Option<Option<&str>>,
        now: OffsetDateTime,
    ) {
        let Some(id) = job.document_id else {
            return;
        };
        if let Some(d) = self.document_mut(job.tenant_id, id) {
            d.status = status;
            d.updated_at = now;
            d.stage = running.map(|p| p.stage);
            d.done = running.map_or(0, |p| p.done);
            d.total = running.map_or(0, |p| p.total);
            if let Some(p) = progress {
                d.progress = p;
            }
            if let Some(e) = error {
                d.error = e.map(str::to_owned);
            }
        }
    }

    /// The job under `claim`, if the claim still holds it.
    fn held_mut(&mut self, claim: &Claim) -> Option<&mut JobRow> {
        self.jobs
            .get_mut(&claim.job.id)
            .filter(|r| r.job.tenant_id == claim.job.tenant_id && r.is_held_by(claim))
    }
}

/// Collections, documents, chunks and jobs of every tenant, in maps under one lock.
#[derive(Debug)]
pub struct InMemoryDocuments {
    tables: Mutex<Tables>,
    clock: Arc<dyn Clock>,
}

impl InMemoryDocuments {
    /// An empty store; `clock` stamps the heartbeats (as the SQL store's clock does).
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            tables: Mutex::new(Tables::default()),
            clock,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("in-memory documents: lock poisoned")))
    }

    /// Removes everything of `tenant` (collections, documents, chunks, jobs): what deleting
    /// an organization does on SQL through its cascading foreign keys.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn remove_tenant(&self, tenant: TenantId) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        t.collections.retain(|_, c| c.tenant_id != tenant);
        t.documents.retain(|_, d| d.tenant_id != tenant);
        t.chunks.retain(|(owner, _), _| *owner != tenant);
        t.jobs.retain(|_, r| r.job.tenant_id != tenant);
        Ok(())
    }

    /// Calls `f` with every stored chunk of `tenant` and its document, under the lock: read
    /// access for the in-memory retrieval adapters (`crate::retrieval`).
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn for_each_chunk(
        &self,
        tenant: TenantId,
        mut f: impl FnMut(&Document, &Chunk),
    ) -> Result<(), StoreError> {
        let t = self.lock()?;
        for ((owner, id), chunks) in &t.chunks {
            if *owner != tenant {
                continue;
            }
            if let Some(document) = t.document(tenant, *id) {
                for chunk in chunks {
                    f(document, chunk);
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every document of `tenant`, under the lock.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn for_each_document(
        &self,
        tenant: TenantId,
        mut f: impl FnMut(&Document),
    ) -> Result<(), StoreError> {
        let t = self.lock()?;
        for document in t.documents.values().filter(|d| d.tenant_id == tenant) {
            f(document);
        }
        Ok(())
    }

    /// Whether `tenant` has the document `id`.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn has_document(&self, tenant: TenantId, id: DocumentId) -> Result<bool, StoreError> {
        Ok(self.lock()?.document(tenant, id).is_some())
    }

    /// `tenant`'s collection `id`, if it exists.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn collection(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<Option<Collection>, StoreError> {
        Ok(self.lock()?.collection(tenant, id).cloned())
    }
}

/// `t` in UTC, truncated to microseconds: the queue's times, as SQL keeps them.
fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    kernel::clock::truncate_to_micros(t.to_offset(UtcOffset::UTC))
}

/// A count in the domain's type; out of range is a storage error (as on SQL).
fn fit<T, U>(value: T, what: &'static str) -> Result<U, StoreError>
where
    T: Copy + std::fmt::Display,
    U: TryFrom<T>,
{
    U::try_from(value)
        .map_err(|_| StoreError::Unknown(anyhow::anyhow!("{what} out of range: {value}")))
}

/// A progress value as stored: finite, in 0..=1.
fn clamp_progress(p: f32) -> f32 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The ordinal after which a page of chunks starts (the cursor's key), as on SQL: a number
/// that fits a signed 32-bit column.
fn after_ordinal(page: &PageRequest) -> Result<Option<u32>, InvalidInput> {
    page.after()
        .map(|c| {
            c.key()
                .parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| InvalidInput::field("cursor", "is not a valid cursor"))
        })
        .transpose()
}

/// Refuses a chunk the SQL columns cannot hold (32-bit ordinal, tokens and page; 64-bit
/// offsets, all signed), so both adapters accept the same chunks.
fn fits_a_row(c: &ChunkDraft) -> Result<(), StoreError> {
    fit::<u32, i32>(c.ordinal, "ordinal")?;
    fit::<u32, i32>(c.tokens, "chunk tokens")?;
    c.page.map(|p| fit::<u32, i32>(p, "page")).transpose()?;
    fit::<u64, i64>(c.start, "chunk start")?;
    fit::<u64, i64>(c.end, "chunk end")?;
    Ok(())
}

fn overfetch(page: &PageRequest) -> usize {
    usize::try_from(page.limit())
        .unwrap_or(usize::MAX)
        .saturating_add(1)
}

#[async_trait]
impl CollectionRepository for InMemoryDocuments {
    async fn create(&self, collection: Collection) -> Result<Collection, StoreError> {
        let mut t = self.lock()?;
        if t.collections.contains_key(&collection.id) {
            return Err(anyhow::anyhow!("storing a collection: the id is taken").into());
        }
        t.collections.insert(collection.id, collection.clone());
        Ok(collection)
    }

    async fn find(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<Option<Collection>, StoreError> {
        Ok(self.lock()?.collection(tenant, id).cloned())
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Collection>, StoreError> {
        let after = page.after_uuid()?.map(CollectionId::from_uuid);
        let t = self.lock()?;
        let rows: Vec<Collection> = t
            .collections
            .values()
            .filter(|c| c.tenant_id == tenant && after.is_none_or(|a| c.id > a))
            .take(overfetch(page))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page, |c| c.id.to_string()))
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: CollectionId,
        patch: CollectionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Collection>, StoreError> {
        let mut t = self.lock()?;
        let Some(c) = t.collections.get_mut(&id).filter(|c| c.tenant_id == tenant) else {
            return Ok(None);
        };
        c.updated_at = now;
        if let Some(name) = patch.name {
            c.name = name;
        }
        if let Some(description) = patch.description {
            c.description = description;
        }
        if let Some(chunking) = patch.chunking {
            c.chunking = chunking;
        }
        if let Some(languages) = patch.ocr_languages {
            c.ocr_languages = languages;
        }
        if let Some(model) = patch.embedding_model {
            c.embedding_model = model;
        }
        if let Some(n) = patch.rerank_top_n {
            c.rerank_top_n = n;
        }
        Ok(Some(c.clone()))
    }

    async fn delete(
        &self,
        tenant: TenantId,
        id: CollectionId,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<BlobKey>>, StoreError> {
        let mut t = self.lock()?;
        if t.collection(tenant, id).is_none() {
            return Ok(None);
        }
        let (ids, keys): (Vec<DocumentId>, Vec<BlobKey>) = t
            .documents
            .values()
            .filter(|d| d.tenant_id == tenant && d.collection_id == Some(id))
            .map(|d| (d.id, d.blob_key.clone()))
            .unzip();
        t.cancel_unfinished(tenant, &ids, now);
        t.remove_documents(tenant, &ids);
        t.collections.remove(&id);
        Ok(Some(keys))
    }

    async fn stats(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<CollectionStats, StoreError> {
        let t = self.lock()?;
        let mut stats = CollectionStats::default();
        for d in t
            .documents
            .values()
            .filter(|d| d.tenant_id == tenant && d.collection_id == Some(id))
        {
            stats.documents += 1;
            stats.chunks += u64::from(d.chunks);
            stats.tokens = stats.tokens.saturating_add(d.tokens);
            stats.bytes = stats.bytes.saturating_add(d.bytes);
        }
        Ok(stats)
    }
}

#[async_trait]
impl DocumentRepository for InMemoryDocuments {
    async fn create_within(
        &self,
        document: Document,
        job: Job,
        storage_limit: Option<u64>,
    ) -> Result<Stored, StoreError> {
        let mut t = self.lock()?;
        // What the SQL schema refuses: a taken id, an unknown collection (foreign key).
        if t.documents.contains_key(&document.id) || t.jobs.contains_key(&job.id) {
            return Err(anyhow::anyhow!("storing a document: the id is taken").into());
        }
        if let Some(c) = document.collection_id
            && t.collection(document.tenant_id, c).is_none()
        {
            return Err(anyhow::anyhow!("storing a document: no such collection").into());
        }
        if let Some(limit) = storage_limit {
            let used = t.storage_used(document.tenant_id);
            if used.saturating_add(document.bytes) > limit {
                return Ok(Stored::OverLimit { used });
            }
        }
        t.documents.insert(document.id, document);
        insert_job(&mut t, job);
        Ok(Stored::Created)
    }

    async fn storage_used(&self, tenant: TenantId) -> Result<u64, StoreError> {
        Ok(self.lock()?.storage_used(tenant))
    }

    async fn find(&self, tenant: TenantId, id: DocumentId) -> Result<Option<Document>, StoreError> {
        Ok(self.lock()?.document(tenant, id).cloned())
    }

    async fn find_duplicate(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        let t = self.lock()?;
        Ok(t.documents
            .values()
            .rev()
            .find(|d| {
                d.tenant_id == tenant
                    && d.collection_id == collection
                    && d.content_hash == content_hash
                    && d.status != DocumentStatus::Failed
            })
            .cloned())
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, StoreError> {
        let before = page.after_uuid()?.map(DocumentId::from_uuid);
        let t = self.lock()?;
        let rows: Vec<Document> = t
            .documents
            .values()
            .rev()
            .filter(|d| {
                d.tenant_id == tenant
                    && filter
                        .collection_id
                        .is_none_or(|c| d.collection_id == Some(c))
                    && filter.status.is_none_or(|s| d.status == s)
                    && before.is_none_or(|b| d.id < b)
            })
            .take(overfetch(page))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page, |d| d.id.to_string()))
    }

    async fn chunks(
        &self,
        tenant: TenantId,
        id: DocumentId,
        page: &PageRequest,
    ) -> Result<Page<Chunk>, StoreError> {
        let after = after_ordinal(page)?;
        let t = self.lock()?;
        let rows: Vec<Chunk> = t
            .chunks
            .get(&(tenant, id))
            .map(|chunks| {
                chunks
                    .iter()
                    .filter(|c| after.is_none_or(|a| c.ordinal > a))
                    .take(overfetch(page))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Page::from_overfetch(rows, page, |c| c.ordinal.to_string()))
    }

    async fn delete(
        &self,
        tenant: TenantId,
        id: DocumentId,
        now: OffsetDateTime,
    ) -> Result<Option<BlobKey>, StoreError> {
        let mut t = self.lock()?;
        let Some(key) = t.document(tenant, id).map(|d| d.blob_key.clone()) else {
            return Ok(None);
        };
        t.cancel_unfinished(tenant, &[id], now);
        t.remove_documents(tenant, &[id]);
        Ok(Some(key))
    }

    async fn reindex(
        &self,
        tenant: TenantId,
        id: DocumentId,
        job: Job,
    ) -> Result<Option<Document>, StoreError> {
        if job.tenant_id != tenant || job.document_id != Some(id) {
            return Err(anyhow::anyhow!("a reindex job must name its tenant and document").into());
        }
        let mut t = self.lock()?;
        if t.document(tenant, id).is_none() {
            return Ok(None);
        }
        if t.jobs.contains_key(&job.id) {
            return Err(anyhow::anyhow!("queueing a job: the id is taken").into());
        }
        // The job's creation is the moment of the change.
        let now = job.created_at;
        let job_id = job.id;
        t.cancel_unfinished(tenant, &[id], now);
        insert_job(&mut t, job);
        let Some(d) = t.document_mut(tenant, id) else {
            return Ok(None);
        };
        d.status = DocumentStatus::Queued;
        d.progress = 0.0;
        d.stage = None;
        d.done = 0;
        d.total = 0;
        d.error = None;
        d.job_id = Some(job_id);
        d.updated_at = now;
        Ok(Some(d.clone()))
    }
}

/// Stores a new job, its times as the queue keeps them.
fn insert_job(t: &mut Tables, mut job: Job) {
    job.run_at = utc_micros(job.run_at);
    job.created_at = utc_micros(job.created_at);
    job.finished_at = job.finished_at.map(utc_micros);
    t.jobs.insert(
        job.id,
        JobRow {
            job,
            lease_token: None,
            lease_until: None,
            claimed_at: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use kernel::Cursor;

    use super::*;

    #[test]
    fn chunk_cursors_are_ordinals() {
        let first = PageRequest::first(10).expect("page");
        assert_eq!(after_ordinal(&first), Ok(None));
        assert_eq!(
            after_ordinal(&first.next(Cursor::after("41"))),
            Ok(Some(41))
        );
        for bad in ["-1", "x", "4294967295", "2147483648", ""] {
            let err = after_ordinal(&first.next(Cursor::after(bad))).expect_err(bad);
            assert_eq!(err.0[0].field, "cursor");
        }
    }

    #[test]
    fn progress_is_clamped() {
        assert!((clamp_progress(0.5) - 0.5).abs() < f32::EPSILON);
        assert!((clamp_progress(3.0) - 1.0).abs() < f32::EPSILON);
        assert!(clamp_progress(f32::NAN).abs() < f32::EPSILON);
        assert!(clamp_progress(-1.0).abs() < f32::EPSILON);
    }

    #[test]
    fn queue_times_are_utc_microseconds() {
        let t = time::macros::datetime!(2026-11-22 10:00:00.123_456_789 +02:00);
        assert_eq!(
            utc_micros(t),
            time::macros::datetime!(2026-11-22 08:00:00.123_456 UTC)
        );
        assert_eq!(utc_micros(t).offset(), UtcOffset::UTC);
    }
}
