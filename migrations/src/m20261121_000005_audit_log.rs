//! The audit log: append-only security events. No foreign keys: events outlive what they
//! name (a deleted account's sign-ins stay on record).

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Action,
    Actor,
    TenantId,
    Target,
    Ip,
    UserAgent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(AuditLog::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditLog::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::Actor).uuid().null())
                    .col(ColumnDef::new(AuditLog::TenantId).uuid().null())
                    .col(ColumnDef::new(AuditLog::Target).string_len(255).null())
                    .col(ColumnDef::new(AuditLog::Ip).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::UserAgent).string_len(256).null())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("ix_audit_log_actor", AuditLog::Actor),
            ("ix_audit_log_tenant", AuditLog::TenantId),
            ("ix_audit_log_action", AuditLog::Action),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditLog::Table)
                        .col(col)
                        .col(AuditLog::Id)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}
