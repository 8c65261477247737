//! The ingestion pipeline that a worker runs job by job: claim → extract → chunk → embed and
//! index (with retrieval) → store, with transient failures retried with exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::model::{ChunkingSettings, Claim, JobId, JobStatus, NewChunk, Stage};
use crate::ports::{BlobError, ExtractError, Failure, IndexFailure, Ingested, IngestionPorts};
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
    ports: IngestionPorts,
    limits: DocumentLimits,
    policy: IngestPolicy,
}

impl Ingestion {
    /// The pipeline over these ports.
    #[must_use]
    pub fn new(ports: IngestionPorts, limits: DocumentLimits, policy: IngestPolicy) -> Self {
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

    async fn settle(&self, claim: Claim) -> Result<RunOutcome, anyhow::Error> {
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
        claim: &Claim,
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

    async fn heartbeat(&self, claim: &Claim, stage: Stage, fraction: f32) -> Result<(), Step> {
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

    async fn run(&self, claim: &Claim) -> Result<RunOutcome, Step> {
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
}
