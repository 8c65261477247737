//! Retrieval: embeddings, vector and keyword indexes, hybrid search.
//!
//! Thin until its issue: the domain lands here as `model`, `ports`, `service` and `error`,
//! depending only on `kernel` (see docs/architecture.md).
