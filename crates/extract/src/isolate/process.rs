//! [`ProcessExtractor`]: extraction in a child process (production).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use async_trait::async_trait;
use documents::{
    DetectError, ExtractError, ExtractLimits, ExtractProgress, ExtractedText, Extractor, Format,
    OcrLanguages,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::wire::{self, Header};
use super::{ExtractorConfig, STACK_BYTES};
use crate::ocr::OcrJob;

/// Most bytes of the child's stderr kept (to tell a stack overflow from a memory failure).
const STDERR_KEPT: u64 = 16 * 1024;
/// Most bytes of one line of the child's stderr looked at.
const STDERR_LINE: usize = 1024;

/// Runs each extraction in a child process: `program args…`, which must call
/// [`child_main`](crate::child_main) (the `quire` binary's hidden `extract-child` command).
///
/// The child gets an empty environment, limits itself (address space to
/// `memory_limit_bytes`, CPU time to the timeout plus a second, no core dumps), reads the
/// file from stdin and writes the text to stdout. The parent kills it after the timeout
/// (`TimedOut`) and maps a death by signal, a non-zero exit or garbage output to
/// `Crashed(reason)`; a failure to start it is `Unavailable` (transient). At most
/// `max_concurrent` children run at once; more callers wait for a slot (the timeout counts
/// from the start of the child, not from the wait).
#[derive(Debug)]
pub struct ProcessExtractor {
    program: PathBuf,
    args: Vec<String>,
    config: ExtractorConfig,
    permits: Arc<Semaphore>,
}

impl ProcessExtractor {
    /// An extractor that starts `program` with `args` (e.g. the `quire` executable and
    /// `["extract-child"]`).
    #[must_use]
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, config: ExtractorConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        Self {
            program: program.into(),
            args,
            config,
            permits,
        }
    }

    fn header(&self, format: Format, limits: &ExtractLimits, ocr: Option<OcrJob>) -> Header {
        let timeout = self.config.timeout;
        Header {
            format: format.as_str().to_owned(),
            max_pages: limits.max_pages,
            max_chars: limits.max_chars,
            max_inflated_bytes: limits.max_inflated_bytes,
            max_archive_entries: limits.max_archive_entries,
            memory_limit_bytes: self.config.memory_limit_bytes,
            cpu_seconds: kernel::clock::whole_secs_up(timeout) + 1,
            stack_bytes: STACK_BYTES as u64,
            ocr,
        }
    }
}

#[async_trait]
impl Extractor for ProcessExtractor {
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
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ExtractError::Unavailable(anyhow::Error::new(e)))?;
        // Removed when this call returns, after the child (and what it started) is done or
        // killed.
        let (_scratch, ocr) = self
            .config
            .ocr_job(format, ocr_languages.as_ref())
            .map_or((None, None), |(s, j)| (Some(s), Some(j)));
        let mut request = Vec::new();
        wire::write_request(&mut request, &self.header(format, &limits, ocr), &bytes)
            .map_err(|e| ExtractError::Unavailable(anyhow::Error::new(e)))?;
        drop(bytes);

        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ExtractError::Unavailable(
                    anyhow::Error::new(e).context("could not start the extraction process"),
                )
            })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExtractError::Unavailable(anyhow::anyhow!(
                "the extraction process has no pipes"
            )));
        };
        // The longest well-formed answer: the text, its page offsets (and OCR'd pages), a
        // title and the tables.
        let max_out = limits
            .max_chars
            .saturating_mul(4)
            .saturating_add(u64::from(limits.max_pages).saturating_mul(40))
            .saturating_add(crate::tables::MAX_TABLES as u64 * 72)
            .saturating_add(1024 * 1024);

        let run = async {
            let write = async move {
                // A child that dies early closes its stdin: the outcome says why.
                let _ = stdin.write_all(&request).await;
                let _ = stdin.shutdown().await;
            };
            let read_out = async move {
                let mut out = Vec::new();
                let _ = stdout
                    .take(max_out.saturating_add(1))
                    .read_to_end(&mut out)
                    .await;
                out
            };
            let read_err = read_stderr(stderr, progress.as_ref());
            let ((), out, err) = tokio::join!(write, read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(self.config.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                tracing::warn!(format = %format, "extraction process timed out and was killed");
                return Err(self.config.timed_out());
            }
        };
        let status = status.map_err(|e| {
            ExtractError::Unavailable(
                anyhow::Error::new(e).context("could not wait for the extraction process"),
            )
        })?;
        if status.success() {
            if out.len() as u64 <= max_out
                && let Some(result) = wire::parse_response(&out)
            {
                return result;
            }
            tracing::warn!(format = %format, "extraction process answered garbage");
            return Err(ExtractError::Crashed("garbage output".into()));
        }
        let reason = crash_reason(status, &err);
        tracing::warn!(format = %format, reason = %reason, "extraction process crashed");
        Err(ExtractError::Crashed(reason))
    }

    fn isolation(&self) -> &'static str {
        "process"
    }
}

/// Reads the child's stderr to its end: progress lines go to `progress`, the rest is kept
/// (at most [`STDERR_KEPT`] bytes, lines cut at [`STDERR_LINE`]) to tell why it died.
async fn read_stderr(
    mut stderr: tokio::process::ChildStderr,
    progress: &dyn ExtractProgress,
) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    let keep = |kept: &mut Vec<u8>, line: &[u8]| {
        let room = usize::try_from(STDERR_KEPT)
            .unwrap_or(usize::MAX)
            .saturating_sub(kept.len());
        kept.extend_from_slice(&line[..line.len().min(room)]);
    };
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < STDERR_LINE {
                    line.push(b);
                }
                continue;
            }
            match wire::parse_progress(&line) {
                Some((done, total)) => progress.pages(done, total),
                None => {
                    keep(&mut kept, &line);
                    keep(&mut kept, b"\n");
                }
            }
            line.clear();
        }
    }
    keep(&mut kept, &line);
    kept
}

/// Why the child died, in a few words (its stderr is only searched, never quoted).
fn crash_reason(status: ExitStatus, stderr: &[u8]) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let stderr = String::from_utf8_lossy(stderr);
            return if stderr.contains("has overflowed its stack") {
                format!("stack overflow (signal {signal})")
            } else if stderr.contains("memory allocation of") {
                format!("memory limit (signal {signal})")
            } else {
                match signal {
                    6 => "stack overflow or abort (signal 6)".to_owned(),
                    9 => "killed (signal 9)".to_owned(),
                    11 => "invalid memory access (signal 11)".to_owned(),
                    24 => "CPU time limit (signal 24)".to_owned(),
                    n => format!("signal {n}"),
                }
            };
        }
    }
    let _ = stderr;
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "abnormal exit".to_owned(),
    }
}
