//! [`chat::Task::Summarize`]: the most central sentences of the sources, in their order.
//!
//! Each sentence is a TF-IDF vector of its terms (sublinear term frequency, IDF over the
//! sentences), normalized; its centrality is its cosine to the sum of all of them (the
//! centroid: what the sources are mostly about). Fragments of fewer than five words
//! (headings, table cells) count half, what is not prose (no function word, or a web address)
//! a third, and a source's first sentences get a small boost (a text tends to open with what
//! it is about). The top sentences are taken best first, skipping near-copies of one already
//! taken, then put back in the sources' order.

use chat::{Locale, Source, SummaryStyle};

use super::text::{self, Corpus};

/// The summary when the sources hold no text (English).
pub(super) const EMPTY_EN: &str = "There is no text in these documents to summarize.";
/// The summary when the sources hold no text (Persian).
pub(super) const EMPTY_FA: &str = "در این اسناد متنی برای خلاصه کردن نیست.";

/// Sentences sharing at least this share of their terms are near-copies.
const DUPLICATE: f64 = 0.6;

/// How many sentences a style takes.
pub(super) const fn sentences_for(style: SummaryStyle) -> usize {
    match style {
        SummaryStyle::Concise => 3,
        SummaryStyle::Detailed => 8,
        SummaryStyle::Bullets => 5,
    }
}

/// The extractive summary of `sources` in `style` (`locale` is the language of the text
/// used when there is nothing to summarize).
pub(super) fn summarize(sources: &[Source], style: SummaryStyle, locale: Locale) -> String {
    let corpus = Corpus::new(sources);
    let picked = central_sentences(&corpus, sentences_for(style));
    if picked.is_empty() {
        return match locale {
            Locale::Fa => EMPTY_FA,
            Locale::En => EMPTY_EN,
        }
        .to_owned();
    }
    let quote = |i: usize| text::clip(corpus.sentences[i].text, |_| 0.0);
    match style {
        SummaryStyle::Bullets => picked
            .iter()
            .map(|i| format!("- {}", quote(*i)))
            .collect::<Vec<_>>()
            .join("\n"),
        SummaryStyle::Concise => picked
            .iter()
            .map(|i| quote(*i))
            .collect::<Vec<_>>()
            .join(" "),
        SummaryStyle::Detailed => {
            // A paragraph per document.
            let mut out = String::new();
            let mut document = None;
            for i in picked {
                let d = sources
                    .get(corpus.sentences[i].source)
                    .map(|s| s.document_id);
                if !out.is_empty() {
                    out.push_str(if d == document { " " } else { "\n\n" });
                }
                document = d;
                out.push_str(quote(i));
            }
            out
        }
    }
}

/// Whether a sentence reads as prose: it has a function word (`the`, `of`, `و` …) and no
/// web address (not a link, a table row or a list of names).
fn is_prose(s: &text::Sentence<'_>) -> bool {
    s.words > s.tokens.len() && !s.text.contains("://") && !s.text.contains("www.")
}

/// The `n` most central sentences' indices, in the sources' order.
pub(super) fn central_sentences(corpus: &Corpus<'_>, n: usize) -> Vec<usize> {
    let vectors: Vec<Vec<(u32, f64)>> = corpus
        .sentences
        .iter()
        .map(|s| {
            let mut terms: Vec<u32> = s.tokens.iter().map(|t| t.term).collect();
            terms.sort_unstable();
            let mut v: Vec<(u32, f64)> = Vec::new();
            for t in terms {
                match v.last_mut() {
                    Some((last, tf)) if *last == t => *tf += 1.0,
                    _ => v.push((t, 1.0)),
                }
            }
            for (t, w) in &mut v {
                *w = (1.0 + w.ln()) * corpus.idf(*t);
            }
            let norm = v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (_, w) in &mut v {
                    *w /= norm;
                }
            }
            v
        })
        .collect();
    let mut centroid = vec![0.0f64; corpus.term_count()];
    for v in &vectors {
        for (t, w) in v {
            centroid[*t as usize] += w;
        }
    }
    let norm = centroid.iter().map(|w| w * w).sum::<f64>().sqrt();
    if norm <= 0.0 {
        return Vec::new();
    }
    let mut scored: Vec<(usize, f64)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = &corpus.sentences[i];
            let mut score = v
                .iter()
                .map(|(t, w)| w * centroid[*t as usize])
                .sum::<f64>()
                / norm;
            if s.words < 5 {
                score *= 0.5;
            }
            if !is_prose(s) {
                score *= 0.3;
            }
            #[allow(clippy::cast_precision_loss)]
            let early = 1.0 / (1.0 + s.position as f64);
            (i, score * (1.0 + 0.1 * early))
        })
        .filter(|(_, score)| *score > 0.0)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut picked: Vec<(usize, Vec<u32>)> = Vec::new();
    for (i, _) in scored {
        if picked.len() == n {
            break;
        }
        let set = corpus.sentences[i].term_set();
        if picked
            .iter()
            .all(|(_, other)| text::overlap(&set, other) < DUPLICATE)
        {
            picked.push((i, set));
        }
    }
    let mut out: Vec<usize> = picked.into_iter().map(|(i, _)| i).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    /// A text about solar energy with two off-topic sentences.
    fn solar() -> Vec<Source> {
        vec![
            source(
                "S1",
                "Solar panels convert sunlight into electricity for homes. \
                 My cat likes to sleep on the warm windowsill. \
                 Modern solar panels produce more electricity from the same sunlight.",
            ),
            source(
                "S2",
                "Homes with solar panels export surplus electricity to the grid. \
                 The bakery on the corner sells fresh bread. \
                 Batteries store solar electricity for the evening.",
            ),
        ]
    }

    #[test]
    fn central_sentences_win_and_keep_their_order() {
        let sources = solar();
        let out = summarize(&sources, SummaryStyle::Concise, Locale::En);
        assert!(!out.contains("cat") && !out.contains("bakery"), "{out}");
        // Three sentences, each verbatim, in the sources' order.
        let all: Vec<&str> = sources
            .iter()
            .flat_map(|s| text::split_sentences(&s.text))
            .map(|(_, s)| s)
            .collect();
        let mut at = 0;
        let mut count = 0;
        for s in &all {
            if let Some(found) = out[at..].find(s) {
                at += found + s.len();
                count += 1;
            }
        }
        assert_eq!(count, 3, "{out}");
        assert_eq!(out.len(), at, "{out}");
    }

    #[test]
    fn bullets_are_lines_with_dashes() {
        let out = summarize(&solar(), SummaryStyle::Bullets, Locale::En);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        for l in &lines {
            let s = l.strip_prefix("- ").unwrap();
            assert!(solar().iter().any(|src| src.text.contains(s)), "{l}");
        }
        // The off-topic sentences rank last: with five of six taken one is out.
        assert!(!(out.contains("cat") && out.contains("bakery")), "{out}");
    }

    #[test]
    fn detailed_takes_up_to_eight_with_a_paragraph_per_document() {
        let mut sources = solar();
        sources[1].document_id = sources[0].document_id;
        let one = summarize(&sources, SummaryStyle::Detailed, Locale::En);
        assert!(!one.contains('\n'), "{one}");
        // All six sentences (fewer than eight).
        assert!(one.contains("cat") && one.contains("bakery"), "{one}");
        sources[1].document_id = Default::default();
        let two = summarize(&sources, SummaryStyle::Detailed, Locale::En);
        assert_eq!(two.matches("\n\n").count(), 1, "{two}");
        assert_eq!(two.replace("\n\n", " "), one);
    }

    #[test]
    fn nothing_to_summarize() {
        assert_eq!(summarize(&[], SummaryStyle::Concise, Locale::En), EMPTY_EN);
        assert_eq!(
            summarize(&[source("S1", " -- ")], SummaryStyle::Bullets, Locale::Fa),
            EMPTY_FA
        );
    }

    #[test]
    fn near_copies_are_taken_once() {
        let text =
            "Solar panels convert sunlight into electricity. Batteries store the electricity.";
        let sources = vec![source("S1", text), source("S2", text)];
        let out = summarize(&sources, SummaryStyle::Bullets, Locale::En);
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}
