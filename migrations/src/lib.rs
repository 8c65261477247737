//! The schema of Quire, as sea-orm migrations: one schema, applied alike on PostgreSQL and
//! SQLite, at `serve` start-up (configurable) and by `quire migrate`.
//!
//! Rules for new migrations: portable column types only (no backend-specific SQL unless
//! guarded by `manager.get_database_backend()`), every tenant table has a `tenant_id` column
//! and an index that starts with it and, on PostgreSQL, row-level security ([`protect`]; the
//! test `row_level_security.rs` finds a tenant table without it), and migrations are never
//! edited once they have landed.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_organizations;
mod m20261121_000002_users_sessions;
mod m20261121_000003_memberships;
mod m20261121_000004_user_profile;
mod m20261121_000005_audit_log;
mod m20261121_000006_api_keys;
mod m20261121_000007_outbox_resets;
mod m20261121_000008_invitations;
mod m20261122_000009_documents;
mod m20261122_000010_blobs;
mod m20261122_000011_collection_embedding_model;
mod m20261122_000012_retrieval;
mod m20261122_000013_chat;
mod m20261122_000014_usage;
mod m20261206_000015_email_verified;
mod m20261206_000016_api_key_scopes;
mod m20261206_000017_assistant_creator;
mod m20261206_000018_stored_times;
mod m20261206_000019_stored_times_rest;
mod m20261206_000020_answer_runs;
mod m20261206_000021_keyword_postings;
mod m20261206_000022_webhooks;
mod m20261206_000023_workflows;
mod m20261207_000024_row_level_security;
mod m20261207_000025_export_expiry;
mod m20261207_000026_access_trail;
mod m20261207_000027_retention;
mod m20261207_000028_ocr_languages;
mod m20261207_000029_evaluations;
mod m20261207_000030_blob_tenants;
mod m20261207_000031_platform_and_export_bytes;
mod m20261207_000033_ingest_progress;
mod m20261207_000035_keyword_lengths;
mod m20261207_000036_keyword_versions;
mod stored_times;

pub use m20261207_000024_row_level_security::{PLATFORM_TABLES, protect};

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_organizations::Migration),
            Box::new(m20261121_000002_users_sessions::Migration),
            Box::new(m20261121_000003_memberships::Migration),
            Box::new(m20261121_000004_user_profile::Migration),
            Box::new(m20261121_000005_audit_log::Migration),
            Box::new(m20261121_000006_api_keys::Migration),
            Box::new(m20261121_000007_outbox_resets::Migration),
            Box::new(m20261121_000008_invitations::Migration),
            Box::new(m20261122_000009_documents::Migration),
            Box::new(m20261122_000010_blobs::Migration),
            Box::new(m20261122_000011_collection_embedding_model::Migration),
            Box::new(m20261122_000012_retrieval::Migration),
            Box::new(m20261122_000013_chat::Migration),
            Box::new(m20261122_000014_usage::Migration),
            Box::new(m20261206_000015_email_verified::Migration),
            Box::new(m20261206_000016_api_key_scopes::Migration),
            Box::new(m20261206_000017_assistant_creator::Migration),
            Box::new(m20261206_000018_stored_times::Migration),
            Box::new(m20261206_000019_stored_times_rest::Migration),
            Box::new(m20261206_000020_answer_runs::Migration),
            Box::new(m20261206_000021_keyword_postings::Migration),
            Box::new(m20261206_000022_webhooks::Migration),
            Box::new(m20261206_000023_workflows::Migration),
            Box::new(m20261207_000024_row_level_security::Migration),
            Box::new(m20261207_000025_export_expiry::Migration),
            Box::new(m20261207_000026_access_trail::Migration),
            Box::new(m20261207_000027_retention::Migration),
            Box::new(m20261207_000028_ocr_languages::Migration),
            Box::new(m20261207_000029_evaluations::Migration),
            Box::new(m20261207_000030_blob_tenants::Migration),
            Box::new(m20261207_000031_platform_and_export_bytes::Migration),
            Box::new(m20261207_000033_ingest_progress::Migration),
            Box::new(m20261207_000035_keyword_lengths::Migration),
            Box::new(m20261207_000036_keyword_versions::Migration),
        ]
    }
}
