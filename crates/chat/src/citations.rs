//! Verification of what a model cites.
//!
//! A model cites a source by its label in square brackets after the sentence it supports
//! (`… ends in March. [S2]`); a chunk id in brackets is accepted too. Each citation is
//! checked against the cited chunk's text:
//! 1. the sentence before the marker occurs in the chunk (compared case-insensitively, with
//!    whitespace and markdown emphasis ignored): the quote is that passage of the chunk;
//! 2. else the chunk sentence sharing the most content words with it, when it holds at least
//!    half of them: the quote is that sentence;
//! 3. else the citation is dropped (a label not in the prompt is dropped too).
//!
//! Every quote is cut from the chunk itself, so it occurs there by construction, with its
//! character offsets; it is returned neutralized ([`crate::neutralize`]): a chunk's markup
//! reaches no client as markup.

use std::collections::HashSet;

use crate::model::{Citation, Source};

/// A citation marker found in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    /// What was inside the brackets.
    id: String,
    /// Byte offset of `[` in the answer.
    at: usize,
}

/// The markers of `answer`, in order: `[S1]`, `[S1, S3]`, `[s2]`, `[<uuid>]`.
fn markers(answer: &str) -> Vec<Marker> {
    let mut out = Vec::new();
    let bytes = answer.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some(len) = answer[i + 1..].find(']')
            && len <= 200
        {
            let inner = &answer[i + 1..i + 1 + len];
            let ids: Vec<&str> = inner
                .split([',', ';'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if !ids.is_empty() && ids.iter().all(|id| is_label(id) || is_uuid(id)) {
                for id in ids {
                    out.push(Marker {
                        id: id.to_ascii_uppercase(),
                        at: i,
                    });
                }
                i += len + 2;
                continue;
            }
        }
        i += answer[i..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

fn is_label(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('S' | 's'))
        && s.len() > 1
        && s.len() <= 4
        && chars.all(|c| c.is_ascii_digit())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Removes every citation marker from `answer` (for summaries of an answer, previews).
#[must_use]
pub fn strip_markers(answer: &str) -> String {
    let ms = markers(answer);
    if ms.is_empty() {
        return answer.to_owned();
    }
    let mut out = String::with_capacity(answer.len());
    let mut last = 0;
    let mut seen = HashSet::new();
    for m in &ms {
        if !seen.insert(m.at) {
            continue;
        }
        out.push_str(&answer[last..m.at]);
        last = m.at + answer[m.at..].find(']').map_or(0, |e| e + 1);
    }
    out.push_str(&answer[last..]);
    out
}

/// The claim a marker at byte `at` supports: the text since the previous sentence end or
/// marker.
fn claim_before(answer: &str, at: usize) -> &str {
    let before = &answer[..at];
    let trimmed = before.trim_end();
    // Skip the sentence end right before the marker ("… March. [S2]").
    let body = trimmed.trim_end_matches(['.', '!', '?', '؟', '۔', ':', ';']);
    let start = body
        .char_indices()
        .rev()
        .find(|&(_, c)| matches!(c, '.' | '!' | '?' | '؟' | '۔' | '\n' | ']'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    body[start..].trim()
}

/// Lowercased, whitespace-collapsed form of `text` without markdown emphasis, with a map from
/// each normalized char back to its char index in `text`.
fn normalize(text: &str) -> (Vec<char>, Vec<usize>) {
    let mut chars = Vec::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    let mut space = true;
    for (ci, c) in text.chars().enumerate() {
        if matches!(
            c,
            '*' | '_' | '`' | '"' | '\u{201C}' | '\u{201D}' | '\u{200C}'
        ) {
            continue;
        }
        if c.is_whitespace() {
            if !space {
                chars.push(' ');
                map.push(ci);
                space = true;
            }
            continue;
        }
        space = false;
        for l in c.to_lowercase() {
            chars.push(l);
            map.push(ci);
        }
    }
    while chars.last() == Some(&' ') {
        chars.pop();
        map.pop();
    }
    (chars, map)
}

fn find(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The char range `start..end` of `text`.
fn slice_chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Sentences of `text` as char ranges.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in chars.iter().enumerate() {
        let end = matches!(c, '.' | '!' | '?' | '؟' | '۔' | '\n')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if end {
            push_trimmed(&chars, start, i + 1, &mut out);
            start = i + 1;
        }
    }
    push_trimmed(&chars, start, chars.len(), &mut out);
    out
}

fn push_trimmed(chars: &[char], mut s: usize, mut e: usize, out: &mut Vec<(usize, usize)>) {
    while s < e && chars[s].is_whitespace() {
        s += 1;
    }
    while e > s && chars[e - 1].is_whitespace() {
        e -= 1;
    }
    if e > s {
        out.push((s, e));
    }
}

/// Where `claim` is supported in `text`: a char range of `text`.
fn support(text: &str, claim: &str) -> Option<(usize, usize)> {
    let (hay, map) = normalize(text);
    let (needle, _) = normalize(claim);
    if needle.len() >= 12
        && let Some(p) = find(&hay, &needle)
    {
        return Some((map[p], map[p + needle.len() - 1] + 1));
    }
    let claim_words = content_words(claim);
    if claim_words.is_empty() {
        return None;
    }
    let mut best: Option<(usize, (usize, usize))> = None;
    for (s, e) in sentences(text) {
        let words = content_words(&slice_chars(text, s, e));
        let shared = claim_words.intersection(&words).count();
        if best.is_none_or(|(b, _)| shared > b) {
            best = Some((shared, (s, e)));
        }
    }
    let (shared, range) = best?;
    (shared * 2 >= claim_words.len() && shared >= 1).then_some(range)
}

/// The verified citations of `answer` against the sources its prompt held, in order of first
/// appearance, one per chunk and quote. Also returns how many were dropped.
#[must_use]
pub fn verify(answer: &str, sources: &[Source]) -> (Vec<Citation>, usize) {
    let mut out: Vec<Citation> = Vec::new();
    let mut dropped = 0;
    for m in markers(answer) {
        let source = sources.iter().find(|s| {
            s.label.eq_ignore_ascii_case(&m.id)
                || s.chunk_id.to_string().eq_ignore_ascii_case(&m.id)
        });
        let Some(source) = source else {
            dropped += 1;
            continue;
        };
        let claim = claim_before(answer, m.at);
        let Some((start, end)) = support(&source.text, claim) else {
            dropped += 1;
            continue;
        };
        let (start_u32, end_u32) = (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(end).unwrap_or(u32::MAX),
        );
        if out
            .iter()
            .any(|c| c.chunk_id == source.chunk_id && c.start == start_u32)
        {
            continue;
        }
        out.push(Citation {
            chunk_id: source.chunk_id,
            document_id: source.document_id,
            document_name: source.document_name.clone(),
            page: source.page,
            quote: crate::neutralize::neutralize(&slice_chars(&source.text, start, end)),
            score: source.score,
            start: start_u32,
            end: end_u32,
        });
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use documents::{ChunkId, DocumentId};

    use super::*;

    fn source(label: &str, text: &str) -> Source {
        Source {
            label: label.into(),
            chunk_id: ChunkId::new(),
            document_id: DocumentId::new(),
            document_name: "doc.pdf".into(),
            page: None,
            text: text.into(),
            score: 0.9,
        }
    }

    #[test]
    fn exact_quote_is_verified_with_offsets() {
        let s = source(
            "S1",
            "Preamble here.  The lease   ends on 31 March 2027. Other things.",
        );
        let (c, dropped) = verify(
            "The lease ends on 31 March 2027. [S1]",
            std::slice::from_ref(&s),
        );
        assert_eq!(dropped, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].quote, "The lease   ends on 31 March 2027");
        let chars: Vec<char> = s.text.chars().collect();
        let at: String = chars[c[0].start as usize..c[0].end as usize]
            .iter()
            .collect();
        assert_eq!(at, c[0].quote);
    }

    #[test]
    fn paraphrase_maps_to_the_supporting_sentence() {
        let s = source(
            "S2",
            "Rent is paid monthly. Pets are not allowed in the flat.",
        );
        let (c, _) = verify("The flat does not allow pets [S2].", &[s]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].quote, "Pets are not allowed in the flat.");
    }

    #[test]
    fn unsupported_and_unknown_citations_are_dropped() {
        let s = source("S1", "Rent is paid monthly.");
        let (c, dropped) = verify(
            "The moon is made of cheese [S1]. Also this [S9]. And [S1, S2].",
            &[s],
        );
        assert!(c.is_empty());
        assert_eq!(dropped, 4);
    }

    #[test]
    fn markers_parse_lists_and_ignore_other_brackets() {
        let a = "See [1] and [note]. Fact [S1, s2][S3].";
        let ids: Vec<String> = markers(a).into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec!["S1", "S2", "S3"]);
        assert_eq!(strip_markers(a), "See [1] and [note]. Fact .");
    }

    #[test]
    fn persian_quote() {
        let s = source("S1", "مهلت پرداخت اجاره پنجم هر ماه است. موارد دیگر.");
        let (c, _) = verify("مهلت پرداخت اجاره پنجم هر ماه است [S1]", &[s]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].quote, "مهلت پرداخت اجاره پنجم هر ماه است");
    }

    #[test]
    fn chunk_id_markers_work() {
        let s = source("S1", "Water boils at 100 degrees at sea level.");
        let answer = format!("Water boils at 100 degrees at sea level [{}].", s.chunk_id);
        let (c, _) = verify(&answer, &[s]);
        assert_eq!(c.len(), 1);
    }
}
