//! Memory the allocator keeps after the program freed it.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena for reuse, and gives
//! pages back to the system only from the top of a heap. Start-up frees a lot below live
//! data: each HTTP worker builds the OpenAPI description of the routes it registers and drops
//! it, the migrations run, the first password hash takes its 19 MiB. Without a trim, an idle
//! server keeps those pages resident (43 MB instead of 28 MB, docs/benchmarks.md, "Idle
//! memory"). [`release_after_start_up`] asks once, when the workers have started.

use std::time::Duration;

/// Asks the allocator to give the free pages of every arena back to the system; `true` when
/// it gave something back. glibc only (`malloc_trim(0)`); elsewhere nothing is asked.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
#[must_use]
pub(crate) fn release_freed_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and works on the allocator's own free lists,
    // under the allocator's locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to give the free pages of every arena back to the system (glibc only;
/// here, nothing to ask).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[must_use]
pub(crate) fn release_freed_memory() -> bool {
    false
}

/// Releases what start-up freed, `after` the server began running (its HTTP workers build
/// their routes in that time), on a blocking thread: the trim walks every arena.
pub(crate) fn release_after_start_up(after: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let released = tokio::task::spawn_blocking(release_freed_memory)
            .await
            .unwrap_or(false);
        tracing::debug!(released, "start-up memory given back to the system");
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The one unsafe call of the workspace is here: no other source file allows unsafe code
    /// (the workspace lint denies it; an `allow` elsewhere would need a review like this one).
    #[test]
    fn no_other_file_allows_unsafe_code() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut allowed = Vec::new();
        let mut stack = vec![
            root.join("crates"),
            root.join("apps"),
            root.join("migrations"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "target") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    && std::fs::read_to_string(&path)
                        .is_ok_and(|text| text.contains(concat!("allow(", "unsafe_code)")))
                {
                    allowed.push(path);
                }
            }
        }
        assert_eq!(allowed.len(), 1, "{allowed:?}");
        assert!(
            allowed[0].ends_with("apps/quire/src/allocator.rs"),
            "{allowed:?}"
        );
    }

    #[test]
    fn releasing_freed_memory_can_be_asked_any_time() {
        let garbage: Vec<Vec<u8>> = (0..64).map(|_| vec![1_u8; 64 * 1024]).collect();
        drop(garbage);
        // Whether anything came back depends on the allocator's state; it must not fail.
        let _ = super::release_freed_memory();
    }
}
