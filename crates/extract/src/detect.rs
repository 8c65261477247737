//! Format detection: the content (magic bytes, text sniffing) decides, the extension must agree.

use documents::{DetectError, Format};

/// How many bytes of the content detection looks at (the caller may pass more; the rest is
/// ignored): as many as an upload keeps for it.
const HEAD_BYTES: usize = documents::uploads::DETECT_HEAD_BYTES;

/// `%PDF-` must start within this many bytes.
const PDF_MAGIC_WINDOW: usize = 1024;

/// What the content alone says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Pdf,
    Docx,
    /// Text; `html` when it looks like an HTML document.
    Text {
        html: bool,
    },
    Unknown,
}

/// Decides the format of an upload from its first bytes (`head`, up to 64 KiB) and its file
/// name, if any.
///
/// The content decides: `%PDF-` within the first 1024 bytes is PDF; a zip archive holding
/// `word/` entries (or `[Content_Types].xml` and no other Office part) is DOCX; other archives
/// and binary content are refused; anything else that reads as text (UTF-8, possibly with a
/// few invalid bytes, or UTF-16 with a byte-order mark) is text, and the extension chooses
/// among HTML, Markdown, text and CSV (without one, an HTML document is HTML and anything
/// else text).
///
/// # Errors
/// - [`DetectError::Extension`] for an extension outside [`Format::extensions`];
/// - [`DetectError::Unknown`] for binary content or another kind of archive;
/// - [`DetectError::Mismatch`] when the content and the extension disagree (a `.pdf` that is
///   text, a `.txt` that is a PDF).
pub fn detect(name: Option<&str>, head: &[u8]) -> Result<Format, DetectError> {
    let head = &head[..head.len().min(HEAD_BYTES)];
    let ext = name.and_then(extension);
    let ext_format = match &ext {
        None => None,
        Some(e) => Some(
            Format::ALL
                .iter()
                .copied()
                .find(|f| f.extensions().contains(&e.as_str()))
                .ok_or_else(|| DetectError::Extension(e.clone()))?,
        ),
    };
    let mismatch = |detected: Format| DetectError::Mismatch {
        detected,
        extension: ext.clone().unwrap_or_default(),
    };
    match sniff(head) {
        Content::Unknown => Err(DetectError::Unknown),
        Content::Pdf => match ext_format {
            None | Some(Format::Pdf) => Ok(Format::Pdf),
            Some(_) => Err(mismatch(Format::Pdf)),
        },
        Content::Docx => match ext_format {
            None | Some(Format::Docx) => Ok(Format::Docx),
            Some(_) => Err(mismatch(Format::Docx)),
        },
        Content::Text { html } => {
            let sniffed = if html { Format::Html } else { Format::Text };
            match ext_format {
                None => Ok(sniffed),
                Some(Format::Pdf | Format::Docx) => Err(mismatch(sniffed)),
                Some(text_family) => Ok(text_family),
            }
        }
    }
}

/// The lower-case extension of the last path component, if it has one (`.bashrc` has none).
fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

fn sniff(head: &[u8]) -> Content {
    let window = &head[..head.len().min(PDF_MAGIC_WINDOW)];
    if find(window, b"%PDF-").is_some() {
        return Content::Pdf;
    }
    if head.starts_with(b"PK\x03\x04") {
        return sniff_zip(head);
    }
    if is_binary_magic(head) {
        return Content::Unknown;
    }
    if let Some(text) = utf16_with_bom(head) {
        return Content::Text {
            html: looks_like_html(text.as_bytes()),
        };
    }
    if looks_like_text(head) {
        return Content::Text {
            html: looks_like_html(head),
        };
    }
    Content::Unknown
}

/// Known binary formats that could otherwise pass as text (or that we want to name).
fn is_binary_magic(head: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"PK\x05\x06",        // empty zip
        b"PK\x07\x08",        // spanned zip
        b"\x89PNG\r\n\x1a\n", // PNG
        b"\xff\xd8\xff",      // JPEG
        b"GIF87a",
        b"GIF89a",
        b"\x7fELF",
        b"\x1f\x8b",                         // gzip
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", // OLE2 (.doc, .xls)
        b"7z\xbc\xaf\x27\x1c",
        b"Rar!\x1a\x07",
        b"\x28\xb5\x2f\xfd", // zstd
        b"\xfd7zXZ\x00",     // xz
        b"II*\x00",          // TIFF
        b"MM\x00*",
        b"\x00asm",
        b"\xca\xfe\xba\xbe", // Mach-O fat / Java class
        b"\xcf\xfa\xed\xfe", // Mach-O
        b"OggS",
        b"fLaC",
        b"\x1aE\xdf\xa3", // Matroska / WebM
        b"SQLite format 3\x00",
    ];
    MAGICS.iter().any(|m| head.starts_with(m))
        || (head.starts_with(b"BZh") && head.get(3).is_some_and(u8::is_ascii_digit))
        || (head.starts_with(b"ID3") && head.get(3).is_some_and(|v| *v < 10))
        || (head.starts_with(b"RIFF")
            && head
                .get(8..12)
                .is_some_and(|kind| [b"WAVE", b"AVI ", b"WEBP"].iter().any(|k| kind == *k)))
}

/// Whether a zip archive (as far as `head` shows) is a Word document.
fn sniff_zip(head: &[u8]) -> Content {
    let mut saw_content_types = false;
    let mut saw_other_office = false;
    for name in zip_entry_names(head) {
        if name.starts_with(b"word/") {
            return Content::Docx;
        }
        if name == b"[Content_Types].xml" {
            saw_content_types = true;
        }
        if name.starts_with(b"xl/") || name.starts_with(b"ppt/") || name == b"mimetype" {
            saw_other_office = true;
        }
    }
    if saw_content_types && !saw_other_office {
        Content::Docx
    } else {
        Content::Unknown
    }
}

/// Names of the local file headers found in `head`: walks the headers in order and, where
/// a header cannot be skipped (sizes in a data descriptor), scans for the next signature.
fn zip_entry_names(head: &[u8]) -> Vec<&[u8]> {
    const SIG: &[u8] = b"PK\x03\x04";
    let mut names = Vec::new();
    let mut pos = 0;
    while pos + 30 <= head.len() && names.len() < 4096 {
        if &head[pos..pos + 4] != SIG {
            match find(&head[pos + 1..], SIG) {
                Some(next) => {
                    pos += 1 + next;
                    continue;
                }
                None => break,
            }
        }
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([head[pos + o], head[pos + o + 1]]));
        let flags = u16_at(6);
        let compressed = u32::from_le_bytes([
            head[pos + 18],
            head[pos + 19],
            head[pos + 20],
            head[pos + 21],
        ]);
        let name_len = u16_at(26);
        let extra_len = u16_at(28);
        let name_start = pos + 30;
        let Some(name) = head.get(name_start..name_start + name_len) else {
            break;
        };
        names.push(name);
        let data_start = name_start + name_len + extra_len;
        let has_descriptor = flags & 0x08 != 0;
        match usize::try_from(compressed) {
            Ok(size) if !has_descriptor || size != 0 => pos = data_start.saturating_add(size),
            _ => pos = data_start,
        }
    }
    names
}

/// UTF-16 text with a byte-order mark, decoded (lossily) for sniffing.
fn utf16_with_bom(head: &[u8]) -> Option<String> {
    let enc = match head {
        [0xff, 0xfe, ..] => encoding_rs::UTF_16LE,
        [0xfe, 0xff, ..] => encoding_rs::UTF_16BE,
        _ => return None,
    };
    // A cut at an odd length or mid surrogate pair only costs a replacement character.
    let (text, _) = enc.decode_with_bom_removal(head);
    Some(text.into_owned())
}

/// Text: no NUL bytes, and at most one byte in ten is invalid UTF-8 or a control character
/// (so text in a legacy 8-bit encoding still passes; extraction replaces what is invalid).
/// An incomplete character at the very end of the head (a cut) is not counted.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    let mut suspicious = 0usize;
    let mut chunks = head.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        suspicious += chunk
            .valid()
            .chars()
            .filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b'))
            .count();
        let is_last = chunks.peek().is_none();
        let invalid = chunk.invalid().len();
        // The last invalid sequence may be a character cut in half by the head.
        if !(is_last && invalid > 0 && invalid < 4 && head.len() >= HEAD_BYTES) {
            suspicious += invalid;
        }
    }
    suspicious * 10 <= head.len()
}

/// `<!doctype html` or `<html` near the start (after a BOM, whitespace and comments).
fn looks_like_html(head: &[u8]) -> bool {
    let start = &head[..head.len().min(4096)];
    let lower: Vec<u8> = start.iter().map(u8::to_ascii_lowercase).collect();
    find(&lower, b"<!doctype html").is_some() || find(&lower, b"<html").is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(detected: Format, ext: &str) -> DetectError {
        DetectError::Mismatch {
            detected,
            extension: ext.into(),
        }
    }

    #[test]
    fn pdf_magic_decides() {
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n";
        assert_eq!(detect(Some("a.pdf"), pdf), Ok(Format::Pdf));
        assert_eq!(detect(None, pdf), Ok(Format::Pdf));
        assert_eq!(detect(Some("A.PDF"), pdf), Ok(Format::Pdf));
        // Junk before the header is tolerated within the first KiB.
        let mut late = vec![b' '; 900];
        late.extend_from_slice(pdf);
        assert_eq!(detect(Some("a.pdf"), &late), Ok(Format::Pdf));
        // But not beyond it: then it is text that claims to be a PDF.
        let mut too_late = vec![b'x'; 1100];
        too_late.extend_from_slice(b"%PDF-1.4");
        assert_eq!(
            detect(Some("a.pdf"), &too_late),
            Err(mismatch(Format::Text, "pdf"))
        );
    }

    #[test]
    fn pdf_with_another_extension_is_a_mismatch() {
        let pdf = b"%PDF-1.4\n";
        assert_eq!(
            detect(Some("a.txt"), pdf),
            Err(mismatch(Format::Pdf, "txt"))
        );
        assert_eq!(
            detect(Some("a.docx"), pdf),
            Err(mismatch(Format::Pdf, "docx"))
        );
    }

    #[test]
    fn docx_is_a_zip_with_word_parts() {
        let docx = crate::fixtures::docx(&["hello"]);
        assert_eq!(detect(Some("report.docx"), &docx), Ok(Format::Docx));
        assert_eq!(detect(None, &docx), Ok(Format::Docx));
        assert_eq!(
            detect(Some("report.pdf"), &docx),
            Err(mismatch(Format::Docx, "pdf"))
        );
        assert_eq!(
            detect(Some("report.txt"), &docx),
            Err(mismatch(Format::Docx, "txt"))
        );
    }

    #[test]
    fn other_zips_and_binaries_are_unknown() {
        let plain_zip = crate::fixtures::zip_stored(&[("data/a.bin", b"xyz".as_slice())]);
        assert_eq!(
            detect(Some("a.docx"), &plain_zip),
            Err(DetectError::Unknown)
        );
        let xlsx = crate::fixtures::zip_stored(&[
            ("[Content_Types].xml", b"<Types/>".as_slice()),
            ("xl/workbook.xml", b"<workbook/>".as_slice()),
        ]);
        assert_eq!(detect(Some("a.docx"), &xlsx), Err(DetectError::Unknown));
        for magic in [
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".as_slice(),
            b"\xff\xd8\xff\xe0\0\x10JFIF",
            b"GIF89a\x01\0\x01\0",
            b"\x7fELF\x02\x01\x01",
            b"\x1f\x8b\x08\0",
        ] {
            assert_eq!(detect(None, magic), Err(DetectError::Unknown), "{magic:?}");
            assert_eq!(detect(Some("a.txt"), magic), Err(DetectError::Unknown));
        }
        assert_eq!(
            detect(Some("a.txt"), b"abc\0def"),
            Err(DetectError::Unknown)
        );
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
            .collect();
        assert_eq!(detect(Some("a.txt"), &random), Err(DetectError::Unknown));
    }

    #[test]
    fn extension_outside_the_allowlist_is_refused() {
        assert_eq!(
            detect(Some("run.exe"), b"MZ\x90\0"),
            Err(DetectError::Extension("exe".into()))
        );
        assert_eq!(
            detect(Some("notes.rtf"), b"{\\rtf1 hello}"),
            Err(DetectError::Extension("rtf".into()))
        );
        assert_eq!(
            detect(Some("dir.d/archive.TAR"), b"text"),
            Err(DetectError::Extension("tar".into()))
        );
    }

    #[test]
    fn text_family_extensions_choose_the_format() {
        let html = b"<!DOCTYPE html><html><title>x</title></html>";
        assert_eq!(detect(Some("a.html"), html), Ok(Format::Html));
        assert_eq!(detect(Some("a.htm"), html), Ok(Format::Html));
        // Text-family extensions are interchangeable for text content.
        assert_eq!(detect(Some("a.txt"), html), Ok(Format::Text));
        assert_eq!(
            detect(Some("a.md"), b"# Title\n\nbody"),
            Ok(Format::Markdown)
        );
        assert_eq!(detect(Some("a.markdown"), b"# Title"), Ok(Format::Markdown));
        assert_eq!(detect(Some("a.text"), b"plain"), Ok(Format::Text));
        assert_eq!(
            detect(Some("a.csv"), b"name,age\nAda,36\n"),
            Ok(Format::Csv)
        );
        assert_eq!(detect(Some("a.html"), b"just words"), Ok(Format::Html));
    }

    #[test]
    fn text_without_extension_is_sniffed() {
        assert_eq!(detect(None, b"  <!doctype HTML>\n<html>"), Ok(Format::Html));
        assert_eq!(
            detect(Some("index"), b"<html lang=en><body>hi"),
            Ok(Format::Html)
        );
        assert_eq!(detect(Some("README"), b"hello world"), Ok(Format::Text));
        assert_eq!(detect(Some(".bashrc"), b"export A=1"), Ok(Format::Text));
        assert_eq!(detect(None, b""), Ok(Format::Text));
    }

    #[test]
    fn text_claiming_to_be_pdf_or_docx_is_a_mismatch() {
        assert_eq!(
            detect(Some("a.pdf"), b"hello"),
            Err(mismatch(Format::Text, "pdf"))
        );
        assert_eq!(
            detect(Some("a.docx"), b"<html><body>x"),
            Err(mismatch(Format::Html, "docx"))
        );
    }

    #[test]
    fn utf16_with_bom_is_text() {
        let mut le = vec![0xff, 0xfe];
        le.extend("héllo <html>".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(detect(Some("a.txt"), &le), Ok(Format::Text));
        assert_eq!(detect(None, &le), Ok(Format::Html));
        let mut be = vec![0xfe, 0xff];
        be.extend("plain".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(detect(None, &be), Ok(Format::Text));
        // Without a BOM, UTF-16 is full of NUL bytes: not text.
        let bare: Vec<u8> = "plain".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(detect(None, &bare), Err(DetectError::Unknown));
    }

    #[test]
    fn some_invalid_utf8_is_tolerated() {
        // Latin-1 text: a few invalid bytes are still text (extraction replaces them).
        let latin1 = b"Caf\xe9 cr\xe8me br\xfbl\xe9e, a dessert of custard and caramel.";
        assert_eq!(detect(Some("menu.txt"), latin1), Ok(Format::Text));
        // A full head cut in the middle of a character.
        let mut cut = "é".repeat(HEAD_BYTES / 2).into_bytes();
        cut.truncate(HEAD_BYTES - 1);
        cut.push(0xc3);
        assert_eq!(detect(Some("a.txt"), &cut), Ok(Format::Text));
        // Bytes past the head are ignored.
        let mut long = vec![b'a'; HEAD_BYTES];
        long.extend_from_slice(&[0; 100]);
        assert_eq!(detect(Some("a.txt"), &long), Ok(Format::Text));
    }
}
