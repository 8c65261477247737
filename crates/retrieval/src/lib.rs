//! Retrieval: embeddings, vector and keyword indexes, hybrid search.
//!
//! - [`model`]: embedding models and spaces, search queries and hits;
//! - [`ports`]: the embedder, the vector index (and the rows an in-process index keeps in
//!   SQL), the keyword index, the chunk catalog and the embedding spaces;
//! - [`service`]: search, `POST /embeddings`, the indexing side of the ingestion pipeline
//!   (it implements `documents::ChunkIndexer`) and the background re-embedding of a collection
//!   whose model changed.
//!
//! Depends only on `kernel` and the `documents` domain (see docs/architecture.md).

pub mod model;
pub mod ports;
pub mod service;

pub use model::*;
pub use ports::*;
pub use service::*;
