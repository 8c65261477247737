//! Billing: the usage ledger and each organization's limit override.
//!
//! - `usage_events`: the append-only ledger, one row per billable call (a chat completion or
//!   an embedding call), keyed by the id of the reservation it settles, so a retried write is
//!   recognised and never counted twice. The caller is a user (`user_id`), an API key
//!   (`api_key_id`) or neither (background work): at most one of the two is set (a CHECK
//!   constraint). Neither has a foreign key: the ledger outlives a deleted user or key.
//!   `kind` is `chat` or `embedding`; token counts and the cost (micro-units of the currency)
//!   are never negative (CHECK constraints). The sums read it through `(tenant_id, at)` and
//!   `(tenant_id, user_id, at)`; the platform's sums over every tenant through `(at)`.
//! - `usage_limits`: the monthly token limit a platform admin set for an organization instead
//!   of its plan's; no row means the plan's.
//!
//! Deleting an organization deletes its ledger and its override (ON DELETE CASCADE).

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    Id,
    TenantId,
    UserId,
    ApiKeyId,
    Model,
    Kind,
    Reference,
    RequestId,
    PromptTokens,
    CompletionTokens,
    CostMicros,
    At,
}

#[derive(DeriveIden)]
enum UsageLimits {
    Table,
    TenantId,
    MonthlyTokenLimit,
    UpdatedAt,
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

fn index(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for col in cols {
        index.col(col);
    }
    index.to_owned()
}

/// The foreign key from `table.tenant_id` to its organization, deleted with it.
fn tenant_fk(name: &str, table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

async fn create_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // At most one caller: a user, an API key, or neither (background work).
    let one_actor_at_most = Expr::col(UsageEvents::UserId)
        .is_null()
        .or(Expr::col(UsageEvents::ApiKeyId).is_null());
    let known_kind = Expr::col(UsageEvents::Kind).is_in(["chat", "embedding"]);
    manager
        .create_table(
            Table::create()
                .table(UsageEvents::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(UsageEvents::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(UsageEvents::TenantId).uuid().not_null())
                .col(ColumnDef::new(UsageEvents::UserId).uuid().null())
                .col(ColumnDef::new(UsageEvents::ApiKeyId).uuid().null())
                .col(ColumnDef::new(UsageEvents::Model).text().not_null())
                .col(ColumnDef::new(UsageEvents::Kind).text().not_null())
                .col(ColumnDef::new(UsageEvents::Reference).text().not_null())
                .col(ColumnDef::new(UsageEvents::RequestId).text().null())
                .col(
                    ColumnDef::new(UsageEvents::PromptTokens)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UsageEvents::CompletionTokens)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UsageEvents::CostMicros)
                        .big_integer()
                        .not_null(),
                )
                .col(timestamp(UsageEvents::At))
                .check(("ck_usage_events_one_actor", one_actor_at_most))
                .check(("ck_usage_events_kind", known_kind))
                .check((
                    "ck_usage_events_prompt_tokens",
                    Expr::col(UsageEvents::PromptTokens).gte(0),
                ))
                .check((
                    "ck_usage_events_completion_tokens",
                    Expr::col(UsageEvents::CompletionTokens).gte(0),
                ))
                .check((
                    "ck_usage_events_cost",
                    Expr::col(UsageEvents::CostMicros).gte(0),
                ))
                .foreign_key(&mut tenant_fk(
                    "fk_usage_events_org",
                    UsageEvents::Table,
                    UsageEvents::TenantId,
                ))
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        // A tenant's sums over a window (also the organization foreign key's index).
        (
            "ix_usage_events_tenant_at",
            vec![
                UsageEvents::TenantId.into_iden(),
                UsageEvents::At.into_iden(),
            ],
        ),
        // One user's sums over a window.
        (
            "ix_usage_events_tenant_user_at",
            vec![
                UsageEvents::TenantId.into_iden(),
                UsageEvents::UserId.into_iden(),
                UsageEvents::At.into_iden(),
            ],
        ),
        // Every tenant's sums over a window (platform administrators).
        ("ix_usage_events_at", vec![UsageEvents::At.into_iden()]),
    ] {
        manager
            .create_index(index(name, UsageEvents::Table, cols))
            .await?;
    }
    Ok(())
}

async fn create_limits(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(UsageLimits::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(UsageLimits::TenantId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(UsageLimits::MonthlyTokenLimit)
                        .big_integer()
                        .not_null(),
                )
                .col(timestamp(UsageLimits::UpdatedAt))
                .check((
                    "ck_usage_limits_monthly_token_limit",
                    Expr::col(UsageLimits::MonthlyTokenLimit).gte(0),
                ))
                .foreign_key(&mut tenant_fk(
                    "fk_usage_limits_org",
                    UsageLimits::Table,
                    UsageLimits::TenantId,
                ))
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_events(manager).await?;
        create_limits(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UsageLimits::Table.into_iden(),
            UsageEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
