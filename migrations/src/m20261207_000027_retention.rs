//! Retention settings per organization (issue 21): how many days chat history, failed
//! documents and document-access events are kept (NULL, the default: forever). A periodic
//! sweep deletes what is older.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    ChatRetentionDays,
    FailedDocumentsRetentionDays,
    AccessTrailRetentionDays,
}

const COLUMNS: [Organizations; 3] = [
    Organizations::ChatRetentionDays,
    Organizations::FailedDocumentsRetentionDays,
    Organizations::AccessTrailRetentionDays,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Organizations::Table)
                        .add_column(ColumnDef::new(col).integer().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Organizations::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
