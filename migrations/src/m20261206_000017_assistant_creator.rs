//! Who created an assistant (a user or an API key; both `NULL` for assistants made before
//! this migration, which then only admins may change). No foreign key: a creator who is
//! gone simply never matches again.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Assistants {
    Table,
    CreatedByUserId,
    CreatedByApiKeyId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [Assistants::CreatedByUserId, Assistants::CreatedByApiKeyId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Assistants::Table)
                        .add_column(ColumnDef::new(column).uuid().null().to_owned())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Assistants::CreatedByApiKeyId, Assistants::CreatedByUserId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Assistants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
