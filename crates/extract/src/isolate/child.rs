//! The child's side of [`ProcessExtractor`](crate::ProcessExtractor).

use std::io::{self, Write};

use documents::{ExtractError, Format};

use super::wire;
use super::{STACK_BYTES, THREAD_NAME};

/// Largest file the child accepts.
const MAX_BODY: u64 = 4 * 1024 * 1024 * 1024;

/// Exit codes of [`child_main`] other than 0.
const EXIT_BAD_REQUEST: i32 = 2;
const EXIT_LIMITS: i32 = 3;
const EXIT_THREAD: i32 = 4;
const EXIT_WRITE: i32 = 5;

/// The extraction child: reads one request from stdin, limits its own resources (address
/// space, CPU time, no core dumps) before reading the file, extracts on a thread with a
/// bounded stack and writes the result to stdout. Returns the process exit code: 0 when a
/// result (success or a clean error) was written; 2 for a malformed request, 3 when the
/// limits could not be set, 4 when the thread could not start, 5 when stdout failed.
///
/// Call it from a hidden subcommand of the server binary (`quire extract-child`) and exit
/// with its code. Panic messages are silenced (they may quote the file).
#[must_use]
pub fn child_main() -> i32 {
    std::panic::set_hook(Box::new(|_| {}));
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let started = std::time::Instant::now();
    let Ok(header) = wire::read_header(&mut input) else {
        return EXIT_BAD_REQUEST;
    };
    if apply_limits(&header).is_err() {
        return EXIT_LIMITS;
    }
    let Ok(body) = wire::read_body(&mut input, MAX_BODY) else {
        return EXIT_BAD_REQUEST;
    };
    drop(input);
    let Ok(format) = header.format.parse::<Format>() else {
        return EXIT_BAD_REQUEST;
    };
    let limits = header.limits();
    let ocr = header.ocr;
    let stack = usize::try_from(header.stack_bytes)
        .unwrap_or(STACK_BYTES)
        .clamp(1024 * 1024, 1024 * 1024 * 1024);
    let worker = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .stack_size(stack)
        .spawn(move || {
            crate::extract_with(
                format,
                &body,
                &limits,
                ocr.as_ref(),
                started,
                &StderrProgress,
            )
        });
    let result = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(ExtractError::Crashed("panic".into()))),
        Err(_) => return EXIT_THREAD,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match wire::write_response(&mut out, &result).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => EXIT_WRITE,
    }
}

/// Tells the parent each page read, a line on stderr ([`wire::progress_line`]).
struct StderrProgress;

impl documents::ExtractProgress for StderrProgress {
    fn pages(&self, done: u32, total: u32) {
        // The parent may be gone or not listening: the extraction goes on regardless.
        let _ = io::stderr()
            .lock()
            .write_all(wire::progress_line(done, total).as_bytes());
    }
}

#[cfg(unix)]
fn apply_limits(header: &wire::Header) -> io::Result<()> {
    use rlimit::Resource;
    let lower = |resource: Resource, soft: u64, hard: u64| -> io::Result<()> {
        let (_, current_hard) = rlimit::getrlimit(resource)?;
        rlimit::setrlimit(resource, soft.min(current_hard), hard.min(current_hard))
    };
    lower(Resource::CORE, 0, 0)?;
    if header.memory_limit_bytes > 0 {
        lower(
            Resource::AS,
            header.memory_limit_bytes,
            header.memory_limit_bytes,
        )?;
    }
    if header.cpu_seconds > 0 {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        lower(Resource::CPU, header.cpu_seconds, header.cpu_seconds + 1)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn apply_limits(_header: &wire::Header) -> io::Result<()> {
    Ok(())
}
