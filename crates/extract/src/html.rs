//! HTML: the `<title>` and the readable text of `<main>` (or else `<body>`), without scripts,
//! styles and other non-content elements; block elements become line breaks.

use documents::ExtractError;
use ego_tree::iter::Edge;
use scraper::{Html, Node};

use crate::tables;

/// Elements whose content is never text a reader sees.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "head", "iframe", "object", "embed",
    "canvas", "audio", "video", "map",
];

/// Elements that start a paragraph (a blank line before and after).
const PARAGRAPH: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "dl",
    "table",
    "blockquote",
    "pre",
    "figure",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "form",
    "fieldset",
    "details",
    "address",
    "hr",
];

/// Elements that start a line.
const LINE: &[&str] = &[
    "div",
    "li",
    "dt",
    "dd",
    "tr",
    "br",
    "caption",
    "figcaption",
    "summary",
    "legend",
    "center",
    "option",
];

/// Block elements the HTML parser checks scopes for: nesting thousands of them makes parsing
/// quadratic (16,000 nested `div`s take 0.4 s, 100,000 take 15 s).
const SCOPED_BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "listing",
    "main",
    "menu",
    "nav",
    "ol",
    "pre",
    "search",
    "section",
    "summary",
    "ul",
];
/// Elements whose content is raw text (no tags inside).
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "noscript",
    "plaintext",
];
/// Deepest nesting of [`SCOPED_BLOCKS`] accepted (real pages stay well under 100).
const MAX_BLOCK_DEPTH: usize = 2048;

/// The title and text of an HTML document.
pub(crate) fn html_to_text(source: &str) -> Result<(Option<String>, String), ExtractError> {
    if block_depth(source) > MAX_BLOCK_DEPTH {
        return Err(ExtractError::Corrupt(
            "the HTML is nested too deeply".into(),
        ));
    }
    let document = Html::parse_document(source);
    let title = document
        .tree
        .root()
        .descendants()
        .find(|n| matches!(n.value(), Node::Element(e) if e.name() == "title"))
        .map(|title| {
            let mut out = Writer::default();
            for node in title.descendants() {
                if let Node::Text(t) = node.value() {
                    out.text(t);
                }
            }
            out.finish()
        })
        .filter(|t| !t.is_empty());

    let find = |name: &str| {
        document
            .tree
            .root()
            .descendants()
            .find(|n| matches!(n.value(), Node::Element(e) if e.name() == name))
    };
    let mut text = String::new();
    if let Some(main) = find("main") {
        text = render(main);
    }
    if text.is_empty() {
        text = match find("body") {
            Some(body) => render(body),
            None => render(document.tree.root()),
        };
    }
    Ok((title, text))
}

/// An estimate of the deepest nesting of [`SCOPED_BLOCKS`], from the tags alone (linear).
fn block_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let lower = |b: &u8| b.to_ascii_lowercase();
    let name_at = |mut i: usize| -> (String, usize) {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        (
            bytes[start..i]
                .iter()
                .map(|b| char::from(lower(b)))
                .collect(),
            i,
        )
    };
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'<') {
        i += at + 1;
        match bytes.get(i) {
            Some(b'!') => {
                let end = if bytes[i..].starts_with(b"!--") {
                    "-->"
                } else {
                    ">"
                };
                i = find_from(bytes, i, end.as_bytes()).map_or(bytes.len(), |e| e + end.len());
            }
            Some(b'/') => {
                let (name, next) = name_at(i + 1);
                if SCOPED_BLOCKS.contains(&name.as_str()) {
                    depth = depth.saturating_sub(1);
                }
                i = next;
            }
            Some(b) if b.is_ascii_alphabetic() => {
                let (name, next) = name_at(i);
                i = next;
                if RAW_TEXT.contains(&name.as_str()) {
                    let close = format!("</{name}");
                    i = find_from(bytes, i, close.as_bytes()).unwrap_or(bytes.len());
                } else if SCOPED_BLOCKS.contains(&name.as_str()) {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
            _ => {}
        }
    }
    deepest
}

/// The first `needle` (lower case) in `haystack` from `from` on, ignoring ASCII case.
fn find_from(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| p + from)
}

/// The text under `root`, walked without recursion (deeply nested markup is fine).
fn render(root: ego_tree::NodeRef<'_, Node>) -> String {
    let mut out = Writer::default();
    let mut skip_depth = 0usize;
    let mut cells_in_row: Vec<usize> = Vec::new();
    // Per open table: whether its header row (the first) has ended.
    let mut open_tables: Vec<bool> = Vec::new();
    for edge in root.traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    let name = el.name();
                    if skip_depth > 0 || SKIPPED.contains(&name) || el.attr("hidden").is_some() {
                        skip_depth += 1;
                        continue;
                    }
                    match name {
                        "pre" | "textarea" => out.pre_depth += 1,
                        "tr" => cells_in_row.push(0),
                        "td" | "th" => {
                            if let Some(cells) = cells_in_row.last_mut() {
                                if *cells > 0 {
                                    out.cell_separator();
                                }
                                *cells += 1;
                            }
                        }
                        "img" => {
                            if let Some(alt) = el.attr("alt").filter(|a| !a.trim().is_empty()) {
                                out.text(" ");
                                out.text(alt);
                                out.text(" ");
                            }
                        }
                        _ => {}
                    }
                    block(&mut out, name);
                    if name == "table" {
                        out.mark(tables::START);
                        open_tables.push(false);
                    }
                }
                Node::Text(t) if skip_depth == 0 => out.text(t),
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    if skip_depth > 0 {
                        skip_depth -= 1;
                        continue;
                    }
                    let name = el.name();
                    match name {
                        "pre" | "textarea" => out.pre_depth = out.pre_depth.saturating_sub(1),
                        "tr" => {
                            cells_in_row.pop();
                            if let Some(header_done) = open_tables.last_mut()
                                && !*header_done
                            {
                                out.mark(tables::HEADER_END);
                                *header_done = true;
                            }
                        }
                        "table" => {
                            // Every table opened (not skipped) is closed here.
                            open_tables.pop();
                            out.mark(tables::END);
                        }
                        _ => {}
                    }
                    block(&mut out, name);
                }
            }
        }
    }
    out.finish()
}

fn block(out: &mut Writer, name: &str) {
    if PARAGRAPH.contains(&name) {
        out.brk(Break::Paragraph);
    } else if LINE.contains(&name) {
        out.brk(Break::Line);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Break {
    #[default]
    None,
    Space,
    Cell,
    Line,
    Paragraph,
}

/// Collapses whitespace the way a browser does (outside `<pre>`) and merges breaks.
#[derive(Debug, Default)]
struct Writer {
    buf: String,
    pending: Break,
    pre_depth: usize,
    /// Whether `buf` holds text (not only table marks).
    has_text: bool,
}

impl Writer {
    fn text(&mut self, s: &str) {
        for c in s.chars() {
            if tables::is_mark(c) {
                continue;
            }
            if self.pre_depth == 0 && c.is_whitespace() {
                self.pending = self.pending.max(Break::Space);
            } else {
                self.flush();
                if c == '\r' {
                    continue;
                }
                self.buf.push(c);
                self.has_text = true;
            }
        }
    }

    /// A table mark, where the text stands (pending breaks come after it).
    fn mark(&mut self, c: char) {
        self.buf.push(c);
    }

    fn brk(&mut self, b: Break) {
        self.pending = self.pending.max(b);
    }

    fn cell_separator(&mut self) {
        self.pending = self.pending.max(Break::Cell);
    }

    fn flush(&mut self) {
        if self.has_text {
            match self.pending {
                Break::None => {}
                Break::Space => self.buf.push(' '),
                Break::Cell => self.buf.push_str(" | "),
                Break::Line => self.buf.push('\n'),
                Break::Paragraph => self.buf.push_str("\n\n"),
            }
        }
        self.pending = Break::None;
    }

    fn finish(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_body_without_scripts_and_styles() {
        let (title, text) = html_to_text(
            "<!doctype html><html><head><title> The   Title </title>\
             <style>body{color:red}</style><script>var secret = 1;</script></head>\
             <body><h1>Heading</h1><p>First <b>bold</b>\n  paragraph.</p>\
             <script>alert('x')</script><noscript>enable js</noscript>\
             <template><p>hidden template</p></template><svg><text>svg text</text></svg>\
             <div>Line one<br>Line two</div><p hidden>invisible</p></body></html>",
        )
        .unwrap();
        assert_eq!(title.as_deref(), Some("The Title"));
        assert_eq!(
            text,
            "Heading\n\nFirst bold paragraph.\n\nLine one\nLine two"
        );
    }

    #[test]
    fn main_is_preferred_when_it_has_text() {
        let (_, text) = html_to_text(
            "<body><nav>Home | About</nav><main><p>The content.</p></main><footer>(c)</footer></body>",
        ).unwrap();
        assert_eq!(text, "The content.");
        let (_, text) =
            html_to_text("<body><nav>Menu</nav><main> </main><p>Body text</p></body>").unwrap();
        assert_eq!(text, "Menu\n\nBody text");
    }

    #[test]
    fn tables_lists_and_pre() {
        let (_, text) = html_to_text(
            "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ada</td><td>36</td></tr></table>\
             <ul><li>one</li><li>two</li></ul><pre>a  b\n  c</pre>",
        )
        .unwrap();
        let (text, spans) = tables::take_marks(&text);
        assert_eq!(text, "Name | Age\nAda | 36\n\none\ntwo\n\na  b\n  c");
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].start, spans[0].header_end, spans[0].end),
            (0, 10, 19)
        );
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let html = format!(
            "{}deep{}",
            "<span>".repeat(50_000),
            "</span>".repeat(50_000)
        );
        let (_, text) = html_to_text(&html).unwrap();
        assert_eq!(text, "deep");
        let blocks = format!("{}deep{}", "<div>".repeat(2_000), "</div>".repeat(2_000));
        assert_eq!(html_to_text(&blocks).unwrap().1, "deep");
    }

    #[test]
    fn thousands_of_nested_blocks_are_refused_before_parsing() {
        let html = format!("{}deep", "<div>".repeat(100_000));
        assert!(matches!(html_to_text(&html), Err(ExtractError::Corrupt(_))));
        // Closed blocks, comments and scripts do not count.
        let flat = "<div>x</div><!-- <div><div> --><script>'<div>'</script>".repeat(10_000);
        assert!(block_depth(&flat) <= 1);
        assert_eq!(block_depth("<DIV><Section><p>a</section></div>"), 2);
        assert_eq!(block_depth("<SCRIPT><div><div></Script><div>"), 1);
    }

    #[test]
    fn fragments_without_body_still_give_text() {
        let (title, text) = html_to_text("just <i>some</i> words").unwrap();
        assert_eq!(title, None);
        assert_eq!(text, "just some words");
    }
}
