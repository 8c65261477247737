//! [`ChunkCatalog`] on SQL: stored chunks for search results and re-embedding, through the
//! tenant-scoping helper.
//!
//! The metadata filter runs in SQL on both backends. `documents.metadata` is JSON text (see
//! `crate::documents`); each pair of the filter is one condition on a top-level key:
//! - SQLite: `EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND type … AND value = ?)`,
//!   the key a bound value (no JSON path is built from client text). The JSON type is checked
//!   first, so `true`, `1` and `"1"` never meet; numbers compare as numbers (`2024 = 2024.0`);
//! - PostgreSQL: `(metadata::jsonb -> $key) = $value::jsonb`: jsonb equality, which compares
//!   numbers numerically and never equals values of different JSON types.
//!
//! The cast and `json_each` read every document of the tenant in scope (no index on
//! metadata); a search asks for at most its allow-list's limit.

use std::collections::HashSet;

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{ChunkId, CollectionId, DocumentId};
use kernel::TenantId;
use retrieval::{ChunkCatalog, ChunkRecord, ChunkText, IndexError, MetadataFilter};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationDef, Value,
};
use uuid::Uuid;

use crate::entity::{chunk, document};
use crate::stored::fit;
use crate::{SqlStore, scope};

/// Ids per `IN` list.
const IN_BATCH: usize = 500;

/// A chunk with its document's name, as one joined row.
#[derive(Debug, FromQueryResult)]
struct RecordRow {
    id: Uuid,
    document_id: Uuid,
    collection_id: Option<Uuid>,
    ordinal: i32,
    page: Option<i32>,
    text: String,
    token_count: i32,
    document_name: String,
}

fn chunk_document() -> RelationDef {
    chunk::Entity::belongs_to(document::Entity)
        .from(chunk::Column::DocumentId)
        .to(document::Column::Id)
        .into()
}

fn limit_of(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX)
}

/// The condition that the document's metadata has `key` equal to `value`.
fn metadata_has(
    backend: DbBackend,
    key: &str,
    value: &serde_json::Value,
) -> Result<SimpleExpr, IndexError> {
    if backend == DbBackend::Postgres {
        let json = serde_json::to_string(value).context("serializing a filter value")?;
        return Ok(Expr::cust_with_values(
            "((\"documents\".\"metadata\")::jsonb -> $1) = $2::jsonb",
            [Value::from(key.to_owned()), Value::from(json)],
        ));
    }
    let exists = |typed: &str| {
        format!(
            "EXISTS (SELECT 1 FROM json_each(\"documents\".\"metadata\") AS j \
             WHERE j.key = ? AND {typed})"
        )
    };
    let key = Value::from(key.to_owned());
    Ok(match value {
        serde_json::Value::String(s) => Expr::cust_with_values(
            exists("j.type = 'text' AND j.value = ?"),
            [key, Value::from(s.clone())],
        ),
        serde_json::Value::Bool(true) => Expr::cust_with_values(exists("j.type = 'true'"), [key]),
        serde_json::Value::Bool(false) => Expr::cust_with_values(exists("j.type = 'false'"), [key]),
        serde_json::Value::Number(n) => {
            // Exact for integers; SQLite compares an integer and a real numerically.
            let n = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::from(i),
                (None, Some(f)) => Value::from(f),
                (None, None) => return Err(anyhow::anyhow!("a filter number out of range").into()),
            };
            Expr::cust_with_values(
                exists("j.type IN ('integer', 'real') AND j.value = ?"),
                [key, n],
            )
        }
        other => {
            return Err(anyhow::anyhow!("a filter value of an unsupported type: {other}").into());
        }
    })
}

#[async_trait]
impl ChunkCatalog for SqlStore {
    async fn records(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<ChunkRecord>, IndexError> {
        crate::rls::tenant(tenant, async {
            let mut seen = HashSet::new();
            let ids: Vec<Uuid> = ids
                .iter()
                .map(ChunkId::as_uuid)
                .filter(|id| seen.insert(*id))
                .collect();
            let mut records = Vec::with_capacity(ids.len());
            for batch in ids.chunks(IN_BATCH) {
                let rows = scope::select::<chunk::Entity>(tenant)
                    .select_only()
                    .column(chunk::Column::Id)
                    .column(chunk::Column::DocumentId)
                    .column(chunk::Column::CollectionId)
                    .column(chunk::Column::Ordinal)
                    .column(chunk::Column::Page)
                    .column(chunk::Column::Text)
                    .column(chunk::Column::TokenCount)
                    .column_as(document::Column::Name, "document_name")
                    .join(JoinType::InnerJoin, chunk_document())
                    .filter(document::Column::TenantId.eq(tenant.as_uuid()))
                    .filter(chunk::Column::Id.is_in(batch.iter().copied()))
                    .into_model::<RecordRow>()
                    .all(&self.db)
                    .await
                    .context("reading chunks for search")?;
                for r in rows {
                    records.push(ChunkRecord {
                        chunk_id: ChunkId::from_uuid(r.id),
                        document_id: DocumentId::from_uuid(r.document_id),
                        document_name: r.document_name,
                        collection_id: r.collection_id.map(CollectionId::from_uuid),
                        ordinal: fit(r.ordinal, "ordinal")?,
                        page: r.page.map(|p| fit(p, "page")).transpose()?,
                        text: r.text,
                        tokens: fit(r.token_count, "token_count")?,
                    });
                }
            }
            Ok(records)
        })
        .await
    }

    async fn matching_documents(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        filter: &MetadataFilter,
        limit: usize,
    ) -> Result<Vec<DocumentId>, IndexError> {
        crate::rls::tenant(tenant, async {
            if limit == 0 || collections.is_some_and(<[_]>::is_empty) {
                return Ok(Vec::new());
            }
            let backend = self.db.get_database_backend();
            let mut query = scope::select::<document::Entity>(tenant)
                .select_only()
                .column(document::Column::Id)
                .order_by_asc(document::Column::Id)
                .limit(limit_of(limit));
            if let Some(collections) = collections {
                query = query.filter(
                    document::Column::CollectionId
                        .is_in(collections.iter().map(CollectionId::as_uuid)),
                );
            }
            for (key, value) in filter.pairs() {
                query = query.filter(metadata_has(backend, key, value)?);
            }
            let ids: Vec<Uuid> = query
                .into_tuple()
                .all(&self.db)
                .await
                .context("filtering documents by metadata")?;
            Ok(ids.into_iter().map(DocumentId::from_uuid).collect())
        })
        .await
    }

    async fn scan(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkText>, IndexError> {
        crate::rls::tenant(tenant, async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut query = scope::select::<chunk::Entity>(tenant)
                .select_only()
                .column(chunk::Column::Id)
                .column(chunk::Column::DocumentId)
                .column(chunk::Column::Text)
                .filter(match collection {
                    Some(c) => chunk::Column::CollectionId.eq(c.as_uuid()),
                    None => chunk::Column::CollectionId.is_null(),
                })
                .order_by_asc(chunk::Column::Id)
                .limit(limit_of(limit));
            if let Some(after) = after {
                query = query.filter(chunk::Column::Id.gt(after.as_uuid()));
            }
            let rows: Vec<(Uuid, Uuid, String)> = query
                .into_tuple()
                .all(&self.db)
                .await
                .context("scanning a scope's chunks")?;
            Ok(rows
                .into_iter()
                .map(|(id, document, text)| ChunkText {
                    chunk_id: ChunkId::from_uuid(id),
                    document_id: DocumentId::from_uuid(document),
                    text,
                })
                .collect())
        })
        .await
    }
}
