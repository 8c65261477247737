//! The rest of the SQL store's times in the one stored form of a time (`store_sql`'s
//! `stored::at_value`), after `m20261206_000018_stored_times`: the users', the organizations',
//! the API keys', the collections' and the documents' times were still written as sqlx writes a
//! time, which on SQLite is RFC 3339 text whose fraction drops trailing zeros and does not sort
//! as time within a second. On SQLite every such value is rewritten as fixed-width UTC text
//! with six fraction digits ([`crate::stored_times`]); from here on every time column of the
//! schema holds that form. Both forms read back as the same instant. PostgreSQL stores
//! `timestamptz`: nothing to do there.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// Every `(table, column)` whose writer moved to the one encoder (rewritten by
/// [`crate::stored_times::rewrite_fixed_width`]).
const COLUMNS: [(&str, &str); 13] = [
    ("users", "created_at"),
    ("users", "updated_at"),
    ("users", "disabled_at"),
    ("users", "email_verified_at"),
    ("organizations", "created_at"),
    ("organizations", "updated_at"),
    ("api_keys", "created_at"),
    ("api_keys", "last_used_at"),
    ("api_keys", "revoked_at"),
    ("collections", "created_at"),
    ("collections", "updated_at"),
    ("documents", "created_at"),
    ("documents", "updated_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::stored_times::rewrite_fixed_width(manager, &COLUMNS).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The fixed-width form reads back as the same instant everywhere: nothing to undo.
        Ok(())
    }
}
