//! One test per PDF failure mode fixed for issue 17, on the extraction level: each fixture
//! lost text before the fix.

use std::path::Path;

use documents::{ExtractLimits, Format};
use extract::fixtures;

fn pages(bytes: &[u8]) -> Vec<String> {
    let out = extract::extract(Format::Pdf, bytes, &ExtractLimits::default()).expect("text");
    let starts: Vec<usize> = out
        .page_starts
        .iter()
        .map(|&s| usize::try_from(s).expect("an offset"))
        .collect();
    let chars: Vec<char> = out.text.chars().collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = starts.get(i + 1).map_or(chars.len(), |&next| next - 2);
            chars[from..to].iter().collect()
        })
        .collect()
}

#[test]
fn a_page_that_panics_the_parser_loses_no_other_page() {
    std::panic::set_hook(Box::new(|_| {}));
    let pages = pages(&fixtures::one_page_panics_pdf());
    let _ = std::panic::take_hook();
    assert_eq!(pages, ["First page", "日本語テスト", "Third page"]);
}

#[test]
fn lines_shown_with_quote_operators_are_read() {
    let text = pages(&fixtures::quote_operators_pdf()).join("\n");
    for line in ["Quoted lines", "shown with", "both operators"] {
        assert!(text.contains(line), "{line:?} missing from {text:?}");
    }
}

#[test]
fn a_page_whose_content_parses_only_in_part_gives_what_parses() {
    let pages = pages(&fixtures::partly_parsing_pdf());
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0], "Clean first page");
    assert!(
        pages[1].contains("Readable despite garbage"),
        "{:?}",
        pages[1]
    );
}

#[test]
fn ligature_glyphs_are_spelled_out() {
    assert_eq!(pages(&fixtures::ligature_pdf()), ["final flow"]);
}

#[test]
fn code_point_glyph_names_give_their_characters() {
    assert_eq!(pages(&fixtures::code_point_names_pdf()), ["Hi there"]);
}

/// Every file of `tests/fixtures/real-pdfs` that pypdf 7.1 reads text from (see the table in
/// that folder's README) gives text here too.
#[test]
fn every_real_pdf_pypdf_reads_gives_text() {
    std::panic::set_hook(Box::new(|_| {}));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-pdfs");
    for name in [
        "90ms_rksj_h_sample.pdf",
        "bug850854.pdf",
        "helloworld-bad.pdf",
        "issue2128r.pdf",
        "issue3521.pdf",
        "issue5291.pdf",
        "issue5954.pdf",
        "issue8276_reduced.pdf",
        "issue9252.pdf",
        "noembed-eucjp.pdf",
        "noembed-jis7.pdf",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let out = extract::extract(Format::Pdf, &bytes, &ExtractLimits::default());
        assert!(
            out.as_ref().is_ok_and(|t| !t.text.trim().is_empty()),
            "{name}: {out:?}"
        );
    }
}

/// pypdf's test file (`resources/encryption`): AES-128 (`/V 4`, `/AESV2`) with the empty user
/// password and no `/Length` in its encryption dictionary (its crypt filter says `/Length 16`,
/// in bytes). pypdf opens it; lopdf alone derives a 40-bit key and refused it as encrypted.
#[test]
fn an_aes_file_without_its_key_length_opens_with_the_empty_password() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pypdf-resources/r4-aes-v2-no-key-length.pdf"),
    )
    .expect("fixture");
    let text = pages(&bytes).join("\n");
    assert_eq!(text, "pdf encryption test\npassword: asdfzxcv");
}

/// The same mending never opens a file that needs a password: pypdf's AES-128 file with a user
/// password, its `/Length 128` blanked out (same length, so no offset moves) so that the key
/// length is added back as above; it must still be refused as encrypted, never read.
#[test]
fn a_file_with_a_user_password_stays_refused_when_its_key_length_is_added() {
    let mut bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pypdf-resources/r4-aes-user-password.pdf"),
    )
    .expect("fixture");
    let at = bytes
        .windows(12)
        .position(|w| w == b"/Length 128 ")
        .expect("the key length");
    bytes[at..at + 12].fill(b' ');
    let out = extract::extract(Format::Pdf, &bytes, &ExtractLimits::default());
    assert!(
        matches!(out, Err(documents::ExtractError::Encrypted)),
        "{out:?}"
    );
}
