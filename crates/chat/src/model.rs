//! Chat's types: sessions, messages, citations, assistants, feedback, and what is asked of a
//! language model.

use documents::{ChunkId, CollectionId, DocumentId};
use kernel::{FieldError, InvalidInput, Principal, Role, TenantContext, TenantId};
use time::OffsetDateTime;

kernel::define_id!(
    /// A conversation.
    ChatSessionId
);
kernel::define_id!(
    /// One message of a conversation.
    MessageId
);
kernel::define_id!(
    /// A reusable preset of instructions, model, collections and temperature.
    AssistantId
);

/// Longest session title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest system prompt or assistant instructions, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 8_000;
/// Longest message a client may send, in characters.
pub const MAX_CONTENT_CHARS: usize = 16_000;
/// Most collections a session or assistant may name.
pub const MAX_COLLECTIONS: usize = 20;
/// Longest model name.
pub const MAX_MODEL_CHARS: usize = 100;
/// Longest assistant name.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest feedback comment.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// A conversation of one caller (a user or an API key) in one organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Id.
    pub id: ChatSessionId,
    /// The organization.
    pub tenant_id: TenantId,
    /// Who started it; only they see it.
    pub owner: Principal,
    /// Title.
    pub title: String,
    /// Collections its answers are grounded in; all of the organization's documents when
    /// empty (and no assistant names any).
    pub collection_ids: Vec<CollectionId>,
    /// The model; the assistant's, else the organization's default, when `None`.
    pub model: Option<String>,
    /// Extra instructions for this conversation.
    pub system_prompt: Option<String>,
    /// The assistant whose preset applies.
    pub assistant_id: Option<AssistantId>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed (or last message).
    pub updated_at: OffsetDateTime,
}

/// Fields of a session a client sets (validated by [`SessionFields::validate`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFields {
    /// Title.
    pub title: Option<String>,
    /// Collections.
    pub collection_ids: Option<Vec<CollectionId>>,
    /// Model (`Some(None)` clears it).
    pub model: Option<Option<String>>,
    /// System prompt (`Some(None)` clears it).
    pub system_prompt: Option<Option<String>>,
    /// Assistant (`Some(None)` clears it).
    pub assistant_id: Option<Option<AssistantId>>,
}

impl SessionFields {
    /// Checks lengths and counts.
    ///
    /// # Errors
    /// [`InvalidInput`] naming each bad field.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let mut errors = Vec::new();
        if let Some(t) = &self.title {
            check_text(&mut errors, "title", t, MAX_TITLE_CHARS, true);
        }
        if let Some(c) = &self.collection_ids {
            check_collections(&mut errors, c);
        }
        if let Some(Some(m)) = &self.model {
            check_text(&mut errors, "model", m, MAX_MODEL_CHARS, false);
        }
        if let Some(Some(p)) = &self.system_prompt {
            check_text(
                &mut errors,
                "system_prompt",
                p,
                MAX_INSTRUCTIONS_CHARS,
                true,
            );
        }
        InvalidInput::check(errors)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRole {
    /// The caller.
    User,
    /// The model.
    Assistant,
}

impl MessageRole {
    /// `user` or `assistant`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

/// Whether a message is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Whole.
    Complete,
    /// Cancelled or failed (before or after its first token), or left by a server that
    /// stopped: holds what was produced, and why in `error`.
    Incomplete,
    /// An answer being written: its text and usage so far are checkpointed while the run
    /// that writes it holds its lease.
    Streaming,
}

impl MessageStatus {
    /// `complete` or `incomplete`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Incomplete => "incomplete",
            Self::Streaming => "streaming",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "complete" => Some(Self::Complete),
            "incomplete" => Some(Self::Incomplete),
            "streaming" => Some(Self::Streaming),
            _ => None,
        }
    }
}

/// Tokens one model call consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion.
    #[must_use]
    pub const fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A verified citation: `quote` occurs in the chunk at characters `start..end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The document's name.
    pub document_name: String,
    /// The page the chunk starts on (PDF).
    pub page: Option<u32>,
    /// The cited text, exactly as it is in the chunk.
    pub quote: String,
    /// The chunk's retrieval score.
    pub score: f32,
    /// Where the quote starts in the chunk's text, in characters.
    pub start: u32,
    /// Where it ends (exclusive), in characters.
    pub end: u32,
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Id.
    pub id: MessageId,
    /// The organization.
    pub tenant_id: TenantId,
    /// The conversation.
    pub session_id: ChatSessionId,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// Verified citations (assistant messages).
    pub citations: Vec<Citation>,
    /// Tokens (assistant messages).
    pub usage: Option<Usage>,
    /// Whole, cut short, or still being written.
    pub status: MessageStatus,
    /// The model that wrote it (assistant messages).
    pub model: Option<String>,
    /// Why an answer ended early (an `incomplete` one): a sentence for the client, never a
    /// cause chain.
    pub error: Option<String>,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// A preset of instructions, model, collections and temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct Assistant {
    /// Id.
    pub id: AssistantId,
    /// The organization.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// Instructions added to the system prompt.
    pub instructions: String,
    /// The model (the organization's default when `None`).
    pub model: Option<String>,
    /// Collections answers are grounded in.
    pub collection_ids: Vec<CollectionId>,
    /// Sampling temperature, 0..2.
    pub temperature: Option<f32>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Who created it (`None` for assistants older than this field): with admins, the only
    /// one who may change or delete it.
    pub created_by: Option<Principal>,
}

impl Assistant {
    /// Whether `ctx` may change or delete this assistant: its instructions enter the system
    /// prompt of every member who uses it, so only its creator or an admin (or owner) may.
    #[must_use]
    pub fn editable_by(&self, ctx: &TenantContext) -> bool {
        ctx.role().satisfies(Role::Admin) || self.created_by == Some(ctx.principal())
    }
}

/// Fields of an assistant a client sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssistantFields {
    /// Name.
    pub name: Option<String>,
    /// Instructions.
    pub instructions: Option<String>,
    /// Model (`Some(None)` clears it).
    pub model: Option<Option<String>>,
    /// Collections.
    pub collection_ids: Option<Vec<CollectionId>>,
    /// Temperature (`Some(None)` clears it).
    pub temperature: Option<Option<f32>>,
}

impl AssistantFields {
    /// Checks lengths, counts and the temperature range.
    ///
    /// # Errors
    /// [`InvalidInput`] naming each bad field.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let mut errors = Vec::new();
        if let Some(n) = &self.name {
            check_text(&mut errors, "name", n, MAX_NAME_CHARS, false);
        }
        if let Some(i) = &self.instructions {
            check_text(&mut errors, "instructions", i, MAX_INSTRUCTIONS_CHARS, true);
        }
        if let Some(Some(m)) = &self.model {
            check_text(&mut errors, "model", m, MAX_MODEL_CHARS, false);
        }
        if let Some(c) = &self.collection_ids {
            check_collections(&mut errors, c);
        }
        if let Some(Some(t)) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push(FieldError::new("temperature", "must be between 0 and 2"));
        }
        InvalidInput::check(errors)
    }
}

/// Thumbs up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    /// Good answer.
    Up,
    /// Bad answer.
    Down,
}

impl Rating {
    /// `up` or `down`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "up" => Some(Self::Up),
            "down" => Some(Self::Down),
            _ => None,
        }
    }
}

/// A caller's rating of an assistant message (one per caller and message; a new one
/// replaces it).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The organization.
    pub tenant_id: TenantId,
    /// The rated message.
    pub message_id: MessageId,
    /// Who rated it.
    pub principal: Principal,
    /// Up or down.
    pub rating: Rating,
    /// Why.
    pub comment: Option<String>,
    /// When.
    pub created_at: OffsetDateTime,
}

/// A prompt message's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptRole {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
}

impl PromptRole {
    /// OpenAI's role name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    /// Author.
    pub role: PromptRole,
    /// Text.
    pub content: String,
}

impl PromptMessage {
    /// A message.
    pub fn new(role: PromptRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A retrieved chunk as a prompt shows it: `label` (`S1`, `S2`, …) is the short id the model
/// cites it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// `S1`, `S2`, …
    pub label: String,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The document's name.
    pub document_name: String,
    /// The page it starts on.
    pub page: Option<u32>,
    /// The chunk's text.
    pub text: String,
    /// Retrieval score.
    pub score: f32,
}

/// Summary styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryStyle {
    /// A few sentences.
    Concise,
    /// Several paragraphs.
    Detailed,
    /// A bullet list.
    Bullets,
}

impl SummaryStyle {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Concise => "concise",
            Self::Detailed => "detailed",
            Self::Bullets => "bullets",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "concise" => Some(Self::Concise),
            "detailed" => Some(Self::Detailed),
            "bullets" => Some(Self::Bullets),
            _ => None,
        }
    }
}

/// What `/documents/{id}/analyze` can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnalysisTask {
    /// A concise summary.
    Summary,
    /// Key terms.
    Keywords,
    /// Named entities.
    Entities,
    /// Overall sentiment.
    Sentiment,
}

impl AnalysisTask {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Keywords => "keywords",
            Self::Entities => "entities",
            Self::Sentiment => "sentiment",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "summary" => Some(Self::Summary),
            "keywords" => Some(Self::Keywords),
            "entities" => Some(Self::Entities),
            "sentiment" => Some(Self::Sentiment),
            _ => None,
        }
    }
}

/// What a request asks of the model, beside its prompt. A hosted model reads only the
/// prompt; the local extractive answerer, which cannot follow instructions, reads this.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// A free conversation (the OpenAI-compatible route without grounding).
    Chat,
    /// Answer `question` from the request's sources, citing them as `[S1]`.
    Answer {
        /// The question.
        question: String,
    },
    /// Summarize the sources.
    Summarize {
        /// How.
        style: SummaryStyle,
    },
    /// A mind map of the sources as JSON `{"label", "children": [...]}`.
    Mindmap {
        /// The root's label.
        topic: String,
        /// Levels below the root, 1..4.
        depth: u8,
    },
    /// A JSON object with one key per task (see [`AnalysisTask`]).
    Analyze {
        /// The tasks.
        tasks: Vec<AnalysisTask>,
    },
}

/// A request to a language model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model's name.
    pub model: String,
    /// The prompt.
    pub messages: Vec<PromptMessage>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Most tokens to produce.
    pub max_tokens: Option<u32>,
    /// What is asked (see [`Task`]).
    pub task: Task,
    /// The sources the prompt fences in, in label order.
    pub sources: Vec<Source>,
}

/// The locale prompts are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    /// English.
    #[default]
    En,
    /// Persian.
    Fa,
}

impl Locale {
    /// From a tag such as `fa`, `fa-IR` or `en-US` (English for anything else).
    #[must_use]
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("fa") || primary.eq_ignore_ascii_case("per") {
            Self::Fa
        } else {
            Self::En
        }
    }

    /// Guesses from text: Persian when most letters are Arabic-script.
    #[must_use]
    pub fn detect(text: &str) -> Self {
        let (mut arabic, mut other) = (0usize, 0usize);
        for c in text.chars().filter(|c| c.is_alphabetic()) {
            if ('\u{0600}'..='\u{06FF}').contains(&c) || ('\u{FB50}'..='\u{FDFF}').contains(&c) {
                arabic += 1;
            } else {
                other += 1;
            }
        }
        if arabic > other { Self::Fa } else { Self::En }
    }
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, v: &str, max: usize, empty_ok: bool) {
    if !empty_ok && kernel::text::clean_name(v).is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if v.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if v.chars().any(|c| c == '\0') {
        errors.push(FieldError::new(field, "must not contain NUL"));
    }
}

fn check_collections(errors: &mut Vec<FieldError>, ids: &[CollectionId]) {
    if ids.len() > MAX_COLLECTIONS {
        errors.push(FieldError::new(
            "collection_ids",
            format!("at most {MAX_COLLECTIONS} collections"),
        ));
    }
}

/// Validates a message a client sends.
///
/// # Errors
/// [`InvalidInput`] on `content` when empty, too long or holding NUL.
pub fn validate_content(content: &str) -> Result<(), InvalidInput> {
    let mut errors = Vec::new();
    check_text(&mut errors, "content", content, MAX_CONTENT_CHARS, false);
    InvalidInput::check(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_from_tags_and_text() {
        assert_eq!(Locale::from_tag("fa-IR"), Locale::Fa);
        assert_eq!(Locale::from_tag("en"), Locale::En);
        assert_eq!(Locale::from_tag("de"), Locale::En);
        assert_eq!(
            Locale::detect("قرارداد اجاره چه زمانی تمام می‌شود؟"),
            Locale::Fa
        );
        assert_eq!(Locale::detect("When does the lease end?"), Locale::En);
    }

    #[test]
    fn fields_are_validated() {
        let f = AssistantFields {
            name: Some(" ".into()),
            temperature: Some(Some(3.0)),
            ..AssistantFields::default()
        };
        let e = f.validate().err().map(|e| e.0.len());
        assert_eq!(e, Some(2));
        assert!(validate_content("").is_err());
        assert!(validate_content(&"x".repeat(MAX_CONTENT_CHARS + 1)).is_err());
        assert!(validate_content("hello").is_ok());
    }
}
