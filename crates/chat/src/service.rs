//! The chat use cases: sessions, messages (streamed through [`crate::stream`]), assistants,
//! feedback, the model whitelist and OpenAI-compatible completions. The AI tasks are in
//! [`crate::tasks`].

use std::sync::Arc;
use std::time::Duration;

use documents::CollectionId;
use kernel::{
    Clock, FieldError, InvalidInput, Meter, MeterError, MeterScope, Page, PageRequest,
    TenantContext, TenantId, UsageKind,
};

use crate::call::{Answer, CallEvent, ModelCall};
use crate::metered::Held;
use crate::model::{
    Assistant, AssistantFields, AssistantId, ChatRequest, ChatSessionId, Feedback, Locale,
    MAX_COMMENT_CHARS, Message, MessageId, MessageRole, MessageStatus, PromptMessage, PromptRole,
    Rating, Session, SessionFields, Source, Task, validate_content,
};
use crate::ports::{ChatModel, ChatStore, Knowledge, KnowledgeError, StoreError};
use crate::prompt::{self, PromptInput};
use crate::stream::{self, AnswerError, Run, Runs, StreamEvent, Subscription};

/// Failures of the chat use cases.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No such session, message, assistant, collection or document for this caller.
    #[error("not found")]
    NotFound,
    /// The model is not on the organization's whitelist.
    #[error("the model {model:?} is not available to this organization")]
    UnknownModel {
        /// What was asked for.
        model: String,
        /// What may be used.
        allowed: Vec<String>,
    },
    /// The model (or the embedding provider) could not be reached.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The model refused the request.
    #[error("{0}")]
    ProviderRejected(String),
    /// The model's output could not be used (after one retry).
    #[error("{0}")]
    InvalidModelOutput(String),
    /// The stream was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The caller's role does not allow this (another member's assistant).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Metering refused the call (the organization's token quota is used up, or it has too
    /// many answers streaming) or could not be reached; no model was called.
    #[error(transparent)]
    Metering(#[from] MeterError),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => Self::Invalid(i),
            StoreError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<KnowledgeError> for ChatError {
    fn from(e: KnowledgeError) -> Self {
        match e {
            KnowledgeError::NotFound => Self::NotFound,
            KnowledgeError::Invalid(i) => Self::Invalid(i),
            KnowledgeError::Unavailable(m) => Self::ProviderUnavailable(m),
            KnowledgeError::Metering(e) => Self::Metering(e),
            KnowledgeError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<AnswerError> for ChatError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Cancelled => Self::Cancelled,
            AnswerError::SessionDeleted => Self::NotFound,
            AnswerError::ProviderRejected(m) => Self::ProviderRejected(m),
            AnswerError::ModelFailed | AnswerError::NotStored => {
                Self::Unknown(anyhow::anyhow!(e.to_string()))
            }
            AnswerError::ProviderUnavailable(m) => Self::ProviderUnavailable(m),
            AnswerError::Incomplete => Self::ProviderUnavailable(e.to_string()),
        }
    }
}

/// How chat behaves (from configuration).
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// The model sessions use unless they name one.
    pub default_model: String,
    /// The organizations' whitelist unless a platform admin set one (empty: every model
    /// served).
    pub allowed_models: Vec<String>,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// Earlier messages considered for the prompt (then trimmed to the budget).
    pub history_messages: usize,
    /// Tokens kept free for the answer.
    pub max_answer_tokens: u32,
    /// How long an answer with no viewer goes on before it is cancelled.
    pub resume_grace: Duration,
    /// How long an ended answer stays in memory for `Last-Event-ID`.
    pub replay_keep: Duration,
    /// Most characters of a document the AI tasks read.
    pub max_document_chars: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            default_model: "quire-local-extractive".to_owned(),
            allowed_models: Vec::new(),
            top_k: 8,
            history_messages: 20,
            max_answer_tokens: 1_024,
            resume_grace: Duration::from_secs(3),
            replay_keep: Duration::from_secs(120),
            max_document_chars: 60_000,
        }
    }
}

/// What chat runs on.
#[derive(Debug, Clone)]
pub struct ChatPorts {
    /// Sessions, messages, assistants, feedback, whitelists.
    pub store: Arc<dyn ChatStore>,
    /// The language models (each serves one or more names).
    pub models: Vec<Arc<dyn ChatModel>>,
    /// What answers are grounded in.
    pub knowledge: Arc<dyn Knowledge>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Token quotas, stream caps and the usage ledger: every model call reserves its
    /// tokens before the model is called and settles them once it ends.
    pub meter: Arc<dyn Meter>,
}

/// An OpenAI-style completion request.
#[derive(Debug, Clone)]
pub struct CompletionInput {
    /// The model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<PromptMessage>,
    /// Sampling temperature, 0..2.
    pub temperature: Option<f32>,
    /// Most tokens to produce.
    pub max_tokens: Option<u32>,
    /// Ground the answer in the organization's documents (Quire's extension).
    pub grounding: Option<Grounding>,
}

/// Grounding of a completion.
#[derive(Debug, Clone, Default)]
pub struct Grounding {
    /// Only these collections (all when `None`).
    pub collections: Option<Vec<CollectionId>>,
    /// Chunks to retrieve.
    pub top_k: Option<usize>,
}

/// A started completion.
#[derive(Debug)]
pub struct Completion {
    /// The model answering.
    pub model: String,
    /// The answer (its first token is there). Metered: it settles the completion's tokens
    /// when it ends or is dropped, and gives its stream slot back.
    pub call: ModelCall,
}

/// Most messages of one completion request.
pub const MAX_COMPLETION_MESSAGES: usize = 500;
/// Most characters over all messages of one completion request.
pub const MAX_COMPLETION_CHARS: usize = 400_000;
/// Largest `max_tokens`.
pub const MAX_MAX_TOKENS: u32 = 32_768;

/// The chat use cases.
#[derive(Debug, Clone)]
pub struct Chat {
    pub(crate) ports: ChatPorts,
    pub(crate) settings: ChatSettings,
    runs: Arc<Runs>,
}

impl Chat {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: ChatPorts, settings: ChatSettings) -> Self {
        let runs = Arc::new(Runs::new(settings.resume_grace, settings.replay_keep));
        Self {
            ports,
            settings,
            runs,
        }
    }

    /// Every model name some adapter serves.
    #[must_use]
    pub fn served_models(&self) -> Vec<String> {
        served_models(&self.ports.models)
    }

    fn adapter(&self, name: &str) -> Option<&Arc<dyn ChatModel>> {
        self.ports
            .models
            .iter()
            .find(|m| m.models().iter().any(|n| n == name))
    }

    /// The models `tenant` may use: the admin's whitelist, else the configured one, else every
    /// served model; always only models some adapter serves.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn allowed_models(&self, tenant: TenantId) -> Result<Vec<String>, ChatError> {
        let served = self.served_models();
        let list = match self.ports.store.allowed_models(tenant).await? {
            Some(list) => list,
            None if !self.settings.allowed_models.is_empty() => {
                self.settings.allowed_models.clone()
            }
            None => served.clone(),
        };
        Ok(list.into_iter().filter(|m| served.contains(m)).collect())
    }

    /// Whether a platform admin set `tenant`'s whitelist.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn has_custom_models(&self, tenant: TenantId) -> Result<bool, ChatError> {
        Ok(self.ports.store.allowed_models(tenant).await?.is_some())
    }

    /// Sets (or, with `None`, clears) a tenant's whitelist (platform admins).
    ///
    /// # Errors
    /// [`ChatError::Invalid`] when the list is empty or names a model no adapter serves.
    pub async fn set_allowed_models(
        &self,
        tenant: TenantId,
        models: Option<Vec<String>>,
    ) -> Result<Vec<String>, ChatError> {
        if let Some(list) = &models {
            let served = self.served_models();
            let mut errors = Vec::new();
            if list.is_empty() || list.len() > 100 {
                errors.push(FieldError::new("models", "must hold 1 to 100 models"));
            }
            for (i, m) in list.iter().enumerate() {
                if !served.contains(m) {
                    errors.push(FieldError::new(
                        format!("models[{i}]"),
                        format!("no such model; served: {}", served.join(", ")),
                    ));
                }
            }
            InvalidInput::check(errors)?;
        }
        self.ports
            .store
            .set_allowed_models(tenant, models.as_deref())
            .await?;
        self.allowed_models(tenant).await
    }

    /// The model to use: `requested`, else the default (or the first allowed when the default
    /// is not allowed).
    pub(crate) async fn resolve_model(
        &self,
        tenant: TenantId,
        requested: Option<&str>,
    ) -> Result<(String, Arc<dyn ChatModel>), ChatError> {
        let allowed = self.allowed_models(tenant).await?;
        let name = match requested {
            Some(m) => m.to_owned(),
            None if allowed.contains(&self.settings.default_model) => {
                self.settings.default_model.clone()
            }
            None => allowed.first().cloned().unwrap_or_default(),
        };
        match self.adapter(&name) {
            Some(adapter) if allowed.contains(&name) => Ok((name, adapter.clone())),
            _ => Err(ChatError::UnknownModel {
                model: name,
                allowed,
            }),
        }
    }

    async fn check_references(
        &self,
        ctx: &TenantContext,
        collections: Option<&[CollectionId]>,
        model: Option<&str>,
    ) -> Result<(), ChatError> {
        if let Some(c) = collections {
            self.ports.knowledge.check_collections(ctx, c).await?;
        }
        if let Some(m) = model {
            self.resolve_model(ctx.tenant_id(), Some(m)).await?;
        }
        Ok(())
    }

    // --- sessions ------------------------------------------------------------------------

    /// Starts a conversation.
    ///
    /// # Errors
    /// Invalid fields; a collection or assistant that is not the tenant's (404); a model not on
    /// the whitelist.
    pub async fn create_session(
        &self,
        ctx: &TenantContext,
        fields: SessionFields,
    ) -> Result<Session, ChatError> {
        fields.validate()?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        let assistant_id = fields.assistant_id.flatten();
        if let Some(a) = assistant_id {
            self.assistant(ctx, a).await?;
        }
        let now = self.ports.clock.now();
        let session = Session {
            id: ChatSessionId::new(),
            tenant_id: ctx.tenant_id(),
            owner: ctx.principal(),
            title: fields
                .title
                .map(|t| kernel::text::clean_name(&t))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "New chat".to_owned()),
            collection_ids: dedup(fields.collection_ids.unwrap_or_default()),
            model,
            system_prompt: fields
                .system_prompt
                .flatten()
                .filter(|s| !s.trim().is_empty()),
            assistant_id,
            created_at: now,
            updated_at: now,
        };
        self.ports.store.create_session(&session).await?;
        tracing::info!(session = %session.id, "chat session created");
        Ok(session)
    }

    /// One of the caller's sessions.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] for another caller's or tenant's session.
    pub async fn session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
    ) -> Result<Session, ChatError> {
        self.ports
            .store
            .find_session(ctx.tenant_id(), id)
            .await?
            .filter(|s| s.owner == ctx.principal())
            .ok_or(ChatError::NotFound)
    }

    /// The caller's sessions, newest first.
    ///
    /// # Errors
    /// A foreign cursor; storage failures.
    pub async fn sessions(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Session>, ChatError> {
        Ok(self
            .ports
            .store
            .list_sessions(ctx.tenant_id(), ctx.principal(), page)
            .await?)
    }

    /// Changes a session.
    ///
    /// # Errors
    /// As [`Chat::create_session`], and [`ChatError::NotFound`].
    pub async fn update_session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
        fields: SessionFields,
    ) -> Result<Session, ChatError> {
        fields.validate()?;
        let mut session = self.session(ctx, id).await?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        if let Some(Some(a)) = fields.assistant_id {
            self.assistant(ctx, a).await?;
        }
        if let Some(t) = fields.title {
            let t = kernel::text::clean_name(&t);
            if !t.is_empty() {
                session.title = t;
            }
        }
        if let Some(c) = fields.collection_ids {
            session.collection_ids = dedup(c);
        }
        if let Some(m) = fields.model {
            session.model = m;
        }
        if let Some(p) = fields.system_prompt {
            session.system_prompt = p.filter(|s| !s.trim().is_empty());
        }
        if let Some(a) = fields.assistant_id {
            session.assistant_id = a;
        }
        session.updated_at = self.ports.clock.now();
        if !self.ports.store.update_session(&session).await? {
            return Err(ChatError::NotFound);
        }
        Ok(session)
    }

    /// Deletes a session with its messages.
    ///
    /// # Errors
    /// [`ChatError::NotFound`].
    pub async fn delete_session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
    ) -> Result<(), ChatError> {
        self.session(ctx, id).await?;
        if !self.ports.store.delete_session(ctx.tenant_id(), id).await? {
            return Err(ChatError::NotFound);
        }
        Ok(())
    }

    /// A session's messages, oldest first.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; a foreign cursor.
    pub async fn messages(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
        page: &PageRequest,
    ) -> Result<Page<Message>, ChatError> {
        self.session(ctx, id).await?;
        Ok(self
            .ports
            .store
            .list_messages(ctx.tenant_id(), id, page)
            .await?)
    }

    // --- answers -------------------------------------------------------------------------

    /// Asks a question in a session: stores it, retrieves, builds the prompt and starts the
    /// answer, returning its first viewer. The answer is stored when it ends.
    ///
    /// Metered: a stream slot of the organization is taken first, and the prompt's tokens
    /// plus the answer's maximum are reserved before the question is stored; the answer
    /// settles them to what it used, and gives the slot back, when it ends.
    ///
    /// # Errors
    /// Invalid content; [`ChatError::NotFound`]; a model no longer allowed;
    /// [`ChatError::Metering`] (too many answers streaming, the token quota used up); the
    /// embedding provider down (before anything is stored).
    pub async fn send(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        content: &str,
        locale: Option<Locale>,
    ) -> Result<Subscription, ChatError> {
        validate_content(content)?;
        let session = self.session(ctx, session_id).await?;
        let tenant = ctx.tenant_id();
        let slot = self.ports.meter.open_stream(tenant).await?;
        let mut held = Held::new(self.ports.meter.clone()).with_slot(slot);
        let prepared = match self
            .prepare_answer(ctx, &session, content, locale, &mut held)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                held.release().await;
                return Err(e);
            }
        };
        let run = self.runs.start(prepared.message_id, tenant, session_id);
        let viewer = self.runs.attach(run.clone(), None);
        tracing::info!(
            session = %session_id,
            message = %run.message_id,
            model = %prepared.model_name,
            sources = prepared.request.sources.len(),
            history = prepared.history_kept,
            prompt_tokens = prepared.prompt_tokens,
            "answer started"
        );
        let driver = Driver {
            run,
            call: ModelCall::new(
                prepared.model,
                prepared.request,
                prepared.prompt_tokens,
                held,
            ),
            store: self.ports.store.clone(),
            clock: self.ports.clock.clone(),
        };
        tokio::spawn(driver.drive());
        Ok(viewer)
    }

    /// Everything before an answer starts: retrieval, the prompt, the reservation (put in
    /// `held`) and the stored question.
    async fn prepare_answer(
        &self,
        ctx: &TenantContext,
        session: &Session,
        content: &str,
        locale: Option<Locale>,
        held: &mut Held,
    ) -> Result<PreparedAnswer, ChatError> {
        let tenant = ctx.tenant_id();
        let session_id = session.id;
        let assistant = match session.assistant_id {
            Some(a) => self.ports.store.find_assistant(tenant, a).await?,
            None => None,
        };
        let requested = session
            .model
            .clone()
            .or_else(|| assistant.as_ref().and_then(|a| a.model.clone()));
        let (model_name, model) = self.resolve_model(tenant, requested.as_deref()).await?;
        let collections = if !session.collection_ids.is_empty() {
            Some(session.collection_ids.clone())
        } else {
            assistant
                .as_ref()
                .map(|a| a.collection_ids.clone())
                .filter(|c| !c.is_empty())
        };
        let sources = self
            .search(ctx, content, collections, self.settings.top_k)
            .await?;
        let history = self
            .ports
            .store
            .recent_messages(tenant, session_id, self.settings.history_messages)
            .await?;
        let locale = locale.unwrap_or_else(|| Locale::detect(content));
        let prompt = prompt::for_model(
            &*model,
            &model_name,
            self.settings.max_answer_tokens,
            PromptInput {
                locale,
                instructions: assistant.as_ref().map(|a| a.instructions.as_str()),
                system_prompt: session.system_prompt.as_deref(),
                history: &history,
                question: content,
                sources,
            },
        );
        // The question's id first: messages list by id (UUIDv7), the answer after its question.
        let question_id = MessageId::new();
        let message_id = MessageId::new();
        let reservation = self
            .reserve_chat(
                ctx,
                &model_name,
                format!("message:{message_id}"),
                prompt.tokens,
                self.settings.max_answer_tokens,
            )
            .await?;
        held.hold(reservation);
        let now = self.ports.clock.now();
        let question = Message {
            id: question_id,
            tenant_id: tenant,
            session_id,
            role: MessageRole::User,
            content: content.to_owned(),
            citations: Vec::new(),
            usage: None,
            status: MessageStatus::Complete,
            model: None,
            created_at: now,
        };
        if !self.ports.store.append_message(&question).await? {
            return Err(ChatError::NotFound);
        }
        let request = ChatRequest {
            model: model_name.clone(),
            messages: prompt.messages,
            temperature: assistant.as_ref().and_then(|a| a.temperature),
            max_tokens: Some(self.settings.max_answer_tokens),
            task: Task::Answer {
                question: content.to_owned(),
            },
            sources: prompt.sources,
        };
        Ok(PreparedAnswer {
            message_id,
            model,
            model_name,
            request,
            prompt_tokens: prompt.tokens,
            history_kept: prompt.history_kept,
        })
    }

    /// Asks and waits for the whole answer (the non-streamed route).
    ///
    /// # Errors
    /// As [`Chat::send`]; the model's failure.
    pub async fn answer(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        content: &str,
        locale: Option<Locale>,
    ) -> Result<Message, ChatError> {
        let mut viewer = self.send(ctx, session_id, content, locale).await?;
        while let Some(e) = viewer.next().await {
            match e.event {
                StreamEvent::Done { message_id, .. } => {
                    return self
                        .ports
                        .store
                        .find_message(ctx.tenant_id(), message_id)
                        .await?
                        .ok_or(ChatError::NotFound);
                }
                StreamEvent::Error(e) => return Err(e.into()),
                StreamEvent::Delta { .. } | StreamEvent::Citations { .. } => {}
            }
        }
        Err(ChatError::Unknown(anyhow::anyhow!(
            "the answer ended without an end event"
        )))
    }

    /// Resumes a stream after `last_event_id`: live when this process runs (or just ran) it,
    /// else replayed from the stored message.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] for an id that is not one of ours; [`ChatError::NotFound`] when
    /// the message is not the caller's, or runs on another server and is not stored yet.
    pub async fn resume(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        last_event_id: &str,
    ) -> Result<Subscription, ChatError> {
        self.session(ctx, session_id).await?;
        let (message_id, position) = stream::parse_event_id(last_event_id).ok_or_else(|| {
            InvalidInput::field("Last-Event-ID", "is not an event id of this stream")
        })?;
        if let Some(run) = self.runs.find(message_id)
            && run.tenant_id == ctx.tenant_id()
            && run.session_id == session_id
        {
            return Ok(self.runs.attach(run, Some(position)));
        }
        let stored = self
            .ports
            .store
            .find_message(ctx.tenant_id(), message_id)
            .await?
            .filter(|m| m.session_id == session_id && m.role == MessageRole::Assistant)
            .ok_or(ChatError::NotFound)?;
        let ending = match stored.status {
            MessageStatus::Complete => StreamEvent::Done {
                message_id,
                usage: stored.usage.unwrap_or_default(),
            },
            MessageStatus::Incomplete => StreamEvent::Error(AnswerError::Incomplete),
        };
        Ok(stream::replay(
            message_id,
            &stored.content,
            stored.citations,
            ending,
            Some(position),
        ))
    }

    /// Rates an assistant message of one of the caller's sessions.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; a comment too long.
    pub async fn feedback(
        &self,
        ctx: &TenantContext,
        message_id: MessageId,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<Feedback, ChatError> {
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
        {
            return Err(InvalidInput::field(
                "comment",
                format!("must be at most {MAX_COMMENT_CHARS} characters"),
            )
            .into());
        }
        let message = self
            .ports
            .store
            .find_message(ctx.tenant_id(), message_id)
            .await?
            .filter(|m| m.role == MessageRole::Assistant)
            .ok_or(ChatError::NotFound)?;
        self.session(ctx, message.session_id).await?;
        let feedback = Feedback {
            tenant_id: ctx.tenant_id(),
            message_id,
            principal: ctx.principal(),
            rating,
            comment,
            created_at: self.ports.clock.now(),
        };
        self.ports.store.put_feedback(&feedback).await?;
        Ok(feedback)
    }

    /// Retrieval for a question; a session's collection deleted since is skipped rather than
    /// failing every later question.
    pub(crate) async fn search(
        &self,
        ctx: &TenantContext,
        question: &str,
        collections: Option<Vec<CollectionId>>,
        top_k: usize,
    ) -> Result<Vec<Source>, ChatError> {
        let knowledge = &self.ports.knowledge;
        match knowledge
            .search(ctx, question, collections.as_deref(), top_k)
            .await
        {
            Err(KnowledgeError::NotFound) if collections.is_some() => {
                let mut live = Vec::new();
                for c in collections.unwrap_or_default() {
                    if knowledge.check_collections(ctx, &[c]).await.is_ok() {
                        live.push(c);
                    }
                }
                if live.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(knowledge.search(ctx, question, Some(&live), top_k).await?)
            }
            other => Ok(other?),
        }
    }

    // --- assistants ----------------------------------------------------------------------

    /// Creates an assistant.
    ///
    /// # Errors
    /// Invalid fields (a name is required); a collection not the tenant's; a model not allowed.
    pub async fn create_assistant(
        &self,
        ctx: &TenantContext,
        fields: AssistantFields,
    ) -> Result<Assistant, ChatError> {
        if fields.name.is_none() {
            return Err(InvalidInput::field("name", "is required").into());
        }
        fields.validate()?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        let now = self.ports.clock.now();
        let assistant = Assistant {
            id: AssistantId::new(),
            tenant_id: ctx.tenant_id(),
            name: kernel::text::clean_name(&fields.name.unwrap_or_default()),
            instructions: fields.instructions.unwrap_or_default(),
            model,
            collection_ids: dedup(fields.collection_ids.unwrap_or_default()),
            temperature: fields.temperature.flatten(),
            created_at: now,
            updated_at: now,
            created_by: Some(ctx.principal()),
        };
        self.ports.store.create_assistant(&assistant).await?;
        Ok(assistant)
    }

    /// One assistant of the organization.
    ///
    /// # Errors
    /// [`ChatError::NotFound`].
    pub async fn assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
    ) -> Result<Assistant, ChatError> {
        self.ports
            .store
            .find_assistant(ctx.tenant_id(), id)
            .await?
            .ok_or(ChatError::NotFound)
    }

    /// The organization's assistants, oldest first.
    ///
    /// # Errors
    /// A foreign cursor; storage failures.
    pub async fn assistants(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Assistant>, ChatError> {
        Ok(self
            .ports
            .store
            .list_assistants(ctx.tenant_id(), page)
            .await?)
    }

    /// Changes an assistant: its creator, or an admin ([`Assistant::editable_by`]).
    ///
    /// # Errors
    /// As [`Chat::create_assistant`], [`ChatError::NotFound`], and [`ChatError::Forbidden`]
    /// for another member's assistant.
    pub async fn update_assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
        fields: AssistantFields,
    ) -> Result<Assistant, ChatError> {
        fields.validate()?;
        let mut a = self.assistant(ctx, id).await?;
        if !a.editable_by(ctx) {
            return Err(ChatError::Forbidden(NOT_YOUR_ASSISTANT));
        }
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        if let Some(n) = fields.name {
            a.name = kernel::text::clean_name(&n);
        }
        if let Some(i) = fields.instructions {
            a.instructions = i;
        }
        if let Some(m) = fields.model {
            a.model = m;
        }
        if let Some(c) = fields.collection_ids {
            a.collection_ids = dedup(c);
        }
        if let Some(t) = fields.temperature {
            a.temperature = t;
        }
        a.updated_at = self.ports.clock.now();
        if !self.ports.store.update_assistant(&a).await? {
            return Err(ChatError::NotFound);
        }
        Ok(a)
    }

    /// Deletes an assistant (sessions naming it go on without it): its creator, or an admin.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Forbidden`] for another member's assistant.
    pub async fn delete_assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
    ) -> Result<(), ChatError> {
        if !self.assistant(ctx, id).await?.editable_by(ctx) {
            return Err(ChatError::Forbidden(NOT_YOUR_ASSISTANT));
        }
        if !self
            .ports
            .store
            .delete_assistant(ctx.tenant_id(), id)
            .await?
        {
            return Err(ChatError::NotFound);
        }
        Ok(())
    }

    // --- OpenAI-compatible completions ---------------------------------------------------

    /// Starts an OpenAI-style completion, optionally grounded in the organization's documents
    /// (then the last user message is the question, our rules lead the system prompt, and the
    /// sources are fenced into the last message).
    ///
    /// Metered: a stream slot of the organization is taken and the prompt's tokens plus
    /// `max_tokens` (the configured answer maximum when the client sets none, which is then
    /// sent to the model) are reserved before the model is called; the returned stream
    /// settles them when it ends or is dropped.
    ///
    /// # Errors
    /// Invalid messages or parameters; a model not allowed; [`ChatError::Metering`] (too
    /// many answers streaming, the token quota used up); the provider's failure before the
    /// first token.
    pub async fn complete(
        &self,
        ctx: &TenantContext,
        input: CompletionInput,
    ) -> Result<Completion, ChatError> {
        validate_completion(&input)?;
        let (model_name, model) = self
            .resolve_model(ctx.tenant_id(), Some(&input.model))
            .await?;
        let slot = self.ports.meter.open_stream(ctx.tenant_id()).await?;
        let mut held = Held::new(self.ports.meter.clone()).with_slot(slot);
        let (request, prompt_tokens) = match self
            .prepare_completion(ctx, input, &model_name, &*model, &mut held)
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => {
                held.release().await;
                return Err(e);
            }
        };
        let call = ModelCall::new(model, request, prompt_tokens, held)
            .started()
            .await?;
        Ok(Completion {
            model: model_name,
            call,
        })
    }

    /// A completion once its stream slot is taken: grounding, the request and its prompt
    /// tokens, and the reservation (put in `held`).
    async fn prepare_completion(
        &self,
        ctx: &TenantContext,
        input: CompletionInput,
        model_name: &str,
        model: &dyn ChatModel,
        held: &mut Held,
    ) -> Result<(ChatRequest, u32), ChatError> {
        let max_tokens = input.max_tokens.unwrap_or(self.settings.max_answer_tokens);
        let mut messages = input.messages;
        let mut sources = Vec::new();
        let mut task = Task::Chat;
        if let Some(g) = input.grounding {
            let (qi, question) = messages
                .iter()
                .enumerate()
                .rev()
                .find(|(_, m)| m.role == PromptRole::User)
                .map(|(i, m)| (i, m.content.clone()))
                .ok_or_else(|| InvalidInput::field("messages", "grounding needs a user message"))?;
            if let Some(c) = &g.collections {
                self.ports.knowledge.check_collections(ctx, c).await?;
            }
            let top_k = g.top_k.unwrap_or(self.settings.top_k);
            if !(1..=50).contains(&top_k) {
                return Err(InvalidInput::field("quire.top_k", "must be between 1 and 50").into());
            }
            sources = self.search(ctx, &question, g.collections, top_k).await?;
            let locale = Locale::detect(&question);
            let others: u32 = messages
                .iter()
                .map(|m| model.count_tokens(model_name, &m.content) + 4)
                .sum();
            let p = prompt::for_model(
                model,
                model_name,
                max_tokens.saturating_add(others),
                PromptInput {
                    locale,
                    instructions: None,
                    system_prompt: None,
                    history: &[],
                    question: &question,
                    sources: std::mem::take(&mut sources),
                },
            );
            sources = p.sources;
            if let Some(last) = p.messages.last() {
                messages[qi].content = last.content.clone();
            }
            messages.insert(
                0,
                PromptMessage::new(PromptRole::System, prompt::rules(locale)),
            );
            task = Task::Answer { question };
        }
        let prompt_tokens = prompt_tokens(
            |s| model.count_tokens(model_name, s),
            messages.iter().map(|m| m.content.as_str()),
        );
        let reservation = self
            .reserve_chat(
                ctx,
                model_name,
                format!("completion:{}", uuid::Uuid::now_v7()),
                prompt_tokens,
                max_tokens,
            )
            .await?;
        held.hold(reservation);
        let request = ChatRequest {
            model: model_name.to_owned(),
            messages,
            temperature: input.temperature,
            max_tokens: Some(max_tokens),
            task,
            sources,
        };
        Ok((request, prompt_tokens))
    }

    /// Counts tokens of `text` in `model` (completion tokens of a cut-short stream).
    #[must_use]
    pub fn count_tokens(&self, model: &str, text: &str) -> u32 {
        self.adapter(model)
            .map_or(0, |m| m.count_tokens(model, text))
    }

    /// The prompt tokens of a conversation of these message `contents` in `model`, counted
    /// as completions count them (what they reserve, and what `/usage/estimate` answers).
    #[must_use]
    pub fn count_prompt_tokens<'a>(
        &self,
        model: &str,
        contents: impl IntoIterator<Item = &'a str>,
    ) -> u32 {
        prompt_tokens(|s| self.count_tokens(model, s), contents)
    }

    /// Reserves a chat call's `prompt_tokens` plus its answer budget `max_tokens`, billed to
    /// the caller of `ctx`.
    pub(crate) async fn reserve_chat(
        &self,
        ctx: &TenantContext,
        model_name: &str,
        reference: String,
        prompt_tokens: u32,
        max_tokens: u32,
    ) -> Result<kernel::Reservation, ChatError> {
        Ok(self
            .ports
            .meter
            .reserve(
                MeterScope {
                    tenant: ctx.tenant_id(),
                    actor: Some(ctx.principal()),
                    model: model_name.to_owned(),
                    kind: UsageKind::Chat,
                    reference,
                },
                u64::from(prompt_tokens) + u64::from(max_tokens),
            )
            .await?)
    }
}

/// A conversation's prompt tokens: each message's content, plus 4 per message for its role
/// and separators, plus 3 that prime the reply (OpenAI's chat format).
fn prompt_tokens<'a>(
    count: impl Fn(&str) -> u32,
    contents: impl IntoIterator<Item = &'a str>,
) -> u32 {
    contents
        .into_iter()
        .map(|c| count(c).saturating_add(4))
        .fold(3, u32::saturating_add)
}

fn validate_completion(input: &CompletionInput) -> Result<(), InvalidInput> {
    let mut errors = Vec::new();
    if input.messages.is_empty() || input.messages.len() > MAX_COMPLETION_MESSAGES {
        errors.push(FieldError::new(
            "messages",
            format!("must hold 1 to {MAX_COMPLETION_MESSAGES} messages"),
        ));
    }
    let total: usize = input
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    if total > MAX_COMPLETION_CHARS {
        errors.push(FieldError::new(
            "messages",
            format!("at most {MAX_COMPLETION_CHARS} characters in all"),
        ));
    }
    if input.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        errors.push(FieldError::new("temperature", "must be between 0 and 2"));
    }
    if input
        .max_tokens
        .is_some_and(|t| t == 0 || t > MAX_MAX_TOKENS)
    {
        errors.push(FieldError::new(
            "max_tokens",
            format!("must be between 1 and {MAX_MAX_TOKENS}"),
        ));
    }
    InvalidInput::check(errors)
}

/// Every model name these adapters serve, each once, in the adapters' order.
fn served_models(adapters: &[Arc<dyn ChatModel>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    adapters
        .iter()
        .flat_map(|m| m.models())
        .filter(|name| seen.insert(name.clone()))
        .collect()
}

fn dedup(mut ids: Vec<CollectionId>) -> Vec<CollectionId> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|c| seen.insert(*c));
    ids
}

/// Why another member's assistant cannot be changed.
const NOT_YOUR_ASSISTANT: &str = "only the assistant's creator or an admin may change or delete it";

/// An answer ready to start: its tokens reserved, its question stored.
struct PreparedAnswer {
    message_id: MessageId,
    model: Arc<dyn ChatModel>,
    model_name: String,
    request: ChatRequest,
    prompt_tokens: u32,
    history_kept: usize,
}

/// Drives one answer: reads its model call, feeds the run and stores the message (the
/// call settles the answer's tokens and gives its stream slot back before it ends).
struct Driver {
    run: Arc<Run>,
    call: ModelCall,
    store: Arc<dyn ChatStore>,
    clock: Arc<dyn Clock>,
}

impl Driver {
    async fn drive(self) {
        let Self {
            run,
            mut call,
            store,
            clock,
        } = self;
        let started = tokio::select! {
            biased;
            () = run.cancelled() => false,
            started = call.start() => started,
        };
        if !started {
            // Cancelled before the first token (nothing when the start failed: its failure
            // is the call's end already).
            call.stop(AnswerError::Cancelled);
        }
        let mut stopped = !started;
        let mut end = None;
        loop {
            let event = tokio::select! {
                biased;
                () = run.cancelled(), if !stopped => {
                    // The model's stream is dropped, the upstream request with it.
                    call.stop(AnswerError::Cancelled);
                    stopped = true;
                    continue;
                }
                event = call.next() => event,
            };
            match event {
                Some(CallEvent::Delta(text)) => run.push(StreamEvent::Delta { text }),
                Some(CallEvent::Finished(answer)) => {
                    end = Some((answer, None));
                    break;
                }
                Some(CallEvent::Failed(f)) => {
                    end = Some((f.partial, Some(f.error)));
                    break;
                }
                None => break,
            }
        }
        let (answer, mut failure) =
            end.unwrap_or_else(|| (Answer::default(), Some(AnswerError::ModelFailed)));
        let model_name = call.model_name().to_owned();
        drop(call);
        let usage = answer.usage;
        let status = if failure.is_none() {
            MessageStatus::Complete
        } else {
            MessageStatus::Incomplete
        };
        if failure.is_none() || !answer.text.is_empty() {
            let message = Message {
                id: run.message_id,
                tenant_id: run.tenant_id,
                session_id: run.session_id,
                role: MessageRole::Assistant,
                content: answer.text,
                citations: answer.citations.clone(),
                usage: Some(usage),
                status,
                model: Some(model_name),
                created_at: clock.now(),
            };
            match store.append_message(&message).await {
                Ok(true) => {}
                Ok(false) => {
                    failure.get_or_insert(AnswerError::SessionDeleted);
                }
                Err(e) => {
                    tracing::error!(error = ?e, message = %run.message_id, "storing an answer failed");
                    failure = Some(AnswerError::NotStored);
                }
            }
        }
        run.push(StreamEvent::Citations {
            citations: answer.citations,
        });
        match failure {
            None => {
                tracing::info!(
                    message = %run.message_id,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    "answer stored"
                );
                run.push(StreamEvent::Done {
                    message_id: run.message_id,
                    usage,
                });
            }
            Some(e) => {
                tracing::warn!(message = %run.message_id, error = ?e, "answer ended early");
                run.push(StreamEvent::Error(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::ports::{ModelError, ModelStream};

    /// Serves these names; never called.
    #[derive(Debug)]
    struct Names(&'static [&'static str]);

    #[async_trait]
    impl ChatModel for Names {
        fn models(&self) -> Vec<String> {
            self.0.iter().map(|n| (*n).to_owned()).collect()
        }

        fn count_tokens(&self, _model: &str, _text: &str) -> u32 {
            0
        }

        fn context_window(&self, _model: &str) -> u32 {
            0
        }

        async fn stream(&self, _request: ChatRequest) -> Result<ModelStream, ModelError> {
            Err(ModelError::Unavailable("not used".to_owned()))
        }
    }

    #[test]
    fn served_models_name_each_model_once_even_when_not_adjacent() {
        let adapters: Vec<Arc<dyn ChatModel>> = vec![
            Arc::new(Names(&["a", "b"])),
            Arc::new(Names(&["c", "a", "b"])),
        ];
        assert_eq!(served_models(&adapters), ["a", "b", "c"]);
    }
}
