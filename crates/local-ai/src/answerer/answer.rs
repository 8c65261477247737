//! [`chat::Task::Answer`]: the sentences of the sources that best answer a question, quoted
//! verbatim, each followed by its source's marker.
//!
//! A sentence scores BM25 over the question's terms (IDF over all the sentences, term
//! frequency saturated, length lightly normalized), plus a bonus when two of the question's
//! terms appear as the same phrase; then a small boost for its source's retrieval score and an
//! early position, a boost when it holds what the question asks for (a date for `when`, a
//! number for `how much`, a person or organization for `who`, a place for `where`, and their
//! Persian forms; more when that is within a few words of a term of the question), and a cut
//! for a fragment of fewer than four words (a heading).
//!
//! The best sentence is kept, then up to three more that are not near-copies of one already
//! kept (overlapping chunks repeat sentences) and either score within 40% of the best while
//! holding three quarters of its term weight, or, for a question of several parts (`… and
//! …`), answer another part (terms no kept sentence holds, a fifth of its weight) within 15%.
//! A sentence that holds less than a fifth of the question's term weight (IDF) is never kept:
//! a question nothing in the sources speaks of gets the honest "not found" text. A sentence
//! longer than 400 characters is quoted by its best clauses (see `text::clip`).

use chat::{Locale, Source};

use super::entities::{Kind, kinds_in};
use super::terms;
use super::text::{self, Corpus, Sentence};

/// The answer when the sources do not hold one (English).
pub(super) const NOT_FOUND_EN: &str = "I could not find this in your documents.";
/// The answer when the sources do not hold one (Persian).
pub(super) const NOT_FOUND_FA: &str = "این را در اسناد شما پیدا نکردم.";

/// Most sentences in an answer.
const MAX_SENTENCES: usize = 4;
/// A sentence below this share of the best one's score is left out…
const RELATIVE_FLOOR: f64 = 0.4;
/// … unless it answers another part of the question and scores at least this share.
const NOVEL_FLOOR: f64 = 0.15;
/// A sentence holding less than this share of the question's term weight is left out (and
/// so is a part of a question).
const MIN_COVERAGE: f64 = 0.2;
/// Sentences sharing at least this share of their terms are near-copies.
const DUPLICATE: f64 = 0.7;
/// BM25's term-frequency saturation and length normalization.
const K1: f64 = 1.2;
const B: f64 = 0.3;
/// A further sentence must hold at least this share of the best one's term weight.
const CLOSE_WEIGHT: f64 = 0.75;
/// Words either side of a question's term where what the question asks for counts as near.
const NEAR_BEFORE: usize = 3;
const NEAR_AFTER: usize = 4;

/// The answer to `question` from `sources`: one quoted sentence per line, each followed by
/// ` [S<n>]`, or the "not found" text in the question's language.
pub(super) fn answer(sources: &[Source], question: &str) -> String {
    let corpus = Corpus::new(sources);
    let lines: Vec<String> = best_sentences(&corpus, sources, question)
        .into_iter()
        .map(|(i, quote)| {
            let source = corpus.sentences[i].source;
            format!("{quote} [{}]", label(sources, source))
        })
        .collect();
    if lines.is_empty() {
        not_found(question).to_owned()
    } else {
        lines.join("\n")
    }
}

/// The "not found" text in the language of `question`.
pub(super) fn not_found(question: &str) -> &'static str {
    match Locale::detect(question) {
        Locale::Fa => NOT_FOUND_FA,
        Locale::En => NOT_FOUND_EN,
    }
}

/// A source's marker: its label, else `S<n>` by its rank.
fn label(sources: &[Source], i: usize) -> String {
    match sources.get(i) {
        Some(s) if !s.label.trim().is_empty() => s.label.trim().to_owned(),
        _ => format!("S{}", i + 1),
    }
}

/// What a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A date (`when`).
    Time,
    /// A number (`how much`, `how many`, `how long`).
    Quantity,
    /// A person or an organization (`who`).
    Name,
    /// A place (`where`).
    Place,
}

/// What `question` asks for, when its wording says.
fn expect(question: &str) -> Option<Expect> {
    let ws: Vec<String> = terms::words(question)
        .map(|(_, w)| terms::fold(w))
        .collect();
    let has = |w: &str| ws.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| ws.windows(2).any(|p| p[0] == a && p[1] == b);
    if has("when") || pair("what", "date") || pair("چه", "زمانی") || pair("چه", "تاریخی")
    {
        Some(Expect::Time)
    } else if pair("how", "much")
        || pair("how", "many")
        || pair("how", "long")
        || has("چقدر")
        || has("چند")
    {
        Some(Expect::Quantity)
    } else if has("who") || has("whom") || pair("چه", "کسی") || has("کیست") {
        Some(Expect::Name)
    } else if has("where") || has("کجا") || has("کجاست") {
        Some(Expect::Place)
    } else {
        None
    }
}

/// Whether `question` asks several things (`… and …`, `…, …`, two question marks).
fn has_several_parts(question: &str) -> bool {
    let q = question.trim().trim_end_matches(['?', '؟', '.', '!']);
    q.contains([',', '،', ';', '؛', '?', '؟'])
        || terms::words(q).any(|(_, w)| {
            let w = terms::fold(w);
            w == "and" || w == "also" || w == "و"
        })
}

/// Number words that answer `how much` without a digit.
const NUMBER_WORDS: &[&str] = &[
    "eight", "eighteen", "eleven", "fifteen", "fifty", "five", "forty", "four", "half", "hundred",
    "million", "nine", "one", "percent", "seven", "six", "sixty", "ten", "thirty", "thousand",
    "three", "twelve", "twenty", "two",
];

/// The boost of a sentence that holds what the question expects: more when it is near one
/// of the question's terms (`the rent is EUR 1,450` for `how much is the rent`).
fn evidence(s: &Sentence<'_>, terms: &[u32], expect: Expect) -> f64 {
    if !holds(s.text, expect) {
        return 1.0;
    }
    let words: Vec<(usize, usize)> = terms::words(s.text)
        .map(|(at, w)| (at, at + w.len()))
        .collect();
    let near = s
        .tokens
        .iter()
        .filter(|k| terms.contains(&k.term))
        .filter_map(|k| words.iter().position(|(at, _)| *at == k.start))
        .any(|i| {
            let from = words[i.saturating_sub(NEAR_BEFORE)].0;
            let to = words[(i + NEAR_AFTER).min(words.len() - 1)].1;
            holds(&s.text[from..to], expect)
        });
    if near { 1.4 } else { 1.15 }
}

/// Whether `sentence` holds what the question expects.
fn holds(sentence: &str, expect: Expect) -> bool {
    match expect {
        Expect::Quantity => {
            sentence.chars().any(char::is_numeric)
                || terms::words(sentence)
                    .any(|(_, w)| NUMBER_WORDS.contains(&w.to_lowercase().as_str()))
        }
        Expect::Time => {
            kinds_in(sentence).contains(&Kind::Date)
                || terms::words(sentence).any(|(_, w)| {
                    w.len() == 4 && w.parse::<u32>().is_ok_and(|y| (1900..=2100).contains(&y))
                })
        }
        Expect::Name => kinds_in(sentence)
            .iter()
            .any(|k| matches!(k, Kind::Person | Kind::Organization)),
        Expect::Place => kinds_in(sentence).contains(&Kind::Place),
    }
}

#[derive(Debug)]
struct Scored {
    sentence: usize,
    score: f64,
    /// The IDF of the question's terms it holds.
    weight: f64,
    /// Indices of the question's terms it holds.
    matched: Vec<usize>,
}

/// The chosen sentences, best first: `(index, quote)`, the quote being the sentence or its
/// best clauses (see [`text::clip`]).
fn best_sentences<'c>(
    corpus: &'c Corpus<'_>,
    sources: &[Source],
    question: &str,
) -> Vec<(usize, &'c str)> {
    let (terms, unknown) = corpus.query(question);
    if terms.is_empty() || corpus.sentences.is_empty() {
        return Vec::new();
    }
    let idf: Vec<f64> = terms.iter().map(|t| corpus.idf(*t)).collect();
    #[allow(clippy::cast_precision_loss)]
    let total = idf.iter().sum::<f64>() + unknown as f64 * corpus.idf_of(0);
    let retrieval = retrieval_weights(sources);
    let expected = expect(question);
    let several_parts = has_several_parts(question);
    #[allow(clippy::cast_precision_loss)]
    let average_len = (corpus
        .sentences
        .iter()
        .map(|s| s.tokens.len())
        .sum::<usize>() as f64
        / corpus.sentences.len() as f64)
        .max(1.0);

    let mut scored: Vec<Scored> = Vec::new();
    for (i, s) in corpus.sentences.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let len = s.tokens.len() as f64;
        let (mut score, mut weight, mut matched) = (0.0, 0.0, Vec::new());
        for (q, (t, w)) in terms.iter().zip(&idf).enumerate() {
            let tf = s.tokens.iter().filter(|k| k.term == *t).count();
            if tf > 0 {
                #[allow(clippy::cast_precision_loss)]
                let tf = tf as f64;
                matched.push(q);
                weight += w;
                score += w * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / average_len));
            }
        }
        if weight < MIN_COVERAGE * total || score <= 0.0 {
            continue;
        }
        // The question's terms as a phrase of the sentence.
        for (pair, w) in terms.windows(2).zip(idf.windows(2)) {
            if s.tokens
                .windows(2)
                .any(|k| k[1].joined && k[0].term == pair[0] && k[1].term == pair[1])
            {
                score += 0.25 * (w[0] + w[1]);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let early = 1.0 / (1.0 + s.position as f64);
        score *= 1.0 + 0.15 * retrieval.get(s.source).copied().unwrap_or(0.0) + 0.1 * early;
        if let Some(e) = expected {
            score *= evidence(s, &terms, e);
        }
        if s.words < 4 {
            score *= 0.1; // a heading: only when nothing else matches
        }
        scored.push(Scored {
            sentence: i,
            score,
            weight,
            matched,
        });
    }
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.sentence.cmp(&b.sentence))
    });

    let weight = |piece: &str| {
        let mut seen: Vec<u32> = Vec::new();
        terms::words(piece)
            .filter_map(|(_, w)| corpus.lookup(w))
            .filter(|t| terms.contains(t))
            .map(|t| {
                if seen.contains(&t) {
                    0.0
                } else {
                    seen.push(t);
                    corpus.idf(t)
                }
            })
            .sum::<f64>()
    };
    let (best, best_weight) = scored.first().map_or((0.0, 0.0), |s| (s.score, s.weight));
    let mut covered = vec![false; terms.len()];
    let mut chosen: Vec<(usize, &str, Vec<u32>)> = Vec::new();
    for s in scored {
        if chosen.len() == MAX_SENTENCES || s.score < NOVEL_FLOOR * best {
            break;
        }
        let novel: f64 = s
            .matched
            .iter()
            .filter(|q| !covered[**q])
            .map(|q| idf[*q])
            .sum();
        let close = s.score >= RELATIVE_FLOOR * best && s.weight >= CLOSE_WEIGHT * best_weight;
        let answers_another_part = several_parts && novel >= MIN_COVERAGE * total;
        if !(close || answers_another_part) {
            continue;
        }
        let sentence = &corpus.sentences[s.sentence];
        let set = sentence.term_set();
        if chosen
            .iter()
            .any(|(_, _, other)| text::overlap(&set, other) >= DUPLICATE)
        {
            continue;
        }
        for q in &s.matched {
            covered[*q] = true;
        }
        let quote = text::clip(sentence.text, weight);
        chosen.push((s.sentence, quote, set));
    }
    chosen.into_iter().map(|(i, q, _)| (i, q)).collect()
}

/// Each source's retrieval score scaled to 0..1 over the request (all 1 when they are
/// equal; 0 for one that is not a number).
fn retrieval_weights(sources: &[Source]) -> Vec<f64> {
    let finite: Vec<f64> = sources
        .iter()
        .map(|s| f64::from(s.score))
        .filter(|s| s.is_finite())
        .collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    sources
        .iter()
        .map(|s| {
            let v = f64::from(s.score);
            if !v.is_finite() {
                0.0
            } else if max - min > 1e-9 {
                (v - min) / (max - min)
            } else {
                1.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::{lease_sources, source};

    /// Each line of an answer: the quote, and the label it cites.
    fn lines(answer: &str) -> Vec<(&str, &str)> {
        answer
            .lines()
            .map(|l| {
                let (quote, marker) = l.rsplit_once(" [").unwrap();
                (quote, marker.trim_end_matches(']'))
            })
            .collect()
    }

    fn assert_quotes_are_verbatim(answer: &str, sources: &[Source]) {
        for (quote, label) in lines(answer) {
            let s = sources.iter().find(|s| s.label == label).unwrap();
            assert!(s.text.contains(quote), "{quote:?} is not in {label}");
            assert_eq!(quote, quote.trim());
            assert!(!quote.is_empty());
        }
    }

    #[test]
    fn the_answering_sentence_wins_over_distractors() {
        let sources = lease_sources();
        let out = answer(&sources, "When does the lease end?");
        let got = lines(&out);
        assert_eq!(got[0], ("The lease ends on 31 March 2027.", "S2"), "{out}");
        assert!(got.len() <= MAX_SENTENCES);
        assert_quotes_are_verbatim(&out, &sources);

        let out = answer(&sources, "How much is the monthly rent?");
        assert_eq!(
            lines(&out)[0],
            (
                "The monthly rent is 1,200 EUR, due on the first day of each month.",
                "S3"
            ),
            "{out}"
        );
        assert_quotes_are_verbatim(&out, &sources);
    }

    #[test]
    fn a_question_of_two_parts_gets_both_sentences() {
        let sources = lease_sources();
        let out = answer(
            &sources,
            "When does the lease end, and how much is the rent?",
        );
        let labels: Vec<&str> = lines(&out).iter().map(|(_, l)| *l).collect();
        assert!(labels.contains(&"S2") && labels.contains(&"S3"), "{out}");
        assert_quotes_are_verbatim(&out, &sources);
    }

    #[test]
    fn a_persian_question_over_a_persian_source() {
        let sources = vec![
            source(
                "S1",
                "ساختمان دارای پارکینگ و انباری است. آسانسور هر سال بازرسی می‌شود.",
            ),
            source(
                "S2",
                "قرارداد اجاره در تاریخ ۳۱ اسفند ۱۴۰۵ به پایان می‌رسد. مبلغ اجاره ماهانه بیست میلیون تومان است.",
            ),
        ];
        let out = answer(&sources, "قرارداد اجاره چه زمانی به پایان می‌رسد؟");
        assert_eq!(
            lines(&out)[0],
            ("قرارداد اجاره در تاریخ ۳۱ اسفند ۱۴۰۵ به پایان می‌رسد.", "S2"),
            "{out}"
        );
        assert_quotes_are_verbatim(&out, &sources);
    }

    #[test]
    fn no_match_gives_the_fixed_text_in_the_question_language() {
        let sources = lease_sources();
        assert_eq!(
            answer(&sources, "Who won the football world cup?"),
            NOT_FOUND_EN
        );
        assert_eq!(answer(&sources, "پایتخت فرانسه کجاست؟"), NOT_FOUND_FA);
        assert_eq!(answer(&[], "When does the lease end?"), NOT_FOUND_EN);
        assert_eq!(answer(&sources, "what is it?"), NOT_FOUND_EN);
    }

    #[test]
    fn near_duplicates_from_overlapping_chunks_are_quoted_once() {
        let text = "The deposit is two months of rent. It is returned within 30 days.";
        let sources = vec![source("S1", text), source("S2", text)];
        let out = answer(&sources, "What is the deposit?");
        assert_eq!(
            lines(&out),
            [("The deposit is two months of rent.", "S1")],
            "{out}"
        );
    }

    #[test]
    fn a_long_sentence_is_cut_to_its_relevant_clauses() {
        let filler = "the landlord shall maintain the common areas in good order, ".repeat(6);
        let text = format!(
            "Under this agreement {filler}the security deposit amounts to two months of rent, {filler}as agreed."
        );
        let sources = vec![source("S1", &text)];
        let out = answer(&sources, "How large is the security deposit?");
        let (quote, label) = lines(&out)[0];
        assert_eq!(label, "S1");
        assert!(
            quote.contains("security deposit amounts to two months"),
            "{quote}"
        );
        assert!(quote.chars().count() <= text::MAX_QUOTE_CHARS);
        assert_quotes_are_verbatim(&out, &sources);
    }

    #[test]
    fn questions_say_what_they_expect() {
        assert_eq!(expect("When does the lease end?"), Some(Expect::Time));
        assert_eq!(expect("How much is the rent?"), Some(Expect::Quantity));
        assert_eq!(expect("Who is the landlord?"), Some(Expect::Name));
        assert_eq!(expect("Where is the flat?"), Some(Expect::Place));
        assert_eq!(expect("قرارداد چه زمانی تمام می‌شود؟"), Some(Expect::Time));
        assert_eq!(expect("اجاره چقدر است؟"), Some(Expect::Quantity));
        assert_eq!(expect("Is the rent due monthly?"), None);
        assert!(has_several_parts(
            "When does it end, and what does it cost?"
        ));
        assert!(has_several_parts("اجاره چقدر است و کی تمام می‌شود؟"));
        assert!(!has_several_parts("Who pays for water?"));
        assert!(holds("It ends on 31 March 2027.", Expect::Time));
        assert!(holds("It ended in 2019.", Expect::Time));
        assert!(!holds("It ends soon.", Expect::Time));
        assert!(holds("It costs two months of rent.", Expect::Quantity));
        assert!(holds("It is signed by Acme Corp today.", Expect::Name));
        assert!(holds("The flat is in Lisbon.", Expect::Place));
        assert!(!holds("The flat is nice.", Expect::Place));
    }

    #[test]
    fn the_expected_kind_of_answer_wins_a_tie() {
        let sources = vec![
            source("S1", "The rent is paid by bank transfer to the landlord."),
            source("S2", "The rent is 1,450 EUR and is paid to the landlord."),
        ];
        let out = answer(&sources, "How much is the rent?");
        assert_eq!(lines(&out)[0].1, "S2", "{out}");
        let out = answer(&sources, "How is the rent paid?");
        assert_eq!(lines(&out)[0].1, "S1", "{out}");
    }

    #[test]
    fn headings_lose_to_sentences() {
        let sources = vec![source(
            "S1",
            "Security Deposit\nThe tenant pays a security deposit of two months of rent.",
        )];
        let out = answer(&sources, "What is the security deposit?");
        assert_eq!(
            out,
            "The tenant pays a security deposit of two months of rent. [S1]"
        );
    }

    #[test]
    fn retrieval_weights_scale_to_unit() {
        let mut sources = lease_sources();
        sources[0].score = 0.2;
        sources[1].score = 0.6;
        sources[2].score = f32::NAN;
        let w = retrieval_weights(&sources);
        assert!(w[0].abs() < 1e-9 && (w[1] - 1.0).abs() < 1e-9 && w[2].abs() < 1e-9);
    }
}
