//! Unit tests of the index over a minimal in-memory [`VectorRows`] (the contract suite in
//! `testkit` runs it over every real rows adapter).

use std::sync::Mutex;

use retrieval::{EmbeddingModel, SpaceStatus, VectorRow};

use super::*;

#[derive(Debug, Clone)]
struct Row {
    tenant: TenantId,
    doc: DocumentId,
    seq: i64,
    vector: Vec<f32>,
}

/// The last `seq`, and the rows of each space.
type Tables = (i64, HashMap<SpaceId, HashMap<ChunkId, Row>>);

/// Rows in a map; one global `seq`.
#[derive(Debug, Default)]
struct MapRows {
    inner: Mutex<Tables>,
}

impl MapRows {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl VectorRows for MapRows {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<i64, IndexError> {
        let mut g = self.lock();
        g.0 += 1;
        let seq = g.0;
        let rows = g.1.entry(space.id).or_default();
        for e in entries {
            rows.insert(
                e.chunk_id,
                Row {
                    tenant: space.tenant_id,
                    doc: e.document_id,
                    seq,
                    vector: e.vector.clone(),
                },
            );
        }
        Ok(seq)
    }

    async fn version(&self, space: SpaceId) -> Result<i64, IndexError> {
        let g = self.lock();
        Ok(g.1
            .get(&space)
            .and_then(|r| r.values().map(|r| r.seq).max())
            .unwrap_or(0))
    }

    async fn load(
        &self,
        space: SpaceId,
        after: i64,
        cursor: Option<(i64, ChunkId)>,
        limit: usize,
    ) -> Result<Vec<VectorRow>, IndexError> {
        let g = self.lock();
        let mut rows: Vec<VectorRow> =
            g.1.get(&space)
                .into_iter()
                .flatten()
                .filter(|(c, r)| r.seq > after && cursor.is_none_or(|cur| (r.seq, **c) > cur))
                .map(|(c, r)| VectorRow {
                    chunk_id: *c,
                    document_id: r.doc,
                    seq: r.seq,
                    vector: r.vector.clone(),
                })
                .collect();
        rows.sort_by_key(|r| (r.seq, r.chunk_id));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn missing(
        &self,
        space: SpaceId,
        chunks: &[ChunkId],
    ) -> Result<Vec<ChunkId>, IndexError> {
        let g = self.lock();
        let rows = g.1.get(&space);
        Ok(chunks
            .iter()
            .filter(|c| !rows.is_some_and(|r| r.contains_key(c)))
            .copied()
            .collect())
    }

    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<Vec<(SpaceId, ChunkId)>, IndexError> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for (space, rows) in &mut g.1 {
            rows.retain(|c, r| {
                let gone = r.tenant == tenant && r.doc == document && !keep.contains(c);
                if gone {
                    out.push((*space, *c));
                }
                !gone
            });
        }
        Ok(out)
    }

    async fn drop_space(&self, space: SpaceId) -> Result<(), IndexError> {
        self.lock().1.remove(&space);
        Ok(())
    }
}

fn space(dim: u32) -> Space {
    Space::new(
        TenantId::new(),
        None,
        EmbeddingModel::new("test-model", dim).expect("a model"),
        SpaceStatus::Active,
        time::OffsetDateTime::UNIX_EPOCH,
    )
}

/// A random unit vector of `dim` dimensions.
pub(crate) fn unit(rng: &mut fastrand::Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn entries(rng: &mut fastrand::Rng, n: usize, dim: usize, docs: &[DocumentId]) -> Vec<VectorEntry> {
    (0..n)
        .map(|i| VectorEntry {
            chunk_id: ChunkId::new(),
            document_id: docs[i % docs.len()],
            vector: unit(rng, dim),
        })
        .collect()
}

fn brute(entries: &[VectorEntry], q: &[f32], k: usize) -> Vec<ChunkId> {
    let mut all: Vec<(f32, ChunkId)> = entries
        .iter()
        .map(|e| (dot(q, &e.vector), e.chunk_id))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|a| a.1).collect()
}

fn small(threshold: usize) -> HnswConfig {
    HnswConfig {
        exact_threshold: threshold,
        build_batch: 300,
        load_page: 128,
        ..HnswConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_below_the_threshold() {
    let index = HnswIndex::new(Arc::new(MapRows::default()), small(10_000));
    let mut rng = fastrand::Rng::with_seed(1);
    let s = space(16);
    let docs = [DocumentId::new()];
    let es = entries(&mut rng, 700, 16, &docs);
    index.upsert(&s, &es).await.expect("upsert");
    for _ in 0..20 {
        let q = unit(&mut rng, 16);
        let got: Vec<ChunkId> = index
            .search(&s, &q, 10, None)
            .await
            .expect("search")
            .iter()
            .map(|c| c.chunk_id)
            .collect();
        assert_eq!(got, brute(&es, &q, 10));
    }
    index.settle().await;
    assert_eq!(index.stats(s.id).await.and_then(|s| s.graph), None);
    assert!(matches!(
        index.search(&s, &[0.0; 3], 1, None).await,
        Err(IndexError::Dimension {
            expected: 16,
            got: 3
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_above_the_threshold_then_a_compacting_rebuild() {
    let rows = Arc::new(MapRows::default());
    let config = HnswConfig {
        m: 12,
        ef_construction: 64,
        ..small(400)
    };
    let index = HnswIndex::new(rows.clone(), config);
    let mut rng = fastrand::Rng::with_seed(2);
    let s = space(24);
    let docs: Vec<DocumentId> = (0..20).map(|_| DocumentId::new()).collect();
    let mut es = entries(&mut rng, 2000, 24, &docs);
    for batch in es.chunks(400) {
        index.upsert(&s, batch).await.expect("upsert");
    }
    index.settle().await;
    let stats = index.stats(s.id).await.expect("stats");
    assert_eq!(stats.graph, Some(2000));
    let mut hits = 0;
    for _ in 0..50 {
        let q = unit(&mut rng, 24);
        let want = brute(&es, &q, 10);
        let got = index.search(&s, &q, 10, None).await.expect("search");
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
        hits += got.iter().filter(|c| want.contains(&c.chunk_id)).count();
    }
    assert!(hits as f64 / 500.0 >= 0.9, "recall {hits}/500");

    // Replace 40%: tombstones past the ratio, so the worker compacts and rebuilds.
    for e in es.iter_mut().take(800) {
        e.vector = unit(&mut rng, 24);
    }
    index.upsert(&s, &es[..800]).await.expect("re-upsert");
    index.settle().await;
    let stats = index.stats(s.id).await.expect("stats");
    assert_eq!((stats.vectors, stats.tombstones), (2000, 0));
    assert_eq!(stats.graph, Some(2000));
    let q = unit(&mut rng, 24);
    let got = index.search(&s, &q, 10, None).await.expect("search");
    assert_eq!(got.len(), 10);

    // An allow list naming one document of twenty: exactly its vectors' top.
    let allowed: Vec<VectorEntry> = es
        .iter()
        .filter(|e| e.document_id == docs[3])
        .cloned()
        .collect();
    let got: Vec<ChunkId> = index
        .search(&s, &q, 10, Some(&docs[3..4]))
        .await
        .expect("search")
        .iter()
        .map(|c| c.chunk_id)
        .collect();
    assert_eq!(got, brute(&allowed, &q, 10));

    // Half of the documents: the filtered graph path, still k results, all allowed.
    let half = &docs[..10];
    let got = index.search(&s, &q, 10, Some(half)).await.expect("search");
    assert_eq!(got.len(), 10);
    let allowed: std::collections::HashSet<ChunkId> = es
        .iter()
        .filter(|e| half.contains(&e.document_id))
        .map(|e| e.chunk_id)
        .collect();
    assert!(got.iter().all(|c| allowed.contains(&c.chunk_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_writes_are_loaded_and_drops_reload() {
    let rows = Arc::new(MapRows::default());
    let a = HnswIndex::new(rows.clone(), small(100));
    let b = HnswIndex::new(rows.clone(), small(100));
    let mut rng = fastrand::Rng::with_seed(3);
    let s = space(8);
    let docs = [DocumentId::new(), DocumentId::new()];
    let es = entries(&mut rng, 300, 8, &docs);
    a.upsert(&s, &es).await.expect("upsert");
    let q = unit(&mut rng, 8);
    let want = brute(&es, &q, 5);
    let got: Vec<ChunkId> = b
        .search(&s, &q, 5, None)
        .await
        .expect("search")
        .iter()
        .map(|c| c.chunk_id)
        .collect();
    assert_eq!(got, want);
    // A's own rows come back through `load` at the same seq: no tombstones.
    a.search(&s, &q, 5, None).await.expect("search");
    assert_eq!(a.stats(s.id).await.map(|s| s.tombstones), Some(0));

    // B drops the space; A sees the version go back and reloads (empty).
    b.drop_space(&s).await.expect("drop");
    assert!(a.search(&s, &q, 5, None).await.expect("search").is_empty());
    assert_eq!(
        a.missing(&s, &[es[0].chunk_id]).await.expect("missing"),
        [es[0].chunk_id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_writes_while_the_graph_is_built() {
    let config = HnswConfig {
        m: 8,
        ef_construction: 32,
        ..small(300)
    };
    let index = Arc::new(HnswIndex::new(Arc::new(MapRows::default()), config));
    let mut rng = fastrand::Rng::with_seed(4);
    let s = space(16);
    let docs: Vec<DocumentId> = (0..10).map(|_| DocumentId::new()).collect();
    let mut all: Vec<VectorEntry> = Vec::new();
    for round in 0..16 {
        let mut batch = entries(&mut rng, 100, 16, &docs);
        // Replace some earlier vectors too: tombstones while the graph grows.
        if round % 3 == 2 {
            for e in all.iter_mut().take(100) {
                e.vector = unit(&mut rng, 16);
                batch.push(e.clone());
            }
        }
        index.upsert(&s, &batch).await.expect("upsert");
        let known: std::collections::HashSet<ChunkId> = all.iter().map(|a| a.chunk_id).collect();
        all.extend(batch.into_iter().filter(|e| !known.contains(&e.chunk_id)));
        // No settle: the worker builds, appends and rebuilds meanwhile.
        let q = unit(&mut rng, 16);
        let got = index.search(&s, &q, 10, None).await.expect("search");
        assert_eq!(got.len(), 10, "round {round}");
        let ids: std::collections::HashSet<ChunkId> = got.iter().map(|c| c.chunk_id).collect();
        assert_eq!(ids.len(), 10, "no duplicates in round {round}");
        let got = index
            .search(&s, &q, 10, Some(&docs[..2]))
            .await
            .expect("search");
        assert_eq!(got.len(), 10, "round {round}, allow list");
    }
    index.settle().await;
    let stats = index.stats(s.id).await.expect("stats");
    assert_eq!(stats.vectors, all.len());
    assert_eq!(stats.graph.map(|g| g >= stats.vectors), Some(true));
    // After settling, each vector's current value is what is found.
    for e in all.iter().step_by(97) {
        let got = index.search(&s, &e.vector, 1, None).await.expect("search");
        assert_eq!(got[0].chunk_id, e.chunk_id);
    }
}

/// Near `center`: the center plus noise of norm about `spread`, normalized.
fn near(rng: &mut fastrand::Rng, center: &[f32], spread: f32) -> Vec<f32> {
    let noise = unit(rng, center.len());
    let mut v: Vec<f32> = center
        .iter()
        .zip(&noise)
        .map(|(c, n)| c + spread * n)
        .collect();
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// The graph over int8 copies finds the exact top 10 of a seeded set (recall against brute
/// force), and it is the exact rescoring of `rerank · k` candidates that does it: the set is
/// 100 tight clusters of 40, whose members' scores differ by less than the quantization's
/// error, so the same graph asked for only `k` (rerank 1) loses results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quantized_graph_recalls_through_the_exact_rerank() {
    let dim = 64;
    let index = HnswIndex::new(Arc::new(MapRows::default()), small(500));
    let mut rng = fastrand::Rng::with_seed(16);
    let s = space(dim as u32);
    let docs: Vec<DocumentId> = (0..8).map(|_| DocumentId::new()).collect();
    let centers: Vec<Vec<f32>> = (0..100).map(|_| unit(&mut rng, dim)).collect();
    let es: Vec<VectorEntry> = (0..4000)
        .map(|i| VectorEntry {
            chunk_id: ChunkId::new(),
            document_id: docs[i % docs.len()],
            vector: near(&mut rng, &centers[i % centers.len()], 0.05),
        })
        .collect();
    for batch in es.chunks(1000) {
        index.upsert(&s, batch).await.expect("upsert");
    }
    index.settle().await;
    let stats = index.stats(s.id).await.expect("stats");
    assert_eq!(stats.graph, Some(4000));
    // The graph's copy is a quarter of the f32 vectors (plus the scale).
    assert_eq!(stats.graph_vector_bytes, 4000 * (dim + 4));

    let slot = index.lock_spaces().get(&s.id).cloned().expect("a slot");
    let st = slot.state.read().await;
    let reranked = index.config().clone();
    let graph_only = HnswConfig {
        rerank: 1,
        ..reranked.clone()
    };
    let (mut hits, mut hits_graph_only, mut total) = (0, 0, 0);
    for i in 0..100 {
        let q = near(&mut rng, &centers[(i * 37) % centers.len()], 0.05);
        let want = brute(&es, &q, 10);
        let got = search_state(&st, &reranked, &q, 10, None);
        // Exact scores, best first, ties by chunk id.
        assert!(got.windows(2).all(|w| w[0].rank(&w[1]).is_lt()));
        for g in &got {
            let e = es
                .iter()
                .find(|e| e.chunk_id == g.chunk)
                .expect("a known chunk");
            assert_eq!(g.score, dot(&q, &e.vector));
        }
        hits += got.iter().filter(|c| want.contains(&c.chunk)).count();
        let got = search_state(&st, &graph_only, &q, 10, None);
        hits_graph_only += got.iter().filter(|c| want.contains(&c.chunk)).count();
        total += 10;
    }
    let recall = hits as f64 / f64::from(total);
    let recall_graph_only = hits_graph_only as f64 / f64::from(total);
    assert!(recall >= 0.98, "recall {recall}");
    assert!(
        recall_graph_only < recall - 0.05,
        "without the rerank {recall_graph_only}, with it {recall}"
    );
}
