//! Semantic embedders in process: [`SentenceEmbedder`], any BERT-family sentence-transformers
//! folder given by path (candle's `BertModel` over its safetensors), and [`MiniLmEmbedder`],
//! the model bundled in the `pocket-encoder` crate (`quire-local-minilm`).
//!
//! Both run on the CPU in this process, on the blocking pool; neither downloads anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use retrieval::{EmbedError, EmbeddingModel, Embeddings};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

/// The name of the model bundled in `pocket-encoder` (paraphrase-MiniLM-L3-v2, 4-bit weights,
/// 384 dimensions, 128 word pieces).
pub const MINILM_MODEL: &str = "quire-local-minilm";

/// Texts encoded in one forward pass (sorted by length first, so padding stays small).
const BATCH: usize = 16;

/// How a sentence-transformers folder pools its token vectors into one (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the token vectors (attention-masked): what most sentence models use.
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// The element-wise maximum over the tokens.
    Max,
    /// The sum divided by the square root of the token count.
    MeanSqrtLen,
}

/// `1_Pooling/config.json`: one mode must be on.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A BERT-family sentence-transformers model read from a folder: `config.json`,
/// `tokenizer.json`, `model.safetensors`, and the sentence-transformers files when present
/// (`modules.json`, the pooling module's `config.json`, `sentence_bert_config.json` for the
/// longest input). Vectors are pooled as the folder says and L2-normalized.
///
/// Everything is read and checked when it loads (every file, every tensor's shape, one
/// forward pass), so a bad folder fails at start, not at the first document.
#[derive(Clone)]
pub struct SentenceEmbedder {
    model: EmbeddingModel,
    inner: Arc<Inner>,
}

struct Inner {
    bert: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    max_tokens: usize,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("model", &self.model)
            .field("pooling", &self.inner.pooling)
            .field("max_tokens", &self.inner.max_tokens)
            .finish_non_exhaustive()
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn required(dir: &Path, file: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    if !path.is_file() {
        bail!("{} has no {file}", dir.display());
    }
    Ok(path)
}

/// The pooling of the folder: its `modules.json` names a Transformer at the root, a Pooling
/// module (whose config says the mode) and optionally Normalize; anything else (a Dense layer)
/// is refused, as its output would not be the model's.
fn pooling_of(dir: &Path, hidden: usize) -> anyhow::Result<Pooling> {
    let modules_path = dir.join("modules.json");
    let pooling_dir = if modules_path.is_file() {
        let modules: Vec<Module> = read_json(&modules_path)?;
        let mut pooling_dir = None;
        for m in &modules {
            match m.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {
                    if !m.path.is_empty() {
                        bail!(
                            "{}: the Transformer module must be the folder itself (path \"\"), not {:?}",
                            modules_path.display(),
                            m.path
                        );
                    }
                }
                "Pooling" => pooling_dir = Some(dir.join(&m.path)),
                "Normalize" => {}
                other => bail!(
                    "{}: module type {other:?} is not supported (a Transformer, a Pooling and \
                     optionally a Normalize module are)",
                    modules_path.display()
                ),
            }
        }
        pooling_dir
    } else {
        let default = dir.join("1_Pooling");
        default.is_dir().then_some(default)
    };
    let Some(pooling_dir) = pooling_dir else {
        // No pooling module: the mean, as sentence-transformers does for a bare model.
        return Ok(Pooling::Mean);
    };
    let config: PoolingConfig = read_json(&required(&pooling_dir, "config.json")?)?;
    if let Some(d) = config.word_embedding_dimension
        && d != hidden
    {
        bail!(
            "{}: word_embedding_dimension {d} is not the model's hidden_size {hidden}",
            pooling_dir.join("config.json").display()
        );
    }
    if config.pooling_mode_weightedmean_tokens || config.pooling_mode_lasttoken {
        bail!(
            "{}: weighted-mean and last-token pooling are not supported",
            pooling_dir.display()
        );
    }
    let modes = [
        (config.pooling_mode_mean_tokens, Pooling::Mean),
        (config.pooling_mode_cls_token, Pooling::Cls),
        (config.pooling_mode_max_tokens, Pooling::Max),
        (
            config.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
    ];
    let mut on = modes.iter().filter(|(on, _)| *on).map(|(_, p)| *p);
    match (on.next(), on.next()) {
        (Some(p), None) => Ok(p),
        (None, _) => bail!("{}: no pooling mode is on", pooling_dir.display()),
        (Some(_), Some(_)) => bail!(
            "{}: several pooling modes at once (a concatenation) are not supported",
            pooling_dir.display()
        ),
    }
}

impl SentenceEmbedder {
    /// Loads the folder `dir` as the model `name`.
    ///
    /// # Errors
    /// A missing or unreadable file, a model that is not BERT-family, a tensor of the wrong
    /// shape or missing, a pooling this loader does not do, a name the catalogue refuses; each
    /// message names the file.
    pub fn load(name: &str, dir: &Path) -> anyhow::Result<Self> {
        let load = || -> anyhow::Result<Self> {
            if !dir.is_dir() {
                bail!("{} is not a folder", dir.display());
            }
            let config_path = required(dir, "config.json")?;
            let config: Config = read_json(&config_path)?;
            if let Some(kind) = &config.model_type
                && !matches!(kind.as_str(), "bert" | "roberta" | "xlm-roberta")
            {
                bail!(
                    "{}: model_type {kind:?} is not BERT-family",
                    config_path.display()
                );
            }
            let dims = u32::try_from(config.hidden_size)
                .map_err(|_| anyhow!("{}: hidden_size too large", config_path.display()))?;
            let model = EmbeddingModel::new(name, dims)
                .map_err(|e| anyhow!("the model's name or dimension: {e}"))?;
            let pooling = pooling_of(dir, config.hidden_size)?;
            let st_config = dir.join("sentence_bert_config.json");
            let max_seq = if st_config.is_file() {
                read_json::<SentenceBertConfig>(&st_config)?.max_seq_length
            } else {
                None
            };
            let max_tokens = max_seq
                .unwrap_or(config.max_position_embeddings)
                .min(config.max_position_embeddings);
            let tokenizer_path = required(dir, "tokenizer.json")?;
            let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
                .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?;
            tokenizer.with_padding(None);
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length: max_tokens,
                    ..TruncationParams::default()
                }))
                .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?;
            if tokenizer.get_vocab_size(true) > config.vocab_size {
                bail!(
                    "{}: {} word pieces, more than config.json's vocab_size {}",
                    tokenizer_path.display(),
                    tokenizer.get_vocab_size(true),
                    config.vocab_size
                );
            }
            let weights_path = required(dir, "model.safetensors")?;
            let bytes = std::fs::read(&weights_path)
                .with_context(|| format!("reading {}", weights_path.display()))?;
            let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
                .with_context(|| format!("{}", weights_path.display()))?;
            let bert = BertModel::load(vb, &config)
                .with_context(|| format!("{} against config.json", weights_path.display()))?;
            let this = Self {
                model,
                inner: Arc::new(Inner {
                    bert,
                    tokenizer,
                    pooling,
                    max_tokens,
                }),
            };
            // One forward pass now: a folder that loads but cannot run fails here.
            let probe = this
                .vectors(&["probe".to_owned()])
                .context("a first forward pass")?;
            if probe.first().map(Vec::len) != Some(config.hidden_size) {
                bail!("a first forward pass gave no vector of {dims} dimensions");
            }
            Ok(this)
        };
        load().with_context(|| {
            format!(
                "the local model {name:?} at {} (a sentence-transformers folder)",
                dir.display()
            )
        })
    }

    /// The longest input in word pieces (longer texts are cut).
    #[must_use]
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// The pooling it uses.
    #[must_use]
    pub fn pooling(&self) -> Pooling {
        self.inner.pooling
    }

    /// The vectors of `inputs`, on this thread (a text of only white space gets the zero
    /// vector, as the n-gram model's, found by nothing).
    ///
    /// # Errors
    /// A tokenizer or tensor failure.
    pub fn vectors(&self, inputs: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(self.embed_now(inputs)?.vectors)
    }

    /// The vectors of `inputs` and their word-piece count (without the special tokens), on
    /// this thread.
    ///
    /// # Errors
    /// A tokenizer or tensor failure.
    pub fn embed_now(&self, inputs: &[String]) -> anyhow::Result<Embeddings> {
        let dims = self.model.dimensions() as usize;
        let mut encodings = Vec::with_capacity(inputs.len());
        let mut tokens = 0u64;
        for text in inputs {
            if text.trim().is_empty() {
                encodings.push(None);
                continue;
            }
            let e = self
                .inner
                .tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| anyhow!("tokenizing: {e}"))?;
            let special = e
                .get_special_tokens_mask()
                .iter()
                .filter(|m| **m == 1)
                .count();
            tokens += (e.get_ids().len() - special) as u64;
            encodings.push(Some(e));
        }
        let mut order: Vec<usize> = (0..inputs.len())
            .filter(|i| encodings[*i].is_some())
            .collect();
        order.sort_by_key(|i| encodings[*i].as_ref().map_or(0, |e| e.get_ids().len()));
        let mut vectors = vec![vec![0.0f32; dims]; inputs.len()];
        for batch in order.chunks(BATCH) {
            let group: Vec<&tokenizers::Encoding> = batch
                .iter()
                .filter_map(|i| encodings[*i].as_ref())
                .collect();
            let pooled = self.forward(&group).context("the model's forward pass")?;
            for (i, v) in batch.iter().zip(pooled) {
                vectors[*i] = normalized(v);
            }
        }
        Ok(Embeddings { vectors, tokens })
    }

    fn forward(&self, group: &[&tokenizers::Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let len = group.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let n = group.len();
        let mut ids = vec![0u32; n * len];
        let mut types = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, e) in group.iter().enumerate() {
            let at = row * len;
            let k = e.get_ids().len();
            ids[at..at + k].copy_from_slice(e.get_ids());
            types[at..at + k].copy_from_slice(e.get_type_ids());
            mask[at..at + k].copy_from_slice(e.get_attention_mask());
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, len), &dev)?;
        let types = Tensor::from_vec(types, (n, len), &dev)?;
        let mask = Tensor::from_vec(mask, (n, len), &dev)?;
        let hidden = self.inner.bert.forward(&ids, &types, Some(&mask))?;
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let pooled = match self.inner.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let sum = hidden.broadcast_mul(&maskf)?.sum(1)?;
                let count = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                let count = if self.inner.pooling == Pooling::Mean {
                    count
                } else {
                    count.sqrt()?
                };
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                // Padding gets a very low value so it never wins the maximum.
                let low = ((maskf.clone() - 1.0)? * 1e9)?;
                hidden.broadcast_add(&low)?.max(1)?
            }
        };
        pooled.to_vec2::<f32>()
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}

/// Runs `work` on the blocking pool (inference holds a core for milliseconds per text).
pub(crate) async fn off_runtime<F>(work: F) -> Result<Embeddings, EmbedError>
where
    F: FnOnce() -> anyhow::Result<Embeddings> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EmbedError::Unknown(anyhow::Error::new(e).context("local embedding")))?
        .map_err(|e| EmbedError::Unknown(e.context("local embedding")))
}

/// [`retrieval::Embedder`] for a model type with a `model` field and an `embed_now(&[String]) ->
/// anyhow::Result<Embeddings>` that runs on the calling thread: `embed` moves the work to the
/// blocking pool ([`off_runtime`]). The semantic models (folder, bundled, static) share it.
macro_rules! blocking_embedder {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl retrieval::Embedder for $ty {
            fn model(&self) -> &retrieval::EmbeddingModel {
                &self.model
            }

            async fn embed(
                &self,
                inputs: &[String],
            ) -> Result<retrieval::Embeddings, retrieval::EmbedError> {
                if inputs.is_empty() {
                    return Ok(retrieval::Embeddings::default());
                }
                let this = self.clone();
                let inputs = inputs.to_vec();
                $crate::sentence::off_runtime(move || this.embed_now(&inputs)).await
            }
        }
    };
}
pub(crate) use blocking_embedder;

blocking_embedder!(SentenceEmbedder);

/// `quire-local-minilm`: paraphrase-MiniLM-L3-v2 as bundled (4-bit weights, expanded to f32
/// on first use, once per process) in the `pocket-encoder` crate: compiled into the binary, so
/// no file and no download. 384 dimensions; inputs are cut at 128 word pieces.
#[derive(Debug, Clone)]
pub struct MiniLmEmbedder {
    model: EmbeddingModel,
}

impl Default for MiniLmEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl MiniLmEmbedder {
    /// The model (its weights are expanded on first use; see [`MiniLmEmbedder::warm`]).
    #[must_use]
    pub fn new() -> Self {
        // A constant name and pocket-encoder's 384 dimensions: always valid.
        let model = EmbeddingModel::new(MINILM_MODEL, 384)
            .unwrap_or_else(|e| unreachable!("the bundled model's name: {e}"));
        Self { model }
    }

    /// Expands the bundled weights now (about 70 MB of f32), rather than at the first text.
    ///
    /// # Errors
    /// When the bundled model does not load (it always should).
    pub fn warm(&self) -> anyhow::Result<()> {
        let encoder = encoder()?;
        let dims = pocket_encoder::model_info().dimensions;
        if dims != self.model.dimensions() as usize {
            bail!("the bundled model {MINILM_MODEL} has {dims} dimensions, not 384");
        }
        drop(encoder);
        Ok(())
    }

    /// The vectors of `inputs` and their `cl100k_base` token count, on this thread (blank
    /// texts get the zero vector).
    ///
    /// # Errors
    /// An inference failure.
    pub fn embed_now(&self, inputs: &[String]) -> anyhow::Result<Embeddings> {
        let encoder = encoder()?;
        let dims = self.model.dimensions() as usize;
        let mut vectors = vec![vec![0.0f32; dims]; inputs.len()];
        // Counted with cl100k_base, as the n-gram model's (pocket-encoder keeps its tokenizer).
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let tokens = inputs.iter().map(|t| bpe.count_ordinary(t) as u64).sum();
        let kept: Vec<usize> = (0..inputs.len())
            .filter(|i| !inputs[*i].trim().is_empty())
            .collect();
        for part in kept.chunks(BATCH) {
            // pocket-encoder refuses inputs over 64 KiB: the model reads 128 word pieces,
            // a few hundred bytes, so the cut changes nothing.
            let texts: Vec<&str> = part
                .iter()
                .map(|i| prefix(&inputs[*i], 16 * 1024))
                .collect();
            let out = encoder
                .embed(&texts)
                .map_err(|e| anyhow!("{MINILM_MODEL}: {e}"))?;
            for (i, v) in part.iter().zip(out) {
                if v.len() != dims {
                    bail!("{MINILM_MODEL} answered a vector of {} dimensions", v.len());
                }
                vectors[*i] = v;
            }
        }
        Ok(Embeddings { vectors, tokens })
    }
}

/// pocket-encoder's process-wide encoder (its weights are expanded once).
pub(crate) fn encoder() -> anyhow::Result<pocket_encoder::Encoder> {
    pocket_encoder::Encoder::new().map_err(|e| anyhow!("the bundled model {MINILM_MODEL}: {e}"))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

blocking_embedder!(MiniLmEmbedder);
