//! Glyph names of the form `uniXXXX` and `uXXXX` in a simple font's `/Differences` name their
//! character by its code point (the Adobe Glyph List's rule), but pdf-extract knows only the
//! list's named glyphs and showed the base encoding's character instead ("A" for `/uni0048`).
//! A font without `ToUnicode` that uses such names gets one made from them; pdf-extract
//! lays it over the encoding, so the other codes keep their characters.

use std::fmt::Write as _;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

/// Most fonts given a made `ToUnicode` per document.
const MAX_FONTS: usize = 10_000;

/// Adds a `ToUnicode` map to every font whose `/Differences` name characters by code point.
pub(super) fn map_code_point_names(doc: &mut Document) {
    let mut found: Vec<(ObjectId, String)> = Vec::new();
    for (&id, object) in &doc.objects {
        if found.len() >= MAX_FONTS {
            break;
        }
        let Object::Dictionary(font) = object else {
            continue;
        };
        if !font.has_type(b"Font") || font.has(b"ToUnicode") {
            continue;
        }
        let encoding = match font.get(b"Encoding") {
            Ok(Object::Reference(r)) => doc.objects.get(r),
            Ok(other) => Some(other),
            Err(_) => None,
        };
        let Some(Object::Dictionary(encoding)) = encoding else {
            continue;
        };
        if let Some(cmap) = cmap(encoding) {
            found.push((id, cmap));
        }
    }
    for (font_id, cmap) in found {
        let stream = doc.add_object(Stream::new(Dictionary::new(), cmap.into_bytes()));
        if let Some(Object::Dictionary(font)) = doc.objects.get_mut(&font_id) {
            font.set("ToUnicode", Object::Reference(stream));
        }
    }
}

/// A `ToUnicode` CMap for the code-point names of `/Differences`, if there are any.
fn cmap(encoding: &Dictionary) -> Option<String> {
    let Ok(Object::Array(differences)) = encoding.get(b"Differences") else {
        return None;
    };
    let mut pairs: Vec<(u8, char)> = Vec::new();
    let mut code: Option<i64> = None;
    for item in differences {
        match item {
            Object::Integer(n) => code = Some(*n),
            Object::Name(name) => {
                if let Some(c) = code
                    && let Ok(byte) = u8::try_from(c)
                    && let Some(ch) = code_point_name(name)
                {
                    pairs.push((byte, ch));
                }
                code = code.map(|c| c + 1);
            }
            _ => {}
        }
    }
    if pairs.is_empty() {
        return None;
    }
    let mut out = String::from(
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Quire-Names def \
         1 begincodespacerange <00> <FF> endcodespacerange\n",
    );
    for block in pairs.chunks(100) {
        let _ = writeln!(out, "{} beginbfchar", block.len());
        for (byte, ch) in block {
            let mut units = [0u16; 2];
            let _ = write!(out, "<{byte:02X}> <");
            for unit in ch.encode_utf16(&mut units) {
                let _ = write!(out, "{unit:04X}");
            }
            out.push_str(">\n");
        }
        out.push_str("endbfchar\n");
    }
    out.push_str("endcmap CMapName currentdict /CMap defineresource pop end end\n");
    Some(out)
}

/// The character a glyph name gives by code point: `uniXXXX` (four hex digits) or `uXXXX` to
/// `uXXXXXX`, a suffix after a dot ignored; not a control character.
fn code_point_name(name: &[u8]) -> Option<char> {
    let name = std::str::from_utf8(name).ok()?;
    let base = name.split('.').next()?;
    let hex = match base.strip_prefix("uni") {
        Some(hex) if hex.len() == 4 => hex,
        _ => base
            .strip_prefix('u')
            .filter(|h| (4..=6).contains(&h.len()))?,
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    (!ch.is_control()).then_some(ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_point_names_are_read() {
        assert_eq!(code_point_name(b"uni0048"), Some('H'));
        assert_eq!(code_point_name(b"uni00E9.sc"), Some('é'));
        assert_eq!(code_point_name(b"u1F600"), Some('😀'));
        assert_eq!(code_point_name(b"uniD800"), None);
        assert_eq!(code_point_name(b"uni0009"), None);
        assert_eq!(code_point_name(b"union"), None);
        assert_eq!(code_point_name(b"uni00480065"), None);
        assert_eq!(code_point_name(b"g42"), None);
    }
}
