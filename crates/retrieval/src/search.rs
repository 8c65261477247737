//! Search (vector, keyword, hybrid, fused by reciprocal rank) and `POST /embeddings`.

use std::collections::HashMap;

use documents::{ChunkId, CollectionId, DocumentId};
use kernel::{FieldError, InvalidInput, TenantContext, TenantId};

use crate::embedding::{Embedders, RetrievalPorts, Settlement};
use crate::error::RetrievalError;
use crate::fusion::FusionSettings;
use crate::model::{
    Candidate, EmbeddingModel, Embeddings, Fusion, Hit, SearchMode, SearchQuery, Space,
    SpaceStatus, sort_candidates,
};
use crate::rerank::Reranking;

/// Most inputs of one `POST /embeddings`.
pub const MAX_EMBED_INPUTS: usize = 2_048;
/// Longest input of `POST /embeddings`, in characters.
pub const MAX_EMBED_INPUT_CHARS: usize = 32_768;
/// Most characters over all inputs of one `POST /embeddings`.
pub const MAX_EMBED_TOTAL_CHARS: usize = 2_000_000;
/// Most documents a metadata filter may select (beyond, narrow it with collections).
pub const MAX_FILTERED_DOCUMENTS: usize = 10_000;

/// Search and `POST /embeddings`.
#[derive(Debug, Clone)]
pub struct Retrieval {
    ports: RetrievalPorts,
    fusion: FusionSettings,
    reranking: Option<Reranking>,
}

impl Retrieval {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: RetrievalPorts) -> Self {
        Self {
            ports,
            fusion: FusionSettings::default(),
            reranking: None,
        }
    }

    /// The same, reranking the searches of collections that turn it on.
    #[must_use]
    pub fn with_reranking(mut self, reranking: Reranking) -> Self {
        self.reranking = Some(reranking);
        self
    }

    /// The reranking stage, when this deployment has one.
    #[must_use]
    pub fn reranking(&self) -> Option<&Reranking> {
        self.reranking.as_ref()
    }

    /// The same, with this fusion of `hybrid`'s rankings (`retrieval.fusion`).
    #[must_use]
    pub fn with_fusion(mut self, fusion: FusionSettings) -> Self {
        self.fusion = fusion;
        self
    }

    /// How `hybrid` fuses its rankings over these spaces of the searched scope (the one rule
    /// of [`FusionSettings::for_spaces`]; a search and an evaluation both use it).
    #[must_use]
    pub fn fusion_for_spaces(&self, spaces: &[Space]) -> Fusion {
        self.fusion.for_spaces(spaces)
    }

    /// The adapters.
    #[must_use]
    pub fn ports(&self) -> &RetrievalPorts {
        &self.ports
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
        // The query's vector per model, kept across rounds: a deeper round embeds nothing again.
        let mut query_vectors = QueryVectors {
            reference: format!("search:{}", uuid::Uuid::now_v7()),
            by_model: HashMap::new(),
            fusion: self.fusion.for_spaces(&[]),
            settlements: Vec::new(),
        };
        // The named collections are checked beside the search (which finds nothing outside
        // the tenant's own scopes: every index is searched by tenant); a missing one fails
        // the search once both are done, whatever the search found.
        let (checked, hits) = futures_util::future::join(
            self.rerank_depth(tenant, query),
            self.rounds(ctx, query, &mut query_vectors),
        )
        .await;
        // Settlements a failed round left (each is awaited: the ledger has every call).
        futures_util::future::join_all(query_vectors.settlements.drain(..)).await;
        let rerank_top_n = checked?;
        let mut hits = hits?;
        // How many results to rerank: the largest `rerank_top_n` of the named collections
        // (a search without collections is not reranked).
        let rerank = self
            .reranking
            .as_ref()
            .zip(rerank_top_n.filter(|_| query.rerank));
        if let Some((reranking, top_n)) = rerank {
            reranking
                .apply(
                    &self.ports.meter,
                    tenant,
                    Some(ctx.principal()),
                    &query.text,
                    &mut hits,
                    top_n as usize,
                )
                .await;
        }
        hits.truncate(query.top_k as usize);
        Ok(hits)
    }

    /// Checks that every named collection is the tenant's: the largest `rerank_top_n` among
    /// them; [`RetrievalError::NotFound`] for one that is not (reused for the recheck time:
    /// `retrieval::recent`).
    async fn rerank_depth(
        &self,
        tenant: TenantId,
        query: &SearchQuery,
    ) -> Result<Option<u32>, RetrievalError> {
        let mut rerank_top_n: Option<u32> = None;
        for c in query.collections.iter().flatten() {
            let Some(found) = self
                .ports
                .searched_collection(tenant, *c)
                .await
                .map_err(anyhow::Error::new)?
            else {
                return Err(RetrievalError::NotFound);
            };
            rerank_top_n = rerank_top_n.max(found);
        }
        Ok(rerank_top_n)
    }

    /// The ranked hits, at least k of them when there are (before reranking and the cut to
    /// k): a round ranks both legs to a depth and reads the hits back; one more, deeper
    /// round when deleted chunks (not yet gone from an index cache) or `min_score` leave
    /// fewer than k.
    async fn rounds(
        &self,
        ctx: &TenantContext,
        query: &SearchQuery,
        query_vectors: &mut QueryVectors,
    ) -> Result<Vec<Hit>, RetrievalError> {
        let tenant = ctx.tenant_id();
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
        // Deeper lists for fusion.
        let mut depth = (k * 3).clamp(30, 150);
        loop {
            let ranked = self
                .rank(ctx, query, depth, allow.as_deref(), query_vectors)
                .await?;
            let exhausted = ranked.len() < depth;
            // The query embedding's ledger write goes on while the hits are read back.
            let settlements = query_vectors.settlements.drain(..).collect::<Vec<_>>();
            let (hits, _) = futures_util::future::join(
                self.hydrate(tenant, &ranked, query, self.may_rerank(query)),
                futures_util::future::join_all(settlements),
            )
            .await;
            let hits = hits?;
            if hits.len() >= k || exhausted || depth >= 1_000 {
                return Ok(hits);
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
        // Both legs of a hybrid search run concurrently (each waits on its own index).
        let vector = async {
            if matches!(query.mode, SearchMode::Vector | SearchMode::Hybrid) {
                self.vector_candidates(ctx, query, depth, allow, query_vectors)
                    .await
            } else {
                Ok(Vec::new())
            }
        };
        let keyword = async {
            if matches!(query.mode, SearchMode::Keyword | SearchMode::Hybrid) {
                Ok::<_, RetrievalError>(
                    self.ports
                        .keywords
                        .search(
                            tenant,
                            query.collections.as_deref(),
                            &query.text,
                            depth,
                            allow,
                        )
                        .await?,
                )
            } else {
                Ok(Vec::new())
            }
        };
        let (vector, keyword) = futures_util::future::try_join(vector, keyword).await?;
        Ok(match query.mode {
            SearchMode::Vector => vector,
            SearchMode::Keyword => keyword,
            SearchMode::Hybrid => {
                // The model's own weights when the vector leg searched one model.
                let fusion = query.fusion.unwrap_or(query_vectors.fusion);
                fusion.fuse(&vector, &keyword)
            }
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
        let scopes: Option<Vec<Option<CollectionId>>> = query
            .collections
            .as_ref()
            .map(|c| c.iter().copied().map(Some).collect());
        let spaces = self
            .ports
            .searched_spaces(tenant, scopes.as_deref())
            .await?;
        vectors.fusion = self.fusion.for_spaces(&spaces);
        let mut all = Vec::new();
        for space in spaces.iter().filter(|s| s.status == SpaceStatus::Active) {
            if !vectors.by_model.contains_key(&space.model) {
                let embedder = self.ports.embedder(&space.model)?;
                let (mut embedded, settlement) = self
                    .ports
                    .embed_unsettled(
                        embedder.as_ref(),
                        std::slice::from_ref(&query.text),
                        None,
                        tenant,
                        Some(ctx.principal()),
                        vectors.reference.clone(),
                    )
                    .await?;
                vectors.settlements.push(settlement);
                let vector = embedded.vectors.pop().ok_or_else(|| {
                    RetrievalError::Unknown(anyhow::anyhow!("the embedder answered no vector"))
                })?;
                vectors.by_model.insert(space.model.clone(), vector);
            }
            let Some(vector) = vectors.by_model.get(&space.model) else {
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

    /// Whether this search may be reranked (then every ranked candidate is read back: the
    /// reranker may lift any of them into the top k).
    fn may_rerank(&self, query: &SearchQuery) -> bool {
        self.reranking.is_some() && query.rerank && query.collections.is_some()
    }

    /// The ranked candidates' chunks, best first (a chunk gone meanwhile is skipped). Without
    /// reranking only the top k are read at first, and the rest only when some of those are
    /// gone: a search that shows k hits does not read the texts of the 30 to 150 candidates
    /// fusion ranked.
    async fn hydrate(
        &self,
        tenant: TenantId,
        ranked: &[Candidate],
        query: &SearchQuery,
        all: bool,
    ) -> Result<Vec<Hit>, RetrievalError> {
        let ranked: Vec<&Candidate> = ranked
            .iter()
            .filter(|c| query.min_score.is_none_or(|m| c.score >= m))
            .collect();
        let k = if all {
            ranked.len()
        } else {
            (query.top_k as usize).min(ranked.len())
        };
        let (first, rest) = ranked.split_at(k);
        let mut hits = self.read_back(tenant, first).await?;
        if hits.len() < k && !rest.is_empty() {
            hits.extend(self.read_back(tenant, rest).await?);
        }
        Ok(hits)
    }

    /// The chunks of `ranked`, in its order, without those gone.
    async fn read_back(
        &self,
        tenant: TenantId,
        ranked: &[&Candidate],
    ) -> Result<Vec<Hit>, RetrievalError> {
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
            .iter()
            .filter_map(|c| {
                records.remove(&c.chunk_id).map(|chunk| Hit {
                    chunk,
                    score: c.score,
                })
            })
            .collect())
    }
}

/// The query's vector per model, kept across the rounds of one search, the ledger
/// reference its embedding calls share, and their settlements still to await.
struct QueryVectors {
    reference: String,
    by_model: HashMap<EmbeddingModel, Vec<f32>>,
    /// `hybrid`'s fusion for the spaces the vector leg searched.
    fusion: Fusion,
    settlements: Vec<Settlement>,
}

/// Erasing an organization: the vectors of every space of the tenant are dropped from the
/// index (the rows, and the in-process HNSW graphs or pgvector indexes built over them).
#[async_trait::async_trait]
impl kernel::erasure::TenantData for Retrieval {
    fn kind(&self) -> &'static str {
        "vector_spaces"
    }

    async fn erase_tenant(&self, tenant: TenantId) -> anyhow::Result<u64> {
        let spaces = self.ports.spaces.list(tenant, None).await?;
        for space in &spaces {
            self.ports.vectors.drop_space(space).await?;
        }
        Ok(spaces.len() as u64)
    }
}
