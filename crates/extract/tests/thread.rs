//! `ThreadExtractor`: the in-process adapter for tests and development.

use std::sync::Arc;
use std::time::Duration;

use documents::{ExtractError, ExtractLimits, Extractor, Format};
use extract::{ExtractorConfig, ThreadExtractor, fixtures};

fn config() -> ExtractorConfig {
    ExtractorConfig {
        timeout: Duration::from_secs(60),
        memory_limit_bytes: 0,
        max_concurrent: 2,
        ocr: None,
        files_per_child: 0,
    }
}

#[tokio::test]
async fn extracts_on_a_thread() {
    let extractor = ThreadExtractor::new(config());
    assert_eq!(extractor.isolation(), "thread");
    assert_eq!(
        extractor.detect(Some("a.pdf"), b"%PDF-1.7\n"),
        Ok(Format::Pdf)
    );
    let text = extractor
        .extract(
            Format::Pdf,
            fixtures::pdf(&["On a thread"]),
            ExtractLimits::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(text.text, "On a thread");
    // pdf-extract panics on this one; the panic stays on the thread and the fallback reads it.
    let text = extractor
        .extract(
            Format::Pdf,
            fixtures::panicking_pdf(),
            ExtractLimits::default(),
            None,
        )
        .await
        .unwrap();
    assert!(text.text.ends_with("日本語テスト"), "{:?}", text.text);
    assert!(matches!(
        extractor
            .extract(
                Format::Docx,
                fixtures::zip_bomb_docx(),
                ExtractLimits::default(),
                None,
            )
            .await,
        Err(ExtractError::TooLarge(_))
    ));
}

#[tokio::test]
async fn the_caller_stops_waiting_and_the_slot_comes_back() {
    let extractor = Arc::new(ThreadExtractor::new(ExtractorConfig {
        timeout: Duration::from_millis(1),
        max_concurrent: 1,
        ..config()
    }));
    // Hundreds of pages cannot be read in a millisecond (a release build reads about two
    // thousand a second, a debug build tens).
    let outcome = extractor
        .extract(
            Format::Pdf,
            fixtures::many_pages_pdf(400),
            ExtractLimits::default(),
            None,
        )
        .await;
    assert!(
        matches!(outcome, Err(ExtractError::TimedOut(1))),
        "{outcome:?}"
    );
    // The timed-out thread still holds the only slot: the next extraction waits for it (the
    // wait for a slot is not part of the timeout), then runs. Its own millisecond can run out
    // on a loaded machine, so it may take a few tries; a slot that never came back would make
    // every try wait forever, which the outer timeout catches.
    let next = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match extractor
                .extract(
                    Format::Text,
                    b"next".to_vec(),
                    ExtractLimits::default(),
                    None,
                )
                .await
            {
                Err(ExtractError::TimedOut(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the slot came back")
    .expect("extracted");
    assert_eq!(next.text, "next");
}
