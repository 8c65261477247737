//! Documents: collections, uploaded documents, their chunks, and the durable job queue.
//!
//! Deleting an organization deletes its collections, documents and jobs; deleting a collection
//! deletes its documents, and deleting a document deletes its chunks (ON DELETE CASCADE). A job
//! names its document without a foreign key: it outlives the document as `canceled`.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Collections {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    ChunkMaxTokens,
    ChunkOverlap,
    Tokenizer,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
    TenantId,
    CollectionId,
    Name,
    Format,
    Bytes,
    ContentHash,
    Pages,
    Status,
    Progress,
    ChunkCount,
    TokenCount,
    Error,
    Metadata,
    JobId,
    BlobKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Chunks {
    Table,
    Id,
    TenantId,
    DocumentId,
    CollectionId,
    Ordinal,
    Text,
    TokenCount,
    Page,
    StartChar,
    EndChar,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    TenantId,
    Kind,
    DocumentId,
    Status,
    Stage,
    Progress,
    Attempts,
    Error,
    RunAt,
    LeaseToken,
    LeaseUntil,
    ClaimedAt,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[DynIden]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for col in cols {
        index.col(col.clone());
    }
    index.to_owned()
}

fn iden(col: impl IntoIden) -> DynIden {
    col.into_iden()
}

async fn create_collections(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Collections::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Collections::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Collections::TenantId).uuid().not_null())
                .col(ColumnDef::new(Collections::Name).string_len(200).not_null())
                .col(ColumnDef::new(Collections::Description).text().null())
                .col(
                    ColumnDef::new(Collections::ChunkMaxTokens)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Collections::ChunkOverlap)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Collections::Tokenizer)
                        .string_len(32)
                        .not_null(),
                )
                .col(timestamp(Collections::CreatedAt))
                .col(timestamp(Collections::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_collections_org")
                        .from(Collections::Table, Collections::TenantId)
                        .to(Organizations::Table, Organizations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(
            "ix_collections_tenant",
            Collections::Table,
            &[iden(Collections::TenantId), iden(Collections::Id)],
        ))
        .await
}

async fn create_documents(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Documents::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Documents::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Documents::TenantId).uuid().not_null())
                .col(ColumnDef::new(Documents::CollectionId).uuid().null())
                .col(ColumnDef::new(Documents::Name).string_len(255).not_null())
                .col(ColumnDef::new(Documents::Format).string_len(16).not_null())
                .col(ColumnDef::new(Documents::Bytes).big_integer().not_null())
                .col(
                    ColumnDef::new(Documents::ContentHash)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Documents::Pages).integer().null())
                .col(ColumnDef::new(Documents::Status).string_len(16).not_null())
                .col(ColumnDef::new(Documents::Progress).float().not_null())
                .col(ColumnDef::new(Documents::ChunkCount).integer().not_null())
                .col(
                    ColumnDef::new(Documents::TokenCount)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Documents::Error).text().null())
                .col(ColumnDef::new(Documents::Metadata).text().not_null())
                .col(ColumnDef::new(Documents::JobId).uuid().null())
                .col(ColumnDef::new(Documents::BlobKey).text().not_null())
                .col(timestamp(Documents::CreatedAt))
                .col(timestamp(Documents::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_documents_org")
                        .from(Documents::Table, Documents::TenantId)
                        .to(Organizations::Table, Organizations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_documents_collection")
                        .from(Documents::Table, Documents::CollectionId)
                        .to(Collections::Table, Collections::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        (
            "ix_documents_tenant",
            vec![iden(Documents::TenantId), iden(Documents::Id)],
        ),
        (
            "ix_documents_hash",
            vec![
                iden(Documents::TenantId),
                iden(Documents::CollectionId),
                iden(Documents::ContentHash),
            ],
        ),
        (
            "ix_documents_status",
            vec![iden(Documents::TenantId), iden(Documents::Status)],
        ),
        // The collection foreign key: a cascading delete finds the rows without a scan.
        (
            "ix_documents_collection",
            vec![iden(Documents::CollectionId)],
        ),
        // The orphan-blob sweep looks documents up by their file.
        ("ix_documents_blob_key", vec![iden(Documents::BlobKey)]),
    ] {
        manager
            .create_index(index(name, Documents::Table, &cols))
            .await?;
    }
    Ok(())
}

async fn create_chunks(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Chunks::Table)
                .if_not_exists()
                .col(ColumnDef::new(Chunks::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Chunks::TenantId).uuid().not_null())
                .col(ColumnDef::new(Chunks::DocumentId).uuid().not_null())
                .col(ColumnDef::new(Chunks::CollectionId).uuid().null())
                .col(ColumnDef::new(Chunks::Ordinal).integer().not_null())
                .col(ColumnDef::new(Chunks::Text).text().not_null())
                .col(ColumnDef::new(Chunks::TokenCount).integer().not_null())
                .col(ColumnDef::new(Chunks::Page).integer().null())
                .col(ColumnDef::new(Chunks::StartChar).big_integer().not_null())
                .col(ColumnDef::new(Chunks::EndChar).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chunks_document")
                        .from(Chunks::Table, Chunks::DocumentId)
                        .to(Documents::Table, Documents::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            index(
                "ux_chunks_document_ordinal",
                Chunks::Table,
                &[iden(Chunks::DocumentId), iden(Chunks::Ordinal)],
            )
            .unique()
            .to_owned(),
        )
        .await?;
    manager
        .create_index(index(
            "ix_chunks_tenant",
            Chunks::Table,
            &[iden(Chunks::TenantId)],
        ))
        .await
}

async fn create_jobs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Jobs::Table)
                .if_not_exists()
                .col(ColumnDef::new(Jobs::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Jobs::TenantId).uuid().not_null())
                .col(ColumnDef::new(Jobs::Kind).string_len(16).not_null())
                .col(ColumnDef::new(Jobs::DocumentId).uuid().null())
                .col(ColumnDef::new(Jobs::Status).string_len(16).not_null())
                .col(ColumnDef::new(Jobs::Stage).string_len(16).null())
                .col(ColumnDef::new(Jobs::Progress).float().not_null())
                .col(ColumnDef::new(Jobs::Attempts).integer().not_null())
                .col(ColumnDef::new(Jobs::Error).text().null())
                .col(timestamp(Jobs::RunAt))
                .col(ColumnDef::new(Jobs::LeaseToken).uuid().null())
                .col(
                    ColumnDef::new(Jobs::LeaseUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Jobs::ClaimedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(timestamp(Jobs::CreatedAt))
                .col(timestamp(Jobs::UpdatedAt))
                .col(
                    ColumnDef::new(Jobs::FinishedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_jobs_org")
                        .from(Jobs::Table, Jobs::TenantId)
                        .to(Organizations::Table, Organizations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        // Due jobs by time.
        (
            "ix_jobs_status_run_at",
            vec![iden(Jobs::Status), iden(Jobs::RunAt)],
        ),
        // A tenant's jobs by status.
        (
            "ix_jobs_tenant_status",
            vec![iden(Jobs::TenantId), iden(Jobs::Status)],
        ),
        // The fair claim: from tenant to tenant among queued (or running) jobs, each tenant's
        // oldest due job and its running count, without reading the backlog.
        (
            "ix_jobs_claim",
            vec![
                iden(Jobs::Status),
                iden(Jobs::TenantId),
                iden(Jobs::RunAt),
                iden(Jobs::Id),
            ],
        ),
        ("ix_jobs_document", vec![iden(Jobs::DocumentId)]),
        // When each tenant was last served (the most recent claim), for round robin.
        (
            "ix_jobs_tenant_claimed",
            vec![iden(Jobs::TenantId), iden(Jobs::ClaimedAt)],
        ),
    ] {
        manager
            .create_index(index(name, Jobs::Table, &cols))
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_collections(manager).await?;
        create_documents(manager).await?;
        create_chunks(manager).await?;
        create_jobs(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Jobs::Table.into_iden(),
            Chunks::Table.into_iden(),
            Documents::Table.into_iden(),
            Collections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
