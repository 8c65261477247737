//! [`HttpReranker`]: a [`retrieval::Reranker`] on the `POST /rerank` that Cohere, Jina, Voyage,
//! Hugging Face TEI and most gateways expose: `{model, query, documents, top_n}` →
//! `{results: [{index, relevance_score}]}`.
//!
//! One attempt, bounded by its own timeout and never retried: a search waits for it, and the
//! fused order is a good answer when the reranker is slow or down (the stage in `retrieval`
//! falls back with a warning). It does not share the provider's circuit breaker either: a
//! failing reranker must not mark the embedding provider down.

use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use retrieval::{RerankError, Reranked, Reranker};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::client::{ConfigError, error_message};
use crate::config::install_crypto_provider;

/// Where the reranker is and how long it may take.
#[derive(Clone)]
pub struct RerankConfig {
    /// The API root (`https://api.cohere.com/v2`, `https://api.jina.ai/v1`); requests go to
    /// `{base_url}/rerank`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<SecretString>,
    /// The model (`rerank-v3.5`, `jina-reranker-v2-base-multilingual`).
    pub model: String,
    /// Limit of the whole call.
    pub timeout: Duration,
}

impl fmt::Debug for RerankConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RerankConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A reranker over HTTP.
#[derive(Debug, Clone)]
pub struct HttpReranker {
    http: reqwest::Client,
    url: String,
    config: RerankConfig,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    query: &'a str,
    documents: &'a [String],
    top_n: usize,
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<Scored>,
    /// Jina, TEI-style gateways.
    usage: Option<Usage>,
    /// Cohere.
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Scored {
    index: usize,
    relevance_score: f32,
}

#[derive(Deserialize)]
struct Usage {
    total_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Meta {
    tokens: Option<MetaTokens>,
}

#[derive(Deserialize)]
struct MetaTokens {
    input_tokens: Option<f64>,
}

impl HttpReranker {
    /// A reranker for `config`.
    ///
    /// # Errors
    /// [`ConfigError`] on a base URL that is not http(s) (https without the `tls` feature),
    /// a zero timeout, or a client that cannot be built.
    pub fn new(config: RerankConfig) -> Result<Self, ConfigError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                if url.scheme() == "https" && !cfg!(feature = "tls") {
                    return Err(ConfigError::NoTls);
                }
            }
            _ => return Err(ConfigError::BaseUrl(config.base_url.clone())),
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "the rerank timeout must be positive".to_owned(),
            ));
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("quire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            url: format!("{base}/rerank"),
            config,
        })
    }
}

#[async_trait::async_trait]
impl Reranker for HttpReranker {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn rerank(
        &self,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<Reranked, RerankError> {
        let body = serde_json::to_vec(&Request {
            model: &self.config.model,
            query,
            documents,
            top_n,
        })
        .map_err(|e| RerankError::Unknown(e.into()))?;
        let mut req = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let res = req.send().await.map_err(|e| {
            RerankError::Unavailable(if e.is_timeout() {
                format!("the reranker timed out after {:?}", self.config.timeout)
            } else {
                "the reranker could not be reached".to_owned()
            })
        })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| {
            RerankError::Unavailable(if e.is_timeout() {
                format!("the reranker timed out after {:?}", self.config.timeout)
            } else {
                "the reranker's answer was cut".to_owned()
            })
        })?;
        if !status.is_success() {
            return Err(RerankError::Unavailable(format!(
                "the reranker answered HTTP {}{}",
                status.as_u16(),
                error_message(&bytes)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            RerankError::Unknown(
                anyhow::Error::new(e).context("the reranker's answer is not the expected JSON"),
            )
        })?;
        let mut order: Vec<(usize, f32)> = answer
            .results
            .into_iter()
            .map(|s| (s.index, s.relevance_score))
            .collect();
        // Best first, whatever order the provider lists them in.
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a token count
        let tokens = answer
            .usage
            .and_then(|u| u.total_tokens.or(u.prompt_tokens))
            .or_else(|| {
                answer
                    .meta
                    .and_then(|m| m.tokens)
                    .and_then(|t| t.input_tokens)
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| t as u64)
            });
        Ok(Reranked { order, tokens })
    }
}
