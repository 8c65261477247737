//! Mends a PDF whose cross-reference table is broken: scans the file for `N G obj` headers and
//! appends a fresh table and trailer, so lopdf can load the objects (as pdf.js and pypdf do).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most objects a rebuilt table lists.
const MAX_OBJECTS: usize = 1_000_000;
/// Highest object number accepted.
const MAX_OBJECT_NUMBER: u32 = 8_388_607;

/// What the scan found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Mended {
    /// The file with a rebuilt table appended.
    Rebuilt(Vec<u8>),
    /// The file names an `/Encrypt` dictionary in a trailer: it cannot be mended unread.
    Encrypted,
    /// No objects or no catalog: nothing to rebuild.
    Hopeless,
}

/// Rebuilds `bytes` as a new file: every object found (the last definition of each number),
/// stream lengths corrected where `/Length` disagrees with the data, a fresh cross-reference
/// table and trailer.
pub(super) fn rebuild(bytes: &[u8]) -> Mended {
    let Some(base) = find(bytes, b"%PDF-") else {
        return Mended::Hopeless;
    };
    let body = &bytes[base..];

    let objects = last_definitions(body);
    if objects.is_empty() {
        return Mended::Hopeless;
    }

    let trailer = rfind(body, b"trailer").map(|t| &body[t..body.len().min(t + 4096)]);
    if trailer.is_some_and(|t| find(t, b"/Encrypt").is_some()) {
        return Mended::Encrypted;
    }
    let root = trailer
        .and_then(|t| reference_after(t, b"/Root"))
        .filter(|(num, _)| objects.contains_key(num))
        .or_else(|| find_catalog(body, &objects));
    let Some((root_num, root_gen)) = root else {
        return Mended::Hopeless;
    };
    let info = trailer
        .and_then(|t| reference_after(t, b"/Info"))
        .filter(|(num, _)| objects.contains_key(num));

    // Where each object ends: its `endobj`, or the next object's start.
    let mut starts: Vec<usize> = objects.values().map(|(_, s)| *s).collect();
    starts.sort_unstable();

    let header_end = body
        .iter()
        .position(|b| matches!(b, b'\n' | b'\r'))
        .unwrap_or(body.len());
    let mut out = Vec::with_capacity(body.len() + objects.len() * 24 + 256);
    out.extend_from_slice(&body[..header_end.min(16)]);
    out.extend_from_slice(b"\n");
    let mut offsets: BTreeMap<u32, (u16, usize)> = BTreeMap::new();
    for (&num, &(generation, start)) in &objects {
        let next = starts
            .get(starts.partition_point(|s| *s <= start))
            .copied()
            .unwrap_or(body.len());
        let object = object_bytes(&body[start..next]);
        offsets.insert(num, (generation, out.len()));
        out.extend_from_slice(&object);
        out.extend_from_slice(b"\n");
    }

    let xref_at = out.len();
    let mut table = String::with_capacity(offsets.len() * 20 + 64);
    table.push_str("xref\n0 1\n0000000000 65535 f\r\n");
    let mut run: Vec<(u32, u16, usize)> = Vec::new();
    let flush = |run: &mut Vec<(u32, u16, usize)>, table: &mut String| {
        if let Some((first, _, _)) = run.first() {
            let _ = writeln!(table, "{first} {}", run.len());
            for (_, generation, offset) in run.iter() {
                let _ = write!(table, "{offset:010} {generation:05} n\r\n");
            }
        }
        run.clear();
    };
    for (&num, &(generation, offset)) in offsets.iter().filter(|(n, _)| **n > 0) {
        if run.last().is_some_and(|(last, _, _)| last + 1 != num) {
            flush(&mut run, &mut table);
        }
        run.push((num, generation, offset));
    }
    flush(&mut run, &mut table);
    let size = offsets.keys().next_back().map_or(1, |n| n + 1);
    let _ = write!(
        table,
        "trailer\n<< /Size {size} /Root {root_num} {root_gen} R"
    );
    if let Some((num, generation)) = info {
        let _ = write!(table, " /Info {num} {generation} R");
    }
    let _ = write!(table, " >>\nstartxref\n{xref_at}\n%%EOF\n");
    out.extend_from_slice(table.as_bytes());
    Mended::Rebuilt(out)
}

/// Where each object of `body` is defined (its generation and where its `N G obj` header
/// starts): the last definition of each number, as an incremental update replaces an earlier one.
fn last_definitions(body: &[u8]) -> BTreeMap<u32, (u16, usize)> {
    let mut objects: BTreeMap<u32, (u16, usize)> = BTreeMap::new();
    let mut from = 0;
    while let Some(at) = find(&body[from..], b"obj") {
        let i = from + at;
        from = i + 3;
        if let Some((num, generation, start)) = object_header(body, i)
            && num <= MAX_OBJECT_NUMBER
            && (objects.len() < MAX_OBJECTS || objects.contains_key(&num))
        {
            objects.insert(num, (generation, start));
        }
    }
    objects
}

/// `bytes` with an incremental update that gives an AES-128 (`/V 4`, `/AESV2`) encryption
/// dictionary the `/Length 128` it left out, or `None` when the file is not such a case.
///
/// The standard says `/Length` may be left out at `/V 4` (the key is 128 bits); some producers
/// do so and write the crypt filter's length in bytes (`/Length 16`). lopdf then derives a
/// 40-bit key and cannot decrypt a file that opens with the empty password in every reader. The
/// fix appends the dictionary again with `/Length 128` (it is never encrypted itself), a
/// cross-reference section for it and a trailer pointing back at the old one (`/Prev`): no byte
/// of the file moves, so every offset it lists stays right. Only a classic `trailer` without
/// `/Prev` is handled; a password is still needed where one is set.
pub(super) fn with_aes_key_length(bytes: &[u8]) -> Option<Vec<u8>> {
    let base = find(bytes, b"%PDF-")?;
    let body = &bytes[base..];
    let trailer_at = rfind(body, b"trailer")?;
    let trailer = &body[trailer_at..];
    let (dict_start, dict_end) = balanced_dict(trailer)?;
    let trailer_dict = &trailer[dict_start..dict_end];
    if find(trailer_dict, b"/Prev").is_some() {
        return None;
    }
    let (num, generation) = reference_after(trailer_dict, b"/Encrypt")?;
    let old_xref: usize = {
        let at = rfind(body, b"startxref")? + b"startxref".len();
        let digits: Vec<u8> = body[at..]
            .iter()
            .copied()
            .skip_while(|b| is_space(*b))
            .take_while(u8::is_ascii_digit)
            .collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()?
    };

    // The last definition of the encryption object, and its dictionary.
    let start = last_definitions(body)
        .get(&num)
        .filter(|(g, _)| *g == generation)
        .map(|(_, start)| *start)?;
    let object = &body[start..];
    let (open, close) = balanced_dict(object)?;
    let dict = &object[open..close];
    let compact: Vec<u8> = dict.iter().copied().filter(|b| !is_space(*b)).collect();
    if find(&compact, b"/V4").is_none()
        || find(&compact, b"/AESV2").is_none()
        || key_at_top_level(dict, b"/Length")
    {
        return None;
    }

    let mut out = bytes.to_vec();
    out.extend_from_slice(b"\n");
    let object_at = out.len() - base;
    let mut update = format!("{num} {generation} obj\n<< /Length 128 ").into_bytes();
    update.extend_from_slice(&dict[2..]);
    update.extend_from_slice(b"\nendobj\n");
    let xref_at = object_at + update.len();
    let mut table = format!(
        "xref\n0 1\n0000000000 65535 f\r\n{num} 1\n{object_at:010} {generation:05} n\r\ntrailer\n<< /Prev {old_xref} "
    )
    .into_bytes();
    table.extend_from_slice(&trailer_dict[2..]);
    table.extend_from_slice(format!("\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    out.extend_from_slice(&update);
    out.extend_from_slice(&table);
    Some(out)
}

/// Where the first `<< … >>` of `bytes` starts and ends (past its `>>`), nested dictionaries
/// and strings taken into account.
fn balanced_dict(bytes: &[u8]) -> Option<(usize, usize)> {
    let open = find(bytes, b"<<")?;
    let end = walk_dict(bytes, open, |_, _| false)?;
    Some((open, end))
}

/// Walks the dictionary that opens at `open` (`<<`), calling `stop(i, depth)` at every byte
/// outside strings and the `<<` `>>` marks (depth 1: the dictionary's own entries). Where
/// it ends (past its `>>`), or `None` when `stop` said so or it does not end.
fn walk_dict(
    bytes: &[u8],
    open: usize,
    mut stop: impl FnMut(usize, usize) -> bool,
) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"<<") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b">>") {
            depth = depth.checked_sub(1)?;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else if bytes[i] == b'(' {
            i = skip_string(bytes, i)?;
        } else if stop(i, depth) {
            return None;
        } else {
            i += 1;
        }
    }
    None
}

/// Past the literal string that opens at `i` (nested parentheses and escapes counted).
fn skip_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `key` (followed by a delimiter) is an entry of `dict` itself, not of a dictionary
/// nested in it.
fn key_at_top_level(dict: &[u8], key: &[u8]) -> bool {
    let mut found = false;
    walk_dict(dict, 0, |i, depth| {
        found = depth == 1
            && dict[i..].starts_with(key)
            && dict.get(i + key.len()).is_none_or(|b| is_delimiter(*b));
        found
    });
    found
}

/// One object, from its header to its `endobj` (added when missing), with a stream's
/// `/Length` set to the real length of its data when the declared one does not fit.
fn object_bytes(slice: &[u8]) -> Cow<'_, [u8]> {
    let Some(stream_kw) = find_stream_keyword(slice) else {
        let end = find(slice, b"endobj").map_or(slice.len(), |e| e + 6);
        return Cow::Borrowed(&slice[..end]);
    };
    let mut data_start = stream_kw + 6;
    if slice[data_start..].starts_with(b"\r\n") {
        data_start += 2;
    } else if slice
        .get(data_start)
        .is_some_and(|b| matches!(b, b'\n' | b'\r'))
    {
        data_start += 1;
    }
    let dict = &slice[..stream_kw];
    let declared = declared_length(dict);
    let fits = |len: usize| {
        slice.get(data_start + len..).is_some_and(|rest| {
            let rest = rest
                .strip_prefix(b"\r\n")
                .or_else(|| rest.strip_prefix(b"\n"))
                .or_else(|| rest.strip_prefix(b"\r"))
                .unwrap_or(rest);
            rest.starts_with(b"endstream")
        })
    };
    let end_kw = find(&slice[data_start..], b"endstream").map(|e| data_start + e);
    let object_end = end_kw
        .and_then(|e| find(&slice[e..], b"endobj").map(|o| e + o + 6))
        .unwrap_or(slice.len());
    match (declared, end_kw) {
        (Some(len), _) if fits(len) => Cow::Borrowed(&slice[..object_end]),
        (_, Some(end)) => {
            let mut data_end = end;
            if slice[..data_end].ends_with(b"\r\n") {
                data_end -= 2;
            } else if data_end > data_start && matches!(slice[data_end - 1], b'\n' | b'\r') {
                data_end -= 1;
            }
            let actual = data_end.saturating_sub(data_start);
            let mut fixed = set_length(dict, actual);
            fixed.extend_from_slice(b"stream\n");
            fixed.extend_from_slice(&slice[data_start..data_start + actual]);
            fixed.extend_from_slice(b"\nendstream\nendobj");
            Cow::Owned(fixed)
        }
        _ => Cow::Borrowed(&slice[..object_end]),
    }
}

/// The `stream` keyword that ends the object's dictionary (`>>`, whitespace, `stream`).
fn find_stream_keyword(slice: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = find(&slice[from..], b"stream") {
        let i = from + at;
        let before = slice[..i].iter().rposition(|b| !is_space(*b));
        if before.is_some_and(|b| b >= 1 && &slice[b - 1..=b] == b">>") {
            return Some(i);
        }
        from = i + 6;
    }
    None
}

/// A direct integer `/Length` in a stream dictionary.
fn declared_length(dict: &[u8]) -> Option<usize> {
    let at = rfind(dict, b"/Length")? + 7;
    let rest = &dict[at..];
    let digits: Vec<u8> = rest
        .iter()
        .skip_while(|b| is_space(**b))
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    // `N G R` is an indirect length: not trusted here.
    let after = rest
        .iter()
        .skip_while(|b| is_space(**b))
        .skip(digits.len())
        .find(|b| !is_space(**b));
    if after.is_some_and(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// `dict` with its `/Length` value replaced by `len` (or added).
fn set_length(dict: &[u8], len: usize) -> Vec<u8> {
    let Some(key) = rfind(dict, b"/Length") else {
        // Insert after the opening `<<`.
        let open = find(dict, b"<<").map_or(0, |o| o + 2);
        let mut out = dict[..open].to_vec();
        out.extend_from_slice(format!(" /Length {len} ").as_bytes());
        out.extend_from_slice(&dict[open..]);
        return out;
    };
    let value_start = key + 7;
    let mut i = value_start;
    // Skip `N` or `N G R`.
    let skip_token = |i: &mut usize| {
        while *i < dict.len() && is_space(dict[*i]) {
            *i += 1;
        }
        let start = *i;
        while *i < dict.len() && (dict[*i].is_ascii_alphanumeric() || dict[*i] == b'.') {
            *i += 1;
        }
        *i > start
    };
    skip_token(&mut i);
    let mut j = i;
    if skip_token(&mut j) && dict[i..j].iter().any(u8::is_ascii_digit) {
        let mut k = j;
        if skip_token(&mut k) && dict[j..k].trim_ascii() == b"R" {
            i = k;
        }
    }
    let mut out = dict[..value_start].to_vec();
    out.extend_from_slice(format!(" {len}").as_bytes());
    out.extend_from_slice(&dict[i..]);
    out
}

/// For `obj` at `i`: the `N G` before it, and where `N` starts.
fn object_header(body: &[u8], i: usize) -> Option<(u32, u16, usize)> {
    if body.get(i + 3).is_some_and(|b| !is_delimiter(*b)) {
        return None;
    }
    let mut j = i;
    let ws_end = j;
    while j > 0 && is_space(body[j - 1]) {
        j -= 1;
    }
    if j == ws_end {
        return None;
    }
    let gen_end = j;
    while j > 0 && body[j - 1].is_ascii_digit() && gen_end - j < 6 {
        j -= 1;
    }
    let generation: u16 = std::str::from_utf8(&body[j..gen_end]).ok()?.parse().ok()?;
    let ws_end = j;
    while j > 0 && is_space(body[j - 1]) {
        j -= 1;
    }
    if j == ws_end {
        return None;
    }
    let num_end = j;
    while j > 0 && body[j - 1].is_ascii_digit() && num_end - j < 11 {
        j -= 1;
    }
    let num: u32 = std::str::from_utf8(&body[j..num_end]).ok()?.parse().ok()?;
    if j > 0 && !is_delimiter(body[j - 1]) {
        return None;
    }
    Some((num, generation, j))
}

/// `N G R` after `key` in `dict`.
fn reference_after(dict: &[u8], key: &[u8]) -> Option<(u32, u16)> {
    let at = find(dict, key)? + key.len();
    let mut parts = dict[at..]
        .split(|b| is_space(*b))
        .filter(|p| !p.is_empty())
        .take(3);
    let num = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let generation = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let r = parts.next()?;
    r.starts_with(b"R").then_some((num, generation))
}

/// The object whose dictionary says `/Type /Catalog`.
fn find_catalog(body: &[u8], objects: &BTreeMap<u32, (u16, usize)>) -> Option<(u32, u16)> {
    objects
        .iter()
        .rev()
        .find_map(|(&num, &(generation, start))| {
            let rest = &body[start..body.len().min(start + 4096)];
            let text = &rest[..find(rest, b"endobj").unwrap_or(rest.len())];
            let compact: Vec<u8> = text.iter().copied().filter(|b| !is_space(*b)).collect();
            find(&compact, b"/Type/Catalog").map(|_| (num, generation))
        })
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\0')
}

fn is_delimiter(b: u8) -> bool {
    is_space(b)
        || matches!(
            b,
            b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
        )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AES_NO_KEY_LENGTH: &[u8] =
        include_bytes!("../../tests/fixtures/pypdf-resources/r4-aes-v2-no-key-length.pdf");
    const AES_USER_PASSWORD: &[u8] =
        include_bytes!("../../tests/fixtures/pypdf-resources/r4-aes-user-password.pdf");

    #[test]
    fn the_key_length_is_added_only_where_the_dictionary_lacks_its_own() {
        let patched = with_aes_key_length(AES_NO_KEY_LENGTH).expect("a key length to add");
        assert!(
            patched.starts_with(AES_NO_KEY_LENGTH),
            "no byte of the file moves"
        );
        let update = &patched[AES_NO_KEY_LENGTH.len()..];
        assert!(find(update, b"13 0 obj\n<< /Length 128 ").is_some());
        assert!(find(update, b"/Prev 14923").is_some());
        // `/Length 16` of the crypt filter is nested: not the dictionary's own.
        assert_eq!(with_aes_key_length(AES_USER_PASSWORD), None);
        assert!(key_at_top_level(b"<< /V 4 /Length 128 >>", b"/Length"));
        assert!(!key_at_top_level(
            b"<< /CF << /Length 16 >> /V 4 >>",
            b"/Length"
        ));
        assert!(!key_at_top_level(
            b"<< /Lengths 1 /T (/Length) >>",
            b"/Length"
        ));
    }

    #[test]
    fn headers_are_found_only_as_tokens() {
        let body = b"1 0 obj\n<<>>\nendobj\n12 3 obj<<>>endobj x1 0 obj 4 0 objstm";
        assert_eq!(object_header(body, 4), Some((1, 0, 0)));
        assert_eq!(object_header(body, 25), Some((12, 3, 20)));
        // `x1 0 obj`: the number is glued to a letter; `objstm` is no keyword.
        assert_eq!(object_header(body, 44), None);
        assert_eq!(object_header(body, 54), None);
    }

    #[test]
    fn a_pdf_without_a_usable_table_is_rebuilt() {
        let pdf = crate::fixtures::pdf(&["Hello mended world"]);
        // Break every offset: drop the table and the trailer's pointer.
        let cut = pdf.windows(4).rposition(|w| w == b"xref").unwrap();
        let mut broken = pdf[..cut].to_vec();
        broken.extend_from_slice(b"trailer\n<< /Size 2 >>\nstartxref\n999999\n%%EOF\n");
        assert!(lopdf::Document::load_mem(&broken).is_err());
        let Mended::Rebuilt(fixed) = rebuild(&broken) else {
            panic!("not rebuilt")
        };
        let doc = lopdf::Document::load_mem(&fixed).unwrap();
        assert_eq!(doc.get_pages().len(), 1);
    }

    #[test]
    fn wrong_stream_lengths_are_corrected() {
        let obj = b"4 0 obj\n<</Length 5>>\nstream\nBT (Hello) Tj ET\nendstream\nendobj\n5 0 obj";
        let fixed = object_bytes(&obj[..obj.len() - 8]);
        assert_eq!(
            fixed.as_ref(),
            b"4 0 obj\n<</Length 16>>\nstream\nBT (Hello) Tj ET\nendstream\nendobj".as_slice()
        );
        let right = b"4 0 obj <</Length 3/Filter/X>> stream\r\nabc\r\nendstream endobj";
        assert_eq!(object_bytes(right).as_ref(), right.as_slice());
        assert_eq!(
            set_length(b"<</Length 7 0 R/F 1>>", 3),
            b"<</Length 3/F 1>>"
        );
        assert_eq!(set_length(b"<</F 1>>", 3), b"<< /Length 3 /F 1>>");
    }

    #[test]
    fn encrypted_or_empty_files_are_not_rebuilt() {
        assert_eq!(rebuild(b"%PDF-1.4\nnothing here"), Mended::Hopeless);
        assert_eq!(
            rebuild(
                b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R/Encrypt 2 0 R>>"
            ),
            Mended::Encrypted
        );
    }
}
