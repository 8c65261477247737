//! Generated files for tests and benchmarks: PDFs (lopdf's writer) and DOCX files (docx-rs's
//! builder), benign and hostile. Everything is built in memory, deterministically.
//!
//! # Panics
//! The generators panic only if the underlying writers fail on their own, fixed input.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use lopdf::{Dictionary, Document, Object, ObjectId, Stream, dictionary};

/// Points between two lines of generated text.
const LEADING: i64 = 14;
/// Characters per generated line.
const LINE_CHARS: usize = 95;

/// A PDF with one page per entry of `pages`, each showing its text in Helvetica (wrapped at
/// about 95 characters a line; characters outside Latin-1 become `?`). Streams are
/// compressed, as in most real files.
#[must_use]
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    let mut b = PdfBuilder::new();
    for text in pages {
        let content = text_content(text);
        b.page(content, None);
    }
    b.finish(true)
}

/// A PDF of `n` short pages ("Page 1", "Page 2", …).
#[must_use]
pub fn many_pages_pdf(n: usize) -> Vec<u8> {
    let texts: Vec<String> = (1..=n).map(|i| format!("Page {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    pdf(&refs)
}

/// A PDF whose only page shows an image and no text (a scan).
#[must_use]
pub fn image_only_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let image = b.doc.add_object(Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => 2,
            "Height" => 2,
            "ColorSpace" => "DeviceGray",
            "BitsPerComponent" => 8,
        },
        vec![0, 255, 255, 0],
    ));
    b.page(
        b"q 200 0 0 200 100 500 cm /Im1 Do Q".to_vec(),
        Some(dictionary! { "Im1" => image }),
    );
    b.finish(false)
}

/// A scanned PDF: each page of [`pdf`]`(pages)` rendered by `pdftoppm` (poppler-utils, at
/// `pdftoppm`) to a grey image at 150 dpi, and that image, deflated, as the only content of its
/// page: no text layer, as a scanner makes it. Nothing binary is committed for it.
///
/// # Errors
/// When `pdftoppm` cannot be run or its output is not a binary PGM image.
pub fn scanned_pdf(pages: &[&str], pdftoppm: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let source = pdf(pages);
    let dir = std::env::temp_dir().join(format!(
        "quire-fixture-scan-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("text.pdf");
    std::fs::write(&file, &source)?;
    let mut images = Vec::with_capacity(pages.len());
    let mut failure = None;
    for i in 1..=pages.len() {
        let page = i.to_string();
        let out = std::process::Command::new(pdftoppm)
            .args([
                "-f",
                &page,
                "-l",
                &page,
                "-r",
                "150",
                "-gray",
                "-singlefile",
            ])
            .arg(&file)
            .output();
        match out {
            Ok(out) if out.status.success() => match pgm(&out.stdout) {
                Some(image) => images.push(image),
                None => failure = Some("pdftoppm did not write a PGM image"),
            },
            Ok(_) => failure = Some("pdftoppm failed"),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(f) = failure {
        return Err(std::io::Error::other(f));
    }
    let mut b = PdfBuilder::new();
    for (width, height, pixels) in images {
        let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        deflated.write_all(&pixels)?;
        let image = b.doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => i64::from(width),
                "Height" => i64::from(height),
                "ColorSpace" => "DeviceGray",
                "BitsPerComponent" => 8,
                "Filter" => "FlateDecode",
            },
            deflated.finish()?,
        ));
        b.page(
            b"q 595 0 0 842 0 0 cm /Im1 Do Q".to_vec(),
            Some(dictionary! { "Im1" => image }),
        );
    }
    Ok(b.finish(false))
}

/// Width, height and 8-bit pixels of a binary PGM (`P5`, maxval 255).
fn pgm(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let mut fields = Vec::new();
    let mut at = 2;
    if !bytes.starts_with(b"P5") {
        return None;
    }
    while fields.len() < 3 {
        while bytes.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        if bytes[at] == b'#' {
            while *bytes.get(at)? != b'\n' {
                at += 1;
            }
            continue;
        }
        let start = at;
        while bytes.get(at)?.is_ascii_digit() {
            at += 1;
        }
        fields.push(
            std::str::from_utf8(&bytes[start..at])
                .ok()?
                .parse::<u32>()
                .ok()?,
        );
    }
    let (w, h) = (fields[0], fields[1]);
    let pixels = bytes.get(at + 1..)?;
    let len = usize::try_from(u64::from(w) * u64::from(h)).ok()?;
    (fields[2] == 255 && pixels.len() >= len).then(|| (w, h, pixels[..len].to_vec()))
}

/// `n` scanned-looking pages (a small image each, no text), each `width` by `height`
/// points: with huge pages and many of them, the hostile input of OCR.
#[must_use]
pub fn image_only_pages_pdf(n: usize, width: i64, height: i64) -> Vec<u8> {
    let mut b = PdfBuilder::new();
    for _ in 0..n {
        let image = b.doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => 2,
                "Height" => 2,
                "ColorSpace" => "DeviceGray",
                "BitsPerComponent" => 8,
            },
            vec![0, 255, 255, 0],
        ));
        b.page(
            format!("q {width} 0 0 {height} 0 0 cm /Im1 Do Q").into_bytes(),
            Some(dictionary! { "Im1" => image }),
        );
    }
    let mut doc = b.into_document();
    let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
    for id in pages {
        if let Ok(Object::Dictionary(page)) = doc.get_object_mut(id) {
            page.set(
                "MediaBox",
                vec![0.into(), 0.into(), width.into(), height.into()],
            );
        }
    }
    save(&mut doc)
}

/// A PDF encrypted with a user password (RC4, 128 bits): it cannot be read without it.
#[must_use]
pub fn encrypted_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    b.page(text_content("Secret text"), None);
    let mut doc = b.into_document();
    let id = Object::String(b"quire-fixture-id".to_vec(), lopdf::StringFormat::Literal);
    doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
    let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "user password",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    })
    .expect("encryption parameters");
    doc.encrypt(&state).expect("encrypt");
    save(&mut doc)
}

/// A PDF that overflows pdf-extract's stack: its page draws a form XObject that draws itself
/// (pdf-extract follows `Do` recursively, without a depth limit or cycle check). In-process
/// this aborts the whole process; only [`ProcessExtractor`](crate::ProcessExtractor) survives
/// it.
#[must_use]
pub fn stack_overflow_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let form = b.doc.add_object(Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Form",
            "BBox" => vec![0.into(), 0.into(), 100.into(), 100.into()],
        },
        b"/X1 Do".to_vec(),
    ));
    b.page(
        b"BT /F1 12 Tf 72 720 Td (Recursion) Tj ET /X1 Do".to_vec(),
        Some(dictionary! { "X1" => form }),
    );
    b.finish(false)
}

/// A PDF that makes pdf-extract panic (a non-embedded Japanese font with the predefined
/// `90ms-RKSJ-H` CMap, as in many real files) but that the fallback reads:
/// "Hello ASCII" and "日本語テスト".
#[must_use]
pub fn panicking_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let descendant = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "CIDFontType2",
        "BaseFont" => "HeiseiMin-W3",
        "CIDSystemInfo" => dictionary! {
            "Registry" => Object::string_literal("Adobe"),
            "Ordering" => Object::string_literal("Japan1"),
            "Supplement" => 2,
        },
        "DW" => 1000,
    });
    let japanese = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type0",
        "BaseFont" => "HeiseiMin-W3",
        "Encoding" => "90ms-RKSJ-H",
        "DescendantFonts" => vec![descendant.into()],
    });
    b.extra_fonts.set("F2", japanese);
    b.page(
        b"BT /F1 14 Tf 72 720 Td (Hello ASCII) Tj 0 -28 Td /F2 14 Tf <93FA967B8CEA836583588367> Tj ET"
            .to_vec(),
        None,
    );
    b.finish(false)
}

/// A PDF of three pages whose second makes pdf-extract panic (the `90ms-RKSJ-H` font of
/// [`panicking_pdf`]): "First page", "日本語テスト", "Third page".
#[must_use]
pub fn one_page_panics_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let descendant = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "CIDFontType2",
        "BaseFont" => "HeiseiMin-W3",
        "CIDSystemInfo" => dictionary! {
            "Registry" => Object::string_literal("Adobe"),
            "Ordering" => Object::string_literal("Japan1"),
            "Supplement" => 2,
        },
    });
    let japanese = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type0",
        "BaseFont" => "HeiseiMin-W3",
        "Encoding" => "90ms-RKSJ-H",
        "DescendantFonts" => vec![descendant.into()],
    });
    b.extra_fonts.set("F2", japanese);
    b.page(text_content("First page"), None);
    b.page(
        b"BT /F2 14 Tf 72 720 Td <93FA967B8CEA836583588367> Tj ET".to_vec(),
        None,
    );
    b.page(text_content("Third page"), None);
    b.finish(true)
}

/// A PDF whose page shows its lines with the `'` and `"` operators (pdf-extract ignores
/// both): "Quoted lines", "shown with", "both operators".
#[must_use]
pub fn quote_operators_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    b.page(
        b"BT /F1 12 Tf 14 TL 72 720 Td (Quoted lines) Tj (shown with) ' 1 0 (both operators) \" ET"
            .to_vec(),
        None,
    );
    b.finish(true)
}

/// A PDF of two pages: the first reads cleanly; the second has stray tokens before its text
/// and an unterminated inline image after it, so that its content does not parse as a
/// whole: "Clean first page", "Readable despite garbage".
#[must_use]
pub fn partly_parsing_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    b.page(text_content("Clean first page"), None);
    b.page(
        b"q ]] >> } BT /F1 12 Tf 72 700 Td (Readable despite garbage) Tj ET BI /W 4 /H 4 /BPC 8 /CS /G ID \x00\xff\x12( "
            .to_vec(),
        None,
    );
    b.finish(false)
}

/// A PDF whose font maps codes to the Unicode ligatures `ﬁ` and `ﬂ` (as TeX and InDesign
/// output does): "ﬁnal ﬂow" on the page, "final flow" once extracted.
#[must_use]
pub fn ligature_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let cmap = b.doc.add_object(Stream::new(
        Dictionary::new(),
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /L def \
1 begincodespacerange <00> <FF> endcodespacerange 7 beginbfchar <41> <FB01> <42> <FB02> \
<43> <006E> <44> <0061> <45> <006C> <46> <006F> <47> <0077> endbfchar \
1 beginbfchar <20> <0020> endbfchar endcmap CMapName currentdict /CMap defineresource pop end end"
            .to_vec(),
    ));
    let font = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Ligatures",
        "FirstChar" => 32,
        "LastChar" => 71,
        "Widths" => vec![250.into(); 40],
        "ToUnicode" => cmap,
    });
    b.extra_fonts.set("F2", font);
    b.page(b"BT /F2 12 Tf 72 720 Td (ACDE BFG) Tj ET".to_vec(), None);
    b.finish(false)
}

/// A PDF whose font renames codes with `/Differences` to code-point glyph names
/// (`/uni0048 /uni0069`: "H", "i"), leaving the others to the standard encoding: "Hi there".
#[must_use]
pub fn code_point_names_pdf() -> Vec<u8> {
    let mut b = PdfBuilder::new();
    let font = b.doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => dictionary! {
            "Type" => "Encoding",
            "Differences" => vec![1.into(), Object::Name(b"uni0048".to_vec()), Object::Name(b"uni0069".to_vec())],
        },
    });
    b.extra_fonts.set("F2", font);
    b.page(
        b"BT /F2 12 Tf 72 720 Td <0102> Tj ( there) Tj ET".to_vec(),
        None,
    );
    b.finish(false)
}

/// A PDF whose page content inflates to 1 GiB of spaces (about 1 MB on disk): reading it
/// needs the memory, so a memory limit stops it.
#[must_use]
pub fn pdf_bomb() -> Vec<u8> {
    let (raw, _crc) = repeated_deflate(b' ', 1 << 30);
    let mut zlib = vec![0x78, 0xda];
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&adler32_of_repeated(b' ', 1 << 30).to_be_bytes());
    let mut b = PdfBuilder::new();
    b.pages.push((
        Stream::new(dictionary! { "Filter" => "FlateDecode" }, zlib).with_compression(false),
        None,
    ));
    b.finish(false)
}

/// A Word document with one paragraph per entry.
#[must_use]
pub fn docx(paragraphs: &[&str]) -> Vec<u8> {
    use docx_rs::{Docx, Paragraph, Run};
    let mut d = Docx::new();
    for p in paragraphs {
        d = d.add_paragraph(Paragraph::new().add_run(Run::new().add_text(*p)));
    }
    let mut out = Cursor::new(Vec::new());
    d.pack(&mut out).expect("docx-rs writes to memory");
    out.into_inner()
}

/// A zip bomb dressed as a DOCX: a valid document plus an entry that inflates to 1 GiB of
/// zeros (about 1 MB compressed) and says so in its headers.
#[must_use]
pub fn zip_bomb_docx() -> Vec<u8> {
    let (raw, crc) = repeated_deflate(0, 1 << 30);
    let mut entries = base_docx_entries();
    entries.push(ZipEntry {
        name: "word/media/image1.png".into(),
        method: 8,
        crc,
        data: Cow::Owned(raw),
        declared_size: 1 << 30,
    });
    write_zip(&entries)
}

/// Like [`zip_bomb_docx`], but the headers lie: they declare 1 KiB for the entry that
/// inflates to 1 GiB (only reading through a byte budget catches it).
#[must_use]
pub fn lying_zip_bomb_docx() -> Vec<u8> {
    let (raw, crc) = repeated_deflate(0, 1 << 30);
    let mut entries = base_docx_entries();
    entries.push(ZipEntry {
        name: "word/media/image1.png".into(),
        method: 8,
        crc,
        data: Cow::Owned(raw),
        declared_size: 1024,
    });
    write_zip(&entries)
}

/// A valid DOCX padded with `extra` empty entries (ZIP64 when there are more than 65,535).
#[must_use]
pub fn many_entries_docx(extra: usize) -> Vec<u8> {
    let mut entries = base_docx_entries();
    for i in 0..extra {
        entries.push(ZipEntry {
            name: format!("word/media/f{i}.bin"),
            method: 0,
            crc: 0,
            data: Cow::Borrowed(&[]),
            declared_size: 0,
        });
    }
    write_zip(&entries)
}

/// A DOCX whose main part defines nested XML entities ("billion laughs"): expanded, `&lol9;`
/// would be 3 GB of text.
#[must_use]
pub fn billion_laughs_docx() -> Vec<u8> {
    let mut dtd = String::from("<!DOCTYPE w:document [\n<!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>\n");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n{dtd}\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
         <w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"
    );
    let mut entries = base_docx_entries();
    for e in &mut entries {
        if e.name == "word/document.xml" {
            e.crc = crc32(xml.as_bytes());
            e.declared_size = u32::try_from(xml.len()).expect("small");
            e.data = Cow::Owned(xml.clone().into_bytes());
        }
    }
    write_zip(&entries)
}

/// A zip archive of stored (uncompressed) entries.
#[cfg(test)]
pub(crate) fn zip_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<ZipEntry<'_>> = files
        .iter()
        .map(|(name, data)| ZipEntry {
            name: (*name).to_owned(),
            method: 0,
            crc: crc32(data),
            data: Cow::Borrowed(*data),
            declared_size: u32::try_from(data.len()).expect("small"),
        })
        .collect();
    write_zip(&entries)
}

// --- PDF ---------------------------------------------------------------------------------

struct PdfBuilder {
    doc: Document,
    pages_id: ObjectId,
    font_id: ObjectId,
    extra_fonts: Dictionary,
    pages: Vec<(Stream, Option<Dictionary>)>,
}

impl PdfBuilder {
    fn new() -> Self {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        Self {
            doc,
            pages_id,
            font_id,
            extra_fonts: Dictionary::new(),
            pages: Vec::new(),
        }
    }

    fn page(&mut self, content: Vec<u8>, xobjects: Option<Dictionary>) {
        self.pages
            .push((Stream::new(Dictionary::new(), content), xobjects));
    }

    fn into_document(mut self) -> Document {
        let mut fonts = dictionary! { "F1" => self.font_id };
        for (k, v) in self.extra_fonts.iter() {
            fonts.set(k.clone(), v.clone());
        }
        let mut kids = Vec::with_capacity(self.pages.len());
        for (stream, xobjects) in std::mem::take(&mut self.pages) {
            let content_id = self.doc.add_object(stream);
            let mut resources = dictionary! { "Font" => fonts.clone() };
            if let Some(x) = xobjects {
                resources.set("XObject", x);
            }
            let page_id = self.doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => self.pages_id,
                "Contents" => content_id,
                "Resources" => resources,
            });
            kids.push(Object::Reference(page_id));
        }
        let count = i64::try_from(kids.len()).unwrap_or(i64::MAX);
        self.doc.objects.insert(
            self.pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids,
                "Count" => count,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog = self.doc.add_object(dictionary! {
            "Type" => "Catalog",
            "Pages" => self.pages_id,
        });
        self.doc.trailer.set("Root", catalog);
        self.doc
    }

    fn finish(self, compress: bool) -> Vec<u8> {
        let mut doc = self.into_document();
        if compress {
            doc.compress();
        }
        save(&mut doc)
    }
}

fn save(doc: &mut Document) -> Vec<u8> {
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("lopdf writes to memory");
    out
}

/// A content stream showing `text` in `/F1`, wrapped into lines.
fn text_content(text: &str) -> Vec<u8> {
    let mut out = "BT /F1 11 Tf 56 800 Td\n".to_string().into_bytes();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut lines = Vec::new();
        for word in paragraph.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > LINE_CHARS {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
        for l in lines {
            out.push(b'(');
            for c in l.chars() {
                let byte = u8::try_from(u32::from(c)).unwrap_or(b'?');
                if matches!(byte, b'(' | b')' | b'\\') {
                    out.push(b'\\');
                }
                out.push(byte);
            }
            out.extend_from_slice(format!(") Tj 0 -{LEADING} Td\n").as_bytes());
        }
    }
    out.extend_from_slice(b"ET\n");
    out
}

// --- zip -----------------------------------------------------------------------------------

struct ZipEntry<'a> {
    name: String,
    /// 0 stored, 8 deflated.
    method: u16,
    crc: u32,
    data: Cow<'a, [u8]>,
    declared_size: u32,
}

/// The entries of a small valid DOCX, stored uncompressed.
fn base_docx_entries() -> Vec<ZipEntry<'static>> {
    let bytes = docx(&["Hello"]);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("docx-rs writes a zip");
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("entry");
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("inflate");
        entries.push(ZipEntry {
            name: file.name().to_owned(),
            method: 0,
            crc: crc32(&data),
            declared_size: u32::try_from(data.len()).expect("small"),
            data: Cow::Owned(data),
        });
    }
    entries
}

/// Writes a zip archive by hand, so that sizes can lie and compressed data can be supplied.
fn write_zip(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut offsets = Vec::with_capacity(entries.len());
    for e in entries {
        offsets.push(u32::try_from(out.len()).expect("fixture under 4 GiB"));
        u32le(&mut out, 0x0403_4b50);
        u16le(&mut out, 20);
        u16le(&mut out, 0);
        u16le(&mut out, e.method);
        u16le(&mut out, 0);
        u16le(&mut out, 0x21);
        u32le(&mut out, e.crc);
        u32le(
            &mut out,
            u32::try_from(e.data.len()).expect("fixture under 4 GiB"),
        );
        u32le(&mut out, e.declared_size);
        u16le(&mut out, u16::try_from(e.name.len()).expect("short name"));
        u16le(&mut out, 0);
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&e.data);
    }
    let cd_start = out.len();
    for (e, offset) in entries.iter().zip(&offsets) {
        u32le(&mut out, 0x0201_4b50);
        u16le(&mut out, 20);
        u16le(&mut out, 20);
        u16le(&mut out, 0);
        u16le(&mut out, e.method);
        u16le(&mut out, 0);
        u16le(&mut out, 0x21);
        u32le(&mut out, e.crc);
        u32le(
            &mut out,
            u32::try_from(e.data.len()).expect("fixture under 4 GiB"),
        );
        u32le(&mut out, e.declared_size);
        u16le(&mut out, u16::try_from(e.name.len()).expect("short name"));
        u16le(&mut out, 0);
        u16le(&mut out, 0);
        u16le(&mut out, 0);
        u16le(&mut out, 0);
        u32le(&mut out, 0);
        u32le(&mut out, *offset);
        out.extend_from_slice(e.name.as_bytes());
    }
    let cd_size = out.len() - cd_start;
    let count = entries.len();
    let small_count = u16::try_from(count).ok();
    if small_count.is_none() {
        // ZIP64 end of central directory record and locator.
        let record_at = out.len() as u64;
        u32le(&mut out, 0x0606_4b50);
        out.extend_from_slice(&44u64.to_le_bytes());
        u16le(&mut out, 45);
        u16le(&mut out, 45);
        u32le(&mut out, 0);
        u32le(&mut out, 0);
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(cd_size as u64).to_le_bytes());
        out.extend_from_slice(&(cd_start as u64).to_le_bytes());
        u32le(&mut out, 0x0706_4b50);
        u32le(&mut out, 0);
        out.extend_from_slice(&record_at.to_le_bytes());
        u32le(&mut out, 1);
    }
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, small_count.unwrap_or(0xffff));
    u16le(&mut out, small_count.unwrap_or(0xffff));
    u32le(
        &mut out,
        u32::try_from(cd_size).expect("fixture under 4 GiB"),
    );
    u32le(
        &mut out,
        u32::try_from(cd_start).expect("fixture under 4 GiB"),
    );
    u16le(&mut out, 0);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// Raw deflate data of `total` copies of `byte` (a multiple of 1 MiB), and its CRC-32: one
/// compressed MiB, ended by a sync flush (so it starts and ends on a byte boundary and refers
/// to nothing before it), repeated, then an empty final block.
fn repeated_deflate(byte: u8, total: u64) -> (Vec<u8>, u32) {
    const BLOCK: usize = 1 << 20;
    let block = vec![byte; BLOCK];
    let mut compress = flate2::Compress::new(flate2::Compression::best(), false);
    let mut piece = Vec::with_capacity(64 * 1024);
    compress
        .compress_vec(&block, &mut piece, flate2::FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(
        compress.total_in(),
        BLOCK as u64,
        "the block fits the buffer"
    );
    let repeats = total / BLOCK as u64;
    let mut raw = Vec::with_capacity(piece.len() * usize::try_from(repeats).unwrap_or(0) + 2);
    let mut one = flate2::Crc::new();
    one.update(&block);
    let mut crc = flate2::Crc::new();
    for _ in 0..repeats {
        raw.extend_from_slice(&piece);
        crc.combine(&one);
    }
    // Final block, fixed Huffman codes, holding only the end-of-block code.
    raw.extend_from_slice(&[0x03, 0x00]);
    (raw, crc.sum())
}

/// Adler-32 of `n` copies of `byte`.
fn adler32_of_repeated(byte: u8, n: u64) -> u32 {
    const MOD: u128 = 65_521;
    let (c, n) = (u128::from(byte), u128::from(n));
    let a = (1 + n * c) % MOD;
    // b = sum over i of (1 + i * c) for i in 1..=n
    let b = (n + c * n * (n + 1) / 2) % MOD;
    u32::try_from((b << 16) | a).unwrap_or(0)
}

/// The OCR tools for tests: `pdftoppm` and `tesseract` resolved in `PATH`, when both are
/// installed with English. Under `CI` a missing tool panics (`.ci/run` installs them, so an
/// OCR test never skips there); elsewhere it prints that the test skips and gives `None`.
#[must_use]
pub fn installed_ocr_tools() -> Option<crate::OcrConfig> {
    let config = crate::OcrConfig {
        pdftoppm: "pdftoppm".into(),
        tesseract: "tesseract".into(),
        ..crate::OcrConfig::default()
    }
    .resolved();
    let english = std::process::Command::new(&config.tesseract)
        .arg("--list-langs")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "eng")
        });
    if config.pdftoppm.is_absolute() && english {
        return Some(config);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the OCR tests: .ci/run installs tesseract-ocr, tesseract-ocr-eng and poppler-utils"
    );
    eprintln!("SKIPPED (OCR): pdftoppm or tesseract with English is not installed");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeated_deflate_stream_inflates_to_what_it_claims() {
        let (raw, crc) = repeated_deflate(b'x', 4 << 20);
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(raw.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated.len(), 4 << 20);
        assert!(inflated.iter().all(|b| *b == b'x'));
        assert_eq!(crc, crc32(&inflated));
        let mut adler_a: u32 = 1;
        let mut adler_b: u32 = 0;
        for b in &inflated[..1000] {
            adler_a = (adler_a + u32::from(*b)) % 65_521;
            adler_b = (adler_b + adler_a) % 65_521;
        }
        assert_eq!(adler32_of_repeated(b'x', 1000), (adler_b << 16) | adler_a);
    }

    #[test]
    fn generated_zips_open() {
        let many = many_entries_docx(70_000);
        let archive = zip::ZipArchive::new(Cursor::new(many)).unwrap();
        assert_eq!(archive.len(), 70_000 + base_docx_entries().len());
        let bomb = zip::ZipArchive::new(Cursor::new(zip_bomb_docx())).unwrap();
        assert!(bomb.decompressed_size().unwrap_or(0) >= 1 << 30);
    }
}
