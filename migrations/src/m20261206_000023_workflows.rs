//! Workflows: the queue of runs (leased as the ingestion jobs and the webhook deliveries are)
//! and the organizations' schedules.
//!
//! Deleting an organization deletes its runs and schedules (ON DELETE CASCADE); deleting a
//! schedule keeps its runs (`schedule_id` is a plain reference). A run's `result` is a bounded
//! JSON object and `artifact` an export's CSV (at most 1 MiB).

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WorkflowRuns {
    Table,
    Id,
    TenantId,
    Kind,
    Input,
    Status,
    Progress,
    Result,
    Artifact,
    Error,
    Actor,
    Role,
    ScheduleId,
    Attempts,
    CancelRequested,
    LeaseToken,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum WorkflowSchedules {
    Table,
    Id,
    TenantId,
    Kind,
    Input,
    Cron,
    NextRunAt,
    Actor,
    Role,
    CreatedAt,
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

fn org_cascade(name: &str, from: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

async fn index(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    name: &str,
    cols: Vec<DynIden>,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for col in cols {
        index.col(col);
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WorkflowRuns as R;
        use WorkflowSchedules as S;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(R::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(R::TenantId).uuid().not_null())
                    .col(ColumnDef::new(R::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(R::Input).text().not_null())
                    .col(ColumnDef::new(R::Status).string_len(16).not_null())
                    .col(ColumnDef::new(R::Progress).float().not_null())
                    .col(ColumnDef::new(R::Result).text().null())
                    .col(ColumnDef::new(R::Artifact).text().null())
                    .col(ColumnDef::new(R::Error).string_len(600).null())
                    .col(ColumnDef::new(R::Actor).string_len(64).not_null())
                    .col(ColumnDef::new(R::Role).string_len(16).not_null())
                    .col(ColumnDef::new(R::ScheduleId).uuid().null())
                    .col(ColumnDef::new(R::Attempts).integer().not_null())
                    .col(ColumnDef::new(R::CancelRequested).boolean().not_null())
                    .col(ColumnDef::new(R::LeaseToken).uuid().null())
                    .col(
                        ColumnDef::new(R::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(R::CreatedAt))
                    .col(timestamp(R::UpdatedAt))
                    .col(
                        ColumnDef::new(R::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut org_cascade(
                        "fk_workflow_runs_org",
                        (R::Table, R::TenantId),
                    ))
                    .to_owned(),
            )
            .await?;
        // The claim's probes (queued rows, running rows whose lease ended) and the tenant's
        // lists, newest first.
        index(
            manager,
            R::Table,
            "ix_workflow_runs_due",
            vec![R::Status.into_iden(), R::Id.into_iden()],
        )
        .await?;
        index(
            manager,
            R::Table,
            "ix_workflow_runs_lease",
            vec![R::Status.into_iden(), R::LeaseUntil.into_iden()],
        )
        .await?;
        index(
            manager,
            R::Table,
            "ix_workflow_runs_tenant",
            vec![R::TenantId.into_iden(), R::Id.into_iden()],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(S::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(S::TenantId).uuid().not_null())
                    .col(ColumnDef::new(S::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(S::Input).text().not_null())
                    .col(ColumnDef::new(S::Cron).string_len(120).not_null())
                    .col(timestamp(S::NextRunAt))
                    .col(ColumnDef::new(S::Actor).string_len(64).not_null())
                    .col(ColumnDef::new(S::Role).string_len(16).not_null())
                    .col(timestamp(S::CreatedAt))
                    .foreign_key(&mut org_cascade(
                        "fk_workflow_schedules_org",
                        (S::Table, S::TenantId),
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            S::Table,
            "ix_workflow_schedules_due",
            vec![S::NextRunAt.into_iden()],
        )
        .await?;
        index(
            manager,
            S::Table,
            "ix_workflow_schedules_tenant",
            vec![S::TenantId.into_iden(), S::Id.into_iden()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WorkflowSchedules::Table.into_iden(),
            WorkflowRuns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
