//! Isolation: the two adapters of `documents::Extractor`. Parsers of hostile files can panic,
//! overflow their stack, hang or allocate without bound; the server must survive all of it.
//!
//! - [`ProcessExtractor`] (production): each extraction runs in a child process with an
//!   address-space limit, a CPU-time limit and no core dumps, killed after the timeout. A
//!   crash takes down only the child. A child stays warm for the next files of the same
//!   tenant (up to [`ExtractorConfig::files_per_child`]), each file under the same limits.
//! - [`ThreadExtractor`] (tests, development): each extraction runs on a dedicated thread
//!   with a bounded stack; panics are caught, the caller stops waiting after the timeout. A
//!   stack overflow or an allocation failure still aborts the whole process.

use std::sync::Once;
use std::time::Duration;

use documents::ExtractError;

mod child;
mod process;
mod thread;
mod wire;

pub use child::child_main;
pub use process::{ChildCounts, ProcessExtractor};
pub use thread::ThreadExtractor;

/// Stack of an extraction thread (in either mode).
pub(crate) const STACK_BYTES: usize = 64 * 1024 * 1024;
/// Name (prefix) of extraction threads; their panics are not printed.
pub(crate) const THREAD_NAME: &str = "quire-extract";

/// [`ExtractorConfig::files_per_child`] by default.
pub const DEFAULT_FILES_PER_CHILD: u32 = 64;

/// How extraction is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractorConfig {
    /// How long the caller waits for one extraction.
    pub timeout: Duration,
    /// Address-space limit of an extraction child process, 0 for none (ignored by
    /// [`ThreadExtractor`]). It covers the 64 MiB stack of the extraction thread too: give it
    /// a few hundred MiB at least.
    pub memory_limit_bytes: u64,
    /// Most extractions at once (threads or child processes).
    pub max_concurrent: usize,
    /// OCR of PDF pages without text, `None` for off.
    pub ocr: Option<crate::OcrConfig>,
    /// Files one warm child of [`ProcessExtractor`] reads (all of one tenant, one at a time)
    /// before a fresh one replaces it; 0 for a fresh child per file. Ignored by
    /// [`ThreadExtractor`].
    pub files_per_child: u32,
}

impl Default for ExtractorConfig {
    /// Two minutes, 1 GiB, two at once, no OCR, 64 files per warm child.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            memory_limit_bytes: 1024 * 1024 * 1024,
            max_concurrent: 2,
            ocr: None,
            files_per_child: DEFAULT_FILES_PER_CHILD,
        }
    }
}

impl ExtractorConfig {
    /// The OCR of one extraction of `format`: its scratch folder (owned by the caller, who
    /// removes it when the extraction is over, however it ended) and the job. `None` when OCR
    /// is off, the format has no scanned pages, or no scratch folder could be made (then
    /// scanned pages stay unread and the log says why).
    pub(crate) fn ocr_job(
        &self,
        format: documents::Format,
        languages: Option<&documents::OcrLanguages>,
    ) -> Option<(crate::ocr::Scratch, crate::ocr::OcrJob)> {
        let config = self.ocr.as_ref()?;
        if format != documents::Format::Pdf {
            return None;
        }
        let scratch = match crate::ocr::Scratch::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "OCR is off for this file: no scratch folder");
                return None;
            }
        };
        // Leave a tenth of the time (at least a second) to finish after the last page.
        let margin = (self.timeout / 10).max(Duration::from_secs(1));
        let budget = self.timeout.saturating_sub(margin);
        let job = crate::ocr::OcrJob::new(config, languages, &scratch, budget);
        Some((scratch, job))
    }

    fn timed_out(&self) -> ExtractError {
        ExtractError::TimedOut(kernel::clock::whole_secs_up(self.timeout))
    }
}

/// Installs, once per process, a panic hook that stays silent on extraction threads (parsers
/// panic on hostile files by design, and a panic message may quote the file) and defers to the
/// previous hook everywhere else.
pub(crate) fn quiet_extraction_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_extraction_thread = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(THREAD_NAME));
            if !on_extraction_thread {
                previous(info);
            }
        }));
    });
}
