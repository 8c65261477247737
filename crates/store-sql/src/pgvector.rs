//! [`VectorIndex`] on PostgreSQL with pgvector: [`PgVectorIndex`] (backend `pgvector`).
//!
//! The vectors live in their own table, `chunk_embeddings` (`embedding vector`, of no fixed
//! dimension: spaces differ), created by [`PgVectorIndex::try_new`] rather than by the
//! portable migrations, which must also run where pgvector is absent. The extension is
//! created in `public` (or used where it already is) and its type and operator are always
//! named with that schema (`public.vector`, `OPERATOR(public.<=>)`), so they resolve whatever
//! the connection's `search_path` (tests run one schema per test).
//!
//! # No starvation on pgvector 0.6
//!
//! pgvector 0.6 has HNSW but no iterative index scans: an HNSW scan yields at most
//! `hnsw.ef_search` rows and a `WHERE` filter applies after it, so a filtered query on one
//! shared index can return fewer than `k` rows (a tenant with 1% of the vectors would get
//! almost nothing). So no query ever filters an HNSW scan:
//!
//! - a search is always within one space (one tenant's collection under one model);
//! - a space below the threshold is searched exactly: `ORDER BY embedding <=> q` over the
//!   space's rows (found through the primary key), an expression no index is built on, so the
//!   planner cannot pick an HNSW index;
//! - a space that grows past the threshold gets its own partial index, built in the background
//!   after the upsert that crossed it: `CREATE INDEX CONCURRENTLY … USING hnsw
//!   ((embedding::public.vector(D)) public.vector_cosine_ops) WHERE space_id = '<uuid>'`. A
//!   partial index is only used by a query whose `WHERE` implies its predicate, so the query
//!   inlines the same literal (our own UUID, never client text), orders by the same
//!   expression, and runs in a transaction with `SET LOCAL hnsw.ef_search` ≥ 2k. The index
//!   holds only that space, so nothing is filtered after the scan. If it still comes back
//!   short of `k` while the space has more rows, the search is redone exactly;
//! - with an `allow` list, the allowed documents' rows are searched exactly.
//!
//! Index builds take a session advisory lock per space (on a connection of their own, closed
//! afterwards), so one server builds while the others skip, and an index left invalid by a
//! failed build is dropped and built again. Vectors are bound as text (`'[0.1,…]'`) cast to
//! `public.vector`: sea-orm's `postgres-vector` feature panics on SQLite for shared entities.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{ChunkId, DocumentId};
use kernel::TenantId;
use retrieval::{Candidate, IndexError, Space, SpaceId, VectorEntry, VectorIndex};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, QueryFilter, QuerySelect,
    Statement, TransactionTrait, Value,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{SqlStore, scope};

/// The class of the advisory locks of index builds (`"QHNS"`); two-key locks never collide
/// with the one-key migration lock.
const BUILD_LOCK_CLASS: i32 = 0x5148_4E53;
/// The class of the advisory lock that serializes start-up (extension and table).
const SETUP_LOCK_CLASS: i32 = 0x5150_4756;
/// Rows per `INSERT` (a vector of 1,536 dimensions is ~15 KiB of text).
const INSERT_BATCH: usize = 200;
/// Ids per `IN` list.
const IN_BATCH: usize = 1_000;
/// Least `hnsw.ef_search` of a search (pgvector's default is 40).
const MIN_EF_SEARCH: usize = 100;
/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1_000;

/// `chunk_embeddings`, without the vector (the entity serves [`scope`] queries only).
mod row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chunk_embeddings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub space_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub chunk_id: Uuid,
        pub tenant_id: Uuid,
        pub document_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

/// The vector index of a PostgreSQL with pgvector.
pub struct PgVectorIndex {
    db: DatabaseConnection,
    /// The schema of the extension, quoted (`"public"`).
    ext: String,
    threshold: usize,
    /// Spaces whose HNSW index is known valid.
    ready: Arc<Mutex<HashSet<SpaceId>>>,
    /// Spaces whose index this process is building.
    building: Arc<Mutex<HashSet<SpaceId>>>,
    /// Index builds running (for [`PgVectorIndex::settle`]).
    builds: Arc<watch::Sender<usize>>,
}

impl fmt::Debug for PgVectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorIndex")
            .field("extension_schema", &self.ext)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Whether `e` is a unique violation (two sessions creating the same catalog entry).
fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

fn index_name(space: SpaceId) -> String {
    format!("chunk_embeddings_hnsw_{}", space.as_uuid().simple())
}

/// `v` as pgvector's text input: `[0.1,0.2,…]` (shortest round-trip decimals).
fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 11 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// `ids` as PostgreSQL's text input of a `uuid[]`: `{…,…}`.
fn uuid_array(ids: impl IntoIterator<Item = Uuid>) -> String {
    let mut s = String::from("{");
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{id}");
    }
    s.push('}');
    s
}

impl PgVectorIndex {
    /// The index of `store`, when it is PostgreSQL and the `vector` extension is there or can
    /// be created (in `public`); `None` otherwise, and the caller falls back to the embedded
    /// index. Creates `chunk_embeddings` (the migrations must have run: it references
    /// `embedding_spaces` and `documents`). Spaces with fewer than `threshold` vectors are
    /// searched exactly; larger ones get an HNSW index of their own.
    ///
    /// # Errors
    /// When the database fails otherwise (unreachable, the table cannot be created).
    pub async fn try_new(store: &SqlStore, threshold: usize) -> anyhow::Result<Option<Self>> {
        crate::rls::owner(async {
            let db = store.db.clone();
            if db.get_database_backend() != DbBackend::Postgres {
                return Ok(None);
            }
            let Some(ext) = ensure_extension(&db).await? else {
                return Ok(None);
            };
            let ty = format!("{ext}.vector");
            let txn = db.begin().await.context("starting the pgvector set-up")?;
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({SETUP_LOCK_CLASS}, 0)"
            ))
            .await
            .context("taking the pgvector set-up lock")?;
            txn.execute_unprepared(&format!(
                "CREATE TABLE IF NOT EXISTS chunk_embeddings ( \
                space_id uuid NOT NULL REFERENCES embedding_spaces (id) ON DELETE CASCADE, \
                chunk_id uuid NOT NULL, \
                tenant_id uuid NOT NULL, \
                document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE, \
                embedding {ty} NOT NULL, \
                PRIMARY KEY (space_id, chunk_id))"
            ))
            .await
            .context("creating chunk_embeddings")?;
            txn.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_chunk_embeddings_tenant_document \
             ON chunk_embeddings (tenant_id, document_id)",
            )
            .await
            .context("indexing chunk_embeddings")?;
            txn.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_chunk_embeddings_document \
             ON chunk_embeddings (document_id)",
            )
            .await
            .context("indexing chunk_embeddings")?;
            // Row-level security, as on every tenant table (docs/security.md).
            let protected = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT 1 AS p FROM pg_policies WHERE schemaname = current_schema() \
                 AND tablename = 'chunk_embeddings' AND policyname = 'quire_tenant'",
                ))
                .await
                .context("reading chunk_embeddings' policies")?
                .is_some();
            if !protected {
                txn.execute_unprepared(&migration::protect("chunk_embeddings", true))
                    .await
                    .context("protecting chunk_embeddings")?;
            }
            txn.commit()
                .await
                .context("committing the pgvector set-up")?;
            Ok(Some(Self {
                db,
                ext,
                threshold: threshold.max(1),
                ready: Arc::new(Mutex::new(HashSet::new())),
                building: Arc::new(Mutex::new(HashSet::new())),
                builds: Arc::new(watch::Sender::new(0)),
            }))
        })
        .await
    }

    /// Waits until no index build of this instance runs (tests and benchmarks).
    pub async fn settle(&self) {
        let mut rx = self.builds.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Whether `space` has a valid HNSW index (its searches go through it).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn ann_ready(&self, space: SpaceId) -> anyhow::Result<bool> {
        if lock(&self.ready).contains(&space) {
            return Ok(true);
        }
        let valid = index_state(&self.db, space).await? == Some(true);
        if valid {
            lock(&self.ready).insert(space);
        }
        Ok(valid)
    }

    /// Starts building the space's index in the background, unless it exists or is being
    /// built here; `space` must have at least `threshold` rows.
    fn start_build(&self, space: &Space) {
        if !lock(&self.building).insert(space.id) {
            return;
        }
        self.builds.send_modify(|n| *n += 1);
        let guard = BuildGuard {
            space: space.id,
            building: self.building.clone(),
            builds: self.builds.clone(),
        };
        let db = self.db.clone();
        let ext = self.ext.clone();
        let ready = self.ready.clone();
        let id = space.id;
        let dim = space.model.dimensions();
        drop(tokio::spawn(async move {
            let started = std::time::Instant::now();
            // DDL: as the owner of the schema (a spawned task starts outside any scope).
            match crate::rls::owner(build_index(&db, &ext, id, dim)).await {
                Ok(built) => {
                    lock(&ready).insert(id);
                    if built {
                        tracing::info!(
                            space = %id,
                            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "pgvector HNSW index built"
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    space = %id,
                    error = format!("{e:#}"),
                    "building a pgvector HNSW index failed; the space stays exact"
                ),
            }
            drop(guard);
        }));
    }

    /// Exact top `k` of the space (of the allowed documents, when given).
    async fn exact(
        &self,
        space: SpaceId,
        query: &str,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let ext = &self.ext;
        let (filter, mut values): (&str, Vec<Value>) = match allow {
            None => ("", vec![]),
            Some(docs) => (
                " AND document_id = ANY($4::text::uuid[])",
                vec![uuid_array(docs.iter().map(DocumentId::as_uuid)).into()],
            ),
        };
        let sql = format!(
            "SELECT chunk_id, (embedding OPERATOR({ext}.<=>) $2::text::{ext}.vector) AS distance \
             FROM chunk_embeddings WHERE space_id = $1{filter} \
             ORDER BY distance, chunk_id LIMIT $3"
        );
        let mut all: Vec<Value> = vec![
            space.as_uuid().into(),
            query.to_owned().into(),
            i64::try_from(k).unwrap_or(i64::MAX).into(),
        ];
        all.append(&mut values);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                all,
            ))
            .await
            .context("searching vectors exactly")?;
        candidates(rows)
    }

    /// Top `k` through the space's HNSW index.
    async fn approximate(
        &self,
        space: &Space,
        query: &str,
        k: usize,
    ) -> Result<Vec<Candidate>, IndexError> {
        let ext = &self.ext;
        let dim = space.model.dimensions();
        let id = space.id.as_uuid();
        let ef = (2 * k).clamp(MIN_EF_SEARCH, MAX_EF_SEARCH);
        let distance = format!(
            "(embedding::{ext}.vector({dim})) OPERATOR({ext}.<=>) ($1::text::{ext}.vector({dim}))"
        );
        // The literal is our own UUID: the partial index's predicate must be implied by it.
        let sql = format!(
            "SELECT chunk_id, {distance} AS distance FROM chunk_embeddings \
             WHERE space_id = '{id}'::uuid ORDER BY {distance} LIMIT $2"
        );
        let txn = self.db.begin().await.context("starting a vector search")?;
        txn.execute_unprepared(&format!(
            "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL enable_seqscan = off"
        ))
        .await
        .context("setting hnsw.ef_search")?;
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [
                    query.to_owned().into(),
                    i64::try_from(k).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .context("searching vectors")?;
        txn.commit().await.context("ending a vector search")?;
        let mut found = candidates(rows)?;
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk_id.cmp(&b.chunk_id))
        });
        Ok(found)
    }

    /// Rows of the space, counting no further than `limit`.
    async fn count_upto(&self, space: SpaceId, limit: usize) -> Result<usize, IndexError> {
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM chunk_embeddings \
                 WHERE space_id = $1 LIMIT $2) AS s",
                [
                    space.as_uuid().into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .context("counting vectors")?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n").context("reading a count")?,
            None => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends a build's bookkeeping however the build ends.
struct BuildGuard {
    space: SpaceId,
    building: Arc<Mutex<HashSet<SpaceId>>>,
    builds: Arc<watch::Sender<usize>>,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        lock(&self.building).remove(&self.space);
        self.builds.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn candidates(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<Candidate>, IndexError> {
    rows.into_iter()
        .map(|row| {
            let chunk: Uuid = row.try_get("", "chunk_id").context("reading a chunk id")?;
            let distance: f64 = row.try_get("", "distance").context("reading a distance")?;
            let score = (1.0 - distance) as f32;
            Ok(Candidate {
                chunk_id: ChunkId::from_uuid(chunk),
                score,
            })
        })
        .collect()
}

/// The schema of the `vector` extension, quoted, creating the extension in `public` when it
/// is missing; `None` when it cannot be created (not installed, or not allowed).
async fn ensure_extension(db: &DatabaseConnection) -> anyhow::Result<Option<String>> {
    if let Some(schema) = extension_schema(db).await? {
        return Ok(Some(schema));
    }
    match db
        .execute_unprepared("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        .await
    {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            // Another session created it at the same moment: it is there now.
            tracing::debug!("pgvector was created concurrently");
        }
        Err(e) => {
            // Not installed, or this role may not create it: check whether someone else did.
            if let Some(schema) = extension_schema(db).await? {
                return Ok(Some(schema));
            }
            tracing::info!(
                error = format!("{e:#}"),
                "the pgvector extension is not available; using the embedded vector index"
            );
            return Ok(None);
        }
    }
    extension_schema(db).await
}

async fn extension_schema(db: &DatabaseConnection) -> anyhow::Result<Option<String>> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT quote_ident(n.nspname) AS schema FROM pg_extension AS e \
             JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
        ))
        .await
        .context("looking for the pgvector extension")?;
    row.map(|r| r.try_get::<String>("", "schema"))
        .transpose()
        .context("reading the pgvector schema")
}

/// `Some(valid)` when the space's index exists.
async fn index_state(db: &impl ConnectionTrait, space: SpaceId) -> anyhow::Result<Option<bool>> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT (i.indisvalid AND i.indisready) AS valid FROM pg_index AS i \
             WHERE i.indexrelid = to_regclass($1)",
            [index_name(space).into()],
        ))
        .await
        .context("looking for a space's index")?;
    row.map(|r| r.try_get::<bool>("", "valid"))
        .transpose()
        .context("reading a space's index")
}

/// Builds the space's partial HNSW index unless it is there and valid; answers whether it
/// built one. Holds the space's advisory lock on a connection of its own for the build.
async fn build_index(
    db: &DatabaseConnection,
    ext: &str,
    space: SpaceId,
    dim: u32,
) -> anyhow::Result<bool> {
    use sea_orm::sqlx;

    let mut conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .context("a connection for an index build")?;
    // The session lock goes with the connection.
    conn.close_on_drop();
    let key = space.as_uuid().to_string();
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(BUILD_LOCK_CLASS)
        .bind(&key)
        .execute(&mut *conn)
        .await
        .context("taking the index build lock")?;
    let name = index_name(space);
    let state: Option<bool> = sqlx::query_scalar(
        "SELECT (i.indisvalid AND i.indisready) FROM pg_index AS i \
         WHERE i.indexrelid = to_regclass($1)",
    )
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await
    .context("looking for a space's index")?;
    match state {
        Some(true) => return Ok(false),
        Some(false) => {
            // Left invalid by a build that failed (no one else holds the lock).
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {name}"
            )))
            .execute(&mut *conn)
            .await
            .context("dropping an invalid index")?;
        }
        None => {}
    }
    let id = space.as_uuid();
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await
        .context("setting maintenance_work_mem")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON chunk_embeddings \
         USING hnsw ((embedding::{ext}.vector({dim})) {ext}.vector_cosine_ops) \
         WHERE space_id = '{id}'::uuid"
    )))
    .execute(&mut *conn)
    .await
    .context("building a space's HNSW index")?;
    Ok(true)
}

#[async_trait]
impl VectorIndex for PgVectorIndex {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<(), IndexError> {
        crate::rls::tenant(space.tenant_id, async {
        let dim = space.model.dimensions();
        if let Some(bad) = entries.iter().find(|e| e.vector.len() != dim as usize) {
            return Err(IndexError::Dimension {
                expected: dim,
                got: bad.vector.len(),
            });
        }
        if entries.is_empty() {
            return Ok(());
        }
        // One row per chunk (the last entry wins): PostgreSQL refuses to update a row twice
        // in one statement.
        let mut last: HashMap<ChunkId, usize> = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            last.insert(e.chunk_id, i);
        }
        let entries: Vec<&VectorEntry> = entries
            .iter()
            .enumerate()
            .filter(|(i, e)| last.get(&e.chunk_id) == Some(i))
            .map(|(_, e)| e)
            .collect();
        let ext = &self.ext;
        let txn = self.db.begin().await.context("starting a vector write")?;
        for batch in entries.chunks(INSERT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO chunk_embeddings (space_id, chunk_id, tenant_id, document_id, embedding) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 5);
            for (i, e) in batch.iter().enumerate() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                let _ = write!(
                    sql,
                    "(${}, ${}, ${}, ${}, ${}::text::{ext}.vector)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                );
                values.extend([
                    space.id.as_uuid().into(),
                    e.chunk_id.as_uuid().into(),
                    space.tenant_id.as_uuid().into(),
                    e.document_id.as_uuid().into(),
                    vector_text(&e.vector).into(),
                ]);
            }
            sql.push_str(
                " ON CONFLICT (space_id, chunk_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, \
                 document_id = EXCLUDED.document_id, embedding = EXCLUDED.embedding",
            );
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .context("storing vectors")?;
        }
        txn.commit().await.context("committing vectors")?;
        if !lock(&self.ready).contains(&space.id)
            && !lock(&self.building).contains(&space.id)
            && self.count_upto(space.id, self.threshold).await? >= self.threshold
            && !self.ann_ready(space.id).await?
        {
            self.start_build(space);
        }
        Ok(())
    }).await
    }

    async fn search(
        &self,
        space: &Space,
        query: &[f32],
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        crate::rls::tenant(space.tenant_id, async {
            let dim = space.model.dimensions();
            if query.len() != dim as usize {
                return Err(IndexError::Dimension {
                    expected: dim,
                    got: query.len(),
                });
            }
            if k == 0 || allow.is_some_and(<[DocumentId]>::is_empty) {
                return Ok(Vec::new());
            }
            let text = vector_text(query);
            if allow.is_some() || !self.ann_ready(space.id).await? {
                return self.exact(space.id, &text, k, allow).await;
            }
            let found = self.approximate(space, &text, k).await?;
            if found.len() < k && self.count_upto(space.id, k).await? > found.len() {
                tracing::debug!(got = found.len(), k, "HNSW search came back short; exact");
                return self.exact(space.id, &text, k, None).await;
            }
            Ok(found)
        })
        .await
    }

    async fn missing(&self, space: &Space, chunks: &[ChunkId]) -> Result<Vec<ChunkId>, IndexError> {
        crate::rls::tenant(space.tenant_id, async {
            let mut present: HashSet<Uuid> = HashSet::new();
            for batch in chunks.chunks(IN_BATCH) {
                let found: Vec<Uuid> = scope::select::<row::Entity>(space.tenant_id)
                    .select_only()
                    .column(row::Column::ChunkId)
                    .filter(row::Column::SpaceId.eq(space.id.as_uuid()))
                    .filter(row::Column::ChunkId.is_in(batch.iter().map(ChunkId::as_uuid)))
                    .into_tuple()
                    .all(&self.db)
                    .await
                    .context("looking for vectors")?;
                present.extend(found);
            }
            let mut seen = HashSet::new();
            Ok(chunks
                .iter()
                .copied()
                .filter(|c| !present.contains(&c.as_uuid()) && seen.insert(*c))
                .collect())
        })
        .await
    }

    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<(), IndexError> {
        crate::rls::tenant(tenant, async {
            let mut delete = scope::delete::<row::Entity>(tenant)
                .filter(row::Column::DocumentId.eq(document.as_uuid()));
            if !keep.is_empty() {
                // One bound array, however many chunks are kept.
                delete = delete.filter(sea_orm::sea_query::Expr::cust_with_values(
                    "NOT (chunk_id = ANY($1::text::uuid[]))",
                    [uuid_array(keep.iter().map(ChunkId::as_uuid))],
                ));
            }
            delete
                .exec(&self.db)
                .await
                .context("deleting a document's vectors")?;
            Ok(())
        })
        .await
    }

    async fn drop_space(&self, space: &Space) -> Result<(), IndexError> {
        crate::rls::tenant(space.tenant_id, async {
            scope::delete::<row::Entity>(space.tenant_id)
                .filter(row::Column::SpaceId.eq(space.id.as_uuid()))
                .exec(&self.db)
                .await
                .context("dropping a space's vectors")?;
            lock(&self.ready).remove(&space.id);
            crate::rls::owner(self.db.execute_unprepared(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                index_name(space.id)
            )))
            .await
            .context("dropping a space's index")?;
            Ok(())
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "pgvector"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_ids_as_text() {
        assert_eq!(vector_text(&[0.1, -2.0, 1e-8]), "[0.1,-2,0.00000001]");
        assert_eq!(vector_text(&[]), "[]");
        let a = Uuid::nil();
        assert_eq!(
            uuid_array([a, a]),
            "{00000000-0000-0000-0000-000000000000,00000000-0000-0000-0000-000000000000}"
        );
        assert_eq!(uuid_array([]), "{}");
        let name = index_name(SpaceId::new());
        assert!(name.len() <= 63 && name.starts_with("chunk_embeddings_hnsw_"));
    }
}
