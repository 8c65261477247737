//! [`CollectionRepository`] on SQL, through the tenant-scoping helper.
//!
//! Deleting a collection is one transaction: its documents' unfinished jobs are cancelled, its
//! chunks and documents deleted, then the collection; the documents' blob keys are returned
//! for the caller to remove. On PostgreSQL the collection row is locked first, so a document
//! being added to it at the same moment either commits before (and is deleted with it) or
//! fails on the foreign key.

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{
    BlobKey, ChunkingSettings, Collection, CollectionId, CollectionName, CollectionPatch,
    CollectionRepository, CollectionStats, OcrLanguages, StoreError, Tokenizer,
};
use kernel::{Page, PageRequest, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use time::OffsetDateTime;

use crate::entity::collection::{ActiveModel, Column, Entity, Model};
use crate::entity::{chunk, document};
use crate::stored::{execute_timed, fit, utc_micros};
use crate::{SqlStore, job_rows, scope};

fn to_domain(m: Model) -> Result<Collection, StoreError> {
    let tokenizer: Tokenizer = m
        .tokenizer
        .parse()
        .map_err(|_| anyhow::anyhow!("stored tokenizer {:?}", m.tokenizer))?;
    let chunking = ChunkingSettings::new(
        fit(m.chunk_max_tokens, "chunk_max_tokens")?,
        fit(m.chunk_overlap, "chunk_overlap")?,
        tokenizer,
    )
    .map_err(|e| anyhow::anyhow!("stored chunking settings: {e}"))?;
    Ok(Collection {
        id: CollectionId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        name: CollectionName::from_stored(m.name),
        description: m.description,
        chunking,
        embedding_model: m.embedding_model,
        ocr_languages: m
            .ocr_languages
            .as_deref()
            .map(OcrLanguages::parse_joined)
            .transpose()
            .map_err(|e| anyhow::anyhow!("stored OCR languages: {e}"))?,
        rerank_top_n: m.rerank_top_n.map(|n| fit(n, "rerank_top_n")).transpose()?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

#[async_trait]
impl CollectionRepository for SqlStore {
    async fn create(&self, c: Collection) -> Result<Collection, StoreError> {
        crate::rls::tenant(c.tenant_id, async {
            let row = Model {
                id: c.id.as_uuid(),
                tenant_id: c.tenant_id.as_uuid(),
                name: c.name.as_str().to_owned(),
                description: c.description,
                chunk_max_tokens: fit(c.chunking.max_tokens(), "chunk_max_tokens")?,
                chunk_overlap: fit(c.chunking.overlap(), "chunk_overlap")?,
                tokenizer: c.chunking.tokenizer().as_str().to_owned(),
                embedding_model: c.embedding_model,
                ocr_languages: c.ocr_languages.as_ref().map(OcrLanguages::joined),
                rerank_top_n: c.rerank_top_n.map(|n| fit(n, "rerank_top_n")).transpose()?,
                created_at: utc_micros(c.created_at),
                updated_at: utc_micros(c.updated_at),
            };
            execute_timed(&self.db, &Entity::insert(ActiveModel::from(row.clone())))
                .await
                .context("storing a collection")?;
            to_domain(row)
        })
        .await
    }

    async fn find(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<Option<Collection>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a collection")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Collection>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<Entity>(tenant).order_by_asc(Column::Id);
            if let Some(after) = page.after_uuid()? {
                query = query.filter(Column::Id.gt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing collections")?;
            let collections = rows
                .into_iter()
                .map(to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(collections, page, |c| {
                c.id.to_string()
            }))
        })
        .await
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: CollectionId,
        patch: CollectionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Collection>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut update = scope::update::<Entity>(tenant)
                .col_expr(Column::UpdatedAt, Expr::value(self.at(now)))
                .filter(Column::Id.eq(id.as_uuid()));
            if let Some(name) = patch.name {
                update = update.col_expr(Column::Name, Expr::value(name.as_str().to_owned()));
            }
            if let Some(description) = patch.description {
                update = update.col_expr(Column::Description, Expr::value(description));
            }
            if let Some(chunking) = patch.chunking {
                let max_tokens: i32 = fit(chunking.max_tokens(), "chunk_max_tokens")?;
                let overlap: i32 = fit(chunking.overlap(), "chunk_overlap")?;
                update = update
                    .col_expr(Column::ChunkMaxTokens, Expr::value(max_tokens))
                    .col_expr(Column::ChunkOverlap, Expr::value(overlap))
                    .col_expr(
                        Column::Tokenizer,
                        Expr::value(chunking.tokenizer().as_str().to_owned()),
                    );
            }
            if let Some(model) = patch.embedding_model {
                update = update.col_expr(Column::EmbeddingModel, Expr::value(model));
            }
            if let Some(languages) = patch.ocr_languages {
                update = update.col_expr(
                    Column::OcrLanguages,
                    Expr::value(languages.as_ref().map(OcrLanguages::joined)),
                );
            }
            if let Some(n) = patch.rerank_top_n {
                let n: Option<i32> = n.map(|n| fit(n, "rerank_top_n")).transpose()?;
                update = update.col_expr(Column::RerankTopN, Expr::value(n));
            }
            let changed = update
                .exec(&self.db)
                .await
                .context("updating a collection")?
                .rows_affected;
            if changed == 0 {
                return Ok(None);
            }
            self.find(tenant, id).await
        })
        .await
    }

    async fn delete(
        &self,
        tenant: TenantId,
        id: CollectionId,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<BlobKey>>, StoreError> {
        crate::rls::tenant(tenant, async {
            let txn = self
                .begin_write()
                .await
                .context("starting a collection delete")?;
            let mut lookup = scope::select::<Entity>(tenant).filter(Column::Id.eq(id.as_uuid()));
            if self.db.get_database_backend() == DbBackend::Postgres {
                lookup = lookup.lock_exclusive();
            }
            if lookup
                .one(&txn)
                .await
                .context("locking a collection")?
                .is_none()
            {
                txn.rollback().await.context("ending a collection delete")?;
                return Ok(None);
            }
            let keys: Vec<String> = scope::select::<document::Entity>(tenant)
                .select_only()
                .column(document::Column::BlobKey)
                .filter(document::Column::CollectionId.eq(id.as_uuid()))
                .into_tuple()
                .all(&txn)
                .await
                .context("reading a collection's documents")?;
            // The collection's documents, as a subquery: no list of ids, however many there are.
            let documents = scope::select::<document::Entity>(tenant)
                .select_only()
                .column(document::Column::Id)
                .filter(document::Column::CollectionId.eq(id.as_uuid()))
                .into_query();
            job_rows::cancel_unfinished(
                &txn,
                tenant,
                crate::entity::job::Column::DocumentId.in_subquery(documents.clone()),
                now,
            )
            .await?;
            scope::delete::<chunk::Entity>(tenant)
                .filter(chunk::Column::DocumentId.in_subquery(documents))
                .exec(&txn)
                .await
                .context("deleting a collection's chunks")?;
            scope::delete::<document::Entity>(tenant)
                .filter(document::Column::CollectionId.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a collection's documents")?;
            scope::delete::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .exec(&txn)
                .await
                .context("deleting a collection")?;
            txn.commit()
                .await
                .context("committing a collection delete")?;
            Ok(Some(keys.into_iter().map(BlobKey::from_stored).collect()))
        })
        .await
    }

    async fn stats(
        &self,
        tenant: TenantId,
        id: CollectionId,
    ) -> Result<CollectionStats, StoreError> {
        crate::rls::tenant(tenant, async {
            // Sums are cast: PostgreSQL sums a BIGINT column as NUMERIC.
            let (documents, chunks, tokens, bytes): (i64, i64, i64, i64) =
                scope::select::<document::Entity>(tenant)
                    .select_only()
                    .expr(Expr::cust("COUNT(*)"))
                    .expr(Expr::cust("CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT)"))
                    .expr(Expr::cust("CAST(COALESCE(SUM(token_count), 0) AS BIGINT)"))
                    .expr(Expr::cust("CAST(COALESCE(SUM(bytes), 0) AS BIGINT)"))
                    .filter(document::Column::CollectionId.eq(id.as_uuid()))
                    .into_tuple()
                    .one(&self.db)
                    .await
                    .context("summing a collection")?
                    .unwrap_or_default();
            Ok(CollectionStats {
                documents: fit(documents, "document count")?,
                chunks: fit(chunks, "chunk count")?,
                tokens: fit(tokens, "token count")?,
                bytes: fit(bytes, "byte count")?,
            })
        })
        .await
    }
}
