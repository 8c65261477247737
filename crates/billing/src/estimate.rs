//! `POST /usage/estimate` as a use case: what a call would cost at most, counted before it is
//! sent. The models and their tokenizers belong to chat and retrieval; they reach billing
//! through the [`ModelCatalog`] port (the composition root adapts their services to it).

use std::sync::Arc;

use async_trait::async_trait;
use kernel::metering::Tokens;
use kernel::{FieldError, InvalidInput, TenantId};

use crate::service::{Billing, BillingError};

/// Most characters an estimate counts.
pub const MAX_ESTIMATE_CHARS: usize = 400_000;
/// Most messages an estimate counts.
pub const MAX_ESTIMATE_MESSAGES: usize = 1_000;
/// Largest `max_tokens` of an estimate.
pub const MAX_ESTIMATE_COMPLETION: u32 = 1_000_000;

/// The models there are and how they count tokens (chat and retrieval provide it).
#[async_trait]
pub trait ModelCatalog: Send + Sync {
    /// The chat models `tenant` may use (its whitelist among the served ones).
    ///
    /// # Errors
    /// [`BillingError::Unknown`] when the whitelist cannot be read.
    async fn chat_models(&self, tenant: TenantId) -> Result<Vec<String>, BillingError>;

    /// Every chat model served, in the configured order.
    fn served_chat_models(&self) -> Vec<String>;

    /// Every embedding model there is.
    fn embedding_models(&self) -> Vec<String>;

    /// Tokens of a conversation sent to chat model `model`, as a completion counts (and
    /// reserves) them.
    fn count_prompt_tokens(&self, model: &str, contents: &[&str]) -> u32;

    /// Tokens of `text` for chat model `model`.
    fn count_tokens(&self, model: &str, text: &str) -> u32;
}

/// One message of an estimate.
#[derive(Debug, Clone)]
pub struct EstimateMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// What to estimate: a chat request (`messages`) or a text to embed or send (`text`), exactly
/// one of them.
#[derive(Debug, Clone)]
pub struct EstimateRequest {
    /// A chat model the organization may use, or an embedding model.
    pub model: String,
    /// The conversation.
    pub messages: Option<Vec<EstimateMessage>>,
    /// A text.
    pub text: Option<String>,
    /// Most tokens to produce (chat models; default the configured answer budget).
    pub max_tokens: Option<u32>,
}

/// What a call would cost at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The model.
    pub model: String,
    /// Tokens the request sends (counted with the model's tokenizer).
    pub prompt_tokens: u64,
    /// The most tokens it may produce (0 for embeddings).
    pub max_completion_tokens: u64,
    /// The cost of both, in integer micro-units (0 for local models).
    pub estimated_cost: i64,
}

/// The estimate use case.
pub struct Estimates {
    catalog: Arc<dyn ModelCatalog>,
    billing: Arc<Billing>,
    max_answer_tokens: u32,
}

impl std::fmt::Debug for Estimates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimates")
            .field("max_answer_tokens", &self.max_answer_tokens)
            .finish_non_exhaustive()
    }
}

impl Estimates {
    /// Estimates over `catalog`, priced by `billing`; an answer may take `max_answer_tokens`
    /// unless a request says (`chat.max_answer_tokens`).
    #[must_use]
    pub fn new(
        catalog: Arc<dyn ModelCatalog>,
        billing: Arc<Billing>,
        max_answer_tokens: u32,
    ) -> Self {
        Self {
            catalog,
            billing,
            max_answer_tokens,
        }
    }

    /// Counts `request`'s tokens for `tenant` and prices them.
    ///
    /// # Errors
    /// [`BillingError::Invalid`] naming every failing field (size, shape, roles,
    /// `max_tokens`, a model the organization does not have); [`BillingError::Unknown`] when
    /// the models cannot be listed.
    pub async fn estimate(
        &self,
        tenant: TenantId,
        request: EstimateRequest,
    ) -> Result<Estimate, BillingError> {
        let mut errors = shape_errors(&request);
        let allowed = self.catalog.chat_models(tenant).await?;
        let embedding_models = self.catalog.embedding_models();
        let is_chat = allowed.contains(&request.model);
        let is_embedding = embedding_models.contains(&request.model);
        if !is_chat && !is_embedding {
            let mut known = allowed.clone();
            known.extend(embedding_models);
            errors.push(FieldError::new(
                "model",
                format!(
                    "is not a model of this organization; known: {}",
                    known.join(", ")
                ),
            ));
        }
        if is_embedding && !is_chat && request.max_tokens.is_some() {
            errors.push(FieldError::new(
                "max_tokens",
                "an embedding model produces no tokens",
            ));
        }
        InvalidInput::check(errors)?;
        // Chat models count with their own tokenizer; embedding models with tiktoken's
        // cl100k, as every served chat model does.
        let counting_model = if is_chat {
            request.model.clone()
        } else {
            self.catalog
                .served_chat_models()
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        let prompt_tokens = u64::from(match (&request.messages, &request.text) {
            (Some(m), _) => {
                let contents: Vec<&str> = m.iter().map(|x| x.content.as_str()).collect();
                self.catalog.count_prompt_tokens(&counting_model, &contents)
            }
            (None, Some(t)) => self.catalog.count_tokens(&counting_model, t),
            (None, None) => 0,
        });
        let max_completion_tokens = if is_chat {
            u64::from(request.max_tokens.unwrap_or(self.max_answer_tokens))
        } else {
            0
        };
        let estimated_cost = self.billing.cost(
            &request.model,
            Tokens {
                prompt: prompt_tokens,
                completion: max_completion_tokens,
            },
        );
        Ok(Estimate {
            model: request.model,
            prompt_tokens,
            max_completion_tokens,
            estimated_cost,
        })
    }
}

/// The request's own faults: size, exactly one of `messages` and `text`, roles, `max_tokens`.
fn shape_errors(request: &EstimateRequest) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let chars = request.text.as_ref().map_or(0, |t| t.chars().count())
        + request
            .messages
            .iter()
            .flatten()
            .map(|m| m.content.chars().count())
            .sum::<usize>();
    if chars > MAX_ESTIMATE_CHARS {
        errors.push(FieldError::new(
            "messages",
            format!("at most {MAX_ESTIMATE_CHARS} characters in all"),
        ));
    }
    match (&request.messages, &request.text) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(FieldError::new("messages", "give either messages or text"));
        }
        (Some(m), None) if m.is_empty() || m.len() > MAX_ESTIMATE_MESSAGES => {
            errors.push(FieldError::new(
                "messages",
                format!("must hold 1 to {MAX_ESTIMATE_MESSAGES} messages"),
            ));
        }
        (Some(m), None) => {
            for (i, msg) in m.iter().enumerate() {
                if !matches!(msg.role.as_str(), "system" | "user" | "assistant") {
                    errors.push(FieldError::new(
                        format!("messages[{i}].role"),
                        "must be system, user or assistant",
                    ));
                }
            }
        }
        (None, Some(_)) => {}
    }
    if request
        .max_tokens
        .is_some_and(|t| t == 0 || t > MAX_ESTIMATE_COMPLETION)
    {
        errors.push(FieldError::new(
            "max_tokens",
            format!("must be between 1 and {MAX_ESTIMATE_COMPLETION}"),
        ));
    }
    errors
}
