//! Documents: collections, uploads, extraction, chunking and the ingestion jobs.
//!
//! Thin until its issue: the domain lands here as `model`, `ports`, `service` and `error`,
//! depending only on `kernel` (see docs/architecture.md).
