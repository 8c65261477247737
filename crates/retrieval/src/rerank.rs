//! Reranking: a stage after fusion that reorders the first N results of a search by a
//! cross-encoder's relevance (a provider's `/rerank`), for collections that turn it on. A
//! reranker that fails or is slow never fails a search: the fused order stands, with a
//! warning. The adapter bounds each call's time (a slow provider is a failure).

use std::sync::Arc;

use kernel::{Meter, MeterScope, Principal, TenantId, Tokens, UsageKind};

use crate::embedding::embedding_token_bound;
use crate::model::Hit;

/// A reranker's answer: for the documents it was given, the index of each (into that list)
/// and its relevance, best first; and the tokens the provider counted, when it says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reranked {
    /// `(index, relevance)`, best first.
    pub order: Vec<(usize, f32)>,
    /// Tokens billed, if the provider reported them.
    pub tokens: Option<u64>,
}

/// Why a rerank failed.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    /// The provider could not be reached, timed out or answered an error.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (an answer that does not parse).
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// A cross-encoder that scores documents against a query.
#[async_trait::async_trait]
pub trait Reranker: Send + Sync + std::fmt::Debug {
    /// The model's name (metering and logs).
    fn model(&self) -> &str;

    /// Scores `documents` against `query`; answers the best `top_n`, best first.
    ///
    /// # Errors
    /// [`RerankError::Unavailable`] when the provider fails; [`RerankError::Unknown`] on an
    /// answer that does not make sense.
    async fn rerank(
        &self,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<Reranked, RerankError>;
}

/// The reranking stage: the port and metering.
#[derive(Debug, Clone)]
pub struct Reranking {
    reranker: Arc<dyn Reranker>,
}

impl Reranking {
    /// Reranking through `reranker`.
    #[must_use]
    pub fn new(reranker: Arc<dyn Reranker>) -> Self {
        Self { reranker }
    }

    /// The reranker's model.
    #[must_use]
    pub fn model(&self) -> &str {
        self.reranker.model()
    }
    /// Reorders the first `top_n` hits by the reranker (the rest keep their fused order
    /// after them). Any failure — metering refused, the provider down or slow, an answer with
    /// an index out of range — leaves `hits` as they were, with a warning; answers whether
    /// the order is the reranker's.
    pub(crate) async fn apply(
        &self,
        meter: &Arc<dyn Meter>,
        tenant: TenantId,
        actor: Option<Principal>,
        query: &str,
        hits: &mut Vec<Hit>,
        top_n: usize,
    ) -> bool {
        let n = top_n.min(hits.len());
        if n < 2 {
            return false;
        }
        let texts: Vec<String> = hits[..n].iter().map(|h| h.chunk.text.clone()).collect();
        let bound = embedding_token_bound(&texts).saturating_add(
            embedding_token_bound(std::slice::from_ref(&query.to_owned())).saturating_mul(n as u64),
        );
        let scope = MeterScope {
            tenant,
            actor,
            model: self.reranker.model().to_owned(),
            kind: UsageKind::Embedding,
            reference: format!("rerank:{}", uuid::Uuid::now_v7()),
        };
        let reservation = match meter.reserve(scope, bound).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reranking skipped: metering refused it");
                return false;
            }
        };
        let reranked = match self.reranker.rerank(query, &texts, n).await {
            Ok(r) => r,
            Err(e) => {
                meter.release(reservation).await;
                tracing::warn!(
                    error = %e,
                    model = self.reranker.model(),
                    "reranking failed: the fused order stands"
                );
                return false;
            }
        };
        match reranked.tokens {
            Some(t) => {
                meter
                    .settle(
                        reservation,
                        Tokens {
                            prompt: t,
                            completion: 0,
                        },
                    )
                    .await;
            }
            None => meter.release(reservation).await,
        }
        let mut seen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for (i, _) in &reranked.order {
            if *i >= n || seen[*i] {
                tracing::warn!(
                    index = i,
                    "reranking answered a bad index: the fused order stands"
                );
                return false;
            }
            seen[*i] = true;
            order.push(*i);
        }
        // Documents the reranker left out follow, in fused order.
        order.extend((0..n).filter(|i| !seen[*i]));
        let head: Vec<Hit> = order.iter().map(|i| hits[*i].clone()).collect();
        hits.splice(..n, head);
        true
    }
}
