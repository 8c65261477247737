//! The storage ports of retrieval in memory, with the semantics of `store-sql` (the
//! reference), checked by the same contract suite (`testkit::contract::retrieval`):
//!
//! - [`InMemorySpaces`] ([`SpaceRepository`]) and [`InMemoryVectorRows`] ([`VectorRows`])
//!   share one table of spaces and their vector rows under one lock, so an upsert bumps its
//!   space's version and writes its rows in one critical section, as SQL does in one
//!   transaction. They follow an [`InMemoryDocuments`] the way SQL's foreign keys follow
//!   `collections` and `documents`: a space of a deleted collection, and the rows of a deleted
//!   document, are gone at the next call (what `ON DELETE CASCADE` does at once on SQL).
//!   Deleting an organization is [`InMemorySpaces::remove_tenant`].
//! - [`KeywordIndex`] and [`ChunkCatalog`] are implemented by [`InMemoryDocuments`] itself,
//!   over its chunks and documents: BM25 with the SQL adapter's word rules ([`query_words`]),
//!   k1 = 1.2, b = 0.75, idf = ln(1 + (N − df + 0.5) / (df + 0.5)), statistics over the
//!   searched scope and the chunk's token count as its length (as on PostgreSQL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use documents::{ChunkId, CollectionId, DocumentId};
use kernel::TenantId;
use retrieval::{
    Candidate, ChunkCatalog, ChunkRecord, ChunkText, EmbeddingModel, IndexError, KeywordIndex,
    MetadataFilter, Space, SpaceId, SpaceRepository, SpaceStatus, VectorEntry, VectorRow,
    VectorRows, query_words,
};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::InMemoryDocuments;

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Every word of `text`, lowercase, in order.
fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// `t` in UTC, truncated to microseconds, as SQL keeps times.
fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    kernel::clock::truncate_to_micros(t.to_offset(UtcOffset::UTC))
}

fn unknown(what: impl std::fmt::Display) -> IndexError {
    IndexError::Unknown(anyhow::anyhow!("{what}"))
}

fn store_error(e: documents::StoreError) -> IndexError {
    IndexError::Unknown(anyhow::Error::new(e))
}

/// A space and what SQL keeps beside it.
#[derive(Debug, Clone)]
struct SpaceRow {
    space: Space,
    lease_token: Option<Uuid>,
    lease_until: Option<OffsetDateTime>,
    /// The greatest `seq` given to its rows.
    version: i64,
}

impl SpaceRow {
    fn is_live(&self) -> bool {
        self.space.status != SpaceStatus::Retired
    }

    fn same_scope(&self, tenant: TenantId, collection: Option<CollectionId>) -> bool {
        self.space.tenant_id == tenant && self.space.collection_id == collection
    }
}

#[derive(Debug, Clone)]
struct StoredVector {
    tenant: TenantId,
    document: DocumentId,
    seq: i64,
    vector: Vec<f32>,
}

#[derive(Debug, Default)]
struct Tables {
    spaces: BTreeMap<SpaceId, SpaceRow>,
    /// Keyed (space, chunk): the primary key on SQL.
    rows: BTreeMap<(SpaceId, ChunkId), StoredVector>,
}

impl Tables {
    /// Drops what SQL's foreign keys would have deleted: spaces of deleted collections, rows
    /// of deleted spaces or documents.
    fn cascade(&mut self, documents: &InMemoryDocuments) -> Result<(), IndexError> {
        let mut gone_spaces = Vec::new();
        for (id, row) in &self.spaces {
            if let Some(c) = row.space.collection_id
                && documents
                    .collection(row.space.tenant_id, c)
                    .map_err(store_error)?
                    .is_none()
            {
                gone_spaces.push(*id);
            }
        }
        for id in gone_spaces {
            self.spaces.remove(&id);
        }
        let mut alive: HashMap<(TenantId, DocumentId), bool> = HashMap::new();
        let mut gone_rows = Vec::new();
        for (key, row) in &self.rows {
            let document_alive = match alive.get(&(row.tenant, row.document)) {
                Some(a) => *a,
                None => {
                    let a = documents
                        .has_document(row.tenant, row.document)
                        .map_err(store_error)?;
                    alive.insert((row.tenant, row.document), a);
                    a
                }
            };
            if !document_alive || !self.spaces.contains_key(&key.0) {
                gone_rows.push(*key);
            }
        }
        for key in gone_rows {
            self.rows.remove(&key);
        }
        Ok(())
    }

    fn live_with_model(&self, space: &Space) -> Option<&SpaceRow> {
        let mut found: Vec<&SpaceRow> = self
            .spaces
            .values()
            .filter(|r| {
                r.is_live()
                    && r.same_scope(space.tenant_id, space.collection_id)
                    && r.space.model == space.model
            })
            .collect();
        // The active one first, as on SQL.
        found.sort_by_key(|r| r.space.status != SpaceStatus::Active);
        found.first().copied()
    }
}

/// Embedding spaces of every tenant, in a map under one lock shared with their
/// [`InMemoryVectorRows`].
#[derive(Debug, Clone)]
pub struct InMemorySpaces {
    tables: Arc<Mutex<Tables>>,
    documents: Arc<InMemoryDocuments>,
}

impl InMemorySpaces {
    /// No spaces, following the collections and documents of `documents`.
    #[must_use]
    pub fn new(documents: Arc<InMemoryDocuments>) -> Self {
        Self {
            tables: Arc::new(Mutex::new(Tables::default())),
            documents,
        }
    }

    /// The vector rows of these spaces.
    #[must_use]
    pub fn vector_rows(&self) -> InMemoryVectorRows {
        InMemoryVectorRows {
            spaces: self.clone(),
        }
    }

    /// Removes every space (and vector row) of `tenant`: what deleting an organization does on
    /// SQL through its cascading foreign keys.
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn remove_tenant(&self, tenant: TenantId) -> Result<(), IndexError> {
        let mut t = self.raw_lock()?;
        t.spaces.retain(|_, r| r.space.tenant_id != tenant);
        t.rows.retain(|_, r| r.tenant != tenant);
        Ok(())
    }

    fn raw_lock(&self) -> Result<MutexGuard<'_, Tables>, IndexError> {
        self.tables
            .lock()
            .map_err(|_| unknown("in-memory spaces: lock poisoned"))
    }

    /// The tables, after the cascades of deleted collections and documents.
    fn lock(&self) -> Result<MutexGuard<'_, Tables>, IndexError> {
        let mut t = self.raw_lock()?;
        t.cascade(&self.documents)?;
        Ok(t)
    }
}

#[async_trait]
impl SpaceRepository for InMemorySpaces {
    async fn list(
        &self,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
    ) -> Result<Vec<Space>, IndexError> {
        let t = self.lock()?;
        Ok(t.spaces
            .values()
            .filter(|r| {
                r.is_live()
                    && r.space.tenant_id == tenant
                    && scopes.is_none_or(|s| s.contains(&r.space.collection_id))
            })
            .map(|r| r.space.clone())
            .collect())
    }

    async fn ensure(&self, space: Space) -> Result<Space, IndexError> {
        if space.status == SpaceStatus::Retired {
            return Err(unknown(
                "a space is created building or active, not retired",
            ));
        }
        let space = Space {
            created_at: utc_micros(space.created_at),
            ..space
        };
        let mut t = self.lock()?;
        if let Some(found) = t.live_with_model(&space) {
            return Ok(found.space.clone());
        }
        // What the foreign key refuses on SQL.
        if let Some(c) = space.collection_id
            && self
                .documents
                .collection(space.tenant_id, c)
                .map_err(store_error)?
                .is_none()
        {
            return Err(unknown("storing a space: no such collection"));
        }
        if t.spaces.contains_key(&space.id) {
            return Err(unknown("storing a space: the id is taken"));
        }
        let (tenant, collection) = (space.tenant_id, space.collection_id);
        if space.status == SpaceStatus::Active {
            if let Some(active) = t
                .spaces
                .values()
                .find(|r| r.same_scope(tenant, collection) && r.space.status == SpaceStatus::Active)
            {
                return Ok(active.space.clone());
            }
        } else {
            for r in t.spaces.values_mut().filter(|r| {
                r.same_scope(tenant, collection) && r.space.status == SpaceStatus::Building
            }) {
                r.space.status = SpaceStatus::Retired;
                r.lease_token = None;
                r.lease_until = None;
            }
        }
        t.spaces.insert(
            space.id,
            SpaceRow {
                space: space.clone(),
                lease_token: None,
                lease_until: None,
                version: 0,
            },
        );
        Ok(space)
    }

    async fn activate(&self, id: SpaceId) -> Result<bool, IndexError> {
        let mut t = self.lock()?;
        let Some(row) = t.spaces.get(&id) else {
            return Ok(false);
        };
        if row.space.status != SpaceStatus::Building {
            return Ok(false);
        }
        let (tenant, collection) = (row.space.tenant_id, row.space.collection_id);
        for r in t.spaces.values_mut() {
            if r.same_scope(tenant, collection) && r.space.status == SpaceStatus::Active {
                r.space.status = SpaceStatus::Retired;
            }
        }
        if let Some(r) = t.spaces.get_mut(&id) {
            r.space.status = SpaceStatus::Active;
            r.lease_token = None;
            r.lease_until = None;
        }
        Ok(true)
    }

    async fn claim_building(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<(Space, Uuid)>, IndexError> {
        let now = utc_micros(now);
        let until = time::Duration::try_from(lease)
            .ok()
            .and_then(|l| now.checked_add(l))
            .ok_or_else(|| unknown("the lease is too long"))?;
        let mut t = self.lock()?;
        let Some(row) = t.spaces.values_mut().find(|r| {
            r.space.status == SpaceStatus::Building && r.lease_until.is_none_or(|u| u < now)
        }) else {
            return Ok(None);
        };
        let token = Uuid::now_v7();
        row.lease_token = Some(token);
        row.lease_until = Some(until);
        Ok(Some((row.space.clone(), token)))
    }

    async fn renew(
        &self,
        id: SpaceId,
        lease: Uuid,
        until: OffsetDateTime,
    ) -> Result<bool, IndexError> {
        let mut t = self.lock()?;
        let Some(row) = t
            .spaces
            .get_mut(&id)
            .filter(|r| r.space.status == SpaceStatus::Building && r.lease_token == Some(lease))
        else {
            return Ok(false);
        };
        row.lease_until = Some(utc_micros(until));
        Ok(true)
    }

    async fn retired(&self, limit: usize) -> Result<Vec<Space>, IndexError> {
        let t = self.lock()?;
        Ok(t.spaces
            .values()
            .filter(|r| r.space.status == SpaceStatus::Retired)
            .take(limit)
            .map(|r| r.space.clone())
            .collect())
    }

    async fn delete(&self, id: SpaceId) -> Result<(), IndexError> {
        let mut t = self.lock()?;
        t.spaces.remove(&id);
        t.rows.retain(|(space, _), _| *space != id);
        Ok(())
    }

    async fn active_not_on(
        &self,
        model: &EmbeddingModel,
        limit: usize,
    ) -> Result<Vec<Space>, IndexError> {
        let t = self.lock()?;
        let mut found = Vec::new();
        for r in t.spaces.values() {
            if found.len() == limit {
                break;
            }
            if r.space.status != SpaceStatus::Active || r.space.model == *model {
                continue;
            }
            let follows_default = match r.space.collection_id {
                None => true,
                Some(c) => self
                    .documents
                    .collection(r.space.tenant_id, c)
                    .map_err(store_error)?
                    .is_some_and(|c| c.embedding_model.is_none()),
            };
            if follows_default {
                found.push(r.space.clone());
            }
        }
        Ok(found)
    }
}

/// The vector rows of an [`InMemorySpaces`] (made by [`InMemorySpaces::vector_rows`]).
#[derive(Debug, Clone)]
pub struct InMemoryVectorRows {
    spaces: InMemorySpaces,
}

fn check_dimensions<'a>(
    expected: u32,
    entries: impl IntoIterator<Item = &'a VectorEntry>,
) -> Result<(), IndexError> {
    match entries
        .into_iter()
        .find(|e| u32::try_from(e.vector.len()).ok() != Some(expected))
    {
        Some(bad) => Err(IndexError::Dimension {
            expected,
            got: bad.vector.len(),
        }),
        None => Ok(()),
    }
}

#[async_trait]
impl VectorRows for InMemoryVectorRows {
    async fn upsert(&self, space: &Space, entries: &[VectorEntry]) -> Result<i64, IndexError> {
        check_dimensions(space.model.dimensions(), entries)?;
        let mut t = self.spaces.lock()?;
        let Some(row) = t
            .spaces
            .get(&space.id)
            .filter(|r| r.space.tenant_id == space.tenant_id)
        else {
            return Err(unknown(format!("no space {} of this tenant", space.id)));
        };
        if entries.is_empty() {
            return Ok(row.version);
        }
        check_dimensions(row.space.model.dimensions(), entries)?;
        // What the document foreign key refuses on SQL.
        let documents: HashSet<DocumentId> = entries.iter().map(|e| e.document_id).collect();
        for d in documents {
            if !self
                .spaces
                .documents
                .has_document(space.tenant_id, d)
                .map_err(store_error)?
            {
                return Err(unknown("storing vectors: no such document"));
            }
        }
        let seq = row.version + 1;
        if let Some(row) = t.spaces.get_mut(&space.id) {
            row.version = seq;
        }
        for e in entries {
            t.rows.insert(
                (space.id, e.chunk_id),
                StoredVector {
                    tenant: space.tenant_id,
                    document: e.document_id,
                    seq,
                    vector: e.vector.clone(),
                },
            );
        }
        Ok(seq)
    }

    async fn version(&self, space: SpaceId) -> Result<i64, IndexError> {
        Ok(self
            .spaces
            .lock()?
            .spaces
            .get(&space)
            .map_or(0, |r| r.version))
    }

    async fn load(
        &self,
        space: SpaceId,
        after: i64,
        cursor: Option<(i64, ChunkId)>,
        limit: usize,
    ) -> Result<Vec<VectorRow>, IndexError> {
        let t = self.spaces.lock()?;
        let mut rows: Vec<VectorRow> = t
            .rows
            .iter()
            .filter(|((s, chunk), r)| {
                *s == space && r.seq > after && cursor.is_none_or(|c| (r.seq, *chunk) > c)
            })
            .map(|((_, chunk), r)| VectorRow {
                chunk_id: *chunk,
                document_id: r.document,
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
        let t = self.spaces.lock()?;
        let mut seen = HashSet::new();
        Ok(chunks
            .iter()
            .copied()
            .filter(|c| !t.rows.contains_key(&(space, *c)) && seen.insert(*c))
            .collect())
    }

    async fn retain(
        &self,
        tenant: TenantId,
        document: DocumentId,
        keep: &[ChunkId],
    ) -> Result<Vec<(SpaceId, ChunkId)>, IndexError> {
        let keep: HashSet<ChunkId> = keep.iter().copied().collect();
        let mut t = self.spaces.lock()?;
        let doomed: Vec<(SpaceId, ChunkId)> = t
            .rows
            .iter()
            .filter(|((_, chunk), r)| {
                r.tenant == tenant && r.document == document && !keep.contains(chunk)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in &doomed {
            t.rows.remove(key);
        }
        Ok(doomed)
    }

    async fn drop_space(&self, space: SpaceId) -> Result<(), IndexError> {
        self.spaces.lock()?.rows.retain(|(s, _), _| *s != space);
        Ok(())
    }
}

/// A stored chunk as the keyword index sees it.
struct Scored {
    chunk: ChunkId,
    document: DocumentId,
    length: f64,
    /// Occurrences of each query word.
    tf: Vec<u32>,
}

#[async_trait]
impl KeywordIndex for InMemoryDocuments {
    async fn search(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        query: &str,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let words = query_words(query);
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let position: HashMap<&str, usize> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_str(), i))
            .collect();
        // The scope's statistics and its chunks that have a word.
        let (mut n, mut total_length) = (0_u64, 0_f64);
        let mut df = vec![0_u64; words.len()];
        let mut matching: Vec<Scored> = Vec::new();
        self.for_each_chunk(tenant, |document, chunk| {
            let in_scope = match collections {
                None => true,
                Some(c) => document.collection_id.is_some_and(|id| c.contains(&id)),
            };
            if !in_scope {
                return;
            }
            n += 1;
            let length = f64::from(chunk.tokens.max(1));
            total_length += length;
            let mut tf = vec![0_u32; words.len()];
            for word in words_of(&chunk.text) {
                if let Some(i) = position.get(word.as_str()) {
                    tf[*i] += 1;
                }
            }
            if tf.iter().any(|c| *c > 0) {
                for (i, c) in tf.iter().enumerate() {
                    if *c > 0 {
                        df[i] += 1;
                    }
                }
                matching.push(Scored {
                    chunk: chunk.id,
                    document: document.id,
                    length,
                    tf,
                });
            }
        })
        .map_err(store_error)?;
        let n_f = n.max(1) as f64;
        let average = if n == 0 { 1.0 } else { total_length / n_f };
        let idf: Vec<f64> = df
            .iter()
            .map(|d| {
                let d = *d as f64;
                (1.0 + (n_f - d + 0.5).max(0.0) / (d + 0.5)).ln()
            })
            .collect();
        let mut found: Vec<Candidate> = matching
            .into_iter()
            .filter(|s| allow.is_none_or(|a| a.contains(&s.document)))
            .map(|s| {
                let norm = K1 * (1.0 - B + B * s.length / average);
                let score: f64 =
                    s.tf.iter()
                        .zip(&idf)
                        .filter(|(tf, _)| **tf > 0)
                        .map(|(tf, idf)| {
                            let tf = f64::from(*tf);
                            idf * tf * (K1 + 1.0) / (tf + norm)
                        })
                        .sum();
                let score = score as f32;
                Candidate {
                    chunk_id: s.chunk,
                    score,
                }
            })
            .collect();
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk_id.cmp(&b.chunk_id))
        });
        found.truncate(k);
        Ok(found)
    }
}

#[async_trait]
impl ChunkCatalog for InMemoryDocuments {
    async fn records(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<ChunkRecord>, IndexError> {
        let wanted: HashSet<ChunkId> = ids.iter().copied().collect();
        let mut records = Vec::new();
        self.for_each_chunk(tenant, |document, chunk| {
            if wanted.contains(&chunk.id) {
                records.push(ChunkRecord {
                    chunk_id: chunk.id,
                    document_id: document.id,
                    document_name: document.name.clone(),
                    collection_id: document.collection_id,
                    ordinal: chunk.ordinal,
                    page: chunk.page,
                    text: chunk.text.clone(),
                    tokens: chunk.tokens,
                });
            }
        })
        .map_err(store_error)?;
        Ok(records)
    }

    async fn matching_documents(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        filter: &MetadataFilter,
        limit: usize,
    ) -> Result<Vec<DocumentId>, IndexError> {
        let mut found = Vec::new();
        self.for_each_document(tenant, |d| {
            let in_scope =
                collections.is_none_or(|c| d.collection_id.is_some_and(|id| c.contains(&id)));
            if in_scope && filter.matches(&d.metadata) {
                found.push(d.id);
            }
        })
        .map_err(store_error)?;
        found.sort_unstable();
        found.truncate(limit);
        Ok(found)
    }

    async fn scan(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkText>, IndexError> {
        let mut found = Vec::new();
        self.for_each_chunk(tenant, |document, chunk| {
            if document.collection_id == collection && after.is_none_or(|a| chunk.id > a) {
                found.push(ChunkText {
                    chunk_id: chunk.id,
                    document_id: document.id,
                    text: chunk.text.clone(),
                });
            }
        })
        .map_err(store_error)?;
        found.sort_by_key(|c| c.chunk_id);
        found.truncate(limit);
        Ok(found)
    }
}
