//! Prints, for each PDF given, one JSON line: the file, the outcome (`text`, `no_text`,
//! `error`, `crashed`), pages, characters, seconds and the text itself, so that
//! `docs/bench/pdf_coverage.py` can set it beside pypdf's.
//!
//! `cargo run --release -p extract --example pdf-coverage -- FILE...`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use documents::{ExtractError, ExtractLimits, Format};

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).unwrap();
        let start = Instant::now();
        let outcome = extract::extract(Format::Pdf, &bytes, &ExtractLimits::default());
        let seconds = start.elapsed().as_secs_f64();
        let (status, pages, text) = match outcome {
            Ok(t) => ("text", t.page_starts.len(), t.text),
            Err(ExtractError::NoText) => ("no_text", 0, String::new()),
            Err(ExtractError::Crashed(e)) => ("crashed", 0, e),
            Err(e) => ("error", 0, e.to_string()),
        };
        let line = serde_json::json!({
            "file": path,
            "status": status,
            "pages": pages,
            "chars": text.chars().count(),
            "seconds": seconds,
            "text": text,
        });
        println!("{line}");
    }
}
