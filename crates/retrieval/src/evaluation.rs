//! Evaluation: an organization's golden set (questions, each with the documents or chunks that
//! answer it, or an answer string a retrieved chunk must contain) run against one collection
//! in each search mode, scored by recall@1/5/10, MRR@10 and nDCG@10, and kept with the
//! settings that produced the figures (mode, fusion, embedding model, reranking).

use std::collections::HashSet;
use std::sync::Arc;

use documents::{ChunkId, CollectionId, DocumentId};
use futures_util::{StreamExt as _, TryStreamExt as _};
use kernel::{
    Clock, FieldError, InvalidInput, Page, PageRequest, Principal, TenantContext, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::RetrievalError;
use crate::model::{Fusion, FusionMethod};
use crate::model::{Hit, MAX_QUERY_CHARS, MetadataFilter, SearchMode, SearchQuery, SpaceStatus};
use crate::search::Retrieval;

kernel::define_id!(
    /// One run of a golden set against a collection.
    EvaluationId
);

/// Most questions of a golden set.
pub const MAX_EVALUATION_ITEMS: usize = 1_000;
/// Most expected documents or chunks of one question.
pub const MAX_EXPECTED_IDS: usize = 20;
/// Longest expected answer string, in characters.
pub const MAX_ANSWER_CHARS: usize = 1_000;
/// Deepest cut-off of `recall@k` (and the depth of each search).
pub const MAX_EVALUATION_K: u32 = 50;
/// `k` when a run does not say.
pub const DEFAULT_EVALUATION_K: u32 = 10;
/// Searches of one run in flight at once.
const CONCURRENT_SEARCHES: usize = 4;

/// What answers a question (at least one of the three). A result is relevant when it
/// matches any of them; each expected document, each expected chunk and the answer is one
/// target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    /// Any chunk of these documents.
    pub documents: Vec<DocumentId>,
    /// These chunks.
    pub chunks: Vec<ChunkId>,
    /// A chunk whose text contains this (case and runs of white space ignored), normalized.
    pub answer: Option<String>,
}

/// One question of a golden set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenItem {
    /// The question (a search query).
    pub question: String,
    /// What answers it.
    pub expected: Expected,
}

/// The questions of a golden set, as a client sends them (ids as text, checked by
/// [`GoldenSet::new`]); also the stored form of a question, `{question, documents?, chunks?,
/// answer?}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GoldenItemInput {
    /// The question.
    pub question: String,
    /// Expected document ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
    /// Expected chunk ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<String>>,
    /// Expected answer string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// A validated golden set: 1 to [`MAX_EVALUATION_ITEMS`] questions (the wire calls them
/// cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenSet(Vec<GoldenItem>);

fn ids<T>(
    raw: &[String],
    field: &str,
    parse: impl Fn(uuid::Uuid) -> T,
    errors: &mut Vec<FieldError>,
) -> Vec<T> {
    if raw.is_empty() || raw.len() > MAX_EXPECTED_IDS {
        errors.push(FieldError::new(
            field,
            format!("must list 1 to {MAX_EXPECTED_IDS} ids"),
        ));
    }
    raw.iter()
        .enumerate()
        .filter_map(|(j, s)| match uuid::Uuid::try_parse(s) {
            Ok(u) => Some(parse(u)),
            Err(_) => {
                errors.push(FieldError::new(format!("{field}[{j}]"), "is not an id"));
                None
            }
        })
        .collect()
}

impl GoldenSet {
    /// Checks every question; fields are named `{field}[i].question`,
    /// `{field}[i].expected_document_ids[j]` and so on (the wire's names).
    ///
    /// # Errors
    /// [`InvalidInput`] naming every failing field: no or more than
    /// [`MAX_EVALUATION_ITEMS`] questions, an empty or too long question, none of the
    /// expected documents, chunks and answer, an empty or too long list of ids, an id that does
    /// not parse, an empty or too long answer.
    pub fn new(items: Vec<GoldenItemInput>, field: &str) -> Result<Self, InvalidInput> {
        let mut errors = Vec::new();
        if items.is_empty() || items.len() > MAX_EVALUATION_ITEMS {
            return Err(InvalidInput::field(
                field,
                format!("must hold 1 to {MAX_EVALUATION_ITEMS} questions"),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{field}[{i}]");
            let question = item.question.trim().to_owned();
            if question.is_empty() || question.chars().count() > MAX_QUERY_CHARS {
                errors.push(FieldError::new(
                    format!("{at}.question"),
                    format!("must be 1 to {MAX_QUERY_CHARS} characters"),
                ));
            }
            if item.documents.is_none() && item.chunks.is_none() && item.answer.is_none() {
                errors.push(FieldError::new(
                    at.clone(),
                    "must name expected_document_ids, expected_chunk_ids or expected_answer",
                ));
            }
            let documents = item.documents.map_or_else(Vec::new, |d| {
                ids(
                    &d,
                    &format!("{at}.expected_document_ids"),
                    DocumentId::from_uuid,
                    &mut errors,
                )
            });
            let chunks = item.chunks.map_or_else(Vec::new, |c| {
                ids(
                    &c,
                    &format!("{at}.expected_chunk_ids"),
                    ChunkId::from_uuid,
                    &mut errors,
                )
            });
            let answer = item.answer.map(|a| {
                let a = normalized(&a);
                if a.is_empty() || a.chars().count() > MAX_ANSWER_CHARS {
                    errors.push(FieldError::new(
                        format!("{at}.expected_answer"),
                        format!("must be 1 to {MAX_ANSWER_CHARS} characters"),
                    ));
                }
                a
            });
            out.push(GoldenItem {
                question,
                expected: Expected {
                    documents,
                    chunks,
                    answer,
                },
            });
        }
        if errors.is_empty() {
            Ok(Self(out))
        } else {
            Err(InvalidInput(errors))
        }
    }

    /// The questions.
    #[must_use]
    pub fn items(&self) -> &[GoldenItem] {
        &self.0
    }

    /// The stored form: a JSON array of `{question, documents?, chunks?, answer?}`
    /// ([`GoldenItemInput`]; an empty list is left out).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let ids = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let stored: Vec<GoldenItemInput> = self
            .0
            .iter()
            .map(|i| GoldenItemInput {
                question: i.question.clone(),
                documents: ids(i
                    .expected
                    .documents
                    .iter()
                    .map(ToString::to_string)
                    .collect()),
                chunks: ids(i.expected.chunks.iter().map(ToString::to_string).collect()),
                answer: i.expected.answer.clone(),
            })
            .collect();
        serde_json::to_value(stored).unwrap_or_else(|e| unreachable!("strings serialize: {e}"))
    }

    /// Reads [`GoldenSet::to_json`] back.
    ///
    /// # Errors
    /// When the value is not a valid golden set.
    pub fn from_json(value: &Value) -> anyhow::Result<Self> {
        let items: Vec<GoldenItemInput> = serde_json::from_value(value.clone())
            .map_err(|e| anyhow::anyhow!("stored golden set: {e}"))?;
        Self::new(items, "items").map_err(|e| anyhow::anyhow!("stored golden set: {e:?}"))
    }
}

/// Lowercase, runs of white space as one space, trimmed: how answers and chunk texts are
/// compared.
fn normalized(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The figures of one mode (means over the questions, 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Share of a question's targets in the first result.
    pub recall_at_1: f64,
    /// … in the first 5.
    pub recall_at_5: f64,
    /// … in the first 10.
    pub recall_at_10: f64,
    /// … in the first `k` (the run's `k`).
    pub recall_at_k: f64,
    /// Mean reciprocal rank of the first relevant result within the first 10 (0 when none).
    pub mrr_at_10: f64,
    /// Normalized discounted cumulative gain at 10 (binary gains, each target counted once).
    pub ndcg_at_10: f64,
}

/// One question's figures, before averaging.
fn score(hits: &[Hit], expected: &Expected, k: usize) -> Metrics {
    let targets = expected.documents.iter().collect::<HashSet<_>>().len()
        + expected.chunks.iter().collect::<HashSet<_>>().len()
        + usize::from(expected.answer.is_some());
    let targets = targets.max(1);
    // For each position: how many targets it finds that no result above it found.
    let mut seen_docs: HashSet<DocumentId> = HashSet::new();
    let mut seen_chunks: HashSet<ChunkId> = HashSet::new();
    let mut answer_found = false;
    let mut first_relevant: Option<usize> = None;
    let gains: Vec<usize> = hits
        .iter()
        .enumerate()
        .map(|(pos, h)| {
            let doc = expected.documents.contains(&h.chunk.document_id);
            let chunk = expected.chunks.contains(&h.chunk.chunk_id);
            let answer = expected
                .answer
                .as_ref()
                .is_some_and(|a| normalized(&h.chunk.text).contains(a.as_str()));
            if (doc || chunk || answer) && first_relevant.is_none() {
                first_relevant = Some(pos);
            }
            let new_answer = answer && !answer_found;
            answer_found |= answer;
            usize::from(doc && seen_docs.insert(h.chunk.document_id))
                + usize::from(chunk && seen_chunks.insert(h.chunk.chunk_id))
                + usize::from(new_answer)
        })
        .collect();
    #[allow(clippy::cast_precision_loss)] // small counts
    let recall = |n: usize| gains.iter().take(n).sum::<usize>() as f64 / targets as f64;
    #[allow(clippy::cast_precision_loss)]
    let discount = |pos: usize| 1.0 / ((pos + 2) as f64).log2();
    #[allow(clippy::cast_precision_loss)]
    let dcg: f64 = gains
        .iter()
        .take(10)
        .enumerate()
        .map(|(pos, g)| *g as f64 * discount(pos))
        .sum();
    let ideal: f64 = (0..targets.min(10)).map(discount).sum();
    Metrics {
        recall_at_1: recall(1),
        recall_at_5: recall(5),
        recall_at_10: recall(10),
        recall_at_k: recall(k),
        #[allow(clippy::cast_precision_loss)]
        mrr_at_10: first_relevant
            .filter(|p| *p < 10)
            .map_or(0.0, |p| 1.0 / (p + 1) as f64),
        ndcg_at_10: if ideal > 0.0 {
            (dcg / ideal).min(1.0)
        } else {
            0.0
        },
    }
}

fn mean(all: &[Metrics]) -> Metrics {
    #[allow(clippy::cast_precision_loss)]
    let n = all.len().max(1) as f64;
    let sum = |f: fn(&Metrics) -> f64| all.iter().map(f).sum::<f64>() / n;
    Metrics {
        recall_at_1: sum(|m| m.recall_at_1),
        recall_at_5: sum(|m| m.recall_at_5),
        recall_at_10: sum(|m| m.recall_at_10),
        recall_at_k: sum(|m| m.recall_at_k),
        mrr_at_10: sum(|m| m.mrr_at_10),
        ndcg_at_10: sum(|m| m.ndcg_at_10),
    }
}

/// The figures of one mode, with the fusion that produced them (`hybrid` only).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeResult {
    /// The search mode.
    pub mode: SearchMode,
    /// `hybrid`'s fusion.
    pub fusion: Option<Fusion>,
    /// The figures.
    pub metrics: Metrics,
}

/// A run of a golden set against a collection, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Id.
    pub id: EvaluationId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// The collections searched (`None`: every document of the organization).
    pub collection_ids: Option<Vec<CollectionId>>,
    /// Who ran it.
    pub principal: Option<Principal>,
    /// The questions.
    pub items: GoldenSet,
    /// The `recall@k` cut-off and the depth of each search.
    pub k: u32,
    /// The embedding models of the searched spaces when it ran, comma-separated (`None`: no
    /// vectors yet).
    pub embedding_model: Option<String>,
    /// Whether results were reranked.
    pub rerank: bool,
    /// The figures of each mode, in the order asked.
    pub results: Vec<ModeResult>,
    /// When it ran.
    pub created_at: OffsetDateTime,
}

/// The stored form of one mode's figures: `{mode, fusion: {method, keyword, vector} | null,
/// recall_at_1, recall_at_5, recall_at_10, recall_at_k, mrr_at_10, ndcg_at_10}`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredResult {
    mode: String,
    #[serde(default)]
    fusion: Option<StoredFusion>,
    recall_at_1: f64,
    recall_at_5: f64,
    recall_at_10: f64,
    recall_at_k: f64,
    mrr_at_10: f64,
    ndcg_at_10: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFusion {
    method: String,
    keyword: f32,
    vector: f32,
}

impl Evaluation {
    /// The stored form of [`Evaluation::results`] (an array of `StoredResult`).
    #[must_use]
    pub fn results_json(&self) -> Value {
        let stored: Vec<StoredResult> = self
            .results
            .iter()
            .map(|r| {
                let m = &r.metrics;
                StoredResult {
                    mode: r.mode.as_str().to_owned(),
                    fusion: r.fusion.map(|f| StoredFusion {
                        method: f.method.as_str().to_owned(),
                        keyword: f.keyword,
                        vector: f.vector,
                    }),
                    recall_at_1: m.recall_at_1,
                    recall_at_5: m.recall_at_5,
                    recall_at_10: m.recall_at_10,
                    recall_at_k: m.recall_at_k,
                    mrr_at_10: m.mrr_at_10,
                    ndcg_at_10: m.ndcg_at_10,
                }
            })
            .collect();
        // Figures are finite means of 0..1 values: serializing them cannot fail.
        serde_json::to_value(stored).unwrap_or_else(|e| unreachable!("figures serialize: {e}"))
    }

    /// Reads [`Evaluation::results_json`] back.
    ///
    /// # Errors
    /// When the value is not results.
    pub fn results_from_json(value: &Value) -> anyhow::Result<Vec<ModeResult>> {
        let stored: Vec<StoredResult> = serde_json::from_value(value.clone())
            .map_err(|e| anyhow::anyhow!("stored evaluation results: {e}"))?;
        stored
            .into_iter()
            .map(|r| {
                let mode = SearchMode::parse(&r.mode)
                    .ok_or_else(|| anyhow::anyhow!("stored evaluation mode {:?}", r.mode))?;
                let fusion = r
                    .fusion
                    .map(|f| {
                        let method = FusionMethod::parse(&f.method)
                            .ok_or_else(|| anyhow::anyhow!("stored fusion method"))?;
                        Fusion::new(method, f.keyword, f.vector, "fusion")
                            .map_err(|e| anyhow::anyhow!("stored fusion: {e:?}"))
                    })
                    .transpose()?;
                Ok(ModeResult {
                    mode,
                    fusion,
                    metrics: Metrics {
                        recall_at_1: r.recall_at_1,
                        recall_at_5: r.recall_at_5,
                        recall_at_10: r.recall_at_10,
                        recall_at_k: r.recall_at_k,
                        mrr_at_10: r.mrr_at_10,
                        ndcg_at_10: r.ndcg_at_10,
                    },
                })
            })
            .collect()
    }
}

/// A run to make: the collections, the questions (inline or those of an earlier run), the
/// modes and `k`.
#[derive(Debug, Clone)]
pub struct EvaluationRequest {
    /// The collections to search (`None`: every document of the organization).
    pub collection_ids: Option<Vec<CollectionId>>,
    /// The questions, or the earlier run whose questions to reuse.
    pub set: SetSource,
    /// Modes, each once, in order (default: keyword, vector, hybrid).
    pub modes: Vec<SearchMode>,
    /// `recall@k`'s cut-off and the depth of each search (10 to 50).
    pub k: u32,
    /// `hybrid`'s fusion instead of the configured one (to try weights).
    pub fusion: Option<Fusion>,
    /// Rerank as the collection says (`true`, the default) or not at all.
    pub rerank: bool,
}

/// Where a run's questions come from.
#[derive(Debug, Clone)]
pub enum SetSource {
    /// Sent with the request.
    Inline(GoldenSet),
    /// The questions of an earlier run of the organization.
    Stored(EvaluationId),
}

impl EvaluationRequest {
    /// Checks the modes and `k` (the set is checked by [`GoldenSet::new`]).
    ///
    /// # Errors
    /// [`InvalidInput`] on `modes` (empty, repeated) or `k`.
    pub fn new(
        collection_ids: Option<Vec<CollectionId>>,
        set: SetSource,
        modes: Option<Vec<SearchMode>>,
        k: Option<u32>,
        fusion: Option<Fusion>,
    ) -> Result<Self, InvalidInput> {
        let mut errors = Vec::new();
        let modes = modes
            .unwrap_or_else(|| vec![SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid]);
        let distinct: HashSet<_> = modes.iter().map(|m| m.as_str()).collect();
        if modes.is_empty() || distinct.len() != modes.len() {
            errors.push(FieldError::new(
                "modes",
                "must name 1 to 3 distinct modes of keyword, vector and hybrid",
            ));
        }
        if let Some(c) = &collection_ids
            && (c.is_empty() || c.len() > crate::model::MAX_SEARCH_COLLECTIONS)
        {
            errors.push(FieldError::new(
                "collection_ids",
                format!(
                    "must name 1 to {} collections (omit it for every document)",
                    crate::model::MAX_SEARCH_COLLECTIONS
                ),
            ));
        }
        let k = k.unwrap_or(DEFAULT_EVALUATION_K);
        if !(DEFAULT_EVALUATION_K..=MAX_EVALUATION_K).contains(&k) {
            errors.push(FieldError::new(
                "k",
                format!("must be between {DEFAULT_EVALUATION_K} and {MAX_EVALUATION_K}"),
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                collection_ids,
                set,
                modes,
                k,
                fusion,
                rerank: true,
            })
        } else {
            Err(InvalidInput(errors))
        }
    }
}

/// Storage of runs.
#[async_trait::async_trait]
pub trait EvaluationRepository: Send + Sync + std::fmt::Debug {
    /// Stores a run.
    async fn create(&self, evaluation: &Evaluation) -> anyhow::Result<()>;

    /// The tenant's run with this id.
    async fn find(&self, tenant: TenantId, id: EvaluationId) -> anyhow::Result<Option<Evaluation>>;

    /// The tenant's runs, oldest first.
    async fn list(&self, tenant: TenantId, page: &PageRequest) -> anyhow::Result<Page<Evaluation>>;
}

/// Running, listing and reading evaluations.
#[derive(Debug, Clone)]
pub struct Evaluations {
    retrieval: Arc<Retrieval>,
    repo: Arc<dyn EvaluationRepository>,
    clock: Arc<dyn Clock>,
}

impl Evaluations {
    /// The use cases over search, the store and a clock.
    #[must_use]
    pub fn new(
        retrieval: Arc<Retrieval>,
        repo: Arc<dyn EvaluationRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            retrieval,
            repo,
            clock,
        }
    }

    /// Runs the golden set against the collection in each mode, stores and answers the run.
    ///
    /// Every question is a search like `POST /search` (restricted to the collection, `k`
    /// deep), so vector and hybrid modes embed it, metered as search is.
    ///
    /// # Errors
    /// [`RetrievalError::NotFound`] when the collection or the stored run is not the
    /// tenant's; search's errors (metering, the provider); storage failures.
    pub async fn run(
        &self,
        ctx: &TenantContext,
        request: EvaluationRequest,
    ) -> Result<Evaluation, RetrievalError> {
        let tenant = ctx.tenant_id();
        let ports = self.retrieval.ports();
        let mut reranked_collection = false;
        for c in request.collection_ids.iter().flatten() {
            let found = ports
                .collections
                .find(tenant, *c)
                .await
                .map_err(anyhow::Error::new)?
                .ok_or(RetrievalError::NotFound)?;
            reranked_collection |= found.rerank_top_n.is_some();
        }
        let rerank = request.rerank && reranked_collection && self.retrieval.reranking().is_some();
        let items = match request.set {
            SetSource::Inline(set) => set,
            SetSource::Stored(id) => {
                self.repo
                    .find(tenant, id)
                    .await?
                    .ok_or(RetrievalError::NotFound)?
                    .items
            }
        };
        let scopes: Option<Vec<Option<CollectionId>>> = request
            .collection_ids
            .as_ref()
            .map(|c| c.iter().copied().map(Some).collect());
        let spaces = ports.spaces.list(tenant, scopes.as_deref()).await?;
        let mut models: Vec<&str> = spaces
            .iter()
            .filter(|s| s.status == SpaceStatus::Active)
            .map(|s| s.model.name())
            .collect();
        models.sort_unstable();
        models.dedup();
        let embedding_model = (!models.is_empty()).then(|| models.join(","));
        let scope_fusion = self.retrieval.fusion_for_spaces(&spaces);
        let k = request.k;
        let depth = k.min(crate::model::MAX_TOP_K);
        let mut results = Vec::with_capacity(request.modes.len());
        for mode in request.modes {
            let fusion =
                (mode == SearchMode::Hybrid).then(|| request.fusion.unwrap_or(scope_fusion));
            let scores: Vec<Metrics> = futures_util::stream::iter(items.items().iter())
                .map(|item| {
                    let query = SearchQuery::new(
                        &item.question,
                        request.collection_ids.clone(),
                        Some(depth),
                        None,
                        mode,
                        MetadataFilter::default(),
                    )
                    .map(|mut q| {
                        q.fusion = fusion;
                        q.rerank = rerank;
                        q
                    });
                    async move {
                        let query = query?;
                        let hits = self.retrieval.search(ctx, &query).await?;
                        Ok::<_, RetrievalError>(score(&hits, &item.expected, k as usize))
                    }
                })
                .buffered(CONCURRENT_SEARCHES)
                .try_collect()
                .await?;
            results.push(ModeResult {
                mode,
                fusion,
                metrics: mean(&scores),
            });
        }
        let evaluation = Evaluation {
            id: EvaluationId::new(),
            tenant_id: tenant,
            collection_ids: request.collection_ids,
            principal: Some(ctx.principal()),
            items,
            k,
            embedding_model,
            rerank,
            results,
            created_at: self.clock.now(),
        };
        self.repo.create(&evaluation).await?;
        Ok(evaluation)
    }

    /// The tenant's run with this id.
    ///
    /// # Errors
    /// [`RetrievalError::NotFound`] when it is not the tenant's; storage failures.
    pub async fn get(
        &self,
        tenant: TenantId,
        id: EvaluationId,
    ) -> Result<Evaluation, RetrievalError> {
        self.repo
            .find(tenant, id)
            .await?
            .ok_or(RetrievalError::NotFound)
    }

    /// The tenant's runs, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Evaluation>, RetrievalError> {
        Ok(self.repo.list(tenant, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChunkRecord;

    fn hit(document: DocumentId, text: &str) -> Hit {
        Hit {
            chunk: ChunkRecord {
                chunk_id: ChunkId::new(),
                document_id: document,
                document_name: "d".to_owned(),
                collection_id: None,
                ordinal: 0,
                page: None,
                text: text.to_owned(),
                tokens: 1,
            },
            score: 1.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_single_target_scores_by_its_rank() {
        let (a, b) = (DocumentId::new(), DocumentId::new());
        let hits = [hit(b, "x"), hit(b, "y"), hit(a, "z"), hit(a, "w")];
        let docs = |d: Vec<DocumentId>| Expected {
            documents: d,
            ..Expected::default()
        };
        let m = score(&hits, &docs(vec![a]), 10);
        assert!(close(m.recall_at_1, 0.0));
        assert!(close(m.recall_at_5, 1.0));
        assert!(close(m.mrr_at_10, 1.0 / 3.0));
        // One target found at position 3: DCG = 1/log2(4), IDCG = 1.
        assert!(close(m.ndcg_at_10, 0.5));
        let first = score(&hits, &docs(vec![b]), 10);
        assert!(close(first.recall_at_1, 1.0) && close(first.ndcg_at_10, 1.0));
        let none = score(&hits, &docs(vec![DocumentId::new()]), 10);
        assert_eq!(none, Metrics::default());
    }

    #[test]
    fn several_targets_count_once_each() {
        let (a, b, c) = (DocumentId::new(), DocumentId::new(), DocumentId::new());
        // a twice (counted once), then b; c never.
        let hits = [hit(a, ""), hit(a, ""), hit(b, "")];
        let m = score(
            &hits,
            &Expected {
                documents: vec![a, b, c],
                ..Expected::default()
            },
            10,
        );
        assert!(close(m.recall_at_1, 1.0 / 3.0));
        assert!(close(m.recall_at_5, 2.0 / 3.0));
        let ideal = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!(close(m.ndcg_at_10, (1.0 + 0.5) / ideal));
    }

    #[test]
    fn answers_match_any_case_and_spacing() {
        let d = DocumentId::new();
        let hits = [hit(d, "nothing"), hit(d, "It was  the Best\nof times")];
        let set = GoldenSet::new(
            vec![GoldenItemInput {
                question: "how was it?".to_owned(),
                answer: Some("best of   TIMES".to_owned()),
                ..GoldenItemInput::default()
            }],
            "items",
        )
        .expect("valid");
        let m = score(&hits, &set.items()[0].expected, 10);
        assert!(close(m.recall_at_1, 0.0) && close(m.recall_at_5, 1.0));
        assert!(close(m.mrr_at_10, 0.5));
    }

    #[test]
    fn golden_sets_are_checked_and_round_trip() {
        let too_many = vec![
            GoldenItemInput {
                question: "q".to_owned(),
                answer: Some("a".to_owned()),
                ..GoldenItemInput::default()
            };
            MAX_EVALUATION_ITEMS + 1
        ];
        assert!(GoldenSet::new(too_many, "items").is_err());
        assert!(GoldenSet::new(Vec::new(), "items").is_err());
        let bad = GoldenSet::new(
            vec![
                GoldenItemInput {
                    question: " ".to_owned(),
                    documents: Some(vec!["nope".to_owned()]),
                    ..GoldenItemInput::default()
                },
                GoldenItemInput {
                    question: "q".to_owned(),
                    ..GoldenItemInput::default()
                },
            ],
            "items",
        )
        .expect_err("invalid");
        let fields: Vec<&str> = bad.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].question",
                "items[0].expected_document_ids[0]",
                "items[1]"
            ]
        );
        let ok = GoldenSet::new(
            vec![
                GoldenItemInput {
                    question: "q1".to_owned(),
                    documents: Some(vec![DocumentId::new().to_string()]),
                    ..GoldenItemInput::default()
                },
                GoldenItemInput {
                    question: "q2".to_owned(),
                    chunks: Some(vec![ChunkId::new().to_string()]),
                    ..GoldenItemInput::default()
                },
                GoldenItemInput {
                    question: "q3".to_owned(),
                    answer: Some("A b".to_owned()),
                    ..GoldenItemInput::default()
                },
                GoldenItemInput {
                    question: "q4".to_owned(),
                    documents: Some(vec![DocumentId::new().to_string()]),
                    answer: Some("c".to_owned()),
                    ..GoldenItemInput::default()
                },
            ],
            "items",
        )
        .expect("valid");
        assert_eq!(GoldenSet::from_json(&ok.to_json()).expect("reads"), ok);
    }

    /// Rows written before the stored forms were serde types (by hand, with `json!`) read
    /// back, and are written again in the same shape.
    #[test]
    fn the_stored_shapes_written_by_hand_still_read() {
        let doc = DocumentId::new();
        let chunk = ChunkId::new();
        let items = serde_json::json!([
            {"question": "q1", "documents": [doc.to_string()]},
            {"question": "q2", "chunks": [chunk.to_string()], "answer": "a b"},
        ]);
        let set = GoldenSet::from_json(&items).expect("old items read");
        assert_eq!(set.items()[0].expected.documents, [doc]);
        assert_eq!(set.items()[1].expected.chunks, [chunk]);
        assert_eq!(set.items()[1].expected.answer.as_deref(), Some("a b"));
        assert_eq!(set.to_json(), items);
        // The old writer's results: `fusion` null outside hybrid, f32 weights as f64.
        let results = serde_json::json!([
            {"mode": "keyword", "fusion": null, "recall_at_1": 0.5, "recall_at_5": 0.75,
             "recall_at_10": 1.0, "recall_at_k": 1.0, "mrr_at_10": 0.625, "ndcg_at_10": 0.7},
            {"mode": "hybrid", "fusion": {"method": "minmax", "keyword": 1.5, "vector": 1.0},
             "recall_at_1": 0.25, "recall_at_5": 0.5, "recall_at_10": 0.5, "recall_at_k": 0.5,
             "mrr_at_10": 0.375, "ndcg_at_10": 0.4},
        ]);
        let read = Evaluation::results_from_json(&results).expect("old results read");
        assert_eq!(read[0].mode, SearchMode::Keyword);
        assert_eq!(read[0].fusion, None);
        assert!((read[0].metrics.mrr_at_10 - 0.625).abs() < f64::EPSILON);
        assert_eq!(read[1].mode, SearchMode::Hybrid);
        assert_eq!(
            read[1].fusion,
            Some(Fusion::new(FusionMethod::MinMax, 1.5, 1.0, "fusion").expect("valid"))
        );
        let evaluation = Evaluation {
            id: EvaluationId::new(),
            tenant_id: TenantId::new(),
            collection_ids: None,
            principal: None,
            items: set,
            k: 10,
            embedding_model: None,
            rerank: false,
            results: read,
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(evaluation.results_json(), results);
        assert!(Evaluation::results_from_json(&serde_json::json!([{"mode": "keyword"}])).is_err());
        assert!(
            Evaluation::results_from_json(&serde_json::json!([
                {"mode": "sideways", "fusion": null, "recall_at_1": 0.5, "recall_at_5": 0.75,
                 "recall_at_10": 1.0, "recall_at_k": 1.0, "mrr_at_10": 0.625, "ndcg_at_10": 0.7}
            ]))
            .is_err()
        );
    }
}
