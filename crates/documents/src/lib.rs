//! Documents: collections, uploads, extraction, chunking and the ingestion jobs.
//!
//! - [`model`]: collections, documents, chunks, jobs, formats and the text that extraction
//!   hands to chunking;
//! - [`ports`]: storage (collections, documents, the job queue), the blob store, the extractor
//!   and the chunker, and the share of them each use case takes;
//! - [`collections`]: the collections use cases;
//! - [`uploads`]: uploads, reads, deletes and reindexing of documents;
//! - [`ingestion`]: the ingestion pipeline a worker runs;
//! - [`recent`]: pages of documents reused for a short, bounded time;
//! - [`error`]: what the use cases answer.
//!
//! Depends only on `kernel` (see docs/architecture.md).

pub mod collections;
pub mod error;
mod forgetful;
pub mod ingestion;
pub mod model;
pub mod ports;
pub mod recent;
pub mod uploads;

pub use collections::{CollectionChange, Collections, NewCollection};
pub use error::DocumentsError;
pub use forgetful::{ForgetOnWrite, forgetting_collections};
pub use ingestion::{IngestPolicy, Ingestion, RunOutcome};
pub use model::*;
pub use ports::*;
pub use recent::RecentLists;
pub use uploads::{DocumentLimits, Documents, JobSignal, NoSignal, Upload, Uploaded};
