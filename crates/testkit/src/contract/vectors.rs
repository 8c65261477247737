//! The [`VectorIndex`] contract: exact results below an adapter's threshold, recall@10 ≥ 0.95
//! above it, a search sees only its own space, `k` results whenever `k` vectors pass `allow`
//! (a small tenant beside a big space, an allow list naming 1% of a big space), upserts
//! replace, `missing`, `retain`, `drop_space`, persistence across a restart, and several
//! instances over one truth.
//!
//! Each case takes a [`VectorWorld`]: where tenants, spaces and documents come from (an
//! organization, a collection and its space, and document rows on SQL, where foreign keys
//! want them) and how to open an adapter instance over the shared truth (a second instance
//! is a restarted process or another server). Vectors come from a seeded generator, so every
//! run sees the same data; no case waits on a clock: [`Instance::settle`] waits for the
//! adapter's background work.
//!
//! [`pgvector_store`] is the PostgreSQL with pgvector (`QUIRE_TEST_PGVECTOR_URL`, started by
//! `.ci/pgvector.sh`), one migrated schema per test like [`crate::postgres_store`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use documents::{ChunkId, CollectionRepository, DocumentId, DocumentRepository};
use kernel::TenantId;
use retrieval::{
    Candidate, EmbeddingModel, Space, SpaceId, SpaceRepository, SpaceStatus, VectorEntry,
    VectorIndex,
};
use secrecy::SecretString;
use store_sql::{PgVectorIndex, SqlStore};
use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
use time::OffsetDateTime;

/// A boxed future (no `futures` dependency in this crate).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One adapter instance and the hooks the cases need besides the port.
#[derive(Clone)]
pub struct Instance {
    /// The port.
    pub index: Arc<dyn VectorIndex>,
    settle: Arc<dyn Fn() -> BoxFut<'static, ()> + Send + Sync>,
    ann: Arc<dyn Fn(SpaceId) -> BoxFut<'static, bool> + Send + Sync>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// `index` with `settle` (waits until its background work is done) and `ann` (whether a
    /// space is searched through an approximate index).
    pub fn new(
        index: Arc<dyn VectorIndex>,
        settle: impl Fn() -> BoxFut<'static, ()> + Send + Sync + 'static,
        ann: impl Fn(SpaceId) -> BoxFut<'static, bool> + Send + Sync + 'static,
    ) -> Self {
        Self {
            index,
            settle: Arc::new(settle),
            ann: Arc::new(ann),
        }
    }

    /// [`PgVectorIndex`] as an instance.
    #[must_use]
    pub fn pgvector(index: Arc<PgVectorIndex>) -> Self {
        let (a, b) = (index.clone(), index.clone());
        Self::new(
            index,
            move || {
                let a = a.clone();
                Box::pin(async move { a.settle().await })
            },
            move |space| {
                let b = b.clone();
                Box::pin(async move { b.ann_ready(space).await.expect("the catalog") })
            },
        )
    }

    /// Waits until the adapter's background work (index builds) is done.
    pub async fn settle(&self) {
        (self.settle)().await;
    }

    /// Whether `space` is searched through an approximate index now.
    pub async fn ann(&self, space: SpaceId) -> bool {
        (self.ann)(space).await
    }
}

/// Where the cases get tenants, spaces and documents, and adapter instances.
#[async_trait]
pub trait VectorWorld: Send + Sync {
    /// Vectors per space below which the adapter's instances search exactly (small in tests).
    fn threshold(&self) -> usize;

    /// A new tenant.
    async fn tenant(&self) -> TenantId;

    /// A new active space of `tenant` (its own scope) for vectors of `dim`.
    async fn space(&self, tenant: TenantId, dim: u32) -> Space;

    /// `n` new documents of `tenant`.
    async fn documents(&self, tenant: TenantId, n: usize) -> Vec<DocumentId>;

    /// A new adapter instance over the shared truth.
    async fn open(&self) -> Instance;
}

/// The model of a space of `dim` dimensions.
#[must_use]
pub fn model(dim: u32) -> EmbeddingModel {
    EmbeddingModel::new("contract-model", dim).expect("a model")
}

const T0: OffsetDateTime = time::macros::datetime!(2026-11-22 10:00 UTC);

/// Where tenants, spaces and documents are stored: an organization, a collection with its
/// active space, queued documents (foreign keys on SQL want them; the in-memory adapters check
/// the same).
#[derive(Debug, Clone)]
pub struct Ids {
    /// Organizations.
    pub orgs: Arc<dyn OrganizationRepository>,
    /// Collections.
    pub collections: Arc<dyn CollectionRepository>,
    /// Documents.
    pub documents: Arc<dyn DocumentRepository>,
    /// Embedding spaces.
    pub spaces: Arc<dyn SpaceRepository>,
}

impl Ids {
    /// Everything in one SQL store.
    #[must_use]
    pub fn sql(store: &SqlStore) -> Self {
        let store = Arc::new(store.clone());
        Self {
            orgs: store.clone(),
            collections: store.clone(),
            documents: store.clone(),
            spaces: store,
        }
    }

    /// Everything in memory, and the vector rows of those spaces.
    #[must_use]
    pub fn memory() -> (Self, memory::InMemoryVectorRows) {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let documents = Arc::new(memory::InMemoryDocuments::new(clock.clone()));
        let spaces = memory::InMemorySpaces::new(documents.clone());
        let rows = spaces.vector_rows();
        (
            Self {
                orgs: Arc::new(memory::InMemoryOrganizations::new(clock)),
                collections: documents.clone(),
                documents,
                spaces: Arc::new(spaces),
            },
            rows,
        )
    }

    /// A new organization.
    pub async fn tenant(&self) -> TenantId {
        let slug = format!("v{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        self.orgs
            .create(NewOrganization {
                name: OrgName::parse(&slug).expect("name"),
                slug: OrgSlug::parse(&slug).expect("slug"),
            })
            .await
            .expect("an organization")
            .id
    }

    /// A new collection of `tenant` and its active space.
    pub async fn space(&self, tenant: TenantId, dim: u32) -> Space {
        let name = format!("vectors {}", uuid::Uuid::now_v7().simple());
        let collection = super::documents::collection(tenant, &name, T0);
        self.collections
            .create(collection.clone())
            .await
            .expect("a collection");
        self.spaces
            .ensure(Space::new(
                tenant,
                Some(collection.id),
                model(dim),
                SpaceStatus::Active,
                T0,
            ))
            .await
            .expect("a space")
    }

    /// `n` new documents of `tenant`.
    pub async fn documents(&self, tenant: TenantId, n: usize) -> Vec<DocumentId> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let hash = uuid::Uuid::now_v7().simple().to_string();
            let (document, job) = super::documents::document(tenant, None, &hash, T0);
            self.documents
                .create(document.clone(), job)
                .await
                .expect("a document");
            out.push(document.id);
        }
        out
    }
}

/// [`PgVectorIndex`] instances over one migrated schema of the pgvector PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgVectorWorld {
    /// The store.
    pub store: SqlStore,
    /// Tenants, spaces and documents in `store`.
    pub ids: Ids,
    /// Spaces from this many vectors get an HNSW index.
    pub threshold: usize,
}

impl PgVectorWorld {
    /// Instances over `store` (migrated), with an HNSW index from `threshold` vectors.
    #[must_use]
    pub fn new(store: SqlStore, threshold: usize) -> Self {
        Self {
            ids: Ids::sql(&store),
            store,
            threshold,
        }
    }
}

#[async_trait]
impl VectorWorld for PgVectorWorld {
    fn threshold(&self) -> usize {
        self.threshold
    }
    async fn tenant(&self) -> TenantId {
        self.ids.tenant().await
    }
    async fn space(&self, tenant: TenantId, dim: u32) -> Space {
        self.ids.space(tenant, dim).await
    }
    async fn documents(&self, tenant: TenantId, n: usize) -> Vec<DocumentId> {
        self.ids.documents(tenant, n).await
    }
    async fn open(&self) -> Instance {
        let index = PgVectorIndex::try_new(&self.store, self.threshold)
            .await
            .expect("pgvector set-up")
            .expect("the pgvector extension (QUIRE_TEST_PGVECTOR_URL must have it)");
        Instance::pgvector(Arc::new(index))
    }
}

// --- the pgvector PostgreSQL ----------------------------------------------------------------

/// The pgvector PostgreSQL's URL ([`crate::pgvector_url`]). Unset: `None` with a SKIPPED
/// line, but a panic when `CI` is set (CI starts it with `.ci/pgvector.sh`).
#[must_use]
pub fn pgvector_url_or_skip() -> Option<String> {
    let url = crate::pgvector_url();
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "QUIRE_TEST_PGVECTOR_URL is not set: CI must start .ci/pgvector.sh"
        );
        eprintln!(
            "SKIPPED (pgvector): QUIRE_TEST_PGVECTOR_URL is not set (start one with .ci/pgvector.sh)"
        );
    }
    url
}

/// Drops a schema of the pgvector PostgreSQL when the test ends. (`crate::schema_guard_at`
/// would do, but its `impl Drop` borrows its arguments under the 2024 capture rules.)
#[derive(Debug)]
pub struct PgVectorSchema {
    url: String,
    schema: String,
}

impl Drop for PgVectorSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A fresh runtime on a plain thread: Drop may run inside a runtime that cannot block.
        let joined = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sea_orm::ConnectionTrait as _;
                if let Ok(db) = sea_orm::Database::connect(url).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                    let _ = db.close().await;
                }
            });
        })
        .join();
        if joined.is_err() {
            eprintln!("pgvector test clean-up panicked");
        }
    }
}

/// A store on the pgvector PostgreSQL in its own migrated schema (dropped with the guard);
/// `None` when `QUIRE_TEST_PGVECTOR_URL` is unset outside CI.
pub async fn pgvector_store() -> Option<(SqlStore, PgVectorSchema)> {
    let url = pgvector_url_or_skip()?;
    let schema = crate::unique_name();
    let mut settings = crate::test_settings(&std::env::temp_dir());
    settings.database.url = Some(SecretString::from(url.clone()));
    settings.database.schema = Some(schema.clone());
    let guard = PgVectorSchema { url, schema };
    let store = SqlStore::connect(&settings, Arc::new(kernel::SystemClock))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the pgvector PostgreSQL at {} must be reachable (.ci/pgvector.sh): {e:#}",
                guard.url
            )
        });
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("the pgvector PostgreSQL migrates: {e:#}"));
    Some((store, guard))
}

// --- data -------------------------------------------------------------------------------------

/// A small seeded generator (SplitMix64): the same data on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn signed(&mut self) -> f32 {
        // 24 random bits: exact in an f32.
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        unit * 2.0 - 1.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n as u64)).unwrap_or(0)
    }

    /// A random unit vector.
    pub fn unit(&mut self, dim: usize) -> Vec<f32> {
        normalized((0..dim).map(|_| self.signed()).collect())
    }
}

/// `v / |v|`.
#[must_use]
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The plain dot product.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Clustered unit vectors: `clusters` random centres, each vector a centre plus noise.
#[derive(Debug, Clone)]
pub struct Clusters {
    centres: Vec<Vec<f32>>,
    noise: f32,
}

impl Clusters {
    /// `n` centres of `dim`, noise of amplitude `noise` per coordinate.
    pub fn new(rng: &mut Rng, n: usize, dim: usize, noise: f32) -> Self {
        Self {
            centres: (0..n).map(|_| rng.unit(dim)).collect(),
            noise,
        }
    }

    /// One vector near a random centre.
    pub fn sample(&self, rng: &mut Rng) -> Vec<f32> {
        let c = &self.centres[rng.below(self.centres.len())];
        let scale = self.noise / (c.len() as f32).sqrt();
        normalized(c.iter().map(|x| x + rng.signed() * scale * 2.0).collect())
    }
}

/// `n` entries spread round-robin over `docs`, vectors from `gen`.
pub fn entries(
    n: usize,
    docs: &[DocumentId],
    mut vector: impl FnMut() -> Vec<f32>,
) -> Vec<VectorEntry> {
    (0..n)
        .map(|i| VectorEntry {
            chunk_id: ChunkId::new(),
            document_id: docs[i % docs.len()],
            vector: vector(),
        })
        .collect()
}

/// Every entry scored against `q`, best first (ties by chunk id).
#[must_use]
pub fn brute_force<'a>(
    entries: impl IntoIterator<Item = &'a VectorEntry>,
    q: &[f32],
) -> Vec<(ChunkId, f32)> {
    let mut all: Vec<(ChunkId, f32)> = entries
        .into_iter()
        .map(|e| (e.chunk_id, dot(q, &e.vector)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

/// Scores of different adapters agree to this much (pgvector computes its own).
const SCORE_TOLERANCE: f32 = 1e-4;

/// `got` is the exact top `k` of `truth` (sorted, as [`brute_force`] answers): the same
/// length, scores equal rank by rank within tolerance, each chunk scored as it truly is, and
/// the same chunks except where scores tie within tolerance at the cut.
#[track_caller]
pub fn assert_exact(got: &[Candidate], truth: &[(ChunkId, f32)], k: usize, what: &str) {
    let want = &truth[..k.min(truth.len())];
    assert_eq!(got.len(), want.len(), "{what}: result count");
    let true_score: std::collections::HashMap<ChunkId, f32> = truth.iter().copied().collect();
    for (i, (c, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (c.score - w.1).abs() <= SCORE_TOLERANCE,
            "{what}: rank {i} scores {} where the exact answer scores {}",
            c.score,
            w.1
        );
        let t = true_score
            .get(&c.chunk_id)
            .unwrap_or_else(|| panic!("{what}: rank {i} is a chunk that does not qualify"));
        assert!(
            (c.score - t).abs() <= SCORE_TOLERANCE,
            "{what}: rank {i} is scored {} but its vector scores {t}",
            c.score
        );
    }
    let cut = want.last().map_or(f32::NEG_INFINITY, |w| w.1);
    let boundary_tie = truth
        .get(want.len())
        .is_some_and(|next| (next.1 - cut).abs() <= SCORE_TOLERANCE);
    if !boundary_tie {
        let got: HashSet<ChunkId> = got.iter().map(|c| c.chunk_id).collect();
        let want: HashSet<ChunkId> = want.iter().map(|w| w.0).collect();
        assert_eq!(got, want, "{what}: the chunks");
    }
    assert!(
        got.windows(2).all(|w| w[0].score >= w[1].score),
        "{what}: best first"
    );
}

async fn search(
    i: &Instance,
    space: &Space,
    q: &[f32],
    k: usize,
    allow: Option<&[DocumentId]>,
) -> Vec<Candidate> {
    i.index.search(space, q, k, allow).await.expect("a search")
}

async fn upsert(i: &Instance, space: &Space, entries: &[VectorEntry]) {
    for batch in entries.chunks(1_000) {
        i.index.upsert(space, batch).await.expect("an upsert");
    }
}

fn ids(c: &[Candidate]) -> Vec<ChunkId> {
    c.iter().map(|c| c.chunk_id).collect()
}

// --- cases ------------------------------------------------------------------------------------

/// Below the threshold, results are the exact top k (with and without an allow list).
pub async fn exact_below_the_threshold(w: &dyn VectorWorld) {
    let i = w.open().await;
    let tenant = w.tenant().await;
    let space = w.space(tenant, 16).await;
    let docs = w.documents(tenant, 8).await;
    let mut rng = Rng::new(1);
    let n = (w.threshold() / 2).clamp(1, 400);
    let es = entries(n, &docs, || rng.unit(16));
    upsert(&i, &space, &es).await;
    i.settle().await;
    assert!(
        !i.ann(space.id).await,
        "{n} vectors stay below the threshold"
    );
    for round in 0..20 {
        let q = rng.unit(16);
        let got = search(&i, &space, &q, 10, None).await;
        assert_exact(&got, &brute_force(&es, &q), 10, &format!("query {round}"));
        let allowed = &docs[..2];
        let got = search(&i, &space, &q, 10, Some(allowed)).await;
        let truth = brute_force(es.iter().filter(|e| allowed.contains(&e.document_id)), &q);
        assert_exact(&got, &truth, 10, &format!("query {round}, two documents"));
    }
    // More than there is: all of them; k = 0 and an empty allow list: nothing.
    let q = rng.unit(16);
    assert_eq!(search(&i, &space, &q, n + 5, None).await.len(), n);
    assert!(search(&i, &space, &q, 0, None).await.is_empty());
    assert!(search(&i, &space, &q, 5, Some(&[])).await.is_empty());
    assert!(
        i.index.search(&space, &[0.5; 3], 5, None).await.is_err(),
        "a query of the wrong dimension"
    );
}

/// Above the threshold (the approximate index in use), recall@10 is at least 0.95 against
/// brute force, and every result is scored as its vector truly scores.
pub async fn recall_above_the_threshold(w: &dyn VectorWorld) {
    let dim = 64;
    let i = w.open().await;
    let tenant = w.tenant().await;
    let space = w.space(tenant, dim).await;
    let docs = w.documents(tenant, 20).await;
    let mut rng = Rng::new(2);
    let clusters = Clusters::new(&mut rng, 60, dim as usize, 1.0);
    let n = (w.threshold() * 5).max(5_000);
    let es = entries(n, &docs, || clusters.sample(&mut rng));
    upsert(&i, &space, &es).await;
    i.settle().await;
    assert!(i.ann(space.id).await, "{n} vectors are above the threshold");
    let (mut hits, queries, k) = (0, 50, 10);
    for _ in 0..queries {
        let q = clusters.sample(&mut rng);
        let truth = brute_force(&es, &q);
        let got = search(&i, &space, &q, k, None).await;
        assert_eq!(got.len(), k);
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
        let score: std::collections::HashMap<ChunkId, f32> = truth.iter().copied().collect();
        for c in &got {
            assert!((c.score - score[&c.chunk_id]).abs() <= SCORE_TOLERANCE);
        }
        let want: HashSet<ChunkId> = truth[..k].iter().map(|t| t.0).collect();
        hits += got.iter().filter(|c| want.contains(&c.chunk_id)).count();
    }
    let recall = hits as f64 / f64::from(queries * 10);
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// Two tenants, two spaces each way: a search sees only its own space.
pub async fn searches_see_only_their_space(w: &dyn VectorWorld) {
    let i = w.open().await;
    let (a, b) = (w.tenant().await, w.tenant().await);
    let (sa, sb) = (w.space(a, 8).await, w.space(b, 8).await);
    let sa2 = w.space(a, 8).await;
    let (da, db) = (w.documents(a, 2).await, w.documents(b, 2).await);
    let mut rng = Rng::new(3);
    let ea = entries(50, &da, || rng.unit(8));
    // B's vectors are A's, exactly: only the space tells them apart.
    let eb: Vec<VectorEntry> = ea
        .iter()
        .enumerate()
        .map(|(n, e)| VectorEntry {
            chunk_id: ChunkId::new(),
            document_id: db[n % 2],
            vector: e.vector.clone(),
        })
        .collect();
    upsert(&i, &sa, &ea).await;
    upsert(&i, &sb, &eb).await;
    i.settle().await;
    let mine: HashSet<ChunkId> = ea.iter().map(|e| e.chunk_id).collect();
    let theirs: HashSet<ChunkId> = eb.iter().map(|e| e.chunk_id).collect();
    for _ in 0..10 {
        let q = rng.unit(8);
        let got = search(&i, &sa, &q, 100, None).await;
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|c| mine.contains(&c.chunk_id)));
        let got = search(&i, &sb, &q, 100, None).await;
        assert!(got.iter().all(|c| theirs.contains(&c.chunk_id)));
        // B's documents named in A's space: nothing of B's.
        assert!(search(&i, &sa, &q, 10, Some(&db)).await.is_empty());
        // Another space of the same tenant is empty.
        assert!(search(&i, &sa2, &q, 10, None).await.is_empty());
    }
}

/// A tenant holding 1% of the vectors (its own small space beside a big one) gets `k`
/// results, and so does an allow list naming documents that hold 1% of a big space.
pub async fn small_scopes_are_never_starved(w: &dyn VectorWorld) {
    let dim = 32;
    let i = w.open().await;
    let (big_tenant, small_tenant) = (w.tenant().await, w.tenant().await);
    let big = w.space(big_tenant, dim).await;
    let small = w.space(small_tenant, dim).await;
    let big_docs = w.documents(big_tenant, 100).await;
    let small_docs = w.documents(small_tenant, 2).await;
    let mut rng = Rng::new(4);
    let clusters = Clusters::new(&mut rng, 30, dim as usize, 1.0);
    let n = (w.threshold() * 3).max(3_000);
    let eb = entries(n, &big_docs, || clusters.sample(&mut rng));
    let es = entries(n / 100, &small_docs, || clusters.sample(&mut rng));
    upsert(&i, &big, &eb).await;
    upsert(&i, &small, &es).await;
    i.settle().await;
    assert!(i.ann(big.id).await, "the big space is above the threshold");
    let k = 10;
    for round in 0..10 {
        let q = clusters.sample(&mut rng);
        let got = search(&i, &small, &q, k, None).await;
        assert_exact(
            &got,
            &brute_force(&es, &q),
            k,
            &format!("small tenant, query {round}"),
        );
        // One document of a hundred: 1% of the big space.
        let allowed = &big_docs[round..=round];
        let got = search(&i, &big, &q, k, Some(allowed)).await;
        let truth = brute_force(eb.iter().filter(|e| allowed.contains(&e.document_id)), &q);
        assert_exact(&got, &truth, k, &format!("1% allow list, query {round}"));
        // Half of the documents: still k, all allowed.
        let half = &big_docs[..50];
        let got = search(&i, &big, &q, k, Some(half)).await;
        assert_eq!(got.len(), k, "half allow list, query {round}");
        let allowed: HashSet<ChunkId> = eb
            .iter()
            .filter(|e| half.contains(&e.document_id))
            .map(|e| e.chunk_id)
            .collect();
        assert!(got.iter().all(|c| allowed.contains(&c.chunk_id)));
    }
}

/// An upsert of a chunk that has a vector replaces it (no duplicate, the new score).
pub async fn upsert_replaces(w: &dyn VectorWorld) {
    let i = w.open().await;
    let tenant = w.tenant().await;
    let space = w.space(tenant, 8).await;
    let docs = w.documents(tenant, 2).await;
    let mut rng = Rng::new(5);
    let mut es = entries(20, &docs, || rng.unit(8));
    upsert(&i, &space, &es).await;
    let old = es[0].vector.clone();
    let new = rng.unit(8);
    es[0].vector = new.clone();
    es[0].document_id = docs[1];
    upsert(&i, &space, &es[..1]).await;
    i.settle().await;
    let got = search(&i, &space, &new, 50, None).await;
    assert_eq!(got.len(), 20, "still one vector per chunk");
    assert_eq!(got[0].chunk_id, es[0].chunk_id);
    assert!((got[0].score - 1.0).abs() < 1e-4);
    let got = search(&i, &space, &old, 50, None).await;
    let replaced = got
        .iter()
        .find(|c| c.chunk_id == es[0].chunk_id)
        .expect("the chunk");
    assert!((replaced.score - dot(&old, &new)).abs() < 1e-4);
    // The chunk moved to the second document.
    let got = search(&i, &space, &new, 50, Some(&docs[1..])).await;
    assert_eq!(got[0].chunk_id, es[0].chunk_id);
    let got = search(&i, &space, &new, 50, Some(&docs[..1])).await;
    assert!(!ids(&got).contains(&es[0].chunk_id));
}

/// `missing` names the chunks without a vector in the space, once each.
pub async fn missing_names_chunks_without_vectors(w: &dyn VectorWorld) {
    let i = w.open().await;
    let tenant = w.tenant().await;
    let (space, other) = (w.space(tenant, 4).await, w.space(tenant, 4).await);
    let docs = w.documents(tenant, 1).await;
    let mut rng = Rng::new(6);
    let es = entries(5, &docs, || rng.unit(4));
    upsert(&i, &space, &es).await;
    let absent = ChunkId::new();
    let asked = [es[0].chunk_id, absent, es[3].chunk_id, absent];
    let got = i.index.missing(&space, &asked).await.expect("missing");
    assert_eq!(got, [absent]);
    let got = i.index.missing(&other, &asked[..3]).await.expect("missing");
    assert_eq!(got, [es[0].chunk_id, absent, es[3].chunk_id]);
    assert!(
        i.index
            .missing(&space, &[])
            .await
            .expect("missing")
            .is_empty()
    );
}

/// `retain` removes a document's vectors in every space of its tenant but those kept, and
/// touches nothing of another document or tenant.
pub async fn retain_keeps_only_the_kept(w: &dyn VectorWorld) {
    let i = w.open().await;
    let (a, b) = (w.tenant().await, w.tenant().await);
    let (s1, s2, sb) = (
        w.space(a, 4).await,
        w.space(a, 4).await,
        w.space(b, 4).await,
    );
    let docs = w.documents(a, 2).await;
    let bdocs = w.documents(b, 1).await;
    let mut rng = Rng::new(7);
    let d1: Vec<ChunkId> = (0..4).map(|_| ChunkId::new()).collect();
    let d2: Vec<ChunkId> = (0..3).map(|_| ChunkId::new()).collect();
    let mut es: Vec<VectorEntry> = Vec::new();
    for (chunks, doc) in [(&d1, docs[0]), (&d2, docs[1])] {
        for c in chunks {
            es.push(VectorEntry {
                chunk_id: *c,
                document_id: doc,
                vector: rng.unit(4),
            });
        }
    }
    upsert(&i, &s1, &es).await;
    upsert(&i, &s2, &es).await;
    let eb = entries(3, &bdocs, || rng.unit(4));
    upsert(&i, &sb, &eb).await;

    // Another tenant naming A's document changes nothing.
    i.index.retain(b, docs[0], &[]).await.expect("retain");
    assert!(i.index.missing(&s1, &d1).await.expect("missing").is_empty());

    i.index.retain(a, docs[0], &d1[..1]).await.expect("retain");
    i.settle().await;
    for space in [&s1, &s2] {
        let gone = i.index.missing(space, &d1).await.expect("missing");
        assert_eq!(gone, d1[1..]);
        assert!(
            i.index
                .missing(space, &d2)
                .await
                .expect("missing")
                .is_empty()
        );
        let q = rng.unit(4);
        let got: HashSet<ChunkId> = ids(&search(&i, space, &q, 50, None).await)
            .into_iter()
            .collect();
        let want: HashSet<ChunkId> = d1[..1].iter().chain(&d2).copied().collect();
        assert_eq!(got, want);
    }
    let got = search(&i, &sb, &rng.unit(4), 50, None).await;
    assert_eq!(got.len(), 3, "the other tenant keeps its vectors");

    // Keeping nothing removes the document's every vector.
    i.index.retain(a, docs[0], &[]).await.expect("retain");
    assert_eq!(
        i.index.missing(&s1, &d1[..1]).await.expect("missing"),
        d1[..1]
    );
}

/// `drop_space` removes every vector of the space and nothing else; the space can be filled
/// again.
pub async fn drop_space_removes_its_vectors(w: &dyn VectorWorld) {
    let i = w.open().await;
    let tenant = w.tenant().await;
    let (s1, s2) = (w.space(tenant, 8).await, w.space(tenant, 8).await);
    let docs = w.documents(tenant, 2).await;
    let mut rng = Rng::new(8);
    // Above the threshold in s1, so an approximate index is dropped too.
    let clusters = Clusters::new(&mut rng, 10, 8, 1.0);
    let e1 = entries(w.threshold() + 200, &docs, || clusters.sample(&mut rng));
    let e2 = entries(30, &docs, || rng.unit(8));
    upsert(&i, &s1, &e1).await;
    upsert(&i, &s2, &e2).await;
    i.settle().await;
    i.index.drop_space(&s1).await.expect("drop");
    i.settle().await;
    let q = rng.unit(8);
    assert!(search(&i, &s1, &q, 10, None).await.is_empty());
    assert!(!i.ann(s1.id).await);
    let asked: Vec<ChunkId> = e1.iter().take(10).map(|e| e.chunk_id).collect();
    assert_eq!(i.index.missing(&s1, &asked).await.expect("missing"), asked);
    assert_eq!(search(&i, &s2, &q, 50, None).await.len(), 30);
    upsert(&i, &s1, &e2).await;
    assert_eq!(search(&i, &s1, &q, 50, None).await.len(), 30);
}

/// A new instance over the same truth (a restarted process) answers the same without any
/// upsert of its own, below and above the threshold.
pub async fn vectors_persist_across_a_restart(w: &dyn VectorWorld) {
    let tenant = w.tenant().await;
    let (small, big) = (w.space(tenant, 16).await, w.space(tenant, 16).await);
    let docs = w.documents(tenant, 4).await;
    let mut rng = Rng::new(9);
    let es = entries(200, &docs, || rng.unit(16));
    let clusters = Clusters::new(&mut rng, 20, 16, 1.0);
    let eb = entries(w.threshold() * 2, &docs, || clusters.sample(&mut rng));
    let queries: Vec<Vec<f32>> = (0..10).map(|_| rng.unit(16)).collect();
    let before = {
        let first = w.open().await;
        upsert(&first, &small, &es).await;
        upsert(&first, &big, &eb).await;
        first.settle().await;
        let mut out = Vec::new();
        for q in &queries {
            out.push(ids(&search(&first, &small, q, 10, None).await));
        }
        out
    };
    let second = w.open().await;
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&ids(&search(&second, &small, q, 10, None).await), want);
        let got = search(&second, &big, q, 10, Some(&docs[..1])).await;
        let truth = brute_force(eb.iter().filter(|e| e.document_id == docs[0]), q);
        assert_exact(&got, &truth, 10, "the big space after a restart");
    }
    second.settle().await;
    let q = &queries[0];
    let truth = brute_force(&eb, q);
    let got = search(&second, &big, q, 10, None).await;
    assert_eq!(got.len(), 10);
    let want: HashSet<ChunkId> = truth[..10].iter().map(|t| t.0).collect();
    let hits = got.iter().filter(|c| want.contains(&c.chunk_id)).count();
    assert!(
        hits >= 8,
        "the big space after a restart: {hits}/10 of the exact top 10"
    );
}

/// Two instances over one truth (two servers): each sees the other's inserts and
/// replacements.
pub async fn instances_share_one_truth(w: &dyn VectorWorld) {
    let (one, two) = (w.open().await, w.open().await);
    let tenant = w.tenant().await;
    let space = w.space(tenant, 8).await;
    let docs = w.documents(tenant, 2).await;
    let mut rng = Rng::new(10);
    let q = rng.unit(8);
    // Two has looked at the space (and cached it empty) before one writes.
    assert!(search(&two, &space, &q, 10, None).await.is_empty());
    let mut es = entries(40, &docs, || rng.unit(8));
    upsert(&one, &space, &es).await;
    let got = search(&two, &space, &q, 10, None).await;
    assert_exact(&got, &brute_force(&es, &q), 10, "two sees one's inserts");
    // Two replaces a vector with the query itself: one sees it first.
    es[7].vector = q.clone();
    upsert(&two, &space, &es[7..8]).await;
    let got = search(&one, &space, &q, 10, None).await;
    assert_eq!(got[0].chunk_id, es[7].chunk_id);
    assert_exact(
        &got,
        &brute_force(&es, &q),
        10,
        "one sees two's replacement",
    );
    let more = entries(10, &docs, || rng.unit(8));
    upsert(&two, &space, &more).await;
    let all: Vec<VectorEntry> = es.iter().chain(&more).cloned().collect();
    let got = search(&one, &space, &q, 60, None).await;
    assert_exact(&got, &brute_force(&all, &q), 60, "one sees two's inserts");
}
