//! Blobs in the database: original files shared by every server and worker through the
//! database (the `BlobStore` port of `store-sql`), for deployments that share no folder.
//!
//! - `blobs`: one row per upload, named by `upload`. While the upload runs its `key` is NULL
//!   (nobody can read it); its commit sets `key` and `bytes` in the transaction that removes
//!   the blob the key named before, so a key names at most one whole file at any moment
//!   (`ux_blobs_key`; NULLs are distinct on both backends). `created_at` is when the upload
//!   began: uploads that never committed are swept by it.
//! - `blob_parts`: the bytes, in parts of at most 1 MiB numbered from 0 (`seq`), deleted with
//!   their upload's row (ON DELETE CASCADE).
//!
//! Keys are `BlobKey`s, `{tenant}/{document}`: the unique index on `key` starts with the
//! tenant. Blobs carry no `tenant_id` of their own (the port is keyed by `BlobKey` alone,
//! like the filesystem store), so deleting an organization does not cascade to them.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Upload,
    Key,
    Bytes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BlobParts {
    Table,
    Upload,
    Seq,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Blobs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Blobs::Upload)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Blobs::Key).text().null())
                    .col(ColumnDef::new(Blobs::Bytes).big_integer().null())
                    .col(
                        ColumnDef::new(Blobs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Reads and deletes by key; the sweep finds the uploads in progress (`key IS NULL`).
        manager
            .create_index(
                Index::create()
                    .name("ux_blobs_key")
                    .table(Blobs::Table)
                    .col(Blobs::Key)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BlobParts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(BlobParts::Upload).uuid().not_null())
                    .col(ColumnDef::new(BlobParts::Seq).integer().not_null())
                    .col(ColumnDef::new(BlobParts::Data).blob().not_null())
                    .primary_key(Index::create().col(BlobParts::Upload).col(BlobParts::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_blob_parts_upload")
                            .from(BlobParts::Table, BlobParts::Upload)
                            .to(Blobs::Table, Blobs::Upload)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [BlobParts::Table.into_iden(), Blobs::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
