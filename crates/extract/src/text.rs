//! Plain text, Markdown and CSV: decoding (UTF-8, UTF-16 with a BOM, lossy) and CSV rows as
//! readable lines.

use documents::{ExtractError, ExtractLimits};

/// Decodes text: UTF-16 LE/BE when it starts with a byte-order mark, otherwise UTF-8 (a UTF-8
/// BOM is dropped); invalid sequences become U+FFFD, never an error.
///
/// # Errors
/// [`ExtractError::TooLarge`] when the bytes cannot fit in `limits.max_chars` characters.
pub(crate) fn decode(bytes: &[u8], limits: &ExtractLimits) -> Result<String, ExtractError> {
    // A character takes at most four bytes in UTF-8 and in UTF-16: a file this large cannot
    // fit, whatever it holds.
    if u64::try_from(bytes.len() / 4).unwrap_or(u64::MAX) > limits.max_chars {
        return Err(crate::too_many_chars(limits));
    }
    let text = match bytes {
        [0xff, 0xfe, ..] => encoding_rs::UTF_16LE.decode_with_bom_removal(bytes).0,
        [0xfe, 0xff, ..] => encoding_rs::UTF_16BE.decode_with_bom_removal(bytes).0,
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest),
        _ => String::from_utf8_lossy(bytes),
    };
    Ok(text.into_owned())
}

/// Decodes HTML: like [`decode`], except that a document that is not valid UTF-8 and names
/// its charset (`<meta charset=...>`) near the start is decoded in that charset.
pub(crate) fn decode_html(bytes: &[u8], limits: &ExtractLimits) -> Result<String, ExtractError> {
    let has_bom = bytes.starts_with(&[0xef, 0xbb, 0xbf])
        || bytes.starts_with(&[0xff, 0xfe])
        || bytes.starts_with(&[0xfe, 0xff]);
    if has_bom || std::str::from_utf8(bytes).is_ok() {
        return decode(bytes, limits);
    }
    let Some(encoding) = declared_charset(&bytes[..bytes.len().min(2048)]) else {
        return decode(bytes, limits);
    };
    if u64::try_from(bytes.len() / 4).unwrap_or(u64::MAX) > limits.max_chars {
        return Err(crate::too_many_chars(limits));
    }
    Ok(encoding.decode_without_bom_handling(bytes).0.into_owned())
}

fn declared_charset(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let at = lower.windows(8).position(|w| w == b"charset=")? + 8;
    let label: Vec<u8> = lower[at..]
        .iter()
        .skip_while(|b| matches!(b, b'"' | b'\'' | b' '))
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        .copied()
        .collect();
    encoding_rs::Encoding::for_label(&label).map(encoding_rs::Encoding::output_encoding)
}

/// CSV as a table: the header row on the first line, then one line per data row, cells
/// separated by ` | ` (whitespace inside a cell collapsed, so a row is one line), wrapped in
/// the table marks of [`crate::tables`] so that the chunker repeats the header in every
/// chunk. Rows without any value are left out. The delimiter is `,`, or `;` or a tab when the
/// first line has more of those.
pub(crate) fn csv_to_text(text: &str) -> String {
    use crate::tables::{END, HEADER_END, START};
    let delimiter = sniff_delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut has_header = false;
    let mut record = csv::StringRecord::new();
    let mut cells: Vec<String> = Vec::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // The input is valid UTF-8 (decoded lossily), so this is an I/O-free parse
            // problem the flexible reader cannot recover from: keep what was read.
            Err(_) => break,
        }
        cells.clear();
        cells.extend(record.iter().map(cell));
        if cells.iter().all(String::is_empty) {
            continue;
        }
        while cells.last().is_some_and(String::is_empty) {
            cells.pop();
        }
        if has_header {
            out.push('\n');
        } else {
            out.push(START);
        }
        out.push_str(&cells.join(" | "));
        if !has_header {
            out.push(HEADER_END);
            has_header = true;
        }
    }
    if has_header {
        out.push(END);
    }
    out
}

/// A cell on one line: cleaned, whitespace collapsed, no table marks.
fn cell(value: &str) -> String {
    crate::clean(value)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !crate::tables::is_mark(*c))
        .collect()
}

fn sniff_delimiter(text: &str) -> u8 {
    let first_line = text.lines().next().unwrap_or_default();
    let count = |d: char| first_line.chars().filter(|c| *c == d).count();
    let (commas, semicolons, tabs) = (count(','), count(';'), count('\t'));
    if tabs > commas && tabs >= semicolons {
        b'\t'
    } else if semicolons > commas {
        b';'
    } else {
        b','
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bom_is_dropped_and_invalid_bytes_replaced() {
        let limits = ExtractLimits::default();
        assert_eq!(decode(b"\xef\xbb\xbfhi", &limits).unwrap(), "hi");
        assert_eq!(decode(b"caf\xe9", &limits).unwrap(), "caf\u{fffd}");
    }

    #[test]
    fn utf16_both_orders() {
        let limits = ExtractLimits::default();
        let mut le = vec![0xff, 0xfe];
        le.extend("zoë 日本".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode(&le, &limits).unwrap(), "zoë 日本");
        let mut be = vec![0xfe, 0xff];
        be.extend("zoë".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&be, &limits).unwrap(), "zoë");
    }

    #[test]
    fn html_declared_charset_is_honoured() {
        let limits = ExtractLimits::default();
        let latin1 = b"<meta charset=\"iso-8859-1\"><p>caf\xe9</p>";
        assert!(decode_html(latin1, &limits).unwrap().contains("caf\u{e9}"));
        // Valid UTF-8 wins over a wrong declaration.
        let utf8 = "<meta charset=windows-1252><p>café</p>".as_bytes();
        assert!(decode_html(utf8, &limits).unwrap().contains("café"));
    }

    #[test]
    fn oversized_input_fails_before_decoding() {
        let limits = ExtractLimits {
            max_chars: 10,
            ..ExtractLimits::default()
        };
        assert!(matches!(
            decode(&[b'a'; 100], &limits),
            Err(ExtractError::TooLarge(_))
        ));
    }

    fn plain(text: &str) -> String {
        crate::tables::take_marks(text).0
    }

    #[test]
    fn csv_is_a_table_with_its_header() {
        let text = "name,age,city\nAda,36,London\nAlan,,\"Wilmslow,\n UK\"\n,,\n";
        let marked = csv_to_text(text);
        let (plain, tables) = crate::tables::take_marks(&marked);
        assert_eq!(
            plain,
            "name | age | city\nAda | 36 | London\nAlan |  | Wilmslow, UK"
        );
        assert_eq!(tables.len(), 1);
        assert_eq!((tables[0].start, tables[0].header_end), (0, 17));
        assert_eq!(tables[0].end, plain.chars().count() as u64);
    }

    #[test]
    fn csv_tolerates_ragged_rows_and_other_delimiters() {
        assert_eq!(
            plain(&csv_to_text("a,b\n1\n1,2,3\n")),
            "a | b\n1\n1 | 2 | 3"
        );
        assert_eq!(plain(&csv_to_text("a;b\n1;2\n")), "a | b\n1 | 2");
        assert_eq!(plain(&csv_to_text("a\tb\n1\t2\n")), "a | b\n1 | 2");
        assert_eq!(plain(&csv_to_text("only,header\n")), "only | header");
        assert_eq!(plain(&csv_to_text("")), "");
        assert_eq!(plain(&csv_to_text("a,b\n\u{f8f1}x,y\n")), "a | b\nx | y");
    }
}
