//! Every file of `tests/fixtures/real-pdfs` (from the pdf.js test corpus) through
//! `ProcessExtractor`: each ends as text or a clean error, never a crash or a hang.

use std::path::Path;
use std::time::Duration;

use documents::{ExtractError, ExtractLimits, Extractor, Format};
use extract::{ExtractorConfig, ProcessExtractor};

#[tokio::test]
async fn every_real_pdf_ends_cleanly() {
    let extractor = ProcessExtractor::new(
        env!("CARGO_BIN_EXE_extract-child"),
        Vec::new(),
        ExtractorConfig {
            timeout: Duration::from_secs(60),
            memory_limit_bytes: 1024 * 1024 * 1024,
            max_concurrent: 2,
            ocr: None,
            files_per_child: extract::DEFAULT_FILES_PER_CHILD,
        },
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-pdfs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 24);

    let (mut text, mut no_text, mut errors) = (0, 0, 0);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            extractor.detect(Some(&name), &bytes),
            Ok(Format::Pdf),
            "{name}"
        );
        let outcome = extractor
            .extract(Format::Pdf, bytes, ExtractLimits::default(), None)
            .await;
        let summary = match &outcome {
            Ok(t) => {
                text += 1;
                format!("text, {} chars", t.text.chars().count())
            }
            Err(ExtractError::NoText) => {
                no_text += 1;
                "no text".to_owned()
            }
            Err(e @ (ExtractError::Corrupt(_) | ExtractError::Encrypted)) => {
                errors += 1;
                format!("error: {e}")
            }
            Err(e) => panic!("{name}: not a clean outcome: {e:?}"),
        };
        println!("{name:<36} {summary}");
    }
    println!("real-pdfs: {text} with text, {no_text} without, {errors} errors, 0 crashed");
    // pdf-extract alone gives text for 3 of these; pypdf for 11 (4 of them garbled).
    assert!(text >= 13, "only {text} files gave text");
}
