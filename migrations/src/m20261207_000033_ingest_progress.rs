//! Progress of an ingestion as it goes (issue 17): besides the fraction, how many units of
//! its current stage a job has done of how many (`done_units` of `total_units`: pages while
//! extracting, chunks while embedding and indexing; 0 of 0 when not counted), on the job and,
//! with the stage, on its document, so that `GET /documents/{id}` shows it without a join. No
//! new table: the row-level security of both tables holds.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    DoneUnits,
    TotalUnits,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Stage,
    DoneUnits,
    TotalUnits,
}

fn count(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [Jobs::DoneUnits, Jobs::TotalUnits] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .add_column(count(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Documents::Table)
                    .add_column(ColumnDef::new(Documents::Stage).string_len(20).null())
                    .to_owned(),
            )
            .await?;
        for column in [Documents::DoneUnits, Documents::TotalUnits] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Documents::Table)
                        .add_column(count(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Documents::Stage,
            Documents::DoneUnits,
            Documents::TotalUnits,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Documents::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Jobs::DoneUnits, Jobs::TotalUnits] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
