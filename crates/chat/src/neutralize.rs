//! Answers and quotes made safe to render: markup that a document smuggled into a model's
//! output (or that a model wrote) cannot load, link or run anything in a client.
//!
//! The rule (stated for clients in `docs/chat.md`): the text stays Markdown and reads the
//! same, but outside code spans and fenced code blocks
//! - an image `![alt](address)` becomes its alt text;
//! - a link `[text](address)` becomes `text (`address`)`: the address shown as inert code;
//! - a bare address that renderers link by themselves (`http://…`, `https://…`, `ftp://…`,
//!   `www.…`, `//host…`, and a few more schemes) is wrapped in inert code;
//! - every `<` that could open an HTML tag, comment or autolink becomes `&lt;`;
//! - what could still form a link or image the scanner did not recognize is broken with a
//!   backslash escape: `](` → `]\(` and `]:` (a reference definition) → `]\:` wherever the
//!   two meet in the output, and an unmatched backtick → `` \` `` (so the code this module
//!   emits never pairs with a stray one).
//!
//! Code spans (closed on the same line) and fenced code blocks opened at the start of a line
//! are left as they are: a Markdown renderer shows them literally. Where the scanner cannot
//! tell, it neutralizes: treating code as text only changes how code looks, never the other
//! way round. HTML entities are left as they are (`&lt;img…&gt;` is text to every renderer).
//!
//! [`Neutralizer`] works on a stream: it emits at once what is decided and holds back only
//! the start of a construct whose end has not arrived yet (at most [`MAX_HOLD`] bytes, past
//! which the construct is treated as unrecognized, i.e. escaped). Pure code, no I/O.

/// The most bytes held back for one undecided construct.
pub const MAX_HOLD: usize = 2048;

/// Neutralizes a whole text (a quote, a task's answer).
#[must_use]
pub fn neutralize(text: &str) -> String {
    let mut n = Neutralizer::new();
    let mut out = n.push(text);
    out.push_str(&n.finish());
    out
}

/// Neutralizes a text streamed in pieces: the concatenation of what [`Neutralizer::push`]
/// and [`Neutralizer::finish`] return equals [`neutralize`] of the whole text.
#[derive(Debug, Clone)]
pub struct Neutralizer {
    pending: String,
    state: State,
}

impl Default for Neutralizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Neutralizer {
    /// Nothing read yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            pending: String::new(),
            state: State::new(true),
        }
    }

    /// Reads a piece; returns what can be emitted now (possibly nothing).
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        self.run(false)
    }

    /// The end of the text: returns everything still held back, neutralized.
    pub fn finish(&mut self) -> String {
        self.run(true)
    }

    fn run(&mut self, end: bool) -> String {
        let mut out = String::new();
        let used = self.state.scan(&self.pending, end, &mut out);
        self.pending.drain(..used);
        out
    }
}

/// What the scan knows of the text before the current position.
#[derive(Debug, Clone)]
struct State {
    /// Whether block structure (fenced code) is followed: not inside link text.
    blocks: bool,
    /// Inside a fenced code block: its character and length.
    fence: Option<(char, usize)>,
    /// At the start of a line.
    line_start: bool,
    /// The last character read.
    prev: Option<char>,
    /// The last character written.
    last_out: Option<char>,
}

/// The outcome of trying to read a construct at a position.
enum Parse<T> {
    /// It is one.
    Yes(T),
    /// It is not one.
    No,
    /// The text ends before it can be told.
    More,
}

/// An inline link or image read at a `[`: byte ranges, relative to the `[`.
struct Link {
    text: (usize, usize),
    dest: (usize, usize),
    end: usize,
}

impl State {
    const fn new(blocks: bool) -> Self {
        Self {
            blocks,
            fence: None,
            line_start: true,
            prev: None,
            last_out: None,
        }
    }

    /// Writes `s`. A `]` is never followed by `(` or `:` in the output (an inline link or a
    /// reference definition), whatever pieces the two came from.
    fn emit(&mut self, out: &mut String, s: &str) {
        if let Some(c) = s.chars().next_back() {
            if self.last_out == Some(']') && (s.starts_with('(') || s.starts_with(':')) {
                out.push('\\');
            }
            out.push_str(s);
            self.last_out = Some(c);
        }
    }

    /// Emits inert code: no backtick inside, never touching another backtick.
    fn emit_code(&mut self, out: &mut String, content: &str) {
        let content: String = content
            .chars()
            .map(|c| match c {
                '`' => '\'',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        let content = content.trim();
        if content.is_empty() {
            return;
        }
        if self.last_out == Some('`') {
            self.emit(out, " ");
        }
        self.emit(out, "`");
        self.emit(out, content);
        self.emit(out, "`");
    }

    /// Emits raw input (code), keeping the backtick guard.
    fn emit_raw(&mut self, out: &mut String, s: &str) {
        if self.last_out == Some('`') && s.starts_with('`') {
            self.emit(out, " ");
        }
        self.emit(out, s);
    }

    /// Scans `input`, appending what is decided to `out`; returns the bytes consumed (the
    /// rest is held for more input unless `end`).
    fn scan(&mut self, input: &str, end: bool, out: &mut String) -> usize {
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            // Past MAX_HOLD bytes an undecided construct is decided as "not one".
            let forced = end || rest.len() > MAX_HOLD;
            if self.blocks && (self.line_start || self.fence.is_some()) {
                match self.block_line(rest, forced, out) {
                    Parse::Yes(n) => {
                        i += n;
                        continue;
                    }
                    Parse::More => return i,
                    Parse::No => {}
                }
            }
            self.line_start = false;
            let Some(c) = rest.chars().next() else { break };
            let next = rest[c.len_utf8()..].chars().next();
            let step = match c {
                '\n' => {
                    self.emit(out, "\n");
                    self.line_start = true;
                    1
                }
                '\\' => match next {
                    None if !forced => return i,
                    Some(n) if n.is_ascii_punctuation() => {
                        self.emit(out, &rest[..1 + n.len_utf8()]);
                        1 + n.len_utf8()
                    }
                    _ => {
                        self.emit(out, "\\");
                        1
                    }
                },
                '`' => match self.code_span(rest, forced) {
                    Parse::Yes(n) => {
                        self.emit_raw(out, &rest[..n]);
                        n
                    }
                    Parse::More => return i,
                    Parse::No => {
                        let n = rest.bytes().take_while(|b| *b == b'`').count();
                        for _ in 0..n {
                            self.emit(out, "\\`");
                        }
                        n
                    }
                },
                '<' => match next {
                    None if !forced => return i,
                    Some(n) if n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?') => {
                        self.emit(out, "&lt;");
                        1
                    }
                    _ => {
                        self.emit(out, "<");
                        1
                    }
                },
                '!' if next.is_none() && !forced => return i,
                '!' if next == Some('[') => match parse_link(&rest[1..]) {
                    Parse::Yes(l) => {
                        let alt = &rest[1 + l.text.0..1 + l.text.1];
                        self.inline(out, alt);
                        1 + l.end
                    }
                    Parse::More if !forced => return i,
                    _ => {
                        self.emit(out, "!");
                        1
                    }
                },
                '[' => match parse_link(rest) {
                    Parse::Yes(l) => {
                        self.inline(out, &rest[l.text.0..l.text.1]);
                        let dest = rest[l.dest.0..l.dest.1].trim();
                        let dest = dest
                            .strip_prefix('<')
                            .and_then(|d| d.strip_suffix('>'))
                            .unwrap_or(dest);
                        if !dest.trim().is_empty() {
                            self.emit(out, " (");
                            self.emit_code(out, dest);
                            self.emit(out, ")");
                        }
                        l.end
                    }
                    Parse::More if !forced => return i,
                    // Without `](` (escaped below) no link can form from it.
                    Parse::No | Parse::More => {
                        self.emit(out, "[");
                        1
                    }
                },
                c if self.prev.is_none_or(|p| !p.is_alphanumeric())
                    && (c.is_ascii_alphabetic() || c == '/') =>
                {
                    match bare_address(rest, forced) {
                        Parse::Yes(n) => {
                            self.emit_code(out, &rest[..n]);
                            n
                        }
                        Parse::More => return i,
                        Parse::No => {
                            self.emit(out, &rest[..c.len_utf8()]);
                            c.len_utf8()
                        }
                    }
                }
                c => {
                    self.emit(out, &rest[..c.len_utf8()]);
                    c.len_utf8()
                }
            };
            self.prev = input[..i + step].chars().next_back();
            i += step;
        }
        i
    }

    /// Neutralizes the text of a link or the alt text of an image (no block structure).
    fn inline(&mut self, out: &mut String, text: &str) {
        let mut inner = Self::new(false);
        inner.line_start = false;
        inner.last_out = self.last_out;
        let start = out.len();
        inner.scan(text, true, out);
        if out.len() > start {
            self.last_out = inner.last_out;
        }
    }

    /// At the start of a line, or inside a fenced block: a fence line or a code line, taken
    /// whole and raw. `No` hands the line to the inline scan.
    fn block_line(&mut self, rest: &str, forced: bool, out: &mut String) -> Parse<usize> {
        let line_end = rest.find('\n').map(|n| n + 1);
        if let Some((ch, len)) = self.fence {
            if !self.line_start {
                // The rest of a code line that was too long to hold.
                let n = line_end.unwrap_or(rest.len());
                self.emit(out, &rest[..n]);
                self.line_start = line_end.is_some();
                return Parse::Yes(n);
            }
            let Some(n) = line_end.or(forced.then_some(rest.len())) else {
                return Parse::More;
            };
            let line = &rest[..n];
            let trimmed = line.trim_start_matches(' ');
            if line.len() - trimmed.len() <= 3
                && trimmed.chars().take_while(|c| *c == ch).count() >= len
            {
                self.fence = None;
            }
            self.emit(out, line);
            self.line_start = line_end.is_some();
            self.prev = Some('\n');
            return Parse::Yes(n);
        }
        // A fence opens only at the very start of a line (never inside a container, whose
        // end a renderer would see and this scan would not).
        let ch = match rest.chars().next() {
            Some(c @ ('`' | '~')) => c,
            Some(_) => return Parse::No,
            None => return Parse::More,
        };
        let run = rest.chars().take_while(|c| *c == ch).count();
        if run == rest.len() && run < 3 && !forced {
            return Parse::More;
        }
        if run < 3 {
            return Parse::No;
        }
        let Some(n) = line_end.or(forced.then_some(rest.len())) else {
            return Parse::More;
        };
        let line = &rest[..n];
        // A backtick fence's info string holds no backtick (else it is a code span).
        if ch == '`' && line[run..].contains('`') {
            return Parse::No;
        }
        self.fence = Some((ch, run));
        self.emit_raw(out, line);
        self.line_start = line_end.is_some();
        self.prev = Some('\n');
        Parse::Yes(n)
    }

    /// A code span at a backtick run: closed by a run of the same length on the same line.
    fn code_span(&self, rest: &str, forced: bool) -> Parse<usize> {
        let n = rest.bytes().take_while(|b| *b == b'`').count();
        if n == rest.len() && !forced {
            return Parse::More;
        }
        // A backtick run right after an escaped backtick is not trusted to open a span.
        if self.prev == Some('`') {
            return Parse::No;
        }
        let line_end = rest.find('\n');
        let line = &rest[..line_end.unwrap_or(rest.len())];
        // The closing run must start within MAX_HOLD bytes (else the opener is escaped).
        let bytes = line.as_bytes();
        let window = bytes.len().min(MAX_HOLD);
        let mut j = n;
        while j < window {
            if bytes[j] == b'`' {
                let m = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if m == n {
                    if j + m == rest.len() && !forced {
                        // The closing run may go on in the next piece.
                        return Parse::More;
                    }
                    return Parse::Yes(j + m);
                }
                j += m;
            } else {
                j += 1;
            }
        }
        if line_end.is_none() && !forced && bytes.len() <= MAX_HOLD {
            Parse::More
        } else {
            Parse::No
        }
    }
}

/// An inline link at `s` (which starts with `[`): `[text](dest "title")`.
fn parse_link(s: &str) -> Parse<Link> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut j = 0;
    let close = loop {
        if j > MAX_HOLD {
            // Too long to be held: not trusted as a link (its `](` is escaped later).
            return Parse::No;
        }
        let Some(&c) = b.get(j) else {
            return Parse::More;
        };
        match c {
            b'\\' => j += 1,
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    break j;
                }
            }
            b'\n' if b.get(j + 1) == Some(&b'\n') => return Parse::No,
            _ => {}
        }
        j += 1;
    };
    match b.get(close + 1) {
        None => return Parse::More,
        Some(b'(') => {}
        Some(_) => return Parse::No,
    }
    // The destination and title, up to the `)` that closes them.
    let start = close + 2;
    let mut k = start;
    let mut parens = 0usize;
    let mut quote: Option<u8> = None;
    loop {
        if k > MAX_HOLD {
            return Parse::No;
        }
        let Some(&c) = b.get(k) else {
            return Parse::More;
        };
        match (quote, c) {
            (_, b'\\') => k += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') if b[k - 1].is_ascii_whitespace() => quote = Some(c),
            (None, b'(') => parens += 1,
            (None, b')') if parens == 0 => break,
            (None, b')') => parens -= 1,
            (None, b'\n') if b.get(k + 1) == Some(&b'\n') => return Parse::No,
            _ => {}
        }
        k += 1;
    }
    // The destination is the first word; a title may follow.
    let inside = &s[start..k];
    let lead = inside.len() - inside.trim_start().len();
    let dest_len = inside
        .trim_start()
        .find(char::is_whitespace)
        .unwrap_or(inside.len() - lead);
    Parse::Yes(Link {
        text: (1, close),
        dest: (start + lead, start + lead + dest_len),
        end: k + 1,
    })
}

/// A bare address at a word start: `scheme://…`, `www.…` or `//host…`; its length, without
/// trailing punctuation.
fn bare_address(s: &str, forced: bool) -> Parse<usize> {
    // What renderers turn into links by themselves (GFM: http, https, ftp, `www.`;
    // linkify-it adds `//`), and a few more schemes to be safe.
    const STARTS: [&str; 10] = [
        "http://", "https://", "ftp://", "ftps://", "sftp://", "ws://", "wss://", "file://",
        "www.", "//",
    ];
    let head: String = s.chars().take(8).collect::<String>().to_ascii_lowercase();
    let opens = STARTS.iter().any(|p| head.starts_with(p));
    if !opens {
        // Could more text make it one? Only when the text ends inside a possible start.
        let could = !forced && head.len() == s.len() && STARTS.iter().any(|p| p.starts_with(&head));
        return if could { Parse::More } else { Parse::No };
    }
    let end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '`'))
        .unwrap_or(s.len());
    if end == s.len() && !forced {
        return Parse::More;
    }
    let mut url = &s[..end];
    loop {
        let trimmed =
            url.trim_end_matches(['.', ',', ':', ';', '!', '?', '*', '_', '~', '\'', '"']);
        let trimmed = if trimmed.ends_with(')')
            && trimmed.matches(')').count() > trimmed.matches('(').count()
        {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        };
        if trimmed.len() == url.len() {
            break;
        }
        url = trimmed;
    }
    // `//` or `www.` alone is not an address.
    if url.len() <= 4 {
        return Parse::No;
    }
    Parse::Yes(url.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(pieces: &[&str]) -> String {
        let mut n = Neutralizer::new();
        let mut out = String::new();
        for p in pieces {
            out.push_str(&n.push(p));
        }
        out.push_str(&n.finish());
        out
    }

    /// Every split of `text` in two and in single characters gives the whole-text result.
    fn same_when_split(text: &str) -> String {
        let whole = neutralize(text);
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        for &c in &cuts {
            assert_eq!(
                streamed(&[&text[..c], &text[c..]]),
                whole,
                "split at {c} of {text:?}"
            );
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(streamed(&refs), whole, "char by char: {text:?}");
        whole
    }

    #[test]
    fn images_become_their_alt_text() {
        assert_eq!(
            same_when_split("See ![x](https://attacker.example/pixel.png) here."),
            "See x here."
        );
        assert_eq!(
            neutralize("![a ![b](https://e/1.png)](https://e/2.png)"),
            "a b"
        );
        assert_eq!(neutralize("![](https://e/p.png \"t\")"), "");
    }

    #[test]
    fn links_become_text_and_inert_code() {
        assert_eq!(
            same_when_split("Log in at [portal](https://attacker.example/login) now [S1]."),
            "Log in at portal (`https://attacker.example/login`) now [S1]."
        );
        assert_eq!(
            neutralize("[x](<javascript:alert(1)> \"title\")"),
            "x (`javascript:alert(1)`)"
        );
        assert_eq!(
            neutralize("[a [b](https://e/1) c](https://e/2)"),
            "a b (`https://e/1`) c (`https://e/2`)"
        );
        // Brackets, not links: citation markers and plain brackets stay.
        assert_eq!(
            neutralize("Rent [S1][S3]. See [note]."),
            "Rent [S1][S3]. See [note]."
        );
    }

    #[test]
    fn bare_addresses_are_wrapped_in_code() {
        assert_eq!(
            same_when_split(
                "Go to https://attacker.example/login. Or www.evil.example, or //x.example/a"
            ),
            "Go to `https://attacker.example/login`. Or `www.evil.example`, or `//x.example/a`"
        );
        assert_eq!(
            neutralize("(see https://e.example/a_(b))"),
            "(see `https://e.example/a_(b)`)"
        );
        // Schemes no renderer links by themselves stay text.
        assert_eq!(neutralize("see xyz://a"), "see xyz://a");
        // Words that are not addresses stay.
        assert_eq!(
            neutralize("http is a protocol, www too."),
            "http is a protocol, www too."
        );
    }

    #[test]
    fn raw_html_and_autolinks_are_escaped() {
        assert_eq!(
            same_when_split("<img src=x onerror=alert(1)> and <https://e.example> <!-- c -->"),
            "&lt;img src=x onerror=alert(1)> and &lt;`https://e.example`> &lt;!-- c -->"
        );
        assert_eq!(neutralize("</script><?php"), "&lt;/script>&lt;?php");
        // Not a tag: comparisons stay.
        assert_eq!(neutralize("a < b and 3<4"), "a < b and 3<4");
    }

    #[test]
    fn html_entities_are_left_as_they_are() {
        assert_eq!(
            same_when_split("&lt;img src=x onerror=alert(1)&gt; &amp; &#60;b&#62;"),
            "&lt;img src=x onerror=alert(1)&gt; &amp; &#60;b&#62;"
        );
    }

    #[test]
    fn code_spans_and_fenced_blocks_are_left_as_they_are() {
        let t = "Use `![x](https://e/p.png)` or ``a ` <b>`` here.";
        assert_eq!(same_when_split(t), t);
        let fenced =
            "Example:\n```md\n![x](https://e/p.png) <img src=x>\n```\nafter ![y](https://e/q.png)";
        assert_eq!(
            same_when_split(fenced),
            "Example:\n```md\n![x](https://e/p.png) <img src=x>\n```\nafter y"
        );
        let tilde = "~~~\n<b>x</b>\n~~~~\n<b>";
        assert_eq!(same_when_split(tilde), "~~~\n<b>x</b>\n~~~~\n&lt;b>");
        // An unclosed fence runs to the end, as it does in a renderer.
        assert_eq!(neutralize("```\n<b>"), "```\n<b>");
    }

    #[test]
    fn odd_markdown_is_broken_not_trusted() {
        // A reference definition and its use.
        assert_eq!(
            neutralize("[r]: https://e/p.png\n![x][r]"),
            "[r]\\: `https://e/p.png`\n![x][r]"
        );
        // An unmatched backtick is escaped, so the code emitted here never pairs with it.
        assert_eq!(same_when_split("`a https://e/x b"), "\\`a `https://e/x` b");
        // A fence that is not one (backtick in its info string) is inline code.
        assert_eq!(neutralize("```a`b``` ![x](u)"), "```a`b``` x");
        // A fence inside a container is not trusted: its content is neutralized.
        assert_eq!(
            neutralize("- a\n  ```\n![x](https://e/p.png)\n  ```"),
            "- a\n  \\`\\`\\`\nx\n  \\`\\`\\`"
        );
        // Link text with a code span holding `]`.
        let out = neutralize("[a `]` b](https://e/1)");
        assert!(!out.contains("]("), "{out}");
        // A `[` whose end never came.
        assert_eq!(
            neutralize(&format!("[{}", "a".repeat(10))),
            format!("[{}", "a".repeat(10))
        );
        let long = format!("[{}](https://e/p)", "a".repeat(MAX_HOLD + 10));
        let out = streamed(&[&long[..MAX_HOLD + 5], &long[MAX_HOLD + 5..]]);
        assert!(!out.contains("]("), "{}", &out[out.len() - 40..]);
        // Escapes are kept.
        assert_eq!(neutralize("\\[a\\](b) \\<b>"), "\\[a\\]\\(b) \\<b>");
        // An alt text ending in `]` does not meet a `(` that follows the image.
        let out = same_when_split("![a[b]](u)(https://e/p.png)");
        assert!(!out.contains("]("), "{out}");
    }

    #[test]
    fn long_texts_are_linear_enough() {
        let text = "[a `b <c مهلت پرداخت ".repeat(20_000);
        let started = std::time::Instant::now();
        let out = neutralize(&text);
        assert!(!out.contains("]("));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn plain_text_and_non_latin_text_pass_unchanged() {
        for t in [
            "The lease ends on 31 March 2027. [S1]",
            "مهلت پرداخت اجاره پنجم هر ماه است [S2]",
            "Costs: 5 * 3 = 15; a_b_c; ~x~; (parenthesis) and [S1, S2].",
        ] {
            assert_eq!(same_when_split(t), t);
        }
    }
}
