//! The database blob store's tables become tenant tables (issue 21): `blobs` and `blob_parts`
//! get a `tenant_id`, and on PostgreSQL row-level security ([`crate::protect`]), so an
//! organization's file bytes are refused to every other tenant by the database itself, not
//! only kept apart by their key's prefix.
//!
//! - `tenant_id` (nullable on both backends: SQLite adds no NOT NULL column without a
//!   default): the store writes it on every upload and part, from the key's tenant prefix
//!   (`documents::BlobKey`: `{tenant}/…`). Backfilled here from the key for committed blobs,
//!   and for parts from their upload's row. Uploads still in progress (no key yet, so no
//!   known tenant) are removed: an upload that runs across this migration fails at its commit
//!   and is sent again. A key that does not start with a tenant id (none is ever written)
//!   keeps a NULL tenant: no tenant sees it.
//! - `ix_blobs_tenant` (`tenant_id, created_at`): an organization's blobs (erasure) and the
//!   sweeps' per-tenant scans.
//! - PostgreSQL: both tables under the tenant policy; the platform role gets only what the
//!   sweeps need to find the tenants that have old blobs, `SELECT` of `blobs.tenant_id` and
//!   `blobs.created_at` (a column grant, and a `FOR SELECT` policy): never a key, never a
//!   byte, and no write. Each sweep then works inside each tenant in turn.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Blobs {
    Table,
    TenantId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BlobParts {
    Table,
    TenantId,
}

/// PostgreSQL: the backfill from the key's prefix (only a well-formed tenant id), and the
/// parts from their upload.
const BACKFILL_POSTGRES: &str = "\
DELETE FROM blobs WHERE key IS NULL; \
UPDATE blobs SET tenant_id = split_part(key, '/', 1)::uuid \
 WHERE split_part(key, '/', 1) ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'; \
UPDATE blob_parts SET tenant_id = b.tenant_id FROM blobs AS b WHERE b.upload = blob_parts.upload;";

/// SQLite: the same, with uuids stored as 16-byte blobs.
const BACKFILL_SQLITE: &str = "\
DELETE FROM blob_parts WHERE upload IN (SELECT upload FROM blobs WHERE key IS NULL); \
DELETE FROM blobs WHERE key IS NULL; \
UPDATE blobs SET tenant_id = unhex(replace(substr(key, 1, 36), '-', '')) \
 WHERE substr(key, 37, 1) = '/' AND substr(key, 1, 36) GLOB \
 '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'; \
UPDATE blob_parts SET tenant_id = (SELECT b.tenant_id FROM blobs AS b WHERE b.upload = blob_parts.upload);";

/// PostgreSQL: what the platform role keeps of `blobs` (see the module documentation).
const PLATFORM_BLOBS: &str = "\
REVOKE ALL ON blobs, blob_parts FROM quire_platform; \
GRANT SELECT (tenant_id, created_at) ON blobs TO quire_platform; \
CREATE POLICY quire_platform ON blobs FOR SELECT TO quire_platform USING (true);";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Blobs::Table)
                    .add_column(ColumnDef::new(Blobs::TenantId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BlobParts::Table)
                    .add_column(ColumnDef::new(BlobParts::TenantId).uuid().null())
                    .to_owned(),
            )
            .await?;
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let db = manager.get_connection();
        db.execute_unprepared(if postgres {
            BACKFILL_POSTGRES
        } else {
            BACKFILL_SQLITE
        })
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_blobs_tenant")
                    .table(Blobs::Table)
                    .col(Blobs::TenantId)
                    .col(Blobs::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        if postgres {
            db.execute_unprepared(&crate::protect("blobs", false))
                .await?;
            db.execute_unprepared(&crate::protect("blob_parts", false))
                .await?;
            db.execute_unprepared(PLATFORM_BLOBS).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP POLICY IF EXISTS quire_platform ON blobs; \
                     DROP POLICY IF EXISTS quire_tenant ON blobs; \
                     DROP POLICY IF EXISTS quire_tenant ON blob_parts; \
                     ALTER TABLE blobs NO FORCE ROW LEVEL SECURITY; \
                     ALTER TABLE blobs DISABLE ROW LEVEL SECURITY; \
                     ALTER TABLE blob_parts NO FORCE ROW LEVEL SECURITY; \
                     ALTER TABLE blob_parts DISABLE ROW LEVEL SECURITY; \
                     REVOKE SELECT (tenant_id, created_at) ON blobs FROM quire_platform; \
                     GRANT SELECT, INSERT, UPDATE, DELETE ON blobs, blob_parts TO quire_platform;",
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ix_blobs_tenant")
                    .table(Blobs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BlobParts::Table)
                    .drop_column(BlobParts::TenantId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Blobs::Table)
                    .drop_column(Blobs::TenantId)
                    .to_owned(),
            )
            .await
    }
}
