//! Types of retrieval: embedding models and the spaces their vectors live in, search queries,
//! candidates and hits.

use std::fmt;

use documents::{ChunkId, CollectionId, DocumentId};
use kernel::{FieldError, InvalidInput, TenantId};
use time::OffsetDateTime;

kernel::define_id!(
    /// An embedding space: one collection's vectors under one model.
    SpaceId
);

/// Longest model name.
pub const MAX_MODEL_NAME: usize = 100;
/// Most dimensions of an embedding (pgvector's HNSW index takes at most 2,000).
pub const MAX_DIMENSIONS: u32 = 2_000;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Most results of one search.
pub const MAX_TOP_K: u32 = 50;
/// Results of a search that does not say.
pub const DEFAULT_TOP_K: u32 = 8;
/// Most collections one search names.
pub const MAX_SEARCH_COLLECTIONS: usize = 100;
/// Most keys in a metadata filter.
pub const MAX_FILTER_KEYS: usize = 16;

/// Most words of a keyword query.
pub const MAX_QUERY_WORDS: usize = 32;

/// The words of a keyword query, as every keyword index reads them: lowercase runs of Unicode
/// letters and digits (`char::is_alphanumeric`), first occurrence first, deduplicated, at most
/// [`MAX_QUERY_WORDS`]. Nothing else of the client's text reaches an index: no operator, quote
/// or wildcard survives.
#[must_use]
pub fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for run in query.split(|c: char| !c.is_alphanumeric()) {
        if run.is_empty() {
            continue;
        }
        let word = run.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
            if words.len() == MAX_QUERY_WORDS {
                break;
            }
        }
    }
    words
}

/// An embedding model: its name and the dimension of its vectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmbeddingModel {
    name: String,
    dimensions: u32,
}

impl EmbeddingModel {
    /// A model named `name` (1 to 100 of `A-Z a-z 0-9 . _ - : /`) with `dimensions` (1 to
    /// 2,000).
    ///
    /// # Errors
    /// [`InvalidInput`] on `model` or `dimensions`.
    pub fn new(name: &str, dimensions: u32) -> Result<Self, InvalidInput> {
        let mut errors = Vec::new();
        if let Err(e) = check_model_name(name) {
            errors.extend(e.0);
        }
        if dimensions == 0 || dimensions > MAX_DIMENSIONS {
            errors.push(FieldError::new(
                "dimensions",
                format!("must be between 1 and {MAX_DIMENSIONS}"),
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                name: name.to_owned(),
                dimensions,
            })
        } else {
            Err(InvalidInput(errors))
        }
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimension of its vectors.
    #[must_use]
    pub fn dimensions(&self) -> u32 {
        self.dimensions
    }
}

impl fmt::Display for EmbeddingModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} dimensions)", self.name, self.dimensions)
    }
}

/// Checks the shape of a model name (not whether the model exists).
///
/// # Errors
/// [`InvalidInput`] on `model`.
pub fn check_model_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_MODEL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            "model",
            format!("must be 1 to {MAX_MODEL_NAME} of letters, digits and . _ - : /"),
        ))
    }
}

/// Where a space is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaceStatus {
    /// Being filled in the background (the collection's model changed); searches still use
    /// the active space.
    Building,
    /// The space searches use.
    Active,
    /// Replaced; its vectors are being removed.
    Retired,
}

impl SpaceStatus {
    /// Every value.
    pub const ALL: &'static [SpaceStatus] = &[
        SpaceStatus::Building,
        SpaceStatus::Active,
        SpaceStatus::Retired,
    ];

    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SpaceStatus::Building => "building",
            SpaceStatus::Active => "active",
            SpaceStatus::Retired => "retired",
        }
    }

    /// The status with this stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// The vectors of one scope (a collection, or the tenant's documents outside any collection)
/// under one model. A scope has at most one active and one building space; a search only ever
/// compares vectors of one space, so no two dimensions ever meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// Id.
    pub id: SpaceId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// The collection; `None` for documents outside any collection.
    pub collection_id: Option<CollectionId>,
    /// The model of its vectors.
    pub model: EmbeddingModel,
    /// Where it is in its life.
    pub status: SpaceStatus,
    /// Created.
    pub created_at: OffsetDateTime,
}

impl Space {
    /// A new space.
    #[must_use]
    pub fn new(
        tenant_id: TenantId,
        collection_id: Option<CollectionId>,
        model: EmbeddingModel,
        status: SpaceStatus,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: SpaceId::new(),
            tenant_id,
            collection_id,
            model,
            status,
            created_at: now,
        }
    }
}

/// One chunk's vector, as the indexing stage writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorEntry {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The vector, L2-normalized, of the space's dimension.
    pub vector: Vec<f32>,
}

/// One candidate of an index: a chunk and its score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Cosine similarity (vector index) or BM25 (keyword index).
    pub score: f32,
}

/// Best first; ties by chunk id, so equal scores come out in a stable order.
pub(crate) fn sort_candidates(list: &mut [Candidate]) {
    list.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
}

/// Largest weight of a leg.
pub const MAX_FUSION_WEIGHT: f32 = 100.0;
/// How the two rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FusionMethod {
    /// Weighted reciprocal rank: a chunk scores Σ weight / (60 + rank) over the lists it is in.
    #[default]
    Rrf,
    /// Weighted sum of each list's scores scaled to 0..1 by that list's minimum and maximum
    /// (a chunk absent from a list gets 0 from it), mapped onto 0.01..1 so that every result
    /// scores above 0.
    MinMax,
}

impl FusionMethod {
    /// `rrf` or `minmax`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rrf => "rrf",
            Self::MinMax => "minmax",
        }
    }

    /// Parses [`FusionMethod::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rrf" => Some(Self::Rrf),
            "minmax" => Some(Self::MinMax),
            _ => None,
        }
    }
}

/// A fusion: its method and the weight of each leg (0 to 100, not both 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// How the rankings are combined.
    pub method: FusionMethod,
    /// The keyword (BM25) leg's weight.
    pub keyword: f32,
    /// The vector leg's weight.
    pub vector: f32,
}

impl Default for Fusion {
    /// Reciprocal rank with equal weights (what `hybrid` did before weights).
    fn default() -> Self {
        Self {
            method: FusionMethod::Rrf,
            keyword: 1.0,
            vector: 1.0,
        }
    }
}

impl Fusion {
    /// A fusion with these weights.
    ///
    /// # Errors
    /// [`InvalidInput`] on `field.keyword` / `field.vector` when a weight is not finite, is
    /// negative or above [`MAX_FUSION_WEIGHT`], or when both are 0.
    pub fn new(
        method: FusionMethod,
        keyword: f32,
        vector: f32,
        field: &str,
    ) -> Result<Self, InvalidInput> {
        let mut errors = Vec::new();
        for (name, w) in [("keyword", keyword), ("vector", vector)] {
            if !w.is_finite() || !(0.0..=MAX_FUSION_WEIGHT).contains(&w) {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    format!("must be between 0 and {MAX_FUSION_WEIGHT}"),
                ));
            }
        }
        if errors.is_empty() && keyword + vector <= 0.0 {
            errors.push(FieldError::new(
                field,
                "at least one weight must be positive",
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                method,
                keyword,
                vector,
            })
        } else {
            Err(InvalidInput(errors))
        }
    }
}

/// Vectors for a list of inputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    /// One L2-normalized vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the provider counted (billed).
    pub tokens: u64,
}

/// How a search ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SearchMode {
    /// Reciprocal rank fusion of the keyword and vector rankings.
    #[default]
    Hybrid,
    /// Cosine similarity of embeddings.
    Vector,
    /// BM25 over words.
    Keyword,
}

impl SearchMode {
    /// Every value.
    pub const ALL: &'static [SearchMode] =
        &[SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Vector => "vector",
            SearchMode::Keyword => "keyword",
        }
    }

    /// The mode with this wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// Equality on top-level keys of a document's metadata: a chunk matches when its document's
/// metadata has every key with exactly the value (JSON equality; strings, numbers, booleans).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataFilter(Vec<(String, serde_json::Value)>);

impl MetadataFilter {
    /// A filter of these pairs.
    ///
    /// # Errors
    /// [`InvalidInput`] on `filter` when there are more than 16 keys or a value is not a
    /// string, number or boolean.
    pub fn new(pairs: Vec<(String, serde_json::Value)>) -> Result<Self, InvalidInput> {
        if pairs.len() > MAX_FILTER_KEYS {
            return Err(InvalidInput::field(
                "filter",
                format!("at most {MAX_FILTER_KEYS} keys"),
            ));
        }
        let mut errors = Vec::new();
        for (key, value) in &pairs {
            if key.is_empty() || key.len() > 200 {
                errors.push(FieldError::new("filter", "keys must be 1 to 200 bytes"));
            }
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                errors.push(FieldError::new(
                    format!("filter.{key}"),
                    "must be a string, a number or a boolean",
                ));
            }
        }
        if errors.is_empty() {
            Ok(Self(pairs))
        } else {
            Err(InvalidInput(errors))
        }
    }

    /// Whether the filter is empty (matches everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs.
    #[must_use]
    pub fn pairs(&self) -> &[(String, serde_json::Value)] {
        &self.0
    }

    /// Whether `metadata` matches.
    #[must_use]
    pub fn matches(&self, metadata: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.0.iter().all(|(k, v)| {
            metadata.get(k).is_some_and(|m| match (m, v) {
                (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                    a.as_f64() == b.as_f64()
                }
                _ => m == v,
            })
        })
    }
}

/// A search, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The query text (trimmed, 1 to 2,000 characters).
    pub text: String,
    /// Only these collections; `None`: every document of the tenant.
    pub collections: Option<Vec<CollectionId>>,
    /// How many results (1 to 50).
    pub top_k: u32,
    /// Drop results scoring lower.
    pub min_score: Option<f32>,
    /// How to rank.
    pub mode: SearchMode,
    /// Metadata the documents must have.
    pub filter: MetadataFilter,
    /// `hybrid`'s fusion instead of the configured one (evaluations try weights with it).
    pub fusion: Option<Fusion>,
    /// Rerank when a named collection asks for it (default); evaluations turn it off to
    /// measure without it.
    pub rerank: bool,
}

impl SearchQuery {
    /// Validates a search.
    ///
    /// # Errors
    /// [`InvalidInput`] naming every failing field.
    pub fn new(
        text: &str,
        collections: Option<Vec<CollectionId>>,
        top_k: Option<u32>,
        min_score: Option<f32>,
        mode: SearchMode,
        filter: MetadataFilter,
    ) -> Result<Self, InvalidInput> {
        let mut errors = Vec::new();
        let text = text.trim();
        if text.is_empty() {
            errors.push(FieldError::new("query", "must not be empty"));
        } else if text.chars().count() > MAX_QUERY_CHARS {
            errors.push(FieldError::new(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let top_k = top_k.unwrap_or(DEFAULT_TOP_K);
        if !(1..=MAX_TOP_K).contains(&top_k) {
            errors.push(FieldError::new(
                "top_k",
                format!("must be between 1 and {MAX_TOP_K}"),
            ));
        }
        if let Some(c) = &collections {
            if c.is_empty() {
                errors.push(FieldError::new(
                    "collection_ids",
                    "must not be empty (omit it to search every collection)",
                ));
            } else if c.len() > MAX_SEARCH_COLLECTIONS {
                errors.push(FieldError::new(
                    "collection_ids",
                    format!("at most {MAX_SEARCH_COLLECTIONS} collections"),
                ));
            }
        }
        if min_score.is_some_and(|s| !s.is_finite()) {
            errors.push(FieldError::new("min_score", "must be a finite number"));
        }
        if !errors.is_empty() {
            return Err(InvalidInput(errors));
        }
        let collections = collections.map(|mut c| {
            c.sort_unstable();
            c.dedup();
            c
        });
        Ok(Self {
            text: text.to_owned(),
            collections,
            top_k,
            min_score,
            mode,
            filter,
            fusion: None,
            rerank: true,
        })
    }
}

/// A chunk as search shows it, with its document.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The document's name.
    pub document_name: String,
    /// The document's collection.
    pub collection_id: Option<CollectionId>,
    /// Position in the document.
    pub ordinal: u32,
    /// The page it starts on.
    pub page: Option<u32>,
    /// The text.
    pub text: String,
    /// Tokens.
    pub tokens: u32,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk and its document.
    pub chunk: ChunkRecord,
    /// Vector: cosine similarity; keyword: BM25; hybrid: the fused reciprocal rank,
    /// 1.0 for a chunk first in both rankings.
    pub score: f32,
}

/// A chunk to embed (re-embedding reads these from storage).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkText {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The text.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            query_words("Hello, WORLD! hello-world a:b *"),
            ["hello", "world", "a", "b"]
        );
        assert_eq!(query_words("Café ÉCOLE naïve"), ["café", "école", "naïve"]);
        assert_eq!(query_words("کتاب‌ها را"), ["کتاب", "ها", "را"]);
        for hostile in ["\"", "NEAR(", "*", ")'", "", "   ", "-- ;"] {
            let words = query_words(hostile);
            assert!(
                words.iter().all(|w| w.chars().all(char::is_alphanumeric)),
                "{hostile:?}: {words:?}"
            );
        }
        assert!(query_words("\" ) ' * :").is_empty());
        assert_eq!(
            query_words("OR near"),
            ["or", "near"],
            "operators are words"
        );
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_words(&many).len(), MAX_QUERY_WORDS);
    }

    #[test]
    fn model_names_and_dimensions() {
        assert!(EmbeddingModel::new("text-embedding-3-small", 1536).is_ok());
        assert!(EmbeddingModel::new("org/model:v1.2", 8).is_ok());
        assert!(EmbeddingModel::new("", 8).is_err());
        assert!(EmbeddingModel::new("has space", 8).is_err());
        assert!(EmbeddingModel::new("m", 0).is_err());
        assert!(EmbeddingModel::new("m", MAX_DIMENSIONS + 1).is_err());
    }

    #[test]
    fn queries_are_validated() {
        let ok = SearchQuery::new(
            "  what  ",
            None,
            None,
            None,
            SearchMode::Hybrid,
            MetadataFilter::default(),
        );
        let ok = ok.expect("valid");
        assert_eq!(ok.text, "what");
        assert_eq!(ok.top_k, DEFAULT_TOP_K);
        let bad = SearchQuery::new(
            " ",
            Some(vec![]),
            Some(51),
            Some(f32::NAN),
            SearchMode::Vector,
            MetadataFilter::default(),
        );
        let fields: Vec<String> = bad
            .err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["query", "top_k", "collection_ids", "min_score"]);
    }

    #[test]
    fn filters_match_by_json_equality() {
        let filter = MetadataFilter::new(vec![
            ("lang".into(), serde_json::json!("en")),
            ("year".into(), serde_json::json!(2024)),
        ])
        .expect("valid");
        let meta = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert!(filter.matches(&meta(
            serde_json::json!({"lang": "en", "year": 2024.0, "x": 1})
        )));
        assert!(!filter.matches(&meta(serde_json::json!({"lang": "en", "year": "2024"}))));
        assert!(!filter.matches(&meta(serde_json::json!({"lang": "en"}))));
        assert!(MetadataFilter::new(vec![("k".into(), serde_json::json!([1]))]).is_err());
    }
}
