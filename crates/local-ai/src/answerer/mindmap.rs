//! [`chat::Task::Mindmap`]: a JSON tree `{"label", "children"}` of the sources' key terms.
//!
//! Below the root (the topic): level 1 holds the 3 to 6 key terms of all the sources; level 2,
//! under each, 2 to 4 terms of the sentences holding it (the other level-1 terms left out;
//! terms seen there twice or more when there are enough of them); level 3, the sentences
//! holding both (then others holding the level-2 term), those not yet shown in the branch
//! first, shortened to 80 characters at a word; level 4, other sentences about the same two
//! terms, those sharing most words with their parent first. A branch stops early when the material runs out.
//! Labels are never empty and never repeated among siblings.

use chat::Source;
use serde_json::{Value, json};

use super::keyterms::{KeyTerm, key_terms, top};
use super::text::{self, Corpus};

/// Longest label of a sentence node, in characters.
const SENTENCE_LABEL_CHARS: usize = 80;

/// The mind map of `sources` under `topic`, `depth` (1 to 4) levels deep, as compact JSON.
pub(super) fn mindmap(sources: &[Source], topic: &str, depth: u8) -> String {
    let corpus = Corpus::new(sources);
    let depth = depth.clamp(1, 4);
    let root = match topic.trim() {
        "" => sources
            .first()
            .map(|s| s.document_name.trim())
            .filter(|n| !n.is_empty())
            .unwrap_or("Documents"),
        t => t,
    };
    let all: Vec<usize> = (0..corpus.sentences.len()).collect();
    let level1 = top(key_terms(&corpus, &all, &[], 6), 3, 0.25);
    let taken: Vec<u32> = level1.iter().flat_map(|k| k.terms.clone()).collect();
    let children: Vec<Value> = level1
        .iter()
        .map(|k1| {
            let holding: Vec<usize> = holding(&corpus, &all, &k1.terms);
            let kids = if depth >= 2 {
                let mut shown: Vec<usize> = Vec::new();
                related(&corpus, &holding, &taken)
                    .iter()
                    .map(|k2| {
                        let kids = if depth >= 3 {
                            sentence_nodes(&corpus, k1, k2, depth, &mut shown)
                        } else {
                            Vec::new()
                        };
                        node(&k2.label, kids)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            node(&k1.label, kids)
        })
        .collect();
    node(root, children).to_string()
}

fn node(label: &str, children: Vec<Value>) -> Value {
    json!({ "label": label, "children": children })
}

/// Level 2: 2 to 4 key terms of the sentences `holding` a level-1 term, those seen twice or
/// more when there are at least two of them.
fn related(corpus: &Corpus<'_>, holding: &[usize], taken: &[u32]) -> Vec<KeyTerm> {
    let terms = key_terms(corpus, holding, taken, 16);
    let frequent: Vec<KeyTerm> = terms.iter().filter(|k| k.count >= 2).cloned().collect();
    let terms = if frequent.len() >= 2 { frequent } else { terms };
    // A term seen once: one per sentence (a single long sentence would fill the level).
    let mut from: Vec<usize> = Vec::new();
    let diverse: Vec<KeyTerm> = terms
        .into_iter()
        .filter(|k| {
            if k.count >= 2 {
                return true;
            }
            let first = holding
                .iter()
                .copied()
                .find(|i| corpus.sentences[*i].contains_all(&k.terms));
            match first {
                Some(i) if from.contains(&i) => false,
                Some(i) => {
                    from.push(i);
                    true
                }
                None => false,
            }
        })
        .collect();
    let mut chosen = top(diverse, 2, 0.3);
    chosen.truncate(4);
    chosen
}

/// The sentences of `among` holding every term of `terms`.
fn holding(corpus: &Corpus<'_>, among: &[usize], terms: &[u32]) -> Vec<usize> {
    among
        .iter()
        .copied()
        .filter(|i| corpus.sentences[*i].contains_all(terms))
        .collect()
}

/// Levels 3 (and 4) under the level-2 term `k2` of the level-1 term `k1`; `shown` holds the
/// sentences the branch of `k1` shows already (they come last).
fn sentence_nodes(
    corpus: &Corpus<'_>,
    k1: &KeyTerm,
    k2: &KeyTerm,
    depth: u8,
    shown: &mut Vec<usize>,
) -> Vec<Value> {
    let all: Vec<usize> = (0..corpus.sentences.len()).collect();
    let with_k2 = holding(corpus, &all, &k2.terms);
    // Those holding both terms first, in the sources' order.
    let (mut ordered, rest): (Vec<usize>, Vec<usize>) = with_k2
        .iter()
        .partition(|i| corpus.sentences[**i].contains_all(&k1.terms));
    ordered.extend(rest);
    let (fresh, seen): (Vec<usize>, Vec<usize>) =
        ordered.into_iter().partition(|i| !shown.contains(i));
    let ordered: Vec<usize> = fresh.into_iter().chain(seen).collect();
    let level3 = labelled(corpus, &ordered, 3);
    shown.extend(level3.iter().map(|(i, _)| *i));
    let used: Vec<usize> = level3.iter().map(|(i, _)| *i).collect();
    // Level 4: other sentences about either term, those sharing most other words first.
    let about: Vec<usize> = if depth >= 4 {
        (0..corpus.sentences.len())
            .filter(|j| {
                !used.contains(j)
                    && (corpus.sentences[*j].contains_all(&k1.terms)
                        || corpus.sentences[*j].contains_all(&k2.terms))
            })
            .collect()
    } else {
        Vec::new()
    };
    level3
        .iter()
        .map(|(i, label)| {
            let kids = if depth >= 4 {
                let mine: Vec<u32> = corpus.sentences[*i]
                    .term_set()
                    .into_iter()
                    .filter(|t| !k1.terms.contains(t) && !k2.terms.contains(t))
                    .collect();
                let mut related: Vec<(usize, usize)> = about
                    .iter()
                    .map(|&j| {
                        let shared = corpus.sentences[j]
                            .term_set()
                            .iter()
                            .filter(|t| mine.binary_search(t).is_ok())
                            .count();
                        (j, shared)
                    })
                    .collect();
                related.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let order: Vec<usize> = related.into_iter().map(|(j, _)| j).collect();
                labelled(corpus, &order, 2)
                    .into_iter()
                    .map(|(_, l)| node(&l, Vec::new()))
                    .collect()
            } else {
                Vec::new()
            };
            node(label, kids)
        })
        .collect()
}

/// The first `n` of `sentences` with distinct shortened labels.
fn labelled(corpus: &Corpus<'_>, sentences: &[usize], n: usize) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for &i in sentences {
        if out.len() == n {
            break;
        }
        let label = text::shorten(corpus.sentences[i].text, SENTENCE_LABEL_CHARS);
        if !label.is_empty()
            && !out
                .iter()
                .any(|(_, l)| l.to_lowercase() == label.to_lowercase())
        {
            out.push((i, label));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answerer::tests::source;

    /// Levels below `v`, checking every node on the way.
    fn check(v: &Value) -> usize {
        let label = v["label"].as_str().unwrap();
        assert!(!label.trim().is_empty());
        let children = v["children"].as_array().unwrap();
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        let mut labels: Vec<String> = children
            .iter()
            .map(|c| c["label"].as_str().unwrap().to_lowercase())
            .collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), children.len(), "repeated label under {label}");
        children.iter().map(|c| 1 + check(c)).max().unwrap_or(0)
    }

    pub(crate) fn energy() -> Vec<Source> {
        vec![
            source(
                "S1",
                "Solar panels convert sunlight into electricity. Solar panels work best on south roofs. \
                 Roof installers mount solar panels in one day. Battery storage keeps solar power for the night. \
                 Battery storage costs fell sharply last year.",
            ),
            source(
                "S2",
                "Wind turbines produce electricity on windy coasts. Wind turbines need strong foundations. \
                 Offshore wind farms feed the grid through cables. The grid operator balances wind power and solar power. \
                 Battery storage smooths the output of wind turbines.",
            ),
            source(
                "S3",
                "Heat pumps warm homes with electricity. Heat pumps move heat from outside air. \
                 Grid operators reward heat pumps that run at night. Installers size heat pumps for each home.",
            ),
        ]
    }

    #[test]
    fn the_tree_has_exactly_the_asked_depth() {
        let sources = energy();
        for depth in 1..=4 {
            let out = mindmap(&sources, "Energy", depth);
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["label"], "Energy");
            assert_eq!(check(&v), usize::from(depth), "depth {depth}: {out}");
            let level1 = v["children"].as_array().unwrap();
            assert!((3..=6).contains(&level1.len()), "{out}");
            if depth >= 2 {
                for k in level1 {
                    let n = k["children"].as_array().unwrap().len();
                    assert!((1..=4).contains(&n), "{out}");
                }
            }
        }
        let out = mindmap(&sources, "Energy", 2);
        assert!(
            out.contains("\"solar panels\"") || out.contains("\"heat pumps\""),
            "{out}"
        );
    }

    #[test]
    fn sentence_labels_are_short_and_depth_is_clamped() {
        let out = mindmap(&energy(), "Energy", 9);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(check(&v), 4);
        let mut stack = vec![&v];
        while let Some(n) = stack.pop() {
            assert!(n["label"].as_str().unwrap().chars().count() <= 80 || n == &v);
            stack.extend(n["children"].as_array().unwrap());
        }
    }

    #[test]
    fn no_material_gives_a_bare_root() {
        let out = mindmap(&[], "  ", 3);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"label": "Documents", "children": []}));
    }
}
