//! Row-level security on PostgreSQL (docs/security.md, "Row-level security"): the database
//! itself refuses another tenant's rows.
//!
//! - Two roles, cluster-wide, created once (concurrent-safe: tests migrate many schemas of one
//!   cluster at once), both `NOLOGIN` and without `BYPASSRLS`: `quire_app`, which the
//!   application's pooled connections switch to, and `quire_platform`, the narrow role of the
//!   few cross-tenant paths (queue claims, lookups by hash, a user's organizations, platform
//!   listings). The migrating user is made a member of both so that it may `SET ROLE` to them
//!   (a superuser needs no membership).
//! - Both may read and write every table of the schema (and the tables created later in it:
//!   default privileges, which cover pgvector's `chunk_embeddings`); rows are what the
//!   policies restrict.
//! - Every table with a `tenant_id` column gets row-level security, enabled and forced (the
//!   owner is bound too), and the policy `quire_tenant`: a row is visible and writable only
//!   when its `tenant_id` is the transaction's tenant, the setting `quire.tenant` that the
//!   store sets on each connection it hands out. No tenant set: no row.
//! - The platform role also has `quire_platform` (every row) on the tables its paths need,
//!   and only those ([`PLATFORM_TABLES`]).
//!
//! SQLite has no roles nor policies: it keeps the application-level scoping alone.
//! A later migration that adds a tenant table calls [`protect`] for it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// The tenant tables that the cross-tenant paths read or write across tenants
/// (docs/security.md lists each path and why).
pub const PLATFORM_TABLES: &[&str] = &[
    "audit_log",
    "usage_events",
    "chat_messages",
    "chunk_vectors",
    "chunk_embeddings",
    "collections",
    "memberships",
    "api_keys",
    "invitations",
    "jobs",
    "embedding_spaces",
    "webhook_deliveries",
    "workflow_runs",
    "workflow_schedules",
];

const ROLES: &str = r"
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['quire_app', 'quire_platform'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOBYPASSRLS', r);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            -- Created beforehand by an administrator: fine.
            WHEN insufficient_privilege THEN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN RAISE; END IF;
        END;
        IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           AND NOT pg_has_role(current_user, r, 'USAGE') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', r, current_user);
            EXCEPTION WHEN unique_violation THEN NULL;
            END;
        END IF;
    END LOOP;
END $$;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO quire_app, quire_platform', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO quire_app, quire_platform', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO quire_app, quire_platform', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO quire_app, quire_platform', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO quire_app, quire_platform', current_schema());
END $$;
";

/// The statement that puts `table` (of the current schema, with a `tenant_id uuid` column)
/// under row-level security: enabled, forced, and the tenant policy; with `platform`, also the
/// platform role's policy.
#[must_use]
pub fn protect(table: &str, platform: bool) -> String {
    let mut sql = format!(
        "ALTER TABLE \"{table}\" ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE \"{table}\" FORCE ROW LEVEL SECURITY; \
         CREATE POLICY quire_tenant ON \"{table}\" \
             USING (tenant_id = nullif(current_setting('quire.tenant', true), '')::uuid) \
             WITH CHECK (tenant_id = nullif(current_setting('quire.tenant', true), '')::uuid);"
    );
    if platform {
        sql.push_str(&format!(
            " CREATE POLICY quire_platform ON \"{table}\" TO quire_platform \
                  USING (true) WITH CHECK (true);"
        ));
    }
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(ROLES).await?;
        let tables: Vec<String> = db
            .query_all_raw(sea_orm_migration::sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT c.table_name::text FROM information_schema.columns c \
                 JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' \
                   AND t.table_type = 'BASE TABLE' ORDER BY 1",
            ))
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?;
        for table in tables {
            db.execute_unprepared(&protect(&table, PLATFORM_TABLES.contains(&table.as_str())))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // The roles stay: they are cluster-wide and other schemas or databases may use them.
        manager
            .get_connection()
            .execute_unprepared(
                "DO $$ DECLARE t record; BEGIN \
                   FOR t IN SELECT tablename FROM pg_policies \
                            WHERE schemaname = current_schema() AND policyname LIKE 'quire_%' LOOP \
                     EXECUTE format('DROP POLICY IF EXISTS quire_tenant ON %I', t.tablename); \
                     EXECUTE format('DROP POLICY IF EXISTS quire_platform ON %I', t.tablename); \
                     EXECUTE format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY', t.tablename); \
                     EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t.tablename); \
                   END LOOP; END $$",
            )
            .await?;
        Ok(())
    }
}
