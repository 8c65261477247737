//! An organization's rows as JSON, table by table, for its export, and the same rows loaded
//! back into another deployment by `quire import` (docs/exports.md).
//!
//! [`EXPORTED`] and [`LEFT_OUT`] together name every table that holds an organization's data:
//! the export test compares them with the database's catalog, so a table added later that is
//! in neither fails it (as the erasure test scans every table of the catalog).

use anyhow::Context as _;
use kernel::TenantId;
use sea_orm::{
    ColumnTrait as _, EntityTrait, PaginatorTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, TransactionTrait as _,
};
use serde_json::Value;

use crate::entity;
use crate::stored::execute_timed;

/// The tables an export holds (one `<table>.ndjson` each), in the order an import loads
/// them: a row's parents come before it.
pub const EXPORTED: &[&str] = &[
    "organizations",
    "memberships",
    "api_keys",
    "collections",
    "documents",
    "chunks",
    "assistants",
    "chat_sessions",
    "chat_messages",
    "message_feedback",
    "tenant_models",
    "usage_events",
    "usage_limits",
    "workflow_schedules",
    "audit_log",
];

/// Tables that hold an organization's data and are deliberately not exported, with why.
pub const LEFT_OUT: &[(&str, &str)] = &[
    (
        "users",
        "accounts are not the organization's: members.ndjson carries each member's email, \
         name and role, never a password hash",
    ),
    (
        "invitations",
        "pending invitations are links of this deployment (their tokens are hashes only)",
    ),
    (
        "webhooks",
        "an endpoint's signing secret cannot leave the deployment; endpoints are registered again",
    ),
    (
        "webhook_deliveries",
        "the delivery queue of this deployment",
    ),
    ("webhook_attempts", "the delivery log of this deployment"),
    (
        "workflow_runs",
        "the run queue of this deployment (runs in flight, and the export itself)",
    ),
    (
        "jobs",
        "the ingestion queue of this deployment; an import queues its own",
    ),
    (
        "embedding_spaces",
        "vectors are rebuilt from the chunks by the importing deployment's models",
    ),
    ("chunk_vectors", "as embedding_spaces"),
    (
        "blobs",
        "the database blob store: the files are in files/<document-id>/ instead",
    ),
    ("blob_parts", "as blobs"),
    (
        "evaluations",
        "figures of this deployment's indexes and models; a golden set is run again after an import",
    ),
    (
        "keyword_postings",
        "the keyword index, rebuilt from chunks by triggers",
    ),
    (
        "keyword_versions",
        "the keyword cache's versions (SQLite), kept from chunks by triggers",
    ),
];

/// Rows per page of [`crate::SqlStore::tenant_rows`].
pub const PAGE_ROWS: u64 = 500;

macro_rules! page_of {
    ($db:expr, $module:ident, $filter:expr, $order:expr, $page:expr) => {{
        let rows = entity::$module::Entity::find()
            .filter($filter)
            .order_by_asc($order)
            .offset($page * PAGE_ROWS)
            .limit(PAGE_ROWS)
            .all($db)
            .await
            .with_context(|| format!("reading {} for an export", stringify!($module)))?;
        rows.into_iter()
            .map(|r| serde_json::to_value(r).context("a row as JSON"))
            .collect::<anyhow::Result<Vec<Value>>>()?
    }};
}

macro_rules! insert_rows {
    ($txn:expr, $module:ident, $rows:expr) => {{
        let mut n = 0_u64;
        for row in $rows {
            let model: entity::$module::Model = serde_json::from_value(row)
                .with_context(|| format!("a row of {} in the archive", stringify!($module)))?;
            let active = entity::$module::ActiveModel::from(model);
            execute_timed($txn, &entity::$module::Entity::insert(active))
                .await
                .with_context(|| format!("inserting a row of {}", stringify!($module)))?;
            n += 1;
        }
        n
    }};
}

/// A member as an export writes it: the membership with the account's email and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportedMember {
    /// The account's id in the exporting deployment.
    pub user_id: uuid::Uuid,
    /// Its email (the key an import maps members by).
    pub email: String,
    /// Its display name.
    pub name: String,
    /// `owner`, `admin`, `member` or `viewer`.
    pub role: String,
    /// When they joined.
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: time::OffsetDateTime,
}

impl crate::SqlStore {
    /// Page `page` (from 0, [`PAGE_ROWS`] rows each, in primary-key order) of `table`'s rows of
    /// `tenant` as JSON objects (the stored columns), secrets removed: an API key's hash is
    /// left empty. An empty page is the end.
    ///
    /// # Errors
    /// A table not in [`EXPORTED`]; storage.
    pub async fn tenant_rows(
        &self,
        tenant: TenantId,
        table: &str,
        page: u64,
    ) -> anyhow::Result<Vec<Value>> {
        crate::rls::tenant(tenant, async {
            let t = tenant.as_uuid();
            let db = &self.db;
            use entity::*;
            let rows = match table {
                "organizations" => page_of!(
                    db,
                    organization,
                    organization::Column::Id.eq(t),
                    organization::Column::Id,
                    page
                ),
                "memberships" => page_of!(
                    db,
                    membership,
                    membership::Column::TenantId.eq(t),
                    membership::Column::UserId,
                    page
                ),
                "api_keys" => {
                    let mut rows = page_of!(
                        db,
                        api_key,
                        api_key::Column::TenantId.eq(t),
                        api_key::Column::Id,
                        page
                    );
                    for r in &mut rows {
                        r["key_hash"] = Value::Array(Vec::new());
                    }
                    rows
                }
                "collections" => page_of!(
                    db,
                    collection,
                    collection::Column::TenantId.eq(t),
                    collection::Column::Id,
                    page
                ),
                "documents" => page_of!(
                    db,
                    document,
                    document::Column::TenantId.eq(t),
                    document::Column::Id,
                    page
                ),
                "chunks" => page_of!(
                    db,
                    chunk,
                    chunk::Column::TenantId.eq(t),
                    chunk::Column::Id,
                    page
                ),
                "assistants" => page_of!(
                    db,
                    assistant,
                    assistant::Column::TenantId.eq(t),
                    assistant::Column::Id,
                    page
                ),
                "chat_sessions" => page_of!(
                    db,
                    chat_session,
                    chat_session::Column::TenantId.eq(t),
                    chat_session::Column::Id,
                    page
                ),
                "chat_messages" => page_of!(
                    db,
                    chat_message,
                    chat_message::Column::TenantId.eq(t),
                    chat_message::Column::Id,
                    page
                ),
                "message_feedback" => page_of!(
                    db,
                    message_feedback,
                    message_feedback::Column::TenantId.eq(t),
                    message_feedback::Column::MessageId,
                    page
                ),
                "tenant_models" => page_of!(
                    db,
                    tenant_model,
                    tenant_model::Column::TenantId.eq(t),
                    tenant_model::Column::TenantId,
                    page
                ),
                "usage_events" => page_of!(
                    db,
                    usage_event,
                    usage_event::Column::TenantId.eq(t),
                    usage_event::Column::Id,
                    page
                ),
                "usage_limits" => page_of!(
                    db,
                    usage_limit,
                    usage_limit::Column::TenantId.eq(t),
                    usage_limit::Column::TenantId,
                    page
                ),
                "workflow_schedules" => page_of!(
                    db,
                    workflow_schedule,
                    workflow_schedule::Column::TenantId.eq(t),
                    workflow_schedule::Column::Id,
                    page
                ),
                "audit_log" => page_of!(
                    db,
                    audit,
                    audit::Column::TenantId.eq(t),
                    audit::Column::Id,
                    page
                ),
                other => anyhow::bail!("{other} is not an exported table"),
            };
            Ok(rows)
        })
        .await
    }

    /// The organization's members with their accounts' email and name, oldest first.
    ///
    /// # Errors
    /// Storage.
    pub async fn exported_members(&self, tenant: TenantId) -> anyhow::Result<Vec<ExportedMember>> {
        crate::rls::tenant(tenant, async {
            let members = entity::membership::Entity::find()
                .filter(entity::membership::Column::TenantId.eq(tenant.as_uuid()))
                .order_by_asc(entity::membership::Column::CreatedAt)
                .all(&self.db)
                .await
                .context("reading members for an export")?;
            let ids: Vec<uuid::Uuid> = members.iter().map(|m| m.user_id).collect();
            let users = entity::user::Entity::find()
                .filter(entity::user::Column::Id.is_in(ids))
                .all(&self.db)
                .await
                .context("reading members' accounts for an export")?;
            Ok(members
                .into_iter()
                .filter_map(|m| {
                    let u = users.iter().find(|u| u.id == m.user_id)?;
                    Some(ExportedMember {
                        user_id: m.user_id,
                        email: u.email.clone(),
                        name: u.name.clone(),
                        role: m.role,
                        joined_at: m.created_at,
                    })
                })
                .collect())
        })
        .await
    }

    /// Begins loading an archive's rows into the organization `tenant` (the archive's
    /// organization row names it): one transaction, inside that tenant (row-level security on
    /// PostgreSQL), fed batch by batch ([`Import::load`]) so that an import holds one batch of
    /// rows in memory, not the archive, and committed at the end: all of them or none.
    ///
    /// # Errors
    /// Storage.
    pub async fn begin_import(&self, tenant: TenantId) -> anyhow::Result<Import> {
        // The transaction keeps the connection checked out here, with this tenant, to its end.
        let txn = crate::rls::tenant(tenant, self.db.begin())
            .await
            .context("starting an import")?;
        Ok(Import {
            txn,
            now: self.now(),
        })
    }

    /// Whether an organization with this id or slug exists.
    ///
    /// # Errors
    /// Storage.
    pub async fn organization_taken(&self, id: uuid::Uuid, slug: &str) -> anyhow::Result<bool> {
        let n = entity::organization::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(entity::organization::Column::Id.eq(id))
                    .add(entity::organization::Column::Slug.eq(slug)),
            )
            .count(&self.db)
            .await
            .context("looking for an organization")?;
        Ok(n > 0)
    }
}

/// An import in progress ([`SqlStore::begin_import`]): its transaction, dropped (rolled back)
/// unless [`Import::commit`] ends it.
#[allow(missing_debug_implementations)]
pub struct Import {
    txn: sea_orm::DatabaseTransaction,
    now: time::OffsetDateTime,
}

impl Import {
    /// Loads a batch of `table`'s rows (tables in [`EXPORTED`]'s order, the organization
    /// first). API keys arrive revoked, with a random hash (their secrets stayed behind).
    /// Returns the rows loaded.
    ///
    /// # Errors
    /// A table not in [`EXPORTED`], a row that does not fit its table, a conflict (an id that
    /// exists: the organization was imported already); storage.
    pub async fn load(&self, table: &str, mut rows: Vec<Value>) -> anyhow::Result<u64> {
        let txn = &self.txn;
        Ok(match table {
            "organizations" => insert_rows!(txn, organization, rows),
            "memberships" => insert_rows!(txn, membership, rows),
            "api_keys" => {
                let revoked = serde_json::to_value(self.now).context("a time as JSON")?;
                for r in &mut rows {
                    let random: Vec<Value> = uuid::Uuid::now_v7()
                        .as_bytes()
                        .iter()
                        .chain(uuid::Uuid::now_v7().as_bytes())
                        .map(|b| Value::from(*b))
                        .collect();
                    r["key_hash"] = Value::Array(random);
                    if r.get("revoked_at").is_none_or(Value::is_null) {
                        r["revoked_at"] = revoked.clone();
                    }
                }
                insert_rows!(txn, api_key, rows)
            }
            "collections" => insert_rows!(txn, collection, rows),
            "documents" => insert_rows!(txn, document, rows),
            "chunks" => insert_rows!(txn, chunk, rows),
            "assistants" => insert_rows!(txn, assistant, rows),
            "chat_sessions" => insert_rows!(txn, chat_session, rows),
            "chat_messages" => insert_rows!(txn, chat_message, rows),
            "message_feedback" => insert_rows!(txn, message_feedback, rows),
            "tenant_models" => insert_rows!(txn, tenant_model, rows),
            "usage_events" => insert_rows!(txn, usage_event, rows),
            "usage_limits" => insert_rows!(txn, usage_limit, rows),
            "workflow_schedules" => insert_rows!(txn, workflow_schedule, rows),
            "audit_log" => insert_rows!(txn, audit, rows),
            other => anyhow::bail!("{other} is not an exported table"),
        })
    }

    /// Commits every batch loaded.
    ///
    /// # Errors
    /// Storage (nothing of the import stays).
    pub async fn commit(self) -> anyhow::Result<()> {
        self.txn.commit().await.context("committing an import")
    }
}
