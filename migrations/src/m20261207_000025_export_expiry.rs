//! When an export's archive expires: `workflow_runs.archive_expires_at`, set when an
//! `export_organization` run succeeds and cleared once its archive is deleted (by the periodic
//! sweep or the first download after expiry), so the sweep finds each expired archive once
//! through an index and never retries a deleted one.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WorkflowRuns {
    Table,
    ArchiveExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowRuns::Table)
                    .add_column(
                        ColumnDef::new(WorkflowRuns::ArchiveExpiresAt)
                            .timestamp_with_time_zone()
                            .null()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_workflow_runs_archive_expiry")
                    .table(WorkflowRuns::Table)
                    .col(WorkflowRuns::ArchiveExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_workflow_runs_archive_expiry")
                    .table(WorkflowRuns::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowRuns::Table)
                    .drop_column(WorkflowRuns::ArchiveExpiresAt)
                    .to_owned(),
            )
            .await
    }
}
