//! Ports of retrieval: the embedder, the embedding spaces, the vector index (and the rows an
//! in-process index keeps in SQL), the keyword index and the chunk catalog.

use async_trait::async_trait;
/// The tokenizer [`Embedder::billed_tokenizer`] names (chunking's).
pub use documents::Tokenizer;
use documents::{ChunkId, CollectionId, DocumentId};
use kernel::TenantId;
use time::OffsetDateTime;

use crate::model::{
    Candidate, ChunkRecord, ChunkText, EmbeddingModel, Embeddings, MetadataFilter, Space, SpaceId,
    VectorEntry,
};

/// Why an embedder failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The provider refused the input for good (too long, unknown model): the same call fails
    /// the same way. The message is the provider's, safe to show.
    #[error("the embedding provider refused the input: {0}")]
    Rejected(String),
    /// The provider could not be reached, timed out or kept answering 429/5xx, after every
    /// retry. Running again later may succeed.
    #[error("the embedding provider is unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Turns texts into vectors of one model.
///
/// Contract: `embed` answers one L2-normalized vector of `model().dimensions()` per input, in
/// order; it splits the inputs into batches the provider accepts and retries what may pass on
/// a second try (429 honouring `Retry-After`, 5xx, timeouts) with backoff and jitter.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// The model and its dimension.
    fn model(&self) -> &EmbeddingModel;

    /// Embeds `inputs`.
    ///
    /// # Errors
    /// [`EmbedError`] naming why.
    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, EmbedError>;

    /// The tokenizer whose count of the inputs is what this embedder bills, when it is one
    /// chunking counts with: chunks counted by it need not be counted again (see
    /// [`Embedder::embed_counted`]). `None` (the default): the embedder counts its own way.
    fn billed_tokenizer(&self) -> Option<Tokenizer> {
        None
    }

    /// [`Embedder::embed`] of inputs whose billed count is already known: `tokens`, their
    /// count by [`Embedder::billed_tokenizer`] (the caller checked it is that tokenizer's).
    /// The default ignores it and counts.
    ///
    /// # Errors
    /// [`EmbedError`] naming why.
    async fn embed_counted(
        &self,
        inputs: &[String],
        tokens: u64,
    ) -> Result<Embeddings, EmbedError> {
        let _ = tokens;
        self.embed(inputs).await
    }
}

/// Failures of the storage ports of retrieval.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector of the wrong dimension for its space (a bug of the caller).
    #[error("a vector has {got} dimensions; the space has {expected}")]
    Dimension {
        /// The space's dimension.
        expected: u32,
        /// The vector's.
        got: usize,
    },
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores embedding spaces.
///
/// Contract: a scope (tenant + collection, or tenant + no collection) has at most one `active`
/// and at most one `building` space, however many callers race; every method is scoped to the
/// tenant it names.
#[async_trait]
pub trait SpaceRepository: Send + Sync + std::fmt::Debug {
    /// The non-retired spaces of the tenant: of these collections (`None` inside the slice is
    /// "no collection"), or all of them when `scopes` is `None`.
    async fn list(
        &self,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
    ) -> Result<Vec<Space>, IndexError>;

    /// The non-retired space of the scope with this model, creating it with `space`'s
    /// status when there is none. Creating a `building` space retires any other building
    /// space of the scope; creating an `active` one is only done for a scope without an
    /// active space (else the existing active space is answered).
    async fn ensure(&self, space: Space) -> Result<Space, IndexError>;

    /// Makes a building space the active one of its scope and retires the others, atomically.
    /// `Ok(false)` when the space is no longer building.
    async fn activate(&self, id: SpaceId) -> Result<bool, IndexError>;

    /// Leases one building space (re-embedding) until `now + lease`, or one whose lease
    /// expired; answers the space and the lease token.
    async fn claim_building(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<(Space, uuid::Uuid)>, IndexError>;

    /// Extends a lease; `Ok(false)` when it was lost or the space is no longer building.
    async fn renew(
        &self,
        id: SpaceId,
        lease: uuid::Uuid,
        until: OffsetDateTime,
    ) -> Result<bool, IndexError>;

    /// Retired spaces (their vectors are to be dropped), at most `limit`.
    async fn retired(&self, limit: usize) -> Result<Vec<Space>, IndexError>;

    /// Forgets a space (after its vectors were dropped).
    async fn delete(&self, id: SpaceId) -> Result<(), IndexError>;

    /// Every active space whose model is not `model` among the scopes that follow the default
    /// model (collections without an `embedding_model` of their own, and "no collection"), at
    /// most `limit`: these re-embed when the configured default changes.
    async fn active_not_on(
        &self,
        model: &EmbeddingModel,
        limit: usize,
    ) -> Result<Vec<Space>, IndexError>;
}

/// A vector index: nearest chunks by cosine similarity within one space.
///
/// Contract (checked on every adapter by `testkit::contract::vectors`): exact results below
/// the adapter's threshold, high recall above it; a search only ever sees its own space (so
/// only its own tenant) and returns `k` results whenever `k` vectors pass `allow`; vectors
/// persist across a restart of the process.
#[async_trait]
pub trait VectorIndex: Send + Sync + std::fmt::Debug {
    /// Adds or replaces vectors of `space` (keyed by chunk).
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<(), IndexError>;

    /// The `k` nearest vectors of `space` to `query` (normalized), best first, scored by
    /// cosine similarity; only chunks of `allow` documents when given.
    async fn search(
        &self,
        space: &Space,
        query: &[f32],
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError>;

    /// Which of `chunks` have no vector in `space`.
    async fn missing(&self, space: &Space, chunks: &[ChunkId]) -> Result<Vec<ChunkId>, IndexError>;

    /// Removes the vectors of the document in every space of the tenant, but those of the
    /// chunks in `keep`.
    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<(), IndexError>;

    /// Removes every vector of the space.
    async fn drop_space(&self, space: &Space) -> Result<(), IndexError>;

    /// Short name of the backend (`hnsw`, `pgvector`, `memory`).
    fn backend(&self) -> &'static str;
}

/// One stored vector row, as an in-process index loads it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRow {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The write that stored it: rows of one space are written in increasing `seq`.
    pub seq: i64,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Where an in-process vector index keeps its vectors (SQL: a BLOB of little-endian `f32` on
/// SQLite, `bytea` on PostgreSQL without pgvector), so that a restart reloads instead of
/// re-embedding and several processes share one truth.
///
/// Contract: `upsert` gives every row of one call the same `seq`, greater than any `seq`
/// already visible in the space, and makes the rows visible atomically, so that a reader
/// who has seen everything up to `seq` only needs rows after it; `version` answers the
/// space's greatest `seq` (0 when empty).
#[async_trait]
pub trait VectorRows: Send + Sync + std::fmt::Debug {
    /// Stores rows (replacing those of the same chunk); answers their `seq`.
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<i64, IndexError>;

    /// The space's greatest `seq` (0 when empty).
    async fn version(&self, space: SpaceId) -> Result<i64, IndexError>;

    /// The rows of the space with `seq > after`, in `seq` then chunk order, at most `limit`
    /// after `cursor` (the last chunk of the previous page of the same `seq`).
    async fn load(
        &self,
        space: SpaceId,
        after: i64,
        cursor: Option<(i64, ChunkId)>,
        limit: usize,
    ) -> Result<Vec<VectorRow>, IndexError>;

    /// Which of `chunks` have no row in `space`.
    async fn missing(&self, space: SpaceId, chunks: &[ChunkId])
    -> Result<Vec<ChunkId>, IndexError>;

    /// Deletes the rows of the document in every space of the tenant, but those of `keep`;
    /// answers the deleted rows' spaces and chunks.
    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<Vec<(SpaceId, ChunkId)>, IndexError>;

    /// Deletes every row of the space.
    async fn drop_space(&self, space: SpaceId) -> Result<(), IndexError>;
}

/// A keyword index over stored chunks, ranked by BM25.
///
/// Contract: the index follows the stored chunks (a stored chunk is findable, a deleted one
/// is not) and a search sees only the tenant's chunks in scope. Scores, the statistics behind
/// them (chunk count, average length, document frequencies) and any rule that leaves words
/// out depend only on the searched scope (the tenant's chunks in `collections`), never on
/// another tenant's chunks.
#[async_trait]
pub trait KeywordIndex: Send + Sync + std::fmt::Debug {
    /// The `k` best chunks for the words of `query`, best first, scored by BM25; among the
    /// tenant's chunks in these collections (every chunk of the tenant when `None`), and only
    /// of `allow` documents when given.
    async fn search(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        query: &str,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError>;
}

/// Reads stored chunks for search and re-embedding.
#[async_trait]
pub trait ChunkCatalog: Send + Sync + std::fmt::Debug {
    /// The tenant's chunks with these ids that exist (in any order), with their documents.
    async fn records(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<ChunkRecord>, IndexError>;

    /// The tenant's documents in these collections (all when `None`) whose metadata matches
    /// `filter`, at most `limit`.
    async fn matching_documents(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        filter: &MetadataFilter,
        limit: usize,
    ) -> Result<Vec<DocumentId>, IndexError>;

    /// The stored chunks of a scope (a collection, or `None`: the tenant's documents outside
    /// any collection) in chunk-id order after `after`, at most `limit`.
    async fn scan(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkText>, IndexError>;
}
