//! [`VectorRows`] on SQL: the rows an in-process vector index keeps, in `chunk_vectors`
//! (little-endian `f32`s: a BLOB on SQLite, `bytea` on PostgreSQL).
//!
//! An upsert is one write transaction that first bumps its space's `version`
//! (`UPDATE … SET version = version + 1 … RETURNING version`) and writes every row with that
//! value as `seq`. The bump takes the space row's write lock (on SQLite the database's), so
//! writers of one space are serialized and commit in `seq` order: a reader that has loaded
//! everything up to `seq` only needs rows after it. The rows of a space are read by space id
//! (the space belongs to one tenant); a document's rows through `crate::scope`.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{ChunkId, DocumentId};
use kernel::TenantId;
use retrieval::{IndexError, Space, SpaceId, VectorEntry, VectorRow, VectorRows};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Value,
};
use uuid::Uuid;

use crate::entity::chunk_vector::{Column, Entity, Model};
use crate::entity::embedding_space;
use crate::stored::fit;
use crate::{SqlStore, scope};

/// Rows per `INSERT` (six bound values each; a row of 1,536 dimensions is 6 KiB).
const INSERT_BATCH: usize = 256;
/// Ids per `IN` list.
const IN_BATCH: usize = 500;
/// Rows per `DELETE` when a space is dropped (a short write lock at a time on SQLite).
const DROP_BATCH: u64 = 5_000;

/// `vector` as stored: little-endian `f32`s.
pub(crate) fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector.
pub(crate) fn decode(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        anyhow::bail!("a stored vector of {} bytes", bytes.len());
    }
    Ok(chunks
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn check_dimensions<'a>(
    expected: u32,
    entries: impl IntoIterator<Item = &'a VectorEntry>,
) -> Result<(), IndexError> {
    match entries
        .into_iter()
        .find(|e| u32::try_from(e.vector.len()).ok() != Some(expected))
    {
        Some(bad) => Err(IndexError::Dimension {
            expected,
            got: bad.vector.len(),
        }),
        None => Ok(()),
    }
}

fn to_row(m: Model) -> Result<VectorRow, IndexError> {
    Ok(VectorRow {
        chunk_id: ChunkId::from_uuid(m.chunk_id),
        document_id: DocumentId::from_uuid(m.document_id),
        seq: m.seq,
        vector: decode(&m.embedding)?,
    })
}

#[async_trait]
impl VectorRows for SqlStore {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<i64, IndexError> {
        crate::rls::tenant(space.tenant_id, async {
            check_dimensions(space.model.dimensions(), entries)?;
            if entries.is_empty() {
                return self.version(space.id).await;
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

            let txn = self
                .begin_write()
                .await
                .context("starting a vector write")?;
            let bumped = scope::update::<embedding_space::Entity>(space.tenant_id)
                .col_expr(
                    embedding_space::Column::Version,
                    Expr::col(embedding_space::Column::Version).add(1),
                )
                .filter(embedding_space::Column::Id.eq(space.id.as_uuid()))
                .exec_with_returning(&txn)
                .await
                .context("taking the next vector seq")?;
            let Some(stored) = bumped.into_iter().next() else {
                txn.rollback().await.context("ending a vector write")?;
                return Err(anyhow::anyhow!("no space {} of this tenant", space.id).into());
            };
            // The stored dimension is the truth (the caller's `Space` might be stale).
            let expected: u32 = fit(stored.dimensions, "dimensions")?;
            if let Err(e) = check_dimensions(expected, entries.iter().copied()) {
                txn.rollback().await.context("ending a vector write")?;
                return Err(e);
            }
            let seq = stored.version;
            for batch in entries.chunks(INSERT_BATCH) {
                let mut insert = Query::insert();
                insert.into_table(Entity).columns([
                    Column::SpaceId,
                    Column::ChunkId,
                    Column::TenantId,
                    Column::DocumentId,
                    Column::Seq,
                    Column::Embedding,
                ]);
                for e in batch {
                    let values: [Value; 6] = [
                        space.id.as_uuid().into(),
                        e.chunk_id.as_uuid().into(),
                        space.tenant_id.as_uuid().into(),
                        e.document_id.as_uuid().into(),
                        seq.into(),
                        encode(&e.vector).into(),
                    ];
                    insert
                        .values(values.map(Expr::value))
                        .context("building a vector insert")?;
                }
                insert.on_conflict(
                    OnConflict::columns([Column::SpaceId, Column::ChunkId])
                        .update_columns([
                            Column::TenantId,
                            Column::DocumentId,
                            Column::Seq,
                            Column::Embedding,
                        ])
                        .to_owned(),
                );
                txn.execute(&insert).await.context("storing vectors")?;
            }
            txn.commit().await.context("committing vectors")?;
            Ok(seq)
        })
        .await
    }

    async fn version(&self, space: SpaceId) -> Result<i64, IndexError> {
        crate::rls::platform(async {
            let version: Option<i64> = embedding_space::Entity::find_by_id(space.as_uuid())
                .select_only()
                .column(embedding_space::Column::Version)
                .into_tuple()
                .one(&self.db)
                .await
                .context("reading a space's version")?;
            Ok(version.unwrap_or(0))
        })
        .await
    }

    async fn load(
        &self,
        space: SpaceId,
        after: i64,
        cursor: Option<(i64, ChunkId)>,
        limit: usize,
    ) -> Result<Vec<VectorRow>, IndexError> {
        crate::rls::platform(async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut query = Entity::find()
                .filter(Column::SpaceId.eq(space.as_uuid()))
                .filter(Column::Seq.gt(after));
            if let Some((seq, chunk)) = cursor {
                query = query.filter(
                    Condition::any().add(Column::Seq.gt(seq)).add(
                        Condition::all()
                            .add(Column::Seq.eq(seq))
                            .add(Column::ChunkId.gt(chunk.as_uuid())),
                    ),
                );
            }
            query
                .order_by_asc(Column::Seq)
                .order_by_asc(Column::ChunkId)
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .all(&self.db)
                .await
                .context("loading vectors")?
                .into_iter()
                .map(to_row)
                .collect()
        })
        .await
    }

    async fn missing(
        &self,
        space: SpaceId,
        chunks: &[ChunkId],
    ) -> Result<Vec<ChunkId>, IndexError> {
        crate::rls::platform(async {
            let mut present: HashSet<Uuid> = HashSet::new();
            for batch in chunks.chunks(IN_BATCH) {
                let found: Vec<Uuid> = Entity::find()
                    .select_only()
                    .column(Column::ChunkId)
                    .filter(Column::SpaceId.eq(space.as_uuid()))
                    .filter(Column::ChunkId.is_in(batch.iter().map(ChunkId::as_uuid)))
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
    ) -> Result<Vec<(SpaceId, ChunkId)>, IndexError> {
        crate::rls::tenant(tenant, async {
            let keep: HashSet<Uuid> = keep.iter().map(ChunkId::as_uuid).collect();
            let txn = self
                .begin_write()
                .await
                .context("starting a vector cleanup")?;
            let rows: Vec<(Uuid, Uuid)> = scope::select::<Entity>(tenant)
                .select_only()
                .column(Column::SpaceId)
                .column(Column::ChunkId)
                .filter(Column::DocumentId.eq(document.as_uuid()))
                .into_tuple()
                .all(&txn)
                .await
                .context("reading a document's vectors")?;
            let mut doomed: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
            for (space, chunk) in rows {
                if !keep.contains(&chunk) {
                    doomed.entry(space).or_default().push(chunk);
                }
            }
            let mut deleted = Vec::new();
            for (space, chunks) in doomed {
                for batch in chunks.chunks(IN_BATCH) {
                    scope::delete::<Entity>(tenant)
                        .filter(Column::SpaceId.eq(space))
                        .filter(Column::ChunkId.is_in(batch.iter().copied()))
                        .exec(&txn)
                        .await
                        .context("deleting a document's vectors")?;
                    deleted.extend(
                        batch
                            .iter()
                            .map(|c| (SpaceId::from_uuid(space), ChunkId::from_uuid(*c))),
                    );
                }
            }
            txn.commit().await.context("committing a vector cleanup")?;
            Ok(deleted)
        })
        .await
    }

    async fn drop_space(&self, space: SpaceId) -> Result<(), IndexError> {
        crate::rls::platform(async {
            loop {
                let some = Query::select()
                    .column(Column::ChunkId)
                    .from(Entity)
                    .and_where(Expr::col(Column::SpaceId).eq(space.as_uuid()))
                    .limit(DROP_BATCH)
                    .to_owned();
                let deleted = Entity::delete_many()
                    .filter(Column::SpaceId.eq(space.as_uuid()))
                    .filter(Column::ChunkId.in_subquery(some))
                    .exec(&self.db)
                    .await
                    .context("dropping a space's vectors")?
                    .rows_affected;
                if deleted == 0 {
                    return Ok(());
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_little_endian() {
        let v = [1.0_f32, -0.5, f32::MIN_POSITIVE, 3.25];
        let bytes = encode(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..4], &1.0_f32.to_le_bytes());
        assert_eq!(decode(&bytes).expect("decodes"), v);
        assert!(decode(&bytes[..5]).is_err());
    }
}
