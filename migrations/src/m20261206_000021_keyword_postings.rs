//! Keyword postings on PostgreSQL (issue 16): what BM25 needs of each word of each chunk,
//! written with the chunk, so that keyword search reads an index instead of every matching
//! chunk's `tsvector`.
//!
//! `keyword_postings` holds one row per (chunk, lexeme of its `tsv`): the tenant, the lexeme
//! (`term`), the chunk's collection as `collection_key` (the nil UUID for "no collection", as
//! in `embedding_spaces`), the chunk id, the lexeme's term frequency (its number of positions
//! in `tsv`) and the chunk's `token_count` (its BM25 length). The primary key
//! `(tenant_id, term, collection_key, chunk_id)` covers the rest (`INCLUDE (tf, length)`), so
//! a word's document frequency in a scope (counted up to a cap) and its contribution to every
//! chunk's score are index-only range scans of that scope's rows, never another tenant's.
//! The scope lexemes of `tsv` (`_t…`, `_c…`, which no word can spell) are left out.
//!
//! It is maintained by the database from `chunks`, as `tsv` is: statement-level triggers with
//! transition tables insert the postings of inserted chunks and delete those of deleted ones
//! (cascades from documents, collections and organizations included) in the same transaction;
//! an update (chunks are never updated today) replaces them. Existing chunks are backfilled.
//!
//! SQLite: nothing. Its keyword index is FTS5 (`m20261122_000012_retrieval`), whose counts
//! serve the same purpose there (docs/retrieval.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyword_postings ( \
         tenant_id uuid NOT NULL, \
         term text NOT NULL, \
         collection_key uuid NOT NULL, \
         chunk_id uuid NOT NULL, \
         tf integer NOT NULL, \
         length integer NOT NULL, \
         CONSTRAINT pk_keyword_postings \
             PRIMARY KEY (tenant_id, term, collection_key, chunk_id) INCLUDE (tf, length) \
     )",
    r"CREATE OR REPLACE FUNCTION quire_keyword_postings_add() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      BEGIN
          INSERT INTO keyword_postings (tenant_id, term, collection_key, chunk_id, tf, length)
          SELECT n.tenant_id, t.lexeme,
                 coalesce(n.collection_id, '00000000-0000-0000-0000-000000000000'::uuid),
                 n.id, GREATEST(coalesce(cardinality(t.positions), 1), 1), n.token_count
          FROM new_rows AS n CROSS JOIN LATERAL unnest(n.tsv) AS t
          WHERE left(t.lexeme, 1) <> '_';
          RETURN NULL;
      END
      $fn$",
    r"CREATE OR REPLACE FUNCTION quire_keyword_postings_remove() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      BEGIN
          DELETE FROM keyword_postings AS p
          USING (
              SELECT o.tenant_id, l.term,
                     coalesce(o.collection_id, '00000000-0000-0000-0000-000000000000'::uuid)
                         AS collection_key,
                     o.id AS chunk_id
              FROM old_rows AS o
              CROSS JOIN LATERAL unnest(tsvector_to_array(o.tsv)) AS l(term)
              WHERE left(l.term, 1) <> '_'
          ) AS d
          WHERE p.tenant_id = d.tenant_id AND p.term = d.term
            AND p.collection_key = d.collection_key AND p.chunk_id = d.chunk_id;
          RETURN NULL;
      END
      $fn$",
    "DROP TRIGGER IF EXISTS chunks_postings_insert ON chunks",
    "CREATE TRIGGER chunks_postings_insert AFTER INSERT ON chunks \
         REFERENCING NEW TABLE AS new_rows \
         FOR EACH STATEMENT EXECUTE FUNCTION quire_keyword_postings_add()",
    "DROP TRIGGER IF EXISTS chunks_postings_delete ON chunks",
    "CREATE TRIGGER chunks_postings_delete AFTER DELETE ON chunks \
         REFERENCING OLD TABLE AS old_rows \
         FOR EACH STATEMENT EXECUTE FUNCTION quire_keyword_postings_remove()",
    // An update removes the old rows' postings, then adds the new rows' (two triggers on the
    // same statement fire in name order: `_a` before `_b`).
    "DROP TRIGGER IF EXISTS chunks_postings_update_a ON chunks",
    "CREATE TRIGGER chunks_postings_update_a AFTER UPDATE ON chunks \
         REFERENCING OLD TABLE AS old_rows \
         FOR EACH STATEMENT EXECUTE FUNCTION quire_keyword_postings_remove()",
    "DROP TRIGGER IF EXISTS chunks_postings_update_b ON chunks",
    "CREATE TRIGGER chunks_postings_update_b AFTER UPDATE ON chunks \
         REFERENCING NEW TABLE AS new_rows \
         FOR EACH STATEMENT EXECUTE FUNCTION quire_keyword_postings_add()",
    // The backfill: every stored chunk's postings.
    "INSERT INTO keyword_postings (tenant_id, term, collection_key, chunk_id, tf, length) \
         SELECT c.tenant_id, t.lexeme, \
                coalesce(c.collection_id, '00000000-0000-0000-0000-000000000000'::uuid), \
                c.id, GREATEST(coalesce(cardinality(t.positions), 1), 1), c.token_count \
         FROM chunks AS c CROSS JOIN LATERAL unnest(c.tsv) AS t \
         WHERE left(t.lexeme, 1) <> '_' \
         ON CONFLICT DO NOTHING",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS chunks_postings_update_b ON chunks",
    "DROP TRIGGER IF EXISTS chunks_postings_update_a ON chunks",
    "DROP TRIGGER IF EXISTS chunks_postings_delete ON chunks",
    "DROP TRIGGER IF EXISTS chunks_postings_insert ON chunks",
    "DROP FUNCTION IF EXISTS quire_keyword_postings_remove()",
    "DROP FUNCTION IF EXISTS quire_keyword_postings_add()",
    "DROP TABLE IF EXISTS keyword_postings",
];

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
        match manager.get_database_backend() {
            DbBackend::Postgres => run_all(manager, POSTGRES_UP).await,
            _ => Ok(()),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run_all(manager, POSTGRES_DOWN).await,
            _ => Ok(()),
        }
    }
}
