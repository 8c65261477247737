//! The in-process keyword cache on SQLite (issue 16): postings built from the stored chunks,
//! searched in Rust with the SQL path's words, rule and arithmetic.
//!
//! # Truth and cache
//!
//! SQL stays the truth (`chunks`, FTS5 and `documents`' statistics, [`crate::keyword`]); this
//! process keeps, per **segment** (a tenant's chunks in one collection, or its chunks outside
//! any collection), each chunk's id, document and length (its `token_count`, as the SQL path
//! reads it from `chunk_fts_rows`) and each term's postings (chunk slot, term frequency), the
//! terms folded as FTS5 folds them ([`fold`]). A search over several collections (or over the
//! whole tenant: every segment of the tenant) combines its segments' postings; a chunk is in
//! one segment, so their document frequencies add up exactly.
//!
//! Freshness: migration `m20261207_000036_keyword_versions` keeps a row per segment (its live
//! chunk count and the sequence numbers of its last change, its creation and its last delete),
//! written by triggers on `chunks` in the transaction that writes or deletes them. Before each
//! search one statement reads the searched segments' rows and the scope's statistics (from
//! `documents`, as the SQL path reads them); the cache answers only when it holds every
//! segment at exactly the version read. Otherwise the search takes the SQL path and the stale
//! segments are loaded in the background (one load per segment at a time): so no search waits
//! for a load, and none sees a chunk deleted, or misses a chunk stored, before it began. The
//! version lives in the database, so this holds across processes too (a `quire worker`
//! deleting a document over the same file): the bound is the transaction's commit, not a
//! reload interval.
//!
//! A load reads the segment in one read transaction (one snapshot: the version row and the
//! chunks agree). When only chunks were added since the cached copy (same `since` and
//! `last_delete`), only the chunks of a higher `chunk_fts_rows` rowid are read (a new chunk's
//! rowid is above every live one's) and appended; after any delete the segment is read again
//! whole. Tokenizing runs on `spawn_blocking`, never on the async runtime.
//!
//! Only searches whose scope holds at least [`KeywordCacheConfig::min_chunks`] chunks use the
//! cache. The default is 0, every scope: a small scope's SQL path reads its matches' texts and
//! counts their words (~3 ms of a chat question over 20 documents), the cache one version
//! row (docs/benchmarks.md, "the first token, eighth pass"). With a threshold set, a scope
//! last seen small, by the cache's version read or by the statistics the SQL path reads
//! anyway, goes straight to the SQL path without the version read; the SQL path's own
//! statistics clear that hint as soon as the scope has grown, so the next search reads the
//! versions again. The hint can only send a search to the SQL path, which is always right.
//! Memory is bounded by [`KeywordCacheConfig::max_postings`]: the least recently used
//! segments are dropped past it; a segment larger than the whole budget is not cached (its
//! searches keep the SQL path).
//! Nothing is built before a scope's first search, so an idle server holds nothing.
//!
//! # Equal to the SQL path
//!
//! The same query words, the same kept-terms rule (`COMMON_SHARE`, `PRUNE_FROM_ROWS`), the
//! same statistics of the searched scope (`allow` filters postings after them), the same BM25
//! (each kept word's term summed in the words' order, in `f64`), the top k by score then chunk
//! id, then ranked by the `f32` score and chunk id as the SQL path ranks. A chunk's terms are
//! its runs of letters and digits, folded (the rule the SQL path's text counting uses); where
//! FTS5's tokenizer cuts a word differently from Rust's `char::is_alphanumeric` (rare scripts'
//! marks), the two paths can count that word differently.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use documents::{ChunkId, CollectionId, DocumentId};
use kernel::TenantId;
use retrieval::{Candidate, IndexError};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use uuid::Uuid;

use crate::keyword::{Bm25, ScopeStats, fold, fold_into, idf, prune_cap, sort_best_first};

/// Tuning of the keyword cache ([`crate::SqlStore::with_keyword_cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordCacheConfig {
    /// Searches of scopes with fewer chunks keep the SQL path (default 0: none do).
    pub min_chunks: i64,
    /// Postings held in all, across segments; the least recently used segments are dropped
    /// past it (default 24,000,000: about 150 MB; a posting takes 6 bytes).
    pub max_postings: usize,
    /// Chunks read per statement while loading (default 2000).
    pub load_page: u64,
    /// Tests: a search whose segments are stale loads them and waits, so the cache answers.
    pub load_inline: bool,
}

impl Default for KeywordCacheConfig {
    fn default() -> Self {
        Self {
            min_chunks: 0,
            max_postings: 24_000_000,
            load_page: 2000,
            load_inline: false,
        }
    }
}

/// What the cache holds ([`crate::SqlStore::keyword_cache_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeywordCacheStats {
    /// Segments held.
    pub segments: usize,
    /// Their chunks.
    pub chunks: usize,
    /// Their postings.
    pub postings: usize,
    /// Their distinct terms (summed over segments).
    pub terms: usize,
    /// Bytes held, estimated from the lengths of what is stored (allocator overhead aside).
    pub bytes: usize,
    /// Searches the cache answered.
    pub hits: u64,
    /// Segment loads completed (whole or added chunks only).
    pub loads: u64,
    /// Segment loads that read only the chunks added.
    pub delta_loads: u64,
    /// Searches that read their scope's versions (the others skipped the cache: a scope
    /// known to be small).
    pub scope_reads: u64,
}

/// A segment: a tenant's chunks in one collection (`None`: outside any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    tenant: Uuid,
    collection: Option<Uuid>,
}

impl Key {
    /// `keyword_versions.collection_key`: the collection's id, or the empty blob.
    fn collection_key(&self) -> Vec<u8> {
        self.collection
            .map(|c| c.as_bytes().to_vec())
            .unwrap_or_default()
    }
}

/// A segment's row of `keyword_versions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    chunks: i64,
    version: i64,
    since: i64,
    last_delete: i64,
}

/// One term's postings, in slot order (slots are given in load order, and appended).
#[derive(Debug, Clone, Default)]
struct Postings {
    slots: Vec<u32>,
    tfs: Vec<u16>,
}

/// One segment's postings and chunks, at one version.
#[derive(Debug, Clone, Default)]
struct Segment {
    version: Option<Version>,
    /// The highest `chunk_fts_rows` rowid read (chunks added later have higher ones).
    max_rowid: i64,
    chunk_ids: Vec<Uuid>,
    /// Per slot: its document's index in `documents`.
    chunk_documents: Vec<u32>,
    lengths: Vec<i64>,
    documents: Vec<Uuid>,
    document_index: HashMap<Uuid, u32>,
    terms: HashMap<Box<str>, Postings>,
    postings: usize,
}

/// A stored chunk as a load reads it.
struct Row {
    rowid: i64,
    chunk_id: Uuid,
    document_id: Uuid,
    length: i64,
    text: String,
}

impl Segment {
    fn bytes(&self) -> usize {
        let terms: usize = self
            .terms
            .keys()
            .map(|t| t.len() + std::mem::size_of::<(Box<str>, Postings)>() + 8)
            .sum();
        self.postings * 6
            + terms
            + self.chunk_ids.len() * (16 + 4 + 8)
            + self.documents.len() * (16 + 16 + 4 + 8)
    }

    /// Adds `rows` (new chunks) with their terms. Fails on a term frequency above `u16`.
    fn add(&mut self, rows: Vec<Row>) -> anyhow::Result<()> {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut folded = String::new();
        for row in rows {
            let slot = u32::try_from(self.chunk_ids.len()).context("a segment's slot")?;
            let next = u32::try_from(self.documents.len()).context("a segment's documents")?;
            let document = *self.document_index.entry(row.document_id).or_insert(next);
            if document == next {
                self.documents.push(row.document_id);
            }
            self.chunk_ids.push(row.chunk_id);
            self.chunk_documents.push(document);
            self.lengths.push(row.length);
            self.max_rowid = self.max_rowid.max(row.rowid);
            counts.clear();
            for run in row.text.split(|c: char| !c.is_alphanumeric()) {
                if run.is_empty() {
                    continue;
                }
                folded.clear();
                if run.is_ascii() {
                    folded.extend(run.chars().map(|c| c.to_ascii_lowercase()));
                } else {
                    fold_into(run, &mut folded);
                }
                if let Some(n) = counts.get_mut(folded.as_str()) {
                    *n = n.saturating_add(1);
                } else {
                    counts.insert(folded.clone(), 1);
                }
            }
            for (term, tf) in counts.drain() {
                let tf = u16::try_from(tf).context("a term frequency above 65535")?;
                if let Some(postings) = self.terms.get_mut(term.as_str()) {
                    postings.slots.push(slot);
                    postings.tfs.push(tf);
                } else {
                    self.terms.insert(
                        term.into_boxed_str(),
                        Postings {
                            slots: vec![slot],
                            tfs: vec![tf],
                        },
                    );
                }
                self.postings += 1;
            }
        }
        Ok(())
    }

    fn shrink(&mut self) {
        for p in self.terms.values_mut() {
            p.slots.shrink_to_fit();
            p.tfs.shrink_to_fit();
        }
        self.chunk_ids.shrink_to_fit();
        self.chunk_documents.shrink_to_fit();
        self.lengths.shrink_to_fit();
        self.documents.shrink_to_fit();
    }

    fn df(&self, term: &str) -> i64 {
        self.terms
            .get(term)
            .map_or(0, |p| i64::try_from(p.slots.len()).unwrap_or(i64::MAX))
    }
}

/// A scored chunk in the top-k heap: the greatest is the worst (lower score, then higher id).
#[derive(Debug, Clone, Copy)]
struct Hit {
    score: f64,
    chunk: Uuid,
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.chunk.cmp(&other.chunk))
    }
}

#[derive(Debug)]
struct Cached {
    segment: Arc<Segment>,
    used: u64,
}

#[derive(Debug, Default)]
struct State {
    segments: HashMap<Key, Cached>,
    /// Segments being loaded (one load each at a time).
    loading: HashSet<Key>,
    /// Segments not cached at this version (too large, or their load failed).
    refused: HashMap<Key, i64>,
    /// Scopes last seen with fewer than `min_chunks` chunks (at most [`SMALL_SCOPES`]).
    small: HashSet<ScopeKey>,
    tick: u64,
    postings: usize,
}

/// The cache (one per [`crate::SqlStore`] and its clones).
#[derive(Debug)]
pub(crate) struct KeywordCache {
    config: KeywordCacheConfig,
    state: Mutex<State>,
    hits: AtomicU64,
    loads: AtomicU64,
    delta_loads: AtomicU64,
    scope_reads: AtomicU64,
}

/// Small scopes remembered at most; past it the set starts again (each forgotten scope costs
/// one version read, once).
const SMALL_SCOPES: usize = 16_384;

/// A searched scope: the tenant and its collections, sorted (`None`: the whole tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    tenant: Uuid,
    collections: Option<Vec<Uuid>>,
}

impl ScopeKey {
    fn new(tenant: TenantId, collections: Option<&[CollectionId]>) -> Self {
        Self {
            tenant: tenant.as_uuid(),
            collections: collections.map(|c| {
                let mut ids: Vec<Uuid> = c.iter().map(|c| c.as_uuid()).collect();
                ids.sort_unstable();
                ids
            }),
        }
    }
}

/// What a search read before deciding: the searched segments' versions and the statistics.
struct Scope {
    versions: Vec<(Key, Version)>,
    stats: ScopeStats,
}

impl KeywordCache {
    pub(crate) fn new(config: KeywordCacheConfig) -> Self {
        let mut config = config;
        config.load_page = config.load_page.max(1);
        Self {
            config,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            delta_loads: AtomicU64::new(0),
            scope_reads: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> KeywordCacheStats {
        let state = self.state();
        let mut stats = KeywordCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            delta_loads: self.delta_loads.load(Ordering::Relaxed),
            scope_reads: self.scope_reads.load(Ordering::Relaxed),
            ..KeywordCacheStats::default()
        };
        for cached in state.segments.values() {
            let s = &cached.segment;
            stats.segments += 1;
            stats.chunks += s.chunk_ids.len();
            stats.postings += s.postings;
            stats.terms += s.terms.len();
            stats.bytes += s.bytes();
        }
        stats
    }

    /// What the SQL path read of a scope's size (its chunks): a small scope's next searches
    /// skip the cache's version read; a large one's read it again.
    pub(crate) fn note_scope(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        chunks: i64,
    ) {
        if let Some(key) = self.hint_key(tenant, collections) {
            self.remember_size(key, chunks);
        }
    }

    /// The key a scope's size is remembered under; `None` when no scope can be small
    /// (`min_chunks` 0, the default), so that a search builds no key and takes no lock for it.
    fn hint_key(&self, tenant: TenantId, collections: Option<&[CollectionId]>) -> Option<ScopeKey> {
        (self.config.min_chunks > 0).then(|| ScopeKey::new(tenant, collections))
    }

    fn remember_size(&self, key: ScopeKey, chunks: i64) {
        let mut state = self.state();
        if chunks >= self.config.min_chunks {
            state.small.remove(&key);
        } else if !state.small.contains(&key) {
            if state.small.len() >= SMALL_SCOPES {
                state.small.clear();
            }
            state.small.insert(key);
        }
    }

    /// Whether a load is under way.
    pub(crate) fn loading(&self) -> bool {
        !self.state().loading.is_empty()
    }

    /// The search of `words` in the scope from the cache, or `None` when the SQL path must
    /// answer (a small scope, or a segment not cached at the version read).
    pub(crate) async fn search(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Option<Vec<Candidate>>, IndexError> {
        let key = self.hint_key(tenant, collections);
        if let Some(key) = &key
            && self.state().small.contains(key)
        {
            return Ok(None);
        }
        self.scope_reads.fetch_add(1, Ordering::Relaxed);
        let scope = read_scope(db, tenant, collections).await?;
        let total: i64 = scope.versions.iter().map(|(_, v)| v.chunks).sum();
        if let Some(key) = key
            && total < self.config.min_chunks
        {
            self.remember_size(key, total);
            return Ok(None);
        }
        let segments = match self.fresh(&scope) {
            Ok(segments) => segments,
            Err(stale) => {
                if self.config.load_inline {
                    for (key, version) in stale {
                        self.load_now(db, key, version).await;
                    }
                    match self.fresh(&scope) {
                        Ok(segments) => segments,
                        Err(_) => return Ok(None),
                    }
                } else {
                    for (key, version) in stale {
                        self.schedule(db, key, version);
                    }
                    return Ok(None);
                }
            }
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        Ok(Some(search_segments(
            &segments,
            words,
            scope.stats,
            k,
            allow,
        )))
    }

    /// The cached segments of `scope` when every one is at the version read; else the stale
    /// ones (not being loaded, not refused at that version).
    fn fresh(&self, scope: &Scope) -> Result<Vec<Arc<Segment>>, Vec<(Key, Version)>> {
        let mut state = self.state();
        state.tick += 1;
        let tick = state.tick;
        let mut found = Vec::with_capacity(scope.versions.len());
        let mut stale = Vec::new();
        let mut missing = false;
        for (key, version) in &scope.versions {
            match state.segments.get_mut(key) {
                Some(cached) if cached.segment.version == Some(*version) => {
                    cached.used = tick;
                    found.push(cached.segment.clone());
                }
                _ => {
                    missing = true;
                    if !state.loading.contains(key)
                        && state.refused.get(key) != Some(&version.version)
                    {
                        stale.push((*key, *version));
                    }
                }
            }
        }
        if missing { Err(stale) } else { Ok(found) }
    }

    /// Loads `key` in the background (a tokio task; tokenizing on `spawn_blocking`).
    fn schedule(self: &Arc<Self>, db: &DatabaseConnection, key: Key, version: Version) {
        if !self.state().loading.insert(key) {
            return;
        }
        let cache = Arc::clone(self);
        let db = db.clone();
        tokio::spawn(async move {
            let result = cache.load(&db, key).await;
            cache.finish(key, version, result);
        });
    }

    /// Loads `key` and waits ([`KeywordCacheConfig::load_inline`]).
    async fn load_now(self: &Arc<Self>, db: &DatabaseConnection, key: Key, version: Version) {
        if !self.state().loading.insert(key) {
            return;
        }
        let result = self.load(db, key).await;
        self.finish(key, version, result);
    }

    fn finish(&self, key: Key, seen: Version, result: anyhow::Result<Option<Segment>>) {
        let mut state = self.state();
        state.loading.remove(&key);
        match result {
            Ok(Some(segment)) if segment.postings > self.config.max_postings => {
                if let Some(v) = segment.version {
                    state.refused.insert(key, v.version);
                }
                if let Some(old) = state.segments.remove(&key) {
                    state.postings -= old.segment.postings;
                }
                tracing::info!(
                    postings = segment.postings,
                    max = self.config.max_postings,
                    "a keyword scope is larger than the cache: searched in SQL"
                );
            }
            Ok(Some(segment)) => {
                state.refused.remove(&key);
                state.tick += 1;
                let used = state.tick;
                let postings = segment.postings;
                if let Some(old) = state.segments.insert(
                    key,
                    Cached {
                        segment: Arc::new(segment),
                        used,
                    },
                ) {
                    state.postings -= old.segment.postings;
                }
                state.postings += postings;
                // Least recently used first, never the segment just loaded.
                while state.postings > self.config.max_postings {
                    let Some(oldest) = state
                        .segments
                        .iter()
                        .filter(|(k, _)| **k != key)
                        .min_by_key(|(_, c)| c.used)
                        .map(|(k, _)| *k)
                    else {
                        break;
                    };
                    if let Some(old) = state.segments.remove(&oldest) {
                        state.postings -= old.segment.postings;
                    }
                }
            }
            Ok(None) => {
                if let Some(old) = state.segments.remove(&key) {
                    state.postings -= old.segment.postings;
                }
            }
            Err(e) => {
                state.refused.insert(key, seen.version);
                tracing::warn!(error = %format!("{e:#}"), "loading a keyword scope failed: searched in SQL");
            }
        }
    }

    /// Reads segment `key` at the database's current version: only the chunks added when
    /// the cached copy allows it, else whole. `None`: the segment holds no chunk.
    async fn load(&self, db: &DatabaseConnection, key: Key) -> anyhow::Result<Option<Segment>> {
        // The cached copy is stale (or this is the first load): taken out, so that adding
        // to it needs no copy when no search holds it.
        let old = {
            let mut state = self.state();
            let old = state.segments.remove(&key);
            if let Some(old) = &old {
                state.postings -= old.segment.postings;
            }
            old.map(|c| c.segment)
        };
        let tx = db.begin().await.context("beginning a keyword load")?;
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT chunks, version, since, last_delete FROM keyword_versions \
                 WHERE tenant_id = ? AND collection_key = ?",
                [key.tenant.into(), Value::from(key.collection_key())],
            ))
            .await
            .context("reading a keyword scope's version")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version = Version {
            chunks: row.try_get("", "chunks").context("reading chunks")?,
            version: row.try_get("", "version").context("reading version")?,
            since: row.try_get("", "since").context("reading since")?,
            last_delete: row
                .try_get("", "last_delete")
                .context("reading last_delete")?,
        };
        let added_only = old.filter(|old| {
            old.version
                .is_some_and(|v| v.since == version.since && v.last_delete == version.last_delete)
        });
        if let Some(old) = added_only {
            let mut segment = Arc::try_unwrap(old).unwrap_or_else(|shared| (*shared).clone());
            self.read_pages(&tx, key, &mut segment, true).await?;
            if i64::try_from(segment.chunk_ids.len()).ok() == Some(version.chunks) {
                segment.version = Some(version);
                segment.shrink();
                self.loads.fetch_add(1, Ordering::Relaxed);
                self.delta_loads.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(segment));
            }
        }
        let mut segment = Segment::default();
        self.read_pages(&tx, key, &mut segment, false).await?;
        anyhow::ensure!(
            i64::try_from(segment.chunk_ids.len()).ok() == Some(version.chunks),
            "a keyword scope's chunks ({}) differ from its count ({})",
            segment.chunk_ids.len(),
            version.chunks
        );
        segment.version = Some(version);
        segment.shrink();
        self.loads.fetch_add(1, Ordering::Relaxed);
        Ok(Some(segment))
    }

    /// Reads the segment's chunks page by page into `segment`: with `added`, those of a
    /// rowid above `segment.max_rowid` (driven by `chunk_fts_rows`' rowid), else all of them
    /// (driven by `ix_chunks_scope`, in id order).
    async fn read_pages(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        key: Key,
        segment: &mut Segment,
        added: bool,
    ) -> anyhow::Result<()> {
        let limit = i64::try_from(self.config.load_page).unwrap_or(i64::MAX);
        let mut after_rowid = segment.max_rowid;
        let mut after_id: Vec<u8> = Vec::new();
        loop {
            let (sql, values): (&str, Vec<Value>) = if added {
                (
                    "SELECT r.rowid AS rid, c.id AS id, c.document_id AS document_id, \
                            r.length AS length, c.text AS text \
                     FROM chunk_fts_rows AS r CROSS JOIN chunks AS c ON c.id = r.chunk_id \
                     WHERE r.rowid > ? AND c.tenant_id = ? AND c.collection_id IS ? \
                     ORDER BY r.rowid LIMIT ?",
                    vec![
                        after_rowid.into(),
                        key.tenant.into(),
                        key.collection.into(),
                        limit.into(),
                    ],
                )
            } else {
                (
                    "SELECT r.rowid AS rid, c.id AS id, c.document_id AS document_id, \
                            r.length AS length, c.text AS text \
                     FROM chunks AS c CROSS JOIN chunk_fts_rows AS r ON r.chunk_id = c.id \
                     WHERE c.tenant_id = ? AND c.collection_id IS ? AND c.id > ? \
                     ORDER BY c.id LIMIT ?",
                    vec![
                        key.tenant.into(),
                        key.collection.into(),
                        Value::from(after_id.clone()),
                        limit.into(),
                    ],
                )
            };
            let rows = tx
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    sql,
                    values,
                ))
                .await
                .context("reading a keyword scope's chunks")?;
            let n = rows.len();
            let mut page = Vec::with_capacity(n);
            for row in rows {
                page.push(Row {
                    rowid: row.try_get("", "rid").context("reading a rowid")?,
                    chunk_id: row.try_get("", "id").context("reading a chunk id")?,
                    document_id: row
                        .try_get("", "document_id")
                        .context("reading a document id")?,
                    length: row.try_get("", "length").context("reading a length")?,
                    text: row.try_get("", "text").context("reading a chunk text")?,
                });
            }
            if let Some(last) = page.last() {
                after_rowid = last.rowid;
                after_id = last.chunk_id.as_bytes().to_vec();
            }
            let mut taken = std::mem::take(segment);
            *segment = tokio::task::spawn_blocking(move || taken.add(page).map(|()| taken))
                .await
                .context("tokenizing a keyword scope")??;
            if i64::try_from(n).unwrap_or(i64::MAX) < limit {
                return Ok(());
            }
        }
    }
}

/// The searched segments' versions and the scope's statistics, in one statement (one
/// snapshot).
async fn read_scope(
    db: &DatabaseConnection,
    tenant: TenantId,
    collections: Option<&[CollectionId]>,
) -> Result<Scope, IndexError> {
    let tenant_id = tenant.as_uuid();
    let (versions_scope, documents_scope) = match collections {
        Some(c) => {
            let marks = vec!["?"; c.len()].join(", ");
            (
                format!(" AND collection_key IN ({marks})"),
                format!(" AND collection_id IN ({marks})"),
            )
        }
        None => (String::new(), String::new()),
    };
    let sql = format!(
        "SELECT collection_key AS k, chunks AS a, version AS b, since AS c, last_delete AS d \
         FROM keyword_versions WHERE tenant_id = ?{versions_scope} \
         UNION ALL \
         SELECT NULL, CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT), \
                CAST(COALESCE(SUM(token_count), 0) AS BIGINT), 0, 0 \
         FROM documents WHERE tenant_id = ?{documents_scope}"
    );
    let mut values: Vec<Value> = Vec::new();
    for _ in 0..2 {
        values.push(tenant_id.into());
        if let Some(c) = collections {
            values.extend(c.iter().map(|c| Value::from(c.as_uuid())));
        }
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await
        .context("reading the keyword scope's versions")?;
    let mut scope = Scope {
        versions: Vec::with_capacity(rows.len()),
        stats: ScopeStats {
            chunks: 0,
            tokens: 0,
        },
    };
    for row in rows {
        let key: Option<Vec<u8>> = row.try_get("", "k").context("reading a scope key")?;
        let a: i64 = row.try_get("", "a").context("reading a count")?;
        let b: i64 = row.try_get("", "b").context("reading a version")?;
        match key {
            None => {
                scope.stats = ScopeStats {
                    chunks: a,
                    tokens: b,
                }
            }
            Some(key) => {
                let collection = if key.is_empty() {
                    None
                } else {
                    Some(Uuid::from_slice(&key).context("reading a collection key")?)
                };
                scope.versions.push((
                    Key {
                        tenant: tenant_id,
                        collection,
                    },
                    Version {
                        chunks: a,
                        version: b,
                        since: row.try_get("", "c").context("reading since")?,
                        last_delete: row.try_get("", "d").context("reading last_delete")?,
                    },
                ));
            }
        }
    }
    Ok(scope)
}

/// The SQL path's search over cached segments (see the module doc).
fn search_segments(
    segments: &[Arc<Segment>],
    words: &[String],
    stats: ScopeStats,
    k: usize,
    allow: Option<&[DocumentId]>,
) -> Vec<Candidate> {
    let folded: Vec<String> = words.iter().map(|w| fold(w)).collect();
    let df: Vec<i64> = folded
        .iter()
        .map(|t| segments.iter().map(|s| s.df(t)).sum())
        .collect();
    // The kept-terms rule of `SqlStore::kept_terms`, on exact counts.
    let cap = prune_cap(stats, words.len() >= 2);
    let mut kept: Vec<usize> = (0..words.len())
        .filter(|i| cap.is_none_or(|cap| df[*i] < cap))
        .collect();
    if kept.is_empty() {
        kept = (0..words.len())
            .min_by(|a, b| df[*a].cmp(&df[*b]).then_with(|| words[*a].cmp(&words[*b])))
            .into_iter()
            .collect();
    }
    kept.retain(|i| df[*i] > 0);
    if kept.is_empty() {
        return Vec::new();
    }
    let bm25 = Bm25::from(stats);
    #[allow(clippy::cast_precision_loss)]
    let idfs: Vec<f64> = kept.iter().map(|i| idf(bm25.n, df[*i] as f64)).collect();
    let allowed: Option<HashSet<Uuid>> = allow.map(|a| a.iter().map(DocumentId::as_uuid).collect());
    let mut heap: BinaryHeap<Hit> = BinaryHeap::with_capacity(k + 1);
    for segment in segments {
        let lists: Vec<Option<&Postings>> = kept
            .iter()
            .map(|i| segment.terms.get(folded[*i].as_str()))
            .collect();
        let documents: Option<Vec<bool>> = allowed.as_ref().map(|allowed| {
            segment
                .documents
                .iter()
                .map(|d| allowed.contains(d))
                .collect()
        });
        let mut at = vec![0_usize; lists.len()];
        // The lowest slot at the heads of the lists (each in slot order), one at a time.
        while let Some(slot) = lists
            .iter()
            .zip(&at)
            .filter_map(|(l, i)| l.and_then(|l| l.slots.get(*i).copied()))
            .min()
        {
            let s = slot as usize;
            #[allow(clippy::cast_precision_loss)]
            let norm = 1.2 * (0.25 + 0.75 * segment.lengths[s].max(1) as f64 / bm25.average);
            let mut score = 0.0_f64;
            for ((list, i), idf) in lists.iter().zip(at.iter_mut()).zip(&idfs) {
                if let Some(list) = list
                    && list.slots.get(*i) == Some(&slot)
                {
                    let t = f64::from(list.tfs[*i]);
                    score += idf * t * 2.2 / (t + norm);
                    *i += 1;
                }
            }
            if documents
                .as_ref()
                .is_some_and(|d| !d[segment.chunk_documents[s] as usize])
            {
                continue;
            }
            let hit = Hit {
                score,
                chunk: segment.chunk_ids[s],
            };
            if heap.len() < k {
                heap.push(hit);
            } else if heap.peek().is_some_and(|worst| hit < *worst) {
                heap.pop();
                heap.push(hit);
            }
        }
    }
    let mut found: Vec<Candidate> = heap
        .into_sorted_vec()
        .into_iter()
        .map(|h| {
            #[allow(clippy::cast_possible_truncation)]
            Candidate {
                chunk_id: ChunkId::from_uuid(h.chunk),
                score: h.score as f32,
            }
        })
        .collect();
    sort_best_first(&mut found);
    found
}
