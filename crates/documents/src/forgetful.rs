//! The storage ports that forget what this process keeps from reads ([`crate::recent`]'s
//! pages of documents, and retrieval's checks through [`ForgetOnWrite`]) on every write made
//! through them: what makes a change made through this process show at once.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::{Page, PageRequest, TenantId};
use time::OffsetDateTime;

use crate::model::{
    BlobKey, Chunk, Claim, Collection, CollectionId, CollectionPatch, CollectionStats, Document,
    DocumentFilter, DocumentId, Job, JobId, Progress,
};
use crate::ports::{
    CollectionRepository, DocumentPorts, DocumentRepository, Failure, Ingested, JobQueue,
    StoreError, Stored,
};
use crate::recent::RecentLists;

impl DocumentPorts {
    /// These ports with pages of documents reused for `ttl` (0 = read every time, the
    /// default), and every write through them forgetting what was kept. See the module docs
    /// of `documents::recent`.
    #[must_use]
    pub fn with_recheck(mut self, ttl: std::time::Duration) -> Self {
        let recent = RecentLists::new(ttl);
        self.collections = forgetting_collections(self.collections, Arc::new(recent.clone()));
        self.documents = Arc::new(ForgetfulDocuments {
            inner: self.documents,
            recent: recent.clone(),
        });
        self.jobs = Arc::new(ForgetfulJobs {
            inner: self.jobs,
            recent: recent.clone(),
        });
        self.recent = recent;
        self
    }
}

/// What this process keeps from reads that a write made through it must forget at once (a
/// memo of pages or of checks). See [`forgetting_collections`].
pub trait ForgetOnWrite: std::fmt::Debug + Send + Sync {
    /// Forgets everything kept, reads under way included ([`kernel::memo::Memo::forget_all`]).
    fn forget_all(&self);
}

impl ForgetOnWrite for RecentLists {
    fn forget_all(&self) {
        self.forget(());
    }
}

/// `inner`, forgetting `kept` after every write of collections through it (create, update,
/// delete: whatever the write's outcome). Documents wraps its collections port with its kept
/// pages ([`DocumentPorts::with_recheck`]); retrieval with the checks a search reuses.
#[must_use]
pub fn forgetting_collections(
    inner: Arc<dyn CollectionRepository>,
    kept: Arc<dyn ForgetOnWrite>,
) -> Arc<dyn CollectionRepository> {
    Arc::new(ForgetfulCollections { inner, kept })
}

#[derive(Debug)]
struct ForgetfulCollections {
    inner: Arc<dyn CollectionRepository>,
    kept: Arc<dyn ForgetOnWrite>,
}

impl ForgetfulCollections {
    fn forget<T>(&self, result: T) -> T {
        self.kept.forget_all();
        result
    }
}

#[async_trait]
impl CollectionRepository for ForgetfulCollections {
    async fn create(&self, collection: Collection) -> Result<Collection, StoreError> {
        self.forget(self.inner.create(collection).await)
    }
    async fn find(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<Option<Collection>, StoreError> {
        self.inner.find(tenant, id).await
    }
    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Collection>, StoreError> {
        self.inner.list(tenant, page).await
    }
    async fn update(
        &self,
        tenant: TenantId,
        id: CollectionId,
        patch: CollectionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Collection>, StoreError> {
        self.forget(self.inner.update(tenant, id, patch, now).await)
    }
    async fn delete(
        &self,
        tenant: TenantId,
        id: CollectionId,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<BlobKey>>, StoreError> {
        self.forget(self.inner.delete(tenant, id, now).await)
    }
    async fn stats(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<CollectionStats, StoreError> {
        self.inner.stats(tenant, id).await
    }
}

/// Documents storage that forgets every kept page when a document is stored, deleted or
/// queued again.
#[derive(Debug)]
struct ForgetfulDocuments {
    inner: Arc<dyn DocumentRepository>,
    recent: RecentLists,
}

#[async_trait]
impl DocumentRepository for ForgetfulDocuments {
    async fn create_within(
        &self,
        document: Document,
        job: Job,
        storage_limit: Option<u64>,
    ) -> Result<Stored, StoreError> {
        self.recent
            .forget(self.inner.create_within(document, job, storage_limit).await)
    }
    async fn storage_used(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.inner.storage_used(tenant).await
    }
    async fn find(&self, tenant: TenantId, id: DocumentId) -> Result<Option<Document>, StoreError> {
        self.inner.find(tenant, id).await
    }
    async fn find_duplicate(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        self.inner
            .find_duplicate(tenant, collection, content_hash)
            .await
    }
    async fn list(
        &self,
        tenant: TenantId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, StoreError> {
        self.inner.list(tenant, filter, page).await
    }
    async fn chunks(
        &self,
        tenant: TenantId,
        id: DocumentId,
        page: &PageRequest,
    ) -> Result<Page<Chunk>, StoreError> {
        self.inner.chunks(tenant, id, page).await
    }
    async fn delete(
        &self,
        tenant: TenantId,
        id: DocumentId,
        now: OffsetDateTime,
    ) -> Result<Option<BlobKey>, StoreError> {
        self.recent.forget(self.inner.delete(tenant, id, now).await)
    }
    async fn reindex(
        &self,
        tenant: TenantId,
        id: DocumentId,
        job: Job,
    ) -> Result<Option<Document>, StoreError> {
        self.recent
            .forget(self.inner.reindex(tenant, id, job).await)
    }
}

/// The job queue that forgets every kept page when a job (and so its document's status or
/// progress) changes.
#[derive(Debug)]
struct ForgetfulJobs {
    inner: Arc<dyn JobQueue>,
    recent: RecentLists,
}

#[async_trait]
impl JobQueue for ForgetfulJobs {
    async fn find(&self, tenant: TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.find(tenant, id).await
    }
    async fn list(
        &self,
        tenant: TenantId,
        filter: &crate::JobFilter,
        page: &kernel::PageRequest,
    ) -> Result<kernel::Page<Job>, StoreError> {
        self.inner.list(tenant, filter, page).await
    }
    async fn claim_within(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        per_tenant: u32,
    ) -> Result<Option<Claim>, StoreError> {
        let claimed = self.inner.claim_within(now, lease, per_tenant).await;
        if matches!(claimed, Ok(None)) {
            // Nothing changed (the idle workers' polls must not empty the memo).
            return claimed;
        }
        self.recent.forget(claimed)
    }
    async fn progress(
        &self,
        claim: &Claim,
        progress: Progress,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.recent
            .forget(self.inner.progress(claim, progress, lease_until).await)
    }
    async fn complete(
        &self,
        claim: &Claim,
        result: Ingested,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.recent
            .forget(self.inner.complete(claim, result, now).await)
    }
    async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        failure: Failure,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.recent
            .forget(self.inner.fail(claim, error, failure, now).await)
    }
    async fn cancel(&self, claim: &Claim, now: OffsetDateTime) -> Result<bool, StoreError> {
        self.recent.forget(self.inner.cancel(claim, now).await)
    }
}
