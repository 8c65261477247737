//! Word (DOCX): the archive is checked before anything is inflated (entry count, declared
//! sizes, compression ratios), every entry is then inflated once through a byte budget and its
//! XML checked (no DTD, bounded nesting), and only then does docx-rs parse it. The text keeps
//! paragraphs, headings, list items, tables (a row per line, cells separated by ` | `) and the
//! text of hyperlinks.

use std::io::{Cursor, Read};

use documents::{ExtractError, ExtractLimits};
use docx_rs::{
    DocumentChild, Paragraph, ParagraphChild, RunChild, StructuredDataTagChild, Table,
    TableCellContent,
};
use quick_xml::events::Event;

/// Above this size, an entry may not expand more than [`MAX_RATIO`] times.
const RATIO_CHECK_ABOVE: u64 = 1024 * 1024;
/// Highest accepted compression ratio of a large entry. Word's XML compresses 5–30 times;
/// deflate tops out near 1,032.
const MAX_RATIO: u64 = 200;
/// Deepest accepted XML nesting.
const MAX_XML_DEPTH: usize = 256;

/// The title (core properties) and the text of a DOCX file.
pub(crate) fn docx_to_text(
    bytes: &[u8],
    limits: &ExtractLimits,
) -> Result<(Option<String>, String), ExtractError> {
    let title = inspect_archive(bytes, limits)?;
    let docx = docx_rs::read_docx(bytes)
        .map_err(|_| ExtractError::Corrupt("not a readable Word document".into()))?;
    let mut out = Out::default();
    for child in &docx.document.children {
        document_child(&mut out, child);
    }
    Ok((title, out.buf))
}

/// Checks the archive against the limits and its XML parts against entity tricks, and
/// returns the title from the core properties.
fn inspect_archive(bytes: &[u8], limits: &ExtractLimits) -> Result<Option<String>, ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| ExtractError::Corrupt("not a valid zip archive".into()))?;
    let entries = archive.len();
    if u64::try_from(entries).unwrap_or(u64::MAX) > u64::from(limits.max_archive_entries) {
        return Err(ExtractError::TooLarge(format!(
            "the archive has {entries} entries; at most {} are accepted",
            limits.max_archive_entries
        )));
    }

    // Declared sizes first: nothing is inflated yet.
    let mut declared: u64 = 0;
    for i in 0..entries {
        let entry = archive
            .by_index_raw(i)
            .map_err(|_| ExtractError::Corrupt("a damaged zip entry".into()))?;
        let size = entry.size();
        declared = declared.saturating_add(size);
        if size > RATIO_CHECK_ABOVE && size / entry.compressed_size().max(1) > MAX_RATIO {
            return Err(ExtractError::TooLarge(format!(
                "an entry expands more than {MAX_RATIO} times"
            )));
        }
    }
    if declared > limits.max_inflated_bytes {
        return Err(inflated_too_large(limits));
    }

    // Then the real sizes (declared sizes can lie), through one budget for all entries.
    let mut budget = limits.max_inflated_bytes;
    let mut title = None;
    let mut buf = Vec::new();
    for i in 0..entries {
        let mut entry = archive
            .by_index(i)
            .map_err(|_| ExtractError::Corrupt("a damaged or encrypted zip entry".into()))?;
        let name = entry.name().to_owned();
        let is_xml = name.ends_with(".xml") || name.ends_with(".rels");
        buf.clear();
        let read = if is_xml {
            entry
                .by_ref()
                .take(budget.saturating_add(1))
                .read_to_end(&mut buf)
        } else {
            std::io::copy(
                &mut entry.by_ref().take(budget.saturating_add(1)),
                &mut std::io::sink(),
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        }
        .map_err(|_| ExtractError::Corrupt("a damaged zip entry".into()))?;
        let read = u64::try_from(read).unwrap_or(u64::MAX);
        if read > budget {
            return Err(inflated_too_large(limits));
        }
        budget -= read;
        if is_xml {
            check_xml(&buf)?;
            if name == "docProps/core.xml" {
                title = core_title(&buf);
            }
        }
    }
    Ok(title)
}

fn inflated_too_large(limits: &ExtractLimits) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the archive inflates to more than {} MiB",
        limits.max_inflated_bytes / (1024 * 1024)
    ))
}

/// Refuses XML with a document type declaration (entity definitions: "billion laughs") and
/// XML nested deeper than [`MAX_XML_DEPTH`]. Word never writes either.
fn check_xml(xml: &[u8]) -> Result<(), ExtractError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Ok(Event::DocType(_)) => {
                return Err(ExtractError::Corrupt(
                    "XML with a document type declaration (DTD) is not accepted".into(),
                ));
            }
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > MAX_XML_DEPTH {
                    return Err(ExtractError::Corrupt("XML nested too deeply".into()));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return Ok(()),
            // Malformed XML is left to the parser that needs the part (or ignores it).
            Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// `<dc:title>` of `docProps/core.xml`.
fn core_title(xml: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut in_title = false;
    let mut title = String::new();
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"title" => in_title = true,
            Event::End(e) if e.local_name().as_ref() == b"title" => break,
            Event::Text(t) if in_title => {
                title.push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0).ok()?);
            }
            Event::GeneralRef(r) if in_title => {
                let resolved = match r.resolve_char_ref().ok()? {
                    Some(c) => c.to_string(),
                    None => match &*r {
                        b"amp" => "&".to_owned(),
                        b"lt" => "<".to_owned(),
                        b"gt" => ">".to_owned(),
                        b"quot" => "\"".to_owned(),
                        b"apos" => "'".to_owned(),
                        _ => String::new(),
                    },
                };
                title.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

/// Text with merged breaks: a paragraph break wins over a line break.
#[derive(Debug, Default)]
struct Out {
    buf: String,
    pending: usize,
    /// Whether `buf` holds text (not only table marks).
    has_text: bool,
}

impl Out {
    fn push(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if s.chars().any(crate::tables::is_mark) {
            let s: String = s.chars().filter(|c| !crate::tables::is_mark(*c)).collect();
            self.push(&s);
            return;
        }
        if self.has_text {
            for _ in 0..self.pending {
                self.buf.push('\n');
            }
        }
        self.pending = 0;
        self.buf.push_str(s);
        self.has_text = true;
    }

    /// A table mark, where the text stands (pending breaks come after it).
    fn mark(&mut self, c: char) {
        self.buf.push(c);
    }

    fn brk(&mut self, newlines: usize) {
        self.pending = self.pending.max(newlines);
    }
}

fn document_child(out: &mut Out, child: &DocumentChild) {
    match child {
        DocumentChild::Paragraph(p) => paragraph(out, p),
        DocumentChild::Table(t) => table(out, t),
        DocumentChild::StructuredDataTag(sdt) => {
            for c in &sdt.children {
                sdt_child(out, c);
            }
        }
        _ => {}
    }
}

fn sdt_child(out: &mut Out, child: &StructuredDataTagChild) {
    match child {
        StructuredDataTagChild::Paragraph(p) => paragraph(out, p),
        StructuredDataTagChild::Table(t) => table(out, t),
        StructuredDataTagChild::Run(r) => {
            let mut s = String::new();
            run_children(&mut s, &r.children);
            out.push(&s);
        }
        StructuredDataTagChild::StructuredDataTag(sdt) => {
            for c in &sdt.children {
                sdt_child(out, c);
            }
        }
        _ => {}
    }
}

/// A paragraph on its own line; a blank line after it unless it is a list item.
fn paragraph(out: &mut Out, p: &Paragraph) {
    let mut s = String::new();
    paragraph_text(&mut s, &p.children);
    let list_item = p.property.numbering_property.is_some();
    out.brk(if list_item { 1 } else { 2 });
    out.push(s.trim_end());
    out.brk(if list_item { 1 } else { 2 });
}

fn paragraph_text(s: &mut String, children: &[ParagraphChild]) {
    for child in children {
        match child {
            ParagraphChild::Run(r) => run_children(s, &r.children),
            ParagraphChild::Insert(ins) => {
                for c in &ins.children {
                    if let docx_rs::InsertChild::Run(r) = c {
                        run_children(s, &r.children);
                    }
                }
            }
            ParagraphChild::MoveTo(mv) => {
                for c in &mv.children {
                    if let docx_rs::MoveToChild::Run(r) = c {
                        run_children(s, &r.children);
                    }
                }
            }
            ParagraphChild::Hyperlink(link) => paragraph_text(s, &link.children),
            ParagraphChild::StructuredDataTag(sdt) => {
                for c in &sdt.children {
                    match c {
                        StructuredDataTagChild::Run(r) => run_children(s, &r.children),
                        StructuredDataTagChild::Paragraph(p) => {
                            paragraph_text(s, &p.children);
                            s.push(' ');
                        }
                        _ => {}
                    }
                }
            }
            // Deleted and moved-away text is not part of the document.
            _ => {}
        }
    }
}

fn run_children(s: &mut String, children: &[RunChild]) {
    for child in children {
        match child {
            RunChild::Text(t) => s.push_str(&t.text),
            RunChild::Tab(_) | RunChild::PTab(_) => s.push('\t'),
            RunChild::Break(_) | RunChild::CarriageReturn(_) => s.push('\n'),
            _ => {}
        }
    }
}

/// A row per line, cells separated by ` | `; the text of a cell on one line.
fn table(out: &mut Out, t: &Table) {
    out.brk(2);
    out.mark(crate::tables::START);
    let mut header_done = false;
    for docx_rs::TableChild::TableRow(row) in &t.rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|docx_rs::TableRowChild::TableCell(cell)| {
                let mut s = String::new();
                cell_text(&mut s, &cell.children);
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            out.brk(1);
            out.push(&cells.join(" | "));
            if !header_done {
                out.mark(crate::tables::HEADER_END);
                header_done = true;
            }
            out.brk(1);
        }
    }
    out.mark(crate::tables::END);
    out.brk(2);
}

fn cell_text(s: &mut String, children: &[TableCellContent]) {
    for content in children {
        match content {
            TableCellContent::Paragraph(p) => {
                paragraph_text(s, &p.children);
                s.push(' ');
            }
            TableCellContent::Table(t) => {
                for docx_rs::TableChild::TableRow(row) in &t.rows {
                    for docx_rs::TableRowChild::TableCell(cell) in &row.cells {
                        cell_text(s, &cell.children);
                    }
                }
            }
            TableCellContent::StructuredDataTag(sdt) => {
                for c in &sdt.children {
                    match c {
                        StructuredDataTagChild::Run(r) => run_children(s, &r.children),
                        StructuredDataTagChild::Paragraph(p) => {
                            paragraph_text(s, &p.children);
                            s.push(' ');
                        }
                        _ => {}
                    }
                }
            }
            TableCellContent::TableOfContents(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_headings_tables_and_hyperlinks() {
        use docx_rs::{Docx, Hyperlink, HyperlinkType, Run, TableCell, TableRow};
        let mut bytes = Cursor::new(Vec::new());
        Docx::new()
            .add_paragraph(
                Paragraph::new()
                    .add_run(Run::new().add_text("Title & Heading"))
                    .style("Heading1"),
            )
            .add_paragraph(
                Paragraph::new()
                    .add_run(Run::new().add_text("See "))
                    .add_hyperlink(
                        Hyperlink::new("https://example.com", HyperlinkType::External)
                            .add_run(Run::new().add_text("the site")),
                    )
                    .add_run(Run::new().add_text(" now.")),
            )
            .add_table(Table::new(vec![
                TableRow::new(vec![
                    TableCell::new()
                        .add_paragraph(Paragraph::new().add_run(Run::new().add_text("Name"))),
                    TableCell::new()
                        .add_paragraph(Paragraph::new().add_run(Run::new().add_text("Age"))),
                ]),
                TableRow::new(vec![
                    TableCell::new()
                        .add_paragraph(Paragraph::new().add_run(Run::new().add_text("Ada"))),
                    TableCell::new()
                        .add_paragraph(Paragraph::new().add_run(Run::new().add_text("36"))),
                ]),
            ]))
            .add_paragraph(
                Paragraph::new().add_run(Run::new().add_text("After").add_tab().add_text("tab")),
            )
            .pack(&mut bytes)
            .unwrap();
        let (_, text) = docx_to_text(bytes.get_ref(), &ExtractLimits::default()).unwrap();
        let (text, tables) = crate::tables::take_marks(&text);
        assert_eq!(
            text,
            "Title & Heading\n\nSee the site now.\n\nName | Age\nAda | 36\n\nAfter\ttab"
        );
        assert_eq!(tables.len(), 1);
        let header: String = text
            .chars()
            .skip(usize::try_from(tables[0].start).unwrap())
            .take(usize::try_from(tables[0].header_end - tables[0].start).unwrap())
            .collect();
        assert_eq!(header, "Name | Age");
        assert_eq!(tables[0].end, 55);
    }

    #[test]
    fn dtd_and_deep_nesting_are_refused() {
        assert!(check_xml(b"<?xml version=\"1.0\"?><a><b/></a>").is_ok());
        assert!(matches!(
            check_xml(b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"),
            Err(ExtractError::Corrupt(_))
        ));
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH + 1),
            "</a>".repeat(MAX_XML_DEPTH + 1)
        );
        assert!(matches!(
            check_xml(deep.as_bytes()),
            Err(ExtractError::Corrupt(_))
        ));
    }

    #[test]
    fn core_title_is_read() {
        let xml = br#"<?xml version="1.0"?><cp:coreProperties xmlns:cp="x" xmlns:dc="y">
            <dc:title>Annual  Report &amp; Plan</dc:title><dc:creator>me</dc:creator></cp:coreProperties>"#;
        assert_eq!(core_title(xml).as_deref(), Some("Annual Report & Plan"));
        assert_eq!(core_title(b"<cp:coreProperties/>"), None);
    }
}
