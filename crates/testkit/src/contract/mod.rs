//! Port contract suites: each takes any adapter of a port and checks the contract its trait
//! documents. Every adapter's test calls the same suite, so adapters cannot drift apart.

pub mod audit;
pub mod billing;
pub mod blobs;
pub mod cache;
pub mod chat;
pub mod documents;
pub mod jobs;
pub mod memberships;
pub mod organizations;
pub mod retrieval;
pub mod sessions;
pub mod users;
pub mod vectors;
