//! OCR of scanned PDF pages through the `extract-child` binary and on a thread: a scan is
//! read, a missing tool or language fails with a clear reason, and hostile scans (huge pages,
//! many pages) stay within their page, time and memory bounds.
//!
//! Needs poppler-utils' `pdftoppm` and `tesseract` with English (`.ci/run` installs them):
//! under `CI` a missing tool fails the test; elsewhere the test says it skips.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use documents::{ExtractError, ExtractLimits, Extractor, Format, OcrLanguages};
use extract::{ExtractorConfig, OcrConfig, ProcessExtractor, ThreadExtractor, fixtures};

fn config(ocr: Option<OcrConfig>) -> ExtractorConfig {
    ExtractorConfig {
        timeout: Duration::from_secs(60),
        memory_limit_bytes: 1024 * 1024 * 1024,
        max_concurrent: 2,
        ocr,
        files_per_child: extract::DEFAULT_FILES_PER_CHILD,
    }
}

fn child(config: ExtractorConfig) -> ProcessExtractor {
    ProcessExtractor::new(env!("CARGO_BIN_EXE_extract-child"), Vec::new(), config)
}

const FIRST: &str = "Quarterly revenue grew by seventeen percent in the northern region.";
const SECOND: &str = "The zebra crossing near the harbour was repainted in March.";

fn words(text: &str) -> String {
    text.to_lowercase()
}

#[tokio::test]
async fn a_scanned_pdf_is_read_by_ocr_in_the_child_process() {
    let Some(ocr) = fixtures::installed_ocr_tools() else {
        return;
    };
    let scan = fixtures::scanned_pdf(&[FIRST, SECOND], &ocr.pdftoppm).expect("a scan");
    // Without OCR, the scan has no text (as before).
    assert!(matches!(
        child(config(None))
            .extract(Format::Pdf, scan.clone(), ExtractLimits::default(), None)
            .await,
        Err(ExtractError::NoText)
    ));
    let languages = OcrLanguages::new(&["eng"]).expect("languages");
    let text = child(config(Some(ocr)))
        .extract(Format::Pdf, scan, ExtractLimits::default(), Some(languages))
        .await
        .expect("read by OCR");
    assert_eq!(text.ocr_pages, vec![1, 2]);
    assert_eq!(text.pages(), Some(2));
    let read = words(&text.text);
    for word in ["quarterly", "revenue", "seventeen", "zebra", "harbour"] {
        assert!(read.contains(word), "{word} in {read:?}");
    }
    // The second page starts where its text does.
    let second: String = text
        .text
        .chars()
        .skip(usize::try_from(text.page_starts[1]).expect("fits"))
        .collect();
    assert!(words(&second).contains("zebra"), "{second:?}");
}

#[tokio::test]
async fn a_scanned_pdf_is_read_by_ocr_on_a_thread() {
    let Some(ocr) = fixtures::installed_ocr_tools() else {
        return;
    };
    let scan = fixtures::scanned_pdf(&[SECOND], &ocr.pdftoppm).expect("a scan");
    let text = ThreadExtractor::new(config(Some(ocr)))
        .extract(Format::Pdf, scan, ExtractLimits::default(), None)
        .await
        .expect("read by OCR");
    assert_eq!(text.ocr_pages, vec![1]);
    assert!(words(&text.text).contains("harbour"), "{:?}", text.text);
}

#[tokio::test]
async fn a_missing_tool_or_language_fails_with_its_reason() {
    // No tool needed: the path names nothing.
    let missing = OcrConfig {
        pdftoppm: PathBuf::from("/nonexistent/pdftoppm"),
        tesseract: PathBuf::from("/nonexistent/tesseract"),
        ..OcrConfig::default()
    };
    for extractor in [
        Box::new(child(config(Some(missing.clone())))) as Box<dyn Extractor>,
        Box::new(ThreadExtractor::new(config(Some(missing)))),
    ] {
        match extractor
            .extract(
                Format::Pdf,
                fixtures::image_only_pdf(),
                ExtractLimits::default(),
                None,
            )
            .await
        {
            Err(e @ ExtractError::OcrFailed(_)) => {
                let message = e.public_message();
                assert!(
                    message.contains("no extractable text")
                        && message.contains("pdftoppm was not found at /nonexistent/pdftoppm"),
                    "{message}"
                );
            }
            other => panic!("expected OcrFailed, got {other:?}"),
        }
    }
    // A file with text never needs the tools.
    let text = child(config(Some(OcrConfig {
        tesseract: PathBuf::from("/nonexistent/tesseract"),
        ..OcrConfig::default()
    })))
    .extract(
        Format::Pdf,
        fixtures::pdf(&["Plain text."]),
        ExtractLimits::default(),
        None,
    )
    .await
    .expect("text");
    assert!(text.ocr_pages.is_empty());

    let Some(ocr) = fixtures::installed_ocr_tools() else {
        return;
    };
    let scan = fixtures::scanned_pdf(&[FIRST], &ocr.pdftoppm).expect("a scan");
    let not_installed = OcrLanguages::new(&["zzz"]).expect("a well-formed code");
    match child(config(Some(ocr)))
        .extract(
            Format::Pdf,
            scan,
            ExtractLimits::default(),
            Some(not_installed),
        )
        .await
    {
        Err(ExtractError::OcrFailed(reason)) => {
            assert!(
                reason.contains("could not load the languages zzz"),
                "{reason}"
            );
        }
        other => panic!("expected OcrFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_scans_stay_within_their_bounds() {
    let Some(ocr) = fixtures::installed_ocr_tools() else {
        return;
    };
    let bounded = OcrConfig {
        max_pages: 3,
        page_timeout_secs: 20,
        ..ocr
    };
    let small_memory = ExtractorConfig {
        memory_limit_bytes: 512 * 1024 * 1024,
        ..config(Some(bounded))
    };
    // 200 pages of 200 by 200 inches (the largest a PDF allows): at 300 dpi one would be 3.6
    // billion pixels. Each is rendered to at most 5,000 pixels a side, and only 3 are read.
    let hostile = fixtures::image_only_pages_pdf(200, 14_400, 14_400);
    let started = Instant::now();
    let outcome = child(small_memory)
        .extract(Format::Pdf, hostile, ExtractLimits::default(), None)
        .await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(ExtractError::NoText)),
        "blank scans have no text: {outcome:?}"
    );
    assert!(took < Duration::from_secs(45), "took {took:?}");

    // A page budget shorter than a page: the page's tools are killed, the file fails in time.
    let Some(ocr) = fixtures::installed_ocr_tools() else {
        return;
    };
    let hurried = ExtractorConfig {
        timeout: Duration::from_secs(3),
        ..config(Some(OcrConfig {
            dpi: 1_200,
            max_side_px: 20_000,
            ..ocr
        }))
    };
    let started = Instant::now();
    let outcome = child(hurried)
        .extract(
            Format::Pdf,
            fixtures::image_only_pages_pdf(20, 14_400, 14_400),
            ExtractLimits::default(),
            None,
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(6), "{outcome:?}");
    assert!(
        matches!(
            outcome,
            Err(ExtractError::OcrFailed(_) | ExtractError::TimedOut(_) | ExtractError::Crashed(_))
        ),
        "{outcome:?}"
    );
}
