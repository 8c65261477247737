//! The documents use cases: the streamed upload, plain-text ingestion, extraction without
//! storage, reads, deletes and reindexing.
//!
//! Who may call what is decided by the HTTP layer's tenant extractor (viewers read, members
//! upload and delete documents); every call here is scoped to the [`TenantContext`] it is
//! given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kernel::audit::{self, AuditEvent};
use kernel::{ClientInfo, InvalidInput, Page, PageRequest, TenantContext};
use sha2::{Digest, Sha256};

use crate::error::DocumentsError;
use crate::model::{
    BlobKey, Chunk, CollectionId, Document, DocumentFilter, DocumentId, DocumentStatus,
    ExtractLimits, ExtractedText, Format, Job, JobId, JobKind, MAX_METADATA_BYTES, display_name,
};
use crate::ports::{
    BlobWriter, NoStorageLimit, StorageLimits, Stored, UploadPorts, actor, remove_blob,
};

/// Bytes of an upload's head that format detection looks at.
pub const DETECT_HEAD_BYTES: usize = 64 * 1024;

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

/// Documents: uploads, reads, deletes, reindexing.
#[derive(Debug, Clone)]
pub struct Documents {
    ports: UploadPorts,
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
    pub fn new(ports: UploadPorts, limits: DocumentLimits, signal: Arc<dyn JobSignal>) -> Self {
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
            ocr_pages: 0,
            status: DocumentStatus::Queued,
            progress: 0.0,
            stage: None,
            done: 0,
            total: 0,
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
            .extract(format, bytes, self.limits.extract, None)
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

    /// The tenant's documents, newest first (a page read less than the recheck time ago is
    /// reused: `documents::recent`).
    ///
    /// # Errors
    /// On a foreign cursor or a storage failure.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, DocumentsError> {
        let tenant = ctx.tenant_id();
        let now = self.ports.clock.now();
        Ok(self
            .ports
            .recent
            .page(tenant, filter, page, now, || {
                self.ports.documents.list(tenant, filter, page)
            })
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
        self.remove(ctx.tenant_id(), id, actor(ctx), client).await
    }

    /// Retention: deletes `tenant`'s failed documents not updated since `before` (each through
    /// the one delete path: rows, file, vectors, an audit event without an actor); returns how
    /// many.
    ///
    /// # Errors
    /// When storage fails (what was deleted before stays deleted; the next sweep goes on).
    pub async fn delete_failed_before(
        &self,
        tenant: kernel::TenantId,
        before: time::OffsetDateTime,
    ) -> Result<u64, DocumentsError> {
        let filter = crate::model::DocumentFilter {
            collection_id: None,
            status: Some(DocumentStatus::Failed),
        };
        let mut expired = Vec::new();
        let mut page = kernel::PageRequest::first(100).map_err(DocumentsError::Invalid)?;
        loop {
            let found = self.ports.documents.list(tenant, &filter, &page).await?;
            expired.extend(
                found
                    .items
                    .iter()
                    .filter(|d| d.updated_at < before)
                    .map(|d| d.id),
            );
            match found.next_cursor {
                Some(c) => {
                    page = kernel::PageRequest::parse(Some(100), Some(&c.encode()))
                        .map_err(DocumentsError::Invalid)?;
                }
                None => break,
            }
        }
        let mut deleted = 0;
        let system = ClientInfo::new("retention", None);
        for id in expired {
            match self.remove(tenant, id, None, &system).await {
                Ok(()) => deleted += 1,
                Err(DocumentsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    async fn remove(
        &self,
        tenant: kernel::TenantId,
        id: DocumentId,
        actor: Option<kernel::UserId>,
        client: &ClientInfo,
    ) -> Result<(), DocumentsError> {
        let now = self.ports.clock.now();
        let key = self
            .ports
            .documents
            .delete(tenant, id, now)
            .await?
            .ok_or(DocumentsError::NotFound)?;
        remove_blob(self.ports.blobs.as_ref(), &key).await;
        if let Err(e) = self.ports.indexer.remove_document(tenant, id).await {
            tracing::error!(error = ?e, document = %id, "could not remove a document's vectors");
        }
        audit::record(
            self.ports.audit.as_ref(),
            AuditEvent {
                at: now,
                action: "documents.document.deleted",
                actor,
                tenant: Some(tenant),
                target: Some(id.to_string()),
                client: client.clone(),
                access: None,
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

    /// The tenant's jobs, newest first.
    ///
    /// # Errors
    /// On a foreign cursor or a storage failure.
    pub async fn jobs(
        &self,
        ctx: &TenantContext,
        filter: &crate::JobFilter,
        page: &PageRequest,
    ) -> Result<Page<Job>, DocumentsError> {
        Ok(self.ports.jobs.list(ctx.tenant_id(), filter, page).await?)
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

/// Erasing an organization: its original files leave the blob store (rows go with the
/// organization's row; files on disk would not).
#[async_trait::async_trait]
impl kernel::erasure::TenantData for Documents {
    fn kind(&self) -> &'static str {
        "blobs"
    }

    async fn erase_tenant(&self, tenant: kernel::TenantId) -> anyhow::Result<u64> {
        Ok(self.ports.blobs.delete_tenant(tenant).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
