//! A version per keyword scope on SQLite (issue 16): the in-process keyword cache of
//! `store-sql` (`keyword_cache`) compares it before each search with the version it loaded.
//!
//! - `keyword_versions`: one row per (tenant, collection key) that holds chunks (`collection_key`
//!   is the collection's id, or the empty blob for the chunks outside any collection): its live
//!   chunk count (`chunks`), the sequence number of its last change (`version`), of its
//!   creation (`since`) and of its last delete (`last_delete`, 0 if none). Triggers on `chunks`
//!   keep it in the transaction that writes or deletes the chunks; the row goes when its last
//!   chunk does (so erasing a tenant leaves no row naming it).
//! - `keyword_version_seq`: one row, the sequence every change takes its number from. A number
//!   is never given twice, so a row deleted and made again never shows a version a cache holds.
//!
//! Nothing on PostgreSQL (its keyword search reads `keyword_postings` in SQL). The table holds
//! tenant ids but no tenant data beyond counts; SQLite has no row-level security.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyword_version_seq ( \
         id INTEGER PRIMARY KEY CHECK (id = 1), \
         seq INTEGER NOT NULL \
     )",
    "INSERT OR IGNORE INTO keyword_version_seq (id, seq) VALUES (1, 1)",
    "CREATE TABLE IF NOT EXISTS keyword_versions ( \
         tenant_id BLOB NOT NULL, \
         collection_key BLOB NOT NULL, \
         chunks INTEGER NOT NULL, \
         version INTEGER NOT NULL, \
         since INTEGER NOT NULL, \
         last_delete INTEGER NOT NULL, \
         PRIMARY KEY (tenant_id, collection_key) \
     ) WITHOUT ROWID",
    "INSERT OR IGNORE INTO keyword_versions \
         (tenant_id, collection_key, chunks, version, since, last_delete) \
         SELECT tenant_id, coalesce(collection_id, x''), COUNT(*), 1, 1, 0 \
         FROM chunks GROUP BY tenant_id, coalesce(collection_id, x'')",
    "DROP TRIGGER IF EXISTS chunks_keyword_version_insert",
    "CREATE TRIGGER chunks_keyword_version_insert AFTER INSERT ON chunks BEGIN \
         UPDATE keyword_version_seq SET seq = seq + 1 WHERE id = 1; \
         INSERT INTO keyword_versions \
             (tenant_id, collection_key, chunks, version, since, last_delete) \
         VALUES (new.tenant_id, coalesce(new.collection_id, x''), 1, \
             (SELECT seq FROM keyword_version_seq WHERE id = 1), \
             (SELECT seq FROM keyword_version_seq WHERE id = 1), 0) \
         ON CONFLICT (tenant_id, collection_key) DO UPDATE \
             SET chunks = chunks + 1, version = excluded.version; \
     END",
    "DROP TRIGGER IF EXISTS chunks_keyword_version_delete",
    "CREATE TRIGGER chunks_keyword_version_delete AFTER DELETE ON chunks BEGIN \
         UPDATE keyword_version_seq SET seq = seq + 1 WHERE id = 1; \
         UPDATE keyword_versions SET chunks = chunks - 1, \
             version = (SELECT seq FROM keyword_version_seq WHERE id = 1), \
             last_delete = (SELECT seq FROM keyword_version_seq WHERE id = 1) \
         WHERE tenant_id = old.tenant_id \
             AND collection_key = coalesce(old.collection_id, x''); \
         DELETE FROM keyword_versions \
         WHERE tenant_id = old.tenant_id \
             AND collection_key = coalesce(old.collection_id, x'') AND chunks <= 0; \
     END",
    // Chunks are never updated in place (the FTS5 triggers follow inserts and deletes only);
    // should one be, its scope's version moves all the same.
    "DROP TRIGGER IF EXISTS chunks_keyword_version_update",
    "CREATE TRIGGER chunks_keyword_version_update AFTER UPDATE ON chunks BEGIN \
         UPDATE keyword_version_seq SET seq = seq + 1 WHERE id = 1; \
         UPDATE keyword_versions SET \
             version = (SELECT seq FROM keyword_version_seq WHERE id = 1), \
             last_delete = (SELECT seq FROM keyword_version_seq WHERE id = 1) \
         WHERE tenant_id IN (old.tenant_id, new.tenant_id) \
             AND collection_key IN (coalesce(old.collection_id, x''), \
                                    coalesce(new.collection_id, x'')); \
     END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS chunks_keyword_version_update",
    "DROP TRIGGER IF EXISTS chunks_keyword_version_delete",
    "DROP TRIGGER IF EXISTS chunks_keyword_version_insert",
    "DROP TABLE IF EXISTS keyword_versions",
    "DROP TABLE IF EXISTS keyword_version_seq",
];

/// The statements as one script, on one connection, in order.
async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&statements.join(";\n"))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => run_all(manager, SQLITE_UP).await,
            _ => Ok(()),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => run_all(manager, SQLITE_DOWN).await,
            _ => Ok(()),
        }
    }
}
