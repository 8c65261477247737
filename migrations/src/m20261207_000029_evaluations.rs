//! Evaluations and reranking (issue 18).
//!
//! - `collections.rerank_top_n`: how many of a search's first results the collection has
//!   reranked (NULL: off).
//! - `evaluations`: each run of an organization's golden set, with its questions (JSON), the
//!   settings that produced the figures (`k`, the embedding model, reranking; each mode's
//!   fusion inside `results`) and the figures of each mode (JSON). `collection_ids`: the
//!   collections searched, space-separated (NULL: every document of the organization); a run
//!   outlives a deleted collection (its figures stay true of when it ran). Deleting the
//!   organization deletes its runs. Row-level security on PostgreSQL.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Evaluations {
    Table,
    Id,
    TenantId,
    CollectionIds,
    CreatedBy,
    CreatedByKey,
    K,
    EmbeddingModel,
    Rerank,
    Items,
    Results,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Collections {
    Table,
    RerankTopN,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Evaluations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Evaluations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Evaluations::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Evaluations::CollectionIds).text().null())
                    .col(ColumnDef::new(Evaluations::CreatedBy).uuid().null())
                    .col(ColumnDef::new(Evaluations::CreatedByKey).uuid().null())
                    .col(ColumnDef::new(Evaluations::K).integer().not_null())
                    .col(
                        ColumnDef::new(Evaluations::EmbeddingModel)
                            .string_len(100)
                            .null(),
                    )
                    .col(ColumnDef::new(Evaluations::Rerank).boolean().not_null())
                    .col(ColumnDef::new(Evaluations::Items).text().not_null())
                    .col(ColumnDef::new(Evaluations::Results).text().not_null())
                    .col(
                        ColumnDef::new(Evaluations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_evaluations_org")
                            .from(Evaluations::Table, Evaluations::TenantId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_evaluations_tenant")
                    .table(Evaluations::Table)
                    .col(Evaluations::TenantId)
                    .col(Evaluations::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Collections::Table)
                    .add_column(ColumnDef::new(Collections::RerankTopN).integer().null())
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(&crate::protect("evaluations", false))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Collections::Table)
                    .drop_column(Collections::RerankTopN)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Evaluations::Table).to_owned())
            .await
    }
}
