//! Chunking: token windows over the extracted text that prefer paragraph, line, sentence and
//! word boundaries, with character offsets, in time linear in the text.
//!
//! The text is cut into small segments at every candidate boundary (each whitespace run, CJK
//! punctuation, and every few hundred bytes inside a run without any). The text is encoded
//! once, in batches, to plan the windows. A window's count must be the count of its own text;
//! most windows get it without encoding their text again: a cut where a whitespace run follows
//! an ASCII letter or digit, or follows anything but starts with a space, is a boundary of
//! tiktoken's pre-tokenizer in any context, so the tokens between two such cuts are the same
//! in the batch and in the window, and only the window's first word and its tail after the
//! last such cut are encoded on their own. Other windows (CJK text, say) are encoded whole.
//!
//! tiktoken's byte-pair merge is quadratic in the length of one pre-tokenized piece, so no
//! text handed to the tokenizer ever holds a run (of non-whitespace, or of whitespace) longer
//! than [`MAX_RUN`] bytes: a window that spans a longer run is counted in parts split inside
//! that run (the only case where a count is the sum of its parts rather than the count of the
//! whole text).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use documents::{ChunkDraft, Chunker, ChunkingSettings, ExtractedText, Tokenizer};
use tiktoken_rs::CoreBPE;

/// Longest run of non-whitespace (or of whitespace) ever passed to the tokenizer, in bytes.
pub(crate) const MAX_RUN: usize = 1024;
/// Bytes of text counted per tokenizer call while planning.
const BATCH_BYTES: usize = 16 * 1024;

/// Boundary strengths, weakest first.
const FORCED: u8 = 0;
const WORD: u8 = 1;
const SENTENCE: u8 = 2;
const LINE: u8 = 3;
const PARAGRAPH: u8 = 4;

/// The tokenizer as the chunker uses it (a seam for tests that watch what it is given).
pub(crate) trait Bpe {
    /// The tokens of `text`.
    fn encode(&self, text: &str) -> Vec<u32>;
    /// How many bytes of text `token` stands for.
    fn token_len(&self, token: u32) -> usize;
}

struct Tiktoken {
    bpe: &'static CoreBPE,
    lens: &'static [u16],
}

impl Bpe for Tiktoken {
    fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    fn token_len(&self, token: u32) -> usize {
        usize::try_from(token)
            .ok()
            .and_then(|t| self.lens.get(t))
            .map_or(1, |l| usize::from(*l))
    }
}

/// The shared tokenizer (built once per process, never per call) with its token lengths.
fn tokenizer(which: Tokenizer) -> Tiktoken {
    static CL100K: OnceLock<Vec<u16>> = OnceLock::new();
    static O200K: OnceLock<Vec<u16>> = OnceLock::new();
    let (bpe, lens) = match which {
        Tokenizer::Cl100kBase => (tiktoken_rs::cl100k_base_singleton(), &CL100K),
        Tokenizer::O200kBase => (tiktoken_rs::o200k_base_singleton(), &O200K),
    };
    let lens = lens.get_or_init(|| {
        // Ranks are dense from 0; the first run of misses ends the vocabulary.
        let mut lens = Vec::with_capacity(210_000);
        let mut misses = 0;
        let mut rank: u32 = 0;
        while misses < 4096 {
            match bpe.decode_bytes(&[rank]) {
                Ok(bytes) => {
                    misses = 0;
                    lens.push(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
                }
                Err(_) => {
                    misses += 1;
                    lens.push(0);
                }
            }
            rank += 1;
        }
        lens.truncate(lens.len() - misses);
        lens
    });
    Tiktoken { bpe, lens }
}

/// Cuts `text` into windows of at most `settings.max_tokens()` tokens overlapping by about
/// `settings.overlap()` tokens, preferring (in order) paragraph, line, sentence and word
/// boundaries. Each draft's `text` is the characters `start..end` of `text.text`, without
/// whitespace at either end; whitespace-only spans make no draft. A draft whose span starts
/// inside the rows of one of `text.tables` begins with that table's header row and a line
/// break (when the header takes at most a quarter of a window), so that every row is found
/// with its column names. `tokens` is the count of the draft's text; `page` is where it
/// starts (PDF); `ocr` whether any of it lies on a page read by OCR.
#[must_use]
pub fn chunk(text: &ExtractedText, settings: &ChunkingSettings) -> Vec<ChunkDraft> {
    chunk_with(text, settings, &tokenizer(settings.tokenizer()))
}

#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Byte offset in the text.
    byte: usize,
    /// Tokens before this cut (planned).
    tok: u64,
    level: u8,
    /// Inside a run longer than [`MAX_RUN`]: counts are split here.
    long: bool,
    /// A boundary of the tokenizer's pre-tokenization whatever the text around (see the
    /// module docs).
    safe: bool,
    /// Planning batches were split here although it is not safe: counts across it are not
    /// exact.
    broken: bool,
}

/// A table whose header is repeated: byte offsets into the text, and the header row with its
/// line break as a chunk's prefix (and its tokens).
struct Header {
    header_end: usize,
    end: usize,
    prefix: String,
    tokens: u64,
}

/// The tables of `extracted` whose header row is worth repeating: at most a quarter of a
/// window, without a run longer than [`MAX_RUN`].
fn headers(extracted: &ExtractedText, max: u64, bpe: &dyn Bpe) -> Vec<Header> {
    if extracted.tables.is_empty() {
        return Vec::new();
    }
    let text = extracted.text.as_str();
    let mut cursor = CharCursor::default();
    let mut out = Vec::new();
    for t in &extracted.tables {
        let (Some(start), Some(header_end), Some(end)) = (
            cursor.byte_at(text, t.start),
            cursor.byte_at(text, t.header_end),
            cursor.byte_at(text, t.end),
        ) else {
            break;
        };
        if !(start < header_end && header_end <= end) {
            continue;
        }
        let header = text[start..header_end].trim();
        if header.is_empty() || header.contains('\n') || longest_run(header) > MAX_RUN {
            continue;
        }
        let prefix = format!("{header}\n");
        let tokens = bpe.encode(&prefix).len() as u64;
        if tokens <= max / 4 {
            out.push(Header {
                header_end,
                end,
                prefix,
                tokens,
            });
        }
    }
    out
}

/// The table whose rows hold byte `at`.
fn header_at(headers: &[Header], at: usize) -> Option<&Header> {
    let i = headers.partition_point(|h| h.end <= at);
    headers.get(i).filter(|h| h.header_end <= at && at < h.end)
}

pub(crate) fn chunk_with(
    extracted: &ExtractedText,
    settings: &ChunkingSettings,
    bpe: &dyn Bpe,
) -> Vec<ChunkDraft> {
    let text = extracted.text.as_str();
    let max = u64::from(settings.max_tokens());
    let overlap = u64::from(settings.overlap());
    let headers = headers(extracted, max, bpe);
    // Planning granularity: a segment is at most two runs of this many bytes, so it holds at
    // most `max_tokens` tokens (a token is at least one byte).
    let run_cap = usize::try_from(max / 2)
        .unwrap_or(MAX_RUN)
        .clamp(1, MAX_RUN);
    let mut cuts = segment(text, run_cap);
    count_planned(text, &mut cuts, bpe);

    let last = cuts.len() - 1;
    let mut drafts = Vec::new();
    let mut cursor = CharCursor::default();
    let mut emitted_end = 0usize;
    let mut a = 0usize;
    while a < last {
        // A window that starts inside a table's rows carries the table's header: it has
        // that much less room.
        let planned_prefix = header_at(&headers, cuts[a].byte).map_or(0, |h| h.tokens);
        let budget = max - planned_prefix;
        let limit = cuts[a].tok + budget;
        let b = (cuts.partition_point(|c| c.tok <= limit) - 1).clamp(a + 1, last);
        let mut e = if b == last {
            last
        } else {
            best_end(&cuts, a, b, budget)
        };
        // Count the window's text for real; shrink it while the plan was short.
        let span = loop {
            let Some((start, end)) = trimmed(text, cuts[a].byte, cuts[e].byte) else {
                break None;
            };
            let tokens = count_span(text, &cuts[a..=e], start, end, bpe);
            let header = header_at(&headers, start);
            let prefix = header.map_or(0, |h| h.tokens);
            if tokens + prefix <= max {
                break Some((start, end, tokens, header));
            }
            if e == a + 1 {
                // One segment that leaves no room for the header: it goes without.
                debug_assert!(tokens <= max, "a single segment holds at most max_tokens");
                break Some((start, end, tokens, None));
            }
            let over = tokens + prefix - max;
            let target = cuts[e].tok.saturating_sub(over);
            let shorter = cuts[a + 1..e].partition_point(|c| c.tok <= target) + a;
            e = shorter.clamp(a + 1, e - 1);
        };
        if let Some((start, end, tokens, header)) = span
            && end > emitted_end
        {
            let start_chars = cursor.chars_at(text, start);
            let end_chars = cursor.chars_at(text, end);
            let (text, tokens) = match header {
                Some(h) => (
                    format!("{}{}", h.prefix, &text[start..end]),
                    tokens + h.tokens,
                ),
                None => (text[start..end].to_owned(), tokens),
            };
            // Exact unless a long run was counted in parts (see `count_span`).
            let tokens_by = (longest_run(&text) <= MAX_RUN).then_some(settings.tokenizer());
            drafts.push(ChunkDraft {
                ordinal: u32::try_from(drafts.len()).unwrap_or(u32::MAX),
                text,
                tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
                tokens_by,
                page: extracted.page_at(start_chars),
                start: start_chars,
                end: end_chars,
                ocr: extracted.ocr_within(start_chars, end_chars),
            });
            emitted_end = end;
        }
        if e >= last {
            break;
        }
        a = next_start(&cuts, a, e, overlap);
    }
    drafts
}

/// Cuts at every candidate boundary. `cuts[0]` is at 0, the last at `text.len()`.
fn segment(text: &str, run_cap: usize) -> Vec<Cut> {
    let cut = |byte, level| Cut {
        byte,
        tok: 0,
        level,
        long: false,
        safe: false,
        broken: false,
    };
    let mut cuts = Vec::with_capacity(text.len() / 5 + 2);
    cuts.push(Cut {
        safe: true,
        ..cut(0, PARAGRAPH)
    });
    let mut in_ws = false;
    let mut run_start = 0usize; // start of the current run
    let mut since_cut = 0usize; // bytes of the current run since its last cut
    let mut newlines = 0usize; // in the current whitespace run
    let mut ws_cut: Option<usize> = None; // index of the cut opening the whitespace run
    let mut last_visible = ' '; // last non-whitespace character
    let mut prev_visible = ' '; // the one before it
    let mut first_cut_of_run = cuts.len();

    let end_run = |cuts: &mut Vec<Cut>, run_start: usize, end: usize, first: usize| {
        if end - run_start > MAX_RUN {
            for c in &mut cuts[first..] {
                if c.level == FORCED {
                    c.long = true;
                }
            }
        }
    };

    for (i, ch) in text.char_indices() {
        let ws = ch.is_whitespace();
        if ws != in_ws || i == 0 {
            if i > 0 {
                end_run(&mut cuts, run_start, i, first_cut_of_run);
            }
            if ws {
                // A whitespace run opens a segment; its level is known when it ends.
                if i > 0 {
                    ws_cut = Some(cuts.len());
                    cuts.push(Cut {
                        safe: is_plain_letter(last_visible) || !matches!(ch, '\r' | '\n'),
                        ..cut(i, WORD)
                    });
                }
                newlines = 0;
            } else if let Some(at) = ws_cut.take() {
                cuts[at].level = match newlines {
                    0 if ends_sentence(last_visible, prev_visible) => SENTENCE,
                    0 => WORD,
                    1 => LINE,
                    _ => PARAGRAPH,
                };
            }
            in_ws = ws;
            run_start = i;
            since_cut = 0;
            first_cut_of_run = cuts.len();
        }
        let len = ch.len_utf8();
        if since_cut + len > run_cap && since_cut > 0 {
            cuts.push(cut(i, FORCED));
            since_cut = 0;
        }
        since_cut += len;
        if ws {
            if ch == '\n' {
                newlines += 1;
            }
        } else {
            prev_visible = last_visible;
            last_visible = ch;
            // CJK punctuation ends a sentence (or clause) without any space after it.
            let after = i + len;
            let level = match ch {
                '。' | '！' | '？' | '．' => Some(SENTENCE),
                '，' | '、' | '；' | '：' => Some(WORD),
                _ => None,
            };
            if let Some(level) = level
                && text[after..]
                    .chars()
                    .next()
                    .is_some_and(|c| !c.is_whitespace())
            {
                cuts.push(cut(after, level));
                since_cut = 0;
            }
        }
    }
    end_run(&mut cuts, run_start, text.len(), first_cut_of_run);
    if let Some(at) = ws_cut {
        cuts[at].level = PARAGRAPH;
    }
    cuts.push(Cut {
        safe: true,
        ..cut(text.len(), PARAGRAPH)
    });
    cuts
}

/// A letter or digit of a script whose letters are all `\p{L}` (never a combining mark):
/// the tokenizer's letter and number pieces end right after it.
fn is_plain_letter(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c,
            '\u{c0}'..='\u{d6}' | '\u{d8}'..='\u{f6}' | '\u{f8}'..='\u{17f}' // Latin-1, Extended-A
            | '\u{391}'..='\u{3a1}' | '\u{3a3}'..='\u{3a9}' | '\u{3b1}'..='\u{3c9}' // Greek
            | '\u{410}'..='\u{44f}' // Cyrillic
            | '\u{3041}'..='\u{3096}' | '\u{30a1}'..='\u{30fa}' // kana
            | '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' // CJK ideographs
            | '\u{ac00}'..='\u{d7a3}') // Hangul syllables
}

fn ends_sentence(last: char, before: char) -> bool {
    match last {
        '.' | '?' | '!' | '…' => true,
        '"' | '\'' | ')' | '”' | '’' | '»' => matches!(before, '.' | '?' | '!' | '…'),
        _ => false,
    }
}

/// Plans token positions: the text is counted in batches of whole segments that end at safe
/// cuts (never inside a split long run), and each cut gets the tokens that end before it.
fn count_planned(text: &str, cuts: &mut [Cut], bpe: &dyn Bpe) {
    let mut base: u64 = 0;
    let mut first = 0usize; // first cut of the batch
    let end_of_text = cuts.len() - 1;
    while first < end_of_text {
        let start = cuts[first].byte;
        let mut last = None;
        let mut i = first + 1;
        loop {
            let c = &cuts[i];
            if c.long || i == end_of_text {
                last = Some(i);
                break;
            }
            if c.byte - start > BATCH_BYTES {
                break;
            }
            if c.safe {
                last = Some(i);
            }
            i += 1;
        }
        let last = last.unwrap_or_else(|| {
            // No safe cut within a batch: split anyway, and say so.
            let at = (i - 1).max(first + 1);
            cuts[at].broken = true;
            at
        });
        let tokens = bpe.encode(&text[start..cuts[last].byte]);
        let mut consumed = 0usize; // bytes of the batch covered by counted tokens
        let mut t = 0usize;
        for cut in &mut cuts[first + 1..=last] {
            let at = cut.byte - start;
            while t < tokens.len() && consumed + bpe.token_len(tokens[t]) <= at {
                consumed += bpe.token_len(tokens[t]);
                t += 1;
            }
            cut.tok = base + t as u64;
        }
        base += tokens.len() as u64;
        cuts[last].tok = base;
        first = last;
    }
}

/// The end of a window starting at `a` that fits up to `b`: the strongest boundary in its
/// second half (the latest of equals), else `b`.
fn best_end(cuts: &[Cut], a: usize, b: usize, max: u64) -> usize {
    let half = cuts[a].tok + max / 2;
    let mut best = b;
    let mut best_level = None;
    for (i, c) in cuts.iter().enumerate().take(b + 1).skip(a + 1) {
        if c.tok >= half && best_level.is_none_or(|l| c.level >= l) {
            best = i;
            best_level = Some(c.level);
        }
    }
    best
}

/// Where the window after `[a, e)` starts: about `overlap` tokens before `e`, at a sentence
/// boundary when one keeps at least half the overlap, and always after `a`.
fn next_start(cuts: &[Cut], a: usize, e: usize, overlap: u64) -> usize {
    if overlap == 0 {
        return e;
    }
    let target = cuts[e].tok.saturating_sub(overlap);
    let mut start = cuts[a + 1..=e].partition_point(|c| c.tok < target) + a + 1;
    let keep = overlap / 2;
    if let Some(sentence) = (start..e)
        .find(|&i| cuts[i].level >= SENTENCE && cuts[e].tok.saturating_sub(cuts[i].tok) >= keep)
    {
        start = sentence;
    }
    start.clamp(a + 1, e)
}

/// `text[from..to]` without whitespace at either end, or `None` when nothing is left.
fn trimmed(text: &str, from: usize, to: usize) -> Option<(usize, usize)> {
    let span = &text[from..to];
    let inner = span.trim();
    if inner.is_empty() {
        return None;
    }
    let start = from + (span.len() - span.trim_start().len());
    Some((start, start + inner.len()))
}

/// Tokens of `text[start..end]` (a window whose cuts are `cuts`, the first at or before
/// `start`). When the window holds two safe cuts with nothing between them that split the
/// planning, the planned tokens between them are exact and only the head and the tail are
/// encoded; otherwise the text is encoded in one call, unless it holds a run longer than
/// [`MAX_RUN`] (then in parts, split at the long run's cuts).
fn count_span(text: &str, cuts: &[Cut], start: usize, end: usize, bpe: &dyn Bpe) -> u64 {
    let inside = |c: &&Cut| c.byte > start && c.byte < end;
    let mut splits = cuts.iter().filter(inside).filter(|c| c.long || c.broken);
    if splits.next().is_none() {
        let first = cuts
            .iter()
            .find(|c| c.safe && c.byte > start && c.byte <= end);
        let last = cuts
            .iter()
            .rev()
            .find(|c| c.safe && c.byte > start && c.byte <= end);
        if let (Some(p), Some(q)) = (first, last)
            && q.byte - p.byte > (end - start) / 2
        {
            let head = bpe.encode(&text[start..p.byte]).len() as u64;
            let tail = if q.byte < end {
                bpe.encode(&text[q.byte..end]).len() as u64
            } else {
                0
            };
            #[cfg(test)]
            tests::FAST_COUNTS.with(|n| n.set(n.get() + 1));
            return head + (q.tok - p.tok) + tail;
        }
    }
    let span = &text[start..end];
    if longest_run(span) <= MAX_RUN {
        return bpe.encode(span).len() as u64;
    }
    let mut total = 0u64;
    let mut from = start;
    for c in cuts
        .iter()
        .filter(|c| c.long && c.byte > start && c.byte < end)
    {
        total += bpe.encode(&text[from..c.byte]).len() as u64;
        from = c.byte;
    }
    total + bpe.encode(&text[from..end]).len() as u64
}

/// Bytes of the longest run of whitespace or of non-whitespace in `s`.
pub(crate) fn longest_run(s: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    let mut in_ws = None;
    for c in s.chars() {
        let ws = c.is_whitespace();
        if in_ws == Some(ws) {
            run += c.len_utf8();
        } else {
            run = c.len_utf8();
            in_ws = Some(ws);
        }
        longest = longest.max(run);
    }
    longest
}

/// Converts between byte and character offsets of one text, moving from the last position
/// asked.
#[derive(Debug, Default)]
struct CharCursor {
    byte: usize,
    chars: u64,
}

impl CharCursor {
    /// The byte offset of character offset `chars`, asked in ascending order; `None` past
    /// the end or behind the last position.
    fn byte_at(&mut self, text: &str, chars: u64) -> Option<usize> {
        if chars < self.chars {
            return None;
        }
        let mut it = text[self.byte..].char_indices();
        while self.chars < chars {
            let (_, c) = it.next()?;
            self.byte += c.len_utf8();
            self.chars += 1;
        }
        Some(self.byte)
    }

    /// The character offset of byte offset `byte` (a char boundary), in either direction.
    fn chars_at(&mut self, text: &str, byte: usize) -> u64 {
        if byte >= self.byte {
            self.chars += text[self.byte..byte].chars().count() as u64;
        } else {
            self.chars -= text[byte..self.byte].chars().count() as u64;
        }
        self.byte = byte;
        self.chars
    }
}

/// The `documents::Chunker` adapter: [`chunk`] on the blocking pool, with the tiktoken
/// tokenizers (`cl100k_base`, `o200k_base`), each loaded once per process.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokenChunker;

impl TokenChunker {
    /// The chunker.
    #[must_use]
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Chunker for TokenChunker {
    async fn chunk(
        &self,
        text: Arc<ExtractedText>,
        settings: ChunkingSettings,
    ) -> Result<Vec<ChunkDraft>, anyhow::Error> {
        tokio::task::spawn_blocking(move || chunk(&text, &settings))
            .await
            .map_err(|e| anyhow::anyhow!("chunking failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    thread_local! {
        /// Windows counted from the planned tokens (the fast path of `count_span`).
        pub(super) static FAST_COUNTS: Cell<usize> = const { Cell::new(0) };
    }

    /// Wraps the real tokenizer and records what it is given.
    struct Watched {
        inner: Tiktoken,
        calls: RefCell<Vec<usize>>,
        longest_run: RefCell<usize>,
    }

    impl Watched {
        fn new() -> Self {
            Self {
                inner: tokenizer(Tokenizer::Cl100kBase),
                calls: RefCell::new(Vec::new()),
                longest_run: RefCell::new(0),
            }
        }

        fn total_bytes(&self) -> usize {
            self.calls.borrow().iter().sum()
        }
    }

    impl Bpe for Watched {
        fn encode(&self, text: &str) -> Vec<u32> {
            self.calls.borrow_mut().push(text.len());
            let mut longest = self.longest_run.borrow_mut();
            *longest = (*longest).max(longest_run(text));
            self.inner.encode(text)
        }

        fn token_len(&self, token: u32) -> usize {
            self.inner.token_len(token)
        }
    }

    fn settings(max: u32, overlap: u32) -> ChunkingSettings {
        ChunkingSettings::new(max, overlap, Tokenizer::Cl100kBase).unwrap()
    }

    fn text(s: &str) -> ExtractedText {
        ExtractedText {
            text: s.to_owned(),
            ..ExtractedText::default()
        }
    }

    /// Every invariant of a chunking.
    fn check(input: &ExtractedText, settings: &ChunkingSettings, drafts: &[ChunkDraft]) {
        let bpe = tokenizer(settings.tokenizer());
        let mut prev_end = 0;
        for (i, d) in drafts.iter().enumerate() {
            assert_eq!(d.ordinal as usize, i);
            let start = usize::try_from(d.start).unwrap();
            let len = usize::try_from(d.end - d.start).unwrap();
            let span: String = input.text.chars().skip(start).take(len).collect();
            let table = input
                .tables
                .iter()
                .find(|t| t.header_end <= d.start && d.start < t.end);
            let expected = match table {
                Some(t) if d.text != span => {
                    let header: String = input
                        .text
                        .chars()
                        .skip(usize::try_from(t.start).unwrap())
                        .take(usize::try_from(t.header_end - t.start).unwrap())
                        .collect();
                    format!("{}\n{span}", header.trim())
                }
                _ => span,
            };
            assert_eq!(d.text, expected, "draft {i} is not its span");
            assert!(!d.text.trim().is_empty());
            assert_eq!(d.text, d.text.trim());
            assert!(
                d.tokens <= settings.max_tokens(),
                "draft {i}: {} tokens",
                d.tokens
            );
            assert_eq!(
                d.tokens_by.is_some(),
                longest_run(&d.text) <= MAX_RUN,
                "draft {i}: an exact count says its tokenizer"
            );
            if let Some(by) = d.tokens_by {
                assert_eq!(by, settings.tokenizer());
                assert_eq!(
                    d.tokens as usize,
                    bpe.encode(&d.text).len(),
                    "draft {i} count"
                );
            }
            assert!(d.end > prev_end, "draft {i} adds nothing");
            prev_end = d.end;
            assert_eq!(d.page, input.page_at(d.start));
        }
        // Everything that is not whitespace is covered.
        let mut covered = vec![false; input.text.chars().count()];
        for d in drafts {
            for c in
                &mut covered[usize::try_from(d.start).unwrap()..usize::try_from(d.end).unwrap()]
            {
                *c = true;
            }
        }
        for (i, ch) in input.text.chars().enumerate() {
            assert!(
                covered[i] || ch.is_whitespace(),
                "char {i} ({ch:?}) not covered"
            );
        }
    }

    const PROSE: &str = "The quick brown fox jumps over the lazy dog. It was not amused! \
        Was it tired? Perhaps.\nA new line starts here, and goes on for a while with words.\n\n\
        A new paragraph: 東京は日本の首都です。大阪は第二の都市です。Ünïcödé façade — “quoted.” ";

    #[test]
    fn small_text_is_one_chunk() {
        let input = text("  Hello world.  ");
        let drafts = chunk(&input, &settings(32, 0));
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].text, "Hello world.");
        assert_eq!((drafts[0].start, drafts[0].end), (2, 14));
        assert_eq!(drafts[0].tokens, 3);
        check(&input, &settings(32, 0), &drafts);
    }

    #[test]
    fn whitespace_makes_no_chunks() {
        assert!(chunk(&text(""), &settings(32, 0)).is_empty());
        assert!(chunk(&text(" \n\n\t "), &settings(32, 0)).is_empty());
        assert!(chunk(&text(&" ".repeat(100_000)), &settings(32, 8)).is_empty());
    }

    #[test]
    fn windows_prefer_paragraphs_then_sentences() {
        let para = "This sentence has exactly some words in it. ".repeat(6);
        let input = text(&format!("{para}\n\n{para}\n\n{para}"));
        let s = settings(100, 0);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
        assert!(drafts.len() >= 3);
        // Paragraph boundaries are respected: each chunk is one paragraph.
        for d in &drafts {
            assert!(!d.text.contains("\n\n"), "{:?}", d.text);
            assert!(d.text.ends_with('.'), "{:?}", d.text);
        }
    }

    #[test]
    fn overlap_repeats_the_end_of_the_previous_chunk() {
        let input = text(&PROSE.repeat(40));
        let s = settings(120, 30);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
        assert!(drafts.len() > 5);
        for pair in drafts.windows(2) {
            assert!(pair[1].start < pair[0].end, "no overlap");
            let shared: String = pair[1]
                .text
                .chars()
                .take(usize::try_from(pair[0].end - pair[1].start).unwrap())
                .collect();
            let shared_tokens = tokenizer(Tokenizer::Cl100kBase).encode(&shared).len();
            assert!(
                (5..=60).contains(&shared_tokens),
                "overlap of {shared_tokens} tokens"
            );
        }
    }

    #[test]
    fn pages_come_from_offsets() {
        let page = "Words on a page. ".repeat(30);
        let t = format!("{page}\n\n{page}\n\n{page}");
        let second = u64::try_from(page.chars().count() + 2).unwrap();
        let third = second * 2;
        let input = ExtractedText {
            text: t,
            page_starts: vec![0, second, third],
            ..ExtractedText::default()
        };
        let s = settings(60, 10);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
        assert_eq!(drafts.first().unwrap().page, Some(1));
        assert_eq!(drafts.last().unwrap().page, Some(3));
    }

    /// Deterministic pseudo-random numbers (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }

    #[test]
    fn random_texts_keep_every_invariant() {
        const ATOMS: &[&str] = &[
            "word",
            "the",
            "a",
            "longerword",
            ".",
            "!",
            "?",
            ",",
            " ",
            " ",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            "é",
            "日本",
            "。",
            "，",
            "😀",
            "🇫🇷",
            "e\u{301}",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "—",
            "\r\n",
            "https://example.com/a/b?c=d",
        ];
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for case in 0..300 {
            let len = rng.below(400);
            let mut s = String::new();
            for _ in 0..len {
                s.push_str(ATOMS[rng.below(ATOMS.len())]);
            }
            if case % 10 == 0 {
                // Now and then a long run without whitespace.
                let n = rng.below(5000);
                let mut at = s.len() / 2;
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, &"z".repeat(n));
            }
            let max = 32 + u32::try_from(rng.below(300)).unwrap();
            let overlap = u32::try_from(rng.below(usize::try_from(max / 2).unwrap())).unwrap();
            let tokenizer = if case % 2 == 0 {
                Tokenizer::Cl100kBase
            } else {
                Tokenizer::O200kBase
            };
            let s_settings = ChunkingSettings::new(max, overlap, tokenizer).unwrap();
            let pages = rng.below(4);
            let chars = u64::try_from(s.chars().count()).unwrap();
            let mut page_starts: Vec<u64> = (0..pages)
                .map(|i| chars * i as u64 / pages.max(1) as u64)
                .collect();
            page_starts.dedup();
            let input = ExtractedText {
                text: s,
                page_starts,
                ..ExtractedText::default()
            };
            let drafts = chunk(&input, &s_settings);
            check(&input, &s_settings, &drafts);
        }
        // The exact counts above came, for many windows, from the planned tokens.
        assert!(
            FAST_COUNTS.with(Cell::get) > 300,
            "{}",
            FAST_COUNTS.with(Cell::get)
        );
    }

    /// Work on adversarial input: the tokenizer never sees a long run, and the bytes it is
    /// given grow linearly with the input (no timing involved).
    fn work(input: &str, s: &ChunkingSettings) -> (usize, usize, usize) {
        let bpe = Watched::new();
        let drafts = chunk_with(&text(input), s, &bpe);
        for d in &drafts {
            assert!(d.tokens <= s.max_tokens());
        }
        let longest = *bpe.longest_run.borrow();
        let calls = bpe.calls.borrow().len();
        (bpe.total_bytes(), longest, calls)
    }

    #[test]
    fn adversarial_input_stays_linear() {
        let s = ChunkingSettings::default();
        let mut rng = Rng(42);
        let random_cjk = |n: usize, rng: &mut Rng| -> String {
            (0..n)
                .map(|_| {
                    char::from_u32(0x4e00 + u32::try_from(rng.below(0x5000)).unwrap()).unwrap()
                })
                .collect()
        };
        let no_whitespace = |n: usize| -> String {
            "abcdefghij0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~"
                .chars()
                .cycle()
                .take(n)
                .collect()
        };
        let cases: Vec<(&str, String, String)> = vec![
            (
                "no whitespace",
                no_whitespace(500_000),
                no_whitespace(1_000_000),
            ),
            ("one character", "a".repeat(500_000), "a".repeat(1_000_000)),
            ("spaces", " ".repeat(500_000), " ".repeat(1_000_000)),
            (
                "random CJK",
                random_cjk(170_000, &mut rng),
                random_cjk(340_000, &mut rng),
            ),
        ];
        for (name, half, full) in cases {
            let (bytes_half, longest_half, _) = work(&half, &s);
            let (bytes_full, longest_full, calls) = work(&full, &s);
            assert!(
                longest_half <= MAX_RUN && longest_full <= MAX_RUN,
                "{name}: a long run"
            );
            assert!(
                bytes_full <= 3 * full.len(),
                "{name}: {bytes_full} bytes tokenized for {}",
                full.len()
            );
            // Doubling the input at most doubles the work (plus a little slack).
            assert!(
                bytes_full * 10 <= bytes_half * 21 + 10 * MAX_RUN,
                "{name}: {bytes_half} -> {bytes_full}"
            );
            assert!(calls > 0 || full.trim().is_empty(), "{name}");
        }
    }

    #[test]
    fn long_runs_still_make_valid_chunks() {
        let input = text(&format!(
            "start {} middle {} end",
            "x".repeat(5000),
            "日".repeat(3000)
        ));
        let s = settings(64, 8);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
    }

    #[test]
    fn chunks_inside_a_table_start_with_its_header() {
        let mut csv = String::from("id,city,population\n");
        for i in 0..2_000 {
            csv.push_str(&format!("{i},Town {i},{}\n", i * 37));
        }
        let input = crate::extract(
            documents::Format::Csv,
            csv.as_bytes(),
            &documents::ExtractLimits::default(),
        )
        .unwrap();
        let s = settings(100, 10);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
        assert!(drafts.len() > 50, "{} chunks", drafts.len());
        for d in &drafts {
            assert!(
                d.text.starts_with("id | city | population\n"),
                "{:?}",
                d.text
            );
            assert!(d.tokens <= 100);
            assert!(!d.ocr);
        }
        // The header is not doubled in the first chunk, which holds it already.
        assert_eq!(drafts[0].start, 0);
        assert_eq!(drafts[0].text.matches("id | city").count(), 1);
        // Text around a table keeps its own chunks, without the header.
        let mixed = ExtractedText {
            text: format!("{} and then\n\n{}", "Prose before. ".repeat(40), input.text),
            tables: vec![documents::TableSpan {
                start: input.tables[0].start + 14 * 40 + 11,
                header_end: input.tables[0].header_end + 14 * 40 + 11,
                end: input.tables[0].end + 14 * 40 + 11,
            }],
            ..ExtractedText::default()
        };
        let drafts = chunk(&mixed, &s);
        check(&mixed, &s, &drafts);
        assert!(!drafts[0].text.starts_with("id |"));
        assert!(
            drafts
                .last()
                .unwrap()
                .text
                .starts_with("id | city | population\n")
        );
    }

    #[test]
    fn a_header_too_long_to_repeat_is_not() {
        let header: Vec<String> = (0..200).map(|i| format!("column{i}")).collect();
        let mut csv = header.join(",");
        csv.push('\n');
        for r in 0..50 {
            csv.push_str(
                &(0..200)
                    .map(|i| (i * r).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            csv.push('\n');
        }
        let input = crate::extract(
            documents::Format::Csv,
            csv.as_bytes(),
            &documents::ExtractLimits::default(),
        )
        .unwrap();
        let s = settings(200, 0);
        let drafts = chunk(&input, &s);
        check(&input, &s, &drafts);
        assert!(
            drafts
                .iter()
                .skip(1)
                .all(|d| !d.text.starts_with("column0"))
        );
    }

    #[test]
    fn chunks_on_ocr_pages_say_so() {
        let page = "Words on a page. ".repeat(30);
        let t = format!("{page}\n\n{page}");
        let second = u64::try_from(page.chars().count() + 2).unwrap();
        let input = ExtractedText {
            text: t,
            page_starts: vec![0, second],
            ocr_pages: vec![2],
            ..ExtractedText::default()
        };
        let drafts = chunk(&input, &settings(60, 0));
        assert!(!drafts.first().unwrap().ocr);
        assert!(drafts.last().unwrap().ocr);
        assert!(drafts.iter().all(|d| d.ocr == (d.end > second)));
    }

    #[tokio::test]
    async fn the_port_runs_on_the_blocking_pool() {
        let input = Arc::new(text(&PROSE.repeat(5)));
        let drafts = TokenChunker::new()
            .chunk(Arc::clone(&input), settings(64, 8))
            .await
            .unwrap();
        assert_eq!(drafts, chunk(&input, &settings(64, 8)));
        assert!(!drafts.is_empty());
    }
}
