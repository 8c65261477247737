//! Retrieval: embeddings, vector and keyword indexes, hybrid search.
//!
//! - [`model`]: embedding models and spaces, search queries and hits;
//! - [`ports`]: the embedder, the vector index (and the rows an in-process index keeps in
//!   SQL), the keyword index, the chunk catalog and the embedding spaces;
//! - [`embedding`]: the models there are, the adapters, and the metered embedding call;
//! - [`search`]: search and `POST /embeddings`;
//! - [`rerank`]: the reranking stage after fusion (the `Reranker` port);
//! - [`fusion`]: how `hybrid` fuses its two rankings (a method and a weight per leg, per model);
//! - [`evaluation`]: golden sets, their metrics (recall@k, MRR, nDCG) and the use case that
//!   runs them per mode;
//! - [`indexer`]: the indexing side of the ingestion pipeline (it implements
//!   `documents::ChunkIndexer`);
//! - [`recent`]: what a search reuses for a short bound (collection checks, spaces lists);
//! - [`reembedding`]: the background re-embedding of a collection whose model changed;
//! - [`error`]: what the use cases answer.
//!
//! Depends only on `kernel` and the `documents` domain (see docs/architecture.md).

pub mod embedding;
pub mod error;
pub mod evaluation;
pub mod fusion;
pub mod indexer;
pub mod model;
pub mod ports;
pub mod recent;
pub mod reembedding;
pub mod rerank;
pub mod search;

pub use embedding::{Embedders, RetrievalPorts, embedding_token_bound};
pub use error::RetrievalError;
pub use fusion::{FusionSettings, RRF_K};
pub use indexer::Indexer;
pub use model::*;
pub use ports::*;
pub use recent::RecentScopes;
pub use reembedding::{ReembedOutcome, Reembedder};
pub use rerank::{RerankError, Reranked, Reranker, Reranking};
pub use search::{
    MAX_EMBED_INPUT_CHARS, MAX_EMBED_INPUTS, MAX_EMBED_TOTAL_CHARS, MAX_FILTERED_DOCUMENTS,
    Retrieval,
};
