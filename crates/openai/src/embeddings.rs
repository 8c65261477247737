//! [`OpenAiEmbedder`]: `POST {base_url}/embeddings` on an OpenAI-compatible provider, as a
//! [`retrieval::Embedder`].

use std::ops::Range;
use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use retrieval::{EmbedError, Embedder, EmbeddingModel, Embeddings, MAX_DIMENSIONS};
use serde::{Deserialize, Serialize};

use crate::client::{ConfigError, HttpClient, Pause};
use crate::config::ProviderConfig;

/// Texts (bytes) above which a local token count runs on the blocking pool.
const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// Native dimensions of well-known models (used when `dimensions` is not set).
const KNOWN_MODELS: &[(&str, u32)] = &[
    ("text-embedding-3-small", 1536),
    ("text-embedding-3-large", 3072),
    ("text-embedding-ada-002", 1536),
];

/// The native dimension of a well-known model.
#[must_use]
pub fn known_dimensions(model: &str) -> Option<u32> {
    KNOWN_MODELS
        .iter()
        .find(|(name, _)| *name == model)
        .map(|(_, dims)| *dims)
}

/// Which model to call, and how to batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// The provider's model name (`text-embedding-3-small`).
    pub model: String,
    /// The dimension to ask for (sent as `dimensions`, which models like
    /// `text-embedding-3-*` honour by shortening their vectors). When `None`, the model's
    /// known native dimension, and nothing is sent.
    pub dimensions: Option<u32>,
    /// Most inputs per request (OpenAI takes up to 2,048).
    pub max_batch_inputs: usize,
    /// Most characters per request (about 4 characters a token: 400,000 ≈ 100k tokens, below
    /// OpenAI's 300k tokens per request). One input longer than this goes alone.
    pub max_batch_chars: usize,
}

impl Default for EmbeddingConfig {
    /// `text-embedding-3-small` (1536 dimensions), 256 inputs and 400,000 characters per
    /// request.
    fn default() -> Self {
        Self::new("text-embedding-3-small")
    }
}

impl EmbeddingConfig {
    /// `model` with its native dimension, 256 inputs and 400,000 characters per request.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            dimensions: None,
            max_batch_inputs: 256,
            max_batch_chars: 400_000,
        }
    }
}

/// Embeddings from an OpenAI-compatible provider (OpenAI, Azure-style gateways, vLLM, Ollama,
/// LM Studio, TEI …).
///
/// Inputs are split into requests within both batch limits and sent one request at a time;
/// each answer is checked (one vector per input, by `index`, of the expected dimension) and
/// its vectors L2-normalized. `tokens` is the providers' `usage.prompt_tokens`, or the
/// `cl100k_base` count when a provider reports no usage. Failures are retried per the
/// [`ProviderConfig`] policy (see the `client` module).
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: HttpClient,
    model: EmbeddingModel,
    config: EmbeddingConfig,
}

impl OpenAiEmbedder {
    /// An embedder of `config.model` on `provider`.
    ///
    /// # Errors
    /// [`ConfigError::Dimensions`] when the dimension is neither set nor known, or too large
    /// (`text-embedding-3-large`: set `dimensions`); [`ConfigError::Invalid`] on a bad model
    /// name, dimension or batch limit; [`ConfigError::BaseUrl`] and [`ConfigError::Client`].
    pub fn new(provider: ProviderConfig, config: EmbeddingConfig) -> Result<Self, ConfigError> {
        let dimensions = match (config.dimensions, known_dimensions(&config.model)) {
            (Some(d), _) => d,
            (None, Some(native)) if native <= MAX_DIMENSIONS => native,
            (None, Some(native)) => {
                return Err(ConfigError::Dimensions(format!(
                    "{} has {native} dimensions, more than the {MAX_DIMENSIONS} a vector index \
                     takes: set the embedding dimensions (for example 1024 or 1536)",
                    config.model
                )));
            }
            (None, None) => {
                return Err(ConfigError::Dimensions(format!(
                    "the dimension of the embedding model {:?} is not known: set the embedding \
                     dimensions to the size of its vectors",
                    config.model
                )));
            }
        };
        let model = EmbeddingModel::new(&config.model, dimensions)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if config.max_batch_inputs == 0 || config.max_batch_chars == 0 {
            return Err(ConfigError::Invalid(
                "max_batch_inputs and max_batch_chars must be positive".to_owned(),
            ));
        }
        Ok(Self {
            client: HttpClient::new(&provider)?,
            model,
            config,
        })
    }

    /// The same embedder, waiting between retries through `pause` (tests record the delays).
    #[must_use]
    pub fn with_pause(mut self, pause: Arc<dyn Pause>) -> Self {
        self.client.set_pause(pause);
        self
    }

    /// Embeds one batch: its vectors in input order and its token count.
    async fn embed_batch(&self, batch: &[String]) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        let request = EmbeddingRequest {
            model: &self.config.model,
            input: batch,
            encoding_format: "float",
            dimensions: self.config.dimensions,
        };
        let response: EmbeddingResponse = self
            .client
            .post_json("embeddings", &request, "embeddings")
            .await?;
        let vectors = self.check(batch.len(), response.data)?;
        let tokens = match response.usage.and_then(|u| u.prompt_tokens) {
            Some(t) => t,
            None => count_tokens(batch).await?,
        };
        Ok((vectors, tokens))
    }

    /// The answer's vectors in input order, checked and normalized.
    fn check(&self, inputs: usize, data: Vec<EmbeddingItem>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let expected = self.model.dimensions() as usize;
        if data.len() != inputs {
            return Err(anyhow!(
                "the provider answered {} embeddings for {inputs} inputs",
                data.len()
            )
            .into());
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
        for item in data {
            let slot = slots.get_mut(item.index).ok_or_else(|| {
                anyhow!(
                    "the provider answered an embedding for input {} of {inputs}",
                    item.index
                )
            })?;
            if slot.is_some() {
                return Err(anyhow!("the provider answered input {} twice", item.index).into());
            }
            if item.embedding.len() != expected {
                return Err(anyhow!(
                    "the provider answered a vector of {} dimensions for model {}; expected \
                     {expected} (is `dimensions` right?)",
                    item.embedding.len(),
                    self.model.name()
                )
                .into());
            }
            if item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(
                    anyhow!("the provider answered a vector with a non-finite value").into(),
                );
            }
            *slot = Some(normalized(item.embedding));
        }
        // Every slot is filled: as many distinct in-range indexes as inputs.
        Ok(slots.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, EmbedError> {
        let mut out = Embeddings {
            vectors: Vec::with_capacity(inputs.len()),
            tokens: 0,
        };
        for range in batches(
            inputs,
            self.config.max_batch_inputs,
            self.config.max_batch_chars,
        ) {
            let (vectors, tokens) = self.embed_batch(&inputs[range]).await?;
            out.vectors.extend(vectors);
            out.tokens += tokens;
        }
        Ok(out)
    }
}

/// Consecutive ranges of `inputs`, each within `max_inputs` and `max_chars` (an input longer
/// than `max_chars` alone).
fn batches(inputs: &[String], max_inputs: usize, max_chars: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = 0;
    for (i, input) in inputs.iter().enumerate() {
        let len = input.chars().count();
        if i > start && (i - start >= max_inputs || chars + len > max_chars) {
            out.push(start..i);
            start = i;
            chars = 0;
        }
        chars += len;
    }
    if start < inputs.len() {
        out.push(start..inputs.len());
    }
    out
}

/// `v` scaled to unit length (a zero vector stays zero).
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        #[allow(clippy::cast_possible_truncation)]
        let inv = (1.0 / norm) as f32;
        for x in &mut v {
            *x *= inv;
        }
    }
    v
}

/// The `cl100k_base` token count of `batch` (for a provider that reports no usage).
async fn count_tokens(batch: &[String]) -> Result<u64, EmbedError> {
    fn count(batch: &[String]) -> u64 {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        batch.iter().map(|t| bpe.count_ordinary(t) as u64).sum()
    }
    if batch.iter().map(String::len).sum::<usize>() <= BLOCKING_THRESHOLD {
        return Ok(count(batch));
    }
    let batch = batch.to_vec();
    tokio::task::spawn_blocking(move || count(&batch))
        .await
        .map_err(|e| EmbedError::Unknown(anyhow::Error::new(e).context("counting tokens")))
}

#[derive(Debug, Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lens: &[usize]) -> Vec<String> {
        lens.iter().map(|n| "x".repeat(*n)).collect()
    }

    #[test]
    fn batches_respect_both_limits() {
        assert!(batches(&[], 3, 10).is_empty());
        assert_eq!(batches(&texts(&[1; 7]), 3, 100), [0..3, 3..6, 6..7]);
        assert_eq!(batches(&texts(&[4, 4, 4, 4]), 10, 8), [0..2, 2..4]);
        // One input over the character limit goes alone.
        assert_eq!(batches(&texts(&[2, 20, 2]), 10, 8), [0..1, 1..2, 2..3]);
        // Characters, not bytes.
        let accents = batches(&["éééé".to_owned(), "éééé".to_owned()], 10, 8);
        assert_eq!(accents.len(), 1);
        assert_eq!(accents[0], 0..2);
    }

    #[test]
    fn dimensions_from_the_table_or_the_config() {
        let provider = ProviderConfig {
            base_url: "http://127.0.0.1:9/v1".to_owned(),
            ..ProviderConfig::default()
        };
        let e = OpenAiEmbedder::new(
            provider.clone(),
            EmbeddingConfig::new("text-embedding-3-small"),
        )
        .unwrap();
        assert_eq!(e.model().dimensions(), 1536);
        assert_eq!(e.model().name(), "text-embedding-3-small");

        let err = OpenAiEmbedder::new(
            provider.clone(),
            EmbeddingConfig::new("text-embedding-3-large"),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Dimensions(_)), "{err}");
        assert!(
            err.to_string().contains("set the embedding dimensions"),
            "{err}"
        );

        let large = OpenAiEmbedder::new(
            provider.clone(),
            EmbeddingConfig {
                dimensions: Some(1024),
                ..EmbeddingConfig::new("text-embedding-3-large")
            },
        )
        .unwrap();
        assert_eq!(large.model().dimensions(), 1024);

        let err = OpenAiEmbedder::new(provider.clone(), EmbeddingConfig::new("nomic-embed-text"))
            .unwrap_err();
        assert!(err.to_string().contains("is not known"), "{err}");

        let err = OpenAiEmbedder::new(
            provider,
            EmbeddingConfig {
                dimensions: Some(4096),
                ..EmbeddingConfig::new("some-model")
            },
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }

    #[test]
    fn normalizing() {
        let v = normalized(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(vec![0.0, 0.0]), [0.0, 0.0]);
    }

    #[test]
    fn the_request_shape() {
        let input = vec!["a".to_owned()];
        let mut req = EmbeddingRequest {
            model: "m",
            input: &input,
            encoding_format: "float",
            dimensions: None,
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"model": "m", "input": ["a"], "encoding_format": "float"})
        );
        req.dimensions = Some(64);
        assert_eq!(serde_json::to_value(&req).unwrap()["dimensions"], 64);
    }
}
