//! Text analysis the answerer's tasks share: sentences (as exact slices of a source's text),
//! words, terms (normalized, stemmed content words) and the statistics of a set of sentences.
//!
//! - A sentence ends at `.` `!` `?` `…` followed by a space (not after an abbreviation such as
//!   `e.g.` or `Dr.`, an initial, a list number, nor before a lower-case word), at `؟` `۔` `。`,
//!   at every line break and at an inline bullet (`•`). Decimals (`3.14`) and dotted dates never
//!   end one: the point must be followed by a space. A leading list marker (`- `, `1. `, `## `)
//!   is left out. A sentence is trimmed and always an exact slice of its source's text.
//! - Words and terms are `terms.rs`'s.

use std::collections::HashMap;

use chat::Source;

use super::terms::{self, fold, term, words};

/// Longest quote, in characters: a longer sentence is cut at a clause boundary ([`clip`]).
pub(super) const MAX_QUOTE_CHARS: usize = 400;

/// Words of a question that ask rather than say what is asked about (`tell me about …`).
/// Sorted (binary search).
const QUESTION_FILLER: &[&str] = &[
    "describe",
    "explain",
    "find",
    "give",
    "know",
    "list",
    "mean",
    "say",
    "says",
    "show",
    "tell",
    "بگو",
    "بگویید",
    "توضیح",
    "دهید",
];

/// Abbreviations a point never ends (lower case, inner points kept).
const ABBREVIATIONS: &[&str] = &[
    "approx", "apr", "art", "aug", "cf", "dec", "dept", "dr", "e.g", "eg", "feb", "fig", "i.e",
    "jan", "jr", "jul", "jun", "mr", "mrs", "ms", "mt", "no", "nos", "nov", "oct", "p", "pp",
    "prof", "sec", "sep", "sept", "sr", "st", "viz", "vol", "vs",
];

/// Abbreviations that end a sentence only before a capitalized word (`… and Acme Inc. The …`).
const SOFT_ABBREVIATIONS: &[&str] = &[
    "al", "bros", "co", "corp", "etc", "inc", "llc", "ltd", "plc",
];

/// The sentences of `text`: `(byte offset, slice)`, trimmed, without a leading list marker,
/// each holding a letter or digit (see the module's documentation).
pub(super) fn split_sentences(text: &str) -> Vec<(usize, &str)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |j: usize| chars.get(j).map_or(text.len(), |(b, _)| *b);
    let mut out = Vec::new();
    let mut seg = 0;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            '\n' | '\r' | '\u{0085}' | '\u{2028}' | '\u{2029}' | '•' | '◦' | '▪' | '●' | '■'
            | '▸' | '►' => {
                push_sentence(text, seg, at, &mut out);
                seg = at + c.len_utf8();
            }
            '؟' | '۔' | '。' | '！' | '？' => {
                let j = skip_closers(&chars, i + 1);
                let end = byte_at(j);
                push_sentence(text, seg, end, &mut out);
                seg = end;
                i = j;
                continue;
            }
            '.' | '!' | '?' | '…' => {
                let mut j = i + 1;
                while j < chars.len() && matches!(chars[j].1, '.' | '!' | '?' | '…') {
                    j += 1;
                }
                let after = skip_closers(&chars, j);
                let spaced = after == chars.len() || chars[after].1.is_whitespace();
                if spaced && ends_sentence(text, seg, at, &chars[i..j], next_chars(&chars, after)) {
                    let end = byte_at(after);
                    push_sentence(text, seg, end, &mut out);
                    seg = end;
                }
                i = after;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push_sentence(text, seg, text.len(), &mut out);
    out
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | '»' | '›' | ')' | ']' | '}')
}

fn skip_closers(chars: &[(usize, char)], mut j: usize) -> usize {
    while j < chars.len() && is_closer(chars[j].1) {
        j += 1;
    }
    j
}

/// What follows a point: the next character past spaces, and the first character of the
/// next word (past opening quotes or brackets as well).
fn next_chars(chars: &[(usize, char)], from: usize) -> (Option<char>, Option<char>) {
    let mut rest = chars[from..].iter().map(|(_, c)| *c);
    let raw = rest.by_ref().find(|c| !c.is_whitespace());
    let letter = raw
        .into_iter()
        .chain(rest)
        .find(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '“' | '‘' | '«' | '(' | '['));
    (raw, letter)
}

/// Whether the run of terminal punctuation `run` (at byte `at`, in the segment that started
/// at `seg`) ends a sentence, the next word starting with `next`.
fn ends_sentence(
    text: &str,
    seg: usize,
    at: usize,
    run: &[(usize, char)],
    (raw_next, next): (Option<char>, Option<char>),
) -> bool {
    let next_lower = next.is_some_and(char::is_lowercase);
    if !(run.len() == 1 && run[0].1 == '.') {
        // `!`, `?`, `...`: an ellipsis running into a lower-case word goes on.
        let ellipsis = run.iter().all(|(_, c)| matches!(c, '.' | '…'));
        return !(ellipsis && next_lower);
    }
    if next.is_none() {
        return true;
    }
    let before = &text[seg..at];
    let token_len: usize = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '.')
        .map(char::len_utf8)
        .sum();
    let token = &before[before.len() - token_len..];
    if token.is_empty() {
        return !next_lower;
    }
    let chars = token.chars().count();
    let at_segment_start = before[..before.len() - token_len].trim().is_empty();
    if at_segment_start && chars <= 3 && (token.chars().all(|c| c.is_ascii_digit()) || chars == 1) {
        return false; // a list number: `1. `, `a. `
    }
    let lower = token.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return false;
    }
    if chars == 1 && token.chars().all(char::is_uppercase) {
        return false; // an initial: `J. Smith`
    }
    if token.contains('.') || SOFT_ABBREVIATIONS.contains(&lower.as_str()) {
        // `U.S.`, `p.m.`, `Inc.`: only a capital right after ends the sentence (not
        // `Acme Ltd. ("Landlord")`).
        return raw_next.is_some_and(char::is_uppercase);
    }
    !next_lower
}

/// Pushes `text[start..end]` trimmed and without its list marker, when it has a letter or a
/// digit.
fn push_sentence<'t>(text: &'t str, start: usize, end: usize, out: &mut Vec<(usize, &'t str)>) {
    let mut s = text[start..end].trim();
    for _ in 0..2 {
        s = strip_marker(s).trim_start();
    }
    if s.chars().any(char::is_alphanumeric) {
        let offset = s.as_ptr() as usize - text.as_ptr() as usize;
        out.push((offset, s));
    }
}

/// `s` without a leading list marker (`- `, `* `, `• `, `> `, `## `, `1. `, `2) `, `a) `,
/// `(3) `); `s` itself when it has none.
fn strip_marker(s: &str) -> &str {
    let Some(first) = s.chars().next() else {
        return s;
    };
    let rest = match first {
        '-' | '*' | '+' | '•' | '◦' | '▪' | '●' | '■' | '–' | '—' | '>' | '▸' | '►' => {
            &s[first.len_utf8()..]
        }
        '#' => s.trim_start_matches('#'),
        '(' => {
            let inner = &s[1..];
            let n = inner
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .count();
            if (1..=3).contains(&n) && inner[n..].starts_with(')') {
                &inner[n + 1..]
            } else {
                return s;
            }
        }
        _ => {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            let n = if (1..=3).contains(&digits) {
                digits
            } else if first.is_ascii_alphabetic() && s[1..].starts_with(')') {
                1
            } else {
                return s;
            };
            match s[n..].chars().next() {
                Some('.' | ')') if digits > 0 || s[n..].starts_with(')') => &s[n + 1..],
                _ => return s,
            }
        }
    };
    if rest.starts_with(char::is_whitespace) {
        rest
    } else {
        s
    }
}

/// `sentence` when it has at most [`MAX_QUOTE_CHARS`] characters. Else the run of whole
/// clauses (cut after `,` `;` `:` `،` `؛` or a dash followed by a space) of at most that many
/// characters that `score` rates highest (the first on a tie), trimmed; a clause longer than
/// the limit on its own is cut at its last space under it. Always a slice of `sentence`.
pub(super) fn clip(sentence: &str, score: impl Fn(&str) -> f64) -> &str {
    if sentence.chars().count() <= MAX_QUOTE_CHARS {
        return sentence;
    }
    let mut ends = Vec::new();
    let mut chars = sentence.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, ',' | ';' | ':' | '—' | '–' | '،' | '؛')
            && chars.peek().is_some_and(|(_, n)| n.is_whitespace())
        {
            ends.push(i + c.len_utf8());
        }
    }
    ends.push(sentence.len());
    let mut best: Option<(&str, f64)> = None;
    let mut start = 0;
    for (k, &first_end) in ends.iter().enumerate() {
        let mut window = None;
        for &end in &ends[k..] {
            if sentence[start..end].chars().count() > MAX_QUOTE_CHARS {
                break;
            }
            window = Some(end);
        }
        let piece = match window {
            Some(end) => trim_clause(&sentence[start..end]),
            None => cut_at_space(trim_clause(&sentence[start..first_end]), MAX_QUOTE_CHARS),
        };
        if !piece.is_empty() {
            let s = score(piece);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((piece, s));
            }
        }
        start = first_end;
    }
    best.map_or_else(|| cut_at_space(sentence, MAX_QUOTE_CHARS), |(p, _)| p)
}

/// `s` trimmed of spaces and of the clause punctuation it ends with.
fn trim_clause(s: &str) -> &str {
    s.trim().trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | ':' | '—' | '–' | '،' | '؛')
    })
}

/// The start of `s` of at most `max` characters, cut at its last space (mid-word only when
/// there is none), trimmed. A slice of `s`.
pub(super) fn cut_at_space(s: &str, max: usize) -> &str {
    let Some((limit, _)) = s.char_indices().nth(max) else {
        return s.trim();
    };
    let head = &s[..limit];
    match head.rfind(char::is_whitespace) {
        Some(space) if !head[..space].trim().is_empty() => trim_clause(&head[..space]),
        _ => head.trim(),
    }
}

/// `s` in at most `max` characters: itself, or cut at a space and ended with `…`.
pub(super) fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head = cut_at_space(s, max.saturating_sub(1)).trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | ':' | '.' | '-' | '—' | '–' | '،' | '؛')
    });
    format!("{head}…")
}

/// The byte ranges of the web addresses in `text` (`https://…`, `www.…`, up to a space):
/// their words (`https`, `github`, `com`) are no terms.
fn links(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for marker in ["http://", "https://", "www."] {
        for (at, _) in text.match_indices(marker) {
            if out.iter().any(|(a, b)| (*a..*b).contains(&at)) {
                continue;
            }
            let end = text[at..]
                .find(char::is_whitespace)
                .map_or(text.len(), |n| at + n);
            out.push((at, end));
        }
    }
    out
}

/// A content word of a sentence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    /// Its term's id.
    pub term: u32,
    /// Byte range in the sentence.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
    /// It directly follows the previous token (no other word between, only a space or a
    /// hyphen): the two make a phrase.
    pub joined: bool,
    /// It is the sentence's first word (its capital says nothing).
    pub initial: bool,
}

/// One sentence of a source.
#[derive(Debug)]
pub(super) struct Sentence<'a> {
    /// Index of its source.
    pub source: usize,
    /// Its rank in its source (0 first).
    pub position: usize,
    /// The text, an exact slice of the source's.
    pub text: &'a str,
    /// Its content words.
    pub tokens: Vec<Token>,
    /// How many words it has, function words included.
    pub words: usize,
}

impl Sentence<'_> {
    /// Whether the sentence holds every term of `terms`.
    pub fn contains_all(&self, terms: &[u32]) -> bool {
        terms
            .iter()
            .all(|t| self.tokens.iter().any(|k| k.term == *t))
    }

    /// Its distinct terms, sorted.
    pub fn term_set(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.tokens.iter().map(|t| t.term).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The sentences of a request's sources, with their terms' statistics.
#[derive(Debug)]
pub(super) struct Corpus<'a> {
    /// Every sentence, by source then position.
    pub sentences: Vec<Sentence<'a>>,
    ids: HashMap<String, u32>,
    /// Per term: sentences holding it.
    df: Vec<u32>,
    /// Per term: whether it is a number.
    numeric: Vec<bool>,
}

impl<'a> Corpus<'a> {
    /// Splits and indexes `sources`.
    pub fn new(sources: &'a [Source]) -> Self {
        let mut corpus = Corpus {
            sentences: Vec::new(),
            ids: HashMap::new(),
            df: Vec::new(),
            numeric: Vec::new(),
        };
        for (source, s) in sources.iter().enumerate() {
            for (position, (_, text)) in split_sentences(&s.text).into_iter().enumerate() {
                let sentence = corpus.index(source, position, text);
                corpus.sentences.push(sentence);
            }
        }
        corpus
    }

    fn index(&mut self, source: usize, position: usize, text: &'a str) -> Sentence<'a> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut words = 0;
        let mut previous_end: Option<usize> = None;
        let mut previous_kept = false;
        let links = links(text);
        for (start, word) in terms::words(text) {
            words += 1;
            let end = start + word.len();
            let in_link = links.iter().any(|(a, b)| (*a..*b).contains(&start));
            let Some(t) = term(word).filter(|_| !in_link) else {
                previous_end = Some(end);
                previous_kept = false;
                continue;
            };
            let joined = previous_kept
                && previous_end.is_some_and(|p| {
                    let gap = &text[p..start];
                    !gap.is_empty() && gap.chars().all(|c| c == ' ' || c == '-')
                });
            let next = u32::try_from(self.df.len()).unwrap_or(u32::MAX);
            let id = *self.ids.entry(t).or_insert_with_key(|k| {
                self.numeric.push(k.chars().all(char::is_numeric));
                self.df.push(0);
                next
            });
            if !tokens.iter().any(|k| k.term == id) {
                self.df[id as usize] += 1;
            }
            tokens.push(Token {
                term: id,
                start,
                end,
                joined,
                initial: words == 1,
            });
            previous_end = Some(end);
            previous_kept = true;
        }
        Sentence {
            source,
            position,
            text,
            tokens,
            words,
        }
    }

    /// How many distinct terms there are.
    pub fn term_count(&self) -> usize {
        self.df.len()
    }

    /// The id of `word`'s term, when a sentence holds it.
    pub fn lookup(&self, word: &str) -> Option<u32> {
        self.ids.get(&term(word)?).copied()
    }

    /// Whether the term is a number.
    pub fn is_numeric(&self, term: u32) -> bool {
        self.numeric.get(term as usize).copied().unwrap_or(false)
    }

    /// How many sentences hold the term.
    pub fn df(&self, term: u32) -> u32 {
        self.df.get(term as usize).copied().unwrap_or(0)
    }

    /// The BM25 inverse document frequency of a term held by `df` sentences (always > 0).
    #[allow(clippy::cast_precision_loss)]
    pub fn idf_of(&self, df: u32) -> f64 {
        let n = self.sentences.len() as f64;
        let df = f64::from(df);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The BM25 inverse document frequency of a term.
    pub fn idf(&self, term: u32) -> f64 {
        self.idf_of(self.df(term))
    }

    /// The terms of a question, distinct, in order, with the question's filler words
    /// (`tell`, `explain` …) left out; and the number of its terms no sentence holds.
    pub fn query(&self, question: &str) -> (Vec<u32>, usize) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (_, word) in words(question) {
            let Some(t) = term(word) else { continue };
            if QUESTION_FILLER.binary_search(&t.as_str()).is_ok()
                || QUESTION_FILLER.binary_search(&fold(word).as_str()).is_ok()
            {
                continue;
            }
            match self.ids.get(&t) {
                Some(id) if !known.contains(id) => known.push(*id),
                Some(_) => {}
                None if !unknown.contains(&t) => unknown.push(t),
                None => {}
            }
        }
        (known, unknown.len())
    }

    /// How a phrase of consecutive `terms` is most often written (lower-cased where it
    /// starts a sentence; the first form seen on a tie); empty when it never occurs.
    pub fn surface(&self, terms: &[u32]) -> String {
        let mut forms: Vec<(String, usize)> = Vec::new();
        let n = terms.len();
        if n == 0 {
            return String::new();
        }
        for s in &self.sentences {
            for w in s.tokens.windows(n) {
                if w.iter().zip(terms).all(|(k, t)| k.term == *t)
                    && w.iter().skip(1).all(|k| k.joined)
                {
                    let raw = &s.text[w[0].start..w[n - 1].end];
                    let heading = !s.text.chars().any(char::is_lowercase);
                    let form = if w[0].initial || heading {
                        raw.to_lowercase()
                    } else {
                        raw.to_owned()
                    };
                    match forms.iter_mut().find(|(f, _)| *f == form) {
                        Some((_, c)) => *c += 1,
                        None => forms.push((form, 1)),
                    }
                }
            }
        }
        // The most frequent; on a tie, a lower-case form, else the first.
        let mut best: Option<(String, usize)> = None;
        for (f, c) in forms {
            let better = best.as_ref().is_none_or(|(b, bc)| {
                c > *bc || (c == *bc && f == f.to_lowercase() && *b != b.to_lowercase())
            });
            if better {
                best = Some((f, c));
            }
        }
        best.map(|(f, _)| f).unwrap_or_default()
    }
}

/// The share of the terms of `a` and `b` (sorted, distinct) they have in common (Jaccard).
#[allow(clippy::cast_precision_loss)]
pub(super) fn overlap(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both as f64 / (a.len() + b.len() - both) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(text: &str) -> Vec<&str> {
        split_sentences(text).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn word_lists_are_sorted() {
        // The stop words' lists are checked in `terms.rs`.
        let list = QUESTION_FILLER;
        assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
    }

    #[test]
    fn sentences_end_at_terminal_punctuation() {
        assert_eq!(
            sentences("The lease ends soon. Is it renewed? Yes! Good…  Done"),
            [
                "The lease ends soon.",
                "Is it renewed?",
                "Yes!",
                "Good…",
                "Done"
            ]
        );
        assert_eq!(
            sentences("He said \"stop.\" Then he left."),
            ["He said \"stop.\"", "Then he left."]
        );
    }

    #[test]
    fn abbreviations_decimals_and_initials_do_not_end_sentences() {
        assert_eq!(
            sentences(
                "Fees, e.g. cleaning, are 3.5 percent. Dr. Smith agreed with J. Doe on 31.03.2027."
            ),
            [
                "Fees, e.g. cleaning, are 3.5 percent.",
                "Dr. Smith agreed with J. Doe on 31.03.2027."
            ]
        );
        assert_eq!(
            sentences("Acme Inc. signed it. Approx. three weeks later it ended."),
            [
                "Acme Inc. signed it.",
                "Approx. three weeks later it ended."
            ]
        );
        assert_eq!(
            sentences("It cost approx. ten euros. We paid to Acme Inc. The rest followed."),
            [
                "It cost approx. ten euros.",
                "We paid to Acme Inc.",
                "The rest followed."
            ]
        );
    }

    #[test]
    fn persian_punctuation_lines_and_bullets_are_boundaries() {
        assert_eq!(
            sentences("قرارداد کی تمام می‌شود؟ در اسفند تمام می‌شود۔ پایان"),
            ["قرارداد کی تمام می‌شود؟", "در اسفند تمام می‌شود۔", "پایان"]
        );
        assert_eq!(
            sentences(
                "Terms\n- Rent is due monthly\n2. Deposit: two months • Pets allowed\n## Notes"
            ),
            [
                "Terms",
                "Rent is due monthly",
                "Deposit: two months",
                "Pets allowed",
                "Notes"
            ]
        );
        assert_eq!(
            sentences("1. The first point. 2) The second"),
            ["The first point.", "The second"]
        );
        assert!(sentences(" \n -- \n ... ").is_empty());
    }

    #[test]
    fn sentences_are_exact_slices() {
        let text = "  Intro line\n\n* A bullet.  Second one!\t(3) Third?";
        for (offset, s) in split_sentences(text) {
            assert_eq!(&text[offset..offset + s.len()], s);
            assert_eq!(s, s.trim());
        }
    }

    #[test]
    fn clip_keeps_the_best_clauses_as_a_slice() {
        let filler =
            "and the parties also agreed on many other things of little interest, ".repeat(8);
        let sentence = format!("{filler}the deposit is two months of rent; {filler}end");
        assert!(sentence.chars().count() > MAX_QUOTE_CHARS);
        let piece = clip(&sentence, |p| if p.contains("deposit") { 1.0 } else { 0.0 });
        assert!(piece.contains("deposit"), "{piece}");
        assert!(sentence.contains(piece));
        assert!(piece.chars().count() <= MAX_QUOTE_CHARS);
        assert_eq!(piece, piece.trim());
        // One clause too long: cut at a space.
        let long = "word ".repeat(200);
        let piece = clip(&long, |_| 0.0);
        assert!(long.starts_with(piece) && piece.ends_with("word"));
        assert!(piece.chars().count() <= MAX_QUOTE_CHARS);
        assert_eq!(clip("short one.", |_| 0.0), "short one.");
    }

    #[test]
    fn shorten_cuts_at_a_space() {
        assert_eq!(shorten("a short label", 80), "a short label");
        let s = shorten(&"lorem ipsum ".repeat(20), 80);
        assert!(s.chars().count() <= 80 && s.ends_with(" lorem…"), "{s}");
    }

    #[test]
    fn corpus_counts_terms_and_phrases() {
        let sources = [crate::answerer::tests::source(
            "S1",
            "The Lease Term is two years. The lease term ends in 2027. The lease term is fixed. Rent is due.",
        )];
        let c = Corpus::new(&sources);
        assert_eq!(c.sentences.len(), 4);
        let lease = c.lookup("leases").unwrap();
        let term_ = c.lookup("term").unwrap();
        assert_eq!(c.df(lease), 3);
        assert!(c.idf(lease) < c.idf(c.lookup("rent").unwrap()));
        assert!(c.sentences[1].tokens[1].joined);
        assert_eq!(c.surface(&[lease, term_]), "lease term");
        assert!(c.is_numeric(c.lookup("2027").unwrap()));
        let (known, unknown) = c.query("Please tell me when the lease term ends in Paris?");
        assert_eq!(known.len(), 3); // leas, term, end
        assert_eq!(unknown, 1); // paris
    }

    #[test]
    fn web_addresses_give_no_terms() {
        let sources = [crate::answerer::tests::source(
            "S1",
            "See https://github.com/acme/lease or www.acme.com for the lease.",
        )];
        let c = Corpus::new(&sources);
        assert!(c.lookup("github").is_none() && c.lookup("https").is_none());
        assert!(c.lookup("acme").is_none());
        assert!(c.lookup("lease").is_some() && c.lookup("see").is_some());
        assert_eq!(c.sentences[0].words, 13);
    }

    #[test]
    fn overlap_is_jaccard() {
        assert!((overlap(&[1, 2, 3], &[2, 3, 4]) - 0.5).abs() < 1e-9);
        assert!((overlap(&[1], &[1]) - 1.0).abs() < 1e-9);
        assert!(overlap(&[1], &[2]).abs() < 1e-9);
    }
}
