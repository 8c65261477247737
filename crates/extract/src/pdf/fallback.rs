//! The second extraction path, for pages pdf-extract cannot read: a small content-stream walker
//! over lopdf that shows text through the font's `ToUnicode` map, its simple encoding, or the
//! predefined CJK CMaps (Shift-JIS, EUC-JP, JIS, GBK, Big5, EUC-KR, UCS-2) that pdf-extract
//! panics on. Form XObjects are followed with a depth bound and cycle check; nothing recurses
//! on the file's structure without a bound, and nothing here panics on a malformed file.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

/// Deepest chain of form XObjects followed.
const MAX_FORM_DEPTH: usize = 12;
/// Longest chain of references followed to reach an object.
const MAX_DEREF: usize = 16;
/// Longest `/Parent` chain searched for inherited resources.
const MAX_PARENTS: usize = 64;
/// Most content operations run for one page, forms included (a form drawn a hundred times by
/// a form drawn a hundred times… would otherwise grow exponentially).
const MAX_OPERATIONS: usize = 1_000_000;
/// Most content bytes parsed for one page, forms included, for the same reason.
const MAX_CONTENT_BYTES: usize = 256 * 1024 * 1024;

/// Decodes the strings shown by one font.
enum Decoder {
    /// A `ToUnicode` map (read by lopdf).
    Pdf(Encoding<'static>),
    /// A one-byte encoding (standard, WinAnsi, MacRoman, `Differences`), as a table.
    Table(Vec<String>),
    /// A predefined CMap that is a legacy multi-byte character set.
    Charset(&'static encoding_rs::Encoding),
    /// The `H`/`V` CMaps: two-byte JIS X 0208 codes (ISO-2022-JP without escapes).
    Jis,
    /// The `Uni*-UTF32` CMaps.
    Utf32,
    /// A font whose codes cannot be mapped to text (an `Identity` CMap without `ToUnicode`).
    Opaque,
}

impl Decoder {
    fn decode(&self, bytes: &[u8], out: &mut String) {
        match self {
            Decoder::Pdf(enc) => {
                let mut s = String::new();
                if enc.write_to_string(bytes, &mut s).is_ok() {
                    out.push_str(&s);
                } else {
                    ascii(bytes, out);
                }
            }
            Decoder::Table(table) => {
                for b in bytes {
                    if let Some(s) = table.get(usize::from(*b)) {
                        out.push_str(s);
                    }
                }
            }
            Decoder::Charset(enc) => out.push_str(&enc.decode_without_bom_handling(bytes).0),
            Decoder::Jis => {
                let euc: Vec<u8> = bytes
                    .iter()
                    .map(|b| {
                        if (0x21..=0x7e).contains(b) {
                            b | 0x80
                        } else {
                            *b
                        }
                    })
                    .collect();
                out.push_str(&encoding_rs::EUC_JP.decode_without_bom_handling(&euc).0);
            }
            Decoder::Utf32 => {
                for c in bytes.chunks_exact(4) {
                    let v = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
            }
            Decoder::Opaque => {}
        }
    }
}

/// Printable ASCII only: better than nothing for an encoding nobody can name.
fn ascii(bytes: &[u8], out: &mut String) {
    out.extend(
        bytes
            .iter()
            .filter(|b| b.is_ascii_graphic() || **b == b' ')
            .map(|b| char::from(*b)),
    );
}

/// The legacy character set of a predefined CJK CMap (PDF 32000-1, table 118).
fn cmap_decoder(name: &[u8]) -> Option<Decoder> {
    let name = std::str::from_utf8(name).ok()?;
    let base = name
        .strip_suffix("-H")
        .or_else(|| name.strip_suffix("-V"))
        .unwrap_or(name);
    let d = match base {
        "H" | "V" | "Ext" | "Add" | "NWP" => Decoder::Jis,
        b if b.contains("RKSJ") => Decoder::Charset(encoding_rs::SHIFT_JIS),
        "EUC" | "Ext-EUC" => Decoder::Charset(encoding_rs::EUC_JP),
        b if b.starts_with("GB") => Decoder::Charset(encoding_rs::GB18030),
        b if b.contains("B5") => Decoder::Charset(encoding_rs::BIG5),
        b if b.starts_with("KSC") && !b.contains("Johab") => Decoder::Charset(encoding_rs::EUC_KR),
        b if b.starts_with("Uni") && (b.ends_with("UCS2") || b.ends_with("UTF16")) => {
            Decoder::Charset(encoding_rs::UTF_16BE)
        }
        b if b.starts_with("Uni") && b.ends_with("UTF8") => Decoder::Charset(encoding_rs::UTF_8),
        b if b.starts_with("Uni") && b.ends_with("UTF32") => Decoder::Utf32,
        _ => return None,
    };
    Some(d)
}

/// Reads text out of pages with lopdf only. One per document: decoders are cached by font.
pub(super) struct Fallback<'a> {
    doc: &'a Document,
    decoders: HashMap<usize, Decoder>,
    /// Parsed content of the form XObjects met so far.
    forms: HashMap<usize, Rc<[Operation]>>,
}

impl<'a> Fallback<'a> {
    pub(super) fn new(doc: &'a Document) -> Self {
        Self {
            doc,
            decoders: HashMap::new(),
            forms: HashMap::new(),
        }
    }

    /// The text of one page (empty when nothing can be read).
    pub(super) fn page_text(&mut self, page_id: ObjectId) -> String {
        let Ok(page) = self.doc.get_dictionary(page_id) else {
            return String::new();
        };
        let resources = self.inherited_resources(page);
        let Ok(data) = self.doc.get_page_content(page_id) else {
            return String::new();
        };
        let mut walk = Walk::default();
        let mut forms = HashSet::new();
        let operations = parse(&data, &mut walk);
        self.run(&operations, resources, &mut walk, &mut forms, 0);
        walk.finish()
    }

    fn deref(&self, mut obj: &'a Object) -> Option<&'a Object> {
        for _ in 0..MAX_DEREF {
            match obj {
                Object::Reference(id) => obj = self.doc.objects.get(id)?,
                other => return Some(other),
            }
        }
        None
    }

    fn dict(&self, obj: &'a Object) -> Option<&'a Dictionary> {
        match self.deref(obj)? {
            Object::Dictionary(d) => Some(d),
            Object::Stream(s) => Some(&s.dict),
            _ => None,
        }
    }

    fn inherited_resources(&self, page: &'a Dictionary) -> Option<&'a Dictionary> {
        let mut node = page;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PARENTS {
            if let Some(r) = node.get(b"Resources").ok().and_then(|r| self.dict(r)) {
                return Some(r);
            }
            let parent = node.get(b"Parent").ok()?;
            if let Object::Reference(id) = parent
                && !seen.insert(*id)
            {
                return None;
            }
            node = self.dict(parent)?;
        }
        None
    }

    fn run(
        &mut self,
        operations: &[Operation],
        resources: Option<&'a Dictionary>,
        walk: &mut Walk,
        forms: &mut HashSet<usize>,
        depth: usize,
    ) {
        let mut font: Option<usize> = None;
        for op in operations {
            if walk.operations >= MAX_OPERATIONS {
                return;
            }
            walk.operations += 1;
            let operands = &op.operands;
            match op.operator.as_str() {
                "Tf" => {
                    font = operands
                        .first()
                        .and_then(|n| n.as_name().ok())
                        .and_then(|name| self.font(resources, name));
                }
                "Tj" => self.show(font, operands.first(), walk),
                "'" => {
                    walk.newline();
                    self.show(font, operands.first(), walk);
                }
                "\"" => {
                    walk.newline();
                    self.show(font, operands.get(2), walk);
                }
                "TJ" => {
                    if let Some(Object::Array(items)) = operands.first() {
                        for item in items {
                            match item {
                                Object::String(..) => self.show(font, Some(item), walk),
                                // A wide negative kern is a word gap.
                                Object::Integer(_) | Object::Real(_)
                                    if item.as_float().is_ok_and(|k| k < -250.0) =>
                                {
                                    walk.space();
                                }
                                _ => {}
                            }
                        }
                    }
                }
                "Td" | "TD" => {
                    let dy = operands
                        .get(1)
                        .and_then(|o| o.as_float().ok())
                        .unwrap_or(0.0);
                    if dy.abs() > 0.01 {
                        walk.newline();
                    } else {
                        walk.space();
                    }
                }
                "T*" | "Tm" | "ET" => walk.newline(),
                "Do" if depth < MAX_FORM_DEPTH => {
                    if let Some(name) = operands.first().and_then(|n| n.as_name().ok()) {
                        self.form(resources, name, walk, forms, depth);
                    }
                }
                _ => {}
            }
        }
    }

    fn form(
        &mut self,
        resources: Option<&'a Dictionary>,
        name: &[u8],
        walk: &mut Walk,
        forms: &mut HashSet<usize>,
        depth: usize,
    ) {
        let Some(xobjects) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|x| self.dict(x))
        else {
            return;
        };
        let Some(Object::Stream(stream)) = xobjects.get(name).ok().and_then(|o| self.deref(o))
        else {
            return;
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            return;
        }
        let key = std::ptr::from_ref(stream) as usize;
        if !forms.insert(key) {
            return; // a form that shows itself
        }
        let own = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| self.dict(r))
            .or(resources);
        let operations = match self.forms.get(&key) {
            Some(ops) => Rc::clone(ops),
            None => {
                let data = stream
                    .decompressed_content()
                    .unwrap_or_else(|_| stream.content.clone());
                let ops = parse(&data, walk);
                self.forms.insert(key, Rc::clone(&ops));
                ops
            }
        };
        self.run(&operations, own, walk, forms, depth + 1);
        forms.remove(&key);
    }

    /// The cache key of the font `name` in `resources`, building its decoder once.
    fn font(&mut self, resources: Option<&'a Dictionary>, name: &[u8]) -> Option<usize> {
        let fonts = self.dict(resources?.get(b"Font").ok()?)?;
        let font = self.dict(fonts.get(name).ok()?)?;
        let key = std::ptr::from_ref(font) as usize;
        if !self.decoders.contains_key(&key) {
            let decoder = self.decoder(font);
            self.decoders.insert(key, decoder);
        }
        Some(key)
    }

    fn decoder(&self, font: &'a Dictionary) -> Decoder {
        let doc = self.doc;
        if font.get(b"ToUnicode").is_ok() {
            // lopdf prefers `/Encoding` over `ToUnicode`; ask it for the map alone. The map is
            // owned, so it outlives the copy it was read from.
            let mut copy = font.clone();
            copy.remove(b"Encoding");
            copy.set("Type", Object::Name(b"Font".to_vec()));
            if let Ok(Encoding::UnicodeMapEncoding(map)) = copy.get_font_encoding(doc) {
                return Decoder::Pdf(Encoding::UnicodeMapEncoding(map));
            }
        }
        let subtype = font.get(b"Subtype").and_then(Object::as_name).ok();
        let encoding = font.get(b"Encoding").ok().and_then(|e| self.deref(e));
        if subtype == Some(b"Type0".as_slice()) {
            return match encoding.and_then(|e| e.as_name().ok()) {
                Some(name) => cmap_decoder(name).unwrap_or(Decoder::Opaque),
                None => Decoder::Opaque,
            };
        }
        let mut copy = font.clone();
        copy.set("Type", Object::Name(b"Font".to_vec()));
        match copy.get_font_encoding(doc) {
            Ok(Encoding::UnicodeMapEncoding(map)) => {
                Decoder::Pdf(Encoding::UnicodeMapEncoding(map))
            }
            // One-byte encodings (and `Differences`, which borrow the copy) become a table.
            Ok(enc) => {
                let table: Vec<String> = (0..=255u8)
                    .map(|b| match enc.bytes_to_string(&[b]) {
                        Ok(s) => s,
                        Err(_) => {
                            let mut s = String::new();
                            ascii(&[b], &mut s);
                            s
                        }
                    })
                    .collect();
                Decoder::Table(table)
            }
            Err(_) => Decoder::Table(
                (0..=255u8)
                    .map(|b| {
                        let mut s = String::new();
                        ascii(&[b], &mut s);
                        s
                    })
                    .collect(),
            ),
        }
    }

    fn show(&self, font: Option<usize>, operand: Option<&Object>, walk: &mut Walk) {
        let Some(Object::String(bytes, _)) = operand else {
            return;
        };
        match font.and_then(|k| self.decoders.get(&k)) {
            Some(decoder) => decoder.decode(bytes, &mut walk.line),
            None => ascii(bytes, &mut walk.line),
        }
    }
}

/// The operations of a content stream. A stream with one bad token fails to parse as a
/// whole; then what parses is taken, line by line, and of a line that does not parse, each
/// text object (`BT` … `ET`) that does.
fn parse(data: &[u8], walk: &mut Walk) -> Rc<[Operation]> {
    walk.content_bytes += data.len();
    if walk.content_bytes > MAX_CONTENT_BYTES {
        return Rc::from(Vec::new());
    }
    match Content::decode_strict(data) {
        Ok(content) => content.operations.into(),
        Err(_) => data
            .split(|b| matches!(b, b'\n' | b'\r'))
            .flat_map(|line| match Content::decode_strict(line) {
                Ok(content) => content.operations,
                Err(_) => text_objects(line)
                    .filter_map(|object| Content::decode_strict(object).ok())
                    .flat_map(|c| c.operations)
                    .collect(),
            })
            .collect(),
    }
}

/// The `BT` … `ET` spans of `data`, found by their operator tokens.
fn text_objects(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let begin = from + token(&data[from..], b"BT")?;
        let end = begin + 2 + token(&data[begin + 2..], b"ET")? + 2;
        from = end;
        Some(&data[begin..end])
    })
}

/// Where the two-letter operator `op` first stands alone in `data`.
fn token(data: &[u8], op: &[u8; 2]) -> Option<usize> {
    let delimiter =
        |b: Option<&u8>| b.is_none_or(|b| b.is_ascii_whitespace() || b"()<>[]{}/%".contains(b));
    data.windows(2).enumerate().find_map(|(i, w)| {
        (w == op
            && delimiter(i.checked_sub(1).and_then(|j| data.get(j)))
            && delimiter(data.get(i + 2)))
        .then_some(i)
    })
}

/// The text of a page as it is shown, line by line.
#[derive(Default)]
struct Walk {
    out: String,
    line: String,
    operations: usize,
    content_bytes: usize,
}

impl Walk {
    fn space(&mut self) {
        if !self.line.is_empty() && !self.line.ends_with(' ') {
            self.line.push(' ');
        }
    }

    fn newline(&mut self) {
        let line = self.line.trim();
        if !line.is_empty() {
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            self.out.push_str(line);
        }
        self.line.clear();
    }

    fn finish(mut self) -> String {
        self.newline();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_drawing_forms_are_bounded() {
        use lopdf::{Stream, dictionary};
        // Ten levels of forms, each drawing the next fifty times: 50^10 operations unbounded.
        let mut doc = Document::with_version("1.5");
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let mut next: Option<ObjectId> = None;
        for _ in 0..10 {
            let (content, xobjects) = match next {
                Some(id) => ("/X Do ".repeat(50), dictionary! { "X" => id }),
                None => ("BT /F1 12 Tf (deep) Tj ET".to_owned(), dictionary! {}),
            };
            next = Some(doc.add_object(Stream::new(
                dictionary! {
                    "Type" => "XObject", "Subtype" => "Form",
                    "Resources" => dictionary! {
                        "XObject" => xobjects, "Font" => dictionary! { "F1" => font },
                    },
                },
                content.into_bytes(),
            )));
        }
        let page_content = doc.add_object(Stream::new(dictionary! {}, b"/X Do".to_vec()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Contents" => page_content,
            "Resources" => dictionary! { "XObject" => dictionary! { "X" => next.unwrap() } },
        });
        let text = Fallback::new(&doc).page_text(page);
        assert!(text.starts_with("deep"), "{text:?}");
    }

    #[test]
    fn text_objects_of_a_line_that_does_not_parse_are_read() {
        let mut walk = Walk::default();
        let ops = parse(
            b"q ]] >> } BT /F1 12 Tf (Hello) Tj ET BI /W 4 ID \x00\xff( BT (world) Tj ET (",
            &mut walk,
        );
        let shown: Vec<&str> = ops.iter().map(|o| o.operator.as_str()).collect();
        assert_eq!(shown, ["BT", "Tf", "Tj", "ET", "BT", "Tj", "ET"]);
        assert_eq!(token(b"BTX BT", b"BT"), Some(4));
        assert_eq!(token(b"(ABT) ET", b"ET"), Some(6));
    }

    #[test]
    fn cjk_cmaps_map_to_charsets() {
        let decode = |name: &[u8], bytes: &[u8]| {
            let mut s = String::new();
            cmap_decoder(name).unwrap().decode(bytes, &mut s);
            s
        };
        assert_eq!(
            decode(b"90ms-RKSJ-H", b"\x93\xfa\x96\x7b\x8c\xea"),
            "日本語"
        );
        assert_eq!(decode(b"EUC-H", b"\xa4\xa2\xa4\xa4"), "あい");
        assert_eq!(decode(b"H", b"$\"$$"), "あい");
        assert_eq!(decode(b"GBK-EUC-H", b"\xc7\xb3\xcc\xb8"), "浅谈");
        assert_eq!(decode(b"UniJIS-UCS2-H", b"\x65\xe5\x67\x2c"), "日本");
        assert_eq!(decode(b"UniJIS-UTF32-H", b"\0\0\x65\xe5"), "日");
        assert!(cmap_decoder(b"Identity-H").is_none());
    }
}
