//! Ports of the chat domain: the language model, the store, and the knowledge answers are
//! grounded in.

use std::pin::Pin;

use async_trait::async_trait;
use documents::{CollectionId, DocumentId};
use futures_util::Stream;
use kernel::{
    InvalidInput, MeterError, Page, PageRequest, Principal, Reservation, TenantContext, TenantId,
};
use time::OffsetDateTime;

use crate::model::{
    Assistant, AssistantId, ChatRequest, ChatSessionId, Feedback, Message, MessageId, Session,
    Source, Usage,
};

/// What a model stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    /// A piece of the answer.
    Delta(String),
    /// The tokens of the call: sent once, at the end of a stream that ended normally. From
    /// the provider's final chunk when it sends one, else counted by the adapter.
    Usage(Usage),
}

/// Failures of a model call.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider refused the request (a 4xx other than 408/429): not retried.
    #[error("{0}")]
    Rejected(String),
    /// The provider could not be reached or did not answer before the first token (after the
    /// adapter's retries).
    #[error("{0}")]
    Unavailable(String),
    /// Not tried: the provider failed a call a moment ago and is refused for `retry_after`
    /// (the adapter's circuit breaker).
    #[error("the model provider is down; try again in {} s", kernel::clock::whole_secs_up(*retry_after).max(1))]
    Down {
        /// How long calls are refused.
        retry_after: std::time::Duration,
    },
    /// The stream broke after its first token (idle timeout, disconnect, malformed chunk):
    /// never retried, since the caller already saw part of the answer.
    #[error("{0}")]
    Interrupted(String),
    /// Anything else.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// The events of one model call, after its first token.
pub type ModelStream = Pin<Box<dyn Stream<Item = Result<ModelEvent, ModelError>> + Send>>;

/// A language model (a chat-completions provider, or the local extractive answerer).
///
/// Contract:
/// - [`ChatModel::stream`] resolves once the first piece of the answer is there (or the
///   stream ended without one), so every retry happens before a caller sees any token; the
///   returned stream starts with that piece.
/// - Dropping the stream cancels the call upstream.
/// - A stream that ends normally yields [`ModelEvent::Usage`] last.
///
/// # Errors
/// [`ModelError`]; an adapter never puts a key or a prompt in an error message.
#[async_trait]
pub trait ChatModel: Send + Sync + std::fmt::Debug {
    /// The model names this adapter answers for.
    fn models(&self) -> Vec<String>;

    /// Tokens `text` costs in `model`'s tokenizer.
    fn count_tokens(&self, model: &str, text: &str) -> u32;

    /// The context window of `model`, in tokens.
    fn context_window(&self, model: &str) -> u32;

    /// Starts a call (see the trait's contract).
    async fn stream(&self, request: ChatRequest) -> Result<ModelStream, ModelError>;

    /// How long calls are refused, while the model's provider is known to be down (a
    /// provider adapter's circuit breaker); `None` when a call would be tried. Answers check
    /// it before anything is reserved or stored.
    fn refusing(&self) -> Option<std::time::Duration> {
        None
    }
}

/// An answer whose run stopped renewing its lease (its server died): its message as last
/// checkpointed and the reservation it settles.
#[derive(Debug)]
pub struct AbandonedAnswer {
    /// The message (`status` streaming, its text and usage as last checkpointed).
    pub message: Message,
    /// What it settles (`None` when nothing was reserved).
    pub reservation: Option<Reservation>,
}

/// Failures of the chat store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores sessions, messages, assistants, feedback and each organization's model whitelist.
///
/// Contract (checked on every adapter by `testkit::contract::chat`): every method is scoped
/// to `tenant`; another tenant's row is "not found" and is never changed. Lists order by id
/// (UUIDv7, so by creation).
#[async_trait]
pub trait ChatStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session.
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session with this id.
    async fn find_session(
        &self,
        tenant: TenantId,
        id: ChatSessionId,
    ) -> Result<Option<Session>, StoreError>;

    /// `owner`'s sessions, newest first.
    async fn list_sessions(
        &self,
        tenant: TenantId,
        owner: Principal,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError>;

    /// Replaces the session's client fields and `updated_at`; `false` when there is none.
    async fn update_session(&self, session: &Session) -> Result<bool, StoreError>;

    /// Deletes the session with its messages and their feedback; `false` when there is none.
    async fn delete_session(&self, tenant: TenantId, id: ChatSessionId)
    -> Result<bool, StoreError>;

    /// Retention: deletes `tenant`'s messages created before `before` (not an answer still
    /// streaming) with their feedback, then its sessions with no activity since `before`
    /// (`updated_at`) and no message left; returns how many messages and sessions.
    async fn delete_history_before(
        &self,
        tenant: TenantId,
        before: time::OffsetDateTime,
    ) -> Result<(u64, u64), StoreError>;

    /// Appends a message to its session (which must exist) and sets the session's
    /// `updated_at` to the message's `created_at`. `false` when the session is gone.
    async fn append_message(&self, message: &Message) -> Result<bool, StoreError>;

    /// Stores the assistant message of an answer that starts (`status` streaming, no text
    /// yet) with its run's lease (until `lease_until`) and the reservation it settles, so
    /// that a sweeper can finish and bill it if the run dies; with `question`, the question
    /// it answers first, in the same write (both or neither: one transaction, where a
    /// question's own [`ChatStore::append_message`] and this would be two). Moves the
    /// session's `updated_at` as [`ChatStore::append_message`] does; `false` when the session
    /// is gone.
    async fn start_answer(
        &self,
        question: Option<&Message>,
        message: &Message,
        reservation: Option<&Reservation>,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Writes a streaming answer's text and usage so far and renews its lease; `false` when
    /// the message is no longer streaming (finished, swept, or its session deleted).
    async fn checkpoint_answer(
        &self,
        tenant: TenantId,
        id: MessageId,
        content: &str,
        usage: Usage,
        lease_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Writes an answer's end (text, citations, usage, status, error) over its message,
    /// whatever its status (the run that wrote it has the last word), and drops its lease
    /// and reservation; `false` when the message is gone (its session was deleted).
    async fn finish_answer(&self, message: &Message) -> Result<bool, StoreError>;

    /// Up to `limit` answers of any tenant still streaming whose lease ended before `now`,
    /// oldest first, each with the reservation it settles.
    async fn abandoned_answers(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<AbandonedAnswer>, StoreError>;

    /// Ends an abandoned answer as `incomplete` with `error`, if it is still streaming with
    /// its lease ended before `now` (one atomic step: of several sweepers, one wins);
    /// `true` for the winner.
    async fn close_abandoned(
        &self,
        tenant: TenantId,
        id: MessageId,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// The message with this id.
    async fn find_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// The session's messages, oldest first.
    async fn list_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError>;

    /// The session's last `limit` messages, oldest first.
    async fn recent_messages(
        &self,
        tenant: TenantId,
        session: ChatSessionId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// Stores a new assistant.
    async fn create_assistant(&self, assistant: &Assistant) -> Result<(), StoreError>;

    /// The assistant with this id.
    async fn find_assistant(
        &self,
        tenant: TenantId,
        id: AssistantId,
    ) -> Result<Option<Assistant>, StoreError>;

    /// The organization's assistants, oldest first.
    async fn list_assistants(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Assistant>, StoreError>;

    /// Replaces the assistant's client fields and `updated_at`; `false` when there is none.
    async fn update_assistant(&self, assistant: &Assistant) -> Result<bool, StoreError>;

    /// Deletes the assistant; sessions naming it keep going without it. `false` when there is
    /// none.
    async fn delete_assistant(&self, tenant: TenantId, id: AssistantId)
    -> Result<bool, StoreError>;

    /// Stores a rating, replacing the same principal's earlier one on the same message.
    async fn put_feedback(&self, feedback: &Feedback) -> Result<(), StoreError>;

    /// The organization's model whitelist, when a platform admin set one.
    async fn allowed_models(&self, tenant: TenantId) -> Result<Option<Vec<String>>, StoreError>;

    /// Sets (`Some`) or clears (`None`: back to the configured default) the whitelist.
    async fn set_allowed_models(
        &self,
        tenant: TenantId,
        models: Option<&[String]>,
    ) -> Result<(), StoreError>;
}

/// Failures of [`Knowledge`].
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A named collection or document is not the tenant's.
    #[error("not found")]
    NotFound,
    /// A bad request (the question is not searchable).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The embedding provider is down.
    #[error("{0}")]
    Unavailable(String),
    /// Metering refused the search's embedding call (the token quota is used up) or could not
    /// be reached.
    #[error(transparent)]
    Metering(#[from] MeterError),
    /// Anything else.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// What answers are grounded in: the organization's documents.
#[async_trait]
pub trait Knowledge: Send + Sync + std::fmt::Debug {
    /// The `top_k` chunks that best answer `question`, in these collections (all of the
    /// tenant's when `None`), best first, labelled `S1`, `S2`, …
    async fn search(
        &self,
        ctx: &TenantContext,
        question: &str,
        collections: Option<&[CollectionId]>,
        top_k: usize,
    ) -> Result<Vec<Source>, KnowledgeError>;

    /// A document's name and its first chunks, in order, up to `max_chars` characters.
    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        max_chars: usize,
    ) -> Result<(String, Vec<Source>), KnowledgeError>;

    /// `Ok` when every collection is the tenant's.
    async fn check_collections(
        &self,
        ctx: &TenantContext,
        ids: &[CollectionId],
    ) -> Result<(), KnowledgeError>;
}
