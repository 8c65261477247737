//! Ports of the documents domain: storage of collections, documents, chunks and jobs; the blob
//! store for original files; extraction and chunking.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::audit::AuditLog;
use kernel::{Clock, InvalidInput, Page, PageRequest, Principal, TenantContext, TenantId, UserId};
use time::OffsetDateTime;

use crate::model::{
    BlobKey, Chunk, ChunkDraft, ChunkingSettings, Claim, Collection, CollectionId, CollectionPatch,
    CollectionStats, Document, DocumentFilter, DocumentId, ExtractLimits, ExtractedText, Format,
    Job, JobFilter, JobId, JobStatus, NewChunk, OcrLanguages, Progress,
};
use crate::recent::RecentLists;

/// Failures of the storage ports of this domain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores collections.
///
/// Contract (checked on every adapter by `testkit::contract::documents`): every method is
/// scoped to `tenant`; another tenant's collection is "not found".
#[async_trait]
pub trait CollectionRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new collection.
    async fn create(&self, collection: Collection) -> Result<Collection, StoreError>;

    /// The collection with this id.
    async fn find(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<Option<Collection>, StoreError>;

    /// The tenant's collections, oldest first.
    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Collection>, StoreError>;

    /// Applies `patch`; `Ok(None)` when there is no such collection.
    async fn update(
        &self,
        tenant: TenantId,
        id: CollectionId,
        patch: CollectionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Collection>, StoreError>;

    /// Deletes the collection with its documents and chunks, and cancels their jobs, in one
    /// transaction. Returns the blob keys of the deleted documents (for the caller to remove),
    /// or `Ok(None)` when there is no such collection.
    async fn delete(
        &self,
        tenant: TenantId,
        id: CollectionId,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<BlobKey>>, StoreError>;

    /// Totals over the collection's documents.
    async fn stats(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<CollectionStats, StoreError>;
}

/// What [`DocumentRepository::create_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The document and its job are stored.
    Created,
    /// Nothing was stored: the tenant's documents already take `used` bytes, and this one
    /// would pass the limit.
    OverLimit {
        /// Bytes of the tenant's documents at the time of the check.
        used: u64,
    },
}

/// Stores documents and their chunks.
///
/// Contract: every method is scoped to `tenant`; another tenant's document is "not found".
#[async_trait]
pub trait DocumentRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new document and its first job, atomically, with no storage limit.
    async fn create(&self, document: Document, job: Job) -> Result<(), StoreError> {
        match self.create_within(document, job, None).await? {
            Stored::Created => Ok(()),
            Stored::OverLimit { .. } => Err(anyhow::anyhow!("no limit was passed").into()),
        }
    }

    /// Stores a new document and its first job, atomically, if the bytes of the tenant's
    /// documents (every status; see [`DocumentRepository::storage_used`]) plus this one stay
    /// within `storage_limit`. The check and the insert are one step for concurrent callers:
    /// two uploads racing for the last free bytes never both pass.
    async fn create_within(
        &self,
        document: Document,
        job: Job,
        storage_limit: Option<u64>,
    ) -> Result<Stored, StoreError>;

    /// Bytes of the original files of the tenant's documents (every status: a failed
    /// document's file is still kept). Deleted documents no longer count.
    async fn storage_used(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// The document with this id.
    async fn find(&self, tenant: TenantId, id: DocumentId) -> Result<Option<Document>, StoreError>;

    /// A document of the same content (SHA-256, hex) in the same collection (or in none),
    /// that has not failed.
    async fn find_duplicate(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError>;

    /// The tenant's documents, newest first.
    async fn list(
        &self,
        tenant: TenantId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, StoreError>;

    /// A document's chunks in order (the cursor is the ordinal).
    async fn chunks(
        &self,
        tenant: TenantId,
        id: DocumentId,
        page: &PageRequest,
    ) -> Result<Page<Chunk>, StoreError>;

    /// Deletes the document and its chunks and cancels its jobs, in one transaction. Returns
    /// its blob key (for the caller to remove), or `Ok(None)` when there is no such document.
    async fn delete(
        &self,
        tenant: TenantId,
        id: DocumentId,
        now: OffsetDateTime,
    ) -> Result<Option<BlobKey>, StoreError>;

    /// Queues `job` for the document, cancelling its unfinished jobs, and sets the document
    /// back to `queued`, atomically; `Ok(None)` when there is no such document.
    async fn reindex(
        &self,
        tenant: TenantId,
        id: DocumentId,
        job: Job,
    ) -> Result<Option<Document>, StoreError>;
}

/// What a finished ingestion stores.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// Pages (PDF).
    pub pages: Option<u32>,
    /// Pages read by OCR.
    pub ocr_pages: u32,
    /// The chunks, in order, with the ids they are stored under.
    pub chunks: Vec<NewChunk>,
}

/// How a failed run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A transient error: the job runs again at this time; the document stays queued.
    RetryAt(OffsetDateTime),
    /// A service the job needs was down (cache, database, embedding provider): the job runs
    /// again at this time and the run does not count as an attempt (`attempts` goes back to
    /// what it was before the claim), so an outage of any length never ends a job; the
    /// document stays queued.
    Release(OffsetDateTime),
    /// For good: the job ends with this status (`failed` or `dead`) and the document `failed`.
    Final(JobStatus),
}

/// The durable job queue.
///
/// Contract (checked on SQLite and PostgreSQL by `testkit::contract::jobs`):
/// - `claim` hands each due job to exactly one caller, however many claim at once, fairly
///   across tenants (the tenant with the fewest running jobs first, then the oldest job), and
///   takes over jobs whose lease expired (their worker died);
/// - every later write names the [`Claim`]; once its lease is lost (expired and taken over,
///   or the job cancelled), writes change nothing and answer `false`.
///   A tenant that already runs `per_tenant` jobs under live leases is skipped by
///   [`JobQueue::claim_within`], so no tenant holds every worker; the cap holds for claims
///   made at the same moment too.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// The job with this id.
    async fn find(&self, tenant: TenantId, id: JobId) -> Result<Option<Job>, StoreError>;

    /// The tenant's jobs, newest first.
    async fn list(
        &self,
        tenant: TenantId,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<Job>, StoreError>;

    /// Leases the next due job until `now + lease`, with no cap per tenant; `Ok(None)` when
    /// none is due.
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        self.claim_within(now, lease, u32::MAX).await
    }

    /// Leases the next due job until `now + lease` of a tenant running fewer than
    /// `per_tenant` jobs under live leases; `Ok(None)` when none is due (or every tenant with
    /// a due job is at its cap).
    async fn claim_within(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        per_tenant: u32,
    ) -> Result<Option<Claim>, StoreError>;

    /// Records progress and extends the lease (the heartbeat); the document shows
    /// `processing` with the same progress (stage, fraction, units done of total).
    async fn progress(
        &self,
        claim: &Claim,
        progress: Progress,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Stores the chunks (replacing any earlier ones), marks the document `ready` and the job
    /// `succeeded`, atomically.
    async fn complete(
        &self,
        claim: &Claim,
        result: Ingested,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Records a failed run (see [`Failure`]) with its error.
    async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        failure: Failure,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Cancels the job (its document is gone).
    async fn cancel(&self, claim: &Claim, now: OffsetDateTime) -> Result<bool, StoreError>;
}

/// Failures of the [`BlobStore`].
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob has this key.
    #[error("no such blob")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Keeps original files. Keys come from [`BlobKey`]; the store never sees a client's file
/// name. Shaped for object stores too: a write is a stream of parts made visible at once by
/// `commit` (a rename on a filesystem, the completion of a multipart upload on S3).
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Starts writing the blob `key`; nothing is visible until [`BlobWriter::commit`].
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError>;

    /// The whole blob.
    async fn read(&self, key: &BlobKey) -> Result<Vec<u8>, BlobError>;

    /// The blob part by part (at most [`BLOB_PART_SIZE`] bytes in memory at a time), for
    /// what is streamed out: a download. A blob deleted while it is read ends in an error.
    async fn open(&self, key: &BlobKey) -> Result<Box<dyn BlobReader>, BlobError>;

    /// Removes the blob; removing a missing blob succeeds.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;

    /// Removes every blob of `tenant` (keys under [`BlobKey::tenant_prefix`]), erasing an
    /// organization; returns how many. Removing none succeeds.
    async fn delete_tenant(&self, tenant: TenantId) -> Result<u64, BlobError>;

    /// Short name of the backend (`filesystem`).
    fn backend(&self) -> &'static str;
}

/// The most bytes a [`BlobReader`] returns in one part: 1 MiB.
pub const BLOB_PART_SIZE: usize = 1 << 20;

/// One blob being read, part by part.
#[async_trait]
pub trait BlobReader: Send + std::fmt::Debug {
    /// The blob's size in bytes (what the parts add up to).
    fn size(&self) -> u64;

    /// The next part (1 to [`BLOB_PART_SIZE`] bytes), `None` after the last.
    async fn next_part(&mut self) -> Result<Option<Vec<u8>>, BlobError>;
}

/// One blob being written. Dropped without `commit`, it leaves nothing behind.
#[async_trait]
pub trait BlobWriter: Send + std::fmt::Debug {
    /// Appends bytes.
    async fn write(&mut self, part: &[u8]) -> Result<(), BlobError>;

    /// Makes the blob visible under its key, durably.
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
}

/// Why a file's format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The content is no format Quire reads.
    #[error("the content is not a supported format (PDF, DOCX, HTML, Markdown, text, CSV)")]
    Unknown,
    /// The extension is not one Quire accepts.
    #[error("the extension .{0} is not accepted")]
    Extension(String),
    /// The content and the extension disagree.
    #[error("the content is {detected} but the file name ends in .{extension}")]
    Mismatch {
        /// What the content is.
        detected: Format,
        /// The extension given.
        extension: String,
    },
}

/// Why extraction failed. All but [`ExtractError::Unavailable`] are permanent: the same file
/// fails the same way again.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The PDF is encrypted.
    #[error("the PDF is encrypted; upload an unprotected copy")]
    Encrypted,
    /// The PDF has more pages than allowed.
    #[error("the PDF has {pages} pages; at most {limit} are accepted")]
    TooManyPages {
        /// Pages in the file.
        pages: u32,
        /// The limit.
        limit: u32,
    },
    /// The file expands beyond the limits (a zip bomb, too much text).
    #[error("the file is too large once expanded: {0}")]
    TooLarge(String),
    /// The file holds no extractable text (a scanned PDF, an empty file).
    #[error("the file contains no extractable text")]
    NoText,
    /// The file holds no text layer, and OCR could not read it (the tool is missing, a
    /// language is not installed, time ran out); the reason names which.
    #[error("the file contains no extractable text, and OCR could not read it: {0}")]
    OcrFailed(String),
    /// The file is damaged or not what it claims to be.
    #[error("the file could not be read: {0}")]
    Corrupt(String),
    /// The extractor crashed on this file (a panic, a stack overflow, the memory limit).
    #[error("the file could not be read: the extractor failed on it ({0})")]
    Crashed(String),
    /// The extractor ran out of time.
    #[error("the file could not be read within {0} seconds")]
    TimedOut(u64),
    /// The extractor could not be run at all (transient).
    #[error("the extractor is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl ExtractError {
    /// What a client is told: the message, except that a crash's reason (a signal, the
    /// child's last words) stays in the log.
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            ExtractError::Crashed(_) => {
                "the file could not be read: the extractor failed on it".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Whether running again may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, ExtractError::Unavailable(_))
    }
}

/// Where an extraction tells how far it is, as it goes. Called from the extraction's own
/// thread: it must be quick and never block.
pub trait ExtractProgress: Send + Sync {
    /// `done` of the file's `total` pages are read.
    fn pages(&self, done: u32, total: u32);
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ExtractProgress for NoProgress {
    fn pages(&self, _done: u32, _total: u32) {}
}

/// Reads text out of files.
#[async_trait]
pub trait Extractor: Send + Sync + std::fmt::Debug {
    /// Decides the format from the first bytes of the content (up to 64 KiB) and the file
    /// name's extension, if any: the content decides, the extension must agree.
    ///
    /// # Errors
    /// [`DetectError`] when the content is unsupported or the extension disagrees.
    fn detect(&self, name: Option<&str>, head: &[u8]) -> Result<Format, DetectError>;

    /// Extracts the text of `bytes`, isolated so that no file can take the process down.
    /// Scanned pages are read by OCR in `ocr_languages` (`None`: the extractor's default)
    /// when the extractor has OCR.
    ///
    /// # Errors
    /// [`ExtractError`] naming why.
    async fn extract(
        &self,
        format: Format,
        bytes: Vec<u8>,
        limits: ExtractLimits,
        ocr_languages: Option<OcrLanguages>,
    ) -> Result<ExtractedText, ExtractError> {
        self.extract_reporting(format, bytes, limits, ocr_languages, Arc::new(NoProgress))
            .await
    }

    /// [`Extractor::extract`], telling `progress` the pages read as it goes (PDF; the other
    /// formats are unpaged and report nothing).
    ///
    /// # Errors
    /// [`ExtractError`] naming why.
    async fn extract_reporting(
        &self,
        format: Format,
        bytes: Vec<u8>,
        limits: ExtractLimits,
        ocr_languages: Option<OcrLanguages>,
        progress: Arc<dyn ExtractProgress>,
    ) -> Result<ExtractedText, ExtractError>;

    /// [`Extractor::extract_reporting`] of a file of `tenant`. An extractor that reuses its
    /// isolated workers across files may give this file one that has read earlier files of
    /// `tenant`, never one that has read another tenant's. The default is
    /// [`Extractor::extract_reporting`].
    ///
    /// # Errors
    /// [`ExtractError`] naming why.
    async fn extract_for(
        &self,
        tenant: TenantId,
        format: Format,
        bytes: Vec<u8>,
        limits: ExtractLimits,
        ocr_languages: Option<OcrLanguages>,
        progress: Arc<dyn ExtractProgress>,
    ) -> Result<ExtractedText, ExtractError> {
        let _ = tenant;
        self.extract_reporting(format, bytes, limits, ocr_languages, progress)
            .await
    }

    /// How extraction is isolated (`process` or `thread`), for `GET /documents/formats`.
    fn isolation(&self) -> &'static str;
}

/// The storage each organization may use for original files (its plan's).
#[async_trait]
pub trait StorageLimits: Send + Sync + std::fmt::Debug {
    /// Bytes of original files `tenant` may keep; `None` for no limit.
    ///
    /// # Errors
    /// When the plan cannot be read.
    async fn storage_limit(&self, tenant: TenantId) -> Result<Option<u64>, anyhow::Error>;
}

/// No storage limit (the documents domain on its own).
#[derive(Debug, Default)]
pub struct NoStorageLimit;

#[async_trait]
impl StorageLimits for NoStorageLimit {
    async fn storage_limit(&self, _: TenantId) -> Result<Option<u64>, anyhow::Error> {
        Ok(None)
    }
}

/// Cuts extracted text into token windows.
#[async_trait]
pub trait Chunker: Send + Sync + std::fmt::Debug {
    /// The chunks of `text`: windows of at most `settings.max_tokens()` tokens that overlap by
    /// about `settings.overlap()` tokens and prefer paragraph and sentence boundaries. Each
    /// draft's `text` is exactly the characters `start..end` of `text.text`.
    ///
    /// # Errors
    /// When the tokenizer cannot be loaded.
    async fn chunk(
        &self,
        text: std::sync::Arc<ExtractedText>,
        settings: ChunkingSettings,
    ) -> Result<Vec<ChunkDraft>, anyhow::Error>;
}

/// Why indexing a document's chunks failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexFailure {
    /// Running again later may succeed (the embedding provider was unavailable). The message
    /// goes to the log only.
    #[error("{0}")]
    Transient(String),
    /// The same input fails the same way (the provider refused it, the quota is used up).
    /// The message is shown to the client as the document's error: no cause chain in it.
    #[error("{0}")]
    Permanent(String),
    /// A service indexing needs is down (the usage meter's cache, the embedding provider, the
    /// vector or document storage): nothing about the file, so the job waits for the service
    /// without using an attempt. The message goes to the log only.
    #[error("{0}")]
    Unavailable(String),
}

/// Makes stored chunks searchable: the retrieval side of ingestion (embeddings, vectors).
///
/// The pipeline calls `index` batch by batch before the chunks are stored (so a document is
/// `ready` only once it is searchable), then `finish` once they are.
#[async_trait]
pub trait ChunkIndexer: Send + Sync + std::fmt::Debug {
    /// Chunks per [`ChunkIndexer::index`] call; progress is reported between calls.
    fn batch_size(&self) -> usize;

    /// Checks that `model` names an embedding model this deployment has.
    ///
    /// # Errors
    /// [`InvalidInput`] on `embedding_model`, listing the models there are.
    fn check_model(&self, model: &str) -> Result<(), InvalidInput>;

    /// Embeds and indexes one batch of a document's new chunks.
    ///
    /// # Errors
    /// [`IndexFailure`] saying whether a retry may help.
    async fn index(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure>;

    /// After the chunks are stored: indexes them into any space created meanwhile and
    /// removes the vectors of the document's earlier chunks.
    ///
    /// # Errors
    /// [`IndexFailure`] saying whether a retry may help.
    async fn finish(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure>;

    /// Removes a deleted document's vectors.
    ///
    /// # Errors
    /// When storage fails.
    async fn remove_document(
        &self,
        tenant: TenantId,
        document: DocumentId,
    ) -> Result<(), anyhow::Error>;

    /// Removes a deleted collection's vectors.
    ///
    /// # Errors
    /// When storage fails.
    async fn remove_collection(
        &self,
        tenant: TenantId,
        collection: CollectionId,
    ) -> Result<(), anyhow::Error>;

    /// A collection was created or changed: when its embedding model changed, re-embedding
    /// starts in the background.
    ///
    /// # Errors
    /// When storage fails.
    async fn collection_changed(&self, collection: &Collection) -> Result<(), anyhow::Error>;
}

/// Indexes nothing: for the documents domain on its own (its pipeline tests).
#[derive(Debug, Default)]
pub struct NoIndexer;

#[async_trait]
impl ChunkIndexer for NoIndexer {
    fn batch_size(&self) -> usize {
        64
    }

    fn check_model(&self, model: &str) -> Result<(), InvalidInput> {
        Err(InvalidInput::field(
            "embedding_model",
            format!("no embedding model {model:?} here"),
        ))
    }

    async fn index(&self, _: &Document, _: &[NewChunk]) -> Result<(), IndexFailure> {
        Ok(())
    }

    async fn finish(&self, _: &Document, _: &[NewChunk]) -> Result<(), IndexFailure> {
        Ok(())
    }

    async fn remove_document(&self, _: TenantId, _: DocumentId) -> Result<(), anyhow::Error> {
        Ok(())
    }

    async fn remove_collection(&self, _: TenantId, _: CollectionId) -> Result<(), anyhow::Error> {
        Ok(())
    }

    async fn collection_changed(&self, _: &Collection) -> Result<(), anyhow::Error> {
        Ok(())
    }
}

/// Every adapter of the documents domain, as the composition root picks them. Each use case
/// takes only its share: [`DocumentPorts::for_collections`], [`DocumentPorts::for_uploads`],
/// [`DocumentPorts::for_ingestion`].
#[derive(Debug, Clone)]
pub struct DocumentPorts {
    /// Collections.
    pub collections: Arc<dyn CollectionRepository>,
    /// Documents and chunks.
    pub documents: Arc<dyn DocumentRepository>,
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Original files.
    pub blobs: Arc<dyn BlobStore>,
    /// Text extraction.
    pub extractor: Arc<dyn Extractor>,
    /// Chunking.
    pub chunker: Arc<dyn Chunker>,
    /// Embedding and vector indexing (retrieval).
    pub indexer: Arc<dyn ChunkIndexer>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Security events (deletions).
    pub audit: Arc<dyn AuditLog>,
    /// Pages of documents read lately (`Default`: none kept; see
    /// [`DocumentPorts::with_recheck`]).
    pub recent: RecentLists,
}

impl DocumentPorts {
    /// The share of the collections use cases.
    #[must_use]
    pub fn for_collections(&self) -> CollectionPorts {
        CollectionPorts {
            collections: self.collections.clone(),
            blobs: self.blobs.clone(),
            indexer: self.indexer.clone(),
            clock: self.clock.clone(),
            audit: self.audit.clone(),
        }
    }

    /// The share of the uploads, reads, deletes and reindexing of documents.
    #[must_use]
    pub fn for_uploads(&self) -> UploadPorts {
        UploadPorts {
            collections: self.collections.clone(),
            documents: self.documents.clone(),
            jobs: self.jobs.clone(),
            blobs: self.blobs.clone(),
            extractor: self.extractor.clone(),
            indexer: self.indexer.clone(),
            clock: self.clock.clone(),
            audit: self.audit.clone(),
            recent: self.recent.clone(),
        }
    }

    /// The share of the ingestion pipeline.
    #[must_use]
    pub fn for_ingestion(&self) -> IngestionPorts {
        IngestionPorts {
            collections: self.collections.clone(),
            documents: self.documents.clone(),
            jobs: self.jobs.clone(),
            blobs: self.blobs.clone(),
            extractor: self.extractor.clone(),
            chunker: self.chunker.clone(),
            indexer: self.indexer.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The adapters the collections use cases (`Collections`) use.
#[derive(Debug, Clone)]
pub struct CollectionPorts {
    /// Collections.
    pub collections: Arc<dyn CollectionRepository>,
    /// Original files (removed with their collection).
    pub blobs: Arc<dyn BlobStore>,
    /// The embedding models there are, re-embedding, and vectors to remove.
    pub indexer: Arc<dyn ChunkIndexer>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Security events (deletions).
    pub audit: Arc<dyn AuditLog>,
}

/// The adapters the uploads, reads, deletes and reindexing of documents (`Documents`) use.
#[derive(Debug, Clone)]
pub struct UploadPorts {
    /// Collections (an upload's collection must exist).
    pub collections: Arc<dyn CollectionRepository>,
    /// Documents and chunks.
    pub documents: Arc<dyn DocumentRepository>,
    /// The job queue (a job's state).
    pub jobs: Arc<dyn JobQueue>,
    /// Original files.
    pub blobs: Arc<dyn BlobStore>,
    /// Format detection, and extraction without storage.
    pub extractor: Arc<dyn Extractor>,
    /// Vectors to remove with a document.
    pub indexer: Arc<dyn ChunkIndexer>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Security events (deletions).
    pub audit: Arc<dyn AuditLog>,
    /// Pages of documents read lately.
    pub recent: RecentLists,
}

/// The adapters the ingestion pipeline (`Ingestion`) uses.
#[derive(Debug, Clone)]
pub struct IngestionPorts {
    /// Collections (their chunking settings).
    pub collections: Arc<dyn CollectionRepository>,
    /// Documents.
    pub documents: Arc<dyn DocumentRepository>,
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Original files.
    pub blobs: Arc<dyn BlobStore>,
    /// Text extraction.
    pub extractor: Arc<dyn Extractor>,
    /// Chunking.
    pub chunker: Arc<dyn Chunker>,
    /// Embedding and vector indexing (retrieval).
    pub indexer: Arc<dyn ChunkIndexer>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// A blob that could not be removed stays behind as an orphan: logged, never fatal (the rows
/// that named it are gone, so nothing can read it).
pub(crate) async fn remove_blob(blobs: &dyn BlobStore, key: &BlobKey) {
    if let Err(e) = blobs.delete(key).await {
        tracing::error!(error = ?e, blob = key.as_str(), "could not remove an original file");
    }
}

/// The user an audit event names as its actor (`None` for an API key).
pub(crate) fn actor(ctx: &TenantContext) -> Option<UserId> {
    match ctx.principal() {
        Principal::User(u) => Some(u),
        Principal::ApiKey(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_reason_is_not_shown() {
        let crash = ExtractError::Crashed("killed by signal 11; stderr: /tmp/x.rs:3".into());
        let shown = crash.public_message();
        assert!(!shown.contains("signal") && !shown.contains('/'), "{shown}");
        assert_eq!(
            ExtractError::Encrypted.public_message(),
            ExtractError::Encrypted.to_string()
        );
    }
}
