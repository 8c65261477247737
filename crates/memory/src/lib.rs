//! In-process adapters of the ports: the embedded default's cache, and in-memory repositories
//! for domain tests. Nothing here is shared between processes; production uses Redis and SQL.

mod api_keys;
mod audit;
mod billing;
mod blobs;
mod cache;
mod chat;
mod documents;
mod evaluations;
mod identity;
mod organizations;
mod retrieval;
mod webhooks;
mod workflows;

pub use api_keys::InMemoryApiKeys;
pub use audit::InMemoryAudit;
pub use billing::InMemoryUsageLedger;
pub use blobs::InMemoryBlobs;
pub use cache::InProcessCache;
pub use chat::InMemoryChatStore;
pub use documents::InMemoryDocuments;
pub use evaluations::InMemoryEvaluations;
pub use identity::{InMemorySessions, InMemoryUsers};
pub use organizations::InMemoryOrganizations;
pub use retrieval::{InMemorySpaces, InMemoryVectorRows};
pub use webhooks::InMemoryWebhooks;
pub use workflows::InMemoryWorkflows;
