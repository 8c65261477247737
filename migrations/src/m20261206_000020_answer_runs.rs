//! Answers durable while they stream (issue 15): an answer's assistant message is stored when
//! it starts (`status` `streaming`) and checkpointed while it runs. Three columns on
//! `chat_messages`:
//! - `error`: why an answer ended early (a sentence for the client);
//! - `lease_until`: until when the run writing a streaming answer holds it (renewed by each
//!   checkpoint; NULL once the answer ended), after which any server's sweeper ends it as
//!   `incomplete` and bills what was checkpointed;
//! - `reservation`: the quota reservation the answer settles (JSON), so that the sweeper can
//!   settle it; NULL once settled.
//!
//! The sweeper's scan (`lease_until < now` over every tenant) has its own index.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Error,
    LeaseUntil,
    Reservation,
}

const INDEX: &str = "ix_chat_messages_lease_until";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(ChatMessages::Error).text().null().to_owned(),
            ColumnDef::new(ChatMessages::LeaseUntil)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(ChatMessages::Reservation)
                .text()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ChatMessages::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(ChatMessages::Table)
                    .col(ChatMessages::LeaseUntil)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(ChatMessages::Table)
                    .to_owned(),
            )
            .await?;
        for col in [
            ChatMessages::Reservation,
            ChatMessages::LeaseUntil,
            ChatMessages::Error,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ChatMessages::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
