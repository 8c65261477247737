//! Chat: sessions, grounded streamed answers with verified citations, assistants, the
//! OpenAI-compatible completions and the AI tasks (summaries, Q&A, mind maps, analysis).
//!
//! `model` holds the types, `ports` the traits adapters implement (the language model, the
//! store, the knowledge a question is grounded in), `prompt` the templates and the token
//! budget, `citations` the verification of what a model cites, `call` the one model-call core
//! (every answer, task and completion reads its model through it), `stream` the runs of
//! answers and their viewers (SSE and WebSocket are views of them), `service` the use cases,
//! `tasks` the AI tasks. Every model call is metered (`kernel::Meter`): its tokens are
//! reserved before the provider is called and settled once it ends.
//! Depends only on `kernel` and the `documents` domain (its ids); the composition root adapts
//! retrieval to the [`Knowledge`] port.

pub mod call;
pub mod citations;
mod metered;
pub mod model;
pub mod neutralize;
pub mod ports;
pub mod prompt;
pub mod service;
pub mod stream;
pub mod tasks;

pub use call::{Answer, CallEvent, Failure, ModelCall};
pub use model::*;
pub use ports::*;
pub use service::{
    Chat, ChatError, ChatPorts, ChatSettings, Completion, CompletionInput, Grounding,
};
pub use stream::{AnswerError, StreamEvent, Subscription};
pub use tasks::{Analysis, Entity, MindNode, Sentiment, TaskInput, TextAnswer};
