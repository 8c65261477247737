//! Webhooks: an organization's endpoints, the queue of their deliveries and the log of every
//! attempt.
//!
//! Deleting an organization deletes its endpoints; deleting an endpoint deletes its
//! deliveries, and deleting a delivery its attempts (ON DELETE CASCADE). The secret is stored
//! as its raw bytes: the sender needs it to sign (HMAC), so it cannot be a hash; it is never
//! returned after creation.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    TenantId,
    Url,
    Events,
    Enabled,
    Secret,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    TenantId,
    WebhookId,
    MessageId,
    Event,
    Payload,
    Status,
    Attempts,
    RunAt,
    LeaseToken,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    TenantId,
    WebhookId,
    DeliveryId,
    Event,
    Attempt,
    StatusCode,
    Error,
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

fn cascade(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Webhooks::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Webhooks::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Webhooks::Url).string_len(2_000).not_null())
                    .col(ColumnDef::new(Webhooks::Events).string_len(200).not_null())
                    .col(ColumnDef::new(Webhooks::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Webhooks::Secret).binary_len(64).not_null())
                    .col(timestamp(Webhooks::CreatedAt))
                    .col(timestamp(Webhooks::UpdatedAt))
                    .foreign_key(&mut cascade(
                        "fk_webhooks_org",
                        (Webhooks::Table, Webhooks::TenantId),
                        (Organizations::Table, Organizations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhooks_tenant")
                    .table(Webhooks::Table)
                    .col(Webhooks::TenantId)
                    .col(Webhooks::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WebhookDeliveries::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::TenantId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::WebhookId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::MessageId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Event)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::Payload).text().not_null())
                    .col(
                        ColumnDef::new(WebhookDeliveries::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(timestamp(WebhookDeliveries::RunAt))
                    .col(ColumnDef::new(WebhookDeliveries::LeaseToken).uuid().null())
                    .col(
                        ColumnDef::new(WebhookDeliveries::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(WebhookDeliveries::CreatedAt))
                    .col(timestamp(WebhookDeliveries::UpdatedAt))
                    .foreign_key(&mut cascade(
                        "fk_webhook_deliveries_webhook",
                        (WebhookDeliveries::Table, WebhookDeliveries::WebhookId),
                        (Webhooks::Table, Webhooks::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            // The claim's probes: due queued rows, and running rows whose lease ended.
            (
                "ix_webhook_deliveries_due",
                vec![
                    WebhookDeliveries::Status.into_iden(),
                    WebhookDeliveries::RunAt.into_iden(),
                ],
            ),
            (
                "ix_webhook_deliveries_lease",
                vec![
                    WebhookDeliveries::Status.into_iden(),
                    WebhookDeliveries::LeaseUntil.into_iden(),
                ],
            ),
            (
                "ix_webhook_deliveries_tenant",
                vec![
                    WebhookDeliveries::TenantId.into_iden(),
                    WebhookDeliveries::WebhookId.into_iden(),
                ],
            ),
        ] {
            let mut index = Index::create();
            index
                .name(name)
                .table(WebhookDeliveries::Table)
                .if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WebhookAttempts::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WebhookAttempts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(WebhookAttempts::WebhookId).uuid().not_null())
                    .col(
                        ColumnDef::new(WebhookAttempts::DeliveryId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookAttempts::Event)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookAttempts::Attempt)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookAttempts::StatusCode).integer().null())
                    .col(
                        ColumnDef::new(WebhookAttempts::Error)
                            .string_len(300)
                            .null(),
                    )
                    .col(timestamp(WebhookAttempts::CreatedAt))
                    .foreign_key(&mut cascade(
                        "fk_webhook_attempts_delivery",
                        (WebhookAttempts::Table, WebhookAttempts::DeliveryId),
                        (WebhookDeliveries::Table, WebhookDeliveries::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_attempts_tenant")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::TenantId)
                    .col(WebhookAttempts::WebhookId)
                    .col(WebhookAttempts::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
