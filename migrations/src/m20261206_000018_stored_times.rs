//! The times the SQL store compares or orders, in the one stored form of a time
//! (`store_sql`'s `stored::at_value`): until now chat's, the limit overrides', the refresh
//! tokens', the invitations', the password resets', the outbox's, the audit log's and the
//! memberships' times were written as sqlx writes a time, which on SQLite is RFC 3339 text
//! whose fraction drops trailing zeros (`2026-11-22T10:00:05Z`, `2026-11-22T10:00:05.5Z`) and does not sort as time
//! within a second (an expiry compared with `now`, the audit log's range, an `ORDER BY`). On
//! SQLite every such value is rewritten as fixed-width UTC text with six fraction digits
//! (`2026-11-22T10:00:05.000000Z`), the form the job queue, the blobs, the spaces and the
//! usage events already use, so that text order is time order. Both forms read back as the
//! same instant. PostgreSQL stores `timestamptz`, whose form does not change: nothing to do
//! there.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// Every `(table, column)` whose writer moved to the one encoder (rewritten by
/// [`crate::stored_times::rewrite_fixed_width`]).
const COLUMNS: [(&str, &str); 21] = [
    ("assistants", "created_at"),
    ("assistants", "updated_at"),
    ("chat_sessions", "created_at"),
    ("chat_sessions", "updated_at"),
    ("chat_messages", "created_at"),
    ("message_feedback", "created_at"),
    ("tenant_models", "updated_at"),
    ("usage_limits", "updated_at"),
    ("refresh_tokens", "created_at"),
    ("refresh_tokens", "expires_at"),
    ("refresh_tokens", "spent_at"),
    ("refresh_tokens", "revoked_at"),
    ("invitations", "created_at"),
    ("invitations", "expires_at"),
    ("invitations", "accepted_at"),
    ("password_resets", "created_at"),
    ("password_resets", "expires_at"),
    ("password_resets", "used_at"),
    ("dev_outbox", "at"),
    ("audit_log", "at"),
    ("memberships", "created_at"),
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
