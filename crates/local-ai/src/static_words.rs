//! [`StaticEmbedder`]: `quire-local-static`, a static (Model2Vec-style) embedder distilled
//! from the bundled semantic model.
//!
//! Each word's vector is the bundled model's (`quire-local-minilm`, paraphrase-MiniLM-L3-v2)
//! vector of the word alone; a text's vector is the weighted mean of its words' vectors,
//! L2-normalized. The table is not built ahead: a word is run through the model the first
//! time it is met (a forward pass of a few word pieces) and kept in a process-wide table, so
//! a text of known words costs lookups and additions, as the n-gram model's features do.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::{anyhow, bail};
use retrieval::{EmbeddingModel, Embeddings};

use crate::features::{STOP_WORDS, is_stop_word};
use crate::sentence::{encoder, prefix};

/// The name of the static model.
pub const STATIC_MODEL: &str = "quire-local-static";

/// Its dimension (the bundled model's).
const DIMS: usize = 384;

/// Words longer than this (bytes) are cut: a long run of letters is a code or an
/// identifier, whose beginning says as much as its end.
const MAX_WORD: usize = 48;

/// Words kept in the process-wide table (about 1.5 KB each: ~150 MB at most). Past it the
/// table is emptied and refills: vectors stay the same, only slower for a while.
const TABLE_CAP: usize = 100_000;

type Table = RwLock<HashMap<String, Arc<[f32]>>>;

/// The process-wide word table: every instance shares it (a vector depends only on its
/// word).
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// The words of a text with their counts, in first-seen order: lowercase runs of letters
/// and digits, function words left out (unless there is nothing else), cut at [`MAX_WORD`].
fn words(text: &str) -> Vec<(String, u32)> {
    let lower = text.to_lowercase();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for keep_stop_words in [false, true] {
        for w in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !keep_stop_words && is_stop_word(w) {
                continue;
            }
            let w = prefix(w, MAX_WORD);
            let n = counts.entry(w).or_insert(0);
            if *n == 0 {
                order.push(w);
            }
            *n += 1;
        }
        if !order.is_empty() {
            break;
        }
    }
    order
        .into_iter()
        .map(|w| (w.to_owned(), counts.get(w).copied().unwrap_or(1)))
        .collect()
}

/// The static embedder (see the module). Deterministic: a text's vector depends only on its
/// words, never on what was embedded before.
#[derive(Debug, Clone)]
pub struct StaticEmbedder {
    model: EmbeddingModel,
}

impl Default for StaticEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl StaticEmbedder {
    /// The model (the bundled weights are expanded on the first word).
    #[must_use]
    pub fn new() -> Self {
        // A constant name and 384 dimensions: always valid.
        let model = EmbeddingModel::new(STATIC_MODEL, DIMS as u32)
            .unwrap_or_else(|e| unreachable!("the static model's name: {e}"));
        Self { model }
    }

    /// Words in the process-wide table now.
    #[must_use]
    pub fn known_words() -> usize {
        table().read().map_or(0, |t| t.len())
    }

    /// The vectors of the words of `wanted` not yet in the table, computed and added.
    fn learn(wanted: &[&str]) -> anyhow::Result<()> {
        let missing: Vec<&str> = {
            let t = table()
                .read()
                .map_err(|_| anyhow!("the word table is poisoned"))?;
            wanted
                .iter()
                .copied()
                .filter(|w| !t.contains_key(*w))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let common = common()?;
        let mut learnt = Vec::with_capacity(missing.len());
        for part in missing.chunks(256) {
            for (w, v) in part.iter().zip(raw_vectors(part)?) {
                learnt.push(((*w).to_owned(), Arc::<[f32]>::from(without(v, common))));
            }
        }
        let mut t = table()
            .write()
            .map_err(|_| anyhow!("the word table is poisoned"))?;
        if t.len() + learnt.len() > TABLE_CAP {
            t.clear();
        }
        t.extend(learnt);
        Ok(())
    }

    /// The vectors of `inputs` and their `cl100k_base` token count, on this thread (a text
    /// without letters or digits gets the zero vector).
    ///
    /// # Errors
    /// An inference failure of the bundled model.
    pub fn embed_now(&self, inputs: &[String]) -> anyhow::Result<Embeddings> {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let tokens = inputs.iter().map(|t| bpe.count_ordinary(t) as u64).sum();
        let texts: Vec<Vec<(String, u32)>> = inputs.iter().map(|t| words(t)).collect();
        let mut wanted: Vec<&str> = texts
            .iter()
            .flat_map(|ws| ws.iter().map(|(w, _)| w.as_str()))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        Self::learn(&wanted)?;
        let mut vectors = Vec::with_capacity(inputs.len());
        for ws in &texts {
            let mut sum = vec![0.0f32; DIMS];
            let mut missing = Vec::new();
            {
                let t = table()
                    .read()
                    .map_err(|_| anyhow!("the word table is poisoned"))?;
                for (w, n) in ws {
                    match t.get(w) {
                        Some(v) => add(&mut sum, v, weight(*n)),
                        None => missing.push((w.clone(), *n)),
                    }
                }
            }
            // Words the table dropped meanwhile (it was full): computed again.
            for (w, n) in &missing {
                if let Some(v) = raw_vectors(&[w.as_str()])?.pop() {
                    add(&mut sum, &without(v, common()?), weight(*n));
                }
            }
            vectors.push(normalized(sum));
        }
        Ok(Embeddings { vectors, tokens })
    }
}

/// The bundled model's vectors of `words`, each alone.
fn raw_vectors(words: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    let out = encoder()?
        .embed(words)
        .map_err(|e| anyhow!("{STATIC_MODEL}: {e}"))?;
    if out.iter().any(|v| v.len() != DIMS) {
        bail!("{STATIC_MODEL}: a word vector of another dimension than {DIMS}");
    }
    Ok(out)
}

/// The direction every word vector shares (the model's vector of a lone word carries its
/// `[CLS]` and `[SEP]` and what any word has): the normalized mean of the function words'
/// vectors, computed once. Removing it from each word (as SIF removes the first principal
/// component) leaves what tells words apart.
fn common() -> anyhow::Result<&'static [f32]> {
    static COMMON: OnceLock<Result<Vec<f32>, String>> = OnceLock::new();
    COMMON
        .get_or_init(|| {
            let vectors = raw_vectors(STOP_WORDS).map_err(|e| format!("{e:#}"))?;
            let mut mean = vec![0.0f32; DIMS];
            for v in &vectors {
                add(&mut mean, v, 1.0);
            }
            Ok(normalized(mean))
        })
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

/// `v` without its component along the unit vector `c`.
fn without(mut v: Vec<f32>, c: &[f32]) -> Vec<f32> {
    let along: f32 = v.iter().zip(c).map(|(x, y)| x * y).sum();
    for (x, y) in v.iter_mut().zip(c) {
        *x -= along * y;
    }
    v
}

/// A word's weight for `n` occurrences: sublinear, as the n-gram model's.
fn weight(n: u32) -> f32 {
    1.0 + (n as f32).ln()
}

fn add(sum: &mut [f32], v: &[f32], w: f32) {
    for (s, x) in sum.iter_mut().zip(v) {
        *s += w * x;
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}

crate::sentence::blocking_embedder!(StaticEmbedder);
