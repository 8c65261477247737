//! Documents: collections, uploads, extraction, chunking and the ingestion jobs.
//!
//! - [`model`]: collections, documents, chunks, jobs, formats and the text that extraction
//!   hands to chunking;
//! - [`ports`]: storage (collections, documents, the job queue), the blob store, the extractor
//!   and the chunker;
//! - [`service`]: the use cases (collections, uploads, deletes, reindexing) and the ingestion
//!   pipeline a worker runs.
//!
//! Depends only on `kernel` (see docs/architecture.md).

pub mod model;
pub mod ports;
pub mod service;

pub use model::*;
pub use ports::*;
pub use service::{
    Collections, DocumentLimits, DocumentPorts, Documents, DocumentsError, IngestPolicy, Ingestion,
    JobSignal, NewCollection, NoSignal, RunOutcome, Upload, Uploaded,
};
