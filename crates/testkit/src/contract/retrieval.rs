//! The storage contracts of retrieval: [`SpaceRepository`], [`VectorRows`], [`KeywordIndex`]
//! and [`ChunkCatalog`], on every adapter (in memory, SQLite, PostgreSQL).
//!
//! Each case takes [`RetrievalPorts`] over one fresh store. Chunks are stored as the
//! ingestion pipeline stores them: a document is uploaded, its job claimed, and
//! `JobQueue::complete` writes its `NewChunk`s. Times are explicit values, never the wall
//! clock.

use super::CascadingOrganizations;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use documents::{
    ChunkDraft, ChunkId, Collection, CollectionId, CollectionRepository, Document, DocumentId,
    DocumentRepository, Ingested, JobQueue, NewChunk,
};
use kernel::TenantId;
use retrieval::{
    Candidate, ChunkCatalog, EmbeddingModel, IndexError, KeywordIndex, MetadataFilter, Space,
    SpaceId, SpaceRepository, SpaceStatus, VectorEntry, VectorRows,
};
use serde_json::json;
use tenancy::OrganizationRepository;
use time::OffsetDateTime;

use super::documents::{DocumentPorts, T0, at_ms, collection, document, two_tenants};

/// The ports of one store, as retrieval sees it.
#[derive(Debug, Clone)]
pub struct RetrievalPorts {
    /// Organizations, collections, documents and the job queue of the same store.
    pub docs: DocumentPorts,
    /// Embedding spaces.
    pub spaces: Arc<dyn SpaceRepository>,
    /// Vector rows.
    pub rows: Arc<dyn VectorRows>,
    /// The keyword index.
    pub keyword: Arc<dyn KeywordIndex>,
    /// The chunk catalog.
    pub catalog: Arc<dyn ChunkCatalog>,
}

impl RetrievalPorts {
    /// Every port from one store that implements them all (the SQL store).
    pub fn of<S>(store: S) -> Self
    where
        S: OrganizationRepository
            + CollectionRepository
            + DocumentRepository
            + JobQueue
            + SpaceRepository
            + VectorRows
            + KeywordIndex
            + ChunkCatalog
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            docs: DocumentPorts {
                orgs: store.clone(),
                collections: store.clone(),
                documents: store.clone(),
                jobs: store.clone(),
            },
            spaces: store.clone(),
            rows: store.clone(),
            keyword: store.clone(),
            catalog: store,
        }
    }

    /// The in-memory adapters: [`memory::InMemorySpaces`] and its vector rows over a
    /// [`memory::InMemoryDocuments`], which is also the keyword index and the catalog; deleting
    /// an organization removes its data from both, as the SQL foreign keys do.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let documents = Arc::new(memory::InMemoryDocuments::new(clock.clone()));
        let spaces = memory::InMemorySpaces::new(documents.clone());
        let rows = spaces.vector_rows();
        Self {
            docs: DocumentPorts {
                orgs: Arc::new(CascadingOrganizations::new(
                    memory::InMemoryOrganizations::new(clock),
                    Box::new({
                        let documents = documents.clone();
                        let spaces = spaces.clone();
                        move |id| {
                            documents.remove_tenant(id).map_err(anyhow::Error::new)?;
                            spaces.remove_tenant(id).map_err(anyhow::Error::new)
                        }
                    }),
                )),
                collections: documents.clone(),
                documents: documents.clone(),
                jobs: documents.clone(),
            },
            spaces: Arc::new(spaces),
            rows: Arc::new(rows),
            keyword: documents.clone(),
            catalog: documents,
        }
    }
}

// --- helpers ------------------------------------------------------------------------------

/// A model.
#[must_use]
pub fn model(name: &str, dimensions: u32) -> EmbeddingModel {
    EmbeddingModel::new(name, dimensions).expect("model")
}

/// A new space (not stored).
#[must_use]
pub fn space(
    tenant: TenantId,
    collection: Option<CollectionId>,
    model: &EmbeddingModel,
    status: SpaceStatus,
) -> Space {
    Space::new(tenant, collection, model.clone(), status, T0)
}

/// Stores a new collection of `tenant`.
pub async fn new_collection(p: &RetrievalPorts, tenant: TenantId, name: &str) -> Collection {
    let c = collection(tenant, name, T0);
    p.docs
        .collections
        .create(c.clone())
        .await
        .expect("create collection")
}

/// Words of a text, as a token count (close enough for BM25's length).
fn tokens_of(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count().max(1)).unwrap_or(u32::MAX)
}

/// Stores a document of `tenant` with one chunk per text, through the job queue exactly as
/// ingestion does (the store must have no other due job). `at` orders the case's timeline.
pub async fn store_document(
    p: &RetrievalPorts,
    tenant: TenantId,
    collection: Option<CollectionId>,
    texts: &[&str],
    at: OffsetDateTime,
) -> (Document, Vec<ChunkId>) {
    let (d, job) = document(tenant, collection, &format!("h{}", DocumentId::new()), at);
    store_with(p, d, job, texts, at).await
}

async fn store_with(
    p: &RetrievalPorts,
    d: Document,
    job: documents::Job,
    texts: &[&str],
    at: OffsetDateTime,
) -> (Document, Vec<ChunkId>) {
    p.docs
        .documents
        .create(d.clone(), job)
        .await
        .expect("create document");
    let chunks = complete_with(p, d.id, texts, at).await;
    (d, chunks)
}

/// Claims the one due job (of `document`) and completes it with one chunk per text.
async fn complete_with(
    p: &RetrievalPorts,
    document: DocumentId,
    texts: &[&str],
    at: OffsetDateTime,
) -> Vec<ChunkId> {
    let claim = p
        .docs
        .jobs
        .claim(at + Duration::from_millis(1), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("the document's job is due");
    assert_eq!(claim.job.document_id, Some(document), "the case's only job");
    let mut start = 0_u64;
    let drafts: Vec<ChunkDraft> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let len = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
            let draft = ChunkDraft {
                ordinal: u32::try_from(i).expect("ordinal"),
                text: (*text).to_owned(),
                tokens: tokens_of(text),
                tokens_by: None,
                page: Some(u32::try_from(i / 2 + 1).expect("page")),
                start,
                end: start + len,
                ocr: false,
            };
            start += len;
            draft
        })
        .collect();
    let chunks = NewChunk::assign(drafts);
    let ids = chunks.iter().map(|c| c.id).collect();
    assert!(
        p.docs
            .jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks,
                    ocr_pages: 0,
                },
                at + Duration::from_millis(2),
            )
            .await
            .expect("complete"),
        "the claim holds"
    );
    ids
}

async fn search(
    p: &RetrievalPorts,
    tenant: TenantId,
    collections: Option<&[CollectionId]>,
    query: &str,
    k: usize,
) -> Vec<ChunkId> {
    p.keyword
        .search(tenant, collections, query, k, None)
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e:#}"))
        .into_iter()
        .map(|c| c.chunk_id)
        .collect()
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

/// A unit vector of `dimensions` pointing at axis `i % dimensions`, scaled by `scale`.
fn vector(dimensions: usize, i: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0_f32; dimensions];
    v[i % dimensions] = scale;
    v
}

fn entry(chunk: ChunkId, document: DocumentId, vector: Vec<f32>) -> VectorEntry {
    VectorEntry {
        chunk_id: chunk,
        document_id: document,
        vector,
    }
}

async fn live(
    p: &RetrievalPorts,
    tenant: TenantId,
) -> Vec<(Option<CollectionId>, String, SpaceStatus)> {
    let mut spaces: Vec<_> = p
        .spaces
        .list(tenant, None)
        .await
        .expect("list spaces")
        .into_iter()
        .map(|s| (s.collection_id, s.model.name().to_owned(), s.status))
        .collect();
    spaces.sort_by(|a, b| (a.0, &a.1, a.2.as_str()).cmp(&(b.0, &b.1, b.2.as_str())));
    spaces
}

// --- spaces -------------------------------------------------------------------------------

/// However many `ensure` calls race, a scope ends with one active and one building space,
/// and every caller is answered the one that was stored.
pub async fn spaces_one_live_per_scope_under_races(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Raced").await;
    let m1 = model("model-one", 4);
    let m2 = model("model-two", 8);

    for (status, m, scope) in [
        (SpaceStatus::Active, &m1, Some(c.id)),
        (SpaceStatus::Building, &m2, Some(c.id)),
        (SpaceStatus::Active, &m2, None),
    ] {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let spaces = p.spaces.clone();
            let s = space(a, scope, m, status);
            tasks.spawn(async move { spaces.ensure(s).await });
        }
        let mut answers = HashSet::new();
        while let Some(done) = tasks.join_next().await {
            let got = done.expect("task").expect("ensure");
            assert_eq!(got.status, status);
            assert_eq!(&got.model, m);
            assert_eq!(got.collection_id, scope);
            assert_eq!(got.tenant_id, a);
            answers.insert(got.id);
        }
        assert_eq!(answers.len(), 1, "every racer gets the one stored space");
    }

    // Active spaces of different models racing for one scope: the first stays.
    let mut tasks = tokio::task::JoinSet::new();
    let lone = Some(new_collection(p, a, "Contested").await.id);
    for i in 0..8 {
        let spaces = p.spaces.clone();
        let s = space(
            a,
            lone,
            &model(&format!("model-{i}"), 4),
            SpaceStatus::Active,
        );
        tasks.spawn(async move { spaces.ensure(s).await });
    }
    let mut answers = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        answers.insert(done.expect("task").expect("ensure").id);
    }
    assert_eq!(answers.len(), 1, "one active space, whatever the models");

    let spaces = live(p, a).await;
    assert_eq!(spaces.len(), 4, "{spaces:?}");
    let in_c: Vec<_> = spaces.iter().filter(|s| s.0 == Some(c.id)).collect();
    assert_eq!(
        in_c,
        [
            &(Some(c.id), "model-one".to_owned(), SpaceStatus::Active),
            &(Some(c.id), "model-two".to_owned(), SpaceStatus::Building),
        ]
    );

    // Ensuring a model the scope already has answers that space, whatever status is asked.
    let again = p
        .spaces
        .ensure(space(a, Some(c.id), &m1, SpaceStatus::Building))
        .await
        .expect("ensure");
    assert_eq!(
        again.status,
        SpaceStatus::Active,
        "the active space of the model"
    );
    // An active space is only created for a scope without one.
    let other = p
        .spaces
        .ensure(space(
            a,
            Some(c.id),
            &model("model-three", 4),
            SpaceStatus::Active,
        ))
        .await
        .expect("ensure");
    assert_eq!(other.model, m1, "the existing active space is answered");
    // A different dimension is a different model.
    let wider = p
        .spaces
        .ensure(space(
            a,
            None,
            &model("model-two", 16),
            SpaceStatus::Building,
        ))
        .await
        .expect("ensure");
    assert_eq!(wider.model.dimensions(), 16);
    assert_eq!(wider.status, SpaceStatus::Building);

    // Scoped listing.
    let only_c = p.spaces.list(a, Some(&[Some(c.id)])).await.expect("list");
    assert_eq!(only_c.len(), 2);
    let only_none = p.spaces.list(a, Some(&[None])).await.expect("list");
    assert_eq!(
        only_none.len(),
        2,
        "the active and the building space of no collection"
    );
    assert!(only_none.iter().all(|s| s.collection_id.is_none()));
    assert!(
        p.spaces.list(b, None).await.expect("list").is_empty(),
        "tenant B has none"
    );
    assert!(
        p.spaces
            .list(b, Some(&[Some(c.id), None]))
            .await
            .expect("list")
            .is_empty(),
        "not even naming A's collection"
    );
}

/// Activating a building space retires the scope's active space, atomically; a second
/// building space retires the first.
pub async fn spaces_activate_and_replace(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Swapped").await;
    let old = p
        .spaces
        .ensure(space(a, Some(c.id), &model("old", 4), SpaceStatus::Active))
        .await
        .expect("ensure");
    let first = p
        .spaces
        .ensure(space(
            a,
            Some(c.id),
            &model("first", 4),
            SpaceStatus::Building,
        ))
        .await
        .expect("ensure");
    let second = p
        .spaces
        .ensure(space(
            a,
            Some(c.id),
            &model("second", 8),
            SpaceStatus::Building,
        ))
        .await
        .expect("ensure");
    assert_eq!(
        live(p, a).await,
        [
            (Some(c.id), "old".to_owned(), SpaceStatus::Active),
            (Some(c.id), "second".to_owned(), SpaceStatus::Building),
        ],
        "the second building space retired the first"
    );
    let retired: Vec<SpaceId> = p
        .spaces
        .retired(10)
        .await
        .expect("retired")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(retired, [first.id]);
    assert!(
        !p.spaces.activate(first.id).await.expect("activate"),
        "retired"
    );

    assert!(p.spaces.activate(second.id).await.expect("activate"));
    assert_eq!(
        live(p, a).await,
        [(Some(c.id), "second".to_owned(), SpaceStatus::Active)]
    );
    assert!(
        !p.spaces.activate(second.id).await.expect("activate"),
        "no longer building"
    );
    assert!(!p.spaces.activate(old.id).await.expect("activate"));
    assert!(!p.spaces.activate(SpaceId::new()).await.expect("activate"));
    let retired: BTreeSet<SpaceId> = p
        .spaces
        .retired(10)
        .await
        .expect("retired")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(retired, set(&[first.id, old.id]));
    assert_eq!(
        p.spaces.retired(1).await.expect("retired").len(),
        1,
        "limit"
    );

    for id in retired {
        p.spaces.delete(id).await.expect("delete");
    }
    assert!(p.spaces.retired(10).await.expect("retired").is_empty());
    p.spaces
        .delete(SpaceId::new())
        .await
        .expect("deleting nothing is fine");
    assert_eq!(live(p, a).await.len(), 1, "the active space stays");
}

/// Building spaces are leased like jobs: one holder at a time, renewals guarded by the token,
/// expired leases taken over.
pub async fn spaces_claims_and_leases(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let lease = Duration::from_secs(60);
    assert!(
        p.spaces
            .claim_building(T0, lease)
            .await
            .expect("claim")
            .is_none()
    );
    p.spaces
        .ensure(space(a, None, &model("active", 4), SpaceStatus::Active))
        .await
        .expect("ensure");
    assert!(
        p.spaces
            .claim_building(T0, lease)
            .await
            .expect("claim")
            .is_none(),
        "active spaces are not claimed"
    );
    let building = p
        .spaces
        .ensure(space(a, None, &model("next", 4), SpaceStatus::Building))
        .await
        .expect("ensure");
    let (claimed, token) = p
        .spaces
        .claim_building(T0, lease)
        .await
        .expect("claim")
        .expect("the building space");
    assert_eq!(claimed, building);
    assert!(
        p.spaces
            .claim_building(at_ms(1_000), lease)
            .await
            .expect("claim")
            .is_none(),
        "held"
    );
    assert!(
        p.spaces
            .renew(building.id, token, at_ms(120_000))
            .await
            .expect("renew")
    );
    assert!(
        !p.spaces
            .renew(building.id, uuid::Uuid::now_v7(), at_ms(120_000))
            .await
            .expect("renew"),
        "another token"
    );
    assert!(
        p.spaces
            .claim_building(at_ms(100_000), lease)
            .await
            .expect("claim")
            .is_none(),
        "the renewal holds"
    );
    let (taken, second) = p
        .spaces
        .claim_building(at_ms(120_001), lease)
        .await
        .expect("claim")
        .expect("an expired lease is taken over");
    assert_eq!(taken.id, building.id);
    assert_ne!(second, token);
    assert!(
        !p.spaces
            .renew(building.id, token, at_ms(200_000))
            .await
            .expect("renew"),
        "the first holder lost it"
    );
    assert!(p.spaces.activate(building.id).await.expect("activate"));
    assert!(
        !p.spaces
            .renew(building.id, second, at_ms(200_000))
            .await
            .expect("renew"),
        "no longer building"
    );
    assert!(
        p.spaces
            .claim_building(at_ms(500_000), lease)
            .await
            .expect("claim")
            .is_none()
    );
}

/// Spaces go with their collection and their organization (and their vectors with them).
pub async fn spaces_cascade(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Doomed").await;
    let m = model("m", 2);
    let in_c = p
        .spaces
        .ensure(space(a, Some(c.id), &m, SpaceStatus::Active))
        .await
        .expect("ensure");
    let loose = p
        .spaces
        .ensure(space(a, None, &m, SpaceStatus::Active))
        .await
        .expect("ensure");
    let kept = p
        .spaces
        .ensure(space(b, None, &m, SpaceStatus::Active))
        .await
        .expect("ensure");
    let (d, _) = store_document(p, a, Some(c.id), &["one"], at_ms(10)).await;
    let chunk = ChunkId::new();
    p.rows
        .upsert(&in_c, &[entry(chunk, d.id, vec![1.0, 0.0])])
        .await
        .expect("upsert");

    p.docs
        .collections
        .delete(a, c.id, at_ms(100))
        .await
        .expect("delete")
        .expect("found");
    assert_eq!(
        live(p, a).await,
        [(None, "m".to_owned(), SpaceStatus::Active)]
    );
    assert!(
        p.rows
            .load(in_c.id, 0, None, 10)
            .await
            .expect("load")
            .is_empty(),
        "its vectors went with it"
    );
    assert_eq!(p.rows.version(in_c.id).await.expect("version"), 0);

    assert!(p.docs.orgs.delete(a).await.expect("delete organization"));
    assert!(p.spaces.list(a, None).await.expect("list").is_empty());
    assert!(
        !p.spaces.activate(loose.id).await.expect("activate"),
        "the space is gone"
    );
    assert_eq!(
        p.spaces.list(b, None).await.expect("list"),
        [kept],
        "B keeps its space"
    );
}

/// Only active spaces of scopes that follow the default model, on another model (name or
/// dimension), are to re-embed when the default changes.
pub async fn spaces_active_not_on_the_default(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let follows = new_collection(p, a, "Follows").await;
    let mut own = collection(a, "Own model", T0);
    own.embedding_model = Some("custom".into());
    p.docs
        .collections
        .create(own.clone())
        .await
        .expect("create");
    let old = model("old", 4);
    let new = model("new", 8);
    let mut expected = BTreeSet::new();
    for (tenant, scope, m, status, stale) in [
        (a, None, &old, SpaceStatus::Active, true),
        (a, Some(follows.id), &old, SpaceStatus::Active, true),
        (a, Some(own.id), &old, SpaceStatus::Active, false),
        (a, None, &new, SpaceStatus::Building, false),
        (b, None, &new, SpaceStatus::Active, false),
        (
            b,
            Some(new_collection(p, b, "Wider").await.id),
            &model("new", 16),
            SpaceStatus::Active,
            true,
        ),
    ] {
        let s = p
            .spaces
            .ensure(space(tenant, scope, m, status))
            .await
            .expect("ensure");
        if stale {
            expected.insert(s.id);
        }
    }
    let found: BTreeSet<SpaceId> = p
        .spaces
        .active_not_on(&new, 100)
        .await
        .expect("active_not_on")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(
        p.spaces
            .active_not_on(&new, 2)
            .await
            .expect("active_not_on")
            .len(),
        2,
        "limit"
    );
}

// --- vector rows ----------------------------------------------------------------------------

/// Every upsert has a greater `seq`; rows load in (seq, chunk) pages; `missing` and the
/// dimension check.
pub async fn vector_rows_seq_paging_missing(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let s = p
        .spaces
        .ensure(space(a, None, &model("m", 3), SpaceStatus::Active))
        .await
        .expect("ensure");
    let other = p
        .spaces
        .ensure(space(a, None, &model("n", 3), SpaceStatus::Building))
        .await
        .expect("ensure");
    // Vectors are written before their chunks are stored: the document is enough.
    let (d, job) = document(a, None, "vectors", T0);
    p.docs
        .documents
        .create(d.clone(), job)
        .await
        .expect("create");
    assert_eq!(p.rows.version(s.id).await.expect("version"), 0);
    assert_eq!(p.rows.upsert(&s, &[]).await.expect("upsert nothing"), 0);

    let first: Vec<ChunkId> = (0..5).map(|_| ChunkId::new()).collect();
    let seq1 = p
        .rows
        .upsert(
            &s,
            &first
                .iter()
                .enumerate()
                .map(|(i, c)| entry(*c, d.id, vector(3, i, 1.0)))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("upsert");
    assert!(seq1 > 0);
    assert_eq!(p.rows.version(s.id).await.expect("version"), seq1);
    // Three more rows, one replacing a chunk of the first write.
    let second = vec![first[2], ChunkId::new(), ChunkId::new()];
    let seq2 = p
        .rows
        .upsert(
            &s,
            &second
                .iter()
                .map(|c| entry(*c, d.id, vec![0.5, -0.25, 0.125]))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("upsert");
    assert!(seq2 > seq1, "seq grows with every call");
    assert_eq!(p.rows.version(s.id).await.expect("version"), seq2);
    assert_eq!(p.rows.upsert(&s, &[]).await.expect("upsert nothing"), seq2);
    assert_eq!(
        p.rows.version(other.id).await.expect("version"),
        0,
        "per space"
    );

    // Pages of two, after a cursor.
    let mut loaded = Vec::new();
    let mut cursor = None;
    loop {
        let page = p.rows.load(s.id, 0, cursor, 2).await.expect("load");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = Some((last.seq, last.chunk_id));
        loaded.extend(page);
    }
    assert_eq!(loaded.len(), 7, "5 + 3 − 1 replaced");
    let keys: Vec<(i64, ChunkId)> = loaded.iter().map(|r| (r.seq, r.chunk_id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "in (seq, chunk) order");
    let mut expected: Vec<(i64, ChunkId)> = first
        .iter()
        .filter(|c| **c != first[2])
        .map(|c| (seq1, *c))
        .chain(second.iter().map(|c| (seq2, *c)))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    let replaced = loaded
        .iter()
        .find(|r| r.chunk_id == first[2])
        .expect("the replaced row");
    assert_eq!(replaced.vector, [0.5, -0.25, 0.125], "exactly as written");
    assert_eq!(replaced.document_id, d.id);
    let kept = loaded
        .iter()
        .find(|r| r.chunk_id == first[4])
        .expect("a first row");
    assert_eq!(kept.vector, vector(3, 4, 1.0));

    let newer = p.rows.load(s.id, seq1, None, 100).await.expect("load");
    assert_eq!(
        set(&newer.iter().map(|r| r.chunk_id).collect::<Vec<_>>()),
        set(&second)
    );
    assert!(
        p.rows
            .load(s.id, seq2, None, 100)
            .await
            .expect("load")
            .is_empty()
    );
    assert!(
        p.rows
            .load(other.id, 0, None, 100)
            .await
            .expect("load")
            .is_empty()
    );

    let unknown = ChunkId::new();
    assert_eq!(
        p.rows
            .missing(s.id, &[first[0], unknown, second[1], unknown])
            .await
            .expect("missing"),
        [unknown]
    );
    assert_eq!(
        p.rows
            .missing(other.id, &[first[0]])
            .await
            .expect("missing"),
        [first[0]]
    );
    // More ids than one IN list.
    let many: Vec<ChunkId> = (0..1_200)
        .map(|_| ChunkId::new())
        .chain(first.clone())
        .collect();
    assert_eq!(
        p.rows.missing(s.id, &many).await.expect("missing").len(),
        1_200
    );

    match p
        .rows
        .upsert(&s, &[entry(ChunkId::new(), d.id, vec![1.0, 0.0, 0.0, 0.0])])
        .await
    {
        Err(IndexError::Dimension {
            expected: 3,
            got: 4,
        }) => {}
        other => panic!("a vector of the wrong dimension: {other:?}"),
    }
    assert_eq!(
        p.rows.version(s.id).await.expect("version"),
        seq2,
        "nothing was written"
    );
}

/// `retain` deletes a document's rows in every space of its tenant but those kept, and
/// answers them; other documents and tenants are untouched; rows go with their document.
pub async fn vector_rows_retain_and_cascade(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let m = model("m", 2);
    let s1 = p
        .spaces
        .ensure(space(a, None, &m, SpaceStatus::Active))
        .await
        .expect("ensure");
    let s2 = p
        .spaces
        .ensure(space(a, None, &model("m2", 2), SpaceStatus::Building))
        .await
        .expect("ensure");
    let sb = p
        .spaces
        .ensure(space(b, None, &m, SpaceStatus::Active))
        .await
        .expect("ensure");
    let (d, _) = store_document(p, a, None, &["a", "b"], at_ms(10)).await;
    let (e, _) = store_document(p, a, None, &["c"], at_ms(20)).await;
    let (f, _) = store_document(p, b, None, &["d"], at_ms(30)).await;
    let x: Vec<ChunkId> = (0..4).map(|_| ChunkId::new()).collect();
    let y = ChunkId::new();
    for s in [&s1, &s2] {
        let mut entries: Vec<VectorEntry> =
            x.iter().map(|c| entry(*c, d.id, vec![1.0, 0.0])).collect();
        entries.push(entry(y, e.id, vec![0.0, 1.0]));
        p.rows.upsert(s, &entries).await.expect("upsert");
    }
    let z = ChunkId::new();
    p.rows
        .upsert(&sb, &[entry(z, f.id, vec![1.0, 0.0])])
        .await
        .expect("upsert");

    assert!(
        p.rows
            .retain(b, d.id, &[])
            .await
            .expect("retain")
            .is_empty(),
        "another tenant deletes nothing"
    );
    // Thousands of kept ids, most of them unknown.
    let mut keep: Vec<ChunkId> = (0..3_000).map(|_| ChunkId::new()).collect();
    keep.extend([x[0], x[1], y]);
    let deleted = p.rows.retain(a, d.id, &keep).await.expect("retain");
    assert_eq!(
        set(&deleted),
        set(&[(s1.id, x[2]), (s1.id, x[3]), (s2.id, x[2]), (s2.id, x[3])])
    );
    for s in [&s1, &s2] {
        assert_eq!(
            p.rows
                .missing(s.id, &[x[0], x[1], x[2], x[3], y])
                .await
                .expect("missing"),
            [x[2], x[3]]
        );
    }
    assert!(
        p.rows
            .retain(a, d.id, &keep)
            .await
            .expect("retain")
            .is_empty(),
        "idempotent"
    );

    // Rows go with their document.
    p.docs
        .documents
        .delete(a, d.id, at_ms(100))
        .await
        .expect("delete")
        .expect("found");
    let left: Vec<ChunkId> = p
        .rows
        .load(s1.id, 0, None, 100)
        .await
        .expect("load")
        .iter()
        .map(|r| r.chunk_id)
        .collect();
    assert_eq!(left, [y], "only the other document's row");

    p.rows.drop_space(s1.id).await.expect("drop");
    assert!(
        p.rows
            .load(s1.id, 0, None, 100)
            .await
            .expect("load")
            .is_empty()
    );
    assert_eq!(
        p.rows.load(s2.id, 0, None, 100).await.expect("load").len(),
        1
    );
    assert_eq!(
        p.rows.load(sb.id, 0, None, 100).await.expect("load").len(),
        1,
        "B's row stays"
    );
    // Deleting the space deletes its rows.
    p.spaces.delete(s2.id).await.expect("delete");
    assert!(
        p.rows
            .load(s2.id, 0, None, 100)
            .await
            .expect("load")
            .is_empty()
    );
}

// --- keyword ----------------------------------------------------------------------------------

/// BM25: a chunk with the query's rare word ranks first; scores are positive, best first.
pub async fn keyword_bm25_ranks_rare_words_first(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let mut texts: Vec<String> = (0..11)
        .map(|i| format!("quarterly report number {i} with figures and tables"))
        .collect();
    texts.push("the quarterly report mentions a zeppelin once".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_, first_half) = store_document(p, a, None, &refs[..6], at_ms(10)).await;
    let (_, second_half) = store_document(p, a, None, &refs[6..], at_ms(20)).await;
    let zeppelin = second_half[5];

    let hits = p
        .keyword
        .search(a, None, "Report ZEPPELIN", 5, None)
        .await
        .expect("search");
    assert_eq!(hits.len(), 5, "k results when that many match");
    assert_eq!(hits[0].chunk_id, zeppelin, "the rare word wins: {hits:?}");
    assert!(hits.iter().all(|h| h.score > 0.0 && h.score.is_finite()));
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "best first: {hits:?}"
    );
    let all = search(p, a, None, "report", 50).await;
    assert_eq!(all.len(), 12, "every chunk with the word");
    assert_eq!(
        set(&all),
        set(&first_half
            .iter()
            .chain(&second_half)
            .copied()
            .collect::<Vec<_>>())
    );
    assert_eq!(search(p, a, None, "zeppelin", 50).await, [zeppelin]);
    assert!(search(p, a, None, "absent", 50).await.is_empty());
}

/// A search sees only its tenant's chunks in its collections, even with another tenant's
/// exact words, and even naming another tenant's collection.
pub async fn keyword_is_tenant_and_collection_scoped(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c1 = new_collection(p, a, "One").await;
    let c2 = new_collection(p, a, "Two").await;
    let (_, in_c1) = store_document(p, a, Some(c1.id), &["alpha secret plan"], at_ms(10)).await;
    let (_, in_c2) = store_document(p, a, Some(c2.id), &["alpha other plan"], at_ms(20)).await;
    let (_, loose) = store_document(p, a, None, &["alpha loose plan"], at_ms(30)).await;
    let (_, of_b) = store_document(p, b, None, &["beta public notes"], at_ms(40)).await;

    assert!(
        search(p, b, None, "alpha secret plan", 10).await.is_empty(),
        "B never sees A's chunks"
    );
    assert!(
        search(p, b, Some(&[c1.id]), "alpha secret plan", 10)
            .await
            .is_empty(),
        "not even naming A's collection"
    );
    assert_eq!(search(p, b, None, "beta", 10).await, of_b);
    assert!(search(p, a, None, "beta public notes", 10).await.is_empty());
    // B's scope tokens as words find nothing of B.
    let b_hex = b.as_uuid().simple().to_string();
    assert!(
        search(p, a, None, &format!("t{b_hex} _t{b_hex} {b_hex}"), 10)
            .await
            .is_empty()
    );

    assert_eq!(search(p, a, Some(&[c1.id]), "alpha plan", 10).await, in_c1);
    assert_eq!(
        set(&search(p, a, Some(&[c1.id, c2.id]), "alpha plan", 10).await),
        set(&[in_c1[0], in_c2[0]])
    );
    assert_eq!(
        set(&search(p, a, None, "alpha plan", 10).await),
        set(&[in_c1[0], in_c2[0], loose[0]]),
        "every chunk of the tenant"
    );
    assert!(
        search(p, a, Some(&[CollectionId::new()]), "alpha", 10)
            .await
            .is_empty()
    );
}

/// `allow` is exact: k results whenever k allowed chunks match, even when better matches of
/// other documents outnumber them.
pub async fn keyword_allow_is_exact(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let mut strong = Vec::new();
    for i in 0..12_u64 {
        let (d, _) = store_document(
            p,
            a,
            None,
            &["needle needle needle", "filler text"],
            at_ms(10 * (i + 1)),
        )
        .await;
        strong.push(d.id);
    }
    let mut weak = Vec::new();
    let mut weak_chunks = Vec::new();
    for i in 0..4_u64 {
        let (d, chunks) = store_document(
            p,
            a,
            None,
            &["one needle among many other words in a long and winding sentence"],
            at_ms(1_000 + 10 * i),
        )
        .await;
        weak.push(d.id);
        weak_chunks.push(chunks[0]);
    }
    let unfiltered = search(p, a, None, "needle", 3).await;
    assert!(
        unfiltered.iter().all(|c| !weak_chunks.contains(c)),
        "the weak chunks rank last"
    );
    let hits = p
        .keyword
        .search(a, None, "needle", 3, Some(&weak))
        .await
        .expect("search");
    assert_eq!(
        hits.len(),
        3,
        "k allowed results, not what survives a cut: {hits:?}"
    );
    assert!(hits.iter().all(|h| weak_chunks.contains(&h.chunk_id)));
    // A long allow list (most of it unknown documents).
    let mut long: Vec<DocumentId> = (0..1_100).map(|_| DocumentId::new()).collect();
    long.extend(&weak);
    let hits = p
        .keyword
        .search(a, None, "needle", 10, Some(&long))
        .await
        .expect("search");
    assert_eq!(
        set(&hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>()),
        set(&weak_chunks)
    );
    assert!(
        p.keyword
            .search(a, None, "needle", 10, Some(&[]))
            .await
            .expect("search")
            .is_empty(),
        "nothing allowed"
    );
    let one = p
        .keyword
        .search(a, None, "needle", 10, Some(&strong[..1]))
        .await
        .expect("search");
    assert_eq!(one.len(), 1);
}

/// The index follows the stored chunks: deleted documents, deleted collections and replaced
/// chunks vanish; new chunks appear.
pub async fn keyword_follows_stored_chunks(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Temporary").await;
    let (d, _) = store_document(p, a, None, &["ephemeral words here"], at_ms(10)).await;
    let (_, in_c) = store_document(p, a, Some(c.id), &["collected ephemeral"], at_ms(20)).await;
    let (_, of_b) = store_document(p, b, None, &["ephemeral of b"], at_ms(30)).await;
    assert_eq!(search(p, a, None, "ephemeral", 10).await.len(), 2);

    p.docs
        .documents
        .delete(a, d.id, at_ms(100))
        .await
        .expect("delete")
        .expect("found");
    assert_eq!(search(p, a, None, "ephemeral", 10).await, in_c);
    p.docs
        .collections
        .delete(a, c.id, at_ms(200))
        .await
        .expect("delete")
        .expect("found");
    assert!(
        search(p, a, None, "ephemeral collected", 10)
            .await
            .is_empty()
    );

    // A reindex replaces the chunks.
    let (e, old) = store_document(p, a, None, &["before reindexing"], at_ms(300)).await;
    assert_eq!(search(p, a, None, "before", 10).await, old);
    let job = documents::Job::for_document(a, documents::JobKind::Reindex, e.id, at_ms(400));
    p.docs
        .documents
        .reindex(a, e.id, job)
        .await
        .expect("reindex")
        .expect("found");
    let new = complete_with(p, e.id, &["after reindexing"], at_ms(400)).await;
    assert!(search(p, a, None, "before", 10).await.is_empty());
    assert_eq!(search(p, a, None, "after reindexing", 10).await, new);

    // Deleting the organization takes its chunks; B's stay.
    assert!(p.docs.orgs.delete(a).await.expect("delete organization"));
    assert!(search(p, a, None, "after", 10).await.is_empty());
    assert_eq!(search(p, b, None, "ephemeral", 10).await, of_b);
}

/// Client text is only ever words: quotes, FTS and tsquery operators, empty queries never
/// fail, and a query without words finds nothing.
pub async fn keyword_hostile_queries(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let (_, chunks) = store_document(
        p,
        a,
        None,
        &["near the text of a scope: OR and NOT, with a:b and stars*"],
        at_ms(10),
    )
    .await;
    for query in [
        "\"",
        "NEAR(",
        "a:b",
        "*",
        "OR",
        ")'",
        "",
        " ",
        "''",
        "\"\"",
        "AND NOT",
        "NEAR(a b, 2)",
        "text : near",
        "scope : t",
        "{text scope} : a",
        "-- ; DROP TABLE chunks",
        "\\",
        "^a",
        "a & b | !c",
        "'a':* & b",
        "<->",
        "!!",
        "(",
        "a OR",
        "NOT",
        "+a -b",
        "col:* AND",
        "\u{0}",
        "a\u{0}b",
    ] {
        let hits = p
            .keyword
            .search(a, None, query, 10, None)
            .await
            .unwrap_or_else(|e| panic!("{query:?} fails: {e:#}"));
        assert!(
            hits.iter().all(|h| chunks.contains(&h.chunk_id)),
            "{query:?}"
        );
    }
    for wordless in ["", "\"", "*", ")'", "-- ; :", "\\ ^ & | !"] {
        assert!(
            p.keyword
                .search(a, None, wordless, 10, None)
                .await
                .expect("search")
                .is_empty(),
            "{wordless:?} has no words"
        );
    }
    // Operators are words like any other.
    assert_eq!(search(p, a, None, "OR", 10).await, chunks);
    assert_eq!(search(p, a, None, "NEAR(", 10).await, chunks);
    assert_eq!(search(p, a, None, "a:b", 10).await, chunks);
    assert_eq!(search(p, a, None, "stars*", 10).await, chunks);
    let long = "word ".repeat(500);
    p.keyword
        .search(a, None, &long, 10, None)
        .await
        .expect("a long query");
    let many: String = (0..200).map(|i| format!("w{i} ")).collect();
    p.keyword
        .search(a, None, &many, 10, None)
        .await
        .expect("many words");
}

/// A tenant's keyword scores and ranking are its own: another tenant writing many chunks with
/// the same words (and others, shifting every table-wide statistic) changes nothing in them.
/// A shared statistic would tell B how often A uses a word.
pub async fn other_tenants_words_do_not_change_my_scores(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, b, "Deals").await;
    store_document(
        p,
        b,
        Some(c.id),
        &[
            "globex merger plan for the quarter",
            "notes on the globex globex account and its plan",
            "a plan without the company name",
            "unrelated minutes of a long meeting about parking spaces and lunch",
        ],
        at_ms(10),
    )
    .await;
    store_document(p, b, None, &["loose globex memo"], at_ms(20)).await;
    let scores = |hits: Vec<Candidate>| -> Vec<(ChunkId, u32)> {
        hits.into_iter()
            .map(|h| (h.chunk_id, h.score.to_bits()))
            .collect()
    };
    let queries: [(Option<&[CollectionId]>, &str); 3] = [
        (None, "globex plan"),
        (Some(&[c.id]), "globex plan"),
        (None, "globex"),
    ];
    let mut before = Vec::new();
    for (collections, query) in queries {
        let hits = p
            .keyword
            .search(b, collections, query, 10, None)
            .await
            .expect("search");
        assert!(!hits.is_empty(), "{query}");
        before.push(scores(hits));
    }

    // A writes many chunks: the word in most of them, of other lengths, in two documents.
    let many: Vec<String> = (0..150)
        .map(|i| {
            if i % 3 == 0 {
                format!("globex {i}")
            } else {
                format!("globex plan globex report number {i} with a much longer text than B's")
            }
        })
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    store_document(p, a, None, &refs[..75], at_ms(30)).await;
    let ca = new_collection(p, a, "Flood").await;
    store_document(p, a, Some(ca.id), &refs[75..], at_ms(40)).await;

    for ((collections, query), before) in queries.into_iter().zip(before) {
        let hits = p
            .keyword
            .search(b, collections, query, 10, None)
            .await
            .expect("search");
        assert_eq!(
            scores(hits),
            before,
            "B's scores for {query:?} moved with A's chunks"
        );
    }
}

/// Leaving out words that are in most chunks is decided on the searcher's own chunks: B
/// flooding a word into far more than a tenth of all chunks does not hide it from A.
pub async fn flooding_a_word_cannot_hide_it_from_another_tenant(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let (_, of_a) = store_document(
        p,
        a,
        None,
        &["the globex contract is signed", "minutes of the board"],
        at_ms(10),
    )
    .await;
    let flood: Vec<String> = (0..1_200).map(|i| format!("globex globex {i}")).collect();
    let refs: Vec<&str> = flood.iter().map(String::as_str).collect();
    store_document(p, b, None, &refs, at_ms(20)).await;

    assert_eq!(search(p, a, None, "globex", 10).await, [of_a[0]]);
    assert_eq!(
        search(p, a, None, "globex quarterly", 10).await,
        [of_a[0]],
        "a word B floods is still A's word"
    );
    assert_eq!(
        set(&search(p, a, None, "globex board", 10).await),
        set(&of_a),
        "and still ranks beside A's other words"
    );
}

/// Words of any script: Persian (a zero-width non-joiner separates words), accented Latin
/// (any case).
pub async fn keyword_unicode(p: &RetrievalPorts) {
    let (a, _) = two_tenants(&p.docs).await;
    let (_, persian) = store_document(p, a, None, &["کتاب‌های فارسی در کتابخانه"], at_ms(10)).await;
    let (_, french) =
        store_document(p, a, None, &["Café CRÈME et brûlée à l'École"], at_ms(20)).await;
    assert_eq!(search(p, a, None, "کتاب", 10).await, persian);
    assert_eq!(search(p, a, None, "فارسی؟", 10).await, persian);
    assert_eq!(search(p, a, None, "کتابخانه", 10).await, persian);
    assert_eq!(search(p, a, None, "café", 10).await, french);
    assert_eq!(search(p, a, None, "crème", 10).await, french);
    assert_eq!(search(p, a, None, "ÉCOLE", 10).await, french);
    assert_eq!(search(p, a, None, "BRÛLÉE!", 10).await, french);
}

/// Scores are BM25 of the scope's own statistics with each chunk's own term frequencies and
/// length (k1 = 1.2, b = 0.75), as the module documents: computed here from the texts. A
/// deleted chunk leaves nothing behind, even where its replacement reuses its place in the
/// index (on SQLite the next chunk takes the freed FTS rowid).
pub async fn keyword_scores_are_bm25_of_each_chunk(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let texts = [
        "zeta alpha",
        "zeta zeta zeta beta gamma",
        "alpha beta delta",
        "omega alone here today",
    ];
    let (_, ids) = store_document(p, a, None, &texts, at_ms(10)).await;
    // Another tenant's chunks with the same words change nothing.
    store_document(p, b, None, &["zeta zeta omega", "omega"], at_ms(20)).await;
    // Stored last, then deleted: its words (zeta six times) must not count for the next one.
    let (gone, _) = store_document(
        p,
        a,
        None,
        &["zeta zeta zeta zeta zeta zeta omega"],
        at_ms(30),
    )
    .await;
    p.docs
        .documents
        .delete(a, gone.id, at_ms(40))
        .await
        .expect("delete")
        .expect("found");
    let (_, last) = store_document(p, a, None, &["omega zeta"], at_ms(50)).await;

    let all: Vec<&str> = texts.iter().copied().chain(["omega zeta"]).collect();
    let chunk_ids: Vec<ChunkId> = ids.iter().copied().chain(last).collect();
    let n = all.len() as f64;
    let lengths: Vec<f64> = all.iter().map(|t| f64::from(tokens_of(t))).collect();
    let average = lengths.iter().sum::<f64>() / n;
    let tf = |text: &str, word: &str| text.split_whitespace().filter(|w| *w == word).count();
    let words = ["zeta", "omega"];
    let df: Vec<f64> = words
        .iter()
        .map(|w| all.iter().filter(|t| tf(t, w) > 0).count() as f64)
        .collect();
    let mut expected: Vec<(ChunkId, f64)> = all
        .iter()
        .zip(&lengths)
        .zip(&chunk_ids)
        .map(|((text, length), id)| {
            let score = words
                .iter()
                .zip(&df)
                .map(|(w, df)| {
                    let t = tf(text, w) as f64;
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    idf * t * 2.2 / (t + 1.2 * (0.25 + 0.75 * length / average))
                })
                .sum::<f64>();
            (*id, score)
        })
        .filter(|(_, score)| *score > 0.0)
        .collect();
    expected.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));

    let hits = p
        .keyword
        .search(a, None, "zeta OMEGA", 10, None)
        .await
        .expect("search");
    assert_eq!(
        hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        expected.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "ranked by BM25: {hits:?} against {expected:?}"
    );
    for (hit, (_, score)) in hits.iter().zip(&expected) {
        assert!(
            (f64::from(hit.score) - score).abs() < 1e-4 * score.max(1.0),
            "BM25 of {}: {} against {score}",
            hit.chunk_id,
            hit.score
        );
    }
    // k cuts the same ranking.
    let top = p
        .keyword
        .search(a, None, "zeta omega", 2, None)
        .await
        .expect("search");
    assert_eq!(
        top.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        expected
            .iter()
            .take(2)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    );
}

// --- catalog --------------------------------------------------------------------------------

/// Records are the tenant's existing chunks with their documents; other ids are skipped.
pub async fn catalog_records(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Records").await;
    let (d, chunks) = store_document(
        p,
        a,
        Some(c.id),
        &["first text", "second text", "third"],
        at_ms(10),
    )
    .await;
    let (_, of_b) = store_document(p, b, None, &["not yours"], at_ms(20)).await;
    let mut records = p
        .catalog
        .records(
            a,
            &[chunks[2], ChunkId::new(), chunks[0], of_b[0], chunks[0]],
        )
        .await
        .expect("records");
    records.sort_by_key(|r| r.ordinal);
    assert_eq!(records.len(), 2, "{records:?}");
    let r = &records[1];
    assert_eq!(r.chunk_id, chunks[2]);
    assert_eq!(r.document_id, d.id);
    assert_eq!(r.document_name, d.name);
    assert_eq!(r.collection_id, Some(c.id));
    assert_eq!(r.ordinal, 2);
    assert_eq!(r.page, Some(2));
    assert_eq!(r.text, "third");
    assert_eq!(r.tokens, 1);
    assert_eq!(records[0].text, "first text");
    assert_eq!(records[0].tokens, 2);
    assert!(
        p.catalog
            .records(b, &chunks)
            .await
            .expect("records")
            .is_empty()
    );
    assert!(p.catalog.records(a, &[]).await.expect("records").is_empty());
    let many: Vec<ChunkId> = (0..1_200)
        .map(|_| ChunkId::new())
        .chain(chunks.clone())
        .collect();
    assert_eq!(p.catalog.records(a, &many).await.expect("records").len(), 3);
}

/// The metadata filter is JSON equality on top-level keys: typed (`true` ≠ `1` ≠ `"1"`),
/// numbers as numbers, every key required; within the tenant and its collections.
pub async fn catalog_metadata_filter(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Filtered").await;
    let metas = [
        serde_json::json!({"lang": "en", "year": 2024, "draft": true, "code": "1", "a.b": "dot"}),
        serde_json::json!({"lang": "fa", "year": 2024.0, "draft": false, "code": 1, "he\"y": "q"}),
        serde_json::json!({"lang": "en", "year": "2024", "draft": 1, "code": 1.5}),
        serde_json::json!({"lang": "EN", "nested": {"lang": "en"}, "list": ["en"]}),
    ];
    let mut ids = Vec::new();
    for (i, meta) in metas.iter().enumerate() {
        let collection = if i == 3 { None } else { Some(c.id) };
        let (mut d, job) = document(a, collection, &format!("m{i}"), at_ms(i as u64));
        d.metadata = meta.as_object().cloned().expect("an object");
        p.docs
            .documents
            .create(d.clone(), job)
            .await
            .expect("create");
        ids.push(d.id);
    }
    let (mut foreign, job) = document(b, None, "b", T0);
    foreign.metadata = metas[0].as_object().cloned().expect("an object");
    p.docs.documents.create(foreign, job).await.expect("create");

    let matching = |pairs: Vec<(&str, serde_json::Value)>| {
        let filter =
            MetadataFilter::new(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                .expect("filter");
        async move {
            let got = p
                .catalog
                .matching_documents(a, None, &filter, 100)
                .await
                .expect("matching");
            set(&got)
        }
    };
    assert_eq!(
        matching(vec![]).await,
        set(&ids),
        "no filter: every document"
    );
    assert_eq!(
        matching(vec![("lang", json!("en"))]).await,
        set(&[ids[0], ids[2]])
    );
    assert_eq!(
        matching(vec![("year", json!(2024))]).await,
        set(&[ids[0], ids[1]]),
        "2024 = 2024.0"
    );
    assert_eq!(
        matching(vec![("year", json!(2024.0))]).await,
        set(&[ids[0], ids[1]])
    );
    assert_eq!(
        matching(vec![("year", json!("2024"))]).await,
        set(&[ids[2]])
    );
    assert_eq!(
        matching(vec![("draft", json!(true))]).await,
        set(&[ids[0]]),
        "true ≠ 1"
    );
    assert_eq!(
        matching(vec![("draft", json!(false))]).await,
        set(&[ids[1]])
    );
    assert_eq!(
        matching(vec![("draft", json!(1))]).await,
        set(&[ids[2]]),
        "1 ≠ true"
    );
    assert_eq!(
        matching(vec![("code", json!(1))]).await,
        set(&[ids[1]]),
        "1 ≠ \"1\""
    );
    assert_eq!(matching(vec![("code", json!("1"))]).await, set(&[ids[0]]));
    assert_eq!(matching(vec![("code", json!(1.5))]).await, set(&[ids[2]]));
    assert_eq!(
        matching(vec![("lang", json!("en")), ("draft", json!(true))]).await,
        set(&[ids[0]]),
        "every key"
    );
    assert_eq!(
        matching(vec![("lang", json!("en")), ("lang", json!("fa"))]).await,
        BTreeSet::new()
    );
    assert_eq!(
        matching(vec![("a.b", json!("dot"))]).await,
        set(&[ids[0]]),
        "keys are keys"
    );
    assert_eq!(matching(vec![("he\"y", json!("q"))]).await, set(&[ids[1]]));
    assert_eq!(
        matching(vec![("missing", json!("en"))]).await,
        BTreeSet::new()
    );
    assert_eq!(
        matching(vec![("lang", json!("En"))]).await,
        BTreeSet::new(),
        "exact strings"
    );
    assert_eq!(
        matching(vec![("$.lang", json!("en"))]).await,
        BTreeSet::new(),
        "no paths"
    );

    let filter = MetadataFilter::new(vec![("lang".into(), json!("en"))]).expect("filter");
    assert_eq!(
        p.catalog
            .matching_documents(a, Some(&[c.id]), &MetadataFilter::default(), 100)
            .await
            .expect("matching")
            .len(),
        3,
        "within the collection"
    );
    assert!(
        p.catalog
            .matching_documents(a, Some(&[CollectionId::new()]), &filter, 100)
            .await
            .expect("matching")
            .is_empty()
    );
    assert_eq!(
        p.catalog
            .matching_documents(a, None, &MetadataFilter::default(), 2)
            .await
            .expect("matching")
            .len(),
        2,
        "limit"
    );
    assert_eq!(
        p.catalog
            .matching_documents(b, None, &filter, 100)
            .await
            .expect("matching")
            .len(),
        1,
        "B's own document only"
    );
}

/// A scope's chunks page in id order; no collection is its own scope.
pub async fn catalog_scan_pages(p: &RetrievalPorts) {
    let (a, b) = two_tenants(&p.docs).await;
    let c = new_collection(p, a, "Scanned").await;
    let other = new_collection(p, a, "Other").await;
    let mut in_c = Vec::new();
    for i in 0..2_u64 {
        let texts: Vec<String> = (0..5).map(|j| format!("doc {i} chunk {j}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (d, chunks) = store_document(p, a, Some(c.id), &refs, at_ms(10 * (i + 1))).await;
        in_c.extend(chunks.into_iter().map(|id| (id, d.id)));
    }
    let (loose_doc, loose) = store_document(p, a, None, &["x", "y", "z"], at_ms(100)).await;
    store_document(p, a, Some(other.id), &["elsewhere"], at_ms(200)).await;
    store_document(p, b, None, &["b's"], at_ms(300)).await;

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = p.catalog.scan(a, Some(c.id), after, 4).await.expect("scan");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.chunk_id);
        seen.extend(page);
    }
    let ids: Vec<ChunkId> = seen.iter().map(|c| c.chunk_id).collect();
    let mut expected: Vec<ChunkId> = in_c.iter().map(|(c, _)| *c).collect();
    expected.sort();
    assert_eq!(ids, expected, "every chunk once, in id order");
    for chunk in &seen {
        let (_, document) = in_c
            .iter()
            .find(|(c, _)| *c == chunk.chunk_id)
            .expect("of the scope");
        assert_eq!(chunk.document_id, *document);
        assert!(chunk.text.starts_with("doc "));
    }
    let none = p.catalog.scan(a, None, None, 100).await.expect("scan");
    let mut loose_sorted = loose.clone();
    loose_sorted.sort();
    assert_eq!(
        none.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        loose_sorted
    );
    assert!(none.iter().all(|c| c.document_id == loose_doc.id));
    assert!(
        p.catalog
            .scan(b, Some(c.id), None, 100)
            .await
            .expect("scan")
            .is_empty()
    );
    assert_eq!(
        p.catalog
            .scan(b, None, None, 100)
            .await
            .expect("scan")
            .len(),
        1
    );
}
