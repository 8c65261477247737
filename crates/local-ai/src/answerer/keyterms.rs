//! Key terms of a set of sentences: words and two-word phrases ranked by TF-IDF (their count
//! among the sentences times their IDF over all the sentences), for keywords and the mind map.
//!
//! A phrase is two content words written next to each other (`lease term`); one that occurs
//! at least twice, and in at least half of its word's uses, stands for the word (`lease term`
//! rather than `lease`). Numbers are never key terms. Terms are taken best first, never two
//! sharing a word, and labelled as they are most often written.

use std::collections::HashMap;

use super::text::Corpus;

/// A key term.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KeyTerm {
    /// Its term ids: one word, or a phrase of two.
    pub terms: Vec<u32>,
    /// How it is written.
    pub label: String,
    /// Its TF-IDF weight.
    pub score: f64,
    /// How many times it occurs among the sentences.
    pub count: u32,
}

/// The best `limit` key terms of the sentences `among`, leaving out the terms `exclude`.
pub(super) fn key_terms(
    corpus: &Corpus<'_>,
    among: &[usize],
    exclude: &[u32],
    limit: usize,
) -> Vec<KeyTerm> {
    let eligible = |t: u32| !exclude.contains(&t) && !corpus.is_numeric(t);
    let mut words: HashMap<u32, (u32, usize)> = HashMap::new();
    let mut phrases: HashMap<(u32, u32), (u32, usize)> = HashMap::new();
    let mut seen = 0usize;
    for s in among.iter().filter_map(|i| corpus.sentences.get(*i)) {
        for (k, token) in s.tokens.iter().enumerate() {
            seen += 1;
            let t = token.term;
            if !eligible(t) {
                continue;
            }
            words.entry(t).or_insert((0, seen)).0 += 1;
            if k > 0 && token.joined {
                let p = s.tokens[k - 1].term;
                if p != t && eligible(p) {
                    phrases.entry((p, t)).or_insert((0, seen - 1)).0 += 1;
                }
            }
        }
    }

    // The most frequent phrase of each word (the first seen on a tie).
    let mut best_phrase: HashMap<u32, ((u32, u32), u32, usize)> = HashMap::new();
    for (&pair, &(count, first)) in &phrases {
        if count < 2 {
            continue;
        }
        for t in [pair.0, pair.1] {
            let better = best_phrase
                .get(&t)
                .is_none_or(|(_, c, f)| count > *c || (count == *c && first < *f));
            if better {
                best_phrase.insert(t, (pair, count, first));
            }
        }
    }
    let phrase_score =
        |(a, b): (u32, u32), count: u32| f64::from(count) * (corpus.idf(a) + corpus.idf(b)) * 0.6;

    // (terms, score, first seen, count)
    let mut candidates: Vec<(Vec<u32>, f64, usize, u32)> = Vec::new();
    for (&t, &(count, first)) in &words {
        let score = f64::from(count) * corpus.idf(t);
        match best_phrase.get(&t) {
            Some(&(pair, c, f)) if 2 * c >= count => {
                let s = phrase_score(pair, c).max(score);
                candidates.push((vec![pair.0, pair.1], s, first.min(f), c));
            }
            _ => candidates.push((vec![t], score, first, count)),
        }
    }
    for (&pair, &(count, first)) in &phrases {
        if count >= 2 {
            candidates.push((
                vec![pair.0, pair.1],
                phrase_score(pair, count),
                first,
                count,
            ));
        }
    }
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));

    let mut out: Vec<KeyTerm> = Vec::new();
    for (terms, score, _, count) in candidates {
        if out.len() == limit {
            break;
        }
        if out
            .iter()
            .any(|k| k.terms.iter().any(|t| terms.contains(t)))
        {
            continue;
        }
        let label = corpus.surface(&terms);
        if label.chars().count() < 2
            || out
                .iter()
                .any(|k| k.label.to_lowercase() == label.to_lowercase())
        {
            continue;
        }
        out.push(KeyTerm {
            terms,
            label,
            score,
            count,
        });
    }
    out
}

/// The first `min` of `terms`, and any after them scoring at least `floor` times the best.
pub(super) fn top(terms: Vec<KeyTerm>, min: usize, floor: f64) -> Vec<KeyTerm> {
    let best = terms.first().map_or(0.0, |k| k.score);
    terms
        .into_iter()
        .enumerate()
        .filter(|(i, k)| *i < min || k.score >= floor * best)
        .map(|(_, k)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    #[test]
    fn frequent_phrases_stand_for_their_words() {
        let sources = [source(
            "S1",
            "The lease term is two years. The lease term can be extended. \
             Rent is paid monthly. Rent rises each year. Parking is included. \
             The tenant pays rent in 2027 and 2028.",
        )];
        let corpus = Corpus::new(&sources);
        let all: Vec<usize> = (0..corpus.sentences.len()).collect();
        let terms = key_terms(&corpus, &all, &[], 10);
        let labels: Vec<&str> = terms.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels[..2], ["lease term", "rent"], "{labels:?}");
        assert!(
            !labels.contains(&"lease") && !labels.contains(&"term"),
            "{labels:?}"
        );
        assert!(!labels.iter().any(|l| l.starts_with("202")), "{labels:?}");
        assert!(terms.windows(2).all(|w| w[0].score >= w[1].score));
        // Excluded terms are left out; limits hold.
        let rent = corpus.lookup("rent").unwrap();
        let without = key_terms(&corpus, &all, &[rent], 2);
        assert_eq!(without.len(), 2);
        assert!(without.iter().all(|k| k.label != "rent"));
        assert_eq!(top(terms, 1, 10.0).len(), 1);
    }
}
