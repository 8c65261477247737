//! Embedding: the models of this deployment ([`Embedders`]), the adapters every retrieval use
//! case works with ([`RetrievalPorts`]), and the one metered embedding call they share (reserve
//! a bound, call the provider, settle to its count or release).

use std::sync::Arc;

use documents::{
    ChunkId, CollectionId, CollectionRepository, DocumentId, IndexFailure, StoreError, Tokenizer,
};
use kernel::{
    Clock, InvalidInput, Meter, MeterError, MeterScope, Principal, TenantId, Tokens, UsageKind,
};

use crate::model::{EmbeddingModel, Embeddings, Space, VectorEntry};
use crate::ports::{
    ChunkCatalog, EmbedError, Embedder, IndexError, KeywordIndex, SpaceRepository, VectorIndex,
};
use crate::recent::RecentScopes;

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

/// The settlement of a metered embedding call, to await (see
/// [`RetrievalPorts::embed_unsettled`]).
pub(crate) type Settlement = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Why a metered embedding call failed.
#[derive(Debug)]
pub(crate) enum MeteredEmbedError {
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

    pub(crate) fn unknown(&self, field: &str, name: &str) -> InvalidInput {
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
    /// What searches reuse ([`RetrievalPorts::with_recheck`]; `RecentScopes::default()`
    /// keeps nothing).
    pub recent: RecentScopes,
}

impl RetrievalPorts {
    /// These ports with a search's collection checks and spaces lists reused for `ttl` (0:
    /// read every time, the default), and every write of collections or spaces through them
    /// forgetting what was kept. Give documents this `collections` port (the composition root
    /// does), so that its writes forget too. See the module docs of `retrieval::recent`.
    #[must_use]
    pub fn with_recheck(mut self, ttl: std::time::Duration) -> Self {
        let recent = RecentScopes::with_ttl(ttl);
        self.collections = recent.forgetful_collections(self.collections);
        self.spaces = recent.forgetful_spaces(self.spaces);
        self.recent = recent;
        self
    }

    /// Whether `collection` is the tenant's: its `rerank_top_n` (`Some`), or `None` when it is
    /// not; reused for the recheck time.
    pub(crate) async fn searched_collection(
        &self,
        tenant: TenantId,
        collection: CollectionId,
    ) -> Result<Option<Option<u32>>, StoreError> {
        self.recent
            .collection(
                self.collections.as_ref(),
                tenant,
                collection,
                self.clock.now(),
            )
            .await
    }

    /// The non-retired spaces of these scopes of the tenant ([`SpaceRepository::list`]);
    /// reused for the recheck time.
    pub(crate) async fn searched_spaces(
        &self,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
    ) -> Result<Vec<Space>, IndexError> {
        self.recent
            .spaces(self.spaces.as_ref(), tenant, scopes, self.clock.now())
            .await
    }
}

impl RetrievalPorts {
    /// The model a scope should be embedded with: the collection's own, else the default.
    pub(crate) async fn desired_model(
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

    pub(crate) fn model_named(&self, name: Option<&str>) -> EmbeddingModel {
        name.and_then(|n| self.embedders.get(n))
            .unwrap_or(self.embedders.default_embedder())
            .model()
            .clone()
    }

    pub(crate) fn embedder(
        &self,
        model: &EmbeddingModel,
    ) -> Result<&Arc<dyn Embedder>, EmbedError> {
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
    pub(crate) async fn embed_metered(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
        tenant: TenantId,
        actor: Option<Principal>,
        reference: String,
    ) -> Result<Embeddings, MeteredEmbedError> {
        let (embedded, settlement) = self
            .embed_unsettled(embedder, texts, None, tenant, actor, reference)
            .await?;
        settlement.await;
        Ok(embedded)
    }

    /// [`RetrievalPorts::embed_metered`], answering as soon as the vectors are there, with
    /// the settlement (the ledger write) still to await: the caller runs it beside what it
    /// does next and must await it before it answers (a settlement dropped unawaited leaves
    /// the reservation counted until its lease expires, and the call out of the ledger).
    ///
    /// `counted`: the texts' tokens by a tokenizer, when known; taken for the embedder's own
    /// count when it bills that tokenizer's ([`Embedder::billed_tokenizer`]).
    pub(crate) async fn embed_unsettled(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
        counted: Option<(Tokenizer, u64)>,
        tenant: TenantId,
        actor: Option<Principal>,
        reference: String,
    ) -> Result<(Embeddings, Settlement), MeteredEmbedError> {
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
        let known = counted
            .filter(|(by, _)| embedder.billed_tokenizer() == Some(*by))
            .map(|(_, tokens)| tokens);
        let embedded = match known {
            Some(tokens) => embedder.embed_counted(texts, tokens).await,
            None => embedder.embed(texts).await,
        };
        match embedded {
            Ok(embedded) => {
                let used = Tokens {
                    prompt: embedded.tokens,
                    completion: 0,
                };
                let meter = Arc::clone(&self.meter);
                let settlement: Settlement =
                    Box::pin(async move { meter.settle(reservation, used).await });
                Ok((embedded, settlement))
            }
            Err(e) => {
                self.meter.release(reservation).await;
                Err(MeteredEmbedError::Embed(e))
            }
        }
    }

    /// Embeds chunks into `space` (background work billed to the space's tenant, with
    /// `reference` in the usage ledger); answers the tokens the provider counted. `counted`:
    /// the chunks' tokens by a tokenizer, when the chunker knew them (see
    /// [`RetrievalPorts::embed_unsettled`]).
    pub(crate) async fn embed_into(
        &self,
        space: &Space,
        chunks: &[(ChunkId, DocumentId, &str)],
        counted: Option<(Tokenizer, u64)>,
        reference: String,
    ) -> Result<u64, IndexFailure> {
        if chunks.is_empty() {
            return Ok(0);
        }
        let embedder = self.embedder(&space.model).map_err(index_failure)?;
        let texts: Vec<String> = chunks.iter().map(|(_, _, t)| (*t).to_owned()).collect();
        let (embedded, settlement) = self
            .embed_unsettled(
                embedder.as_ref(),
                &texts,
                counted,
                space.tenant_id,
                None,
                reference,
            )
            .await
            .map_err(|e| match e {
                MeteredEmbedError::Metering(e) => metering_failure(e),
                MeteredEmbedError::Embed(e) => index_failure(e),
            })?;
        settlement.await;
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
            .map_err(|e| IndexFailure::Unavailable(format!("vector index: {e}")))?;
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
        // Nothing about the file: the job waits for the meter (or a free slot).
        e @ (MeterError::TooManyStreams { .. } | MeterError::Unavailable(_)) => {
            IndexFailure::Unavailable(format!("metering: {:#}", anyhow::Error::new(e)))
        }
    }
}

fn index_failure(e: EmbedError) -> IndexFailure {
    match e {
        EmbedError::Rejected(m) => IndexFailure::Permanent(format!("embedding: {m}")),
        EmbedError::Unavailable(m) => IndexFailure::Unavailable(format!("embedding: {m}")),
        EmbedError::Unknown(e) => IndexFailure::Transient(format!("embedding: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_reservations_bound_the_tokens_by_the_bytes_plus_one_per_text() {
        assert_eq!(embedding_token_bound(&[]), 0);
        let texts = vec![String::new(), "abcdefg".to_owned(), "سلام".to_owned()];
        assert_eq!(embedding_token_bound(&texts), 1 + 8 + 9);
    }

    #[test]
    fn a_used_up_quota_fails_indexing_for_good_and_an_unavailable_meter_waits() {
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
            other => panic!("not permanent: {other:?}"),
        }
        let down = metering_failure(MeterError::Unavailable(anyhow::anyhow!("redis is down")));
        match down {
            IndexFailure::Unavailable(m) => assert!(m.contains("redis is down"), "{m}"),
            other => panic!("not an outage: {other:?}"),
        }
        assert!(matches!(
            metering_failure(MeterError::TooManyStreams {
                limit: 2,
                retry_after: std::time::Duration::from_secs(1),
            }),
            IndexFailure::Unavailable(_)
        ));
    }
}
