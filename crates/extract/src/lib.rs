//! Extraction and chunking: the adapter behind `documents::Extractor` and `documents::Chunker`.
//!
//! - [`detect`]: the format of an upload from its first bytes and its name;
//! - [`extract()`]: the text of a file (PDF, DOCX, HTML, Markdown, text, CSV), pure and
//!   synchronous, within [`ExtractLimits`](documents::ExtractLimits);
//! - [`ProcessExtractor`] (production) and [`ThreadExtractor`] (tests, development): the
//!   `Extractor` port, running [`extract()`] in a child process (memory, CPU and time limits;
//!   a crash kills only the child) or on a dedicated thread;
//! - [`child_main`]: the child's side, for the binary's hidden `extract-child` command;
//! - [`chunk()`] and [`TokenChunker`]: token windows over the extracted text;
//! - [`fixtures`]: generated PDFs and DOCX files, benign and hostile, for tests;
//! - `ocr`: scanned PDF pages read by `pdftoppm` and `tesseract` ([`OcrConfig`]);
//! - `tables`: the tables of CSV, HTML and DOCX text, whose header the chunker repeats.

mod chunk;
mod detect;
mod docx;
pub mod fixtures;
mod html;
mod isolate;
mod ocr;
mod pdf;
mod tables;
mod text;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

pub use chunk::{TokenChunker, chunk};
pub use detect::detect;
use documents::{ExtractError, ExtractLimits, ExtractedText, Format};
pub use isolate::{
    ChildCounts, DEFAULT_FILES_PER_CHILD, ExtractorConfig, ProcessExtractor, ThreadExtractor,
    child_main,
};
pub use ocr::OcrConfig;

/// Extracts the text of `bytes`, read as `format`.
///
/// PDF text is joined page by page with a blank line and `page_starts` has one entry per page;
/// the other formats are unpaged. A panic inside a parser is caught and reported as
/// [`ExtractError::Crashed`]; a stack overflow or a hang is not (see [`ProcessExtractor`]).
///
/// # Errors
/// [`ExtractError::Encrypted`], [`ExtractError::TooManyPages`] (PDF),
/// [`ExtractError::TooLarge`] (more than `limits.max_chars` characters; an archive over its
/// limits), [`ExtractError::NoText`] (nothing but whitespace), [`ExtractError::Corrupt`].
pub fn extract(
    format: Format,
    bytes: &[u8],
    limits: &ExtractLimits,
) -> Result<ExtractedText, ExtractError> {
    extract_with(
        format,
        bytes,
        limits,
        None,
        Instant::now(),
        &documents::NoProgress,
    )
}

/// [`extract`], reading PDF pages without text by OCR when `ocr` is given (the extraction
/// began at `started`: OCR starts no page past its budget), telling `progress` each PDF page
/// read.
pub(crate) fn extract_with(
    format: Format,
    bytes: &[u8],
    limits: &ExtractLimits,
    ocr: Option<&ocr::OcrJob>,
    started: Instant,
    progress: &dyn documents::ExtractProgress,
) -> Result<ExtractedText, ExtractError> {
    match catch_unwind(AssertUnwindSafe(|| {
        extract_unguarded(format, bytes, limits, ocr, started, progress)
    })) {
        Ok(result) => result,
        Err(_) => Err(ExtractError::Crashed("panic".into())),
    }
}

fn extract_unguarded(
    format: Format,
    bytes: &[u8],
    limits: &ExtractLimits,
    ocr: Option<&ocr::OcrJob>,
    started: Instant,
    progress: &dyn documents::ExtractProgress,
) -> Result<ExtractedText, ExtractError> {
    let mut ocr_outcome = ocr::OcrOutcome::default();
    let extracted = match format {
        Format::Pdf => {
            let mut pdf = pdf::pdf_to_text(bytes, limits, progress)?;
            // Scanned pages: the text layer's hook into OCR.
            if let Some(job) = ocr
                && pdf.pages.iter().any(String::is_empty)
            {
                ocr_outcome = ocr::read_empty_pages(bytes, &mut pdf.pages, job, started);
            }
            let mut text = String::new();
            let mut page_starts = Vec::with_capacity(pdf.pages.len());
            let mut at: u64 = 0;
            for (i, page) in pdf.pages.iter().enumerate() {
                if i > 0 {
                    text.push_str("\n\n");
                    at += 2;
                }
                page_starts.push(at);
                text.push_str(page);
                at += u64::try_from(page.chars().count()).unwrap_or(u64::MAX);
            }
            ExtractedText {
                text,
                page_starts,
                title: pdf.title,
                ocr_pages: std::mem::take(&mut ocr_outcome.pages),
                tables: Vec::new(),
            }
        }
        Format::Docx => {
            let (title, text) = docx::docx_to_text(bytes, limits)?;
            unpaged(&clean(&text), title)
        }
        Format::Html => {
            let source = text::decode_html(bytes, limits)?;
            let (title, body) = html::html_to_text(&source)?;
            unpaged(&clean(&body), title.map(|t| clean(&t)))
        }
        Format::Markdown | Format::Text => ExtractedText {
            text: clean(&text::decode(bytes, limits)?),
            ..ExtractedText::default()
        },
        Format::Csv => {
            let decoded = text::decode(bytes, limits)?;
            unpaged(&clean(&text::csv_to_text(&decoded)), None)
        }
    };
    if extracted.text.trim().is_empty() {
        return Err(ocr::no_text(&ocr_outcome));
    }
    let chars = u64::try_from(extracted.text.chars().count()).unwrap_or(u64::MAX);
    if chars > limits.max_chars {
        return Err(too_many_chars(limits));
    }
    Ok(extracted)
}

/// Unpaged text; its table marks ([`tables`]) become table spans.
fn unpaged(marked: &str, title: Option<String>) -> ExtractedText {
    let (text, tables) = tables::take_marks(marked);
    ExtractedText {
        text,
        page_starts: Vec::new(),
        title: title.filter(|t| !t.trim().is_empty()),
        ocr_pages: Vec::new(),
        tables,
    }
}

pub(crate) fn too_many_chars(limits: &ExtractLimits) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the text has more than {} characters",
        limits.max_chars
    ))
}

/// Line ends as `\n`, no control characters but tab and newline, no byte-order marks.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            '\u{feff}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// [`clean`], then: ligature glyphs spelled out (`ﬁ` as `fi`, so that "ﬁnal" is found by
/// "final"), trailing spaces cut from each line, at most one blank line in a row, and no blank
/// lines at either end.
pub(crate) fn clean_pdf_page(s: &str) -> String {
    let cleaned = unligate(&clean(s));
    let mut out = String::with_capacity(cleaned.len());
    let mut blank_run = 0;
    for line in cleaned.split('\n') {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// The Latin ligatures of Unicode's Alphabetic Presentation Forms (U+FB00–FB06), spelled out.
fn unligate(s: &str) -> String {
    if !s.chars().any(|c| ('\u{fb00}'..='\u{fb06}').contains(&c)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_keeps_text_and_drops_controls() {
        assert_eq!(clean("a\r\nb\rc\u{0}d\u{feff}\te"), "a\nb\ncd\te");
        assert_eq!(
            clean_pdf_page("\n\n  a  \n\n\n\nb\n c \n\n"),
            "  a\n\nb\n c"
        );
    }

    #[test]
    fn pdf_ligatures_are_spelled_out() {
        assert_eq!(
            clean_pdf_page("\u{fb01}nal e\u{fb00}ort \u{fb03}ce \u{fb02}u \u{fb04} \u{fb06}"),
            "final effort ffice flu ffl st"
        );
    }

    #[test]
    fn pdf_pages_are_joined_with_offsets() {
        let bytes = fixtures::pdf(&["First page", "Zweite Seite ünd mehr", "Third"]);
        let out = extract(Format::Pdf, &bytes, &ExtractLimits::default()).unwrap();
        assert_eq!(out.pages(), Some(3));
        let pages: Vec<String> = out
            .page_starts
            .iter()
            .map(|&s| {
                out.text
                    .chars()
                    .skip(usize::try_from(s).unwrap())
                    .take(5)
                    .collect()
            })
            .collect();
        assert_eq!(pages, ["First", "Zweit", "Third"]);
        assert!(out.text.contains("ünd"), "{:?}", out.text);
    }

    #[test]
    fn pdf_limits() {
        let limits = ExtractLimits {
            max_pages: 3,
            ..ExtractLimits::default()
        };
        assert!(matches!(
            extract(Format::Pdf, &fixtures::many_pages_pdf(4), &limits),
            Err(ExtractError::TooManyPages { pages: 4, limit: 3 })
        ));
        assert!(matches!(
            extract(Format::Pdf, &fixtures::encrypted_pdf(), &limits),
            Err(ExtractError::Encrypted)
        ));
        assert!(matches!(
            extract(Format::Pdf, &fixtures::image_only_pdf(), &limits),
            Err(ExtractError::NoText)
        ));
        assert!(matches!(
            extract(Format::Pdf, b"%PDF-1.4\ngarbage", &limits),
            Err(ExtractError::Corrupt(_))
        ));
        let small = ExtractLimits {
            max_chars: 20,
            ..ExtractLimits::default()
        };
        assert!(matches!(
            extract(
                Format::Pdf,
                &fixtures::pdf(&["a long page of text, longer than twenty"]),
                &small
            ),
            Err(ExtractError::TooLarge(_))
        ));
    }

    #[test]
    fn text_formats() {
        let limits = ExtractLimits::default();
        let md = extract(Format::Markdown, b"# Title\n\n- item\n", &limits).unwrap();
        assert_eq!(md.text, "# Title\n\n- item\n");
        assert_eq!(md.page_starts, Vec::<u64>::new());
        assert!(matches!(
            extract(Format::Text, b" \n\t ", &limits),
            Err(ExtractError::NoText)
        ));
        let csv = extract(Format::Csv, b"name,age\r\nAda,36\r\n", &limits).unwrap();
        assert_eq!(csv.text, "name | age\nAda | 36");
        assert_eq!(csv.tables.len(), 1);
        let html = extract(Format::Html, b"<title>T</title><p>Body", &limits).unwrap();
        assert_eq!(
            (html.title.as_deref(), html.text.as_str()),
            (Some("T"), "Body")
        );
    }

    #[test]
    fn docx_text_and_title() {
        let bytes = fixtures::docx(&["Hello", "World"]);
        let out = extract(Format::Docx, &bytes, &ExtractLimits::default()).unwrap();
        assert_eq!(out.text, "Hello\n\nWorld");
    }
}
