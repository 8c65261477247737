//! Tables in extracted text: a table is a run of lines, one row per line (cells separated by
//! ` | `), whose first line is its header. Extractors that see tables (CSV, HTML, DOCX) mark
//! where each begins, where its header row ends and where it ends with three private-use
//! characters; [`take_marks`] removes them and returns the tables as
//! [`TableSpan`]s (character offsets), which the chunker uses to repeat a table's header at the
//! top of every chunk that starts inside its rows. Text from a file never carries the marks:
//! the extractors drop those characters from content ([`is_mark`]).

use documents::TableSpan;

/// Where a table starts.
pub(crate) const START: char = '\u{f8f0}';
/// Where its header row ends.
pub(crate) const HEADER_END: char = '\u{f8f1}';
/// Where it ends.
pub(crate) const END: char = '\u{f8f2}';

/// Most tables kept per file (the rest are text without a repeated header).
pub(crate) const MAX_TABLES: usize = 10_000;

/// Whether `c` is one of the marks (dropped from a file's own text).
pub(crate) fn is_mark(c: char) -> bool {
    matches!(c, START | HEADER_END | END)
}

/// The text without marks, and the tables they marked. Tables inside tables count as part of
/// the outer one; a table without a one-line, non-empty header row, or without rows after it,
/// is no table.
pub(crate) fn take_marks(marked: &str) -> (String, Vec<TableSpan>) {
    let mut text = String::with_capacity(marked.len());
    let mut tables = Vec::new();
    let mut chars: u64 = 0;
    let mut depth = 0usize;
    // Character and byte offsets of the open table's start and header end.
    let mut open: Option<(u64, usize)> = None;
    let mut header: Option<(u64, usize)> = None;
    for c in marked.chars() {
        match c {
            START => {
                depth += 1;
                if depth == 1 {
                    open = Some((chars, text.len()));
                    header = None;
                }
            }
            HEADER_END => {
                if depth == 1 && header.is_none() {
                    header = Some((chars, text.len()));
                }
            }
            END => {
                if depth == 1
                    && tables.len() < MAX_TABLES
                    && let (Some(start), Some(head)) = (open, header)
                    && let Some(span) = span(&text, start, head, (chars, text.len()))
                {
                    tables.push(span);
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    open = None;
                    header = None;
                }
            }
            c => {
                text.push(c);
                chars += 1;
            }
        }
    }
    (text, tables)
}

/// The table between the marks, trimmed of whitespace at its ends and around its header.
fn span(
    text: &str,
    start: (u64, usize),
    header_end: (u64, usize),
    end: (u64, usize),
) -> Option<TableSpan> {
    let lead = &text[start.1..header_end.1];
    let skipped = lead.len() - lead.trim_start().len();
    let header = lead.trim();
    if header.is_empty() || header.contains('\n') {
        return None;
    }
    let start_chars = start.0 + count(&lead[..skipped]);
    let header_end_chars = start_chars + count(header);
    let body = &text[header_end.1..end.1];
    if body.trim().is_empty() {
        return None;
    }
    let end_chars = end.0 - count(&body[body.trim_end().len()..]);
    Some(TableSpan {
        start: start_chars,
        header_end: header_end_chars,
        end: end_chars,
    })
}

fn count(s: &str) -> u64 {
    s.chars().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(text: &str, from: u64, to: u64) -> String {
        text.chars()
            .skip(usize::try_from(from).unwrap())
            .take(usize::try_from(to - from).unwrap())
            .collect()
    }

    #[test]
    fn marks_become_spans() {
        let marked =
            format!("intro{START}\n\nName | Age {HEADER_END}\nAda | 36\nAlan | 41{END}\n\nafter");
        let (text, tables) = take_marks(&marked);
        assert_eq!(text, "intro\n\nName | Age \nAda | 36\nAlan | 41\n\nafter");
        assert_eq!(tables.len(), 1);
        let t = tables[0];
        assert_eq!(slice(&text, t.start, t.header_end), "Name | Age");
        assert_eq!(slice(&text, t.header_end, t.end), " \nAda | 36\nAlan | 41");
    }

    #[test]
    fn broken_or_nested_marks_are_harmless() {
        // A header over two lines, a table without rows, marks out of order.
        for marked in [
            format!("{START}a\nb{HEADER_END}\nc{END}"),
            format!("{START}a{HEADER_END}  {END}"),
            format!("{END}{HEADER_END}x{START}"),
        ] {
            let (text, tables) = take_marks(&marked);
            assert!(tables.is_empty(), "{marked:?}");
            assert!(!text.chars().any(is_mark));
        }
        let nested = format!("{START}h{HEADER_END}\nr {START}x{HEADER_END}\ny{END} z{END}");
        let (text, tables) = take_marks(&nested);
        assert_eq!(text, "h\nr x\ny z");
        assert_eq!(tables.len(), 1);
        assert_eq!(slice(&text, tables[0].start, tables[0].header_end), "h");
        assert_eq!(tables[0].end, 9);
    }
}
