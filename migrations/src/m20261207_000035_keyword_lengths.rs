//! Keyword search on SQLite without reading chunks (issue 16): what BM25 needs of a matching
//! chunk besides its words comes from small rows and FTS5's own index.
//!
//! - `chunk_fts_rows.length`: the chunk's `token_count` (its BM25 length), written by the
//!   insert trigger beside the FTS5 rowid it already writes, and backfilled. Scoring a match
//!   reads this row (an integer key, a few bytes) instead of the chunk (its text and a lookup
//!   by UUID).
//! - `chunk_fts_instances`: an `fts5vocab` table of type `instance` over `chunk_fts`: one row
//!   per (term, rowid, column, offset) read from the index, so a word's term frequency in
//!   each chunk is counted in SQL without the text (FTS5 keeps no text: `content = ''`).
//!
//! Nothing on PostgreSQL (its `keyword_postings` hold the same per chunk). No new table holds
//! tenant data outside the chunks' own (`chunk_fts_rows` already existed; the vocab table is
//! a view of the FTS index), so row-level security is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &[&str] = &[
    "ALTER TABLE chunk_fts_rows ADD COLUMN length INTEGER NOT NULL DEFAULT 0",
    "UPDATE chunk_fts_rows SET length = \
         coalesce((SELECT c.token_count FROM chunks AS c WHERE c.id = chunk_fts_rows.chunk_id), 0)",
    "DROP TRIGGER IF EXISTS chunks_fts_insert",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN \
         INSERT INTO chunk_fts_rows (chunk_id, length) VALUES (new.id, new.token_count); \
         INSERT INTO chunk_fts (rowid, text, scope) VALUES ( \
             (SELECT rowid FROM chunk_fts_rows WHERE chunk_id = new.id), \
             new.text, \
             't' || lower(hex(new.tenant_id)) \
                 || ' c' || coalesce(lower(hex(new.collection_id)), 'none') \
                 || ' d' || lower(hex(new.document_id)) \
         ); \
     END",
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts_instances USING fts5vocab(chunk_fts, 'instance')",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TABLE IF EXISTS chunk_fts_instances",
    "DROP TRIGGER IF EXISTS chunks_fts_insert",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN \
         INSERT INTO chunk_fts_rows (chunk_id) VALUES (new.id); \
         INSERT INTO chunk_fts (rowid, text, scope) VALUES ( \
             (SELECT rowid FROM chunk_fts_rows WHERE chunk_id = new.id), \
             new.text, \
             't' || lower(hex(new.tenant_id)) \
                 || ' c' || coalesce(lower(hex(new.collection_id)), 'none') \
                 || ' d' || lower(hex(new.document_id)) \
         ); \
     END",
    "ALTER TABLE chunk_fts_rows DROP COLUMN length",
];

/// The statements as one script: one connection runs them all, in order. (One statement per
/// call could run on different pooled connections, and a connection whose schema predates
/// the `DROP TRIGGER` refuses the `CREATE TRIGGER` as existing.)
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
