//! Local models: the embedded default's embedder and its extractive answerer. Nothing to
//! download, no key, no network.
//!
//! - [`LocalEmbedder`]: hashed word, word-bigram and character n-gram vectors
//!   (`quire-local-ngram-<dimensions>`), implementing [`retrieval::Embedder`].
//! - [`SentenceEmbedder`]: any BERT-family sentence-transformers folder given by path, run
//!   in process with candle; [`MiniLmEmbedder`]: `quire-local-minilm`, the semantic model
//!   bundled in the binary (through `pocket-encoder`); [`StaticEmbedder`]:
//!   `quire-local-static`, word vectors distilled from that model, at the n-gram model's speed.
//! - [`LocalAnswerer`]: answers, summaries, mind maps and analyses composed from the request's
//!   sources by extraction ([`LOCAL_ANSWERER_MODEL`]), implementing [`chat::ChatModel`].

mod answerer;
mod embedder;
mod features;
mod sentence;
mod static_words;
mod word_table;

pub use answerer::{LOCAL_ANSWERER_MODEL, LOCAL_CONTEXT_WINDOW, LocalAnswerer};
pub use embedder::{DEFAULT_LOCAL_DIMENSIONS, LOCAL_MODEL_PREFIX, LocalEmbedder};
pub use features::{BIGRAM_WEIGHT, NGRAM_WEIGHT, STOP_WORDS, SUFFIX_WEIGHT, WORD_WEIGHT};
pub use sentence::{MINILM_MODEL, MiniLmEmbedder, Pooling, SentenceEmbedder};
pub use static_words::{STATIC_MODEL, StaticEmbedder};
