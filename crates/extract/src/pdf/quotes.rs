//! pdf-extract ignores the text-showing operators `'` (next line, show) and `"` (set word and
//! character spacing, next line, show): text a producer writes with them was lost. Pages whose
//! content uses them are rewritten with the equivalent `T*`, `Tw`, `Tc` and `Tj` beforehand.
//! (What lopdf cannot inflate it hands over raw, here as to pdf-extract.)

use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, ObjectId, Stream, dictionary};

/// Most bytes of decompressed page content kept in place of the compressed streams.
const MAX_KEPT_BYTES: usize = 64 * 1024 * 1024;

/// Rewrites every page whose content shows text with `'` or `"` (nothing when the document
/// has more than `max_pages` pages: it is refused later). Reading a page's content here
/// decompresses it; a page drawn by one compressed stream keeps it decompressed (up to
/// [`MAX_KEPT_BYTES`] in all), so that pdf-extract does not inflate it a second time.
pub(super) fn spell_out(doc: &mut Document, max_pages: u32) {
    let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
    if pages.len() > usize::try_from(max_pages).unwrap_or(usize::MAX) {
        return;
    }
    let mut kept = 0usize;
    for page_id in pages {
        let Ok(content) = doc.get_page_content(page_id) else {
            continue;
        };
        if !has_quote_operator(&content) {
            if let [only] = doc.get_page_contents(page_id).as_slice()
                && kept + content.len() <= MAX_KEPT_BYTES
                && let Ok(Object::Stream(stream)) = doc.get_object_mut(*only)
                && stream.dict.has(b"Filter")
            {
                kept += content.len();
                stream.set_plain_content(content);
            }
            continue;
        }
        let Ok(decoded) = Content::decode(&content) else {
            continue;
        };
        let Ok(bytes) = rewrite(decoded).encode() else {
            continue;
        };
        let stream = doc.add_object(Stream::new(dictionary! {}, bytes));
        if let Ok(Object::Dictionary(page)) = doc.get_object_mut(page_id) {
            page.set("Contents", Object::Reference(stream));
        }
    }
}

fn rewrite(content: Content) -> Content {
    let mut operations = Vec::with_capacity(content.operations.len() + 8);
    for op in content.operations {
        match op.operator.as_str() {
            "'" => {
                operations.push(Operation::new("T*", Vec::new()));
                operations.push(Operation::new("Tj", op.operands));
            }
            "\"" => {
                let mut operands = op.operands.into_iter();
                let (Some(word), Some(character), Some(text)) =
                    (operands.next(), operands.next(), operands.next())
                else {
                    continue;
                };
                operations.push(Operation::new("Tw", vec![word]));
                operations.push(Operation::new("Tc", vec![character]));
                operations.push(Operation::new("T*", Vec::new()));
                operations.push(Operation::new("Tj", vec![text]));
            }
            _ => operations.push(op),
        }
    }
    Content { operations }
}

/// Whether a `'` or `"` stands outside strings and comments (so, as an operator).
fn has_quote_operator(content: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = content.get(i) {
        match b {
            b'\'' | b'"' => return true,
            b'(' => {
                // A literal string: balanced parentheses, backslash escapes.
                let mut depth = 0usize;
                while let Some(&c) = content.get(i) {
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'<' if content.get(i + 1) != Some(&b'<') => {
                while content.get(i).is_some_and(|&c| c != b'>') {
                    i += 1;
                }
            }
            b'%' => {
                while content.get(i).is_some_and(|&c| c != b'\n' && c != b'\r') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_inside_strings_and_comments_are_not_operators() {
        assert!(!has_quote_operator(
            b"BT (it's \\) \"so\" (nested ' )) Tj ET"
        ));
        assert!(!has_quote_operator(
            b"<27> Tj % it's a comment\n<< /A 1 >> BDC"
        ));
        assert!(has_quote_operator(b"BT (one) Tj (two) ' ET"));
        assert!(has_quote_operator(b"BT 1 2 (three) \" ET"));
        assert!(!has_quote_operator(b"BT (unterminated ' "));
    }
}
