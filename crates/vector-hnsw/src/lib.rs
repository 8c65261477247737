//! The embedded vector index: [`HnswIndex`] implements [`retrieval::VectorIndex`] (backend
//! `hnsw`) as an in-process cache of the rows a [`retrieval::VectorRows`] keeps in SQL.
//!
//! # Truth and cache
//!
//! The rows are the truth: a write (`upsert`, `retain`, `drop_space`) goes to the rows first
//! and is then applied to this process's cache. Before each search the index compares
//! `rows.version(space)` with the `seq` it has loaded and loads only the rows written after
//! it (paged), so a restart reloads instead of re-embedding, and several server processes over
//! one PostgreSQL (without pgvector) see each other's inserts. A row whose chunk the cache
//! already holds at the same `seq` (this process's own write) is skipped, and an older `seq`
//! never replaces a newer one. The cost: the search after a local write reads that write's
//! rows back once, since the version alone cannot tell this process's writes from another's.
//!
//! Limit: a delete made by *another* process is not seen until this cache reloads the space.
//! The search service drops chunks that no longer exist when it reads them, so a stale vector
//! costs at most a slot of a result list. The cache reloads the space from scratch when
//! `version` goes backwards (on SQL the version is a counter of the space row, so only when
//! that row was deleted and the space made again), and [`HnswIndex::invalidate`] forces that
//! reload at the next use.
//!
//! # Search
//!
//! A space with fewer than [`HnswConfig::exact_threshold`] live vectors is searched exactly
//! (brute force over one contiguous `Vec<f32>`, with [`dot`] written to vectorise). Above it
//! a background worker (on `spawn_blocking`, never on the async runtime) builds an HNSW graph;
//! until the graph is complete the space is still searched exactly, then the graph is
//! swapped in (large batches are inserted in parallel on rayon's global pool). Vectors added
//! later are appended to the graph by the same worker; meanwhile the positions past the
//! graph's prefix are scanned exactly and merged, so a search always sees every vector the
//! cache holds. Replaced and removed vectors are tombstones, filtered out of
//! graph results; when they exceed [`HnswConfig::rebuild_ratio`] of the positions, the worker
//! rebuilds a compacted copy (graph included) and swaps it in.
//!
//! An `allow` list never starves: when the allowed documents hold few vectors (at most the
//! threshold, or an eighth of the space) they are scanned exactly through the document →
//! positions map; otherwise the graph is searched with the allow list as a filter *inside* the
//! traversal, and if that still comes back short of `k` while `k` allowed vectors exist, the
//! allowed vectors are scanned exactly. Unfiltered graph searches fall back the same way.
//! The graph holds int8 copies of the vectors (per-vector symmetric scale, [`quant`]) and is
//! traversed with an integer dot product, a quarter of the bytes read per distance; it returns
//! [`HnswConfig::rerank`] · k candidates (at most `ef`), which are rescored exactly with the
//! `f32` vectors of the flat store to keep the best `k`. Scores are cosine similarities (the
//! dot product of normalized vectors) recomputed exactly for every result; ties are broken by
//! chunk id, so results are deterministic.
//!
//! # Why `hnsw_rs`
//!
//! Pure Rust (no C++ toolchain or 5-minute `numkong` build as `usearch` needs), incremental
//! inserts through `&self` (so a graph keeps serving while vectors are appended), filtered
//! search with the filter applied during the traversal (not after), and a pluggable distance,
//! and generic over the element type, so the graph is over our own int8 codes with our own
//! distance ([`quant`]). It has no removal: tombstones and rebuilds cover that. Its cost:
//! each graph holds its own copy of the vectors (`hnsw_rs` points own their data); being the
//! int8 copy (`dim + 4` bytes per vector), a space above the threshold takes about 1.25 times
//! its raw `f32` size in memory (twice before the graph was quantized), links aside.
//! Parameters: `M` = [`HnswConfig::m`] (16; 32 in the bottom layer), `ef_construction` 128,
//! `ef_search` max(200, 2k), 4k candidates rescored exactly.

mod dot;
mod flat;
mod graph;
mod quant;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use documents::{ChunkId, DocumentId};
use kernel::TenantId;
use retrieval::{Candidate, IndexError, Space, SpaceId, VectorEntry, VectorIndex, VectorRows};
use tokio::sync::{OwnedRwLockReadGuard, RwLock, watch};

pub use crate::dot::dot;
use crate::flat::{Flat, Pos, Scored, TopK};
use crate::graph::Graph;

/// Tuning of [`HnswIndex`].
#[derive(Debug, Clone, PartialEq)]
pub struct HnswConfig {
    /// Spaces with fewer live vectors are searched exactly, without a graph (default 4096).
    pub exact_threshold: usize,
    /// HNSW `M`: links per vector in the upper layers, twice as many in the bottom one
    /// (default 16; at most 128).
    pub m: usize,
    /// Candidates explored when inserting into the graph (default 128).
    pub ef_construction: usize,
    /// Candidates explored by a search (default 200); a search of `k` explores at least `2k`.
    pub ef_search: usize,
    /// The graph (traversed with int8 copies of the vectors) returns `rerank · k` candidates,
    /// at most `ef`, which are rescored exactly to keep the best `k` (default 4; 1 keeps the
    /// graph's own `k`).
    pub rerank: usize,
    /// Share of tombstones that triggers a compacting rebuild (default 0.2).
    pub rebuild_ratio: f64,
    /// Rows per page when loading from the rows (default 1000).
    pub load_page: usize,
    /// Vectors copied out of the cache per lock hold while building (default 2048).
    pub build_batch: usize,
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self {
            exact_threshold: 4096,
            m: 16,
            ef_construction: 128,
            ef_search: 200,
            rerank: 4,
            rebuild_ratio: 0.2,
            load_page: 1000,
            build_batch: 2048,
        }
    }
}

impl HnswConfig {
    /// The same values brought into their ranges.
    fn sane(mut self) -> Self {
        self.m = self.m.clamp(4, 128);
        self.ef_construction = self.ef_construction.max(self.m);
        self.ef_search = self.ef_search.max(8);
        self.rerank = self.rerank.clamp(1, 64);
        self.rebuild_ratio = self.rebuild_ratio.clamp(0.01, 0.9);
        self.load_page = self.load_page.max(1);
        self.build_batch = self.build_batch.max(16);
        self
    }

    fn ef(&self, k: usize) -> usize {
        self.ef_search.max(2 * k)
    }

    /// Candidates asked of the graph for the best `k`.
    fn candidates(&self, k: usize) -> usize {
        k.saturating_mul(self.rerank).min(self.ef(k)).max(k)
    }
}

/// What the cache holds for one space ([`HnswIndex::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceStats {
    /// Live vectors.
    pub vectors: usize,
    /// Replaced or removed vectors still taking a position.
    pub tombstones: usize,
    /// Positions in the HNSW graph, when there is one.
    pub graph: Option<usize>,
    /// The greatest `seq` loaded from the rows.
    pub loaded: i64,
    /// Bytes of the flat `f32` vectors.
    pub vector_bytes: usize,
    /// Bytes of the graph's int8 copies of the vectors (`dim + 4` per position; 0 without a
    /// graph).
    pub graph_vector_bytes: usize,
}

/// One space's cache.
#[derive(Debug)]
struct State {
    flat: Flat,
    /// Every row with `seq <= loaded` is applied.
    loaded: i64,
    /// The graph over positions `0..graph.indexed()` of `flat`.
    graph: Option<Arc<Graph>>,
    /// Changes whenever `flat` is replaced: a build started on an older epoch is dropped.
    epoch: u64,
}

impl State {
    fn new(dim: usize) -> Self {
        Self {
            flat: Flat::new(dim),
            loaded: 0,
            graph: None,
            epoch: 0,
        }
    }

    fn reset(&mut self) {
        let epoch = self.epoch + 1;
        *self = Self::new(self.flat.dim());
        self.epoch = epoch;
    }
}

#[derive(Debug)]
struct Slot {
    dim: usize,
    state: Arc<RwLock<State>>,
    /// Serializes loads and local writes into `state` (never held by searches).
    sync: tokio::sync::Mutex<()>,
    /// A worker is running for this space.
    working: AtomicBool,
}

/// The embedded vector index (see the crate documentation).
pub struct HnswIndex {
    rows: Arc<dyn VectorRows>,
    config: Arc<HnswConfig>,
    /// Shared with [`HnswIndex::searching_with`]'s views.
    spaces: Arc<Mutex<HashMap<SpaceId, Arc<Slot>>>>,
    /// Running workers (for [`HnswIndex::settle`]).
    workers: Arc<watch::Sender<usize>>,
}

impl fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HnswIndex")
            .field("rows", &self.rows)
            .field("config", &self.config)
            .field("spaces", &self.spaces.lock().map(|s| s.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

impl HnswIndex {
    /// An index over `rows`, empty until its first search or write of each space.
    #[must_use]
    pub fn new(rows: Arc<dyn VectorRows>, config: HnswConfig) -> Self {
        Self {
            rows,
            config: Arc::new(config.sane()),
            spaces: Arc::new(Mutex::new(HashMap::new())),
            workers: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The same index (the same rows, cache and graphs, shared) searched with another
    /// `ef_search`: to measure what ef a space needs without building its graph again.
    #[must_use]
    pub fn searching_with(&self, ef_search: usize) -> Self {
        let config = HnswConfig {
            ef_search,
            ..(*self.config).clone()
        };
        Self {
            rows: self.rows.clone(),
            config: Arc::new(config.sane()),
            spaces: self.spaces.clone(),
            workers: self.workers.clone(),
        }
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Loads what the rows hold for `space` that the cache does not (a search does this
    /// first; call it at start-up to warm a space).
    ///
    /// # Errors
    /// When the rows cannot be read.
    pub async fn load(&self, space: &Space) -> Result<(), IndexError> {
        self.refresh(space).await.map(|_| ())
    }

    /// Forgets the cache of `space`: its next use reloads every row (for deletes made by
    /// other processes).
    pub async fn invalidate(&self, space: SpaceId) {
        let slot = self.lock_spaces().remove(&space);
        if let Some(slot) = slot {
            let _sync = slot.sync.lock().await;
            slot.state.write().await.reset();
        }
    }

    /// What the cache holds for `space` (`None`: nothing loaded).
    pub async fn stats(&self, space: SpaceId) -> Option<SpaceStats> {
        let slot = self.lock_spaces().get(&space).cloned()?;
        let st = slot.state.read().await;
        Some(SpaceStats {
            vectors: st.flat.live_count(),
            tombstones: st.flat.dead(),
            graph: st.graph.as_ref().map(|g| g.indexed()),
            loaded: st.loaded,
            vector_bytes: st.flat.vector_bytes(),
            graph_vector_bytes: st.graph.as_ref().map_or(0, |g| g.vector_bytes()),
        })
    }

    /// Waits until no background build or append is running (tests and benchmarks: after it,
    /// every space above the threshold is searched through its complete graph).
    pub async fn settle(&self) {
        let mut rx = self.workers.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn lock_spaces(&self) -> std::sync::MutexGuard<'_, HashMap<SpaceId, Arc<Slot>>> {
        self.spaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&self, space: &Space) -> Arc<Slot> {
        let dim = space.model.dimensions() as usize;
        self.lock_spaces()
            .entry(space.id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    dim,
                    state: Arc::new(RwLock::new(State::new(dim))),
                    sync: tokio::sync::Mutex::new(()),
                    working: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Brings the cache of `space` up to the rows' version.
    async fn refresh(&self, space: &Space) -> Result<Arc<Slot>, IndexError> {
        let slot = self.slot(space);
        let version = self.rows.version(space.id).await?;
        if slot.state.read().await.loaded == version {
            return Ok(slot);
        }
        let sync = slot.sync.lock().await;
        let loaded = slot.state.read().await.loaded;
        if version < loaded {
            tracing::info!(space = %space.id, version, loaded, "vector rows went back; reloading the space");
            slot.state.write().await.reset();
            self.load_after(&slot, space.id, 0, version).await?;
        } else if version > loaded {
            self.load_after(&slot, space.id, loaded, version).await?;
        }
        drop(sync);
        self.kick(&slot);
        Ok(slot)
    }

    /// Loads the rows after `after`, page by page (the caller holds `sync`).
    async fn load_after(
        &self,
        slot: &Slot,
        space: SpaceId,
        after: i64,
        version: i64,
    ) -> Result<(), IndexError> {
        let limit = self.config.load_page;
        let mut cursor = None;
        let mut newest = version;
        loop {
            let page = self.rows.load(space, after, cursor, limit).await?;
            let Some(last) = page.last() else { break };
            cursor = Some((last.seq, last.chunk_id));
            let full = page.len() >= limit;
            {
                let mut st = slot.state.write().await;
                for row in &page {
                    if row.vector.len() != slot.dim {
                        return Err(IndexError::Dimension {
                            expected: u32::try_from(slot.dim).unwrap_or(u32::MAX),
                            got: row.vector.len(),
                        });
                    }
                    newest = newest.max(row.seq);
                    st.flat
                        .put(row.chunk_id, row.document_id, row.seq, &row.vector);
                }
            }
            if !full {
                break;
            }
        }
        let mut st = slot.state.write().await;
        st.loaded = st.loaded.max(newest);
        Ok(())
    }

    /// Starts the space's worker unless it runs already (it re-checks before it stops).
    fn kick(&self, slot: &Arc<Slot>) {
        if slot.working.swap(true, Ordering::SeqCst) {
            return;
        }
        self.workers.send_modify(|n| *n += 1);
        let mut guard = WorkerGuard {
            slot: slot.clone(),
            workers: self.workers.clone(),
            done: false,
        };
        let config = self.config.clone();
        drop(tokio::task::spawn_blocking(move || {
            let slot = guard.slot.clone();
            loop {
                match plan(&slot, &config) {
                    Work::Nothing => {
                        slot.working.store(false, Ordering::SeqCst);
                        // A write may have come between the plan and the store above.
                        if matches!(plan(&slot, &config), Work::Nothing)
                            || slot.working.swap(true, Ordering::SeqCst)
                        {
                            break;
                        }
                    }
                    Work::Rebuild { epoch, graph } => rebuild(&slot, &config, epoch, graph),
                    Work::Append(graph) => append(&slot, &config, &graph),
                }
            }
            guard.done = true;
            drop(guard);
        }));
    }

    fn check_dim(space: &Space, got: usize) -> Result<(), IndexError> {
        let expected = space.model.dimensions();
        if got == expected as usize {
            Ok(())
        } else {
            Err(IndexError::Dimension { expected, got })
        }
    }
}

/// Marks the worker gone however it ends: normally (it cleared `working` itself before
/// deciding to stop), by a panic, or never run (a runtime shutting down drops the closure).
struct WorkerGuard {
    slot: Arc<Slot>,
    workers: Arc<watch::Sender<usize>>,
    done: bool,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if !self.done {
            if std::thread::panicking() {
                tracing::error!(
                    "the vector index worker panicked; its space is rebuilt at its next write"
                );
            }
            self.slot.working.store(false, Ordering::SeqCst);
        }
        self.workers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What a space's worker does next.
enum Work {
    Nothing,
    /// A compacted copy of the space, with a graph when `graph`.
    Rebuild {
        epoch: u64,
        graph: bool,
    },
    /// Append the positions past the graph's prefix to it.
    Append(Arc<Graph>),
}

fn plan(slot: &Slot, config: &HnswConfig) -> Work {
    let st = slot.state.blocking_read();
    let (len, dead, live) = (st.flat.len(), st.flat.dead(), st.flat.live_count());
    let too_dead = dead >= 64 && dead as f64 > config.rebuild_ratio * len as f64;
    if live < config.exact_threshold {
        return if too_dead {
            Work::Rebuild {
                epoch: st.epoch,
                graph: false,
            }
        } else {
            Work::Nothing
        };
    }
    match &st.graph {
        None => Work::Rebuild {
            epoch: st.epoch,
            graph: true,
        },
        Some(_) if too_dead => Work::Rebuild {
            epoch: st.epoch,
            graph: true,
        },
        Some(g) if g.indexed() < len => Work::Append(g.clone()),
        Some(_) => Work::Nothing,
    }
}

/// Builds a compacted copy of the space (and its graph) from short read-locked copies, then
/// swaps it in under one short write lock: searches keep using the current state meanwhile.
fn rebuild(slot: &Slot, config: &HnswConfig, epoch: u64, with_graph: bool) {
    let started = std::time::Instant::now();
    let expected = slot.state.blocking_read().flat.live_count();
    let graph = with_graph.then(|| {
        Graph::new(
            slot.dim,
            config.m,
            config.ef_construction,
            expected + expected / 4,
        )
    });
    let mut fresh = Flat::with_capacity(slot.dim, expected + expected / 16);
    let mut origin: Vec<Pos> = Vec::with_capacity(expected);
    let mut next = 0;
    loop {
        let from = fresh.len();
        {
            let st = slot.state.blocking_read();
            if st.epoch != epoch {
                return;
            }
            let end = (next + config.build_batch).min(st.flat.len());
            if next == end {
                break;
            }
            for p in next..end {
                if st.flat.is_live(p) {
                    fresh.put_from(&st.flat, p);
                    origin.push(p);
                }
            }
            next = end;
        }
        if let Some(g) = &graph {
            g.append(from, fresh.vectors_of(from, fresh.len()));
        }
    }
    let mut st = slot.state.blocking_write();
    if st.epoch != epoch {
        return;
    }
    // What changed since the copies: vectors removed or replaced, and vectors added.
    for (i, &p) in origin.iter().enumerate() {
        if !st.flat.is_live(p) {
            fresh.kill(i);
        }
    }
    for p in next..st.flat.len() {
        if st.flat.is_live(p) {
            fresh.put_from(&st.flat, p);
        }
    }
    tracing::debug!(
        vectors = fresh.live_count(),
        graph = with_graph,
        ms = started.elapsed().as_millis() as u64,
        "vector space rebuilt"
    );
    st.flat = fresh;
    st.graph = graph.map(Arc::new);
    st.epoch += 1;
}

/// Appends the positions past the graph's prefix, a batch per short read lock.
fn append(slot: &Slot, config: &HnswConfig, graph: &Arc<Graph>) {
    loop {
        let (from, batch) = {
            let st = slot.state.blocking_read();
            if !st.graph.as_ref().is_some_and(|g| Arc::ptr_eq(g, graph)) {
                return;
            }
            let from = graph.indexed();
            let end = (from + config.build_batch).min(st.flat.len());
            if from >= end {
                return;
            }
            (from, st.flat.vectors_of(from, end).to_vec())
        };
        graph.append(from, &batch);
    }
}

/// The search itself, over a consistent state.
fn search_state(
    st: &State,
    config: &HnswConfig,
    query: &[f32],
    k: usize,
    allow: Option<&[DocumentId]>,
) -> Vec<Scored> {
    let flat = &st.flat;
    let live = flat.live_count();
    let graph = st.graph.as_ref().filter(|_| live >= config.exact_threshold);
    match allow {
        Some(docs) => {
            let positions = flat.positions_of(docs);
            let Some(g) = graph else {
                return flat.exact_among(query, k, positions.iter().copied());
            };
            if positions.len() <= config.exact_threshold.max(live / 8) {
                return flat.exact_among(query, k, positions.iter().copied());
            }
            let m = g.indexed().min(flat.len());
            let mut allowed = vec![false; m];
            for &p in positions.iter().filter(|&&p| p < m) {
                allowed[p] = true;
            }
            let keep = |p: Pos| p < m && allowed[p];
            let found = g.search(query, config.candidates(k), config.ef(k), Some(&keep));
            let mut top = TopK::new(k);
            for p in found.into_iter().filter(|&p| keep(p) && flat.is_live(p)) {
                top.offer(flat.score(query, p));
            }
            for &p in positions.iter().filter(|&&p| p >= m) {
                top.offer(flat.score(query, p));
            }
            let found = top.into_sorted();
            if found.len() < k.min(positions.len()) {
                tracing::debug!(
                    got = found.len(),
                    k,
                    "filtered graph search came back short; exact"
                );
                return flat.exact_among(query, k, positions.iter().copied());
            }
            found
        }
        None => {
            let Some(g) = graph else {
                return flat.exact_range(query, k, 0, flat.len());
            };
            let m = g.indexed().min(flat.len());
            let (n, ef) = (config.candidates(k), config.ef(k));
            let found = if flat.dead() == 0 {
                g.search(query, n, ef, None)
            } else {
                let keep = |p: Pos| flat.is_live(p);
                g.search(query, n, ef, Some(&keep))
            };
            let mut top = TopK::new(k);
            for p in found.into_iter().filter(|&p| p < m && flat.is_live(p)) {
                top.offer(flat.score(query, p));
            }
            for s in flat.exact_range(query, k, m, flat.len()) {
                top.offer(s);
            }
            let found = top.into_sorted();
            if found.len() < k.min(live) {
                tracing::debug!(got = found.len(), k, "graph search came back short; exact");
                return flat.exact_range(query, k, 0, flat.len());
            }
            found
        }
    }
}

/// Searches costing more floats than this run on a blocking thread.
const INLINE_FLOATS: usize = 1 << 20;

#[async_trait]
impl VectorIndex for HnswIndex {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<(), IndexError> {
        for e in entries {
            Self::check_dim(space, e.vector.len())?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let seq = self.rows.upsert(space, entries).await?;
        let slot = self.slot(space);
        {
            let _sync = slot.sync.lock().await;
            let mut st = slot.state.write().await;
            for e in entries {
                st.flat.put(e.chunk_id, e.document_id, seq, &e.vector);
            }
        }
        self.kick(&slot);
        Ok(())
    }

    async fn search(
        &self,
        space: &Space,
        query: &[f32],
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        Self::check_dim(space, query.len())?;
        let slot = self.refresh(space).await?;
        if k == 0 || allow.is_some_and(<[DocumentId]>::is_empty) {
            return Ok(Vec::new());
        }
        let guard: OwnedRwLockReadGuard<State> = slot.state.clone().read_owned().await;
        let cost = guard.flat.len().saturating_mul(slot.dim);
        let found = if cost <= INLINE_FLOATS {
            search_state(&guard, &self.config, query, k, allow)
        } else {
            let config = self.config.clone();
            let query = query.to_vec();
            let allow = allow.map(<[DocumentId]>::to_vec);
            tokio::task::spawn_blocking(move || {
                search_state(&guard, &config, &query, k, allow.as_deref())
            })
            .await
            .map_err(|e| anyhow::anyhow!("the vector search task failed: {e}"))?
        };
        Ok(found.into_iter().map(Scored::candidate).collect())
    }

    async fn missing(&self, space: &Space, chunks: &[ChunkId]) -> Result<Vec<ChunkId>, IndexError> {
        self.rows.missing(space.id, chunks).await
    }

    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<(), IndexError> {
        let deleted = self.rows.retain(tenant, document, keep).await?;
        let mut by_space: HashMap<SpaceId, Vec<ChunkId>> = HashMap::new();
        for (space, chunk) in deleted {
            by_space.entry(space).or_default().push(chunk);
        }
        for (space, chunks) in by_space {
            let slot = self.lock_spaces().get(&space).cloned();
            let Some(slot) = slot else { continue };
            {
                let _sync = slot.sync.lock().await;
                let mut st = slot.state.write().await;
                for c in chunks {
                    st.flat.remove(c);
                }
            }
            self.kick(&slot);
        }
        Ok(())
    }

    async fn drop_space(&self, space: &Space) -> Result<(), IndexError> {
        self.rows.drop_space(space.id).await?;
        self.invalidate(space.id).await;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "hnsw"
    }
}

#[cfg(test)]
mod tests;
