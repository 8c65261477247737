//! Retrieval benchmark: one tenant's collection of N chunks with D-dimensional vectors, stored
//! through the real ports (chunks with their keyword index, vector rows), then top-10 searches
//! through the real search service.
//!
//! Prints, per backend: chunk storing and vector indexing throughput, the index build time,
//! top-10 latency (p50, p99) for hybrid, vector and keyword search, and recall@10 of the
//! vector index against exact search.
//!
//! ```text
//! cargo bench -p testkit --bench retrieval -- [--chunks 100000] [--dims 1536] [--queries 1000]
//!     [--recall-queries 200] [--backend sqlite|pgvector|both] [--ef <hnsw ef_search>]
//!     [--recall-ef 16,32,64,128,200]
//! ```
//! `--recall-ef` (embedded only) repeats the recall pass with each listed `ef_search` over the
//! same graph (`HnswIndex::searching_with`), after the searches at `--ef`.
//! On pgvector the vectors are bulk-loaded before the space's HNSW index is built (an index
//! instance whose threshold is never reached takes all but the last batch; the last batch,
//! through the real threshold, starts the build), as a large first import would be.
//! `pgvector` needs `QUIRE_TEST_PGVECTOR_URL` (`.ci/pgvector.sh` prints one). The data are
//! synthetic and seeded (see docs/benchmarks.md for how they are made).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use documents::{ChunkDraft, NewChunk};
use kernel::{Principal, Role, SystemClock, TenantContext, UserId};
use retrieval::{
    Candidate, EmbedError, Embedder, Embedders, EmbeddingModel, Embeddings, MetadataFilter,
    Retrieval, RetrievalPorts, SearchMode, SearchQuery, Space, SpaceRepository as _, SpaceStatus,
    VectorEntry, VectorIndex,
};
use store_sql::SqlStore;
use testkit::contract::documents::{self as fixtures, DocumentPorts};

const CHUNKS_PER_DOCUMENT: usize = 100;
const WORDS_PER_CHUNK: usize = 80;
const VOCABULARY: usize = 20_000;
const CLUSTERS: usize = 1_000;

/// xorshift64*: small, seeded, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n
    }
    fn gauss(&mut self) -> f32 {
        // Box-Muller.
        let u = self.unit().max(1e-12);
        let v = self.unit();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        for x in v {
            *x /= n;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The synthetic corpus: Zipf-distributed words, clustered vectors.
struct Corpus {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    clusters: Vec<usize>,
    centroids: Vec<Vec<f32>>,
    words: Vec<String>,
    zipf: Vec<f64>,
}

impl Corpus {
    fn new(n: usize, dims: usize, rng: &mut Rng) -> Self {
        let syllables = [
            "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "zu", "ren", "tal", "mor",
            "sin", "bel", "ox", "qua", "fi", "gor",
        ];
        let words: Vec<String> = (0..VOCABULARY)
            .map(|i| {
                let mut w = String::new();
                let mut k = i + 1;
                while k > 0 {
                    w.push_str(syllables[k % syllables.len()]);
                    k /= syllables.len();
                }
                w
            })
            .collect();
        let mut acc = 0.0;
        let zipf: Vec<f64> = (1..=VOCABULARY)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        let centroids: Vec<Vec<f32>> = (0..CLUSTERS)
            .map(|_| {
                let mut c: Vec<f32> = (0..dims).map(|_| rng.gauss()).collect();
                normalize(&mut c);
                c
            })
            .collect();
        let mut corpus = Self {
            texts: Vec::with_capacity(n),
            vectors: Vec::with_capacity(n),
            clusters: Vec::with_capacity(n),
            centroids,
            words,
            zipf,
        };
        for _ in 0..n {
            let cluster = rng.below(CLUSTERS);
            let v = corpus.near(cluster, 0.8, rng);
            let text = corpus.sentence(WORDS_PER_CHUNK, rng);
            corpus.texts.push(text);
            corpus.vectors.push(v);
            corpus.clusters.push(cluster);
        }
        corpus
    }

    /// A vector of the cluster: its centroid plus Gaussian noise of norm ≈ `spread`.
    fn near(&self, cluster: usize, spread: f32, rng: &mut Rng) -> Vec<f32> {
        let c = &self.centroids[cluster];
        let scale = spread / (c.len() as f32).sqrt();
        let mut v: Vec<f32> = c.iter().map(|x| x + rng.gauss() * scale).collect();
        normalize(&mut v);
        v
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let total = self.zipf[self.zipf.len() - 1];
        let x = rng.unit() * total;
        let i = self
            .zipf
            .partition_point(|c| *c < x)
            .min(self.words.len() - 1);
        &self.words[i]
    }

    fn sentence(&self, n: usize, rng: &mut Rng) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.word(rng));
        }
        s
    }
}

/// An embedder that answers the bench's precomputed query vectors (so the latency measured is
/// the index's, not an embedding model's).
#[derive(Debug)]
struct Table {
    model: EmbeddingModel,
    vectors: HashMap<String, Vec<f32>>,
}

#[async_trait::async_trait]
impl Embedder for Table {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, EmbedError> {
        let vectors = inputs
            .iter()
            .map(|i| {
                self.vectors
                    .get(i)
                    .cloned()
                    .ok_or_else(|| EmbedError::Rejected(format!("no vector for {i:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Embeddings { vectors, tokens: 0 })
    }
}

/// The index under test, with its way to wait for background builds.
enum Index {
    Hnsw(Arc<vector_hnsw::HnswIndex>),
    Pg(Arc<store_sql::PgVectorIndex>),
}

impl Index {
    async fn settle(&self) {
        match self {
            Index::Hnsw(h) => h.settle().await,
            Index::Pg(p) => p.settle().await,
        }
    }

    fn port(&self) -> Arc<dyn VectorIndex> {
        match self {
            Index::Hnsw(h) => h.clone(),
            Index::Pg(p) => p.clone(),
        }
    }
}

struct Args {
    chunks: usize,
    dims: usize,
    queries: usize,
    recall_queries: usize,
    backend: String,
    /// `HnswConfig::ef_search` of the embedded index (`None`: its default).
    ef: Option<usize>,
    /// More `ef_search` values to measure recall@10 with (embedded only).
    recall_ef: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        chunks: 100_000,
        dims: 1536,
        queries: 1_000,
        recall_queries: 200,
        backend: "both".to_owned(),
        ef: None,
        recall_ef: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--chunks" => a.chunks = value.parse().unwrap(),
            "--dims" => a.dims = value.parse().unwrap(),
            "--queries" => a.queries = value.parse().unwrap(),
            "--recall-queries" => a.recall_queries = value.parse().unwrap(),
            "--backend" => a.backend = value,
            "--ef" => a.ef = Some(value.parse().unwrap()),
            "--recall-ef" => {
                a.recall_ef = value
                    .split(',')
                    .map(|v| v.trim().parse().unwrap())
                    .collect();
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn store_for(backend: &str) -> Option<(SqlStore, Option<tempfile::TempDir>, Option<String>)> {
    match backend {
        "sqlite" => {
            let (store, dir) = testkit::sqlite_store().await;
            Some((store, Some(dir), None))
        }
        _ => {
            let url = testkit::pgvector_url()?;
            let schema = testkit::unique_name();
            let dir = std::env::temp_dir();
            let mut settings = testkit::test_settings(&dir);
            settings.database.url = Some(secrecy::SecretString::from(url));
            settings.database.schema = Some(schema.clone());
            settings.database.max_connections = 8;
            let store = SqlStore::connect(&settings, Arc::new(SystemClock))
                .await
                .unwrap();
            store.migrate().await.unwrap();
            Some((store, None, Some(schema)))
        }
    }
}

async fn run(backend: &str, a: &Args, corpus: &Corpus, rng: &mut Rng) {
    let Some((store, _dir, schema)) = store_for(backend).await else {
        println!("\n[{backend}] skipped: QUIRE_TEST_PGVECTOR_URL is not set");
        return;
    };
    let p = DocumentPorts::of(store.clone());
    // Two tenants: the bench's, and another with nothing (search is scoped all the same).
    let (tenant, _other) = fixtures::two_tenants(&p).await;
    let collection = fixtures::collection(tenant, "bench", fixtures::T0);
    p.collections.create(collection.clone()).await.unwrap();

    // Chunks, stored as the pipeline stores them (the keyword index follows them).
    let started = Instant::now();
    let mut chunk_ids = Vec::with_capacity(corpus.texts.len());
    let mut doc_of = Vec::with_capacity(corpus.texts.len());
    for (d, texts) in corpus.texts.chunks(CHUNKS_PER_DOCUMENT).enumerate() {
        let doc = fixtures::upload(
            &p,
            tenant,
            Some(collection.id),
            &format!("doc{d}"),
            fixtures::T0,
        )
        .await;
        let claim = p
            .jobs
            .claim(fixtures::T0, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        let chunks = NewChunk::assign(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| ChunkDraft {
                    ordinal: i as u32,
                    text: t.clone(),
                    tokens: WORDS_PER_CHUNK as u32,
                    tokens_by: None,
                    page: None,
                    start: 0,
                    end: t.chars().count() as u64,
                    ocr: false,
                })
                .collect(),
        );
        for c in &chunks {
            chunk_ids.push(c.id);
            doc_of.push(doc.id);
        }
        let done = p
            .jobs
            .complete(
                &claim,
                documents::Ingested {
                    pages: None,
                    chunks,
                    ocr_pages: 0,
                },
                fixtures::T0,
            )
            .await
            .unwrap();
        assert!(done);
    }
    let stored = started.elapsed();

    let model = EmbeddingModel::new("bench", a.dims as u32).unwrap();
    let space = store
        .ensure(Space::new(
            tenant,
            Some(collection.id),
            model.clone(),
            SpaceStatus::Active,
            fixtures::T0,
        ))
        .await
        .unwrap();
    let mut config = vector_hnsw::HnswConfig::default();
    if let Some(ef) = a.ef {
        config.ef_search = ef;
    }
    let index = if backend == "sqlite" {
        Index::Hnsw(Arc::new(vector_hnsw::HnswIndex::new(
            Arc::new(store.clone()),
            config,
        )))
    } else {
        Index::Pg(Arc::new(
            store_sql::PgVectorIndex::try_new(&store, 4_096)
                .await
                .unwrap()
                .expect("the vector extension"),
        ))
    };
    // pgvector: all but the last batch through an instance that never builds an index.
    let bulk: Arc<dyn VectorIndex> = match &index {
        Index::Hnsw(h) => h.clone(),
        Index::Pg(_) => Arc::new(
            store_sql::PgVectorIndex::try_new(&store, corpus.vectors.len() + 1)
                .await
                .unwrap()
                .expect("the vector extension"),
        ),
    };
    let hnsw = match &index {
        Index::Hnsw(h) => Some(h.clone()),
        Index::Pg(_) => None,
    };
    let settle = || index.settle();
    let index = index.port();
    let started = Instant::now();
    let batches = corpus.vectors.len().div_ceil(1_000);
    for (i, part) in corpus.vectors.chunks(1_000).enumerate() {
        let entries: Vec<VectorEntry> = part
            .iter()
            .enumerate()
            .map(|(j, v)| VectorEntry {
                chunk_id: chunk_ids[i * 1_000 + j],
                document_id: doc_of[i * 1_000 + j],
                vector: v.clone(),
            })
            .collect();
        let through = if i + 1 == batches { &index } else { &bulk };
        through.upsert(&space, &entries).await.unwrap();
    }
    let indexed = started.elapsed();
    let started = Instant::now();
    // The first search loads the space; then wait for the graph (or pgvector's HNSW index).
    index
        .search(&space, &corpus.vectors[0], 10, None)
        .await
        .unwrap();
    settle().await;
    let built = started.elapsed();

    // Queries: a fresh vector near a random chunk's cluster, and three of that chunk's words.
    let mut queries = Vec::with_capacity(a.queries);
    let mut table = HashMap::new();
    for q in 0..a.queries {
        let c = rng.below(corpus.texts.len());
        let v = corpus.near(corpus.clusters[c], 0.8, rng);
        let words: Vec<&str> = corpus.texts[c].split(' ').collect();
        let text = format!(
            "{} {} {} q{q}",
            words[rng.below(words.len())],
            words[rng.below(words.len())],
            words[rng.below(words.len())]
        );
        table.insert(text.clone(), v.clone());
        queries.push((text, v));
    }
    let sql = Arc::new(store.clone());
    let service = Retrieval::new(RetrievalPorts {
        spaces: sql.clone(),
        vectors: index.clone(),
        keywords: sql.clone(),
        catalog: sql.clone(),
        collections: sql,
        embedders: Embedders::new(
            Arc::new(Table {
                model,
                vectors: table,
            }),
            vec![],
        ),
        clock: Arc::new(SystemClock),
        meter: Arc::new(kernel::metering::Unmetered),
        recent: retrieval::RecentScopes::default(),
    });
    let ctx = TenantContext::new(tenant, Principal::User(UserId::new()), Role::Member);
    // The embedded keyword cache is built at the first large search: built here, timed.
    let rss_before = rss_kib();
    let started = Instant::now();
    let warm = SearchQuery::new(
        &queries[0].0,
        None,
        Some(10),
        None,
        SearchMode::Keyword,
        MetadataFilter::default(),
    )
    .unwrap();
    service.search(&ctx, &warm).await.unwrap();
    store.keyword_cache_settled().await;
    let keyword_cache = store
        .keyword_cache_stats()
        .map(|s| (s, started.elapsed(), rss_before, rss_kib()));
    let mut report = Vec::new();
    for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword] {
        let mut times = Vec::with_capacity(queries.len());
        for (i, (text, _)) in queries.iter().enumerate() {
            let query =
                SearchQuery::new(text, None, Some(10), None, mode, MetadataFilter::default())
                    .unwrap();
            let t = Instant::now();
            let hits = service.search(&ctx, &query).await.unwrap();
            let took = t.elapsed();
            if i >= 20 {
                times.push(took);
            }
            assert!(
                mode == SearchMode::Keyword || hits.len() == 10,
                "{mode:?}: {}",
                hits.len()
            );
        }
        times.sort();
        report.push((mode, percentile(&times, 0.5), percentile(&times, 0.99)));
    }
    // Recall@10 of the index against exact search over every vector.
    let truths: Vec<Vec<documents::ChunkId>> = queries
        .iter()
        .take(a.recall_queries)
        .map(|(_, q)| {
            let mut exact: Vec<(f32, usize)> = corpus
                .vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (dot(q, v), i))
                .collect();
            exact.select_nth_unstable_by(10, |x, y| y.0.total_cmp(&x.0));
            exact[..10].iter().map(|(_, i)| chunk_ids[*i]).collect()
        })
        .collect();
    let (recall, index_only) = recall_pass(&*index, &space, &queries, &truths).await;
    println!(
        "\n[{backend}] {} chunks × {} dims, vector index: {}",
        corpus.texts.len(),
        a.dims,
        index.backend()
    );
    println!(
        "  storing chunks (rows + keyword index): {:.0} chunks/s ({:.1} s)",
        corpus.texts.len() as f64 / stored.as_secs_f64(),
        stored.as_secs_f64()
    );
    println!(
        "  vector upserts: {:.0} chunks/s ({:.1} s); index build after: {:.1} s",
        corpus.texts.len() as f64 / indexed.as_secs_f64(),
        indexed.as_secs_f64(),
        built.as_secs_f64()
    );
    if let Some((stats, took, before, after)) = keyword_cache {
        println!(
            "  keyword cache: built in {:.2} s; {} chunks, {} postings, {} terms, {:.1} MB \
             ({:.0} bytes per chunk); RSS {} -> {} MB",
            took.as_secs_f64(),
            stats.chunks,
            stats.postings,
            stats.terms,
            stats.bytes as f64 / 1e6,
            stats.bytes as f64 / stats.chunks.max(1) as f64,
            before / 1024,
            after / 1024
        );
    }
    for (mode, p50, p99) in report {
        println!(
            "  top-10 {:<7} search: p50 {:.2} ms, p99 {:.2} ms ({} queries)",
            mode.as_str(),
            ms(p50),
            ms(p99),
            queries.len() - 20
        );
    }
    println!(
        "  vector index alone: p50 {:.2} ms, p99 {:.2} ms; recall@10 vs exact: {:.4} ({} queries)",
        ms(percentile(&index_only, 0.5)),
        ms(percentile(&index_only, 0.99)),
        recall,
        a.recall_queries
    );
    if let Some(hnsw) = &hnsw {
        for ef in &a.recall_ef {
            let view = hnsw.searching_with(*ef);
            let (recall, times) = recall_pass(&view, &space, &queries, &truths).await;
            println!(
                "  vector index alone at ef_search {ef}: p50 {:.2} ms, p99 {:.2} ms; \
                 recall@10 vs exact: {recall:.4} ({} queries)",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                truths.len()
            );
        }
    }
    if let Some(schema) = schema {
        let url = testkit::pgvector_url().unwrap_or_default();
        drop(testkit::schema_guard_at(&url, &schema));
    }
}

/// The process's resident set in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Recall@10 of `index` against `truths` (the exact top 10 of each query, in order), and the
/// latency of each search, sorted.
async fn recall_pass(
    index: &dyn VectorIndex,
    space: &Space,
    queries: &[(String, Vec<f32>)],
    truths: &[Vec<documents::ChunkId>],
) -> (f64, Vec<Duration>) {
    let mut recall = 0.0;
    let mut times = Vec::with_capacity(truths.len());
    for ((_, q), truth) in queries.iter().zip(truths) {
        let t = Instant::now();
        let got: Vec<Candidate> = index.search(space, q, 10, None).await.unwrap();
        times.push(t.elapsed());
        let hit = got.iter().filter(|c| truth.contains(&c.chunk_id)).count();
        recall += hit as f64 / 10.0;
    }
    recall /= truths.len().max(1) as f64;
    times.sort();
    (recall, times)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let corpus = Corpus::new(a.chunks, a.dims, &mut rng);
    println!(
        "synthetic corpus: {} chunks of {} words (Zipf over {} words), {} clusters, made in {:.1} s",
        a.chunks,
        WORDS_PER_CHUNK,
        VOCABULARY,
        CLUSTERS,
        started.elapsed().as_secs_f64()
    );
    for backend in ["sqlite", "pgvector"] {
        if a.backend == "both" || a.backend == backend {
            run(backend, &a, &corpus, &mut rng).await;
        }
    }
}
