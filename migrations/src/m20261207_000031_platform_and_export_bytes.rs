//! Two changes of issue 21: the usage ledger's `bytes`, and the platform role narrowed.
//!
//! `usage_events.bytes` (BIGINT, NOT NULL, default 0): what an entry carried out, the archive's
//! size for an organization's export (kind `export`, docs/billing.md, "Exports"); 0 for every
//! model call, the rows before it included. The kind check `ck_usage_events_kind` admits
//! `export` beside `chat` and `embedding`: PostgreSQL replaces the constraint; SQLite, which
//! cannot alter a constraint, rebuilds the table from its own definition with the wider list
//! (copy, drop, rename, the three indexes again; no table references `usage_events`).
//!
//! The platform role narrowed to what its paths use (docs/security.md, "Row-level
//! security"). Migration `m20261207_000024_row_level_security` gave `quire_platform` every
//! row and every column of the tables its cross-tenant paths touch; four of those paths only
//! read, and only part of the rows or columns:
//!
//! - `chat_messages`: the sweeper of abandoned answers lists stalled answers across tenants
//!   (`ChatStore::abandoned_answers`) and closes each inside its tenant. The platform now reads
//!   only rows still `streaming` (never a finished answer or a question of the chat history)
//!   and writes none.
//! - `usage_events`: the platform usage report (`UsageLedger::totals_by_tenant`) sums by tenant,
//!   kind and model. The platform now reads only those columns, the token counts, the cost and
//!   the time (a column grant: not who called, the reference, or the request id), and writes
//!   none.
//! - `collections`: the vector upkeep asks which collections follow the deployment's default
//!   embedding model (`SpaceRepository::active_not_on`). The platform now reads only the ids
//!   (and tenant) of those collections, never a name or settings, and writes none.
//! - `audit_log`: platform events have no tenant, and the platform administrators read every
//!   organization's log (`GET /admin/audit-log`). The platform now reads every event but may
//!   insert only events without a tenant, and updates or deletes none (erasure and retention
//!   run inside the organization's tenant).
//!
//! Security-definer functions would not help here: every tenant table forces row-level
//! security on its owner too, so a function running as the owner sees no tenant's row.
//! SQLite: nothing (no roles).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    Bytes,
}

const UP: &str = "\
DROP POLICY IF EXISTS quire_platform ON chat_messages; \
CREATE POLICY quire_platform ON chat_messages FOR SELECT TO quire_platform \
    USING (status = 'streaming'); \
REVOKE INSERT, UPDATE, DELETE ON chat_messages FROM quire_platform; \
DROP POLICY IF EXISTS quire_platform ON usage_events; \
REVOKE ALL ON usage_events FROM quire_platform; \
GRANT SELECT (tenant_id, kind, model, prompt_tokens, completion_tokens, cost_micros, bytes, \"at\") \
    ON usage_events TO quire_platform; \
CREATE POLICY quire_platform ON usage_events FOR SELECT TO quire_platform USING (true); \
DROP POLICY IF EXISTS quire_platform ON collections; \
REVOKE ALL ON collections FROM quire_platform; \
GRANT SELECT (id, tenant_id, embedding_model) ON collections TO quire_platform; \
CREATE POLICY quire_platform ON collections FOR SELECT TO quire_platform \
    USING (embedding_model IS NULL); \
DROP POLICY IF EXISTS quire_platform ON audit_log; \
REVOKE UPDATE, DELETE ON audit_log FROM quire_platform; \
CREATE POLICY quire_platform ON audit_log FOR SELECT TO quire_platform USING (true); \
CREATE POLICY quire_platform_insert ON audit_log FOR INSERT TO quire_platform \
    WITH CHECK (tenant_id IS NULL);";

const DOWN: &str = "\
DROP POLICY IF EXISTS quire_platform ON chat_messages; \
DROP POLICY IF EXISTS quire_platform ON usage_events; \
DROP POLICY IF EXISTS quire_platform ON collections; \
DROP POLICY IF EXISTS quire_platform ON audit_log; \
DROP POLICY IF EXISTS quire_platform_insert ON audit_log; \
REVOKE SELECT (tenant_id, kind, model, prompt_tokens, completion_tokens, cost_micros, bytes, \"at\") \
    ON usage_events FROM quire_platform; \
REVOKE SELECT (id, tenant_id, embedding_model) ON collections FROM quire_platform; \
GRANT SELECT, INSERT, UPDATE, DELETE ON chat_messages, usage_events, collections, audit_log \
    TO quire_platform; \
CREATE POLICY quire_platform ON chat_messages TO quire_platform USING (true) WITH CHECK (true); \
CREATE POLICY quire_platform ON usage_events TO quire_platform USING (true) WITH CHECK (true); \
CREATE POLICY quire_platform ON collections TO quire_platform USING (true) WITH CHECK (true); \
CREATE POLICY quire_platform ON audit_log TO quire_platform USING (true) WITH CHECK (true);";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UsageEvents::Table)
                    .add_column(
                        ColumnDef::new(UsageEvents::Bytes)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE usage_events DROP CONSTRAINT ck_usage_events_kind; \
                     ALTER TABLE usage_events ADD CONSTRAINT ck_usage_events_kind \
                         CHECK (kind IN ('chat', 'embedding', 'export'));",
                )
                .await?;
        } else {
            widen_kinds_on_sqlite(manager).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The export entries go first (the narrower kinds refuse them); SQLite keeps the wider
        // check, which the older code never meets.
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM usage_events WHERE kind = 'export'")
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DOWN).await?;
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE usage_events DROP CONSTRAINT ck_usage_events_kind; \
                     ALTER TABLE usage_events ADD CONSTRAINT ck_usage_events_kind \
                         CHECK (kind IN ('chat', 'embedding'));",
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(UsageEvents::Table)
                    .drop_column(UsageEvents::Bytes)
                    .to_owned(),
            )
            .await
    }
}

/// SQLite: `usage_events` rebuilt from its stored definition with `export` among the kinds.
async fn widen_kinds_on_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let sql: String = db
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'usage_events'",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("usage_events is missing".to_owned()))?
        .try_get("", "sql")?;
    let kinds = "'chat', 'embedding')";
    if sql.matches(kinds).count() != 1 || !sql.contains("\"usage_events\"") {
        return Err(DbErr::Custom(format!(
            "usage_events is not as migration 14 made it: {sql}"
        )));
    }
    let widened = sql
        .replacen("\"usage_events\"", "\"usage_events_wider\"", 1)
        .replacen(kinds, "'chat', 'embedding', 'export')", 1);
    db.execute_unprepared(&widened).await?;
    db.execute_unprepared(
        "INSERT INTO usage_events_wider SELECT * FROM usage_events; \
         DROP TABLE usage_events; \
         ALTER TABLE usage_events_wider RENAME TO usage_events; \
         CREATE INDEX IF NOT EXISTS ix_usage_events_tenant_at ON usage_events (tenant_id, \"at\"); \
         CREATE INDEX IF NOT EXISTS ix_usage_events_tenant_user_at \
             ON usage_events (tenant_id, user_id, \"at\"); \
         CREATE INDEX IF NOT EXISTS ix_usage_events_at ON usage_events (\"at\");",
    )
    .await?;
    Ok(())
}
