//! What the local models' tests share: a small paraphrase set and the vector arithmetic.

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

pub const DOCS: &[&str] = &[
    "The committee approved the annual budget after a long debate about spending.",
    "Our cat sleeps on the windowsill every afternoon in the sun.",
    "Heavy rain and strong winds are expected along the coast tomorrow.",
    "The new vaccine reduced hospital admissions among older patients.",
    "She repaired the bicycle's flat tyre with a patch kit.",
];

/// Paraphrases that share (almost) no word with their document.
pub const QUERIES: &[(&str, usize)] = &[
    ("council passes yearly financial plan", 0),
    ("where does the kitty nap", 1),
    ("storm forecast for the seaside", 2),
    ("immunisation keeps elderly people out of hospitals", 3),
    ("fixing a punctured bike wheel", 4),
];

/// `docs` by their similarity to `q`, best first: `(index, similarity)`.
pub fn ranked(q: &[f32], docs: &[Vec<f32>]) -> Vec<(usize, f32)> {
    let mut scored: Vec<(usize, f32)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (i, dot(q, d)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored
}
