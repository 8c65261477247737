//! Retrieval: embeddings, vector and keyword indexes, hybrid search.
//!
//! - [`model`]: embedding models and spaces, search queries and hits;
//! - [`ports`]: the embedder, the vector index (and the rows an in-process index keeps in
//!   SQL), the keyword index, the chunk catalog and the embedding spaces;
//! - [`embedding`]: the models there are, the adapters, and the metered embedding call;
//! - [`search`]: search and `POST /embeddings`;
//! - [`indexer`]: the indexing side of the ingestion pipeline (it implements
//!   `documents::ChunkIndexer`);
//! - [`reembedding`]: the background re-embedding of a collection whose model changed;
//! - [`error`]: what the use cases answer.
//!
//! Depends only on `kernel` and the `documents` domain (see docs/architecture.md).

pub mod embedding;
pub mod error;
pub mod indexer;
pub mod model;
pub mod ports;
pub mod reembedding;
pub mod search;

pub use embedding::{Embedders, RetrievalPorts, embedding_token_bound};
pub use error::RetrievalError;
pub use indexer::Indexer;
pub use model::*;
pub use ports::*;
pub use reembedding::{ReembedOutcome, Reembedder};
pub use search::{
    MAX_EMBED_INPUT_CHARS, MAX_EMBED_INPUTS, MAX_EMBED_TOTAL_CHARS, MAX_FILTERED_DOCUMENTS, RRF_K,
    Retrieval, fuse,
};
