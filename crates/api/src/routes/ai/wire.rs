//! OpenAI's shapes: the completion request (and its mapping to the domain), the
//! `chat.completion` and `chat.completion.chunk` responses, the model list, and Quire's
//! `quire` extension.

use chat::{Citation, CompletionInput, Grounding, PromptMessage, PromptRole};
use kernel::{FieldError, InvalidInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::collection_ids;
use crate::dto::answers::{CitationDto, UsageDto};
use crate::error::ApiError;

/// What grounded answers add to OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuireResultDto {
    /// The answer's verified citations (unverifiable ones are dropped).
    citations: Vec<CitationDto>,
}

impl QuireResultDto {
    pub(super) fn verified(citations: &[Citation]) -> Self {
        Self {
            citations: citations.iter().map(CitationDto::from).collect(),
        }
    }
}

/// Text, or OpenAI's content parts (only `text` parts are supported).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// `[{type: "text", text}]`.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// Must be `text`.
    #[serde(rename = "type")]
    kind: String,
    /// The text.
    text: Option<String>,
}

/// One message of the conversation (other OpenAI fields, such as `name`, are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    role: String,
    /// The text; `null` reads as empty.
    content: Option<MessageContent>,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    include_usage: Option<bool>,
}

/// Quire's extension of the completion request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuireOptions {
    /// Only these collections (every document of the organization when absent).
    collection_ids: Option<Vec<String>>,
    /// Chunks to retrieve, 1 to 50 (default 8).
    top_k: Option<u32>,
}

/// `POST /ai/chat/completions`: OpenAI's request. Fields Quire does not use (`top_p`, `user`,
/// `seed`, …) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// A model of `GET /ai/models`.
    model: String,
    /// The conversation, oldest first: 1 to 500 messages.
    messages: Vec<CompletionMessage>,
    /// Stream `chat.completion.chunk` events (default false).
    stream: Option<bool>,
    /// Sampling temperature, 0 to 2.
    temperature: Option<f32>,
    /// Most tokens to produce, 1 to 32,768 (OpenAI's older name).
    max_tokens: Option<u32>,
    /// Most tokens to produce (wins over `max_tokens`).
    max_completion_tokens: Option<u32>,
    /// With `stream`: `include_usage` adds a last chunk with the usage.
    stream_options: Option<StreamOptions>,
    /// Number of choices: only 1.
    n: Option<u32>,
    /// Ground the answer in the organization's documents and return verified citations in
    /// `quire.citations` (with the OpenAI Python client: `extra_body={"quire": {...}}`).
    quire: Option<QuireOptions>,
}

/// How a completion is answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivery {
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) grounded: bool,
}

fn prompt_message(
    i: usize,
    m: CompletionMessage,
    errors: &mut Vec<FieldError>,
) -> Option<PromptMessage> {
    let role = match m.role.as_str() {
        "system" | "developer" => Some(PromptRole::System),
        "user" => Some(PromptRole::User),
        "assistant" => Some(PromptRole::Assistant),
        _ => {
            errors.push(FieldError::new(
                format!("messages[{i}].role"),
                "must be system, developer, user or assistant",
            ));
            None
        }
    };
    let content = match m.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t,
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => texts.push(t),
                    _ => errors.push(FieldError::new(
                        format!("messages[{i}].content[{j}]"),
                        "only text parts ({\"type\": \"text\", \"text\": …}) are supported",
                    )),
                }
            }
            texts.join("\n")
        }
    };
    Some(PromptMessage::new(role?, content))
}

impl CompletionRequest {
    pub(super) fn into_domain(self) -> Result<(CompletionInput, Delivery), ApiError> {
        let mut errors = Vec::new();
        if self.n.is_some_and(|n| n != 1) {
            errors.push(FieldError::new("n", "only 1 choice is supported"));
        }
        let messages: Vec<PromptMessage> = self
            .messages
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| prompt_message(i, m, &mut errors))
            .collect();
        let grounding = self.quire.map(|q| Grounding {
            collections: collection_ids(q.collection_ids, "quire.collection_ids", &mut errors),
            top_k: q.top_k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        });
        if !errors.is_empty() {
            return Err(InvalidInput(errors).into());
        }
        let delivery = Delivery {
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            grounded: grounding.is_some(),
        };
        let input = CompletionInput {
            model: self.model,
            messages,
            temperature: self.temperature,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            grounding,
        };
        Ok((input, delivery))
    }
}

/// The assistant's message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessageDto {
    /// Always `assistant`.
    pub(super) role: &'static str,
    /// The answer (grounded answers cite sources as `[S1]`).
    pub(super) content: String,
}

/// The one choice.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChoiceDto {
    pub(super) index: u32,
    pub(super) message: AssistantMessageDto,
    /// `stop`, or `length` when the answer was cut at `max_tokens`.
    pub(super) finish_reason: &'static str,
}

/// OpenAI's `finish_reason` of a finished answer: `length` when it was cut at `max_tokens`.
pub(super) fn finish_reason(answer: &chat::Answer) -> &'static str {
    if answer.truncated { "length" } else { "stop" }
}

/// OpenAI's `chat.completion`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionResponse {
    /// `chatcmpl-<uuid>`.
    pub(super) id: String,
    /// Always `chat.completion`.
    pub(super) object: &'static str,
    /// Unix seconds.
    pub(super) created: i64,
    pub(super) model: String,
    pub(super) choices: Vec<ChoiceDto>,
    pub(super) usage: UsageDto,
    /// Present when the request was grounded (`quire` given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quire: Option<QuireResultDto>,
}

/// What every chunk of one completion shares.
#[derive(Debug, Clone)]
pub(super) struct ChunkMeta {
    pub(super) id: String,
    pub(super) created: i64,
    pub(super) model: String,
}

impl ChunkMeta {
    pub(super) fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            model: model.to_owned(),
        }
    }
}

/// A `chat.completion.chunk`.
#[derive(Debug, Serialize)]
pub(super) struct ChunkDto<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: i64,
    pub(super) model: &'a str,
    pub(super) choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<UsageDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) quire: Option<QuireResultDto>,
}

#[derive(Debug, Serialize)]
pub(super) struct ChunkChoice {
    pub(super) index: u32,
    pub(super) delta: DeltaDto,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct DeltaDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<String>,
}

/// One model, OpenAI-shaped.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    /// The name to send as `model`.
    pub(super) id: String,
    /// Always `model`.
    pub(super) object: &'static str,
    /// Always 0.
    pub(super) created: i64,
    /// Always `quire`.
    pub(super) owned_by: &'static str,
}

/// OpenAI's model list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub(super) object: &'static str,
    pub(super) data: Vec<ModelDto>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> CompletionRequest {
        serde_json::from_value(body).expect("a completion request")
    }

    #[test]
    fn openai_requests_map_to_the_domain() {
        let (input, delivery) = request(serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": "there"}], "name": "ann"},
                {"role": "assistant", "content": null}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "top_p": 0.5,
            "n": 1
        }))
        .into_domain()
        .expect("valid");
        let roles: Vec<_> = input.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [PromptRole::System, PromptRole::User, PromptRole::Assistant]
        );
        assert_eq!(input.messages[1].content, "Hello\nthere");
        assert_eq!(input.messages[2].content, "");
        assert_eq!(input.max_tokens, Some(20));
        assert!(input.grounding.is_none());
        assert!(delivery.stream && delivery.include_usage && !delivery.grounded);
    }

    #[test]
    fn bad_roles_parts_n_and_collections_are_named() {
        let err = request(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "tool", "content": "x"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
            "n": 2,
            "quire": {"collection_ids": ["nope"]}
        }))
        .into_domain()
        .expect_err("invalid");
        let ApiError::Validation(fields) = err else {
            panic!("a validation error, got {err:?}");
        };
        let mut names: Vec<_> = fields.into_iter().map(|f| f.field).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "messages[0].role",
                "messages[1].content[0]",
                "n",
                "quire.collection_ids[0]"
            ]
        );
    }
}
