//! The retrieval use cases: search (vector, keyword, hybrid), `POST /embeddings`, the indexing
//! side of ingestion ([`Indexer`], a `documents::ChunkIndexer`) and the background
//! re-embedding of a collection whose model changed ([`Reembedder`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use documents::{
    ChunkId, ChunkIndexer, Collection, CollectionId, CollectionRepository, Document, DocumentId,
    IndexFailure, NewChunk,
};
use kernel::{
    Clock, FieldError, InvalidInput, Meter, MeterError, MeterScope, Principal, TenantContext,
    TenantId, Tokens, UsageKind,
};
use tracing::Instrument as _;

use crate::model::{
    Candidate, EmbeddingModel, Embeddings, Hit, SearchMode, SearchQuery, Space, SpaceStatus,
    VectorEntry,
};
use crate::ports::{
    ChunkCatalog, EmbedError, Embedder, IndexError, KeywordIndex, SpaceRepository, VectorIndex,
};

/// Most inputs of one `POST /embeddings`.
pub const MAX_EMBED_INPUTS: usize = 2_048;
/// Longest input of `POST /embeddings`, in characters.
pub const MAX_EMBED_INPUT_CHARS: usize = 32_768;
/// Most characters over all inputs of one `POST /embeddings`.
pub const MAX_EMBED_TOTAL_CHARS: usize = 2_000_000;
/// Most documents a metadata filter may select (beyond, narrow it with collections).
pub const MAX_FILTERED_DOCUMENTS: usize = 10_000;
/// Reciprocal rank fusion's constant (Cormack et al. 2009).
pub const RRF_K: f32 = 60.0;

/// What the retrieval use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A named collection is not the tenant's.
    #[error("not found")]
    NotFound,
    /// The embedding provider is unavailable (after its retries).
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The embedding provider refused the input.
    #[error("{0}")]
    Rejected(String),
    /// Metering refused the call (the organization's token quota is used up) or could not be
    /// reached; the provider was not called.
    #[error(transparent)]
    Metering(#[from] MeterError),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<IndexError> for RetrievalError {
    fn from(e: IndexError) -> Self {
        RetrievalError::Unknown(anyhow::Error::new(e))
    }
}

impl From<MeteredEmbedError> for RetrievalError {
    fn from(e: MeteredEmbedError) -> Self {
        match e {
            MeteredEmbedError::Metering(e) => RetrievalError::Metering(e),
            MeteredEmbedError::Embed(e) => e.into(),
        }
    }
}

impl From<EmbedError> for RetrievalError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Rejected(m) => RetrievalError::Rejected(m),
            EmbedError::Unavailable(m) => RetrievalError::ProviderUnavailable(m),
            EmbedError::Unknown(e) => RetrievalError::Unknown(e.context("embedding")),
        }
    }
}

/// The most tokens an embedding call of `texts` can cost: their UTF-8 bytes plus one per text.
///
/// An upper bound, not an estimate: a byte-pair tokenizer (tiktoken's `cl100k_base` and its
/// kin) never makes more tokens than bytes, and the one per text covers a marker a provider may
/// add. It is reserved against the quota before the provider is called and the settlement
/// records the provider's count within it, so parallel calls cannot take an organization past
/// its limit, whatever the text (punctuation, emoji and other scripts cost more tokens per
/// byte than prose).
#[must_use]
pub fn embedding_token_bound(texts: &[String]) -> u64 {
    texts
        .iter()
        .map(|t| u64::try_from(t.len()).unwrap_or(u64::MAX).saturating_add(1))
        .fold(0u64, u64::saturating_add)
}

/// Why a metered embedding call failed.
#[derive(Debug)]
enum MeteredEmbedError {
    /// The reservation was refused or metering is down: the provider was not called.
    Metering(MeterError),
    /// The provider failed (the reservation was released).
    Embed(EmbedError),
}

/// The embedding models of this deployment: the default (new collections, queries of the
/// embedded default) and any others a collection may name.
#[derive(Debug, Clone)]
pub struct Embedders {
    default: Arc<dyn Embedder>,
    others: Vec<Arc<dyn Embedder>>,
}

impl Embedders {
    /// The default model and the others (a duplicate name is ignored).
    #[must_use]
    pub fn new(default: Arc<dyn Embedder>, others: Vec<Arc<dyn Embedder>>) -> Self {
        let mut kept: Vec<Arc<dyn Embedder>> = Vec::new();
        for e in others {
            let name = e.model().name().to_owned();
            if name != default.model().name() && !kept.iter().any(|k| k.model().name() == name) {
                kept.push(e);
            }
        }
        Self {
            default,
            others: kept,
        }
    }

    /// The default embedder.
    #[must_use]
    pub fn default_embedder(&self) -> &Arc<dyn Embedder> {
        &self.default
    }

    /// The embedder of the model with this name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Embedder>> {
        std::iter::once(&self.default)
            .chain(self.others.iter())
            .find(|e| e.model().name() == name)
    }

    /// Every model, the default first.
    #[must_use]
    pub fn models(&self) -> Vec<&EmbeddingModel> {
        std::iter::once(&self.default)
            .chain(self.others.iter())
            .map(|e| e.model())
            .collect()
    }

    fn unknown(&self, field: &str, name: &str) -> InvalidInput {
        let names: Vec<&str> = self.models().iter().map(|m| m.name()).collect();
        InvalidInput::field(
            field,
            format!(
                "unknown embedding model {name:?}; available: {}",
                names.join(", ")
            ),
        )
    }
}

/// The adapters retrieval needs.
#[derive(Debug, Clone)]
pub struct RetrievalPorts {
    /// Embedding spaces.
    pub spaces: Arc<dyn SpaceRepository>,
    /// Vectors.
    pub vectors: Arc<dyn VectorIndex>,
    /// Words.
    pub keywords: Arc<dyn KeywordIndex>,
    /// Stored chunks.
    pub catalog: Arc<dyn ChunkCatalog>,
    /// Collections (their embedding model).
    pub collections: Arc<dyn CollectionRepository>,
    /// Embedding models.
    pub embedders: Embedders,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Token quotas and the usage ledger: every embedding call is reserved before the
    /// provider is called and settled to its count afterwards.
    pub meter: Arc<dyn Meter>,
}

impl RetrievalPorts {
    /// The model a scope should be embedded with: the collection's own, else the default.
    async fn desired_model(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
    ) -> Result<Option<EmbeddingModel>, anyhow::Error> {
        let named = match collection {
            Some(c) => match self.collections.find(tenant, c).await? {
                Some(c) => c.embedding_model,
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(self.model_named(named.as_deref())))
    }

    fn model_named(&self, name: Option<&str>) -> EmbeddingModel {
        name.and_then(|n| self.embedders.get(n))
            .unwrap_or(self.embedders.default_embedder())
            .model()
            .clone()
    }

    fn embedder(&self, model: &EmbeddingModel) -> Result<&Arc<dyn Embedder>, EmbedError> {
        self.embedders
            .get(model.name())
            .filter(|e| e.model() == model)
            .ok_or_else(|| {
                EmbedError::Unavailable(format!("the embedding model {model} is not configured"))
            })
    }

    /// Embeds `texts` with `embedder`, metered: reserves [`embedding_token_bound`]
    /// for `tenant` first, then settles to the provider's count, or releases the
    /// reservation when the provider fails.
    async fn embed_metered(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
        tenant: TenantId,
        actor: Option<Principal>,
        reference: String,
    ) -> Result<Embeddings, MeteredEmbedError> {
        let scope = MeterScope {
            tenant,
            actor,
            model: embedder.model().name().to_owned(),
            kind: UsageKind::Embedding,
            reference,
        };
        let reservation = self
            .meter
            .reserve(scope, embedding_token_bound(texts))
            .await
            .map_err(MeteredEmbedError::Metering)?;
        match embedder.embed(texts).await {
            Ok(embedded) => {
                let used = Tokens {
                    prompt: embedded.tokens,
                    completion: 0,
                };
                self.meter.settle(reservation, used).await;
                Ok(embedded)
            }
            Err(e) => {
                self.meter.release(reservation).await;
                Err(MeteredEmbedError::Embed(e))
            }
        }
    }

    /// Embeds chunks into `space` (background work billed to the space's tenant, with
    /// `reference` in the usage ledger); answers the tokens the provider counted.
    async fn embed_into(
        &self,
        space: &Space,
        chunks: &[(ChunkId, DocumentId, &str)],
        reference: String,
    ) -> Result<u64, IndexFailure> {
        if chunks.is_empty() {
            return Ok(0);
        }
        let embedder = self.embedder(&space.model).map_err(index_failure)?;
        let texts: Vec<String> = chunks.iter().map(|(_, _, t)| (*t).to_owned()).collect();
        let embedded = self
            .embed_metered(embedder.as_ref(), &texts, space.tenant_id, None, reference)
            .await
            .map_err(|e| match e {
                MeteredEmbedError::Metering(e) => metering_failure(e),
                MeteredEmbedError::Embed(e) => index_failure(e),
            })?;
        if embedded.vectors.len() != chunks.len() {
            return Err(IndexFailure::Transient(format!(
                "the embedder answered {} vectors for {} inputs",
                embedded.vectors.len(),
                chunks.len()
            )));
        }
        let entries: Vec<VectorEntry> = chunks
            .iter()
            .zip(embedded.vectors)
            .map(|((chunk_id, document_id, _), vector)| VectorEntry {
                chunk_id: *chunk_id,
                document_id: *document_id,
                vector,
            })
            .collect();
        self.vectors
            .upsert(space, &entries)
            .await
            .map_err(|e| IndexFailure::Transient(format!("vector index: {e}")))?;
        Ok(embedded.tokens)
    }
}

/// A refused or failed reservation of background indexing: a used-up quota fails the job for
/// good (it will not pass before the period ends), anything else may pass on a retry.
fn metering_failure(e: MeterError) -> IndexFailure {
    match e {
        MeterError::QuotaExceeded { resets_at, .. } => {
            let resets_at = resets_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| resets_at.to_string());
            IndexFailure::Permanent(format!(
                "the organization's monthly token quota is used up until {resets_at}"
            ))
        }
        e @ (MeterError::TooManyStreams { .. } | MeterError::Unavailable(_)) => {
            IndexFailure::Transient(format!("metering: {:#}", anyhow::Error::new(e)))
        }
    }
}

fn index_failure(e: EmbedError) -> IndexFailure {
    match e {
        EmbedError::Rejected(m) => IndexFailure::Permanent(format!("embedding: {m}")),
        EmbedError::Unavailable(m) => IndexFailure::Transient(format!("embedding: {m}")),
        EmbedError::Unknown(e) => IndexFailure::Transient(format!("embedding: {e:#}")),
    }
}

/// Search and `POST /embeddings`.
#[derive(Debug, Clone)]
pub struct Retrieval {
    ports: RetrievalPorts,
}

impl Retrieval {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: RetrievalPorts) -> Self {
        Self { ports }
    }

    /// The embedding models there are.
    #[must_use]
    pub fn embedders(&self) -> &Embedders {
        &self.ports.embedders
    }

    /// Embeds `inputs` with `model` (the default when `None`).
    ///
    /// The call is metered: billed to the caller's organization (reserved before the
    /// provider is called).
    ///
    /// # Errors
    /// [`RetrievalError::Invalid`] on the inputs or an unknown model;
    /// [`RetrievalError::Metering`] when the quota is used up (nothing was called); the
    /// provider's refusal or unavailability.
    pub async fn embed(
        &self,
        ctx: &TenantContext,
        inputs: &[String],
        model: Option<&str>,
    ) -> Result<(EmbeddingModel, Embeddings), RetrievalError> {
        let mut errors = Vec::new();
        if inputs.is_empty() {
            errors.push(FieldError::new("input", "must not be empty"));
        } else if inputs.len() > MAX_EMBED_INPUTS {
            errors.push(FieldError::new(
                "input",
                format!("at most {MAX_EMBED_INPUTS} inputs"),
            ));
        }
        let mut total = 0usize;
        for (i, input) in inputs.iter().enumerate() {
            let chars = input.chars().count();
            total += chars;
            if input.trim().is_empty() {
                errors.push(FieldError::new(format!("input[{i}]"), "must not be empty"));
            } else if chars > MAX_EMBED_INPUT_CHARS {
                errors.push(FieldError::new(
                    format!("input[{i}]"),
                    format!("must be at most {MAX_EMBED_INPUT_CHARS} characters"),
                ));
            }
        }
        if total > MAX_EMBED_TOTAL_CHARS {
            errors.push(FieldError::new(
                "input",
                format!("at most {MAX_EMBED_TOTAL_CHARS} characters in all"),
            ));
        }
        let embedder = match model {
            Some(name) => self.ports.embedders.get(name).cloned(),
            None => Some(self.ports.embedders.default_embedder().clone()),
        };
        let embedder = match embedder {
            Some(e) => Some(e),
            None => {
                errors.extend(
                    self.ports
                        .embedders
                        .unknown("model", model.unwrap_or_default())
                        .0,
                );
                None
            }
        };
        let Some(embedder) = embedder.filter(|_| errors.is_empty()) else {
            return Err(InvalidInput(errors).into());
        };
        let embedded = self
            .ports
            .embed_metered(
                embedder.as_ref(),
                inputs,
                ctx.tenant_id(),
                Some(ctx.principal()),
                format!("embeddings:{}", uuid::Uuid::now_v7()),
            )
            .await?;
        Ok((embedder.model().clone(), embedded))
    }

    /// Searches the tenant's chunks.
    ///
    /// Vector and hybrid modes embed the query (once per model), metered: billed to the
    /// caller's organization.
    ///
    /// # Errors
    /// [`RetrievalError::NotFound`] when a named collection is not the tenant's; the
    /// provider's errors and [`RetrievalError::Metering`] (vector and hybrid modes embed the
    /// query); storage failures.
    pub async fn search(
        &self,
        ctx: &TenantContext,
        query: &SearchQuery,
    ) -> Result<Vec<Hit>, RetrievalError> {
        let tenant = ctx.tenant_id();
        if let Some(collections) = &query.collections {
            for c in collections {
                if self
                    .ports
                    .collections
                    .find(tenant, *c)
                    .await
                    .map_err(anyhow::Error::new)?
                    .is_none()
                {
                    return Err(RetrievalError::NotFound);
                }
            }
        }
        let allow = if query.filter.is_empty() {
            None
        } else {
            let docs = self
                .ports
                .catalog
                .matching_documents(
                    tenant,
                    query.collections.as_deref(),
                    &query.filter,
                    MAX_FILTERED_DOCUMENTS + 1,
                )
                .await?;
            if docs.len() > MAX_FILTERED_DOCUMENTS {
                return Err(InvalidInput::field(
                    "filter",
                    format!(
                        "matches more than {MAX_FILTERED_DOCUMENTS} documents; narrow it or name collections"
                    ),
                )
                .into());
            }
            if docs.is_empty() {
                return Ok(Vec::new());
            }
            Some(docs)
        };
        let k = query.top_k as usize;
        // Deeper lists for fusion; one more, deeper round when deleted chunks (not yet gone
        // from an index cache) or `min_score` leave fewer than k.
        let mut depth = (k * 3).clamp(30, 150);
        // The query's vector per model, kept across rounds: a deeper round embeds nothing again.
        let mut query_vectors = QueryVectors {
            reference: format!("search:{}", uuid::Uuid::now_v7()),
            by_model: HashMap::new(),
        };
        loop {
            let ranked = self
                .rank(ctx, query, depth, allow.as_deref(), &mut query_vectors)
                .await?;
            let exhausted = ranked.len() < depth;
            let hits = self.hydrate(tenant, &ranked, query).await?;
            if hits.len() >= k || exhausted || depth >= 1_000 {
                return Ok(hits.into_iter().take(k).collect());
            }
            depth *= 4;
        }
    }

    async fn rank(
        &self,
        ctx: &TenantContext,
        query: &SearchQuery,
        depth: usize,
        allow: Option<&[DocumentId]>,
        query_vectors: &mut QueryVectors,
    ) -> Result<Vec<Candidate>, RetrievalError> {
        let tenant = ctx.tenant_id();
        let vector = if matches!(query.mode, SearchMode::Vector | SearchMode::Hybrid) {
            self.vector_candidates(ctx, query, depth, allow, query_vectors)
                .await?
        } else {
            Vec::new()
        };
        let keyword = if matches!(query.mode, SearchMode::Keyword | SearchMode::Hybrid) {
            self.ports
                .keywords
                .search(
                    tenant,
                    query.collections.as_deref(),
                    &query.text,
                    depth,
                    allow,
                )
                .await?
        } else {
            Vec::new()
        };
        Ok(match query.mode {
            SearchMode::Vector => vector,
            SearchMode::Keyword => keyword,
            SearchMode::Hybrid => fuse(&[&vector, &keyword]),
        })
    }

    async fn vector_candidates(
        &self,
        ctx: &TenantContext,
        query: &SearchQuery,
        depth: usize,
        allow: Option<&[DocumentId]>,
        vectors: &mut QueryVectors,
    ) -> Result<Vec<Candidate>, RetrievalError> {
        let tenant = ctx.tenant_id();
        let by_model = &mut vectors.by_model;
        let scopes: Option<Vec<Option<CollectionId>>> = query
            .collections
            .as_ref()
            .map(|c| c.iter().copied().map(Some).collect());
        let spaces = self.ports.spaces.list(tenant, scopes.as_deref()).await?;
        let mut all = Vec::new();
        for space in spaces.iter().filter(|s| s.status == SpaceStatus::Active) {
            if !by_model.contains_key(&space.model) {
                let embedder = self.ports.embedder(&space.model)?;
                let mut embedded = self
                    .ports
                    .embed_metered(
                        embedder.as_ref(),
                        std::slice::from_ref(&query.text),
                        tenant,
                        Some(ctx.principal()),
                        vectors.reference.clone(),
                    )
                    .await?;
                let vector = embedded.vectors.pop().ok_or_else(|| {
                    RetrievalError::Unknown(anyhow::anyhow!("the embedder answered no vector"))
                })?;
                by_model.insert(space.model.clone(), vector);
            }
            let Some(vector) = by_model.get(&space.model) else {
                continue;
            };
            all.extend(
                self.ports
                    .vectors
                    .search(space, vector, depth, allow)
                    .await?,
            );
        }
        sort_candidates(&mut all);
        all.truncate(depth);
        Ok(all)
    }

    async fn hydrate(
        &self,
        tenant: TenantId,
        ranked: &[Candidate],
        query: &SearchQuery,
    ) -> Result<Vec<Hit>, RetrievalError> {
        let ranked: Vec<&Candidate> = ranked
            .iter()
            .filter(|c| query.min_score.is_none_or(|m| c.score >= m))
            .collect();
        let ids: Vec<ChunkId> = ranked.iter().map(|c| c.chunk_id).collect();
        let mut records: HashMap<ChunkId, _> = self
            .ports
            .catalog
            .records(tenant, &ids)
            .await?
            .into_iter()
            .map(|r| (r.chunk_id, r))
            .collect();
        Ok(ranked
            .into_iter()
            .filter_map(|c| {
                records.remove(&c.chunk_id).map(|chunk| Hit {
                    chunk,
                    score: c.score,
                })
            })
            .collect())
    }
}

/// The query's vector per model, kept across the rounds of one search, and the ledger
/// reference its embedding calls share.
struct QueryVectors {
    reference: String,
    by_model: HashMap<EmbeddingModel, Vec<f32>>,
}

/// Best first; ties by chunk id, so equal scores come out in a stable order.
fn sort_candidates(list: &mut [Candidate]) {
    list.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
}

/// Reciprocal rank fusion: each list gives a chunk `1 / (60 + rank)`; the sum is scaled so
/// that a chunk first in every list scores 1.0.
#[must_use]
pub fn fuse(lists: &[&[Candidate]]) -> Vec<Candidate> {
    let mut scores: HashMap<ChunkId, f32> = HashMap::new();
    for list in lists {
        for (rank, c) in list.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)] // ranks are small
            let add = 1.0 / (RRF_K + 1.0 + rank as f32);
            *scores.entry(c.chunk_id).or_default() += add;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let best = lists.len().max(1) as f32 / (RRF_K + 1.0);
    let mut fused: Vec<Candidate> = scores
        .into_iter()
        .map(|(chunk_id, s)| Candidate {
            chunk_id,
            score: s / best,
        })
        .collect();
    sort_candidates(&mut fused);
    fused
}

/// The indexing side of ingestion: embeds a document's chunks into every space of its scope
/// (the active one, and the one being built when the model is changing).
#[derive(Debug, Clone)]
pub struct Indexer {
    ports: RetrievalPorts,
    batch: usize,
}

impl Indexer {
    /// Chunks per embedding call.
    pub const DEFAULT_BATCH: usize = 64;

    /// The indexer over these ports.
    #[must_use]
    pub fn new(ports: RetrievalPorts) -> Self {
        Self {
            ports,
            batch: Self::DEFAULT_BATCH,
        }
    }

    /// The spaces a document of this scope is written to, creating the active one on first
    /// use.
    async fn spaces_for(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
    ) -> Result<Vec<Space>, IndexFailure> {
        let transient = |e: &dyn std::fmt::Display| IndexFailure::Transient(format!("{e}"));
        let mut spaces = self
            .ports
            .spaces
            .list(tenant, Some(&[collection]))
            .await
            .map_err(|e| transient(&e))?;
        if !spaces.iter().any(|s| s.status == SpaceStatus::Active) {
            let Some(model) = self
                .ports
                .desired_model(tenant, collection)
                .await
                .map_err(|e| transient(&e))?
            else {
                // The collection is gone: the job will see its document gone too.
                return Ok(Vec::new());
            };
            let space = Space::new(
                tenant,
                collection,
                model,
                SpaceStatus::Active,
                self.ports.clock.now(),
            );
            let active = self
                .ports
                .spaces
                .ensure(space)
                .await
                .map_err(|e| transient(&e))?;
            spaces.retain(|s| s.id != active.id);
            spaces.push(active);
        }
        Ok(spaces)
    }
}

#[async_trait::async_trait]
impl ChunkIndexer for Indexer {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn check_model(&self, model: &str) -> Result<(), InvalidInput> {
        match self.ports.embedders.get(model) {
            Some(_) => Ok(()),
            None => Err(self.ports.embedders.unknown("embedding_model", model)),
        }
    }

    async fn index(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure> {
        let spaces = self
            .spaces_for(document.tenant_id, document.collection_id)
            .await?;
        let items: Vec<(ChunkId, DocumentId, &str)> = chunks
            .iter()
            .map(|c| (c.id, document.id, c.draft.text.as_str()))
            .collect();
        for space in &spaces {
            self.ports
                .embed_into(space, &items, format!("document:{}", document.id))
                .await?;
        }
        Ok(())
    }

    async fn finish(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure> {
        let spaces = self
            .spaces_for(document.tenant_id, document.collection_id)
            .await?;
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
        for space in &spaces {
            let missing = self
                .ports
                .vectors
                .missing(space, &ids)
                .await
                .map_err(|e| IndexFailure::Transient(e.to_string()))?;
            if missing.is_empty() {
                continue;
            }
            let items: Vec<(ChunkId, DocumentId, &str)> = chunks
                .iter()
                .filter(|c| missing.contains(&c.id))
                .map(|c| (c.id, document.id, c.draft.text.as_str()))
                .collect();
            for part in items.chunks(self.batch.max(1)) {
                self.ports
                    .embed_into(space, part, format!("document:{}", document.id))
                    .await?;
            }
        }
        self.ports
            .vectors
            .retain(document.tenant_id, document.id, &ids)
            .await
            .map_err(|e| IndexFailure::Transient(e.to_string()))
    }

    async fn remove_document(
        &self,
        tenant: TenantId,
        document: DocumentId,
    ) -> Result<(), anyhow::Error> {
        Ok(self.ports.vectors.retain(tenant, document, &[]).await?)
    }

    async fn remove_collection(
        &self,
        tenant: TenantId,
        collection: CollectionId,
    ) -> Result<(), anyhow::Error> {
        for space in self
            .ports
            .spaces
            .list(tenant, Some(&[Some(collection)]))
            .await?
        {
            self.ports.vectors.drop_space(&space).await?;
            self.ports.spaces.delete(space.id).await?;
        }
        Ok(())
    }

    async fn collection_changed(&self, collection: &Collection) -> Result<(), anyhow::Error> {
        let model = self
            .ports
            .model_named(collection.embedding_model.as_deref());
        let spaces = self
            .ports
            .spaces
            .list(collection.tenant_id, Some(&[Some(collection.id)]))
            .await?;
        let Some(active) = spaces.iter().find(|s| s.status == SpaceStatus::Active) else {
            // Nothing indexed yet: the first document creates the space with the new model.
            return Ok(());
        };
        if active.model == model && !spaces.iter().any(|s| s.status == SpaceStatus::Building) {
            return Ok(());
        }
        let space = self
            .ports
            .spaces
            .ensure(Space::new(
                collection.tenant_id,
                Some(collection.id),
                model,
                SpaceStatus::Building,
                self.ports.clock.now(),
            ))
            .await?;
        tracing::info!(
            collection = %collection.id,
            space = %space.id,
            model = %space.model,
            status = space.status.as_str(),
            "collection embedding model changed"
        );
        Ok(())
    }
}

/// What one re-embedding run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReembedOutcome {
    /// The space is complete and now active.
    Activated {
        /// Chunks embedded by this run.
        embedded: usize,
    },
    /// The lease was lost or the space retired meanwhile; the run stopped.
    Stopped,
}

/// Re-embeds collections whose model changed, in the background: fills a `building` space
/// from the stored chunks while search keeps using the active one, then cuts over.
#[derive(Debug, Clone)]
pub struct Reembedder {
    ports: RetrievalPorts,
    lease: Duration,
    batch: usize,
}

impl Reembedder {
    /// The re-embedder over these ports, holding a space for `lease` between heartbeats.
    #[must_use]
    pub fn new(ports: RetrievalPorts, lease: Duration) -> Self {
        Self {
            ports,
            lease,
            batch: Indexer::DEFAULT_BATCH,
        }
    }

    /// Starts re-embedding every scope that follows the default model but is embedded with
    /// another (the configured default changed); answers how many began.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn follow_default_model(&self) -> Result<usize, anyhow::Error> {
        let model = self.ports.embedders.default_embedder().model().clone();
        let stale = self.ports.spaces.active_not_on(&model, 1_000).await?;
        let mut started = 0;
        for space in stale {
            let building = self
                .ports
                .spaces
                .ensure(Space::new(
                    space.tenant_id,
                    space.collection_id,
                    model.clone(),
                    SpaceStatus::Building,
                    self.ports.clock.now(),
                ))
                .await?;
            if building.status == SpaceStatus::Building {
                started += 1;
            }
        }
        Ok(started)
    }

    /// Drops the vectors of retired spaces; answers how many were dropped.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn drop_retired(&self) -> Result<usize, anyhow::Error> {
        let retired = self.ports.spaces.retired(16).await?;
        for space in &retired {
            self.ports.vectors.drop_space(space).await?;
            self.ports.spaces.delete(space.id).await?;
        }
        Ok(retired.len())
    }

    /// Takes one building space and fills it to the end, then activates it; `Ok(None)` when
    /// no space is building.
    ///
    /// # Errors
    /// When storage or the provider fails (the lease then expires and the next run resumes:
    /// what was embedded is kept).
    pub async fn run_next(&self) -> Result<Option<ReembedOutcome>, anyhow::Error> {
        let now = self.ports.clock.now();
        let Some((space, lease)) = self.ports.spaces.claim_building(now, self.lease).await? else {
            return Ok(None);
        };
        let span = tracing::info_span!("reembed", space = %space.id, tenant = %space.tenant_id, model = %space.model);
        self.fill(space, lease).instrument(span).await.map(Some)
    }

    async fn fill(&self, space: Space, lease: uuid::Uuid) -> Result<ReembedOutcome, anyhow::Error> {
        let mut after = None;
        let mut embedded = 0usize;
        loop {
            let page = self
                .ports
                .catalog
                .scan(space.tenant_id, space.collection_id, after, 256)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.chunk_id);
            let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk_id).collect();
            let missing = self.ports.vectors.missing(&space, &ids).await?;
            let items: Vec<(ChunkId, DocumentId, &str)> = page
                .iter()
                .filter(|c| missing.contains(&c.chunk_id))
                .map(|c| (c.chunk_id, c.document_id, c.text.as_str()))
                .collect();
            for part in items.chunks(self.batch.max(1)) {
                self.ports
                    .embed_into(&space, part, format!("reembed:{}", space.id))
                    .await
                    .map_err(|e| anyhow::anyhow!("re-embedding: {e}"))?;
                embedded += part.len();
            }
            let until = self.ports.clock.now() + self.lease;
            if !self.ports.spaces.renew(space.id, lease, until).await? {
                return Ok(ReembedOutcome::Stopped);
            }
        }
        if !self.ports.spaces.activate(space.id).await? {
            return Ok(ReembedOutcome::Stopped);
        }
        tracing::info!(
            embedded,
            "re-embedding complete; the collection now searches the new space"
        );
        self.drop_retired().await?;
        Ok(ReembedOutcome::Activated { embedded })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(score: f32) -> Candidate {
        Candidate {
            chunk_id: ChunkId::new(),
            score,
        }
    }

    #[test]
    fn fusion_rewards_agreement_and_scales_to_one() {
        let a = c(0.9);
        let b = c(0.8);
        let d = c(0.7);
        let vector = [a, b, d];
        let keyword = [
            Candidate { score: 12.0, ..b },
            Candidate { score: 3.0, ..a },
        ];
        let fused = fuse(&[&vector, &keyword]);
        // a: 1/61 + 1/62; b: 1/62 + 1/61 — equal; d only in one list comes last.
        assert_eq!(fused.len(), 3);
        assert_eq!(fused[2].chunk_id, d.chunk_id);
        assert!((fused[0].score - fused[1].score).abs() < 1e-6);
        let first_in_both = fuse(&[&[a], &[a]]);
        assert!((first_in_both[0].score - 1.0).abs() < 1e-6);
        assert!(fused.iter().all(|f| f.score > 0.0 && f.score <= 1.0));
    }

    #[test]
    fn embedding_reservations_bound_the_tokens_by_the_bytes_plus_one_per_text() {
        assert_eq!(embedding_token_bound(&[]), 0);
        let texts = vec![String::new(), "abcdefg".to_owned(), "سلام".to_owned()];
        assert_eq!(embedding_token_bound(&texts), 1 + 8 + 9);
    }

    #[test]
    fn a_used_up_quota_fails_indexing_for_good_and_the_rest_for_now() {
        let resets_at = time::macros::datetime!(2026-12-01 00:00:00 UTC);
        let quota = metering_failure(MeterError::QuotaExceeded {
            resets_at,
            limit: 10,
            used: 10,
        });
        match quota {
            IndexFailure::Permanent(m) => assert_eq!(
                m,
                "the organization's monthly token quota is used up until 2026-12-01T00:00:00Z"
            ),
            IndexFailure::Transient(m) => panic!("transient: {m}"),
        }
        let down = metering_failure(MeterError::Unavailable(anyhow::anyhow!("redis is down")));
        match down {
            IndexFailure::Transient(m) => assert!(m.contains("redis is down"), "{m}"),
            IndexFailure::Permanent(m) => panic!("permanent: {m}"),
        }
        assert!(matches!(
            metering_failure(MeterError::TooManyStreams { limit: 2 }),
            IndexFailure::Transient(_)
        ));
    }

    #[test]
    fn fusion_of_one_list_keeps_its_order() {
        let list = [c(0.9), c(0.5), c(0.1)];
        let fused = fuse(&[&list]);
        let ids: Vec<ChunkId> = fused.iter().map(|f| f.chunk_id).collect();
        let want: Vec<ChunkId> = list.iter().map(|f| f.chunk_id).collect();
        assert_eq!(ids, want);
    }
}
