//! Stream filters lopdf (and so pdf-extract) does not decode: `ASCIIHexDecode` and
//! `RunLengthDecode` at the front of a filter chain are decoded in place, and the abbreviated
//! names of inline-image style (`Fl`, `A85`, `LZW`, …) are spelled out.

use lopdf::{Document, Object};

/// Most bytes one run-length stream may expand to.
const MAX_RUN_LENGTH_OUTPUT: usize = 256 * 1024 * 1024;

/// Rewrites the streams of `doc` so that the decoders downstream understand their filters.
pub(super) fn normalize(doc: &mut Document) {
    for object in doc.objects.values_mut() {
        let Object::Stream(stream) = object else {
            continue;
        };
        let Ok(filter) = stream.dict.get(b"Filter") else {
            continue;
        };
        let mut names: Vec<Vec<u8>> = match filter {
            Object::Name(n) => vec![n.clone()],
            Object::Array(items) => items
                .iter()
                .filter_map(|o| o.as_name().ok().map(<[u8]>::to_vec))
                .collect(),
            _ => continue,
        };
        let mut changed = false;
        for name in &mut names {
            let full: &[u8] = match name.as_slice() {
                b"AHx" => b"ASCIIHexDecode",
                b"A85" => b"ASCII85Decode",
                b"LZW" => b"LZWDecode",
                b"Fl" => b"FlateDecode",
                b"RL" => b"RunLengthDecode",
                _ => continue,
            };
            *name = full.to_vec();
            changed = true;
        }
        let mut removed = 0;
        while let Some(first) = names.first() {
            let decoded = match first.as_slice() {
                b"ASCIIHexDecode" => ascii_hex(&stream.content),
                b"RunLengthDecode" => run_length(&stream.content),
                _ => break,
            };
            let Some(decoded) = decoded else {
                break;
            };
            stream.content = decoded;
            names.remove(0);
            removed += 1;
            changed = true;
        }
        if !changed {
            continue;
        }
        if names.is_empty() {
            stream.dict.remove(b"Filter");
            stream.dict.remove(b"DecodeParms");
        } else {
            let filters = names.into_iter().map(Object::Name).collect();
            stream.dict.set("Filter", Object::Array(filters));
            if removed > 0
                && let Ok(Object::Array(params)) = stream.dict.get_mut(b"DecodeParms")
            {
                params.drain(..removed.min(params.len()));
            }
        }
        let len = i64::try_from(stream.content.len()).unwrap_or(i64::MAX);
        stream.dict.set("Length", len);
    }
}

fn ascii_hex(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2);
    let mut high: Option<u8> = None;
    for &b in input {
        let nibble = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            b'>' => break,
            b if b.is_ascii_whitespace() || b == 0 => continue,
            _ => return None,
        };
        match high.take() {
            Some(h) => out.push(h << 4 | nibble),
            None => high = Some(nibble),
        }
    }
    if let Some(h) = high {
        out.push(h << 4);
    }
    Some(out)
}

fn run_length(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&len) = input.get(i) {
        i += 1;
        match len {
            128 => break,
            0..=127 => {
                let n = usize::from(len) + 1;
                out.extend_from_slice(input.get(i..i + n)?);
                i += n;
            }
            _ => {
                let byte = *input.get(i)?;
                i += 1;
                out.resize(out.len() + 257 - usize::from(len), byte);
            }
        }
        if out.len() > MAX_RUN_LENGTH_OUTPUT {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_run_length_decode() {
        assert_eq!(ascii_hex(b"48 65 6c6C6f 7>").unwrap(), b"Hellop");
        assert_eq!(ascii_hex(b"zz"), None);
        assert_eq!(
            run_length(&[2, b'a', b'b', b'c', 254, b'x', 128]).unwrap(),
            b"abcxxx"
        );
        assert_eq!(run_length(&[5, b'a']), None);
    }

    #[test]
    fn streams_are_rewritten_in_place() {
        let mut doc = Document::with_version("1.4");
        let id = doc.add_object(lopdf::Stream::new(
            lopdf::dictionary! { "Filter" => vec![Object::Name(b"AHx".to_vec()), Object::Name(b"Fl".to_vec())] },
            b"4142>".to_vec(),
        ));
        normalize(&mut doc);
        let stream = doc.get_object(id).unwrap().as_stream().unwrap();
        assert_eq!(stream.content, b"AB");
        assert_eq!(
            stream.dict.get(b"Filter").unwrap(),
            &Object::Array(vec![Object::Name(b"FlateDecode".to_vec())])
        );
    }
}
