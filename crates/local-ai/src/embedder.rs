//! [`LocalEmbedder`]: hashed word and character n-gram vectors, computed in process.

use async_trait::async_trait;
use kernel::InvalidInput;
use retrieval::{EmbedError, Embedder, EmbeddingModel, Embeddings, Tokenizer};

use crate::features;

/// The start of every local model name: `quire-local-ngram-<dimensions>`.
pub const LOCAL_MODEL_PREFIX: &str = "quire-local-ngram-";

/// Dimensions of [`LocalEmbedder::default`].
pub const DEFAULT_LOCAL_DIMENSIONS: u32 = 384;

/// Batches with more text than this (bytes) are embedded on the blocking pool, so that a
/// large batch never holds an async worker.
const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// The embedded default embedder: no download, no key, deterministic, fast.
///
/// A text's vector is the signed feature hashing of its words, word bigrams and character
/// 3- to 5-grams (see the `features` module for the weights), L2-normalized. Texts that share
/// words, phrases or word stems (`running` / `runners`) in any script have similar vectors;
/// it knows no synonyms. A text without any letter or digit gets the zero vector, whose cosine
/// similarity to every vector is 0 (it is found by nothing and finds nothing).
///
/// Vectors depend only on the text and the dimensions: the same on every machine and every
/// version (a change of the features would be a new model name).
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    model: EmbeddingModel,
}

impl LocalEmbedder {
    /// An embedder of `dimensions`, named `quire-local-ngram-<dimensions>`.
    ///
    /// # Panics
    /// When `dimensions` is not between 1 and 2,000 (validated settings never are; see
    /// [`LocalEmbedder::try_new`] for a number from elsewhere).
    #[must_use]
    pub fn new(dimensions: u32) -> Self {
        Self::try_new(dimensions)
            .unwrap_or_else(|e| panic!("local embedder of {dimensions} dimensions: {e}"))
    }

    /// An embedder of `dimensions` (1 to 2,000), named `quire-local-ngram-<dimensions>`.
    ///
    /// # Errors
    /// [`InvalidInput`] on `dimensions` out of range.
    pub fn try_new(dimensions: u32) -> Result<Self, InvalidInput> {
        let model = EmbeddingModel::new(&format!("{LOCAL_MODEL_PREFIX}{dimensions}"), dimensions)?;
        Ok(Self { model })
    }

    /// The embedder a model name stands for, when it is a local one
    /// (`quire-local-ngram-<dimensions>`).
    #[must_use]
    pub fn for_model_name(name: &str) -> Option<Self> {
        let dims = name.strip_prefix(LOCAL_MODEL_PREFIX)?;
        if dims.starts_with('0') || !dims.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Self::try_new(dims.parse().ok()?).ok()
    }

    /// The dimension of its vectors.
    #[must_use]
    pub fn dimensions(&self) -> u32 {
        self.model.dimensions()
    }

    /// The vector of one text, on this thread.
    #[must_use]
    pub fn vector(&self, text: &str) -> Vec<f32> {
        features::vector(text, self.model.dimensions() as usize)
    }

    /// The vectors of `inputs` and their `cl100k_base` token count, on this thread (the async
    /// [`Embedder::embed`] moves large batches to the blocking pool).
    #[must_use]
    pub fn embed_now(&self, inputs: &[String]) -> Embeddings {
        self.embed_known(inputs, None)
    }
}

impl Default for LocalEmbedder {
    /// 384 dimensions.
    fn default() -> Self {
        Self::new(DEFAULT_LOCAL_DIMENSIONS)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, EmbedError> {
        self.embed_off_thread(inputs, None).await
    }

    /// Bills `cl100k_base` counts (the meter's number for this model).
    fn billed_tokenizer(&self) -> Option<Tokenizer> {
        Some(Tokenizer::Cl100kBase)
    }

    /// The vectors, with `tokens` (the chunker's `cl100k_base` count) for the count.
    async fn embed_counted(
        &self,
        inputs: &[String],
        tokens: u64,
    ) -> Result<Embeddings, EmbedError> {
        self.embed_off_thread(inputs, Some(tokens)).await
    }
}

impl LocalEmbedder {
    /// The vectors of `inputs` and their `cl100k_base` count (`tokens` when known), on the
    /// blocking pool for a large batch.
    async fn embed_off_thread(
        &self,
        inputs: &[String],
        tokens: Option<u64>,
    ) -> Result<Embeddings, EmbedError> {
        let bytes: usize = inputs.iter().map(String::len).sum();
        if bytes <= BLOCKING_THRESHOLD {
            return Ok(self.embed_known(inputs, tokens));
        }
        let this = self.clone();
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || this.embed_known(&inputs, tokens))
            .await
            .map_err(|e| EmbedError::Unknown(anyhow::Error::new(e).context("local embedding")))
    }

    /// The vectors of `inputs`, with `tokens` for their count, or their `cl100k_base` count
    /// when `None`.
    fn embed_known(&self, inputs: &[String], tokens: Option<u64>) -> Embeddings {
        let tokens = tokens.unwrap_or_else(|| {
            let bpe = tiktoken_rs::cl100k_base_singleton();
            inputs.iter().map(|t| bpe.count_ordinary(t) as u64).sum()
        });
        Embeddings {
            vectors: inputs.iter().map(|text| self.vector(text)).collect(),
            tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    /// The index of the document of `docs` nearest to `query`, and the margin over the next.
    fn best(embedder: &LocalEmbedder, docs: &[Vec<f32>], query: &str) -> (usize, f32) {
        let q = embedder.vector(query);
        let mut scored: Vec<(usize, f32)> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| (i, dot(&q, d)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        (scored[0].0, scored[0].1 - scored[1].1)
    }

    #[tokio::test]
    async fn known_counts_give_the_same_vectors_and_stand_for_the_count() {
        let e = LocalEmbedder::default();
        assert_eq!(e.billed_tokenizer(), Some(Tokenizer::Cl100kBase));
        let inputs = strings(&["hello world", "the quick brown fox"]);
        let counted = e.embed(&inputs).await.expect("embed");
        assert_eq!(counted.tokens, 6);
        let known = e.embed_counted(&inputs, 6).await.expect("embed");
        assert_eq!(known, counted);
        // Large batches go to the blocking pool either way.
        let big = vec!["word ".repeat(20_000)];
        let counted = e.embed(&big).await.expect("embed");
        let known = e.embed_counted(&big, counted.tokens).await.expect("embed");
        assert_eq!(known, counted);
    }

    #[test]
    fn model_name_and_dimensions() {
        let e = LocalEmbedder::default();
        assert_eq!(e.model().name(), "quire-local-ngram-384");
        assert_eq!(e.model().dimensions(), 384);
        assert_eq!(e.vector("hello world").len(), 384);
        let small = LocalEmbedder::new(64);
        assert_eq!(small.model().name(), "quire-local-ngram-64");
        assert_eq!(small.vector("hello world").len(), 64);
        assert!(LocalEmbedder::try_new(0).is_err());
        assert!(LocalEmbedder::try_new(2_001).is_err());
        assert_eq!(
            LocalEmbedder::try_new(2_000).map(|e| e.dimensions()),
            Ok(2_000)
        );
        assert!(std::panic::catch_unwind(|| LocalEmbedder::new(0)).is_err());
    }

    #[test]
    fn model_names_map_back_to_embedders() {
        assert_eq!(
            LocalEmbedder::for_model_name("quire-local-ngram-256").map(|e| e.dimensions()),
            Some(256)
        );
        for name in [
            "quire-local-ngram-",
            "quire-local-ngram-0",
            "quire-local-ngram-064",
            "quire-local-ngram-+64",
            "quire-local-ngram-5000",
            "text-embedding-3-small",
        ] {
            assert!(LocalEmbedder::for_model_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn deterministic_across_instances() {
        let text =
            "The quick brown fox jumps over the lazy dog; der schnelle braune Fuchs. 敏捷的狐狸";
        let a = LocalEmbedder::new(384).vector(text);
        let b = LocalEmbedder::new(384).vector(text);
        assert_eq!(a, b);
        // Bit for bit, including the order the sums were made in.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        assert_ne!(a, LocalEmbedder::new(384).vector("another text"));
    }

    #[test]
    fn vectors_are_normalized() {
        let e = LocalEmbedder::default();
        for text in [
            "a",
            "Hello, world!",
            "running running running running shoes",
            "برنامه‌نویسی پایتون",
            &"long text with many words ".repeat(500),
        ] {
            let v = e.vector(text);
            let norm = dot(&v, &v).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text}: {norm}");
        }
    }

    #[test]
    fn a_text_without_words_is_the_zero_vector() {
        let e = LocalEmbedder::default();
        for text in ["", "   ", "!!! --- ... ?", "\n\t"] {
            let v = e.vector(text);
            assert_eq!(v.len(), 384);
            assert!(v.iter().all(|x| *x == 0.0), "{text:?}");
        }
        // Its similarity to anything is 0.
        assert!(dot(&e.vector(""), &e.vector("anything")).abs() < f32::EPSILON);
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let e = LocalEmbedder::default();
        assert_eq!(e.vector("Running, Shoes!"), e.vector("running shoes"));
    }

    #[test]
    fn term_frequency_is_sublinear() {
        let e = LocalEmbedder::default();
        // "shoes" ten times does not drown "running": about √2/√(1 + (1 + ln 10)²) ≈ 0.4 of
        // its similarity remains (with a linear count it would be √2/√101 ≈ 0.14).
        let q = e.vector("running");
        let once = e.vector("running shoes");
        let many = e.vector(&format!("running {}", "shoes ".repeat(10)));
        let ratio = dot(&q, &many) / dot(&q, &once);
        assert!(ratio > 0.3, "{ratio}");
    }

    #[test]
    fn similar_texts_score_higher_than_unrelated_ones() {
        let e = LocalEmbedder::default();
        let a = e.vector("the runner was running in new shoes");
        let b = e.vector("runners need good running shoes");
        let c = e.vector("tax forms for small businesses");
        assert!(dot(&a, &b) > 0.3, "{}", dot(&a, &b));
        assert!(dot(&a, &c).abs() < 0.15, "{}", dot(&a, &c));
    }

    #[test]
    fn retrieval_by_words_stems_and_scripts() {
        let e = LocalEmbedder::default();
        let docs = [
            "Runners' shoe reviews: we tested twelve pairs of trail runners for comfort and grip.",
            "A recipe for slow-cooked beef stew with carrots and potatoes.",
            "Quarterly tax filing deadlines for small businesses and the self-employed.",
            "How to repot a houseplant without damaging its roots.",
            "The history of the printing press and early European books.",
            "آموزش برنامه‌نویسی به زبان پایتون برای مبتدیان",
            "پیش‌بینی وضع هوا: باران و برف در تهران",
            "我喜欢跑步和游泳。",
            "今天的天气很好，我们去公园散步。",
        ];
        let vectors: Vec<Vec<f32>> = docs.iter().map(|d| e.vector(d)).collect();
        for (query, expected) in [
            ("running shoes", 0),
            ("stews cooking", 1),
            ("when to file taxes", 2),
            ("repotting plants", 3),
            ("printed book history", 4),
            ("برنامه نویسی پایتون", 5),
            ("هوای تهران", 6),
            ("跑步", 7),
            ("天气", 8),
        ] {
            let (found, margin) = best(&e, &vectors, query);
            assert_eq!(found, expected, "{query:?} found {:?}", docs[found]);
            assert!(margin > 0.02, "{query:?}: margin {margin}");
        }
    }

    #[tokio::test]
    async fn embed_answers_one_vector_per_input_and_counts_tokens() {
        let e = LocalEmbedder::new(64);
        let inputs = strings(&["hello world", "", "running shoes"]);
        let out = e.embed(&inputs).await.unwrap();
        assert_eq!(out.vectors.len(), 3);
        assert!(out.vectors.iter().all(|v| v.len() == 64));
        assert_eq!(out.vectors[0], e.vector("hello world"));
        // "hello world" is 2 tokens and "running shoes" 2 in cl100k_base.
        assert_eq!(out.tokens, 4);
        assert_eq!(e.embed(&[]).await.unwrap(), Embeddings::default());
    }

    #[tokio::test]
    async fn a_large_batch_gives_the_same_vectors_off_the_runtime() {
        let e = LocalEmbedder::new(128);
        let chunk = "Some words about retrieval and embeddings, repeated. ".repeat(40);
        let inputs = vec![chunk.clone(); 40]; // ~84 KB: above the blocking threshold
        assert!(inputs.iter().map(String::len).sum::<usize>() > BLOCKING_THRESHOLD);
        let out = e.embed(&inputs).await.unwrap();
        assert_eq!(out.vectors.len(), 40);
        assert!(out.vectors.iter().all(|v| *v == e.vector(&chunk)));
        assert!(out.tokens > 40 * 300, "{}", out.tokens);
    }
}
