//! Search (vector, keyword, hybrid, fused by reciprocal rank) and `POST /embeddings`.

use std::collections::HashMap;

use documents::{ChunkId, CollectionId, DocumentId};
use kernel::{FieldError, InvalidInput, TenantContext, TenantId};

use crate::embedding::{Embedders, RetrievalPorts};
use crate::error::RetrievalError;
use crate::model::{
    Candidate, EmbeddingModel, Embeddings, Hit, SearchMode, SearchQuery, SpaceStatus,
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
    fn fusion_of_one_list_keeps_its_order() {
        let list = [c(0.9), c(0.5), c(0.1)];
        let fused = fuse(&[&list]);
        let ids: Vec<ChunkId> = fused.iter().map(|f| f.chunk_id).collect();
        let want: Vec<ChunkId> = list.iter().map(|f| f.chunk_id).collect();
        assert_eq!(ids, want);
    }
}
