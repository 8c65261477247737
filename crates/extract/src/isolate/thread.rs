//! [`ThreadExtractor`]: extraction on a dedicated thread (tests and development).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use async_trait::async_trait;
use documents::{
    DetectError, ExtractError, ExtractLimits, ExtractProgress, ExtractedText, Extractor, Format,
    OcrLanguages,
};
use tokio::sync::Semaphore;

use super::{ExtractorConfig, STACK_BYTES, THREAD_NAME, quiet_extraction_panics};

/// Runs each extraction on its own thread with a 64 MiB stack, catching panics
/// (`Crashed("panic")`) and giving up waiting after the timeout (`TimedOut`).
///
/// A thread that times out is left to finish (a thread cannot be killed); it keeps its slot
/// of `max_concurrent` until it does, so hung extractions cannot pile up without bound. The
/// timeout counts from the start of the extraction, not from the wait for a slot. A stack
/// overflow or a failed allocation aborts the whole process, and the memory limit is not
/// enforced: use [`ProcessExtractor`](crate::ProcessExtractor) in production.
///
/// [`ThreadExtractor::new`] installs (once) a panic hook that keeps extraction threads quiet
/// (parsers panic on hostile files by design, and a message may quote the file) and hands
/// every other panic to the hook that was there before.
#[derive(Debug)]
pub struct ThreadExtractor {
    config: ExtractorConfig,
    permits: Arc<Semaphore>,
}

impl ThreadExtractor {
    /// An extractor bounded by `config` (its memory limit is ignored).
    #[must_use]
    pub fn new(config: ExtractorConfig) -> Self {
        quiet_extraction_panics();
        let permits = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        Self { config, permits }
    }
}

#[async_trait]
impl Extractor for ThreadExtractor {
    fn detect(&self, name: Option<&str>, head: &[u8]) -> Result<Format, DetectError> {
        crate::detect(name, head)
    }

    async fn extract_reporting(
        &self,
        format: Format,
        bytes: Vec<u8>,
        limits: ExtractLimits,
        ocr_languages: Option<OcrLanguages>,
        progress: Arc<dyn ExtractProgress>,
    ) -> Result<ExtractedText, ExtractError> {
        let ocr = self.config.ocr_job(format, ocr_languages.as_ref());
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| ExtractError::Unavailable(anyhow::Error::new(e)))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _permit = permit;
                // The scratch folder goes when the thread ends (it may outlive the wait).
                let (_scratch, job) = ocr.map_or((None, None), |(s, j)| (Some(s), Some(j)));
                let started = std::time::Instant::now();
                let result = catch_unwind(AssertUnwindSafe(|| {
                    crate::extract_with(
                        format,
                        &bytes,
                        &limits,
                        job.as_ref(),
                        started,
                        progress.as_ref(),
                    )
                }))
                .unwrap_or_else(|_| Err(ExtractError::Crashed("panic".into())));
                // The caller may have stopped waiting.
                let _ = tx.send(result);
            })
            .map_err(|e| {
                ExtractError::Unavailable(
                    anyhow::Error::new(e).context("could not start an extraction thread"),
                )
            })?;
        match tokio::time::timeout(self.config.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ExtractError::Crashed("panic".into())),
            Err(_) => {
                tracing::warn!(format = %format, "extraction timed out; its thread runs on");
                Err(self.config.timed_out())
            }
        }
    }

    fn isolation(&self) -> &'static str {
        "thread"
    }
}
