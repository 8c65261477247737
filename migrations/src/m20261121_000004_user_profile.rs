//! Profile fields and preferences on accounts.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    AvatarUrl,
    Locale,
    Timezone,
    Preferences,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for col in [
            ColumnDef::new(Users::AvatarUrl)
                .string_len(2048)
                .null()
                .to_owned(),
            ColumnDef::new(Users::Locale)
                .string_len(35)
                .null()
                .to_owned(),
            ColumnDef::new(Users::Timezone)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Users::Preferences).text().null().to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            Users::AvatarUrl,
            Users::Locale,
            Users::Timezone,
            Users::Preferences,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
