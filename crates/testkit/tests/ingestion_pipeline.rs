//! The ingestion pipeline (`documents::Ingestion::run_next`) and the streamed upload
//! (`Documents::begin_upload` → `push` → `finish_upload`) over the in-memory adapters, with a
//! manual clock and a scripted extractor: retries and their backoff, the dead letter, permanent
//! failures, workers that die, deletes during a run, the happy path with duplicates, upload
//! refusals, and fairness across tenants. Time moves only by explicit advances; nothing sleeps,
//! and the one concurrent case waits on channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use documents::{
    Chunker, ChunkingSettings, CollectionId, Collections, DetectError, Document, DocumentFilter,
    DocumentId, DocumentLimits, DocumentPorts, DocumentStatus, Documents, DocumentsError,
    ExtractError, ExtractLimits, ExtractedText, Extractor, Format, IngestPolicy, Ingestion, Job,
    JobId, JobQueue as _, JobStatus, NewCollection, NoSignal, RunOutcome, Tokenizer, Uploaded,
};
use kernel::{
    ClientInfo, Clock as _, ManualClock, PageRequest, Principal, Role, TenantContext, TenantId,
    UserId,
};
use memory::{InMemoryAudit, InMemoryBlobs, InMemoryDocuments};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::oneshot;

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);
const MICRO: Duration = Duration::from_micros(1);

/// What the scripted extractor does on its next call.
#[derive(Debug)]
enum Step {
    /// A transient failure (the extractor could not be started).
    Unavailable,
    /// A permanent failure.
    Encrypted,
    /// Says it started, waits for the go, then reads the bytes as text.
    Pause {
        started: oneshot::Sender<()>,
        go: oneshot::Receiver<()>,
    },
    /// Tells `done` of `total` pages read, says it started, waits for the go, then reads the
    /// bytes as text.
    Pages {
        done: u32,
        total: u32,
        started: oneshot::Sender<()>,
        go: oneshot::Receiver<()>,
    },
    /// Says it started, waits for the go, then fails as unavailable.
    PauseThenUnavailable {
        started: oneshot::Sender<()>,
        go: oneshot::Receiver<()>,
    },
}

/// An extractor that follows its script, then reads every file as UTF-8 text. Detection is
/// the real one (`extract::detect`).
#[derive(Debug, Default)]
struct ScriptedExtractor {
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
}

impl ScriptedExtractor {
    fn then(&self, step: Step) {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(step);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn unavailable() -> ExtractError {
    ExtractError::Unavailable(anyhow::anyhow!("the extractor child could not be started"))
}

fn as_text(bytes: &[u8]) -> ExtractedText {
    ExtractedText {
        text: String::from_utf8_lossy(bytes).into_owned(),
        page_starts: Vec::new(),
        title: None,
        ocr_pages: Vec::new(),
        tables: Vec::new(),
    }
}

#[async_trait]
impl Extractor for ScriptedExtractor {
    fn detect(&self, name: Option<&str>, head: &[u8]) -> Result<Format, DetectError> {
        extract::detect(name, head)
    }

    async fn extract_reporting(
        &self,
        _format: Format,
        bytes: Vec<u8>,
        _limits: ExtractLimits,
        _ocr_languages: Option<documents::OcrLanguages>,
        progress: Arc<dyn documents::ExtractProgress>,
    ) -> Result<ExtractedText, ExtractError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match step {
            None => Ok(as_text(&bytes)),
            Some(Step::Unavailable) => Err(unavailable()),
            Some(Step::Encrypted) => Err(ExtractError::Encrypted),
            Some(Step::Pause { started, go }) => {
                let _ = started.send(());
                let _ = go.await;
                Ok(as_text(&bytes))
            }
            Some(Step::Pages {
                done,
                total,
                started,
                go,
            }) => {
                progress.pages(done, total);
                let _ = started.send(());
                let _ = go.await;
                Ok(as_text(&bytes))
            }
            Some(Step::PauseThenUnavailable { started, go }) => {
                let _ = started.send(());
                let _ = go.await;
                Err(unavailable())
            }
        }
    }

    fn isolation(&self) -> &'static str {
        "scripted"
    }
}

/// A chunker that cuts the text into windows of 20 characters, one token per word.
#[derive(Debug)]
struct FixedChunker;

#[async_trait]
impl Chunker for FixedChunker {
    async fn chunk(
        &self,
        text: Arc<ExtractedText>,
        _settings: ChunkingSettings,
    ) -> Result<Vec<documents::ChunkDraft>, anyhow::Error> {
        let chars: Vec<char> = text.text.chars().collect();
        Ok(chars
            .chunks(20)
            .enumerate()
            .map(|(i, window)| {
                let start = u64::try_from(i * 20).expect("fits");
                let piece: String = window.iter().collect();
                documents::ChunkDraft {
                    ordinal: u32::try_from(i).expect("fits"),
                    tokens: u32::try_from(piece.split_whitespace().count()).expect("fits"),
                    tokens_by: None,
                    page: None,
                    start,
                    end: start + u64::try_from(window.len()).expect("fits"),
                    text: piece,
                    ocr: false,
                }
            })
            .collect())
    }
}

/// The use cases over the in-memory adapters, a manual clock and the scripted extractor.
struct Pipeline {
    clock: Arc<ManualClock>,
    store: Arc<InMemoryDocuments>,
    blobs: InMemoryBlobs,
    extractor: Arc<ScriptedExtractor>,
    collections: Collections,
    documents: Documents,
    ingestion: Ingestion,
}

impl Pipeline {
    fn new(policy: IngestPolicy) -> Self {
        Self::with(policy, DocumentLimits::default(), Arc::new(FixedChunker))
    }

    fn with(policy: IngestPolicy, limits: DocumentLimits, chunker: Arc<dyn Chunker>) -> Self {
        Self::remembering(policy, limits, chunker, Duration::ZERO)
    }

    /// A pipeline whose document lists are reused for `recheck`
    /// (`DocumentPorts::with_recheck`).
    fn remembering(
        policy: IngestPolicy,
        limits: DocumentLimits,
        chunker: Arc<dyn Chunker>,
        recheck: Duration,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(InMemoryDocuments::new(clock.clone()));
        let blobs = InMemoryBlobs::new();
        let extractor = Arc::new(ScriptedExtractor::default());
        let ports = DocumentPorts {
            collections: store.clone(),
            documents: store.clone(),
            jobs: store.clone(),
            blobs: Arc::new(blobs.clone()),
            extractor: extractor.clone(),
            chunker,
            indexer: Arc::new(documents::NoIndexer),
            clock: clock.clone(),
            audit: Arc::new(InMemoryAudit::new()),
            recent: documents::RecentLists::default(),
        }
        .with_recheck(recheck);
        Self {
            collections: Collections::new(ports.for_collections()),
            documents: Documents::new(ports.for_uploads(), limits, Arc::new(NoSignal)),
            ingestion: Ingestion::new(ports.for_ingestion(), limits, policy),
            clock,
            store,
            blobs,
            extractor,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Uploads `bytes` as `name` in parts of `part` bytes.
    async fn upload_in_parts(
        &self,
        ctx: &TenantContext,
        name: &str,
        bytes: &[u8],
        part: usize,
        collection: Option<CollectionId>,
    ) -> Result<Uploaded, DocumentsError> {
        let mut upload = self.documents.begin_upload(ctx).await?;
        upload.set_name(Some(name));
        for piece in bytes.chunks(part) {
            self.documents.push(&mut upload, piece).await?;
        }
        self.documents
            .finish_upload(ctx, upload, collection, None)
            .await
    }

    async fn upload(&self, ctx: &TenantContext, name: &str, text: &str) -> Uploaded {
        self.upload_in_parts(ctx, name, text.as_bytes(), 1_024, None)
            .await
            .expect("upload")
    }

    async fn job(&self, tenant: TenantId, id: JobId) -> Job {
        self.store
            .find(tenant, id)
            .await
            .expect("find job")
            .expect("the job exists")
    }

    async fn document(&self, tenant: TenantId, id: DocumentId) -> Document {
        documents::DocumentRepository::find(self.store.as_ref(), tenant, id)
            .await
            .expect("find document")
            .expect("the document exists")
    }

    async fn run(&self) -> Option<RunOutcome> {
        self.ingestion.run_next().await.expect("the queue answers")
    }

    /// The first page of `ctx`'s documents through the use case: (id, status) each.
    async fn listed(&self, ctx: &TenantContext) -> Vec<(DocumentId, DocumentStatus)> {
        self.documents
            .list(
                ctx,
                &DocumentFilter::default(),
                &PageRequest::first(20).expect("page"),
            )
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|d| (d.id, d.status))
            .collect()
    }

    async fn chunk_count(&self, tenant: TenantId, id: DocumentId) -> usize {
        documents::DocumentRepository::chunks(
            self.store.as_ref(),
            tenant,
            id,
            &PageRequest::first(100).expect("page"),
        )
        .await
        .expect("chunks")
        .items
        .len()
    }
}

fn member() -> TenantContext {
    TenantContext::new(
        TenantId::new(),
        Principal::User(UserId::new()),
        Role::Member,
    )
}

fn policy(max_attempts: u32) -> IngestPolicy {
    IngestPolicy {
        lease: Duration::from_secs(60),
        max_attempts,
        retry_base: Duration::from_secs(10),
        retry_max: Duration::from_secs(3_600),
        ..IngestPolicy::default()
    }
}

fn job_of(uploaded: &Uploaded) -> JobId {
    uploaded.job_id.expect("the upload has a job")
}

/// A transient failure sends the job back to the queue until `now + retry_base`, doubling per
/// attempt; it is not claimed a microsecond early, and succeeds once the extractor is back.
#[tokio::test]
async fn transient_failures_are_retried_with_doubling_delays() {
    let p = Pipeline::new(policy(5));
    for _ in 0..3 {
        p.extractor.then(Step::Unavailable);
    }
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p.upload(&ctx, "notes.txt", "The quick brown fox.").await;
    let job = job_of(&up);

    let mut expected_run_at = Vec::new();
    for (attempt, delay_secs) in [(1_u32, 10_u64), (2, 20), (3, 40)] {
        let started = p.now();
        assert_eq!(
            p.run().await,
            Some(RunOutcome::Retrying { job }),
            "attempt {attempt} fails for now"
        );
        let queued = p.job(a, job).await;
        assert_eq!(queued.status, JobStatus::Queued);
        assert_eq!(queued.attempts, attempt);
        assert_eq!(queued.run_at, started + Duration::from_secs(delay_secs));
        assert_eq!(
            queued.error.as_deref(),
            Some("the extractor is unavailable")
        );
        expected_run_at.push(queued.run_at);
        let doc = p.document(a, up.document.id).await;
        assert_eq!(doc.status, DocumentStatus::Queued, "the document waits");
        assert_eq!(doc.error, None);

        assert_eq!(p.run().await, None, "not due right after the failure");
        p.clock.advance(Duration::from_secs(delay_secs) - MICRO);
        assert_eq!(p.run().await, None, "not due a microsecond early");
        p.clock.advance(MICRO);
    }
    assert_eq!(
        expected_run_at,
        vec![
            T0 + Duration::from_secs(10),
            T0 + Duration::from_secs(30),
            T0 + Duration::from_secs(70),
        ]
    );

    let Some(RunOutcome::Ready { job: done, chunks }) = p.run().await else {
        panic!("the fourth run succeeds");
    };
    assert_eq!(done, job);
    assert_eq!(chunks, 1);
    let finished = p.job(a, job).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert_eq!(finished.attempts, 4);
    assert_eq!(finished.finished_at, Some(T0 + Duration::from_secs(70)));
    assert_eq!(p.extractor.calls(), 4);
    assert_eq!(
        p.document(a, up.document.id).await.status,
        DocumentStatus::Ready
    );
}

/// After `max_attempts` runs that all fail transiently, the job is dead with the attempts and
/// the last error, the document failed, and nothing runs again.
#[tokio::test]
async fn transient_failures_end_in_the_dead_letter() {
    let p = Pipeline::new(policy(3));
    for _ in 0..4 {
        p.extractor.then(Step::Unavailable);
    }
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p.upload(&ctx, "notes.txt", "Never read.").await;
    let job = job_of(&up);

    for _ in 0..2 {
        assert_eq!(p.run().await, Some(RunOutcome::Retrying { job }));
        let run_at = p.job(a, job).await.run_at;
        p.clock.advance((run_at - p.now()).unsigned_abs());
    }
    assert_eq!(
        p.run().await,
        Some(RunOutcome::Failed { job }),
        "the third run was the last"
    );
    let dead = p.job(a, job).await;
    let error = "gave up after 3 attempts; last error: the extractor is unavailable";
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.error.as_deref(), Some(error));
    assert_eq!(dead.finished_at, Some(p.now()));
    let doc = p.document(a, up.document.id).await;
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some(error));

    p.clock.advance(Duration::from_secs(86_400));
    assert_eq!(p.run().await, None, "the dead letter is never claimed");
    assert_eq!(p.extractor.calls(), 3);
}

/// A permanent error fails the job (`failed`, one attempt) and the document at once, with the
/// error's text.
#[tokio::test]
async fn permanent_errors_fail_at_once() {
    let p = Pipeline::new(policy(5));
    p.extractor.then(Step::Encrypted);
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p
        .upload(&ctx, "locked.txt", "pretend this is encrypted")
        .await;
    let job = job_of(&up);

    assert_eq!(p.run().await, Some(RunOutcome::Failed { job }));
    let text = ExtractError::Encrypted.to_string();
    let failed = p.job(a, job).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.error.as_deref(), Some(text.as_str()));
    assert_eq!(failed.finished_at, Some(T0));
    let doc = p.document(a, up.document.id).await;
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some(text.as_str()));
    assert_eq!(p.chunk_count(a, up.document.id).await, 0);

    p.clock.advance(Duration::from_secs(3_600));
    assert_eq!(p.run().await, None, "no retry");
    assert_eq!(p.extractor.calls(), 1);

    // A failed document is no duplicate: the same file may be sent again, as a new document.
    let again = p
        .upload(&ctx, "locked.txt", "pretend this is encrypted")
        .await;
    assert!(!again.duplicate);
    assert_ne!(again.document.id, up.document.id);
}

/// A job whose worker dies on every run (the lease expires each time) is claimed again until
/// it has used up `max_attempts`; the next claim sends it to the dead letter as interrupted,
/// without extracting again.
#[tokio::test]
async fn jobs_whose_workers_keep_dying_end_dead() {
    let p = Pipeline::new(policy(3));
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p.upload(&ctx, "poison.txt", "kills every worker").await;
    let job = job_of(&up);
    let lease = p.ingestion.policy().lease;

    for attempt in 1..=3 {
        let claim = p
            .store
            .claim(p.now(), lease)
            .await
            .expect("claim")
            .expect("due: queued, or its lease ended");
        assert_eq!(claim.job.id, job);
        assert_eq!(claim.job.attempts, attempt);
        // The worker dies: no heartbeat, no completion.
        p.clock.advance(lease);
        assert_eq!(p.run().await, None, "the lease holds up to its end");
        p.clock.advance(MICRO);
    }
    assert_eq!(p.run().await, Some(RunOutcome::Failed { job }));
    let dead = p.job(a, job).await;
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.attempts, 4);
    let error = dead.error.expect("an error");
    assert!(error.contains("interrupted 3 times"), "{error}");
    let doc = p.document(a, up.document.id).await;
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some(error.as_str()));
    assert_eq!(
        p.extractor.calls(),
        0,
        "the poison file was not opened again"
    );
}

/// A long extraction shows on its job and its document the pages it has read, as it goes
/// (stage `extracting`, `done` of `total` pages, a fraction within the stage's share); once
/// ready, neither shows a stage or units.
#[tokio::test]
async fn the_pages_read_show_while_extracting() {
    let p = Arc::new(Pipeline::new(IngestPolicy {
        progress_every: Duration::from_millis(10),
        ..policy(5)
    }));
    let (started_tx, started) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    p.extractor.then(Step::Pages {
        done: 120,
        total: 500,
        started: started_tx,
        go: go_rx,
    });
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p
        .upload(&ctx, "long.txt", "A long file, read page by page.")
        .await;
    let job = job_of(&up);
    let worker = tokio::spawn({
        let p = p.clone();
        async move { p.run().await }
    });
    started.await.expect("the worker is extracting");
    // The worker writes the pages every 10 ms (real time) while the extraction waits.
    for _ in 0..500 {
        if p.job(a, job).await.done > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let running = p.job(a, job).await;
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(
        (running.stage, running.done, running.total),
        (Some(documents::Stage::Extracting), 120, 500)
    );
    let expected = documents::Stage::Extracting.progress(120.0 / 500.0);
    assert!(
        (running.progress - expected).abs() < 1e-6,
        "{}",
        running.progress
    );
    let doc = p.document(a, up.document.id).await;
    assert_eq!(doc.status, DocumentStatus::Processing);
    assert_eq!(
        (doc.stage, doc.done, doc.total),
        (Some(documents::Stage::Extracting), 120, 500)
    );
    assert!((doc.progress - expected).abs() < 1e-6);

    go.send(()).expect("the worker waits");
    let outcome = worker.await.expect("worker task");
    assert!(
        matches!(outcome, Some(RunOutcome::Ready { .. })),
        "{outcome:?}"
    );
    let finished = p.job(a, job).await;
    assert_eq!(
        (finished.stage, finished.done, finished.total),
        (None, 0, 0)
    );
    let doc = p.document(a, up.document.id).await;
    assert_eq!((doc.stage, doc.done, doc.total), (None, 0, 0));
}

/// A document deleted while its job runs: the delete cancels the job, the worker's next
/// heartbeat finds its lease gone and stops, and nothing of the document remains.
#[tokio::test]
async fn a_document_deleted_mid_run_leaves_nothing() {
    let p = Arc::new(Pipeline::new(policy(5)));
    let (started_tx, started) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    p.extractor.then(Step::Pause {
        started: started_tx,
        go: go_rx,
    });
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p
        .upload(&ctx, "doomed.txt", "Text that never becomes chunks.")
        .await;
    let job = job_of(&up);

    let worker = tokio::spawn({
        let p = p.clone();
        async move { p.run().await }
    });
    started.await.expect("the worker is extracting");
    assert_eq!(p.job(a, job).await.status, JobStatus::Running);
    p.documents
        .delete(&ctx, up.document.id, &ClientInfo::default())
        .await
        .expect("delete");
    go.send(()).expect("the worker waits");
    let outcome = worker.await.expect("worker task");

    assert_eq!(outcome, Some(RunOutcome::LeaseLost { job }));
    let cancelled = p.job(a, job).await;
    assert_eq!(cancelled.status, JobStatus::Canceled);
    assert_eq!(cancelled.finished_at, Some(T0));
    assert_eq!(p.chunk_count(a, up.document.id).await, 0, "no chunks");
    assert!(
        documents::DocumentRepository::find(p.store.as_ref(), a, up.document.id)
            .await
            .expect("find")
            .is_none()
    );
    assert!(p.blobs.is_empty(), "the original file is gone");
    p.clock.advance(Duration::from_secs(86_400));
    assert_eq!(p.run().await, None, "nothing left to run");
}

/// The same, with the extractor failing transiently after the delete: the cancelled job must
/// not go back to the queue.
#[tokio::test]
async fn a_transient_failure_after_a_delete_does_not_requeue() {
    let p = Arc::new(Pipeline::new(policy(5)));
    let (started_tx, started) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    p.extractor.then(Step::PauseThenUnavailable {
        started: started_tx,
        go: go_rx,
    });
    let ctx = member();
    let a = ctx.tenant_id();
    let up = p
        .upload(&ctx, "doomed.txt", "Deleted while the extractor was down.")
        .await;
    let job = job_of(&up);

    let worker = tokio::spawn({
        let p = p.clone();
        async move { p.run().await }
    });
    started.await.expect("the worker is extracting");
    p.documents
        .delete(&ctx, up.document.id, &ClientInfo::default())
        .await
        .expect("delete");
    go.send(()).expect("the worker waits");
    let outcome = worker.await.expect("worker task");

    // The lease went with the delete: nothing is retried, and the run says so.
    assert_eq!(outcome, Some(RunOutcome::LeaseLost { job }));
    let cancelled = p.job(a, job).await;
    assert_eq!(cancelled.status, JobStatus::Canceled, "not queued again");
    assert_eq!(cancelled.error, None, "the stale failure was not recorded");
    p.clock.advance(Duration::from_secs(86_400));
    assert_eq!(p.run().await, None, "nothing left to run");
}

/// Upload in parts → one run → ready, with the real token chunker; the same bytes again are a
/// duplicate with no new job.
#[tokio::test]
async fn an_upload_becomes_ready_and_its_copy_is_a_duplicate() {
    let p = Pipeline::with(
        policy(5),
        DocumentLimits::default(),
        Arc::new(extract::TokenChunker::new()),
    );
    let ctx = member();
    let a = ctx.tenant_id();
    let small = ChunkingSettings::new(32, 4, Tokenizer::Cl100kBase).expect("settings");
    let collection = p
        .collections
        .create(
            &ctx,
            NewCollection {
                name: "Handbook".into(),
                description: None,
                chunking: Some(small),
                embedding_model: None,
                ocr_languages: None,
                rerank_top_n: None,
            },
        )
        .await
        .expect("collection");
    let text: String = (1..=40)
        .map(|i| format!("Paragraph {i} says something about the handbook, rule number {i}.\n\n"))
        .collect();

    let up = p
        .upload_in_parts(
            &ctx,
            "handbook.md",
            text.as_bytes(),
            700,
            Some(collection.id),
        )
        .await
        .expect("upload");
    assert!(!up.duplicate);
    assert_eq!(up.document.status, DocumentStatus::Queued);
    assert_eq!(up.document.format, Format::Markdown);
    assert_eq!(up.document.bytes, u64::try_from(text.len()).expect("fits"));
    assert_eq!(p.blobs.len(), 1, "the original file is stored");
    assert_eq!(p.blobs.open_writers(), 0);
    let job = job_of(&up);

    let Some(RunOutcome::Ready { job: done, chunks }) = p.run().await else {
        panic!("the run succeeds");
    };
    assert_eq!(done, job);
    assert!(
        chunks > 5,
        "small windows over a long text: {chunks} chunks"
    );

    let doc = p.document(a, up.document.id).await;
    assert_eq!(doc.status, DocumentStatus::Ready);
    assert!((doc.progress - 1.0).abs() < f32::EPSILON);
    assert_eq!(doc.chunks as usize, chunks);
    assert_eq!(doc.error, None);
    let stored = documents::DocumentRepository::chunks(
        p.store.as_ref(),
        a,
        doc.id,
        &PageRequest::first(100).expect("page"),
    )
    .await
    .expect("chunks")
    .items;
    assert_eq!(stored.len(), chunks);
    assert_eq!(
        doc.tokens,
        stored.iter().map(|c| u64::from(c.tokens)).sum::<u64>()
    );
    for (i, chunk) in stored.iter().enumerate() {
        assert_eq!(chunk.ordinal as usize, i);
        assert!(chunk.tokens <= 32, "within the collection's window");
        let span: String = text
            .chars()
            .skip(usize::try_from(chunk.start).expect("fits"))
            .take(usize::try_from(chunk.end - chunk.start).expect("fits"))
            .collect();
        assert_eq!(chunk.text, span, "chunk {i} is its span of the text");
    }
    let finished = p.job(a, job).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert!((finished.progress - 1.0).abs() < f32::EPSILON);

    let again = p
        .upload_in_parts(&ctx, "copy.md", text.as_bytes(), 4_096, Some(collection.id))
        .await
        .expect("upload");
    assert!(again.duplicate);
    assert_eq!(again.document.id, doc.id, "the earlier document");
    assert_eq!(again.job_id, Some(job), "and its job");
    assert_eq!(p.blobs.len(), 1, "no second file");
    assert_eq!(p.blobs.open_writers(), 0);
    assert_eq!(p.run().await, None, "no new job");
    let listed = p
        .documents
        .list(
            &ctx,
            &DocumentFilter::default(),
            &PageRequest::first(10).expect("page"),
        )
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
}

/// Pushing past `max_file_bytes` is refused at that part, and nothing is left behind.
#[tokio::test]
async fn an_oversized_upload_is_refused_and_leaves_nothing() {
    let limits = DocumentLimits {
        max_file_bytes: 1_000,
        ..DocumentLimits::default()
    };
    let p = Pipeline::with(policy(5), limits, Arc::new(FixedChunker));
    let ctx = member();
    let mut upload = p.documents.begin_upload(&ctx).await.expect("begin");
    upload.set_name(Some("big.txt"));
    p.documents
        .push(&mut upload, &[b'a'; 600])
        .await
        .expect("within the limit");
    p.documents
        .push(&mut upload, &[b'a'; 400])
        .await
        .expect("exactly the limit");
    let refused = p.documents.push(&mut upload, b"a").await;
    assert!(
        matches!(refused, Err(DocumentsError::TooLarge { limit: 1_000 })),
        "{refused:?}"
    );
    assert_eq!(upload.bytes(), 1_000, "the refused part is not counted");
    assert_eq!(p.blobs.open_writers(), 1, "the write is still open");
    drop(upload);
    assert_eq!(p.blobs.open_writers(), 0);
    assert!(p.blobs.is_empty(), "nothing stored");
    assert!(
        p.documents
            .list(
                &ctx,
                &DocumentFilter::default(),
                &PageRequest::first(10).expect("page")
            )
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert_eq!(p.run().await, None);
}

/// A head detection refuses: binary content at the first 64 KiB (refused while streaming),
/// and a short text file named `.pdf` (refused when the upload finishes). Nothing is stored.
#[tokio::test]
async fn unsupported_heads_are_refused() {
    let p = Pipeline::new(policy(5));
    let ctx = member();

    let mut binary = b"\x7fELF\x02\x01\x01".to_vec();
    binary.resize(100 * 1024, 0);
    let mut upload = p.documents.begin_upload(&ctx).await.expect("begin");
    upload.set_name(Some("tool.txt"));
    p.documents
        .push(&mut upload, &binary[..32 * 1024])
        .await
        .expect("too little to decide");
    let refused = p.documents.push(&mut upload, &binary[32 * 1024..]).await;
    assert!(
        matches!(
            refused,
            Err(DocumentsError::Unsupported(DetectError::Unknown))
        ),
        "{refused:?}"
    );
    drop(upload);

    let refused = p
        .upload_in_parts(&ctx, "report.pdf", b"just some text", 1_024, None)
        .await;
    assert!(
        matches!(
            refused,
            Err(DocumentsError::Unsupported(DetectError::Mismatch {
                detected: Format::Text,
                ..
            }))
        ),
        "{refused:?}"
    );

    assert!(p.blobs.is_empty(), "nothing stored");
    assert_eq!(p.blobs.open_writers(), 0);
    assert_eq!(p.run().await, None, "no job");
}

/// Tenant A queues 50 documents, then tenant B one. While a worker runs A's first, a second
/// worker takes B's job before the rest of A's backlog.
#[tokio::test]
async fn a_second_worker_serves_the_small_tenant_first() {
    let p = Arc::new(Pipeline::new(policy(5)));
    let (a_ctx, b_ctx) = (member(), member());
    let mut a_jobs = Vec::new();
    for i in 0..50 {
        a_jobs.push(job_of(
            &p.upload(&a_ctx, &format!("a{i}.txt"), &format!("A's document {i}"))
                .await,
        ));
        p.clock.advance(Duration::from_millis(1));
    }
    let b_job = job_of(&p.upload(&b_ctx, "b.txt", "B's only document").await);

    let (started_tx, started) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    p.extractor.then(Step::Pause {
        started: started_tx,
        go: go_rx,
    });
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.run().await }
    });
    started.await.expect("the first worker is on a job");
    assert_eq!(
        p.job(a_ctx.tenant_id(), a_jobs[0]).await.status,
        JobStatus::Running,
        "the first worker took A's oldest"
    );
    let second = p.run().await;
    assert!(
        matches!(second, Some(RunOutcome::Ready { job, .. }) if job == b_job),
        "A has a job running and B none: B's job next, not A's backlog ({second:?})"
    );
    go.send(()).expect("the first worker waits");
    assert!(matches!(
        first.await.expect("worker task"),
        Some(RunOutcome::Ready { job, .. }) if job == a_jobs[0]
    ));

    let mut rest = Vec::new();
    while let Some(outcome) = p.run().await {
        let RunOutcome::Ready { job, .. } = outcome else {
            panic!("every job succeeds: {outcome:?}");
        };
        rest.push(job);
    }
    assert_eq!(rest, a_jobs[1..], "then A's backlog, oldest first");
}

/// With one worker looping, nobody has a job running between two runs, so the running count
/// cannot separate the tenants: the round robin does (the tenant served longest ago, or never,
/// first). B's one job is served right after A's first, not behind A's whole backlog.
#[tokio::test]
async fn one_worker_alone_serves_tenants_in_turn() {
    let p = Pipeline::new(policy(5));
    let (a_ctx, b_ctx) = (member(), member());
    let mut a_jobs = Vec::new();
    for i in 0..50 {
        a_jobs.push(job_of(
            &p.upload(&a_ctx, &format!("a{i}.txt"), &format!("A's document {i}"))
                .await,
        ));
        p.clock.advance(Duration::from_millis(1));
    }
    let b_job = job_of(&p.upload(&b_ctx, "b.txt", "B's only document").await);

    let mut order = Vec::new();
    while let Some(outcome) = p.run().await {
        let RunOutcome::Ready { job, .. } = outcome else {
            panic!("every job succeeds: {outcome:?}");
        };
        order.push(job);
        p.clock.advance(Duration::from_millis(1));
    }
    assert_eq!(order.len(), 51);
    assert_eq!(order[0], a_jobs[0], "the oldest job first");
    assert_eq!(order[1], b_job, "then B, never served, before A's backlog");
    assert_eq!(order[2..], a_jobs[1..], "then A's backlog, oldest first");
}

/// `POST /documents/extract` shares the extractor's slots with every tenant and the workers:
/// one tenant's second extraction at once is refused while its first runs, and another
/// tenant's runs beside it.
#[tokio::test]
async fn one_tenant_cannot_hold_every_extraction_slot() {
    let mut p = Pipeline::new(policy(3));
    p.documents = p.documents.clone().with_extraction_share(1);
    let (a, b) = (member(), member());
    let (started, started_rx) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    p.extractor.then(Step::Pause { started, go: go_rx });
    let docs = p.documents.clone();
    let ctx = a;
    let first = tokio::spawn(async move {
        docs.extract_only(&ctx, Some("slow.txt"), b"a slow file".to_vec())
            .await
    });
    started_rx.await.expect("the first extraction started");
    let second = p
        .documents
        .extract_only(&a, Some("more.txt"), b"another file".to_vec())
        .await;
    assert!(
        matches!(second, Err(DocumentsError::Busy)),
        "a tenant's second extraction at once: {second:?}"
    );
    let other = p
        .documents
        .extract_only(&b, Some("mine.txt"), b"another tenant's file".to_vec())
        .await
        .expect("another tenant extracts beside it");
    assert_eq!(other.1.text, "another tenant's file");
    go.send(()).expect("go");
    first
        .await
        .expect("the first task")
        .expect("the first extraction");
    p.documents
        .extract_only(&a, Some("after.txt"), b"after the first".to_vec())
        .await
        .expect("the share is free again");
}

/// With `documents.list_recheck_ms`, a page of documents is reused: a write made through these
/// use cases (an upload, a worker's run, a delete) shows in the next list at once; a change made
/// behind them (another process, here the store written directly) shows once the recheck time
/// has passed since the page was read, and not a microsecond before. Another tenant asking for
/// the same page never gets it.
#[tokio::test]
async fn a_listed_page_is_reused_until_a_write_here_or_the_recheck_time() {
    let recheck = Duration::from_millis(500);
    let p = Pipeline::remembering(
        policy(5),
        DocumentLimits::default(),
        Arc::new(FixedChunker),
        recheck,
    );
    let ctx = member();
    let a = ctx.tenant_id();
    assert_eq!(p.listed(&ctx).await, vec![], "nothing yet (and kept)");

    let up = p.upload(&ctx, "notes.txt", "The quick brown fox.").await;
    let id = up.document.id;
    assert_eq!(
        p.listed(&ctx).await,
        vec![(id, DocumentStatus::Queued)],
        "an upload here shows at once"
    );
    assert!(matches!(p.run().await, Some(RunOutcome::Ready { .. })));
    assert_eq!(
        p.listed(&ctx).await,
        vec![(id, DocumentStatus::Ready)],
        "a worker's run here shows at once"
    );

    let stranger = member();
    assert_eq!(
        p.listed(&stranger).await,
        vec![],
        "another tenant's same page is its own"
    );

    // Another process deletes it: the page read above is reused for the recheck time.
    let read_at = p.now();
    documents::DocumentRepository::delete(p.store.as_ref(), a, id, read_at)
        .await
        .expect("delete behind the use cases")
        .expect("it existed");
    assert_eq!(
        p.listed(&ctx).await,
        vec![(id, DocumentStatus::Ready)],
        "reused within the recheck time"
    );
    p.clock.advance(recheck - MICRO);
    assert_eq!(p.listed(&ctx).await, vec![(id, DocumentStatus::Ready)]);
    p.clock.advance(MICRO);
    assert_eq!(
        p.listed(&ctx).await,
        vec![],
        "read again once it has passed"
    );

    // A delete through the use cases shows at once, whatever was kept.
    let second = p.upload(&ctx, "more.txt", "Another fox.").await;
    assert_eq!(p.listed(&ctx).await.len(), 1);
    p.documents
        .delete(&ctx, second.document.id, &ClientInfo::default())
        .await
        .expect("delete");
    assert_eq!(p.listed(&ctx).await, vec![], "a delete here shows at once");
}

/// A page too heavy to keep (documents carrying large metadata) is read every time: what a
/// tenant can make a server hold in its pages of documents is bounded by size, not by count
/// (`documents::recent`: at most about 8 MB in all, no page above 512 KiB).
#[tokio::test]
async fn a_page_too_heavy_to_keep_is_read_every_time() {
    let p = Pipeline::remembering(
        policy(5),
        DocumentLimits::default(),
        Arc::new(FixedChunker),
        Duration::from_millis(500),
    );
    let ctx = member();
    let a = ctx.tenant_id();
    // Just under the 16 KiB a document's metadata may take.
    let metadata = format!("{{\"note\": \"{}\"}}", "x".repeat(16_000));
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut upload = p.documents.begin_upload(&ctx).await.expect("begin");
        upload.set_name(Some("heavy.txt"));
        p.documents
            .push(&mut upload, format!("heavy document {i}").as_bytes())
            .await
            .expect("push");
        let up = p
            .documents
            .finish_upload(&ctx, upload, None, Some(&metadata))
            .await
            .expect("upload with metadata");
        ids.push(up.document.id);
    }
    assert_eq!(p.listed(&ctx).await.len(), 20);
    documents::DocumentRepository::delete(p.store.as_ref(), a, ids[0], p.now())
        .await
        .expect("delete behind the use cases")
        .expect("it existed");
    assert_eq!(
        p.listed(&ctx).await.len(),
        19,
        "a page of 20 documents with 16 KB of metadata each (over 512 KiB) was not kept"
    );
}
