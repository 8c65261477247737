//! [`ProcessExtractor`]: extraction in a child process (production), a warm child reused
//! for the files of one tenant.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use documents::{
    DetectError, ExtractError, ExtractLimits, ExtractProgress, ExtractedText, Extractor, Format,
    NoProgress, OcrLanguages,
};
use kernel::TenantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::wire::{self, Header};
use super::{ExtractorConfig, STACK_BYTES};
use crate::ocr::OcrJob;

/// Most bytes of the child's stderr kept (to tell a stack overflow from a memory failure).
const STDERR_KEPT: u64 = 16 * 1024;
/// Most bytes of one line of the child's stderr looked at.
const STDERR_LINE: usize = 1024;
/// A warm child idle for longer is stopped (when the pool is next used).
const IDLE_FOR: Duration = Duration::from_secs(60);
/// A warm child whose resident memory after a file exceeds this share of its address-space
/// limit (1/4) is stopped rather than reused.
const RSS_SHARE: u64 = 4;
/// How long a child that closed its output is given to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

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
///
/// A file of a known tenant ([`Extractor::extract_for`]) goes to a warm child: one that
/// stays after its answer and takes the next file of the same tenant, one file at a time,
/// up to `files_per_child` files (see [`ExtractorConfig::files_per_child`]). Each file keeps
/// the per-file child's guarantees: the same address-space limit, a CPU-time limit of the
/// timeout from the start of the file (the soft limit is moved to the CPU time used so far
/// plus the file's allowance), the same wall-clock timeout after which the child is killed,
/// its own extraction thread and OCR scratch folder. A warm child serves one tenant over its
/// life, so what a file leaves in its memory never reaches another tenant's file. It is
/// stopped, and a fresh one started for the next file, after a crash, a timeout, garbage
/// output, `files_per_child` files, resident memory above a quarter of the limit, or a
/// minute idle; at most `max_concurrent` are kept idle. A crash of a child that had already
/// read an earlier file is tried once more on a fresh child, so a file is never failed for
/// what an earlier one left. [`Extractor::extract`] without a tenant always starts a fresh
/// child that exits after its answer.
#[derive(Debug)]
pub struct ProcessExtractor {
    program: PathBuf,
    args: Vec<String>,
    config: ExtractorConfig,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Warm>>,
    started: AtomicU64,
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
            idle: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
        }
    }

    /// The children started so far and the warm ones kept now (for tests).
    #[must_use]
    pub fn children(&self) -> ChildCounts {
        ChildCounts {
            started: self.started.load(Ordering::Relaxed),
            idle: self.idle.lock().map_or(0, |idle| idle.len()),
        }
    }

    fn header(
        &self,
        format: Format,
        limits: &ExtractLimits,
        ocr: Option<OcrJob>,
        serve: bool,
    ) -> Header {
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
            serve,
        }
    }

    fn spawn(&self, tenant: Option<TenantId>) -> Result<Warm, ExtractError> {
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
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExtractError::Unavailable(anyhow::anyhow!(
                "the extraction process has no pipes"
            )));
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        let sink = Arc::new(Mutex::new(Stderr::default()));
        let reader = tokio::spawn(read_stderr(stderr, sink.clone()));
        Ok(Warm {
            tenant,
            child,
            stdin: Some(stdin),
            stdout,
            sink,
            reader,
            files: 0,
            spent: false,
            idle_since: Instant::now(),
        })
    }

    /// A warm child of `tenant`, if one is idle and alive (stopping those idle too long).
    fn take_idle(&self, tenant: TenantId) -> Option<Warm> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|w| w.idle_since.elapsed() < IDLE_FOR);
        loop {
            let at = idle.iter().position(|w| w.tenant == Some(tenant))?;
            let mut warm = idle.swap_remove(at);
            if matches!(warm.child.try_wait(), Ok(None)) {
                return Some(warm);
            }
        }
    }

    /// Keeps `warm` for the next file of its tenant, unless it has read enough files or
    /// holds too much memory; the pool keeps at most `max_concurrent` (the oldest goes).
    fn keep(&self, mut warm: Warm) {
        if warm.tenant.is_none()
            || warm.spent
            || !worth_keeping(
                warm.files,
                self.config.files_per_child,
                warm.resident_bytes(),
                self.config.memory_limit_bytes,
            )
        {
            return;
        }
        warm.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(warm);
            let most = self.config.max_concurrent.max(1);
            while idle.len() > most {
                let oldest = idle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, w)| w.idle_since)
                    .map_or(0, |(i, _)| i);
                idle.swap_remove(oldest);
            }
        }
    }

    /// One extraction; `tenant` decides whether a warm child may take it.
    async fn run(
        &self,
        tenant: Option<TenantId>,
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
        let serve = tenant.is_some() && self.config.files_per_child > 0;
        let mut request = Vec::new();
        wire::write_request(
            &mut request,
            &self.header(format, &limits, ocr, serve),
            &bytes,
        )
        .map_err(|e| ExtractError::Unavailable(anyhow::Error::new(e)))?;
        drop(bytes);
        // The longest well-formed answer: the text, its page offsets (and OCR'd pages), a
        // title and the tables.
        let max_out = limits
            .max_chars
            .saturating_mul(4)
            .saturating_add(u64::from(limits.max_pages).saturating_mul(40))
            .saturating_add(crate::tables::MAX_TABLES as u64 * 72)
            .saturating_add(1024 * 1024);

        let mut fresh_only = false;
        loop {
            let (mut warm, reused) = match tenant.filter(|_| serve && !fresh_only) {
                Some(t) => match self.take_idle(t) {
                    Some(w) => (w, true),
                    None => (self.spawn(Some(t))?, false),
                },
                None => (self.spawn(tenant.filter(|_| serve))?, false),
            };
            match warm
                .answer(&request, serve, max_out, self.config.timeout, &progress)
                .await
            {
                Answer::Text(result) => {
                    warm.files += 1;
                    if serve && !matches!(result, Err(ExtractError::Crashed(_))) {
                        self.keep(warm);
                    }
                    return result;
                }
                Answer::TimedOut => {
                    tracing::warn!(format = %format, "extraction process timed out and was killed");
                    return Err(self.config.timed_out());
                }
                Answer::Died(reason) if reused => {
                    tracing::warn!(format = %format, reason = %reason, "a warm extraction process died; trying the file on a fresh one");
                    fresh_only = true;
                }
                Answer::Died(reason) => {
                    tracing::warn!(format = %format, reason = %reason, "extraction process crashed");
                    return Err(ExtractError::Crashed(reason));
                }
            }
        }
    }
}

/// Whether a warm child that has read `files` files and holds `resident` bytes (`None`:
/// unknown) may take another file: fewer than `per_child` files, and, under an address-space
/// limit `memory_limit` (0: none), at most a quarter of it resident.
fn worth_keeping(files: u32, per_child: u32, resident: Option<u64>, memory_limit: u64) -> bool {
    let cap = memory_limit / RSS_SHARE;
    files < per_child && (cap == 0 || resident.is_some_and(|rss| rss <= cap))
}

/// What [`ProcessExtractor::children`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildCounts {
    /// Child processes started.
    pub started: u64,
    /// Warm children waiting for a file.
    pub idle: usize,
}

/// A child process and its pipes.
#[derive(Debug)]
struct Warm {
    /// The tenant whose files it reads (`None`: one file, then it exits).
    tenant: Option<TenantId>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    sink: Arc<Mutex<Stderr>>,
    reader: JoinHandle<()>,
    /// Files it has answered.
    files: u32,
    /// Not to be reused (its stderr fell behind).
    spent: bool,
    idle_since: Instant,
}

/// How one request to a child ended.
enum Answer {
    /// A well-formed answer (text or a clean error).
    Text(Result<ExtractedText, ExtractError>),
    /// Killed after the timeout.
    TimedOut,
    /// Died or answered garbage (why, in a few words).
    Died(String),
}

impl Warm {
    /// Sends `request` and reads the answer within `timeout`; on anything but an answer
    /// the child is killed (and dropped with `self`).
    async fn answer(
        &mut self,
        request: &[u8],
        serve: bool,
        max_out: u64,
        timeout: Duration,
        progress: &Arc<dyn ExtractProgress>,
    ) -> Answer {
        if let Ok(mut sink) = self.sink.lock() {
            sink.kept.clear();
            sink.progress = progress.clone();
        }
        let Some(mut stdin) = self.stdin.take() else {
            return Answer::Died("no input pipe".to_owned());
        };
        let stdout = &mut self.stdout;
        let run = async move {
            let write = async {
                // A child that dies early closes its stdin: the outcome says why.
                let ok = stdin.write_all(request).await.is_ok() && stdin.flush().await.is_ok();
                // A one-file child reads to the end of its input: close it.
                (ok, serve.then_some(stdin))
            };
            let read = wire::read_response(stdout, max_out);
            tokio::join!(write, read)
        };
        let ((written, stdin), read) = match tokio::time::timeout(timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                return Answer::TimedOut;
            }
        };
        self.stdin = stdin;
        let answer = match read {
            Ok(Some(out)) => wire::parse_response(&out),
            Ok(None) => {
                let _ = self.child.start_kill();
                return Answer::Died("garbage output".to_owned());
            }
            Err(_) => None,
        };
        if let Some(result) = answer
            && written
        {
            if serve {
                // Its stderr up to the file's end goes to this file's watcher, not the next.
                if !self.stderr_caught_up().await {
                    self.spent = true;
                }
                self.detach_progress();
                return Answer::Text(result);
            }
            // A one-file child exits now; its status must say it ended well.
            return match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
                Ok(Ok(status)) if status.success() => {
                    // Its stderr ended with it: the watcher gets every page it told.
                    self.stderr_ended().await;
                    Answer::Text(result)
                }
                Ok(Ok(status)) => Answer::Died(self.reason(status).await),
                _ => {
                    let _ = self.child.start_kill();
                    Answer::Died("did not exit".to_owned())
                }
            };
        }
        // It closed its output without a whole answer: it died (or is about to).
        match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) if !status.success() => Answer::Died(self.reason(status).await),
            _ => {
                let _ = self.child.start_kill();
                Answer::Died("garbage output".to_owned())
            }
        }
    }

    /// Waits (a second at most) for the reader of a child that has exited to take the last
    /// lines of its stderr.
    async fn stderr_ended(&mut self) {
        if !self.reader.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.reader).await;
        }
    }

    /// Why the child died, from its status and what its stderr said.
    async fn reason(&mut self, status: ExitStatus) -> String {
        self.stderr_ended().await;
        let kept = self.sink.lock().map(|s| s.kept.clone()).unwrap_or_default();
        crash_reason(status, &kept)
    }

    /// Waits (a second at most) until the reader has passed the end of every file answered
    /// so far; whether it has.
    async fn stderr_caught_up(&self) -> bool {
        let want = self.files + 1;
        let wait = async {
            loop {
                let ended = match self.sink.lock() {
                    Ok(sink) => {
                        if sink.files_ended >= want {
                            return true;
                        }
                        sink.ended.clone()
                    }
                    Err(_) => return false,
                };
                ended.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .unwrap_or(false)
    }

    fn detach_progress(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            sink.progress = Arc::new(NoProgress);
        }
    }

    /// The child's resident memory (Linux; `None` elsewhere or when it cannot be read).
    fn resident_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // kill_on_drop kills the child; the reader ends with its stderr.
        self.reader.abort();
    }
}

/// Where a child's stderr goes: progress lines to the current file's `progress`, the rest
/// kept (for the current file) to tell why it died.
struct Stderr {
    progress: Arc<dyn ExtractProgress>,
    kept: Vec<u8>,
    /// Files whose end the child has told.
    files_ended: u32,
    /// Notified at each of them.
    ended: Arc<tokio::sync::Notify>,
}

impl Default for Stderr {
    fn default() -> Self {
        Self {
            progress: Arc::new(NoProgress),
            kept: Vec::new(),
            files_ended: 0,
            ended: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl std::fmt::Debug for Stderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stderr")
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
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
        self.run(None, format, bytes, limits, ocr_languages, progress)
            .await
    }

    async fn extract_for(
        &self,
        tenant: TenantId,
        format: Format,
        bytes: Vec<u8>,
        limits: ExtractLimits,
        ocr_languages: Option<OcrLanguages>,
        progress: Arc<dyn ExtractProgress>,
    ) -> Result<ExtractedText, ExtractError> {
        self.run(Some(tenant), format, bytes, limits, ocr_languages, progress)
            .await
    }

    fn isolation(&self) -> &'static str {
        "process"
    }
}

/// Reads the child's stderr to its end: progress lines go to the current file's progress,
/// the rest is kept (at most [`STDERR_KEPT`] bytes a file, lines cut at [`STDERR_LINE`]) to
/// tell why it died.
async fn read_stderr(mut stderr: tokio::process::ChildStderr, sink: Arc<Mutex<Stderr>>) {
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
            let Ok(mut sink) = sink.lock() else { return };
            if wire::is_file_end(&line) {
                sink.files_ended += 1;
                sink.ended.notify_one();
                line.clear();
                continue;
            }
            match wire::parse_progress(&line) {
                Some((done, total)) => sink.progress.pages(done, total),
                None => {
                    keep(&mut sink.kept, &line);
                    keep(&mut sink.kept, b"\n");
                }
            }
            line.clear();
        }
    }
    if let Ok(mut sink) = sink.lock() {
        keep(&mut sink.kept, &line);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_child_is_kept_under_its_file_count_and_a_quarter_of_its_memory_limit() {
        const MIB: u64 = 1024 * 1024;
        assert!(worth_keeping(1, 64, Some(40 * MIB), 1024 * MIB));
        assert!(worth_keeping(63, 64, Some(256 * MIB), 1024 * MIB));
        // Enough files.
        assert!(!worth_keeping(64, 64, Some(40 * MIB), 1024 * MIB));
        assert!(!worth_keeping(1, 0, Some(40 * MIB), 1024 * MIB));
        // Too much memory, or unknown memory under a limit.
        assert!(!worth_keeping(1, 64, Some(256 * MIB + 1), 1024 * MIB));
        assert!(!worth_keeping(1, 64, None, 1024 * MIB));
        // No limit: memory does not count.
        assert!(worth_keeping(1, 64, None, 0));
    }
}
