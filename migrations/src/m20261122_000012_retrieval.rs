//! Retrieval: embedding spaces, the vector rows of an in-process vector index, and the keyword
//! index over stored chunks.
//!
//! - `embedding_spaces`: one collection's (or the tenant's collection-less documents') vectors
//!   under one model. `scope_key` is the collection id, or the nil UUID for "no collection"
//!   (NULLs are never equal in a unique index), so that the partial unique index
//!   `ux_embedding_spaces_live` holds a scope to at most one `active` and one `building` space,
//!   however many servers race. Deleted with their organization or collection.
//! - `chunk_vectors`: the rows an in-process vector index keeps (pgvector has its own table):
//!   little-endian `f32`s as a BLOB (SQLite) or `bytea` (PostgreSQL). Deleted with their space
//!   or document. Vectors are written before their chunks are stored, so there is no foreign
//!   key to `chunks`.
//! - The keyword index, maintained by the database itself from `chunks` (which are only
//!   inserted and deleted, never updated; deletes also arrive by cascade from documents,
//!   collections and organizations), so it can never drift from what is stored:
//!   - SQLite: the FTS5 table `chunk_fts` (`text`, `scope`; contentless, so the text is not
//!     stored twice; tokenizer `unicode61 remove_diacritics 2`, no stemming). `scope` holds the
//!     tokens `t<tenant hex> c<collection hex | none> d<document hex>`, so scoping a search is
//!     an FTS intersection. Its rowids come from `chunk_fts_rows`, never from the implicit
//!     rowid of `chunks` (which VACUUM may renumber); triggers on `chunks` keep both in step
//!     (SQLite fires them for cascaded deletes too).
//!   - PostgreSQL: the stored generated column `chunks.tsv`: the `simple` configuration (no
//!     stemming, no stop words) over the text with ASCII punctuation and the general
//!     punctuation block turned into spaces (so `foo.bar` is two words, as on SQLite, not a
//!     host name), plus two scope lexemes (`_t<tenant hex>`, `_c<collection hex | none>`,
//!     which no query word can spell), under a GIN index: scoping is a GIN intersection too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EmbeddingSpaces {
    Table,
    Id,
    TenantId,
    CollectionId,
    ScopeKey,
    Model,
    Dimensions,
    Status,
    LeaseToken,
    LeaseUntil,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChunkVectors {
    Table,
    SpaceId,
    ChunkId,
    TenantId,
    DocumentId,
    Seq,
    Embedding,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Collections {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Chunks {
    Table,
    TenantId,
    CollectionId,
    Id,
}

/// A scope has at most one active and one building space (same SQL on both backends).
const LIVE_SPACES_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS ux_embedding_spaces_live \
     ON embedding_spaces (tenant_id, scope_key, status) \
     WHERE status IN ('building', 'active')";

/// The keyword index on SQLite: the row map, the contentless FTS5 table, the triggers that
/// follow `chunks`, and the chunks stored before this migration.
const SQLITE_KEYWORD_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS chunk_fts_rows ( \
         rowid INTEGER PRIMARY KEY, \
         chunk_id BLOB NOT NULL UNIQUE \
     )",
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5( \
         text, scope, \
         content = '', contentless_delete = 1, \
         tokenize = 'unicode61 remove_diacritics 2' \
     )",
    // Each term's document frequency (table-wide), read by search to leave out the words
    // that are in so many chunks that they barely rank but cost a scan of all of them.
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts_terms USING fts5vocab(chunk_fts, 'row')",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN \
         INSERT INTO chunk_fts_rows (chunk_id) VALUES (new.id); \
         INSERT INTO chunk_fts (rowid, text, scope) VALUES ( \
             (SELECT rowid FROM chunk_fts_rows WHERE chunk_id = new.id), \
             new.text, \
             't' || lower(hex(new.tenant_id)) \
                 || ' c' || coalesce(lower(hex(new.collection_id)), 'none') \
                 || ' d' || lower(hex(new.document_id)) \
         ); \
     END",
    "CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN \
         DELETE FROM chunk_fts \
             WHERE rowid = (SELECT rowid FROM chunk_fts_rows WHERE chunk_id = old.id); \
         DELETE FROM chunk_fts_rows WHERE chunk_id = old.id; \
     END",
    "INSERT INTO chunk_fts_rows (chunk_id) \
         SELECT c.id FROM chunks AS c \
         WHERE NOT EXISTS (SELECT 1 FROM chunk_fts_rows AS r WHERE r.chunk_id = c.id)",
    "INSERT INTO chunk_fts (rowid, text, scope) \
         SELECT r.rowid, c.text, \
             't' || lower(hex(c.tenant_id)) \
                 || ' c' || coalesce(lower(hex(c.collection_id)), 'none') \
                 || ' d' || lower(hex(c.document_id)) \
         FROM chunks AS c JOIN chunk_fts_rows AS r ON r.chunk_id = c.id",
];

const SQLITE_KEYWORD_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS chunks_fts_delete",
    "DROP TRIGGER IF EXISTS chunks_fts_insert",
    "DROP TABLE IF EXISTS chunk_fts_terms",
    "DROP TABLE IF EXISTS chunk_fts",
    "DROP TABLE IF EXISTS chunk_fts_rows",
];

/// The keyword index on PostgreSQL. The punctuation class is ASCII punctuation and controls,
/// no-break space, « », and U+2000..U+206F (spaces, dashes, quotes, zero-width joiners):
/// characters that are never part of a query word (see `store-sql`'s `keyword` module).
const POSTGRES_KEYWORD_UP: &[&str] = &[
    r#"ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS (
         to_tsvector('simple'::regconfig, regexp_replace(
             "text",
             '[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f\u00a0\u00ab\u00bb\u2000-\u206f]+',
             ' ',
             'g'
         ))
         || array_to_tsvector(ARRAY[
             '_t' || replace(tenant_id::text, '-', ''),
             '_c' || coalesce(replace(collection_id::text, '-', ''), 'none')
         ])
     ) STORED"#,
    "CREATE INDEX IF NOT EXISTS ix_chunks_tsv ON chunks USING gin (tsv)",
];

const POSTGRES_KEYWORD_DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS ix_chunks_tsv",
    "ALTER TABLE chunks DROP COLUMN IF EXISTS tsv",
];

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for col in cols {
        index.col(col);
    }
    index.to_owned()
}

async fn create_spaces(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(EmbeddingSpaces::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(EmbeddingSpaces::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(EmbeddingSpaces::TenantId).uuid().not_null())
                .col(ColumnDef::new(EmbeddingSpaces::CollectionId).uuid().null())
                .col(ColumnDef::new(EmbeddingSpaces::ScopeKey).uuid().not_null())
                .col(
                    ColumnDef::new(EmbeddingSpaces::Model)
                        .string_len(100)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(EmbeddingSpaces::Dimensions)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(EmbeddingSpaces::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(EmbeddingSpaces::LeaseToken).uuid().null())
                .col(
                    ColumnDef::new(EmbeddingSpaces::LeaseUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(EmbeddingSpaces::Version)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(timestamp(EmbeddingSpaces::CreatedAt))
                .col(timestamp(EmbeddingSpaces::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_embedding_spaces_org")
                        .from(EmbeddingSpaces::Table, EmbeddingSpaces::TenantId)
                        .to(Organizations::Table, Organizations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_embedding_spaces_collection")
                        .from(EmbeddingSpaces::Table, EmbeddingSpaces::CollectionId)
                        .to(Collections::Table, Collections::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .get_connection()
        .execute_unprepared(LIVE_SPACES_INDEX)
        .await?;
    for (name, cols) in [
        // A tenant's spaces by scope.
        (
            "ix_embedding_spaces_tenant",
            vec![
                EmbeddingSpaces::TenantId.into_iden(),
                EmbeddingSpaces::ScopeKey.into_iden(),
            ],
        ),
        // Building spaces to claim, retired ones to drop, active ones to re-embed.
        (
            "ix_embedding_spaces_status",
            vec![
                EmbeddingSpaces::Status.into_iden(),
                EmbeddingSpaces::Id.into_iden(),
            ],
        ),
        // The collection foreign key: a cascading delete finds the rows without a scan.
        (
            "ix_embedding_spaces_collection",
            vec![EmbeddingSpaces::CollectionId.into_iden()],
        ),
    ] {
        manager
            .create_index(index(name, EmbeddingSpaces::Table, cols))
            .await?;
    }
    Ok(())
}

async fn create_vectors(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(ChunkVectors::Table)
                .if_not_exists()
                .col(ColumnDef::new(ChunkVectors::SpaceId).uuid().not_null())
                .col(ColumnDef::new(ChunkVectors::ChunkId).uuid().not_null())
                .col(ColumnDef::new(ChunkVectors::TenantId).uuid().not_null())
                .col(ColumnDef::new(ChunkVectors::DocumentId).uuid().not_null())
                .col(ColumnDef::new(ChunkVectors::Seq).big_integer().not_null())
                .col(ColumnDef::new(ChunkVectors::Embedding).blob().not_null())
                .primary_key(
                    Index::create()
                        .col(ChunkVectors::SpaceId)
                        .col(ChunkVectors::ChunkId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chunk_vectors_space")
                        .from(ChunkVectors::Table, ChunkVectors::SpaceId)
                        .to(EmbeddingSpaces::Table, EmbeddingSpaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chunk_vectors_document")
                        .from(ChunkVectors::Table, ChunkVectors::DocumentId)
                        .to(Documents::Table, Documents::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        // Loading a space after a version, in (seq, chunk) order.
        (
            "ix_chunk_vectors_seq",
            vec![
                ChunkVectors::SpaceId.into_iden(),
                ChunkVectors::Seq.into_iden(),
                ChunkVectors::ChunkId.into_iden(),
            ],
        ),
        // A document's rows in every space of its tenant (`retain`).
        (
            "ix_chunk_vectors_tenant_document",
            vec![
                ChunkVectors::TenantId.into_iden(),
                ChunkVectors::DocumentId.into_iden(),
            ],
        ),
        // The document foreign key: a cascading delete finds the rows without a scan.
        (
            "ix_chunk_vectors_document",
            vec![ChunkVectors::DocumentId.into_iden()],
        ),
    ] {
        manager
            .create_index(index(name, ChunkVectors::Table, cols))
            .await?;
    }
    Ok(())
}

async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_spaces(manager).await?;
        create_vectors(manager).await?;
        // A scope's chunks in id order (the re-embedding scan).
        manager
            .create_index(index(
                "ix_chunks_scope",
                Chunks::Table,
                vec![
                    Chunks::TenantId.into_iden(),
                    Chunks::CollectionId.into_iden(),
                    Chunks::Id.into_iden(),
                ],
            ))
            .await?;
        // Search reads its hits back by id within the tenant (`tenant_id = ? AND id IN (…)`).
        // Without this index SQLite's planner, which has no statistics, prefers walking every
        // chunk of the tenant through `ix_chunks_scope` to the primary-key lookups.
        manager
            .create_index(index(
                "ix_chunks_tenant_id",
                Chunks::Table,
                vec![Chunks::TenantId.into_iden(), Chunks::Id.into_iden()],
            ))
            .await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => run_all(manager, POSTGRES_KEYWORD_UP).await,
            DbBackend::Sqlite => run_all(manager, SQLITE_KEYWORD_UP).await,
            other => Err(DbErr::Migration(format!(
                "the keyword index has no schema for {other:?}"
            ))),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run_all(manager, POSTGRES_KEYWORD_DOWN).await?,
            DbBackend::Sqlite => run_all(manager, SQLITE_KEYWORD_DOWN).await?,
            _ => {}
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ix_chunks_tenant_id")
                    .table(Chunks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_chunks_scope")
                    .table(Chunks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for table in [
            ChunkVectors::Table.into_iden(),
            EmbeddingSpaces::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
