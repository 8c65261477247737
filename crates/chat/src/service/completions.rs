//! The OpenAI-compatible completions, optionally grounded in the organization's documents.

use documents::CollectionId;
use kernel::{FieldError, InvalidInput, TenantContext};

use super::{Chat, ChatError};
use crate::call::ModelCall;
use crate::metered::Held;
use crate::model::{ChatRequest, Locale, PromptMessage, PromptRole, Task};
use crate::ports::ChatModel;
use crate::prompt::{self, PromptInput};

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

impl Chat {
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
        // The stream slot is taken beside the whitelist read (neither needs the other); a
        // slot taken for a refused model is given back at once.
        let (mut held, (model_name, model)) = Held::slot_beside(
            self.ports.meter.clone(),
            ctx.tenant_id(),
            self.resolve_model(ctx.tenant_id(), Some(&input.model)),
        )
        .await?;
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
        let prompt_tokens =
            self.count_prompt_tokens(model_name, messages.iter().map(|m| m.content.as_str()));
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
