//! sea-orm entities: the rows as stored. Private to the store.

pub mod organization {
    //! The `organizations` table.
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub slug: String,
        pub plan: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub audit_question_text_since: Option<TimeDateTimeWithTimeZone>,
        pub chat_retention_days: Option<i32>,
        pub failed_documents_retention_days: Option<i32>,
        pub access_trail_retention_days: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    //! The `users` table.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub name: String,
        pub password_hash: Option<String>,
        pub is_platform_admin: bool,
        pub disabled_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub avatar_url: Option<String>,
        pub locale: Option<String>,
        pub timezone: Option<String>,
        pub preferences: Option<String>,
        pub email_verified_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_token {
    //! The `refresh_tokens` table: only hashes are stored.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: Vec<u8>,
        pub session_id: Uuid,
        pub user_id: Uuid,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub spent_at: Option<TimeDateTimeWithTimeZone>,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod membership {
    //! The `memberships` table (tenant data: every query goes through `crate::scoped`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub role: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod audit {
    //! The `audit_log` table (append-only).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub at: TimeDateTimeWithTimeZone,
        pub action: String,
        pub actor: Option<Uuid>,
        pub tenant_id: Option<Uuid>,
        pub target: Option<String>,
        pub ip: String,
        pub user_agent: Option<String>,
        pub actor_key: Option<Uuid>,
        pub request_id: Option<String>,
        pub documents: Option<String>,
        pub detail: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_key {
    //! The `api_keys` table (tenant data: queries go through `crate::scope`, except the
    //! lookup by secret hash, which is how a key finds its tenant).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub role: String,
        pub prefix: String,
        pub key_hash: Vec<u8>,
        pub created_by: Option<Uuid>,
        /// Space-separated scope names.
        pub scopes: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub last_used_at: Option<TimeDateTimeWithTimeZone>,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod outbox {
    //! The `dev_outbox` table: mail of the development mailer.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dev_outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub at: TimeDateTimeWithTimeZone,
        pub recipient: String,
        pub subject: String,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod password_reset {
    //! The `password_resets` table (token hashes).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_resets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: Vec<u8>,
        pub user_id: Uuid,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub used_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invitation {
    //! The `invitations` table (token hashes; tenant data: lists and revocations go through
    //! `crate::scope`, lookups by token hash do not, the token being what names the tenant).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invitations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub email: String,
        pub role: String,
        pub token_hash: Vec<u8>,
        pub invited_by: Option<Uuid>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub accepted_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod collection {
    //! The `collections` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "collections")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub description: Option<String>,
        pub chunk_max_tokens: i32,
        pub chunk_overlap: i32,
        pub tokenizer: String,
        pub embedding_model: Option<String>,
        /// Tesseract's form (`eng+deu`); `NULL`: the configured default.
        #[serde(default)]
        pub ocr_languages: Option<String>,
        /// Added by migration 29; archives from before it have none.
        #[serde(default)]
        pub rerank_top_n: Option<i32>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod document {
    //! The `documents` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "documents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub collection_id: Option<Uuid>,
        pub name: String,
        pub format: String,
        pub bytes: i64,
        pub content_hash: String,
        pub pages: Option<i32>,
        #[serde(default)]
        pub ocr_pages: i32,
        pub status: String,
        pub progress: f32,
        pub stage: Option<String>,
        pub done_units: i32,
        pub total_units: i32,
        pub chunk_count: i32,
        pub token_count: i64,
        pub error: Option<String>,
        /// A JSON object, serialized.
        pub metadata: String,
        pub job_id: Option<Uuid>,
        pub blob_key: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod chunk {
    //! The `chunks` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "chunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub document_id: Uuid,
        pub collection_id: Option<Uuid>,
        pub ordinal: i32,
        pub text: String,
        pub token_count: i32,
        pub page: Option<i32>,
        pub start_char: i64,
        pub end_char: i64,
        #[serde(default)]
        pub ocr: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod job {
    //! The `jobs` table: the durable queue. Tenant data: every query goes through
    //! `crate::scope`, except the queue's choice of the next tenant to serve (the `jobs` module).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub document_id: Option<Uuid>,
        pub status: String,
        pub stage: Option<String>,
        pub progress: f32,
        pub done_units: i32,
        pub total_units: i32,
        pub attempts: i32,
        pub error: Option<String>,
        pub run_at: TimeDateTimeWithTimeZone,
        pub lease_token: Option<Uuid>,
        pub lease_until: Option<TimeDateTimeWithTimeZone>,
        pub claimed_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub finished_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod blob {
    //! The `blobs` table: one row per upload of an original file; `key` is NULL until the
    //! upload commits (see the `blobs` module). Keyed by `BlobKey`, which starts with the
    //! tenant; `tenant_id` is that tenant (row-level security on PostgreSQL).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub upload: Uuid,
        pub tenant_id: Option<Uuid>,
        pub key: Option<String>,
        pub bytes: Option<i64>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod blob_part {
    //! The `blob_parts` table: the bytes of an upload, in numbered parts.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blob_parts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub upload: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub tenant_id: Option<Uuid>,
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod embedding_space {
    //! The `embedding_spaces` table (tenant data: a tenant's spaces are read through
    //! `crate::scope`; the background work that spans tenants goes by space id, see the
    //! `spaces` module). Times are written by `crate::stored::at_value`.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "embedding_spaces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub collection_id: Option<Uuid>,
        /// The collection id, or the nil UUID for "no collection".
        pub scope_key: Uuid,
        pub model: String,
        pub dimensions: i32,
        pub status: String,
        pub lease_token: Option<Uuid>,
        pub lease_until: Option<TimeDateTimeWithTimeZone>,
        /// The greatest `seq` of its vector rows.
        pub version: i64,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod chunk_vector {
    //! The `chunk_vectors` table: the rows of an in-process vector index (little-endian
    //! `f32`s). Keyed by space; a document's rows are found through `crate::scope`.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chunk_vectors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub space_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub chunk_id: Uuid,
        pub tenant_id: Uuid,
        pub document_id: Uuid,
        pub seq: i64,
        pub embedding: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod assistant {
    //! The `assistants` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "assistants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub instructions: String,
        pub model: Option<String>,
        /// A JSON array of collection ids, serialized.
        pub collection_ids: String,
        pub temperature: Option<f32>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        /// The creator: a user or an API key (both `NULL` before migration 20).
        pub created_by_user_id: Option<Uuid>,
        pub created_by_api_key_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod chat_session {
    //! The `chat_sessions` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "chat_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        /// The owner when a user; exactly one of this and `owner_api_key_id` is set.
        pub owner_user_id: Option<Uuid>,
        /// The owner when an API key.
        pub owner_api_key_id: Option<Uuid>,
        pub title: String,
        /// A JSON array of collection ids, serialized.
        pub collection_ids: String,
        pub model: Option<String>,
        pub system_prompt: Option<String>,
        pub assistant_id: Option<Uuid>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod chat_message {
    //! The `chat_messages` table (tenant data: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "chat_messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub session_id: Uuid,
        pub role: String,
        pub content: String,
        /// A JSON array of citation objects, serialized.
        pub citations: String,
        /// NULL, with `completion_tokens`, when the usage is unknown.
        pub prompt_tokens: Option<i64>,
        pub completion_tokens: Option<i64>,
        pub status: String,
        pub model: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
        /// Why an answer ended early.
        pub error: Option<String>,
        /// A streaming answer's lease (NULL once it ended).
        pub lease_until: Option<TimeDateTimeWithTimeZone>,
        /// The reservation a streaming answer settles, as JSON (NULL once it ended).
        pub reservation: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod message_feedback {
    //! The `message_feedback` table: one rating per message and principal (tenant data:
    //! every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "message_feedback")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        /// `u:<user id>` or `k:<API key id>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub principal_key: String,
        pub rating: String,
        pub comment: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod tenant_model {
    //! The `tenant_models` table: an organization's model whitelist (keyed by tenant: every
    //! query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "tenant_models")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        /// A JSON array of model names, serialized.
        pub models: String,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod usage_event {
    //! The `usage_events` table: the append-only usage ledger (tenant data: a tenant's sums
    //! go through `crate::scope`; the platform's sums over every tenant do not, see the
    //! `billing` module). `at` is written by `crate::stored::at_value`.
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "usage_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        /// The caller when a user; at most one of this and `api_key_id` is set (neither:
        /// background work). No foreign key: the ledger outlives the user.
        pub user_id: Option<Uuid>,
        /// The caller when an API key (no foreign key either).
        pub api_key_id: Option<Uuid>,
        pub model: String,
        /// `chat`, `embedding` or `export`.
        pub kind: String,
        pub reference: String,
        pub request_id: Option<String>,
        pub prompt_tokens: i64,
        pub completion_tokens: i64,
        pub cost_micros: i64,
        /// Bytes an export carried out (0 for model calls); archives made before the column
        /// have none.
        #[serde(default)]
        pub bytes: i64,
        pub at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod usage_limit {
    //! The `usage_limits` table: an organization's monthly token limit override (keyed by
    //! tenant: every query goes through `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "usage_limits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        pub monthly_token_limit: i64,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod webhook {
    //! The `webhooks` table: an organization's endpoints (tenant data: queries go through
    //! `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub url: String,
        /// Space-separated event names.
        pub events: String,
        pub enabled: bool,
        pub secret: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod webhook_delivery {
    //! The `webhook_deliveries` table: the queue of deliveries. Tenant data: every query goes
    //! through `crate::scope`, except the claim's choice of the next due row (`webhooks`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub webhook_id: Uuid,
        pub message_id: String,
        pub event: String,
        pub payload: String,
        pub status: String,
        pub attempts: i32,
        pub run_at: TimeDateTimeWithTimeZone,
        pub lease_token: Option<Uuid>,
        pub lease_until: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod webhook_attempt {
    //! The `webhook_attempts` table: the log of every attempt (tenant data: queries go through
    //! `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub webhook_id: Uuid,
        pub delivery_id: Uuid,
        pub event: String,
        pub attempt: i32,
        pub status_code: Option<i32>,
        pub error: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod workflow_run {
    //! The `workflow_runs` table: the queue of workflow runs. Tenant data: every query goes
    //! through `crate::scope`, except the claim's choice of the next due row (`workflows`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub input: String,
        pub status: String,
        pub progress: f32,
        pub result: Option<String>,
        pub artifact: Option<String>,
        pub error: Option<String>,
        pub actor: String,
        pub role: String,
        pub schedule_id: Option<Uuid>,
        pub attempts: i32,
        pub cancel_requested: bool,
        pub lease_token: Option<Uuid>,
        pub lease_until: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub finished_at: Option<TimeDateTimeWithTimeZone>,
        pub archive_expires_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod workflow_schedule {
    //! The `workflow_schedules` table. Tenant data: every query goes through `crate::scope`,
    //! except the scheduler's look for due rows and its compare-and-set (`workflows`).
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "workflow_schedules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub input: String,
        pub cron: String,
        pub next_run_at: TimeDateTimeWithTimeZone,
        pub actor: String,
        pub role: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod evaluation {
    //! The `evaluations` table: runs of golden sets (tenant data: queries go through
    //! `crate::scope`).
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "evaluations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        /// Space-separated collection ids; NULL: the whole organization.
        pub collection_ids: Option<String>,
        pub created_by: Option<Uuid>,
        pub created_by_key: Option<Uuid>,
        pub k: i32,
        pub embedding_model: Option<String>,
        pub rerank: bool,
        /// The golden set, JSON.
        pub items: String,
        /// The figures of each mode, JSON.
        pub results: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl crate::scope::TenantScoped for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}
