//! [`ChatStore`] in memory: sessions, messages, assistants, feedback and model whitelists in
//! maps under one lock, so every method is one critical section (what the SQL adapter does in
//! a transaction is atomic here too).
//!
//! The semantics are those of `store-sql` (the reference), checked by the same contract suite
//! (`testkit::contract::chat`): every method is scoped to its tenant; sessions list newest
//! first and assistants and messages oldest first, by id, with the id as cursor; a session
//! names an assistant only of its own tenant that exists when it is written (any other is
//! stored as none); appending a message needs its session and moves the session's
//! `updated_at`; deleting a session takes its messages and their feedback; deleting an
//! assistant detaches its sessions; a new rating by the same principal replaces the earlier
//! one, and a rating of a message the tenant does not have is not stored. Times are kept as
//! SQL keeps them: UTC, at microsecond precision. Storing an id that is already there fails,
//! as a primary key does.
//!
//! A streaming answer's lease and reservation are kept beside its message until it ends.
//!
//! Deleting an organization elsewhere does not reach this store by itself: call
//! [`InMemoryChatStore::remove_tenant`] (what the SQL foreign keys do).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chat::{
    AbandonedAnswer, Assistant, AssistantId, ChatSessionId, ChatStore, Feedback, Message,
    MessageId, MessageStatus, Session, StoreError, Usage,
};
use kernel::{MeterScope, Page, PageRequest, Principal, Reservation, TenantId};
use time::{OffsetDateTime, UtcOffset};

#[derive(Debug, Default)]
struct Tables {
    sessions: BTreeMap<ChatSessionId, Session>,
    messages: BTreeMap<MessageId, Message>,
    /// Streaming answers: their lease and what they settle.
    runs: BTreeMap<MessageId, (OffsetDateTime, Option<Reservation>)>,
    assistants: BTreeMap<AssistantId, Assistant>,
    /// Keyed by message and principal: one rating each.
    feedback: BTreeMap<(MessageId, PrincipalKey), Feedback>,
    models: BTreeMap<TenantId, Vec<String>>,
}

/// A principal as a map key (`Principal` itself has no order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PrincipalKey {
    ApiKey(kernel::ApiKeyId),
    User(kernel::UserId),
}

impl From<Principal> for PrincipalKey {
    fn from(p: Principal) -> Self {
        match p {
            Principal::User(u) => Self::User(u),
            Principal::ApiKey(k) => Self::ApiKey(k),
        }
    }
}

impl Tables {
    fn session(&self, tenant: TenantId, id: ChatSessionId) -> Option<&Session> {
        self.sessions.get(&id).filter(|s| s.tenant_id == tenant)
    }

    fn message(&self, tenant: TenantId, id: MessageId) -> Option<&Message> {
        self.messages.get(&id).filter(|m| m.tenant_id == tenant)
    }

    fn assistant(&self, tenant: TenantId, id: AssistantId) -> Option<&Assistant> {
        self.assistants.get(&id).filter(|a| a.tenant_id == tenant)
    }

    /// `session` as stored: its times in UTC microseconds, and its assistant only when the
    /// tenant has it.
    fn stored_session(&self, session: &Session) -> Session {
        let mut s = session.clone();
        s.assistant_id = s
            .assistant_id
            .filter(|a| self.assistant(s.tenant_id, *a).is_some());
        s.created_at = utc_micros(s.created_at);
        s.updated_at = utc_micros(s.updated_at);
        s
    }

    /// The session's messages, oldest first.
    fn messages_of(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
    ) -> impl DoubleEndedIterator<Item = &Message> {
        self.messages
            .values()
            .filter(move |m| m.tenant_id == tenant && m.session_id == session)
    }
}

/// The chat store of every tenant, in maps under one lock.
#[derive(Debug, Default)]
pub struct InMemoryChatStore {
    tables: Mutex<Tables>,
}

impl InMemoryChatStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("in-memory chat: lock poisoned")))
    }

    /// Removes everything of `tenant`: what deleting an organization does on SQL through its
    /// cascading foreign keys.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn remove_tenant(&self, tenant: TenantId) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        t.sessions.retain(|_, s| s.tenant_id != tenant);
        t.messages.retain(|_, m| m.tenant_id != tenant);
        let messages = std::mem::take(&mut t.messages);
        t.runs.retain(|id, _| messages.contains_key(id));
        t.messages = messages;
        t.assistants.retain(|_, a| a.tenant_id != tenant);
        t.feedback.retain(|_, f| f.tenant_id != tenant);
        t.models.remove(&tenant);
        Ok(())
    }

    /// Every rating of the tenant's message `message`, API keys' first, then users', each by
    /// id. Empty when the tenant has no such message.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn feedback_on(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Vec<Feedback>, StoreError> {
        let t = self.lock()?;
        Ok(t.feedback
            .iter()
            .filter(|((m, _), f)| *m == message && f.tenant_id == tenant)
            .map(|(_, f)| f.clone())
            .collect())
    }
}

/// `t` in UTC, truncated to microseconds: as SQL keeps times.
fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    kernel::clock::truncate_to_micros(t.to_offset(UtcOffset::UTC))
}

fn duplicate(what: &str) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("in-memory chat: duplicate {what} id"))
}

#[async_trait]
impl ChatStore for InMemoryChatStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if t.sessions.contains_key(&session.id) {
            return Err(duplicate("session"));
        }
        let stored = t.stored_session(session);
        t.sessions.insert(stored.id, stored);
        Ok(())
    }

    async fn find_session(
        &self,
        tenant: TenantId,
        id: ChatSessionId,
    ) -> Result<Option<Session>, StoreError> {
        Ok(self.lock()?.session(tenant, id).cloned())
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        owner: Principal,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let end = match page.after_uuid()? {
            Some(id) => std::ops::Bound::Excluded(ChatSessionId::from_uuid(id)),
            None => std::ops::Bound::Unbounded,
        };
        let t = self.lock()?;
        let items: Vec<Session> = t
            .sessions
            .range((std::ops::Bound::Unbounded, end))
            .rev()
            .map(|(_, s)| s)
            .filter(|s| s.tenant_id == tenant && s.owner == owner)
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page, |s| s.id.to_string()))
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let stored = t.stored_session(session);
        let Some(s) = t
            .sessions
            .get_mut(&session.id)
            .filter(|s| s.tenant_id == session.tenant_id)
        else {
            return Ok(false);
        };
        s.title = stored.title;
        s.collection_ids = stored.collection_ids;
        s.model = stored.model;
        s.system_prompt = stored.system_prompt;
        s.assistant_id = stored.assistant_id;
        s.updated_at = stored.updated_at;
        Ok(true)
    }

    async fn delete_history_before(
        &self,
        tenant: TenantId,
        before: time::OffsetDateTime,
    ) -> Result<(u64, u64), StoreError> {
        let mut t = self.lock()?;
        let gone: Vec<MessageId> = t
            .messages
            .values()
            .filter(|m| {
                m.tenant_id == tenant
                    && m.created_at < before
                    && m.status != chat::MessageStatus::Streaming
            })
            .map(|m| m.id)
            .collect();
        for m in &gone {
            t.messages.remove(m);
            t.runs.remove(m);
        }
        t.feedback.retain(|(m, _), _| !gone.contains(m));
        let idle: Vec<ChatSessionId> = t
            .sessions
            .values()
            .filter(|s| s.tenant_id == tenant && s.updated_at < before)
            .map(|s| s.id)
            .collect();
        let mut sessions = 0;
        for id in idle {
            if t.messages_of(tenant, id).next().is_none() {
                t.sessions.remove(&id);
                sessions += 1;
            }
        }
        Ok((gone.len() as u64, sessions))
    }

    async fn delete_session(
        &self,
        tenant: TenantId,
        id: ChatSessionId,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        if t.session(tenant, id).is_none() {
            return Ok(false);
        }
        t.sessions.remove(&id);
        let gone: Vec<MessageId> = t.messages_of(tenant, id).map(|m| m.id).collect();
        for m in &gone {
            t.messages.remove(m);
            t.runs.remove(m);
        }
        t.feedback.retain(|(m, _), _| !gone.contains(m));
        Ok(true)
    }

    async fn append_message(&self, message: &Message) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        append(&mut t, &[message])
    }

    async fn start_answer(
        &self,
        question: Option<&Message>,
        message: &Message,
        reservation: Option<&Reservation>,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let messages: Vec<&Message> = question.into_iter().chain([message]).collect();
        if !append(&mut t, &messages)? {
            return Ok(false);
        }
        t.runs.insert(
            message.id,
            (utc_micros(lease_until), reservation.map(copy_reservation)),
        );
        Ok(true)
    }

    async fn checkpoint_answer(
        &self,
        tenant: TenantId,
        id: MessageId,
        content: &str,
        usage: Usage,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let Some(m) = t
            .messages
            .get_mut(&id)
            .filter(|m| m.tenant_id == tenant && m.status == MessageStatus::Streaming)
        else {
            return Ok(false);
        };
        content.clone_into(&mut m.content);
        m.usage = Some(usage);
        if let Some(run) = t.runs.get_mut(&id) {
            run.0 = utc_micros(lease_until);
        }
        Ok(true)
    }

    async fn finish_answer(&self, message: &Message) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let Some(m) = t
            .messages
            .get_mut(&message.id)
            .filter(|m| m.tenant_id == message.tenant_id)
        else {
            return Ok(false);
        };
        m.content.clone_from(&message.content);
        m.citations.clone_from(&message.citations);
        m.usage = message.usage;
        m.status = message.status;
        m.error.clone_from(&message.error);
        t.runs.remove(&message.id);
        Ok(true)
    }

    async fn abandoned_answers(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<AbandonedAnswer>, StoreError> {
        let t = self.lock()?;
        let mut expired: Vec<_> = t
            .runs
            .iter()
            .filter(|(_, (until, _))| *until < now)
            .filter_map(|(id, (until, r))| {
                let m = t.messages.get(id)?;
                (m.status == MessageStatus::Streaming).then_some((*until, m, r))
            })
            .collect();
        expired.sort_by_key(|(until, m, _)| (*until, m.id));
        Ok(expired
            .into_iter()
            .take(limit)
            .map(|(_, m, r)| AbandonedAnswer {
                message: m.clone(),
                reservation: r.as_ref().map(copy_reservation),
            })
            .collect())
    }

    async fn close_abandoned(
        &self,
        tenant: TenantId,
        id: MessageId,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let expired = t.runs.get(&id).is_some_and(|(until, _)| *until < now);
        let Some(m) = t
            .messages
            .get_mut(&id)
            .filter(|m| m.tenant_id == tenant && m.status == MessageStatus::Streaming && expired)
        else {
            return Ok(false);
        };
        m.status = MessageStatus::Incomplete;
        m.error = Some(error.to_owned());
        t.runs.remove(&id);
        Ok(true)
    }

    async fn find_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        Ok(self.lock()?.message(tenant, id).cloned())
    }

    async fn list_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let after = page.after_uuid()?.map(MessageId::from_uuid);
        let t = self.lock()?;
        let items: Vec<Message> = t
            .messages_of(tenant, session)
            .filter(|m| after.is_none_or(|a| m.id > a))
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page, |m| m.id.to_string()))
    }

    async fn recent_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let t = self.lock()?;
        let mut items: Vec<Message> = t
            .messages_of(tenant, session)
            .rev()
            .take(limit)
            .cloned()
            .collect();
        items.reverse();
        Ok(items)
    }

    async fn create_assistant(&self, assistant: &Assistant) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if t.assistants.contains_key(&assistant.id) {
            return Err(duplicate("assistant"));
        }
        let mut stored = assistant.clone();
        stored.created_at = utc_micros(stored.created_at);
        stored.updated_at = utc_micros(stored.updated_at);
        t.assistants.insert(stored.id, stored);
        Ok(())
    }

    async fn find_assistant(
        &self,
        tenant: TenantId,
        id: AssistantId,
    ) -> Result<Option<Assistant>, StoreError> {
        Ok(self.lock()?.assistant(tenant, id).cloned())
    }

    async fn list_assistants(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Assistant>, StoreError> {
        let start = match page.after_uuid()? {
            Some(id) => std::ops::Bound::Excluded(AssistantId::from_uuid(id)),
            None => std::ops::Bound::Unbounded,
        };
        let t = self.lock()?;
        let items: Vec<Assistant> = t
            .assistants
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, a)| a)
            .filter(|a| a.tenant_id == tenant)
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page, |a| a.id.to_string()))
    }

    async fn update_assistant(&self, assistant: &Assistant) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        let Some(a) = t
            .assistants
            .get_mut(&assistant.id)
            .filter(|a| a.tenant_id == assistant.tenant_id)
        else {
            return Ok(false);
        };
        a.name.clone_from(&assistant.name);
        a.instructions.clone_from(&assistant.instructions);
        a.model.clone_from(&assistant.model);
        a.collection_ids.clone_from(&assistant.collection_ids);
        a.temperature = assistant.temperature;
        a.updated_at = utc_micros(assistant.updated_at);
        Ok(true)
    }

    async fn delete_assistant(
        &self,
        tenant: TenantId,
        id: AssistantId,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock()?;
        if t.assistant(tenant, id).is_none() {
            return Ok(false);
        }
        t.assistants.remove(&id);
        for s in t.sessions.values_mut() {
            if s.assistant_id == Some(id) {
                s.assistant_id = None;
            }
        }
        Ok(true)
    }

    async fn put_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if t.message(feedback.tenant_id, feedback.message_id).is_none() {
            return Ok(());
        }
        let mut stored = feedback.clone();
        stored.created_at = utc_micros(stored.created_at);
        t.feedback
            .insert((feedback.message_id, feedback.principal.into()), stored);
        Ok(())
    }

    async fn allowed_models(&self, tenant: TenantId) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self.lock()?.models.get(&tenant).cloned())
    }

    async fn set_allowed_models(
        &self,
        tenant: TenantId,
        models: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        match models {
            Some(models) => {
                t.models.insert(tenant, models.to_vec());
            }
            None => {
                t.models.remove(&tenant);
            }
        }
        Ok(())
    }
}

/// A stored copy of a reservation (what the SQL store reads back from its JSON).
fn copy_reservation(r: &Reservation) -> Reservation {
    Reservation {
        id: r.id,
        scope: MeterScope {
            tenant: r.scope.tenant,
            actor: r.scope.actor,
            model: r.scope.model.clone(),
            kind: r.scope.kind,
            reference: r.scope.reference.clone(),
        },
        reserved: r.reserved,
        request_id: r.request_id.clone(),
        period: r.period.clone(),
        at: r.at,
    }
}

/// Appends `messages` (of one session, in order) and moves the session's `updated_at` to the
/// last one's `created_at`: all of them, or none (`false`) when the session is gone.
fn append(t: &mut Tables, messages: &[&Message]) -> Result<bool, StoreError> {
    if messages.iter().any(|m| t.messages.contains_key(&m.id)) {
        return Err(duplicate("message"));
    }
    let in_session = |m: &&Message| {
        t.sessions
            .get(&m.session_id)
            .is_some_and(|s| s.tenant_id == m.tenant_id)
    };
    if !messages.iter().all(in_session) {
        return Ok(false);
    }
    for m in messages {
        if let Some(session) = t.sessions.get_mut(&m.session_id) {
            session.updated_at = utc_micros(m.created_at);
        }
        let mut stored = (*m).clone();
        stored.created_at = utc_micros(m.created_at);
        t.messages.insert(stored.id, stored);
    }
    Ok(true)
}
