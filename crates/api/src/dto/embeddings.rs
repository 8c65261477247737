//! The OpenAI-shaped embeddings request and response, and the work behind them, shared by
//! `POST /embeddings` and `POST /ai/embeddings`.

use base64::Engine as _;
use kernel::{InvalidInput, TenantContext};
use retrieval::Retrieval;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// A string or a list of strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `POST /embeddings`: the OpenAI request shape.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// The text(s): at most 2,048, each up to 32,768 characters.
    input: EmbeddingInput,
    /// A model this deployment has (default: its default embedding model).
    model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32), as OpenAI's.
    encoding_format: Option<String>,
    /// Must equal the model's dimension when given (models here have one).
    dimensions: Option<u32>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[allow(dead_code)]
    user: Option<String>,
}

/// One embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingDto {
    /// Always `embedding`.
    object: &'static str,
    /// The input's position.
    index: usize,
    /// The vector (floats), or base64 of little-endian f32 with `encoding_format: base64`.
    embedding: EmbeddingVector,
}

/// An embedding as `encoding_format` asked: the floats, or base64 of their little-endian f32
/// bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float` (the default): each f32 written as the f64 it equals, so that
    /// the floats and the base64 bytes decode to the same numbers.
    Float(Vec<f64>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Tokens counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The OpenAI response shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    object: &'static str,
    data: Vec<EmbeddingDto>,
    model: String,
    usage: EmbeddingUsage,
}

/// The work of `POST /embeddings`, shared with `POST /ai/embeddings`.
pub(crate) async fn embed(
    retrieval: &Retrieval,
    ctx: &TenantContext,
    body: EmbeddingsRequest,
) -> Result<EmbeddingsResponse, ApiError> {
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(InvalidInput::field("encoding_format", "must be float or base64").into());
        }
    };
    let inputs = match body.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    let (model, embedded) = retrieval.embed(ctx, &inputs, body.model.as_deref()).await?;
    if let Some(d) = body.dimensions
        && d != model.dimensions()
    {
        return Err(InvalidInput::field(
            "dimensions",
            format!("{} has {} dimensions", model.name(), model.dimensions()),
        )
        .into());
    }
    tracing::info!(
        model = model.name(),
        inputs = inputs.len(),
        tokens = embedded.tokens,
        "embeddings"
    );
    let data = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingDto {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(v.into_iter().map(f64::from).collect())
            },
        })
        .collect();
    Ok(EmbeddingsResponse {
        object: "list",
        data,
        model: model.name().to_owned(),
        usage: EmbeddingUsage {
            prompt_tokens: embedded.tokens,
            total_tokens: embedded.tokens,
        },
    })
}
