//! `cargo bench -p vector-hnsw --bench search` (release): the dot product, then one space of
//! clustered unit vectors (100,000 × 1,536 by default) in an [`HnswIndex`] over in-memory
//! rows: build throughput (upserts in batches of 1,000 until the background graph is
//! complete), top-10 latency p50/p99 over 1,000 queries, recall@10 against exact, and the
//! exact scan's latency for comparison.
//!
//! Sizes from the environment: `BENCH_N`, `BENCH_DIM`, `BENCH_QUERIES`, and the graph's
//! `BENCH_M`, `BENCH_EF_CONSTRUCTION`, `BENCH_EF_SEARCH`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use documents::{ChunkId, DocumentId};
use kernel::TenantId;
use retrieval::{
    EmbeddingModel, IndexError, Space, SpaceId, SpaceStatus, VectorEntry, VectorIndex, VectorRow,
    VectorRows,
};
use vector_hnsw::{HnswConfig, HnswIndex, dot};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The last `seq`, and each space's rows with their `seq`.
type Tables = (i64, HashMap<SpaceId, Vec<(i64, VectorEntry)>>);

/// Rows in memory.
#[derive(Debug, Default)]
struct Rows {
    inner: Mutex<Tables>,
}

#[async_trait]
impl VectorRows for Rows {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<i64, IndexError> {
        let mut g = self.inner.lock().unwrap();
        g.0 += 1;
        let seq = g.0;
        let rows = g.1.entry(space.id).or_default();
        rows.extend(entries.iter().map(|e| (seq, e.clone())));
        Ok(seq)
    }

    async fn version(&self, _space: SpaceId) -> Result<i64, IndexError> {
        Ok(self.inner.lock().unwrap().0)
    }

    async fn load(
        &self,
        space: SpaceId,
        after: i64,
        cursor: Option<(i64, ChunkId)>,
        limit: usize,
    ) -> Result<Vec<VectorRow>, IndexError> {
        let g = self.inner.lock().unwrap();
        let mut out: Vec<VectorRow> =
            g.1.get(&space)
                .into_iter()
                .flatten()
                .filter(|(seq, e)| *seq > after && cursor.is_none_or(|c| (*seq, e.chunk_id) > c))
                .map(|(seq, e)| VectorRow {
                    chunk_id: e.chunk_id,
                    document_id: e.document_id,
                    seq: *seq,
                    vector: e.vector.clone(),
                })
                .collect();
        out.sort_by_key(|r| (r.seq, r.chunk_id));
        out.truncate(limit);
        Ok(out)
    }

    async fn missing(&self, _: SpaceId, _: &[ChunkId]) -> Result<Vec<ChunkId>, IndexError> {
        Ok(Vec::new())
    }

    async fn retain(
        &self,
        _: TenantId,
        _: DocumentId,
        _: &[ChunkId],
    ) -> Result<Vec<(SpaceId, ChunkId)>, IndexError> {
        Ok(Vec::new())
    }

    async fn drop_space(&self, _: SpaceId) -> Result<(), IndexError> {
        Ok(())
    }
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn signed(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn bench_dot(dim: usize) {
    let mut rng = Rng(1);
    let n = 4096;
    let data: Vec<f32> = (0..n * dim).map(|_| rng.signed()).collect();
    let q: Vec<f32> = (0..dim).map(|_| rng.signed()).collect();
    let naive = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    for (name, f) in [
        ("16 accumulators", &dot as &dyn Fn(&[f32], &[f32]) -> f32),
        ("naive iterator sum", &naive),
    ] {
        let rounds = 50;
        let started = Instant::now();
        let mut sink = 0.0;
        for _ in 0..rounds {
            for v in data.chunks_exact(dim) {
                sink += f(black_box(&q), black_box(v));
            }
        }
        black_box(sink);
        let per = started.elapsed().as_secs_f64() / (rounds * n) as f64;
        println!(
            "dot {dim} dims, {name}: {:.0} ns per call, {:.2} GFLOP/s",
            per * 1e9,
            2.0 * dim as f64 / per / 1e9
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("BENCH_N", 100_000);
    let dim = env("BENCH_DIM", 1_536);
    let queries = env("BENCH_QUERIES", 1_000);
    let defaults = HnswConfig::default();
    let config = HnswConfig {
        m: env("BENCH_M", defaults.m),
        ef_construction: env("BENCH_EF_CONSTRUCTION", defaults.ef_construction),
        ef_search: env("BENCH_EF_SEARCH", defaults.ef_search),
        ..defaults
    };
    bench_dot(dim);

    // Clustered data: 200 centres, each vector a centre plus noise of the same norm.
    let mut rng = Rng(7);
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| normalized((0..dim).map(|_| rng.signed()).collect()))
        .collect();
    let scale = 2.0 / (dim as f32).sqrt();
    let sample = |rng: &mut Rng| {
        let c = &centres[(rng.next() % centres.len() as u64) as usize];
        normalized(c.iter().map(|x| x + rng.signed() * scale).collect())
    };
    let docs: Vec<DocumentId> = (0..1_000).map(|_| DocumentId::new()).collect();
    let entries: Vec<VectorEntry> = (0..n)
        .map(|i| VectorEntry {
            chunk_id: ChunkId::new(),
            document_id: docs[i % docs.len()],
            vector: sample(&mut rng),
        })
        .collect();
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| sample(&mut rng)).collect();
    let space = Space::new(
        TenantId::new(),
        None,
        EmbeddingModel::new("bench", u32::try_from(dim).unwrap()).unwrap(),
        SpaceStatus::Active,
        time::OffsetDateTime::UNIX_EPOCH,
    );
    println!(
        "{n} vectors × {dim} dims, M {} ef_construction {} ef_search {} (k = 10)",
        config.m, config.ef_construction, config.ef_search
    );

    let index = HnswIndex::new(Arc::new(Rows::default()), config);
    let started = Instant::now();
    for batch in entries.chunks(1_000) {
        index.upsert(&space, batch).await.unwrap();
    }
    let upserted = started.elapsed();
    index.settle().await;
    let built = started.elapsed();
    let stats = index.stats(space.id).await.unwrap();
    assert_eq!(stats.graph, Some(n));
    println!(
        "build: upserts {upserted:.2?}, graph complete after {built:.2?}: {:.0} vectors/s",
        n as f64 / built.as_secs_f64()
    );

    // Exact answers (and the exact scan's latency) first.
    let mut exact = Vec::with_capacity(queries);
    let mut exact_times = Vec::with_capacity(queries);
    for q in &qs {
        let t = Instant::now();
        let mut all: Vec<(f32, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (dot(q, &e.vector), i))
            .collect();
        all.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
        exact_times.push(t.elapsed());
        exact.push(
            all[..10]
                .iter()
                .map(|(_, i)| entries[*i].chunk_id)
                .collect::<HashSet<ChunkId>>(),
        );
    }
    exact_times.sort();

    let mut times = Vec::with_capacity(queries);
    let mut hits = 0;
    for (q, want) in qs.iter().zip(&exact) {
        let t = Instant::now();
        let got = index.search(&space, q, 10, None).await.unwrap();
        times.push(t.elapsed());
        hits += got.iter().filter(|c| want.contains(&c.chunk_id)).count();
    }
    times.sort();
    println!(
        "search top-10 over {queries} queries: p50 {:.2?}, p99 {:.2?}; recall@10 {:.4}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        hits as f64 / (queries * 10) as f64
    );
    println!(
        "exact scan (brute force, one thread): p50 {:.2?}, p99 {:.2?}",
        percentile(&exact_times, 0.5),
        percentile(&exact_times, 0.99)
    );

    // An allow list naming 1% of the documents (exact over their positions).
    let allowed = &docs[..10];
    let mut times = Vec::with_capacity(queries);
    for q in qs.iter().take(200) {
        let t = Instant::now();
        let got = index.search(&space, q, 10, Some(allowed)).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(got.len(), 10);
    }
    times.sort();
    println!(
        "search top-10 with a 1% allow list: p50 {:.2?}, p99 {:.2?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    println!(
        "memory: {:.0} MiB of flat f32 vectors, {:.0} MiB of the graph's int8 copies",
        stats.vector_bytes as f64 / (1 << 20) as f64,
        stats.graph_vector_bytes as f64 / (1 << 20) as f64
    );
}
