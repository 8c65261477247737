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
//! synthetic and seeded (see docs/benchmarks.md for how they are made), unless `--corpus` is
//! given.
//!
//! # Real text
//!
//! ```text
//! cargo bench -p testkit --bench retrieval -- --corpus <dir> [--embedder local|static|minilm]
//!     [--max-tokens 400] [--chunks 100000] [--queries 1000] [--recall-queries 200]
//!     [--dims <local only, default 384>] [--recall-ef 16,32,64,100,200] ...
//! ```
//! reads every file under `<dir>` (sorted, recursively; `docs/bench/text-corpus.py` gathers
//! one from what the machine holds offline), cuts each with the product's chunker
//! (`extract::chunk`, `cl100k_base`, `--max-tokens` with a tenth of it as overlap) and embeds
//! the chunks with the named built-in embedder (`local` = `quire-local-ngram-<dims>`, the
//! embedded default; `static` = `quire-local-static`; `minilm` = `quire-local-minilm`). Every
//! tenth file is held out: its chunks are never indexed and the queries come from them, two
//! kinds, whose recall is printed apart: `passages` (a held-out chunk, whole) and `sentences`
//! (one sentence of 6 to 40 words from a held-out chunk, as a question would be). The timed
//! searches through the service use the sentences. Repeated chunk texts are indexed once and
//! texts whose vector is zero (no letter or digit) are left out.
//!
//! Recall@10 counts a result as found when it is one of the exact top 10 or scores at least
//! the exact tenth's score (less 1e-5): an equally near vector is not a miss.

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

/// What a run stores and searches: chunks with their vectors, and the queries.
struct Data {
    texts: Vec<String>,
    /// Each chunk's token count.
    tokens: Vec<u32>,
    vectors: Vec<Vec<f32>>,
    model: EmbeddingModel,
    /// The queries timed through the search service: text, and the vector its embedder gives.
    queries: Vec<(String, Vec<f32>)>,
    /// Query vectors whose recall@10 is measured, by kind.
    recall_sets: Vec<(&'static str, Vec<Vec<f32>>)>,
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
    /// The synthetic data of `a`: the corpus, then the queries (a fresh vector near a random
    /// chunk's cluster, and three of that chunk's words).
    fn data(a: &Args, rng: &mut Rng) -> Data {
        let corpus = Self::new(a.chunks, a.dims, rng);
        let mut queries = Vec::with_capacity(a.queries);
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
            queries.push((text, v));
        }
        let recall = queries
            .iter()
            .take(a.recall_queries)
            .map(|(_, v)| v.clone())
            .collect();
        Data {
            tokens: vec![WORDS_PER_CHUNK as u32; corpus.texts.len()],
            texts: corpus.texts,
            vectors: corpus.vectors,
            model: EmbeddingModel::new("bench", a.dims as u32).unwrap(),
            queries,
            recall_sets: vec![("synthetic", recall)],
        }
    }

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
    /// Real text instead of synthetic data: the folder to read.
    corpus: Option<std::path::PathBuf>,
    /// The built-in embedder of the real text: `local`, `static` or `minilm`.
    embedder: String,
    /// The chunker's window of the real text, in tokens.
    max_tokens: u32,
    /// `--dims` was given (the real text's `local` embedder then has these dimensions).
    dims_given: bool,
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
        corpus: None,
        embedder: "local".to_owned(),
        max_tokens: 400,
        dims_given: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--chunks" => a.chunks = value.parse().unwrap(),
            "--dims" => {
                a.dims = value.parse().unwrap();
                a.dims_given = true;
            }
            "--corpus" => a.corpus = Some(value.into()),
            "--embedder" => a.embedder = value,
            "--max-tokens" => a.max_tokens = value.parse().unwrap(),
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

async fn run(backend: &str, a: &Args, data: &Data) {
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
    let mut chunk_ids = Vec::with_capacity(data.texts.len());
    let mut doc_of = Vec::with_capacity(data.texts.len());
    for (d, (texts, tokens)) in data
        .texts
        .chunks(CHUNKS_PER_DOCUMENT)
        .zip(data.tokens.chunks(CHUNKS_PER_DOCUMENT))
        .enumerate()
    {
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
                .zip(tokens)
                .enumerate()
                .map(|(i, (t, n))| ChunkDraft {
                    ordinal: i as u32,
                    text: t.clone(),
                    tokens: *n,
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

    let model = data.model.clone();
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
            store_sql::PgVectorIndex::try_new(&store, data.vectors.len() + 1)
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
    let batches = data.vectors.len().div_ceil(1_000);
    for (i, part) in data.vectors.chunks(1_000).enumerate() {
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
        .search(&space, &data.vectors[0], 10, None)
        .await
        .unwrap();
    settle().await;
    let built = started.elapsed();

    let queries = &data.queries;
    let table: HashMap<String, Vec<f32>> = queries.iter().cloned().collect();
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
    // Recall@10 of the index against exact search over every vector, per kind of query.
    let sets: Vec<RecallSet<'_>> = data
        .recall_sets
        .iter()
        .map(|(kind, qs)| (*kind, qs.as_slice(), truths(qs, &data.vectors, &chunk_ids)))
        .collect();
    let mut at_default = Vec::new();
    for (_, qs, truths) in &sets {
        at_default.push(recall_pass(&*index, &space, qs, truths).await);
    }
    println!(
        "\n[{backend}] {} chunks × {} dims, vector index: {}",
        data.texts.len(),
        data.model.dimensions(),
        index.backend()
    );
    println!(
        "  storing chunks (rows + keyword index): {:.0} chunks/s ({:.1} s)",
        data.texts.len() as f64 / stored.as_secs_f64(),
        stored.as_secs_f64()
    );
    println!(
        "  vector upserts: {:.0} chunks/s ({:.1} s); index build after: {:.1} s",
        data.texts.len() as f64 / indexed.as_secs_f64(),
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
    for ((kind, _, truths), (recall, index_only)) in sets.iter().zip(&at_default) {
        println!(
            "  vector index alone{}: p50 {:.2} ms, p99 {:.2} ms; recall@10 vs exact: {:.4} \
             ({} queries)",
            label(kind),
            ms(percentile(index_only, 0.5)),
            ms(percentile(index_only, 0.99)),
            recall,
            truths.len()
        );
    }
    if let Some(hnsw) = &hnsw {
        for ef in &a.recall_ef {
            let view = hnsw.searching_with(*ef);
            for (kind, qs, truths) in &sets {
                let (recall, times) = recall_pass(&view, &space, qs, truths).await;
                println!(
                    "  vector index alone{} at ef_search {ef}: p50 {:.2} ms, p99 {:.2} ms; \
                     recall@10 vs exact: {recall:.4} ({} queries)",
                    label(kind),
                    ms(percentile(&times, 0.5)),
                    ms(percentile(&times, 0.99)),
                    truths.len()
                );
            }
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

/// A kind of query, its query vectors and their exact top 10.
type RecallSet<'a> = (&'a str, &'a [Vec<f32>], Vec<Truth>);

/// The exact top 10 of a query: its chunks, and the tenth's score.
struct Truth {
    ids: Vec<documents::ChunkId>,
    tenth: f32,
}

/// The exact top 10 of each of `queries` over `vectors` (those of `chunk_ids`).
fn truths(
    queries: &[Vec<f32>],
    vectors: &[Vec<f32>],
    chunk_ids: &[documents::ChunkId],
) -> Vec<Truth> {
    queries
        .iter()
        .map(|q| {
            let mut exact: Vec<(f32, usize)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (dot(q, v), i))
                .collect();
            exact.select_nth_unstable_by(10, |x, y| y.0.total_cmp(&x.0));
            let top = &exact[..10];
            Truth {
                ids: top.iter().map(|(_, i)| chunk_ids[*i]).collect(),
                tenth: top.iter().map(|(s, _)| *s).fold(f32::INFINITY, f32::min),
            }
        })
        .collect()
}

/// How a kind of query is named in the output (the synthetic one, as before, not at all).
fn label(kind: &str) -> String {
    if kind == "synthetic" {
        String::new()
    } else {
        format!(" ({kind})")
    }
}

/// Recall@10 of `index` against `truths` (the exact top 10 of each query), and the latency of
/// each search, sorted. A result is found when it is in the exact top 10 or scores at least
/// its tenth (less 1e-5: the index recomputes scores in another order of additions), so that
/// an equally near vector is not counted as a miss.
async fn recall_pass(
    index: &dyn VectorIndex,
    space: &Space,
    queries: &[Vec<f32>],
    truths: &[Truth],
) -> (f64, Vec<Duration>) {
    let mut recall = 0.0;
    let mut times = Vec::with_capacity(truths.len());
    for (q, truth) in queries.iter().zip(truths) {
        let t = Instant::now();
        let got: Vec<Candidate> = index.search(space, q, 10, None).await.unwrap();
        times.push(t.elapsed());
        let hit = got
            .iter()
            .filter(|c| truth.ids.contains(&c.chunk_id) || c.score >= truth.tenth - 1e-5)
            .count();
        recall += hit.min(10) as f64 / 10.0;
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
    let data = if let Some(dir) = &a.corpus {
        real::data(dir, &a, &mut rng).await
    } else {
        let data = Corpus::data(&a, &mut rng);
        println!(
            "synthetic corpus: {} chunks of {} words (Zipf over {} words), {} clusters, made in \
             {:.1} s",
            a.chunks,
            WORDS_PER_CHUNK,
            VOCABULARY,
            CLUSTERS,
            started.elapsed().as_secs_f64()
        );
        data
    };
    for backend in ["sqlite", "pgvector"] {
        if a.backend == "both" || a.backend == backend {
            run(backend, &a, &data).await;
        }
    }
}

/// The real-text mode (`--corpus`; see the crate documentation).
mod real {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Instant;

    use documents::{ChunkingSettings, ExtractedText, Tokenizer};
    use retrieval::Embedder;

    use super::{Args, Data, Rng};

    /// Every tenth file is held out of the index: the queries come from it.
    const HELD_OUT_EVERY: usize = 10;
    /// Texts embedded per call.
    const BATCH: usize = 256;

    pub(super) async fn data(dir: &Path, a: &Args, rng: &mut Rng) -> Data {
        let embedder: Arc<dyn Embedder> = match a.embedder.as_str() {
            "local" => Arc::new(local_ai::LocalEmbedder::new(if a.dims_given {
                a.dims as u32
            } else {
                local_ai::DEFAULT_LOCAL_DIMENSIONS
            })),
            "static" => Arc::new(local_ai::StaticEmbedder::new()),
            "minilm" => Arc::new(local_ai::MiniLmEmbedder::new()),
            other => panic!("--embedder {other}: local, static or minilm"),
        };
        let settings =
            ChunkingSettings::new(a.max_tokens, a.max_tokens / 10, Tokenizer::Cl100kBase).unwrap();
        let mut files = Vec::new();
        walk(dir, &mut files);
        files.sort();

        // Chunks: the indexed ones up to `--chunks`, and the held-out ones.
        let started = Instant::now();
        let mut seen = HashSet::new();
        let (mut texts, mut tokens, mut held) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bytes, mut read) = (0usize, 0usize);
        for (i, file) in files.iter().enumerate() {
            if texts.len() >= a.chunks && held.len() >= 2 * a.queries {
                break;
            }
            let Ok(raw) = std::fs::read(file) else {
                continue;
            };
            let text = String::from_utf8_lossy(&raw).into_owned();
            bytes += text.len();
            read += 1;
            let drafts = extract::chunk(
                &ExtractedText {
                    text,
                    ..ExtractedText::default()
                },
                &settings,
            );
            for d in drafts {
                if !seen.insert(d.text.clone()) {
                    continue;
                }
                if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 {
                    held.push(d.text);
                } else if texts.len() < a.chunks {
                    texts.push(d.text);
                    tokens.push(d.tokens);
                }
            }
        }
        println!(
            "real text: {} files read ({:.1} MB), {} chunks to index and {} held out (at most {} \
             tokens, overlap {}), chunked in {:.1} s",
            read,
            bytes as f64 / 1e6,
            texts.len(),
            held.len(),
            settings.max_tokens(),
            settings.overlap(),
            started.elapsed().as_secs_f64()
        );

        // Queries: held-out chunks (passages) and a sentence of each (sentences), shuffled.
        for i in (1..held.len()).rev() {
            held.swap(i, rng.below(i + 1));
        }
        let sentences: Vec<String> = held.iter().filter_map(|p| sentence(p, rng)).collect();

        let started = Instant::now();
        let vectors = embed(&*embedder, &texts).await;
        let took = started.elapsed();
        println!(
            "embedded with {} ({} dims): {:.0} chunks/s ({:.1} s)",
            embedder.model().name(),
            embedder.model().dimensions(),
            texts.len() as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
        // Zero vectors (no letter or digit) are found by nothing: left out.
        let (mut kept_texts, mut kept_tokens, mut kept_vectors) =
            (Vec::new(), Vec::new(), Vec::new());
        for ((t, n), v) in texts.into_iter().zip(tokens).zip(vectors) {
            if v.iter().any(|x| *x != 0.0) {
                kept_texts.push(t);
                kept_tokens.push(n);
                kept_vectors.push(v);
            }
        }
        let passages = queries(&*embedder, &held, a.recall_queries).await;
        let sentences = queries(&*embedder, &sentences, a.queries.max(a.recall_queries)).await;
        println!(
            "queries: {} passages, {} sentences (e.g. {:?})",
            passages.len().min(a.recall_queries),
            sentences.len(),
            sentences
                .first()
                .map(|(t, _)| t.as_str())
                .unwrap_or_default()
        );
        let recall_sets = vec![
            (
                "passages",
                passages
                    .iter()
                    .take(a.recall_queries)
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
            (
                "sentences",
                sentences
                    .iter()
                    .take(a.recall_queries)
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
        ];
        Data {
            texts: kept_texts,
            tokens: kept_tokens,
            vectors: kept_vectors,
            model: embedder.model().clone(),
            queries: sentences.into_iter().take(a.queries).collect(),
            recall_sets,
        }
    }

    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// One sentence of 6 to 40 words of `passage`, chosen at random (`None`: it has none).
    fn sentence(passage: &str, rng: &mut Rng) -> Option<String> {
        let candidates: Vec<&str> = passage
            .split(['\n', '.', '?', '!'])
            .map(str::trim)
            .filter(|s| (6..=40).contains(&s.split_whitespace().count()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let s = candidates[rng.below(candidates.len())];
        Some(s.chars().take(retrieval::MAX_QUERY_CHARS).collect())
    }

    async fn embed(embedder: &dyn Embedder, texts: &[String]) -> Vec<Vec<f32>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for part in texts.chunks(BATCH) {
            vectors.extend(embedder.embed(part).await.unwrap().vectors);
        }
        vectors
    }

    /// Up to `n` of `texts` with their vectors, but those whose vector is zero, each text
    /// once.
    async fn queries(
        embedder: &dyn Embedder,
        texts: &[String],
        n: usize,
    ) -> Vec<(String, Vec<f32>)> {
        let mut seen = HashSet::new();
        let texts: Vec<String> = texts
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .take(n + n / 4 + 1)
            .map(|t| t.chars().take(retrieval::MAX_QUERY_CHARS).collect())
            .collect();
        let vectors = embed(embedder, &texts).await;
        texts
            .into_iter()
            .zip(vectors)
            .filter(|(_, v)| v.iter().any(|x| *x != 0.0))
            .take(n)
            .collect()
    }
}
