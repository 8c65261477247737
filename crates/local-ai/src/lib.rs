//! Local models: the embedded default's embedder (and, in a later issue, the local
//! extractive answerer). Nothing to download, no key, no network.
//!
//! - [`LocalEmbedder`]: hashed word, word-bigram and character n-gram vectors
//!   (`quire-local-ngram-<dimensions>`), implementing [`retrieval::Embedder`].

mod embedder;
mod features;

pub use embedder::{DEFAULT_LOCAL_DIMENSIONS, LOCAL_MODEL_PREFIX, LocalEmbedder};
pub use features::{BIGRAM_WEIGHT, NGRAM_WEIGHT, STOP_WORDS, SUFFIX_WEIGHT, WORD_WEIGHT};
