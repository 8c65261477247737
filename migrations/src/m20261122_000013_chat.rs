//! Chat: assistants, conversations, their messages, ratings of answers, and each
//! organization's model whitelist.
//!
//! - `assistants`: an organization's presets (instructions, model, collections, temperature).
//!   `collection_ids` is a JSON array of UUID strings, as text (one portable column).
//! - `chat_sessions`: one caller's conversation. The owner is a user (`owner_user_id`) or an
//!   API key (`owner_api_key_id`): exactly one of the two is set (a CHECK constraint), and
//!   deleting that user or key deletes the conversation. Deleting its assistant leaves it
//!   without one (ON DELETE SET NULL). A caller's list is read through
//!   `(tenant_id, owner_…, id)`.
//! - `chat_messages`: a conversation's messages, read in id order through
//!   `(session_id, id)`. `citations` is a JSON array of objects (`chunk_id`, `document_id`,
//!   `document_name`, `page`, `quote`, `score`, `start`, `end`) with no foreign key to chunks
//!   or documents: a citation outlives what it cites. `prompt_tokens` and
//!   `completion_tokens` are both NULL when the usage is unknown.
//! - `message_feedback`: one rating per message and principal (`u:<user id>` or
//!   `k:<API key id>`), the primary key; a new rating replaces the old one.
//! - `tenant_models`: the models a platform admin allowed an organization (a JSON array of
//!   names, as text); no row means the configured default.
//!
//! Deleting an organization deletes all of it; deleting a conversation deletes its messages,
//! and deleting a message its ratings (ON DELETE CASCADE).

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Assistants {
    Table,
    Id,
    TenantId,
    Name,
    Instructions,
    Model,
    CollectionIds,
    Temperature,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChatSessions {
    Table,
    Id,
    TenantId,
    OwnerUserId,
    OwnerApiKeyId,
    Title,
    CollectionIds,
    Model,
    SystemPrompt,
    AssistantId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Id,
    TenantId,
    SessionId,
    Role,
    Content,
    Citations,
    PromptTokens,
    CompletionTokens,
    Status,
    Model,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MessageFeedback {
    Table,
    TenantId,
    MessageId,
    PrincipalKey,
    Rating,
    Comment,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TenantModels {
    Table,
    TenantId,
    Models,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ApiKeys {
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

async fn create_assistants(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Assistants::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Assistants::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Assistants::TenantId).uuid().not_null())
                .col(ColumnDef::new(Assistants::Name).string_len(100).not_null())
                .col(ColumnDef::new(Assistants::Instructions).text().not_null())
                .col(ColumnDef::new(Assistants::Model).string_len(100).null())
                .col(ColumnDef::new(Assistants::CollectionIds).text().not_null())
                .col(ColumnDef::new(Assistants::Temperature).float().null())
                .col(timestamp(Assistants::CreatedAt))
                .col(timestamp(Assistants::UpdatedAt))
                .foreign_key(&mut tenant_fk(
                    "fk_assistants_org",
                    Assistants::Table,
                    Assistants::TenantId,
                ))
                .to_owned(),
        )
        .await?;
    // A tenant's assistants in id order.
    manager
        .create_index(index(
            "ix_assistants_tenant",
            Assistants::Table,
            vec![Assistants::TenantId.into_iden(), Assistants::Id.into_iden()],
        ))
        .await
}

async fn create_sessions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // Exactly one owner: a user or an API key.
    let one_owner = Expr::col(ChatSessions::OwnerUserId)
        .is_null()
        .ne(Expr::col(ChatSessions::OwnerApiKeyId).is_null());
    manager
        .create_table(
            Table::create()
                .table(ChatSessions::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ChatSessions::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ChatSessions::TenantId).uuid().not_null())
                .col(ColumnDef::new(ChatSessions::OwnerUserId).uuid().null())
                .col(ColumnDef::new(ChatSessions::OwnerApiKeyId).uuid().null())
                .col(
                    ColumnDef::new(ChatSessions::Title)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ChatSessions::CollectionIds)
                        .text()
                        .not_null(),
                )
                .col(ColumnDef::new(ChatSessions::Model).string_len(100).null())
                .col(ColumnDef::new(ChatSessions::SystemPrompt).text().null())
                .col(ColumnDef::new(ChatSessions::AssistantId).uuid().null())
                .col(timestamp(ChatSessions::CreatedAt))
                .col(timestamp(ChatSessions::UpdatedAt))
                .check(("ck_chat_sessions_one_owner", one_owner))
                .foreign_key(&mut tenant_fk(
                    "fk_chat_sessions_org",
                    ChatSessions::Table,
                    ChatSessions::TenantId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chat_sessions_user")
                        .from(ChatSessions::Table, ChatSessions::OwnerUserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chat_sessions_api_key")
                        .from(ChatSessions::Table, ChatSessions::OwnerApiKeyId)
                        .to(ApiKeys::Table, ApiKeys::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chat_sessions_assistant")
                        .from(ChatSessions::Table, ChatSessions::AssistantId)
                        .to(Assistants::Table, Assistants::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        // A user's conversations, newest first.
        (
            "ix_chat_sessions_user",
            vec![
                ChatSessions::TenantId.into_iden(),
                ChatSessions::OwnerUserId.into_iden(),
                ChatSessions::Id.into_iden(),
            ],
        ),
        // An API key's conversations, newest first.
        (
            "ix_chat_sessions_api_key",
            vec![
                ChatSessions::TenantId.into_iden(),
                ChatSessions::OwnerApiKeyId.into_iden(),
                ChatSessions::Id.into_iden(),
            ],
        ),
        // The foreign keys: a cascading delete (or SET NULL) finds the rows without a scan.
        (
            "ix_chat_sessions_owner_user",
            vec![ChatSessions::OwnerUserId.into_iden()],
        ),
        (
            "ix_chat_sessions_owner_api_key",
            vec![ChatSessions::OwnerApiKeyId.into_iden()],
        ),
        (
            "ix_chat_sessions_assistant",
            vec![ChatSessions::AssistantId.into_iden()],
        ),
    ] {
        manager
            .create_index(index(name, ChatSessions::Table, cols))
            .await?;
    }
    Ok(())
}

async fn create_messages(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(ChatMessages::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ChatMessages::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ChatMessages::TenantId).uuid().not_null())
                .col(ColumnDef::new(ChatMessages::SessionId).uuid().not_null())
                .col(ColumnDef::new(ChatMessages::Role).string_len(16).not_null())
                .col(ColumnDef::new(ChatMessages::Content).text().not_null())
                .col(ColumnDef::new(ChatMessages::Citations).text().not_null())
                .col(
                    ColumnDef::new(ChatMessages::PromptTokens)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(ChatMessages::CompletionTokens)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(ChatMessages::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(ChatMessages::Model).text().null())
                .col(timestamp(ChatMessages::CreatedAt))
                .foreign_key(&mut tenant_fk(
                    "fk_chat_messages_org",
                    ChatMessages::Table,
                    ChatMessages::TenantId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_chat_messages_session")
                        .from(ChatMessages::Table, ChatMessages::SessionId)
                        .to(ChatSessions::Table, ChatSessions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        // A conversation's messages in id order (also the session foreign key's index).
        (
            "ix_chat_messages_session",
            vec![
                ChatMessages::SessionId.into_iden(),
                ChatMessages::Id.into_iden(),
            ],
        ),
        // A tenant's messages (the organization foreign key).
        (
            "ix_chat_messages_tenant",
            vec![
                ChatMessages::TenantId.into_iden(),
                ChatMessages::Id.into_iden(),
            ],
        ),
    ] {
        manager
            .create_index(index(name, ChatMessages::Table, cols))
            .await?;
    }
    Ok(())
}

async fn create_feedback(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(MessageFeedback::Table)
                .if_not_exists()
                .col(ColumnDef::new(MessageFeedback::TenantId).uuid().not_null())
                .col(ColumnDef::new(MessageFeedback::MessageId).uuid().not_null())
                .col(
                    ColumnDef::new(MessageFeedback::PrincipalKey)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MessageFeedback::Rating)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(MessageFeedback::Comment).text().null())
                .col(timestamp(MessageFeedback::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(MessageFeedback::MessageId)
                        .col(MessageFeedback::PrincipalKey),
                )
                .foreign_key(&mut tenant_fk(
                    "fk_message_feedback_org",
                    MessageFeedback::Table,
                    MessageFeedback::TenantId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_feedback_message")
                        .from(MessageFeedback::Table, MessageFeedback::MessageId)
                        .to(ChatMessages::Table, ChatMessages::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    // A tenant's ratings by message (the organization foreign key; the primary key serves the
    // message's).
    manager
        .create_index(index(
            "ix_message_feedback_tenant",
            MessageFeedback::Table,
            vec![
                MessageFeedback::TenantId.into_iden(),
                MessageFeedback::MessageId.into_iden(),
            ],
        ))
        .await
}

async fn create_tenant_models(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(TenantModels::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(TenantModels::TenantId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(TenantModels::Models).text().not_null())
                .col(timestamp(TenantModels::UpdatedAt))
                .foreign_key(&mut tenant_fk(
                    "fk_tenant_models_org",
                    TenantModels::Table,
                    TenantModels::TenantId,
                ))
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_assistants(manager).await?;
        create_sessions(manager).await?;
        create_messages(manager).await?;
        create_feedback(manager).await?;
        create_tenant_models(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TenantModels::Table.into_iden(),
            MessageFeedback::Table.into_iden(),
            ChatMessages::Table.into_iden(),
            ChatSessions::Table.into_iden(),
            Assistants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
