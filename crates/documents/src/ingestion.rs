//! The ingestion pipeline that a worker runs job by job: claim → extract → chunk → embed and
//! index (with retrieval) → store, with transient failures retried with exponential backoff.
//!
//! Two kinds of failure are told apart: a failure that may be about the file (a transient
//! extraction error, a provider error nobody classified) uses one of `max_attempts`; an outage
//! of a service the job needs (the cache behind the usage meter, the database, the embedding
//! provider) uses none: the job is released and waits, with a capped backoff, for as long as
//! the outage lasts. Writes of the job's own state (heartbeats, the final write) are retried
//! for a while, so that a database blip does not leave the job orphaned until its lease ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kernel::{Event, EventKind, Events, NoEvents};

use tracing::Instrument as _;

use crate::model::{ChunkingSettings, Claim, JobId, JobStatus, NewChunk, Progress, Stage};
use crate::ports::{
    BlobError, ExtractError, ExtractProgress, Failure, IndexFailure, Ingested, IngestionPorts,
};
use crate::uploads::DocumentLimits;

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
    /// Longest delay before a job released for an outage runs again.
    pub outage_retry_max: Duration,
    /// Jobs one tenant may run at once across every worker (claims skip a tenant at its
    /// cap), so that one tenant's slow files never hold every worker.
    pub max_running_per_tenant: u32,
    /// How often the pages a running extraction has read are written to its job (when they
    /// changed).
    pub progress_every: Duration,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3_600),
            outage_retry_max: Duration::from_secs(30),
            max_running_per_tenant: u32::MAX,
            progress_every: Duration::from_millis(250),
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

    /// The delay before a job released for an outage runs again (its attempt not counted):
    /// the retry delay, at most `outage_retry_max`.
    #[must_use]
    pub fn outage_backoff(&self, attempt: u32) -> Duration {
        self.backoff(attempt).min(self.outage_retry_max)
    }

    /// How long a write of a job's state (a heartbeat, the last write) is tried again while
    /// the store fails: half the lease, so that the lease still holds when it succeeds.
    #[must_use]
    pub fn write_retry_for(&self) -> Duration {
        self.lease / 2
    }
}

/// The pages an extraction has read of how many, as it tells them (from its own thread).
#[derive(Debug, Default)]
struct PagesRead(AtomicU64);

impl PagesRead {
    /// (done, total).
    fn get(&self) -> (u32, u32) {
        let v = self.0.load(Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)] // two halves of one u64
        ((v & u64::from(u32::MAX)) as u32, (v >> 32) as u32)
    }
}

impl ExtractProgress for PagesRead {
    fn pages(&self, done: u32, total: u32) {
        self.0.store(
            (u64::from(total) << 32) | u64::from(done),
            Ordering::Relaxed,
        );
    }
}

/// When a run last wrote its job's state (its claim, then each heartbeat).
#[derive(Debug)]
struct Beat(std::sync::Mutex<tokio::time::Instant>);

impl Default for Beat {
    /// Now.
    fn default() -> Self {
        Self(std::sync::Mutex::new(tokio::time::Instant::now()))
    }
}

impl Beat {
    /// Whether at least `every` has passed since the last write.
    fn due(&self, every: Duration) -> bool {
        self.0.lock().map_or(true, |last| last.elapsed() >= every)
    }

    fn written(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = tokio::time::Instant::now();
        }
    }
}

/// The first pause between two tries of a failed write of a job's state; it doubles.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two tries of a failed write of a job's state.
const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);

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
    /// A service the job needs was down: the job runs again later, its attempt not counted.
    Waiting {
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
    ports: IngestionPorts,
    limits: DocumentLimits,
    policy: IngestPolicy,
    events: Arc<dyn Events>,
}

impl Ingestion {
    /// The pipeline over these ports.
    #[must_use]
    pub fn new(ports: IngestionPorts, limits: DocumentLimits, policy: IngestPolicy) -> Self {
        Self {
            ports,
            limits,
            policy,
            events: Arc::new(NoEvents),
        }
    }

    /// Publishes `document.ready` and `document.failed` to `events` when a run ends so.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn Events>) -> Self {
        self.events = events;
        self
    }

    /// Publishes the end of a run that settled its document: ready, or failed for good.
    fn publish(&self, claim: &Claim, outcome: &RunOutcome, error: Option<&str>) {
        let Some(document) = claim.job.document_id else {
            return;
        };
        let (kind, data) = match outcome {
            RunOutcome::Ready { chunks, .. } => (
                EventKind::DocumentReady,
                serde_json::json!({
                    "document_id": document.to_string(),
                    "job_id": claim.job.id.to_string(),
                    "chunks": chunks,
                }),
            ),
            RunOutcome::Failed { .. } => (
                EventKind::DocumentFailed,
                serde_json::json!({
                    "document_id": document.to_string(),
                    "job_id": claim.job.id.to_string(),
                    "error": error,
                }),
            ),
            _ => return,
        };
        self.events.publish(Event {
            tenant: claim.job.tenant_id,
            kind,
            data,
        });
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

    async fn settle(&self, claim: Claim) -> Result<RunOutcome, anyhow::Error> {
        let job = claim.job.id;
        let outcome = match self.run(&claim).await {
            Ok(outcome) => {
                self.publish(&claim, &outcome, None);
                outcome
            }
            Err(Step::Lost) => RunOutcome::LeaseLost { job },
            Err(Step::Canceled) => {
                self.write_state("cancelling a job", || {
                    self.ports.jobs.cancel(&claim, self.ports.clock.now())
                })
                .await?;
                RunOutcome::Canceled { job }
            }
            Err(Step::Outage(why)) => {
                tracing::warn!(%job, error = %why.logged, attempt = claim.job.attempts, "a service ingestion needs is down; the job waits for it");
                let at = self.ports.clock.now() + self.policy.outage_backoff(claim.job.attempts);
                let applied = self
                    .write_state("releasing a job", || {
                        self.ports.jobs.fail(
                            &claim,
                            &why.shown,
                            Failure::Release(at),
                            self.ports.clock.now(),
                        )
                    })
                    .await?;
                if applied {
                    RunOutcome::Waiting { job }
                } else {
                    RunOutcome::LeaseLost { job }
                }
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
                        .write_state("recording a job's failure", || {
                            self.ports.jobs.fail(
                                &claim,
                                &why.shown,
                                Failure::RetryAt(at),
                                self.ports.clock.now(),
                            )
                        })
                        .await?;
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
        claim: &Claim,
        error: &str,
        status: JobStatus,
    ) -> Result<RunOutcome, anyhow::Error> {
        let applied = self
            .write_state("recording a job's failure", || {
                self.ports
                    .jobs
                    .fail(claim, error, Failure::Final(status), self.ports.clock.now())
            })
            .await?;
        Ok(if applied {
            let outcome = RunOutcome::Failed { job: claim.job.id };
            self.publish(claim, &outcome, Some(error));
            outcome
        } else {
            RunOutcome::LeaseLost { job: claim.job.id }
        })
    }

    /// Runs `write`, a write of the job's state, again while the store fails, with a short
    /// doubling pause, for at most [`IngestPolicy::write_retry_for`]: a database blip must not
    /// leave the job `processing` until its lease ends.
    async fn write_state<T, F, Fut>(&self, what: &str, write: F) -> Result<T, anyhow::Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::ports::StoreError>>,
    {
        let mut backoff = kernel::retry::Backoff::new(
            self.policy.write_retry_for(),
            WRITE_RETRY_FIRST,
            WRITE_RETRY_MAX,
        );
        loop {
            match write().await {
                Ok(v) => return Ok(v),
                Err(e) => match backoff.next_pause() {
                    Some(pause) => {
                        tracing::warn!(error = %chain(&e), retry_in_ms = pause.as_millis(), "{what} failed; trying again");
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(anyhow::Error::new(e).context(what.to_owned())),
                },
            }
        }
    }

    /// Writes `progress` (extending the lease) unless the job's state was written less than
    /// [`IngestPolicy::progress_every`] ago: a small document goes from its claim to its
    /// completion without a write in between, a large one shows its stages as they go.
    async fn heartbeat(&self, claim: &Claim, progress: Progress, beat: &Beat) -> Result<(), Step> {
        if !beat.due(self.policy.progress_every) {
            return Ok(());
        }
        let held = self
            .write_state("recording a job's progress", || {
                let lease_until = self.ports.clock.now() + self.policy.lease;
                self.ports.jobs.progress(claim, progress, lease_until)
            })
            .await;
        match held {
            Ok(true) => {
                beat.written();
                Ok(())
            }
            Ok(false) => Err(Step::Lost),
            Err(e) => Err(Step::Outage(Why {
                shown: STORAGE_DOWN.to_owned(),
                logged: format!("{e:#}"),
            })),
        }
    }

    /// Awaits `extraction`, writing the pages it has read to the job every
    /// [`IngestPolicy::progress_every`] when they changed (which extends the lease too). A lost
    /// lease stops the extraction.
    async fn showing_pages<T>(
        &self,
        claim: &Claim,
        extraction: impl Future<Output = T>,
        pages: &PagesRead,
        beat: &Beat,
    ) -> Result<T, Step> {
        tokio::pin!(extraction);
        let mut shown = (0, 0);
        loop {
            tokio::select! {
                out = &mut extraction => return Ok(out),
                () = tokio::time::sleep(self.policy.progress_every) => {
                    let now = pages.get();
                    if now != shown {
                        shown = now;
                        self.heartbeat(claim, Progress::of(Stage::Extracting, now.0, now.1), beat)
                            .await?;
                    }
                }
            }
        }
    }

    async fn run(&self, claim: &Claim) -> Result<RunOutcome, Step> {
        let job = &claim.job;
        if job.attempts > self.policy.max_attempts {
            // Its workers died (crash, kill -9) on every attempt: a poison file, most likely.
            return Err(Step::Dead(Why::shown(format!(
                "processing was interrupted {} times; the file may be hostile",
                job.attempts - 1
            ))));
        }
        // The claim has just written the job's state.
        let beat = Beat::default();
        let document_id = job.document_id.ok_or(Step::Canceled)?;
        let document = self
            .ports
            .documents
            .find(job.tenant_id, document_id)
            .await
            .map_err(|e| Step::storage(&e))?
            .ok_or(Step::Canceled)?;
        self.heartbeat(claim, Progress::of(Stage::Extracting, 0, 0), &beat)
            .await?;
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
        let collection = match document.collection_id {
            Some(c) => Some(
                self.ports
                    .collections
                    .find(job.tenant_id, c)
                    .await
                    .map_err(|e| Step::storage(&e))?
                    .ok_or(Step::Canceled)?,
            ),
            None => None,
        };
        let ocr_languages = collection.as_ref().and_then(|c| c.ocr_languages.clone());
        let pages_read = Arc::new(PagesRead::default());
        let extraction = self.ports.extractor.extract_for(
            job.tenant_id,
            document.format,
            bytes,
            self.limits.extract,
            ocr_languages,
            pages_read.clone(),
        );
        let text = match self
            .showing_pages(claim, extraction, &pages_read, &beat)
            .await?
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
        let pages = text.pages();
        self.heartbeat(claim, Progress::of(Stage::Chunking, 0, 0), &beat)
            .await?;
        let settings = collection.map_or_else(ChunkingSettings::default, |c| c.chunking);
        let ocr_pages = u32::try_from(text.ocr_pages.len()).unwrap_or(u32::MAX);
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
        let total = u32::try_from(count).unwrap_or(u32::MAX);
        let batch = self.ports.indexer.batch_size().max(1);
        for (i, part) in chunks.chunks(batch).enumerate() {
            let done = u32::try_from(i * batch).unwrap_or(u32::MAX);
            self.heartbeat(claim, Progress::of(Stage::Embedding, done, total), &beat)
                .await?;
            self.ports
                .indexer
                .index(&document, part)
                .await
                .map_err(Step::from)?;
        }
        self.heartbeat(claim, Progress::of(Stage::Indexing, 0, total), &beat)
            .await?;
        // Tried again through a blip: a run that fails here would embed (and bill) again.
        let stored = self
            .write_state("completing a job", || {
                self.ports.jobs.complete(
                    claim,
                    Ingested {
                        pages,
                        ocr_pages,
                        chunks: chunks.clone(),
                    },
                    self.ports.clock.now(),
                )
            })
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                // Deleted meanwhile (heartbeats are sparse, so a delete may land after the
                // vectors were written): drop what this run indexed. A job taken over or
                // reindexed meanwhile leaves them to the run that holds it.
                if let Ok(None) = self.ports.documents.find(job.tenant_id, document_id).await
                    && let Err(e) = self
                        .ports
                        .indexer
                        .remove_document(job.tenant_id, document_id)
                        .await
                {
                    tracing::warn!(error = %e, "removing the vectors of a deleted document failed");
                }
                return Err(Step::Lost);
            }
            Err(e) => {
                return Err(Step::Outage(Why {
                    shown: STORAGE_DOWN.to_owned(),
                    logged: format!("{e:#}"),
                }));
            }
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
            IndexFailure::Unavailable(m) => Step::Outage(Why {
                shown:
                    "a service indexing needs was unavailable; processing resumes when it returns"
                        .to_owned(),
                logged: m,
            }),
        }
    }
}

/// Why a run stopped early.
#[derive(Debug)]
enum Step {
    Lost,
    Canceled,
    Permanent(Why),
    /// May be about the file: uses an attempt.
    Transient(Why),
    /// A service the job needs is down: uses no attempt.
    Outage(Why),
    /// Out of attempts before this run began.
    Dead(Why),
}

/// What a job shows while it waits for its storage.
const STORAGE_DOWN: &str = "storage was unavailable; processing resumes when it returns";

impl Step {
    /// A storage failure: an outage, its cause for the log only.
    fn storage(e: &(dyn std::error::Error + 'static)) -> Self {
        Step::Outage(Why::internal(STORAGE_DOWN, e))
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
}
