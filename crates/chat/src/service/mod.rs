//! The chat use cases, one module per seam: `models` (the whitelist, token counting and the
//! reservation of a chat call), `sessions` (sessions, their messages, feedback), `answers`
//! (questions answered in a session, streamed through [`crate::stream`] and resumed),
//! `assistants`, and `completions` (the OpenAI-compatible completions). The AI tasks are in
//! `tasks`. Every model call goes through [`crate::call::ModelCall`].

mod answers;
mod assistants;
mod completions;
mod models;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

pub use completions::{
    Completion, CompletionInput, Grounding, MAX_COMPLETION_CHARS, MAX_COMPLETION_MESSAGES,
    MAX_MAX_TOKENS,
};
use documents::CollectionId;
use kernel::cache::Cache;
use kernel::{Clock, InvalidInput, Meter, MeterError};

use crate::ports::{ChatModel, ChatStore, Knowledge, KnowledgeError, StoreError};
use crate::stream::{AnswerError, Runs};

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
    /// The model provider is known to be down: nothing was tried; ask again after this.
    #[error("the model provider is down; try again in {} s", kernel::clock::whole_secs_up(*.0).max(1))]
    ProviderDown(std::time::Duration),
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
    /// An answer could not be stored: storage stayed down longer than answers are retried.
    #[error("the answer could not be stored; storage is unavailable")]
    StorageUnavailable,
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
            AnswerError::ModelFailed => Self::Unknown(anyhow::anyhow!(e.to_string())),
            AnswerError::NotStored => Self::StorageUnavailable,
            AnswerError::ProviderUnavailable(m) => Self::ProviderUnavailable(m),
            AnswerError::ProviderDown(wait) => Self::ProviderDown(wait),
            AnswerError::Incomplete | AnswerError::Stalled => {
                Self::ProviderUnavailable(e.to_string())
            }
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
    /// How long a streaming answer's run holds its message without a checkpoint; after
    /// that any server's sweeper ends it as `incomplete` and bills its checkpoint.
    pub answer_lease: Duration,
    /// How long an answer's end (and its usage) is retried while the database is down
    /// before the answer is given up (the client then gets `storage_unavailable`).
    pub store_retry_for: Duration,
    /// How long after its lease ran out an answer is left to its run before it is swept:
    /// at least what a run cut off from the database keeps retrying its usage and its end
    /// (`store_retry_for` plus the meter's ledger retry), so that a live run always settles
    /// its own answer.
    pub sweep_grace: Duration,
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
            answer_lease: Duration::from_secs(30),
            store_retry_for: Duration::from_secs(60),
            sweep_grace: Duration::from_secs(120),
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
    /// The cache every server shares: a viewer following an answer that runs on another
    /// server keeps it alive, or cancels it, through keys here (see [`crate::stream`]).
    pub cache: Arc<dyn Cache>,
}

/// The chat use cases.
#[derive(Debug, Clone)]
pub struct Chat {
    pub(crate) ports: ChatPorts,
    pub(crate) settings: ChatSettings,
    pub(crate) runs: Arc<Runs>,
    /// Where `answer.completed` goes.
    pub(crate) events: Arc<dyn kernel::Events>,
    pub(crate) trail: Arc<dyn kernel::AccessTrail>,
    /// Organizations' stored whitelists read lately ([`Chat::with_recheck`]; off by default).
    pub(crate) recent_whitelists: Arc<kernel::memo::Memo<kernel::TenantId, Option<Vec<String>>>>,
}

impl Chat {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: ChatPorts, settings: ChatSettings) -> Self {
        let runs = Arc::new(Runs::new(
            settings.resume_grace,
            settings.replay_keep,
            ports.cache.clone(),
        ));
        Self {
            ports,
            settings,
            runs,
            events: Arc::new(kernel::NoEvents),
            trail: Arc::new(kernel::NoTrail),
            recent_whitelists: Arc::new(kernel::memo::Memo::off()),
        }
    }

    /// Each organization's stored model whitelist reused for `ttl` (`auth.recheck_ms`; 0:
    /// read on every question, the default), forgotten at once when it is set through these
    /// use cases: a model removed from the whitelist through another server is refused here
    /// within `ttl` (docs/security.md, "Revocation"), through this one at once.
    #[must_use]
    pub fn with_recheck(mut self, ttl: Duration) -> Self {
        self.recent_whitelists = Arc::new(kernel::memo::Memo::new(ttl, 4_096));
        self
    }

    /// Publishes `answer.completed` to `events` when an answer's end is stored.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn kernel::Events>) -> Self {
        self.events = events;
        self
    }

    /// Records each stored answer's cited documents (`answer.cited`) on `trail`.
    #[must_use]
    pub fn with_trail(mut self, trail: Arc<dyn kernel::AccessTrail>) -> Self {
        self.trail = trail;
        self
    }
}

/// `ids` without repeats, in their first order.
fn dedup(mut ids: Vec<CollectionId>) -> Vec<CollectionId> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|c| seen.insert(*c));
    ids
}
