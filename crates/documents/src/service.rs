//! The documents use cases: collections, uploads, reads, deletes and reindexing, and the
//! ingestion pipeline that a worker runs job by job.
//!
//! Who may call what is decided by the HTTP layer's tenant extractor (viewers read, members
//! upload and delete documents, admins manage collections); every call here is scoped to the
//! [`TenantContext`] it is given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kernel::audit::{self, AuditEvent, AuditLog};
use kernel::{ClientInfo, Clock, InvalidInput, Page, PageRequest, Principal, TenantContext};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::model::{
    BlobKey, Chunk, ChunkingSettings, Collection, CollectionId, CollectionName, CollectionPatch,
    CollectionStats, Document, DocumentFilter, DocumentId, DocumentStatus, ExtractLimits,
    ExtractedText, Format, Job, JobId, JobKind, JobStatus, MAX_METADATA_BYTES, NewChunk, Stage,
    display_name, parse_description,
};
use crate::ports::{
    BlobError, BlobStore, BlobWriter, ChunkIndexer, Chunker, CollectionRepository, DetectError,
    DocumentRepository, ExtractError, Extractor, Failure, IndexFailure, Ingested, JobQueue,
    NoStorageLimit, StorageLimits, StoreError, Stored,
};

/// Bytes of an upload's head that format detection looks at.
pub const DETECT_HEAD_BYTES: usize = 64 * 1024;

/// What the documents use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No such collection, document or job in this tenant.
    #[error("not found")]
    NotFound,
    /// The file is larger than the limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The organization's original files would pass its plan's storage.
    #[error(
        "the organization's storage is full: {used} of {limit} bytes are used; delete documents or change the plan"
    )]
    StorageFull {
        /// The plan's storage, in bytes.
        limit: u64,
        /// Bytes already stored.
        used: u64,
    },
    /// The format is not accepted, or content and name disagree.
    #[error(transparent)]
    Unsupported(#[from] DetectError),
    /// The organization already runs as many extractions without storage
    /// (`POST /documents/extract`) as it may at once in this process.
    #[error("this organization is already extracting as many files as it may at once")]
    Busy,
    /// Extraction failed (`POST /documents/extract`).
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<StoreError> for DocumentsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => DocumentsError::Invalid(i),
            StoreError::Unknown(e) => DocumentsError::Unknown(e),
        }
    }
}

impl From<BlobError> for DocumentsError {
    fn from(e: BlobError) -> Self {
        DocumentsError::Unknown(anyhow::Error::new(e).context("blob store"))
    }
}

/// Limits of uploads and extraction.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// What extraction enforces.
    pub extract: ExtractLimits,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 25 * 1024 * 1024,
            extract: ExtractLimits::default(),
        }
    }
}

/// How the ingestion pipeline retries and leases.
#[derive(Debug, Clone, Copy)]
pub struct IngestPolicy {
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// Runs before a job goes to the dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Jobs one tenant may run at once across every worker (claims skip a tenant at its
    /// cap), so that one tenant's slow files never hold every worker.
    pub max_running_per_tenant: u32,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3_600),
            max_running_per_tenant: u32::MAX,
        }
    }
}

impl IngestPolicy {
    /// The delay before retry number `attempt` (1 after the first failed run): exponential,
    /// capped.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// The adapters the documents use cases need.
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
}

/// Wakes workers when a job is queued (in this process; others poll).
pub trait JobSignal: Send + Sync + std::fmt::Debug {
    /// A job was queued.
    fn job_queued(&self);
}

/// A signal that wakes nobody (no workers in this process).
#[derive(Debug, Default)]
pub struct NoSignal;

impl JobSignal for NoSignal {
    fn job_queued(&self) {}
}

fn actor(ctx: &TenantContext) -> Option<kernel::UserId> {
    match ctx.principal() {
        Principal::User(u) => Some(u),
        Principal::ApiKey(_) => None,
    }
}

/// Collections (knowledge bases).
#[derive(Debug, Clone)]
pub struct Collections {
    ports: DocumentPorts,
}

/// A new collection, as a client asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewCollection {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Chunking settings; the default (400/40 on cl100k_base) when absent.
    pub chunking: Option<ChunkingSettings>,
    /// Embedding model; the configured default when absent.
    pub embedding_model: Option<String>,
}

impl Collections {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: DocumentPorts) -> Self {
        Self { ports }
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// [`DocumentsError::Invalid`] naming the failing fields.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        new: NewCollection,
    ) -> Result<Collection, DocumentsError> {
        let name = CollectionName::parse(&new.name);
        let description = parse_description(new.description.as_deref());
        let model = match new.embedding_model.as_deref() {
            Some(m) => self.ports.indexer.check_model(m),
            None => Ok(()),
        };
        let (name, description) = match (name, description, model) {
            (Ok(n), Ok(d), Ok(())) => (n, d),
            (n, d, m) => {
                let mut errors = Vec::new();
                for e in [n.err(), d.err(), m.err()].into_iter().flatten() {
                    errors.extend(e.0);
                }
                return Err(InvalidInput(errors).into());
            }
        };
        let now = self.ports.clock.now();
        Ok(self
            .ports
            .collections
            .create(Collection {
                id: CollectionId::new(),
                tenant_id: ctx.tenant_id(),
                name,
                description,
                chunking: new.chunking.unwrap_or_default(),
                embedding_model: new.embedding_model,
                created_at: now,
                updated_at: now,
            })
            .await?)
    }

    /// The collection.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`] when the tenant has no such collection.
    pub async fn get(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
    ) -> Result<Collection, DocumentsError> {
        self.ports
            .collections
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(DocumentsError::NotFound)
    }

    /// The tenant's collections, oldest first.
    ///
    /// # Errors
    /// On a foreign cursor or a storage failure.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Collection>, DocumentsError> {
        Ok(self.ports.collections.list(ctx.tenant_id(), page).await?)
    }

    /// Changes a collection. New chunking settings apply to documents ingested or reindexed
    /// afterwards; a new embedding model starts re-embedding in the background.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`], or [`DocumentsError::Invalid`].
    pub async fn update(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
        patch: CollectionPatch,
    ) -> Result<Collection, DocumentsError> {
        if let Some(Some(model)) = &patch.embedding_model {
            self.ports.indexer.check_model(model)?;
        }
        let model_changes = patch.embedding_model.is_some();
        let collection = self
            .ports
            .collections
            .update(ctx.tenant_id(), id, patch, self.ports.clock.now())
            .await?
            .ok_or(DocumentsError::NotFound)?;
        if model_changes {
            self.ports
                .indexer
                .collection_changed(&collection)
                .await
                .map_err(|e| e.context("starting re-embedding"))?;
        }
        Ok(collection)
    }

    /// Deletes a collection with all its documents, their chunks and original files.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn delete(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
        client: &ClientInfo,
    ) -> Result<(), DocumentsError> {
        let now = self.ports.clock.now();
        let keys = self
            .ports
            .collections
            .delete(ctx.tenant_id(), id, now)
            .await?
            .ok_or(DocumentsError::NotFound)?;
        for key in &keys {
            remove_blob(self.ports.blobs.as_ref(), key).await;
        }
        if let Err(e) = self
            .ports
            .indexer
            .remove_collection(ctx.tenant_id(), id)
            .await
        {
            tracing::error!(error = ?e, collection = %id, "could not remove a collection's vectors");
        }
        audit::record(
            self.ports.audit.as_ref(),
            AuditEvent {
                at: now,
                action: "documents.collection.deleted",
                actor: actor(ctx),
                tenant: Some(ctx.tenant_id()),
                target: Some(format!("{id} ({} documents)", keys.len())),
                client: client.clone(),
            },
        )
        .await;
        Ok(())
    }

    /// Totals of a collection.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn stats(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
    ) -> Result<CollectionStats, DocumentsError> {
        self.get(ctx, id).await?;
        Ok(self.ports.collections.stats(ctx.tenant_id(), id).await?)
    }
}

/// A blob that could not be removed stays behind as an orphan: logged, never fatal (the rows
/// that named it are gone, so nothing can read it).
async fn remove_blob(blobs: &dyn BlobStore, key: &BlobKey) {
    if let Err(e) = blobs.delete(key).await {
        tracing::error!(error = ?e, blob = key.as_str(), "could not remove an original file");
    }
}

/// Documents: uploads, reads, deletes, reindexing.
#[derive(Debug, Clone)]
pub struct Documents {
    ports: DocumentPorts,
    limits: DocumentLimits,
    signal: Arc<dyn JobSignal>,
    storage: Arc<dyn StorageLimits>,
    extracting: Arc<InFlight>,
}

/// Extractions without storage in flight per tenant in this process, and how many one tenant
/// may run at once: the extractor's slots are shared by every tenant (and by the workers), so
/// no tenant may take them all.
#[derive(Debug)]
struct InFlight {
    per_tenant: usize,
    counts: Mutex<HashMap<kernel::TenantId, usize>>,
}

impl InFlight {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<kernel::TenantId, usize>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more extraction of `tenant`, or `None` when it holds its share already.
    fn enter(self: &Arc<Self>, tenant: kernel::TenantId) -> Option<InFlightGuard> {
        let mut counts = self.counts();
        let n = counts.entry(tenant).or_insert(0);
        if *n >= self.per_tenant {
            return None;
        }
        *n += 1;
        Some(InFlightGuard {
            owner: Arc::clone(self),
            tenant,
        })
    }
}

/// Leaves [`InFlight`] when dropped (the extraction ended or its request went away).
struct InFlightGuard {
    owner: Arc<InFlight>,
    tenant: kernel::TenantId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.counts();
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// What an upload created.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The document (`queued`, or the earlier copy when `duplicate`).
    pub document: Document,
    /// Its job.
    pub job_id: Option<JobId>,
    /// The same content was already in this collection: nothing new was stored, and
    /// `document` is the earlier copy.
    pub duplicate: bool,
}

/// An upload in progress: the file streams into the blob store while its size is checked
/// against the limit, its hash computed, and its head kept for format detection.
#[derive(Debug)]
pub struct Upload {
    id: DocumentId,
    key: BlobKey,
    writer: Option<Box<dyn BlobWriter>>,
    hasher: Sha256,
    bytes: u64,
    limit: u64,
    /// The organization's storage limit when the upload began (checked again, atomically,
    /// when it is stored).
    storage_limit: Option<u64>,
    /// The limit and the bytes used when the upload began: a file past what was left is
    /// refused while it streams.
    room: Option<(u64, u64)>,
    head: Vec<u8>,
    name: Option<String>,
    format: Option<Format>,
}

impl Upload {
    /// The file's name as the client gave it (for the extension check and display).
    pub fn set_name(&mut self, name: Option<&str>) {
        self.name = name.map(str::to_owned);
    }

    /// Bytes received so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Documents {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: DocumentPorts, limits: DocumentLimits, signal: Arc<dyn JobSignal>) -> Self {
        Self {
            ports,
            limits,
            signal,
            storage: Arc::new(NoStorageLimit),
            extracting: Arc::new(InFlight {
                per_tenant: usize::MAX,
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// These use cases with at most `per_tenant` extractions without storage
    /// (`POST /documents/extract`) of one tenant at once (at least 1).
    #[must_use]
    pub fn with_extraction_share(mut self, per_tenant: usize) -> Self {
        self.extracting = Arc::new(InFlight {
            per_tenant: per_tenant.max(1),
            counts: Mutex::new(HashMap::new()),
        });
        self
    }

    /// These use cases with each organization's storage limited by `storage`.
    #[must_use]
    pub fn with_storage_limits(mut self, storage: Arc<dyn StorageLimits>) -> Self {
        self.storage = storage;
        self
    }

    /// The bytes of original files `tenant` keeps, and its limit (`None`: no limit), for the
    /// plan pages (`GET /billing/plan`, the administrators'); the caller has checked access.
    ///
    /// # Errors
    /// When storage or the plan cannot be read.
    pub async fn storage(
        &self,
        tenant: kernel::TenantId,
    ) -> Result<(u64, Option<u64>), DocumentsError> {
        let used = self.ports.documents.storage_used(tenant).await?;
        let limit = self.storage.storage_limit(tenant).await?;
        Ok((used, limit))
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> DocumentLimits {
        self.limits
    }

    /// How extraction is isolated.
    #[must_use]
    pub fn isolation(&self) -> &'static str {
        self.ports.extractor.isolation()
    }

    /// Starts an upload into the tenant's storage.
    ///
    /// # Errors
    /// [`DocumentsError::StorageFull`] when the organization has no storage left; when the
    /// blob store cannot start a write.
    pub async fn begin_upload(&self, ctx: &TenantContext) -> Result<Upload, DocumentsError> {
        let storage_limit = self.storage.storage_limit(ctx.tenant_id()).await?;
        let room = match storage_limit {
            Some(limit) => {
                let used = self.ports.documents.storage_used(ctx.tenant_id()).await?;
                if used >= limit {
                    return Err(DocumentsError::StorageFull { limit, used });
                }
                Some((limit, used))
            }
            None => None,
        };
        let id = DocumentId::new();
        let key = BlobKey::for_document(ctx.tenant_id(), id);
        let writer = self.ports.blobs.writer(&key).await?;
        Ok(Upload {
            id,
            key,
            writer: Some(writer),
            hasher: Sha256::new(),
            bytes: 0,
            limit: self.limits.max_file_bytes,
            storage_limit,
            room,
            head: Vec::new(),
            name: None,
            format: None,
        })
    }

    /// Appends a part of the file. Refuses as soon as the file passes the size limit or the
    /// organization's free storage, and as soon as the head shows an unsupported format.
    ///
    /// # Errors
    /// [`DocumentsError::TooLarge`], [`DocumentsError::StorageFull`],
    /// [`DocumentsError::Unsupported`], or a storage failure.
    pub async fn push(&self, upload: &mut Upload, part: &[u8]) -> Result<(), DocumentsError> {
        let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
        if upload.bytes.saturating_add(len) > upload.limit {
            return Err(DocumentsError::TooLarge {
                limit: upload.limit,
            });
        }
        if let Some((limit, used)) = upload.room
            && used.saturating_add(upload.bytes).saturating_add(len) > limit
        {
            return Err(DocumentsError::StorageFull { limit, used });
        }
        upload.bytes += len;
        upload.hasher.update(part);
        if upload.format.is_none() {
            let room = DETECT_HEAD_BYTES.saturating_sub(upload.head.len());
            upload.head.extend_from_slice(&part[..room.min(part.len())]);
            if upload.head.len() >= DETECT_HEAD_BYTES {
                upload.format = Some(
                    self.ports
                        .extractor
                        .detect(upload.name.as_deref(), &upload.head)?,
                );
            }
        }
        let writer = upload
            .writer
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the upload was already finished"))?;
        writer.write(part).await?;
        Ok(())
    }

    /// Ingests plain text without a file (`POST /vector/ingest`): stored as a text document
    /// named `name` and queued through the same pipeline as an upload, with the same size
    /// limit and the same duplicate rule.
    ///
    /// # Errors
    /// As [`Documents::finish_upload`], and [`DocumentsError::TooLarge`].
    pub async fn ingest_text(
        &self,
        ctx: &TenantContext,
        collection: Option<CollectionId>,
        name: &str,
        text: &str,
        metadata: Option<&str>,
    ) -> Result<Uploaded, DocumentsError> {
        let mut upload = self.begin_upload(ctx).await?;
        upload.set_name(Some(name));
        // Plain text by decree: no detection (text that looks like HTML stays text).
        upload.format = Some(Format::Text);
        self.push(&mut upload, text.as_bytes()).await?;
        self.finish_upload(ctx, upload, collection, metadata).await
    }

    /// Finishes an upload: detects the format (if the file was short), stores the file, and
    /// queues the document with its ingestion job. Identical content already in the same
    /// collection (and not failed) is not stored twice: the earlier document is answered
    /// with `duplicate: true`.
    ///
    /// # Errors
    /// [`DocumentsError::Invalid`] (empty file, unknown collection, bad metadata),
    /// [`DocumentsError::Unsupported`], [`DocumentsError::StorageFull`] (checked atomically
    /// with the insert, so parallel uploads never pass the limit together), or a storage
    /// failure. On any error nothing is kept.
    pub async fn finish_upload(
        &self,
        ctx: &TenantContext,
        mut upload: Upload,
        collection: Option<CollectionId>,
        metadata: Option<&str>,
    ) -> Result<Uploaded, DocumentsError> {
        if upload.bytes == 0 {
            return Err(InvalidInput::field("file", "the file is empty (or missing)").into());
        }
        let metadata = parse_metadata(metadata)?;
        if let Some(c) = collection
            && self
                .ports
                .collections
                .find(ctx.tenant_id(), c)
                .await?
                .is_none()
        {
            return Err(InvalidInput::field("collection_id", "no such collection").into());
        }
        let format = match upload.format {
            Some(f) => f,
            None => self
                .ports
                .extractor
                .detect(upload.name.as_deref(), &upload.head)?,
        };
        let hash = hex(&std::mem::take(&mut upload.hasher).finalize());
        if let Some(existing) = self
            .ports
            .documents
            .find_duplicate(ctx.tenant_id(), collection, &hash)
            .await?
        {
            // Dropping the writer uncommitted leaves nothing behind.
            return Ok(Uploaded {
                job_id: existing.job_id,
                document: existing,
                duplicate: true,
            });
        }
        let writer = upload
            .writer
            .take()
            .ok_or_else(|| anyhow::anyhow!("the upload was already finished"))?;
        writer.commit().await?;
        let now = self.ports.clock.now();
        let job = Job::for_document(ctx.tenant_id(), JobKind::Ingest, upload.id, now);
        let document = Document {
            id: upload.id,
            tenant_id: ctx.tenant_id(),
            collection_id: collection,
            name: display_name(upload.name.as_deref(), format),
            format,
            bytes: upload.bytes,
            content_hash: hash,
            pages: None,
            status: DocumentStatus::Queued,
            progress: 0.0,
            chunks: 0,
            tokens: 0,
            error: None,
            metadata,
            job_id: Some(job.id),
            blob_key: upload.key.clone(),
            created_at: now,
            updated_at: now,
        };
        let job_id = job.id;
        match self
            .ports
            .documents
            .create_within(document.clone(), job, upload.storage_limit)
            .await
        {
            Ok(Stored::Created) => {}
            Ok(Stored::OverLimit { used }) => {
                remove_blob(self.ports.blobs.as_ref(), &upload.key).await;
                return Err(DocumentsError::StorageFull {
                    limit: upload.storage_limit.unwrap_or_default(),
                    used,
                });
            }
            Err(e) => {
                remove_blob(self.ports.blobs.as_ref(), &upload.key).await;
                return Err(e.into());
            }
        }
        self.signal.job_queued();
        Ok(Uploaded {
            document,
            job_id: Some(job_id),
            duplicate: false,
        })
    }

    /// Extracts the text of a file without storing anything. A tenant runs at most its share
    /// of these at once (see [`Documents::with_extraction_share`]).
    ///
    /// # Errors
    /// [`DocumentsError::TooLarge`], [`DocumentsError::Unsupported`],
    /// [`DocumentsError::Busy`] past the tenant's share, or [`DocumentsError::Extract`] when
    /// the file cannot be read.
    pub async fn extract_only(
        &self,
        ctx: &TenantContext,
        name: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<(Format, ExtractedText), DocumentsError> {
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > self.limits.max_file_bytes {
            return Err(DocumentsError::TooLarge {
                limit: self.limits.max_file_bytes,
            });
        }
        if bytes.is_empty() {
            return Err(InvalidInput::field("file", "the file is empty (or missing)").into());
        }
        let head = &bytes[..bytes.len().min(DETECT_HEAD_BYTES)];
        let format = self.ports.extractor.detect(name, head)?;
        let _share = self
            .extracting
            .enter(ctx.tenant_id())
            .ok_or(DocumentsError::Busy)?;
        let text = self
            .ports
            .extractor
            .extract(format, bytes, self.limits.extract)
            .await?;
        Ok((format, text))
    }

    /// The document.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn get(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<Document, DocumentsError> {
        self.ports
            .documents
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(DocumentsError::NotFound)
    }

    /// The tenant's documents, newest first.
    ///
    /// # Errors
    /// On a foreign cursor or a storage failure.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, DocumentsError> {
        Ok(self
            .ports
            .documents
            .list(ctx.tenant_id(), filter, page)
            .await?)
    }

    /// A document's chunks, in order.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn chunks(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        page: &PageRequest,
    ) -> Result<Page<Chunk>, DocumentsError> {
        self.get(ctx, id).await?;
        Ok(self
            .ports
            .documents
            .chunks(ctx.tenant_id(), id, page)
            .await?)
    }

    /// Deletes a document: its chunks and job go in one transaction (so a client never sees
    /// half of it), then its original file.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn delete(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        client: &ClientInfo,
    ) -> Result<(), DocumentsError> {
        let now = self.ports.clock.now();
        let key = self
            .ports
            .documents
            .delete(ctx.tenant_id(), id, now)
            .await?
            .ok_or(DocumentsError::NotFound)?;
        remove_blob(self.ports.blobs.as_ref(), &key).await;
        if let Err(e) = self
            .ports
            .indexer
            .remove_document(ctx.tenant_id(), id)
            .await
        {
            tracing::error!(error = ?e, document = %id, "could not remove a document's vectors");
        }
        audit::record(
            self.ports.audit.as_ref(),
            AuditEvent {
                at: now,
                action: "documents.document.deleted",
                actor: actor(ctx),
                tenant: Some(ctx.tenant_id()),
                target: Some(id.to_string()),
                client: client.clone(),
            },
        )
        .await;
        Ok(())
    }

    /// Reruns the pipeline on a stored document (cancelling a run in progress).
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn reindex(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<JobId, DocumentsError> {
        let job = Job::for_document(
            ctx.tenant_id(),
            JobKind::Reindex,
            id,
            self.ports.clock.now(),
        );
        let job_id = job.id;
        self.ports
            .documents
            .reindex(ctx.tenant_id(), id, job)
            .await?
            .ok_or(DocumentsError::NotFound)?;
        self.signal.job_queued();
        Ok(job_id)
    }

    /// A job of the tenant.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn job(&self, ctx: &TenantContext, id: JobId) -> Result<Job, DocumentsError> {
        self.ports
            .jobs
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(DocumentsError::NotFound)
    }
}

/// Validates client metadata: a JSON object of at most 16 KiB.
///
/// # Errors
/// [`InvalidInput`] on the `metadata` field.
pub fn parse_metadata(
    raw: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, InvalidInput> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(serde_json::Map::new());
    };
    if raw.len() > MAX_METADATA_BYTES {
        return Err(InvalidInput::field(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(InvalidInput::field("metadata", "must be a JSON object")),
        Err(_) => Err(InvalidInput::field("metadata", "is not valid JSON")),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What one pipeline run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The document is ready.
    Ready {
        /// The job.
        job: JobId,
        /// Chunks stored.
        chunks: usize,
    },
    /// The document failed for good (its error says why).
    Failed {
        /// The job.
        job: JobId,
    },
    /// A transient failure: the job runs again later.
    Retrying {
        /// The job.
        job: JobId,
    },
    /// The document was deleted (or reindexed again) meanwhile.
    Canceled {
        /// The job.
        job: JobId,
    },
    /// The lease was lost (another worker took the job over); nothing was written.
    LeaseLost {
        /// The job.
        job: JobId,
    },
}

/// The ingestion pipeline: extract → chunk → (embed → index, with retrieval) → store.
#[derive(Debug, Clone)]
pub struct Ingestion {
    ports: DocumentPorts,
    limits: DocumentLimits,
    policy: IngestPolicy,
}

impl Ingestion {
    /// The pipeline over these ports.
    #[must_use]
    pub fn new(ports: DocumentPorts, limits: DocumentLimits, policy: IngestPolicy) -> Self {
        Self {
            ports,
            limits,
            policy,
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> IngestPolicy {
        self.policy
    }

    /// Claims the next due job and runs it to its end; `Ok(None)` when no job is due.
    ///
    /// # Errors
    /// Only when the queue itself cannot be reached; a failing job is recorded on the job.
    pub async fn run_next(&self) -> Result<Option<RunOutcome>, anyhow::Error> {
        let now = self.ports.clock.now();
        let Some(claim) = self
            .ports
            .jobs
            .claim_within(now, self.policy.lease, self.policy.max_running_per_tenant)
            .await
            .map_err(anyhow::Error::new)?
        else {
            return Ok(None);
        };
        let job = claim.job.id;
        let span = tracing::info_span!(
            "job",
            %job,
            tenant = %claim.job.tenant_id,
            kind = claim.job.kind.as_str(),
            attempt = claim.job.attempts
        );
        self.settle(claim).instrument(span).await.map(Some)
    }

    async fn settle(&self, claim: crate::model::Claim) -> Result<RunOutcome, anyhow::Error> {
        let job = claim.job.id;
        let outcome = match self.run(&claim).await {
            Ok(outcome) => outcome,
            Err(Step::Lost) => RunOutcome::LeaseLost { job },
            Err(Step::Canceled) => {
                self.ports
                    .jobs
                    .cancel(&claim, self.ports.clock.now())
                    .await
                    .map_err(anyhow::Error::new)?;
                RunOutcome::Canceled { job }
            }
            Err(Step::Permanent(why)) => {
                tracing::warn!(%job, error = %why.logged, "ingestion failed for good");
                self.finish_failed(&claim, &why.shown, JobStatus::Failed)
                    .await?
            }
            Err(Step::Dead(why)) => {
                tracing::warn!(%job, error = %why.logged, "ingestion gave up");
                self.finish_failed(&claim, &why.shown, JobStatus::Dead)
                    .await?
            }
            Err(Step::Transient(why)) => {
                tracing::warn!(%job, error = %why.logged, attempt = claim.job.attempts, "ingestion failed; will retry");
                if claim.job.attempts >= self.policy.max_attempts {
                    let error = format!(
                        "gave up after {} attempts; last error: {}",
                        claim.job.attempts, why.shown
                    );
                    self.finish_failed(&claim, &error, JobStatus::Dead).await?
                } else {
                    let at = self.ports.clock.now() + self.policy.backoff(claim.job.attempts);
                    let applied = self
                        .ports
                        .jobs
                        .fail(
                            &claim,
                            &why.shown,
                            Failure::RetryAt(at),
                            self.ports.clock.now(),
                        )
                        .await
                        .map_err(anyhow::Error::new)?;
                    if applied {
                        RunOutcome::Retrying { job }
                    } else {
                        RunOutcome::LeaseLost { job }
                    }
                }
            }
        };
        tracing::info!(outcome = ?outcome, "job finished");
        Ok(outcome)
    }

    async fn finish_failed(
        &self,
        claim: &crate::model::Claim,
        error: &str,
        status: JobStatus,
    ) -> Result<RunOutcome, anyhow::Error> {
        let applied = self
            .ports
            .jobs
            .fail(claim, error, Failure::Final(status), self.ports.clock.now())
            .await
            .map_err(anyhow::Error::new)?;
        Ok(if applied {
            RunOutcome::Failed { job: claim.job.id }
        } else {
            RunOutcome::LeaseLost { job: claim.job.id }
        })
    }

    async fn heartbeat(
        &self,
        claim: &crate::model::Claim,
        stage: Stage,
        fraction: f32,
    ) -> Result<(), Step> {
        let lease_until = self.ports.clock.now() + self.policy.lease;
        match self
            .ports
            .jobs
            .progress(claim, stage, stage.progress(fraction), lease_until)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Step::Lost),
            Err(e) => Err(Step::storage(&e)),
        }
    }

    async fn run(&self, claim: &crate::model::Claim) -> Result<RunOutcome, Step> {
        let job = &claim.job;
        if job.attempts > self.policy.max_attempts {
            // Its workers died (crash, kill -9) on every attempt: a poison file, most likely.
            return Err(Step::Dead(Why::shown(format!(
                "processing was interrupted {} times; the file may be hostile",
                job.attempts - 1
            ))));
        }
        let document_id = job.document_id.ok_or(Step::Canceled)?;
        let document = self
            .ports
            .documents
            .find(job.tenant_id, document_id)
            .await
            .map_err(|e| Step::storage(&e))?
            .ok_or(Step::Canceled)?;
        self.heartbeat(claim, Stage::Extracting, 0.0).await?;
        let bytes = match self.ports.blobs.read(&document.blob_key).await {
            Ok(b) => b,
            Err(BlobError::NotFound) => {
                // Deleted meanwhile (the row goes first), or lost: either way, nothing to do.
                return match self.ports.documents.find(job.tenant_id, document_id).await {
                    Ok(None) => Err(Step::Canceled),
                    _ => Err(Step::Permanent(Why::shown("the original file is missing"))),
                };
            }
            Err(e) => {
                return Err(Step::Transient(Why::internal(
                    "the stored file could not be read",
                    &e,
                )));
            }
        };
        let text = match self
            .ports
            .extractor
            .extract(document.format, bytes, self.limits.extract)
            .await
        {
            Ok(t) => t,
            Err(e) if e.is_transient() => {
                return Err(Step::Transient(Why::internal(
                    "the extractor is unavailable",
                    &e,
                )));
            }
            Err(e) => {
                return Err(Step::Permanent(Why {
                    shown: e.public_message(),
                    logged: chain(&e),
                }));
            }
        };
        self.heartbeat(claim, Stage::Chunking, 0.0).await?;
        let settings = match document.collection_id {
            Some(c) => {
                self.ports
                    .collections
                    .find(job.tenant_id, c)
                    .await
                    .map_err(|e| Step::storage(&e))?
                    .ok_or(Step::Canceled)?
                    .chunking
            }
            None => ChunkingSettings::default(),
        };
        let pages = text.pages();
        let chunks = self
            .ports
            .chunker
            .chunk(Arc::new(text), settings)
            .await
            .map_err(|e| {
                Step::Transient(Why {
                    shown: "the text could not be cut into chunks".to_owned(),
                    logged: format!("chunking: {e:#}"),
                })
            })?;
        if chunks.is_empty() {
            return Err(Step::Permanent(Why::shown(
                ExtractError::NoText.to_string(),
            )));
        }
        let chunks = NewChunk::assign(chunks);
        let count = chunks.len();
        let batch = self.ports.indexer.batch_size().max(1);
        #[allow(clippy::cast_precision_loss)] // progress only
        for (i, part) in chunks.chunks(batch).enumerate() {
            self.heartbeat(claim, Stage::Embedding, (i * batch) as f32 / count as f32)
                .await?;
            self.ports
                .indexer
                .index(&document, part)
                .await
                .map_err(Step::from)?;
        }
        self.heartbeat(claim, Stage::Indexing, 0.0).await?;
        let stored = self
            .ports
            .jobs
            .complete(
                claim,
                Ingested {
                    pages,
                    chunks: chunks.clone(),
                },
                self.ports.clock.now(),
            )
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => return Err(Step::Lost),
            Err(e) => return Err(Step::storage(&e)),
        }
        // The document is ready and searchable; what remains is housekeeping (vectors of
        // earlier chunks, spaces created meanwhile), so a failure is logged, not retried.
        if let Err(e) = self.ports.indexer.finish(&document, &chunks).await {
            tracing::warn!(error = %e, "finishing the index of a document failed");
        }
        Ok(RunOutcome::Ready {
            job: job.id,
            chunks: count,
        })
    }
}

impl From<IndexFailure> for Step {
    fn from(e: IndexFailure) -> Self {
        match e {
            IndexFailure::Transient(m) => Step::Transient(Why {
                shown: "the embedding service was unavailable".to_owned(),
                logged: m,
            }),
            IndexFailure::Permanent(m) => Step::Permanent(Why::shown(m)),
        }
    }
}

/// Why a run stopped early.
#[derive(Debug)]
enum Step {
    Lost,
    Canceled,
    Permanent(Why),
    Transient(Why),
    /// Out of attempts before this run began.
    Dead(Why),
}

impl Step {
    /// A storage failure: transient, its cause for the log only.
    fn storage(e: &(dyn std::error::Error + 'static)) -> Self {
        Step::Transient(Why::internal(
            "a temporary storage error interrupted processing",
            e,
        ))
    }
}

/// Why a run failed, twice: `shown` is the document's and the job's `error`, what clients
/// read (`GET /documents/{id}`, `GET /jobs/{id}`): a reason written for people, never a
/// cause chain, a path or SQL. `logged` is the whole chain, for the log (in the job's span,
/// with the job and tenant ids) only.
#[derive(Debug)]
struct Why {
    shown: String,
    logged: String,
}

impl Why {
    /// A message written for the client, logged as it is.
    fn shown(message: impl Into<String>) -> Self {
        let shown = message.into();
        Self {
            logged: shown.clone(),
            shown,
        }
    }

    /// A failure inside Quire: the client reads `shown`, the log the whole chain of `e`.
    fn internal(shown: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            shown: shown.to_owned(),
            logged: chain(e),
        }
    }
}

/// An error with its whole `source()` chain, for the log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = IngestPolicy {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            ..IngestPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_secs(5));
        assert_eq!(p.backoff(2), Duration::from_secs(10));
        assert_eq!(p.backoff(3), Duration::from_secs(20));
        assert_eq!(p.backoff(5), Duration::from_secs(60));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn metadata_must_be_a_small_object() {
        assert!(parse_metadata(None).unwrap().is_empty());
        assert!(parse_metadata(Some("  ")).unwrap().is_empty());
        assert_eq!(
            parse_metadata(Some(r#"{"a":1}"#)).unwrap().get("a"),
            Some(&serde_json::json!(1))
        );
        assert!(parse_metadata(Some("[1]")).is_err());
        assert!(parse_metadata(Some("{")).is_err());
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES));
        assert!(parse_metadata(Some(&big)).is_err());
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
