//! [`ChatStore`] on SQL, through the tenant-scoping helper: [`SqlChatStore`].
//!
//! - Collection ids, citations and model names are JSON text (one portable column on both
//!   backends). Citations are objects `{chunk_id, document_id, document_name, page, quote,
//!   score, start, end}`; a score that is not a finite number (never produced by retrieval)
//!   is stored as `null` and reads back as NaN.
//! - Times are written by the one time encoder (`stored::at_value`: UTC at microsecond
//!   precision; on SQLite fixed-width text, whose text order is time order).
//! - A session names an assistant only of its own tenant that exists when it is written;
//!   any other assistant id is stored as none (as deleting the assistant later does, through
//!   `ON DELETE SET NULL`). On PostgreSQL the assistant row is share-locked while the session
//!   is written, so a concurrent delete waits and then detaches it.
//! - Appending a message moves the session's `updated_at` first, in the same transaction: no
//!   session row (or another tenant's) means nothing is stored, and on PostgreSQL the row
//!   lock keeps the session from being deleted before the message is in.
//! - An answer's message is stored when it starts (`streaming`, with its run's `lease_until`
//!   and the reservation it settles as JSON), checkpointed while it runs, and finished over
//!   the same row (lease and reservation back to NULL). The sweeper's scan of abandoned
//!   answers is the one query of messages across tenants; its update is tenant-scoped and
//!   conditional on the status and the lease, so one sweeper wins.
//! - Deleting a session deletes its messages and their feedback by foreign-key cascade.
//! - Feedback is keyed by message and principal (`u:<user id>`, `k:<API key id>`): a new
//!   rating replaces the earlier one. A rating of a message the tenant does not have is not
//!   stored.

use anyhow::Context as _;
use async_trait::async_trait;
use chat::{
    AbandonedAnswer, Assistant, AssistantId, ChatSessionId, ChatStore, Citation, Feedback, Message,
    MessageId, MessageRole, MessageStatus, Rating, Session, StoreError, Usage,
};
use documents::{ChunkId, CollectionId, DocumentId};
use kernel::{
    ApiKeyId, MeterScope, Page, PageRequest, Principal, Reservation, TenantId, UsageKind, UserId,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::{assistant, chat_message, chat_session, message_feedback, tenant_model};
use crate::stored::{at_value, execute_timed, fit, null_time};
use crate::{SqlStore, scope};

/// The chat domain's storage on the SQL store's pool.
#[derive(Debug, Clone)]
pub struct SqlChatStore {
    store: SqlStore,
}

impl SqlChatStore {
    /// The chat store of `store` (sharing its pool; the migrations must have run).
    #[must_use]
    pub fn new(store: &SqlStore) -> Self {
        Self {
            store: store.clone(),
        }
    }

    /// Every rating of the tenant's message `message`, API keys' first (`k:…` sorts before
    /// `u:…`), then users', each by id. Empty when the tenant has no such message.
    ///
    /// # Errors
    /// [`StoreError::Unknown`] when storage fails or a stored row is malformed.
    pub async fn feedback_on(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Vec<Feedback>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<message_feedback::Entity>(tenant)
                .filter(message_feedback::Column::MessageId.eq(message.as_uuid()))
                .order_by_asc(message_feedback::Column::PrincipalKey)
                .all(&self.store.db)
                .await
                .context("reading a message's feedback")?
                .into_iter()
                .map(feedback_to_domain)
                .collect()
        })
        .await
    }

    /// Inserts `row` (of `message`) after moving its session's `updated_at`, in one
    /// transaction; `false` when the session is gone.
    /// Appends `rows` (of `messages`, in order) to their session in one transaction, moving
    /// its `updated_at` to the last one's `created_at`; `false` (nothing stored) when the
    /// session is gone.
    async fn insert_messages(
        &self,
        messages: &[&Message],
        rows: Vec<chat_message::ActiveModel>,
    ) -> Result<bool, StoreError> {
        let Some(last) = messages.last() else {
            return Ok(true);
        };
        let txn = self
            .store
            .begin_write()
            .await
            .context("starting a message append")?;
        // First: it finds (and, on PostgreSQL, locks) the session, or there is none.
        let touched = scope::update::<chat_session::Entity>(last.tenant_id)
            .col_expr(
                chat_session::Column::UpdatedAt,
                Expr::value(at_value(txn.get_database_backend(), last.created_at)),
            )
            .filter(chat_session::Column::Id.eq(last.session_id.as_uuid()))
            .exec(&txn)
            .await
            .context("touching a chat session")?
            .rows_affected;
        if touched == 0 {
            txn.rollback().await.context("ending a message append")?;
            return Ok(false);
        }
        // One statement for the rows (a question and its answer's start: one hand-off to
        // SQLite's connection thread, or one round trip to PostgreSQL, fewer).
        execute_timed(&txn, &chat_message::Entity::insert_many(rows))
            .await
            .context("storing messages")?;
        txn.commit().await.context("committing a message append")?;
        Ok(true)
    }

    fn is_postgres(&self) -> bool {
        self.store.db.get_database_backend() == DbBackend::Postgres
    }

    /// `id` when `tenant` has that assistant, `None` otherwise. On PostgreSQL the row stays
    /// share-locked until `txn` ends, so it cannot be deleted under a reference being written.
    async fn own_assistant(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        id: Option<AssistantId>,
    ) -> Result<Option<Uuid>, StoreError> {
        let Some(id) = id else {
            return Ok(None);
        };
        let mut lookup = scope::select::<assistant::Entity>(tenant)
            .select_only()
            .column(assistant::Column::Id)
            .filter(assistant::Column::Id.eq(id.as_uuid()));
        if self.is_postgres() {
            lookup = lookup.lock_shared();
        }
        Ok(lookup
            .into_tuple::<Uuid>()
            .one(txn)
            .await
            .context("checking a session's assistant")?)
    }
}

// --- conversions ----------------------------------------------------------------------------

fn ids_to_json(ids: &[CollectionId]) -> Result<String, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(CollectionId::as_uuid).collect();
    Ok(serde_json::to_string(&ids).context("serializing collection ids")?)
}

fn ids_from_json(text: &str) -> Result<Vec<CollectionId>, StoreError> {
    let ids: Vec<Uuid> = serde_json::from_str(text).context("stored collection ids")?;
    Ok(ids.into_iter().map(CollectionId::from_uuid).collect())
}

fn models_to_json(models: &[String]) -> Result<String, StoreError> {
    Ok(serde_json::to_string(models).context("serializing model names")?)
}

fn models_from_json(text: &str) -> Result<Vec<String>, StoreError> {
    Ok(serde_json::from_str(text).context("stored model names")?)
}

fn citations_to_json(citations: &[Citation]) -> Result<String, StoreError> {
    let values: Vec<Value> = citations
        .iter()
        .map(|c| {
            json!({
                "chunk_id": c.chunk_id.to_string(),
                "document_id": c.document_id.to_string(),
                "document_name": c.document_name,
                "page": c.page,
                "quote": c.quote,
                "score": c.score,
                "start": c.start,
                "end": c.end,
            })
        })
        .collect();
    Ok(serde_json::to_string(&values).context("serializing citations")?)
}

fn citation_from_json(v: &Value) -> anyhow::Result<Citation> {
    let field = |name: &str| {
        v.get(name)
            .ok_or_else(|| anyhow::anyhow!("stored citation without {name}"))
    };
    let text = |name: &str| -> anyhow::Result<String> {
        field(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("stored citation's {name} is not text"))
    };
    let id = |name: &str| -> anyhow::Result<Uuid> {
        Uuid::try_parse(&text(name)?)
            .map_err(|_| anyhow::anyhow!("stored citation's {name} is not a UUID"))
    };
    let number = |name: &str, v: &Value| -> anyhow::Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("stored citation's {name} is not a 32-bit count"))
    };
    let page = match field("page")? {
        Value::Null => None,
        p => Some(number("page", p)?),
    };
    let score = match field("score")? {
        Value::Null => f32::NAN,
        s => s
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("stored citation's score is not a number"))?
            as f32,
    };
    Ok(Citation {
        chunk_id: ChunkId::from_uuid(id("chunk_id")?),
        document_id: DocumentId::from_uuid(id("document_id")?),
        document_name: text("document_name")?,
        page,
        quote: text("quote")?,
        score,
        start: number("start", field("start")?)?,
        end: number("end", field("end")?)?,
    })
}

fn citations_from_json(text: &str) -> Result<Vec<Citation>, StoreError> {
    let values: Vec<Value> = serde_json::from_str(text).context("stored citations")?;
    Ok(values
        .iter()
        .map(citation_from_json)
        .collect::<anyhow::Result<_>>()?)
}

/// How a principal is keyed in `message_feedback`.
fn principal_key(p: Principal) -> String {
    match p {
        Principal::User(u) => format!("u:{u}"),
        Principal::ApiKey(k) => format!("k:{k}"),
    }
}

fn principal_from_key(key: &str) -> Result<Principal, StoreError> {
    let parsed = match key.split_once(':') {
        Some(("u", id)) => UserId::parse(id).ok().map(Principal::User),
        Some(("k", id)) => ApiKeyId::parse(id).ok().map(Principal::ApiKey),
        _ => None,
    };
    Ok(parsed.ok_or_else(|| anyhow::anyhow!("stored principal key {key:?}"))?)
}

/// A reservation as stored with a streaming answer.
fn reservation_to_json(r: &Reservation) -> String {
    json!({
        "id": r.id.to_string(),
        "tenant": r.scope.tenant.to_string(),
        "actor": r.scope.actor.map(principal_key),
        "model": r.scope.model,
        "kind": r.scope.kind.as_str(),
        "reference": r.scope.reference,
        "reserved": r.reserved,
        "request_id": r.request_id,
        "period": r.period,
        "at_micros": i64::try_from(r.at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX),
    })
    .to_string()
}

/// [`reservation_to_json`] read back.
fn reservation_from_json(text: &str) -> Result<Reservation, StoreError> {
    let v: Value = serde_json::from_str(text).context("a stored reservation is not JSON")?;
    let str_of = |k: &str| {
        v[k].as_str()
            .ok_or_else(|| anyhow::anyhow!("stored reservation without {k}"))
    };
    let at_micros = v["at_micros"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("stored reservation without at_micros"))?;
    Ok(Reservation {
        id: Uuid::parse_str(str_of("id")?).context("a stored reservation's id")?,
        scope: MeterScope {
            tenant: TenantId::parse(str_of("tenant")?)
                .map_err(|_| anyhow::anyhow!("a stored reservation's tenant"))?,
            actor: v["actor"].as_str().map(principal_from_key).transpose()?,
            model: str_of("model")?.to_owned(),
            kind: UsageKind::parse(str_of("kind")?)
                .ok_or_else(|| anyhow::anyhow!("a stored reservation's kind"))?,
            reference: str_of("reference")?.to_owned(),
        },
        reserved: v["reserved"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("stored reservation without reserved"))?,
        request_id: v["request_id"].as_str().map(str::to_owned),
        period: str_of("period")?.to_owned(),
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_micros) * 1_000)
            .context("a stored reservation's time")?,
    })
}

fn session_to_domain(m: chat_session::Model) -> Result<Session, StoreError> {
    let owner = match (m.owner_user_id, m.owner_api_key_id) {
        (Some(u), None) => Principal::User(UserId::from_uuid(u)),
        (None, Some(k)) => Principal::ApiKey(ApiKeyId::from_uuid(k)),
        _ => {
            return Err(
                anyhow::anyhow!("stored session {} has not exactly one owner", m.id).into(),
            );
        }
    };
    Ok(Session {
        id: ChatSessionId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        owner,
        title: m.title,
        collection_ids: ids_from_json(&m.collection_ids)?,
        model: m.model,
        system_prompt: m.system_prompt,
        assistant_id: m.assistant_id.map(AssistantId::from_uuid),
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn owner_columns(owner: Principal) -> (Option<Uuid>, Option<Uuid>) {
    match owner {
        Principal::User(u) => (Some(u.as_uuid()), None),
        Principal::ApiKey(k) => (None, Some(k.as_uuid())),
    }
}

fn message_to_domain(m: chat_message::Model) -> Result<Message, StoreError> {
    let usage = match (m.prompt_tokens, m.completion_tokens) {
        (None, None) => None,
        (Some(p), Some(c)) => Some(Usage {
            prompt_tokens: fit(p, "prompt_tokens")?,
            completion_tokens: fit(c, "completion_tokens")?,
        }),
        _ => {
            return Err(anyhow::anyhow!("stored message {} has half a usage", m.id).into());
        }
    };
    Ok(Message {
        id: MessageId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        session_id: ChatSessionId::from_uuid(m.session_id),
        role: MessageRole::parse(&m.role)
            .ok_or_else(|| anyhow::anyhow!("stored message role {:?}", m.role))?,
        content: m.content,
        citations: citations_from_json(&m.citations)?,
        usage,
        status: MessageStatus::parse(&m.status)
            .ok_or_else(|| anyhow::anyhow!("stored message status {:?}", m.status))?,
        model: m.model,
        error: m.error,
        created_at: m.created_at,
    })
}

fn message_row(m: &Message) -> Result<chat_message::ActiveModel, StoreError> {
    Ok(chat_message::ActiveModel {
        id: Set(m.id.as_uuid()),
        tenant_id: Set(m.tenant_id.as_uuid()),
        session_id: Set(m.session_id.as_uuid()),
        role: Set(m.role.as_str().to_owned()),
        content: Set(m.content.clone()),
        citations: Set(citations_to_json(&m.citations)?),
        prompt_tokens: Set(m.usage.map(|u| i64::from(u.prompt_tokens))),
        completion_tokens: Set(m.usage.map(|u| i64::from(u.completion_tokens))),
        status: Set(m.status.as_str().to_owned()),
        model: Set(m.model.clone()),
        created_at: Set(m.created_at),
        error: Set(m.error.clone()),
        lease_until: Set(None),
        reservation: Set(None),
    })
}

fn assistant_to_domain(m: assistant::Model) -> Result<Assistant, StoreError> {
    Ok(Assistant {
        id: AssistantId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        name: m.name,
        instructions: m.instructions,
        model: m.model,
        collection_ids: ids_from_json(&m.collection_ids)?,
        temperature: m.temperature,
        created_at: m.created_at,
        updated_at: m.updated_at,
        created_by: match (m.created_by_user_id, m.created_by_api_key_id) {
            (Some(u), None) => Some(Principal::User(UserId::from_uuid(u))),
            (None, Some(k)) => Some(Principal::ApiKey(ApiKeyId::from_uuid(k))),
            _ => None,
        },
    })
}

fn feedback_to_domain(m: message_feedback::Model) -> Result<Feedback, StoreError> {
    Ok(Feedback {
        tenant_id: TenantId::from_uuid(m.tenant_id),
        message_id: MessageId::from_uuid(m.message_id),
        principal: principal_from_key(&m.principal_key)?,
        rating: Rating::parse(&m.rating)
            .ok_or_else(|| anyhow::anyhow!("stored rating {:?}", m.rating))?,
        comment: m.comment,
        created_at: m.created_at,
    })
}

// --- the port -------------------------------------------------------------------------------

#[async_trait]
impl ChatStore for SqlChatStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        crate::rls::tenant(session.tenant_id, async {
            let (owner_user_id, owner_api_key_id) = owner_columns(session.owner);
            let collection_ids = ids_to_json(&session.collection_ids)?;
            let txn = self
                .store
                .begin_write()
                .await
                .context("starting a chat session insert")?;
            let assistant_id = self
                .own_assistant(&txn, session.tenant_id, session.assistant_id)
                .await?;
            let row = chat_session::ActiveModel {
                id: Set(session.id.as_uuid()),
                tenant_id: Set(session.tenant_id.as_uuid()),
                owner_user_id: Set(owner_user_id),
                owner_api_key_id: Set(owner_api_key_id),
                title: Set(session.title.clone()),
                collection_ids: Set(collection_ids),
                model: Set(session.model.clone()),
                system_prompt: Set(session.system_prompt.clone()),
                assistant_id: Set(assistant_id),
                created_at: Set(session.created_at),
                updated_at: Set(session.updated_at),
            };
            execute_timed(&txn, &chat_session::Entity::insert(row))
                .await
                .context("storing a chat session")?;
            txn.commit()
                .await
                .context("committing a chat session insert")?;
            Ok(())
        })
        .await
    }

    async fn find_session(
        &self,
        tenant: TenantId,
        id: ChatSessionId,
    ) -> Result<Option<Session>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<chat_session::Entity>(tenant)
                .filter(chat_session::Column::Id.eq(id.as_uuid()))
                .one(&self.store.db)
                .await
                .context("reading a chat session")?
                .map(session_to_domain)
                .transpose()
        })
        .await
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        owner: Principal,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<chat_session::Entity>(tenant)
                .order_by_desc(chat_session::Column::Id);
            query = match owner {
                Principal::User(u) => {
                    query.filter(chat_session::Column::OwnerUserId.eq(u.as_uuid()))
                }
                Principal::ApiKey(k) => {
                    query.filter(chat_session::Column::OwnerApiKeyId.eq(k.as_uuid()))
                }
            };
            if let Some(after) = page.after_uuid()? {
                query = query.filter(chat_session::Column::Id.lt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.store.db)
                .await
                .context("listing chat sessions")?;
            let sessions = rows
                .into_iter()
                .map(session_to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(sessions, page, |s| s.id.to_string()))
        })
        .await
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StoreError> {
        crate::rls::tenant(session.tenant_id, async {
            let collection_ids = ids_to_json(&session.collection_ids)?;
            let txn = self
                .store
                .begin_write()
                .await
                .context("starting a chat session update")?;
            let assistant_id = self
                .own_assistant(&txn, session.tenant_id, session.assistant_id)
                .await?;
            let changed = scope::update::<chat_session::Entity>(session.tenant_id)
                .col_expr(
                    chat_session::Column::Title,
                    Expr::value(session.title.clone()),
                )
                .col_expr(
                    chat_session::Column::CollectionIds,
                    Expr::value(collection_ids),
                )
                .col_expr(
                    chat_session::Column::Model,
                    Expr::value(session.model.clone()),
                )
                .col_expr(
                    chat_session::Column::SystemPrompt,
                    Expr::value(session.system_prompt.clone()),
                )
                .col_expr(chat_session::Column::AssistantId, Expr::value(assistant_id))
                .col_expr(
                    chat_session::Column::UpdatedAt,
                    Expr::value(at_value(txn.get_database_backend(), session.updated_at)),
                )
                .filter(chat_session::Column::Id.eq(session.id.as_uuid()))
                .exec(&txn)
                .await
                .context("updating a chat session")?
                .rows_affected;
            txn.commit()
                .await
                .context("committing a chat session update")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn delete_history_before(
        &self,
        tenant: TenantId,
        before: OffsetDateTime,
    ) -> Result<(u64, u64), StoreError> {
        crate::rls::tenant(tenant, async {
            let db = &self.store.db;
            let cutoff = at_value(db.get_database_backend(), before);
            // Feedback goes with its message by foreign-key cascade.
            let messages = scope::delete::<chat_message::Entity>(tenant)
                .filter(chat_message::Column::CreatedAt.lt(cutoff.clone()))
                .filter(chat_message::Column::Status.ne(chat::MessageStatus::Streaming.as_str()))
                .exec(db)
                .await
                .context("deleting old chat messages")?
                .rows_affected;
            let sessions = scope::delete::<chat_session::Entity>(tenant)
                .filter(chat_session::Column::UpdatedAt.lt(cutoff))
                .filter(
                    chat_session::Column::Id.not_in_subquery(
                        sea_orm::sea_query::Query::select()
                            .column(chat_message::Column::SessionId)
                            .from(chat_message::Entity)
                            .and_where(chat_message::Column::TenantId.eq(tenant.as_uuid()))
                            .to_owned(),
                    ),
                )
                .exec(db)
                .await
                .context("deleting idle chat sessions")?
                .rows_affected;
            Ok((messages, sessions))
        })
        .await
    }

    async fn delete_session(
        &self,
        tenant: TenantId,
        id: ChatSessionId,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            // Its messages and their feedback go by foreign-key cascade.
            let deleted = scope::delete::<chat_session::Entity>(tenant)
                .filter(chat_session::Column::Id.eq(id.as_uuid()))
                .exec(&self.store.db)
                .await
                .context("deleting a chat session")?
                .rows_affected;
            Ok(deleted > 0)
        })
        .await
    }

    async fn append_message(&self, message: &Message) -> Result<bool, StoreError> {
        crate::rls::tenant(message.tenant_id, async {
            let row = message_row(message)?;
            self.insert_messages(&[message], vec![row]).await
        })
        .await
    }

    async fn start_answer(
        &self,
        question: Option<&Message>,
        message: &Message,
        reservation: Option<&Reservation>,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(message.tenant_id, async {
            if question.is_some_and(|q| {
                q.tenant_id != message.tenant_id || q.session_id != message.session_id
            }) {
                return Err(StoreError::Unknown(anyhow::anyhow!(
                    "a question and its answer must be of one session"
                )));
            }
            let mut row = message_row(message)?;
            row.lease_until = Set(Some(lease_until));
            row.reservation = Set(reservation.map(reservation_to_json));
            let mut messages = Vec::with_capacity(2);
            let mut rows = Vec::with_capacity(2);
            if let Some(q) = question {
                messages.push(q);
                rows.push(message_row(q)?);
            }
            messages.push(message);
            rows.push(row);
            self.insert_messages(&messages, rows).await
        })
        .await
    }

    async fn checkpoint_answer(
        &self,
        tenant: TenantId,
        id: MessageId,
        content: &str,
        usage: Usage,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            let backend = self.store.db.get_database_backend();
            let updated = scope::update::<chat_message::Entity>(tenant)
                .col_expr(chat_message::Column::Content, Expr::value(content))
                .col_expr(
                    chat_message::Column::PromptTokens,
                    Expr::value(i64::from(usage.prompt_tokens)),
                )
                .col_expr(
                    chat_message::Column::CompletionTokens,
                    Expr::value(i64::from(usage.completion_tokens)),
                )
                .col_expr(
                    chat_message::Column::LeaseUntil,
                    Expr::value(at_value(backend, lease_until)),
                )
                .filter(chat_message::Column::Id.eq(id.as_uuid()))
                .filter(chat_message::Column::Status.eq(MessageStatus::Streaming.as_str()))
                .exec(&self.store.db)
                .await
                .context("checkpointing an answer")?
                .rows_affected;
            Ok(updated > 0)
        })
        .await
    }

    async fn finish_answer(&self, message: &Message) -> Result<bool, StoreError> {
        crate::rls::tenant(message.tenant_id, async {
            let updated = scope::update::<chat_message::Entity>(message.tenant_id)
                .col_expr(
                    chat_message::Column::Content,
                    Expr::value(message.content.clone()),
                )
                .col_expr(
                    chat_message::Column::Citations,
                    Expr::value(citations_to_json(&message.citations)?),
                )
                .col_expr(
                    chat_message::Column::PromptTokens,
                    Expr::value(message.usage.map(|u| i64::from(u.prompt_tokens))),
                )
                .col_expr(
                    chat_message::Column::CompletionTokens,
                    Expr::value(message.usage.map(|u| i64::from(u.completion_tokens))),
                )
                .col_expr(
                    chat_message::Column::Status,
                    Expr::value(message.status.as_str()),
                )
                .col_expr(
                    chat_message::Column::Error,
                    Expr::value(message.error.clone()),
                )
                .col_expr(chat_message::Column::LeaseUntil, Expr::value(null_time()))
                .col_expr(
                    chat_message::Column::Reservation,
                    Expr::value(Option::<String>::None),
                )
                .filter(chat_message::Column::Id.eq(message.id.as_uuid()))
                .exec(&self.store.db)
                .await
                .context("finishing an answer")?
                .rows_affected;
            Ok(updated > 0)
        })
        .await
    }

    async fn abandoned_answers(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<AbandonedAnswer>, StoreError> {
        crate::rls::platform(async {
            let backend = self.store.db.get_database_backend();
            // The one scan across tenants (the sweeper's); each row names its tenant.
            let rows = chat_message::Entity::find()
                .filter(chat_message::Column::LeaseUntil.lt(at_value(backend, now)))
                .filter(chat_message::Column::Status.eq(MessageStatus::Streaming.as_str()))
                .order_by_asc(chat_message::Column::LeaseUntil)
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .all(&self.store.db)
                .await
                .context("listing abandoned answers")?;
            rows.into_iter()
                .map(|mut row| {
                    let reservation = row
                        .reservation
                        .take()
                        .map(|r| reservation_from_json(&r))
                        .transpose()?;
                    Ok(AbandonedAnswer {
                        message: message_to_domain(row)?,
                        reservation,
                    })
                })
                .collect()
        })
        .await
    }

    async fn close_abandoned(
        &self,
        tenant: TenantId,
        id: MessageId,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            let backend = self.store.db.get_database_backend();
            let updated = scope::update::<chat_message::Entity>(tenant)
                .col_expr(
                    chat_message::Column::Status,
                    Expr::value(MessageStatus::Incomplete.as_str()),
                )
                .col_expr(chat_message::Column::Error, Expr::value(error))
                .col_expr(chat_message::Column::LeaseUntil, Expr::value(null_time()))
                .col_expr(
                    chat_message::Column::Reservation,
                    Expr::value(Option::<String>::None),
                )
                .filter(chat_message::Column::Id.eq(id.as_uuid()))
                .filter(chat_message::Column::Status.eq(MessageStatus::Streaming.as_str()))
                .filter(chat_message::Column::LeaseUntil.lt(at_value(backend, now)))
                .exec(&self.store.db)
                .await
                .context("closing an abandoned answer")?
                .rows_affected;
            Ok(updated > 0)
        })
        .await
    }

    async fn find_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<chat_message::Entity>(tenant)
                .filter(chat_message::Column::Id.eq(id.as_uuid()))
                .one(&self.store.db)
                .await
                .context("reading a message")?
                .map(message_to_domain)
                .transpose()
        })
        .await
    }

    async fn list_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<chat_message::Entity>(tenant)
                .filter(chat_message::Column::SessionId.eq(session.as_uuid()))
                .order_by_asc(chat_message::Column::Id);
            if let Some(after) = page.after_uuid()? {
                query = query.filter(chat_message::Column::Id.gt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.store.db)
                .await
                .context("listing messages")?;
            let messages = rows
                .into_iter()
                .map(message_to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(messages, page, |m| m.id.to_string()))
        })
        .await
    }

    async fn recent_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        crate::rls::tenant(tenant, async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let rows = scope::select::<chat_message::Entity>(tenant)
                .filter(chat_message::Column::SessionId.eq(session.as_uuid()))
                .order_by_desc(chat_message::Column::Id)
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .all(&self.store.db)
                .await
                .context("reading recent messages")?;
            // Newest first from the database: oldest first for the caller.
            rows.into_iter().rev().map(message_to_domain).collect()
        })
        .await
    }

    async fn create_assistant(&self, a: &Assistant) -> Result<(), StoreError> {
        crate::rls::tenant(a.tenant_id, async {
            let row = assistant::ActiveModel {
                id: Set(a.id.as_uuid()),
                tenant_id: Set(a.tenant_id.as_uuid()),
                name: Set(a.name.clone()),
                instructions: Set(a.instructions.clone()),
                model: Set(a.model.clone()),
                collection_ids: Set(ids_to_json(&a.collection_ids)?),
                temperature: Set(a.temperature),
                created_at: Set(a.created_at),
                updated_at: Set(a.updated_at),
                created_by_user_id: Set(a.created_by.and_then(|p| owner_columns(p).0)),
                created_by_api_key_id: Set(a.created_by.and_then(|p| owner_columns(p).1)),
            };
            execute_timed(&self.store.db, &assistant::Entity::insert(row))
                .await
                .context("storing an assistant")?;
            Ok(())
        })
        .await
    }

    async fn find_assistant(
        &self,
        tenant: TenantId,
        id: AssistantId,
    ) -> Result<Option<Assistant>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<assistant::Entity>(tenant)
                .filter(assistant::Column::Id.eq(id.as_uuid()))
                .one(&self.store.db)
                .await
                .context("reading an assistant")?
                .map(assistant_to_domain)
                .transpose()
        })
        .await
    }

    async fn list_assistants(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Assistant>, StoreError> {
        crate::rls::tenant(tenant, async {
            let mut query =
                scope::select::<assistant::Entity>(tenant).order_by_asc(assistant::Column::Id);
            if let Some(after) = page.after_uuid()? {
                query = query.filter(assistant::Column::Id.gt(after));
            }
            let rows = query
                .limit(u64::from(page.limit()) + 1)
                .all(&self.store.db)
                .await
                .context("listing assistants")?;
            let assistants = rows
                .into_iter()
                .map(assistant_to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(assistants, page, |a| a.id.to_string()))
        })
        .await
    }

    async fn update_assistant(&self, a: &Assistant) -> Result<bool, StoreError> {
        crate::rls::tenant(a.tenant_id, async {
            let changed = scope::update::<assistant::Entity>(a.tenant_id)
                .col_expr(assistant::Column::Name, Expr::value(a.name.clone()))
                .col_expr(
                    assistant::Column::Instructions,
                    Expr::value(a.instructions.clone()),
                )
                .col_expr(assistant::Column::Model, Expr::value(a.model.clone()))
                .col_expr(
                    assistant::Column::CollectionIds,
                    Expr::value(ids_to_json(&a.collection_ids)?),
                )
                .col_expr(assistant::Column::Temperature, Expr::value(a.temperature))
                .col_expr(
                    assistant::Column::UpdatedAt,
                    Expr::value(at_value(self.store.db.get_database_backend(), a.updated_at)),
                )
                .filter(assistant::Column::Id.eq(a.id.as_uuid()))
                .exec(&self.store.db)
                .await
                .context("updating an assistant")?
                .rows_affected;
            Ok(changed > 0)
        })
        .await
    }

    async fn delete_assistant(
        &self,
        tenant: TenantId,
        id: AssistantId,
    ) -> Result<bool, StoreError> {
        crate::rls::tenant(tenant, async {
            // Its sessions keep going without it: ON DELETE SET NULL.
            let deleted = scope::delete::<assistant::Entity>(tenant)
                .filter(assistant::Column::Id.eq(id.as_uuid()))
                .exec(&self.store.db)
                .await
                .context("deleting an assistant")?
                .rows_affected;
            Ok(deleted > 0)
        })
        .await
    }

    async fn put_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        crate::rls::tenant(feedback.tenant_id, async {
            let tenant = feedback.tenant_id;
            let txn = self
                .store
                .begin_write()
                .await
                .context("starting a feedback upsert")?;
            let mut lookup = scope::select::<chat_message::Entity>(tenant)
                .select_only()
                .column(chat_message::Column::Id)
                .filter(chat_message::Column::Id.eq(feedback.message_id.as_uuid()));
            if self.is_postgres() {
                // Held until commit: the message cannot be deleted under the rating.
                lookup = lookup.lock_shared();
            }
            let found: Option<Uuid> = lookup
                .into_tuple()
                .one(&txn)
                .await
                .context("checking a rated message")?;
            if found.is_none() {
                txn.rollback().await.context("ending a feedback upsert")?;
                return Ok(());
            }
            let upsert = message_feedback::Entity::insert(message_feedback::ActiveModel {
                tenant_id: Set(tenant.as_uuid()),
                message_id: Set(feedback.message_id.as_uuid()),
                principal_key: Set(principal_key(feedback.principal)),
                rating: Set(feedback.rating.as_str().to_owned()),
                comment: Set(feedback.comment.clone()),
                created_at: Set(feedback.created_at),
            })
            .on_conflict(
                OnConflict::columns([
                    message_feedback::Column::MessageId,
                    message_feedback::Column::PrincipalKey,
                ])
                .update_columns([
                    message_feedback::Column::Rating,
                    message_feedback::Column::Comment,
                    message_feedback::Column::CreatedAt,
                ])
                .to_owned(),
            );
            execute_timed(&txn, &upsert)
                .await
                .context("storing feedback")?;
            txn.commit().await.context("committing a feedback upsert")?;
            Ok(())
        })
        .await
    }

    async fn allowed_models(&self, tenant: TenantId) -> Result<Option<Vec<String>>, StoreError> {
        crate::rls::tenant(tenant, async {
            scope::select::<tenant_model::Entity>(tenant)
                .one(&self.store.db)
                .await
                .context("reading a model whitelist")?
                .map(|m| models_from_json(&m.models))
                .transpose()
        })
        .await
    }

    async fn set_allowed_models(
        &self,
        tenant: TenantId,
        models: Option<&[String]>,
    ) -> Result<(), StoreError> {
        crate::rls::tenant(tenant, async {
            let Some(models) = models else {
                scope::delete::<tenant_model::Entity>(tenant)
                    .exec(&self.store.db)
                    .await
                    .context("clearing a model whitelist")?;
                return Ok(());
            };
            let upsert = tenant_model::Entity::insert(tenant_model::ActiveModel {
                tenant_id: Set(tenant.as_uuid()),
                models: Set(models_to_json(models)?),
                updated_at: Set(self.store.now()),
            })
            .on_conflict(
                OnConflict::column(tenant_model::Column::TenantId)
                    .update_columns([
                        tenant_model::Column::Models,
                        tenant_model::Column::UpdatedAt,
                    ])
                    .to_owned(),
            );
            execute_timed(&self.store.db, &upsert)
                .await
                .context("storing a model whitelist")?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_keys_round_trip() {
        for p in [
            Principal::User(UserId::new()),
            Principal::ApiKey(ApiKeyId::new()),
        ] {
            assert_eq!(principal_from_key(&principal_key(p)).ok(), Some(p));
        }
        for bad in ["", "u:", "x:0190f3a2-0000-7000-8000-000000000000", "u:nope"] {
            assert!(principal_from_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn citations_round_trip_and_refuse_malformed_rows() {
        let c = Citation {
            chunk_id: ChunkId::new(),
            document_id: DocumentId::new(),
            document_name: "قرارداد.pdf".to_owned(),
            page: Some(3),
            quote: "«مدت اجاره»".to_owned(),
            score: 0.1,
            start: 5,
            end: 17,
        };
        let none = Citation {
            page: None,
            score: 1.0e-7,
            ..c.clone()
        };
        let text = citations_to_json(&[c.clone(), none.clone()]).expect("serialize");
        assert_eq!(citations_from_json(&text).ok(), Some(vec![c, none]));
        for bad in [
            "{}",
            "[{}]",
            r#"[{"chunk_id":"x","document_id":"y","document_name":"n","page":null,"quote":"q","score":1,"start":0,"end":1}]"#,
        ] {
            assert!(citations_from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_non_finite_score_reads_back_as_nan() {
        let c = Citation {
            chunk_id: ChunkId::new(),
            document_id: DocumentId::new(),
            document_name: "a".to_owned(),
            page: None,
            quote: "q".to_owned(),
            score: f32::NAN,
            start: 0,
            end: 1,
        };
        let text = citations_to_json(&[c]).expect("serialize");
        let back = citations_from_json(&text).expect("parse");
        assert!(back.first().is_some_and(|c| c.score.is_nan()));
    }
}
