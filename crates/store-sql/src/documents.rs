//! [`DocumentRepository`] on SQL, through the tenant-scoping helper.
//!
//! A document and its first job are stored in one transaction; deleting and reindexing cancel
//! the document's unfinished jobs in the same transaction as their own change. The client's
//! metadata is kept as serialized JSON text (one portable column on both backends) and must
//! read back as a JSON object.

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{
    BlobKey, Chunk, ChunkId, CollectionId, Document, DocumentFilter, DocumentId,
    DocumentRepository, DocumentStatus, Job, JobId, StoreError, Stored,
};
use kernel::{InvalidInput, Page, PageRequest, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement, Value,
};
use time::OffsetDateTime;

use crate::document_rows::find_in;
use crate::entity::document::{ActiveModel, Column, Entity, Model};
use crate::entity::{chunk, job};
use crate::stored::{execute_timed, fit};
use crate::{SqlStore, job_rows, scope};

pub(crate) fn to_domain(m: Model) -> Result<Document, StoreError> {
    let metadata = match serde_json::from_str(&m.metadata).context("stored metadata")? {
        serde_json::Value::Object(map) => map,
        _ => return Err(anyhow::anyhow!("stored metadata is not a JSON object").into()),
    };
    Ok(Document {
        id: DocumentId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        collection_id: m.collection_id.map(CollectionId::from_uuid),
        name: m.name,
        format: m
            .format
            .parse()
            .map_err(|_| anyhow::anyhow!("stored format {:?}", m.format))?,
        bytes: fit(m.bytes, "bytes")?,
        content_hash: m.content_hash,
        pages: m.pages.map(|p| fit(p, "pages")).transpose()?,
        ocr_pages: fit(m.ocr_pages, "ocr_pages")?,
        status: m
            .status
            .parse()
            .map_err(|_| anyhow::anyhow!("stored document status {:?}", m.status))?,
        progress: m.progress,
        stage: job_rows::stage_of(m.stage)?,
        done: fit(m.done_units, "done_units")?,
        total: fit(m.total_units, "total_units")?,
        chunks: fit(m.chunk_count, "chunk_count")?,
        tokens: fit(m.token_count, "token_count")?,
        error: m.error,
        metadata,
        job_id: m.job_id.map(JobId::from_uuid),
        blob_key: BlobKey::from_stored(m.blob_key),
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn new_row(d: Document) -> Result<ActiveModel, StoreError> {
    let metadata = serde_json::to_string(&serde_json::Value::Object(d.metadata))
        .context("serializing metadata")?;
    Ok(ActiveModel {
        id: Set(d.id.as_uuid()),
        tenant_id: Set(d.tenant_id.as_uuid()),
        collection_id: Set(d.collection_id.map(|c| c.as_uuid())),
        name: Set(d.name),
        format: Set(d.format.as_str().to_owned()),
        bytes: Set(fit(d.bytes, "bytes")?),
        content_hash: Set(d.content_hash),
        pages: Set(d.pages.map(|p| fit(p, "pages")).transpose()?),
        ocr_pages: Set(fit(d.ocr_pages, "ocr_pages")?),
        status: Set(d.status.as_str().to_owned()),
        progress: Set(d.progress),
        stage: Set(d.stage.map(|s| s.as_str().to_owned())),
        done_units: Set(fit(d.done, "done units")?),
        total_units: Set(fit(d.total, "total units")?),
        chunk_count: Set(fit(d.chunks, "chunk_count")?),
        token_count: Set(fit(d.tokens, "token_count")?),
        error: Set(d.error),
        metadata: Set(metadata),
        job_id: Set(d.job_id.map(|j| j.as_uuid())),
        blob_key: Set(d.blob_key.as_str().to_owned()),
        created_at: Set(d.created_at),
        updated_at: Set(d.updated_at),
    })
}

fn chunk_to_domain(m: chunk::Model) -> Result<Chunk, StoreError> {
    Ok(Chunk {
        id: ChunkId::from_uuid(m.id),
        document_id: DocumentId::from_uuid(m.document_id),
        ordinal: fit(m.ordinal, "ordinal")?,
        text: m.text,
        tokens: fit(m.token_count, "token_count")?,
        page: m.page.map(|p| fit(p, "page")).transpose()?,
        start: fit(m.start_char, "start_char")?,
        end: fit(m.end_char, "end_char")?,
        ocr: m.ocr,
    })
}

/// The ordinal after which a page of chunks starts (the cursor's key).
fn after_ordinal(page: &PageRequest) -> Result<Option<i32>, InvalidInput> {
    page.after()
        .map(|c| {
            c.key()
                .parse::<u32>()
                .ok()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| InvalidInput::field("cursor", "is not a valid cursor"))
        })
        .transpose()
}

/// The class of the PostgreSQL advisory locks that serialize one tenant's storage checks
/// (`"QSTO"`).
const STORAGE_LOCK_CLASS: i32 = 0x5153_544F;

/// Serializes the storage checks of one tenant on PostgreSQL, until the transaction ends.
const STORAGE_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// Bytes of the tenant's documents, read on `db`.
async fn storage_used_on(db: &impl ConnectionTrait, tenant: TenantId) -> Result<u64, StoreError> {
    let total: Option<i64> = scope::select::<Entity>(tenant)
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(bytes), 0) AS BIGINT)"),
            "total",
        )
        .into_tuple()
        .one(db)
        .await
        .context("summing a tenant's stored bytes")?;
    Ok(fit(total.unwrap_or(0), "stored bytes")?)
}

#[async_trait]
impl DocumentRepository for SqlStore {
    async fn create_within(
        &self,
        document: Document,
        first_job: Job,
        storage_limit: Option<u64>,
    ) -> Result<Stored, StoreError> {
        crate::rls::tenant(document.tenant_id, async {
            let tenant = document.tenant_id;
            let bytes = document.bytes;
            let row = new_row(document)?;
            // SQLite: the write lock, held from here to the commit, serializes every check.
            let txn = self
                .begin_write()
                .await
                .context("starting a document upload")?;
            if let Some(limit) = storage_limit {
                let backend = txn.get_database_backend();
                if backend == DbBackend::Postgres {
                    // Read committed: the sum below, read after the lock, sees every upload of
                    // the tenant that committed before it.
                    txn.execute_raw(Statement::from_sql_and_values(
                        backend,
                        STORAGE_LOCK_SQL,
                        [
                            Value::from(STORAGE_LOCK_CLASS),
                            Value::from(tenant.as_uuid().to_string()),
                        ],
                    ))
                    .await
                    .context("locking a tenant's storage")?;
                }
                let used = storage_used_on(&txn, tenant).await?;
                if used.saturating_add(bytes) > limit {
                    txn.rollback().await.context("ending a document upload")?;
                    return Ok(Stored::OverLimit { used });
                }
            }
            execute_timed(&txn, &Entity::insert(row))
                .await
                .context("storing a document")?;
            job_rows::insert(&txn, first_job).await?;
            txn.commit().await.context("committing a document upload")?;
            Ok(Stored::Created)
        })
        .await
    }

    async fn storage_used(&self, tenant: TenantId) -> Result<u64, StoreError> {
        crate::rls::tenant(tenant, async { storage_used_on(&self.db, tenant).await }).await
    }

    async fn find(&self, tenant: TenantId, id: DocumentId) -> Result<Option<Document>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a document")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn find_duplicate(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        crate::rls::tenant(tenant, async {
            let in_collection = match collection {
                Some(c) => Column::CollectionId.eq(c.as_uuid()),
                None => Column::CollectionId.is_null(),
            };
            scope::select::<Entity>(tenant)
                .filter(in_collection)
                .filter(Column::ContentHash.eq(content_hash))
                .filter(Column::Status.ne(DocumentStatus::Failed.as_str()))
                .order_by_desc(Column::Id)
                .one(&self.db)
                .await
                .context("looking for a duplicate document")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<Entity>(tenant).order_by_desc(Column::Id);
            if let Some(collection) = filter.collection_id {
                query = query.filter(Column::CollectionId.eq(collection.as_uuid()));
            }
            if let Some(status) = filter.status {
                query = query.filter(Column::Status.eq(status.as_str()));
            }
            if let Some(after) = page.after_uuid()? {
                query = query.filter(Column::Id.lt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing documents")?;
            let documents = rows
                .into_iter()
                .map(to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(documents, page, |d| d.id.to_string()))
        })
        .await
    }

    async fn chunks(
        &self,
        tenant: TenantId,
        id: DocumentId,
        page: &PageRequest,
    ) -> Result<Page<Chunk>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<chunk::Entity>(tenant)
                .filter(chunk::Column::DocumentId.eq(id.as_uuid()))
                .order_by_asc(chunk::Column::Ordinal);
            if let Some(after) = after_ordinal(page)? {
                query = query.filter(chunk::Column::Ordinal.gt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing chunks")?;
            let chunks = rows
                .into_iter()
                .map(chunk_to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(chunks, page, |c| {
                c.ordinal.to_string()
            }))
        })
        .await
    }

    async fn delete(
        &self,
        tenant: TenantId,
        id: DocumentId,
        now: OffsetDateTime,
    ) -> Result<Option<BlobKey>, StoreError> {
        crate::rls::tenant(tenant, async {
            let txn = self
                .begin_write()
                .await
                .context("starting a document delete")?;
            let Some(row) = find_in(&txn, tenant, id).await? else {
                txn.rollback().await.context("ending a document delete")?;
                return Ok(None);
            };
            job_rows::cancel_unfinished(
                &txn,
                tenant,
                job::Column::DocumentId.eq(id.as_uuid()),
                now,
            )
            .await?;
            scope::delete::<chunk::Entity>(tenant)
                .filter(chunk::Column::DocumentId.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a document's chunks")?;
            scope::delete::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a document")?;
            txn.commit().await.context("committing a document delete")?;
            Ok(Some(BlobKey::from_stored(row.blob_key)))
        })
        .await
    }

    async fn reindex(
        &self,
        tenant: TenantId,
        id: DocumentId,
        new_job: Job,
    ) -> Result<Option<Document>, StoreError> {
        crate::rls::tenant(tenant, async {
            if new_job.tenant_id != tenant || new_job.document_id != Some(id) {
                return Err(
                    anyhow::anyhow!("a reindex job must name its tenant and document").into(),
                );
            }
            // The job's creation is the moment of the change.
            let now = new_job.created_at;
            let job_id = new_job.id;
            let txn = self.begin_write().await.context("starting a reindex")?;
            if find_in(&txn, tenant, id).await?.is_none() {
                txn.rollback().await.context("ending a reindex")?;
                return Ok(None);
            }
            job_rows::cancel_unfinished(
                &txn,
                tenant,
                job::Column::DocumentId.eq(id.as_uuid()),
                now,
            )
            .await?;
            job_rows::insert(&txn, new_job).await?;
            scope::update::<Entity>(tenant)
                .col_expr(Column::Status, Expr::value(DocumentStatus::Queued.as_str()))
                .col_expr(Column::Progress, Expr::value(0.0_f32))
                .col_expr(Column::Stage, Expr::value(Option::<String>::None))
                .col_expr(Column::DoneUnits, Expr::value(0))
                .col_expr(Column::TotalUnits, Expr::value(0))
                .col_expr(Column::Error, Expr::value(Option::<String>::None))
                .col_expr(Column::JobId, Expr::value(job_id.as_uuid()))
                .col_expr(Column::UpdatedAt, Expr::value(self.at(now)))
                .filter(Column::Id.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("queueing a document again")?;
            let row = find_in(&txn, tenant, id)
                .await?
                .context("the reindexed document")?;
            txn.commit().await.context("committing a reindex")?;
            to_domain(row).map(Some)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use kernel::Cursor;

    use super::*;

    #[test]
    fn chunk_cursors_are_ordinals() {
        let first = PageRequest::first(10).expect("page");
        assert_eq!(after_ordinal(&first), Ok(None));
        assert_eq!(
            after_ordinal(&first.next(Cursor::after("41"))),
            Ok(Some(41))
        );
        for bad in ["-1", "x", "4294967295", ""] {
            let err = after_ordinal(&first.next(Cursor::after(bad))).expect_err(bad);
            assert_eq!(err.0[0].field, "cursor");
        }
    }

    fn row(metadata: &str) -> Model {
        let now = OffsetDateTime::UNIX_EPOCH;
        Model {
            id: uuid::Uuid::now_v7(),
            tenant_id: uuid::Uuid::now_v7(),
            collection_id: None,
            name: "a.txt".into(),
            format: "text".into(),
            bytes: 3,
            content_hash: "00".into(),
            pages: None,
            ocr_pages: 0,
            status: "queued".into(),
            progress: 0.0,
            stage: None,
            done_units: 0,
            total_units: 0,
            chunk_count: 0,
            token_count: 0,
            error: None,
            metadata: metadata.into(),
            job_id: None,
            blob_key: "k".into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_stored_stage_must_be_one_there_is() {
        let mut running = row("{}");
        running.stage = Some("embedding".into());
        running.done_units = 64;
        running.total_units = 200;
        let doc = to_domain(running).expect("a known stage");
        assert_eq!(
            (doc.stage, doc.done, doc.total),
            (Some(documents::Stage::Embedding), 64, 200)
        );
        let mut odd = row("{}");
        odd.stage = Some("dreaming".into());
        assert!(to_domain(odd).is_err());
    }

    #[test]
    fn stored_metadata_must_be_an_object() {
        assert!(to_domain(row(r#"{"a":1}"#)).is_ok());
        for bad in ["[1]", "3", "null", "{", ""] {
            assert!(
                matches!(to_domain(row(bad)), Err(StoreError::Unknown(_))),
                "{bad}"
            );
        }
    }
}
