//! Logging: structured JSON lines in production, readable lines in development. `RUST_LOG`
//! overrides `log.filter`. Request spans carry the request id; nothing logs bodies, tokens or
//! raw paths.

use settings::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Log targets of the document parsers (through the `log` bridge).
const PARSERS: [&str; 5] = [
    "lopdf",
    "pdf_extract",
    "html5ever",
    "markup5ever",
    "docx_rs",
];

/// Installs the global subscriber once; later calls are no-ops (tests spawn many apps).
///
/// # Errors
/// When `RUST_LOG` or `log.filter` is not a valid filter: a typo must not silently change what
/// is logged.
pub fn init(log: &LogSettings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("invalid RUST_LOG {v:?}: {e}"))?
        }
        _ => EnvFilter::try_new(&log.filter).map_err(|e| {
            anyhow::anyhow!("invalid configuration: log.filter {:?}: {e}", log.filter)
        })?,
    };
    // Parsers log what they found wrong in a file, which can quote the file: never logged,
    // whatever the filter says (with `documents.isolation = "thread"` they run in-process).
    let mut filter = filter;
    for quiet in PARSERS {
        filter = filter.add_directive(
            format!("{quiet}=off")
                .parse()
                .map_err(|e| anyhow::anyhow!("the directive for {quiet}: {e}"))?,
        );
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
    Ok(())
}
