//! Adapters for OpenAI-compatible model providers (OpenAI and every server that speaks its
//! HTTP API: vLLM, Ollama, LM Studio, TEI, gateways).
//!
//! - [`config`]: [`ProviderConfig`] and [`install_crypto_provider`];
//! - [`client`]: the shared HTTP client (reqwest on rustls with ring),
//!   the retry policy and error mapping, and the [`Pause`] between retries;
//! - [`embeddings`]: [`OpenAiEmbedder`], a [`retrieval::Embedder`] on `POST /embeddings`;
//! - [`chat`]: [`OpenAiChat`], a [`chat::ChatModel`] on streamed `POST /chat/completions`
//!   (with [`SseParser`], the server-sent events parser it reads the stream with);
//! - [`rerank`]: [`HttpReranker`], a [`retrieval::Reranker`] on Cohere/Jina-style
//!   `POST /rerank`;
//! - [`health`]: [`ProviderHealth`], the provider's readiness check and the circuit breaker
//!   its calls go through.
//!
//! HTTPS needs the `tls` feature (rustls with the ring provider; without it an `https://`
//! base URL is refused with [`ConfigError::NoTls`]). With it, reqwest is built without a
//! provider of its own for the whole build, so call [`install_crypto_provider`] once at
//! start-up, before any reqwest client is built anywhere in the process (the constructors here
//! call it too; a client built before it panics).

pub mod chat;
pub mod client;
pub mod config;
pub mod embeddings;
pub mod health;
pub mod rerank;

pub use chat::{ChatConfig, OpenAiChat, SseEvent, SseParser, SseTooLong};
pub use client::{ConfigError, MAX_RETRY_AFTER, Pause, TokioPause};
pub use config::{ProviderConfig, install_crypto_provider};
pub use embeddings::{EmbeddingConfig, OpenAiEmbedder, known_dimensions};
/// The future a [`Pause`] answers.
pub use futures_util::future::BoxFuture;
pub use health::ProviderHealth;
pub use rerank::{HttpReranker, RerankConfig};
