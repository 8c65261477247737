//! The document-access trail (issue 21): access events live in the audit log beside the
//! security events, so an organization's trail is one table read one way. Four columns on
//! `audit_log`:
//! - `actor_key`: the API key that acted (the user actor stays in `actor`);
//! - `request_id`: the HTTP request the event served;
//! - `documents`: the documents read, found or cited, as space-separated ids;
//! - `detail`: the search query or question, only for organizations that opted in.
//!
//! And the opt-in itself on `organizations`: `audit_question_text_since`, when the organization
//! chose to keep questions (NULL, the default: it keeps none). An event keeps its text only if
//! it happened at or after that time, so an event queued before the opt-in and written after
//! it keeps none.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    ActorKey,
    RequestId,
    Documents,
    Detail,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    AuditQuestionTextSince,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(AuditLog::ActorKey).uuid().null().to_owned(),
            ColumnDef::new(AuditLog::RequestId)
                .string_len(128)
                .null()
                .to_owned(),
            ColumnDef::new(AuditLog::Documents).text().null().to_owned(),
            ColumnDef::new(AuditLog::Detail).text().null().to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Organizations::Table)
                    .add_column(
                        ColumnDef::new(Organizations::AuditQuestionTextSince)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Organizations::Table)
                    .drop_column(Organizations::AuditQuestionTextSince)
                    .to_owned(),
            )
            .await?;
        for col in [
            AuditLog::Detail,
            AuditLog::Documents,
            AuditLog::RequestId,
            AuditLog::ActorKey,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
