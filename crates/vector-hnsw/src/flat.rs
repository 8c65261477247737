//! One space's vectors in memory: every vector of the space in one contiguous `Vec<f32>`,
//! addressed by position, with the chunk, document and `seq` of each position. Positions only
//! grow: a replaced or removed vector stays in place as a tombstone (`live = false`) until the
//! space is compacted by a rebuild. The exact (brute force) top-k lives here too.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use documents::{ChunkId, DocumentId};
use retrieval::Candidate;

use crate::dot::dot;

/// A position in a [`Flat`].
pub(crate) type Pos = usize;

/// The vectors of one space.
#[derive(Debug, Clone)]
pub(crate) struct Flat {
    dim: usize,
    vectors: Vec<f32>,
    chunks: Vec<ChunkId>,
    docs: Vec<DocumentId>,
    seqs: Vec<i64>,
    live: Vec<bool>,
    /// The live position of each chunk.
    by_chunk: HashMap<ChunkId, Pos>,
    /// The live positions of each document.
    by_doc: HashMap<DocumentId, Vec<Pos>>,
    dead: usize,
}

impl Flat {
    pub(crate) fn new(dim: usize) -> Self {
        Self::with_capacity(dim, 0)
    }

    /// Room for `n` vectors without growing (a rebuild knows how many it copies).
    pub(crate) fn with_capacity(dim: usize, n: usize) -> Self {
        Self {
            dim,
            vectors: Vec::with_capacity(n * dim),
            chunks: Vec::with_capacity(n),
            docs: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            live: Vec::with_capacity(n),
            by_chunk: HashMap::with_capacity(n),
            by_doc: HashMap::new(),
            dead: 0,
        }
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Positions, tombstones included.
    pub(crate) fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Tombstones.
    pub(crate) fn dead(&self) -> usize {
        self.dead
    }

    /// Live vectors.
    pub(crate) fn live_count(&self) -> usize {
        self.len() - self.dead
    }

    pub(crate) fn is_live(&self, p: Pos) -> bool {
        self.live.get(p).copied().unwrap_or(false)
    }

    pub(crate) fn vector(&self, p: Pos) -> &[f32] {
        &self.vectors[p * self.dim..(p + 1) * self.dim]
    }

    /// The vectors of positions `from..to`, one after the other.
    pub(crate) fn vectors_of(&self, from: Pos, to: Pos) -> &[f32] {
        &self.vectors[from * self.dim..to * self.dim]
    }

    /// Memory held by the vectors, in bytes.
    pub(crate) fn vector_bytes(&self) -> usize {
        self.vectors.capacity() * std::mem::size_of::<f32>()
    }

    /// The `seq` of the chunk's live vector.
    #[cfg(test)]
    pub(crate) fn seq_of(&self, chunk: ChunkId) -> Option<i64> {
        self.by_chunk.get(&chunk).map(|&p| self.seqs[p])
    }

    /// Stores a vector (of this space's dimension: checked by the caller), replacing the
    /// chunk's live one unless that one is newer. Answers whether it was stored.
    pub(crate) fn put(
        &mut self,
        chunk: ChunkId,
        doc: DocumentId,
        seq: i64,
        vector: &[f32],
    ) -> bool {
        debug_assert_eq!(vector.len(), self.dim);
        if let Some(&old) = self.by_chunk.get(&chunk) {
            if self.seqs[old] >= seq {
                return false;
            }
            self.kill(old);
        }
        let p = self.len();
        if self.vectors.capacity() - self.vectors.len() < vector.len() {
            // Grow by a quarter, not the doubling of `Vec`: the vectors are most of the memory.
            let more = (self.vectors.len() / 4).max(64 * self.dim);
            self.vectors.reserve_exact(more);
        }
        self.vectors.extend_from_slice(vector);
        self.chunks.push(chunk);
        self.docs.push(doc);
        self.seqs.push(seq);
        self.live.push(true);
        self.by_chunk.insert(chunk, p);
        self.by_doc.entry(doc).or_default().push(p);
        true
    }

    /// Copies position `p` of `other` here (a rebuild).
    pub(crate) fn put_from(&mut self, other: &Flat, p: Pos) -> bool {
        self.put(
            other.chunks[p],
            other.docs[p],
            other.seqs[p],
            other.vector(p),
        )
    }

    /// Removes the chunk's vector; answers whether there was one.
    pub(crate) fn remove(&mut self, chunk: ChunkId) -> bool {
        match self.by_chunk.get(&chunk) {
            Some(&p) => {
                self.kill(p);
                true
            }
            None => false,
        }
    }

    pub(crate) fn kill(&mut self, p: Pos) {
        if !self.live[p] {
            return;
        }
        self.live[p] = false;
        self.dead += 1;
        self.by_chunk.remove(&self.chunks[p]);
        let doc = self.docs[p];
        if let Some(list) = self.by_doc.get_mut(&doc) {
            list.retain(|&q| q != p);
            if list.is_empty() {
                self.by_doc.remove(&doc);
            }
        }
    }

    /// The live positions of these documents, in increasing order.
    pub(crate) fn positions_of(&self, docs: &[DocumentId]) -> Vec<Pos> {
        let mut out: Vec<Pos> = docs
            .iter()
            .filter_map(|d| self.by_doc.get(d))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A candidate for position `p`: its chunk and its exact score.
    pub(crate) fn score(&self, query: &[f32], p: Pos) -> Scored {
        Scored {
            score: dot(query, self.vector(p)),
            chunk: self.chunks[p],
        }
    }

    /// The exact top `k` of the live positions in `positions`.
    pub(crate) fn exact_among(
        &self,
        query: &[f32],
        k: usize,
        positions: impl IntoIterator<Item = Pos>,
    ) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for p in positions {
            if self.live[p] {
                top.offer(self.score(query, p));
            }
        }
        top.into_sorted()
    }

    /// The exact top `k` of the live positions in `from..to`, walking the vectors in order.
    pub(crate) fn exact_range(&self, query: &[f32], k: usize, from: Pos, to: Pos) -> Vec<Scored> {
        let mut top = TopK::new(k);
        let to = to.min(self.len());
        if from >= to {
            return Vec::new();
        }
        for (i, v) in self.vectors_of(from, to).chunks_exact(self.dim).enumerate() {
            let p = from + i;
            if self.live[p] {
                top.offer(Scored {
                    score: dot(query, v),
                    chunk: self.chunks[p],
                });
            }
        }
        top.into_sorted()
    }
}

/// A chunk with its score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) chunk: ChunkId,
}

impl Scored {
    /// Best first: higher score, then lower chunk id.
    pub(crate) fn rank(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.chunk.cmp(&other.chunk))
    }

    pub(crate) fn candidate(self) -> Candidate {
        Candidate {
            chunk_id: self.chunk,
            score: self.score,
        }
    }
}

/// Ordered by rank (the greatest is the worst), for the bounded heap.
#[derive(Debug)]
struct Worst(Scored);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank(&other.0)
    }
}

/// The best `k` of what it is offered.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub(crate) fn offer(&mut self, s: Scored) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(worst) = self.heap.peek()
            && s.rank(&worst.0) == Ordering::Less
        {
            self.heap.pop();
            self.heap.push(Worst(s));
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(Scored::rank);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<ChunkId> {
        (0..n).map(|_| ChunkId::new()).collect()
    }

    #[test]
    fn exact_search_ranks_by_score_then_chunk() {
        let mut flat = Flat::new(2);
        let doc = DocumentId::new();
        let c = ids(4);
        flat.put(c[0], doc, 1, &[1.0, 0.0]);
        flat.put(c[1], doc, 1, &[0.0, 1.0]);
        flat.put(c[2], doc, 1, &[0.6, 0.8]);
        // The same vector as c[0]: a tie, broken by chunk id.
        flat.put(c[3], doc, 1, &[1.0, 0.0]);
        let got = flat.exact_range(&[1.0, 0.0], 3, 0, flat.len());
        let (first, second) = if c[0] < c[3] {
            (c[0], c[3])
        } else {
            (c[3], c[0])
        };
        let chunks: Vec<ChunkId> = got.iter().map(|s| s.chunk).collect();
        assert_eq!(chunks, [first, second, c[2]]);
        assert!((got[2].score - 0.6).abs() < 1e-6);
        // Fewer than k live vectors: all of them.
        assert_eq!(flat.exact_range(&[1.0, 0.0], 10, 0, flat.len()).len(), 4);
        assert!(flat.exact_range(&[1.0, 0.0], 0, 0, flat.len()).is_empty());
    }

    #[test]
    fn exact_search_matches_brute_force() {
        let mut rng = fastrand::Rng::with_seed(11);
        let dim = 24;
        let mut flat = Flat::new(dim);
        let docs = [DocumentId::new(), DocumentId::new()];
        let mut all = Vec::new();
        for i in 0..500 {
            let v: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
            let c = ChunkId::new();
            flat.put(c, docs[i % 2], 1, &v);
            all.push((c, v));
        }
        let q: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
        let mut want: Vec<(f64, ChunkId)> = all
            .iter()
            .map(|(c, v)| (crate::dot::dot_reference(&q, v), *c))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let got = flat.exact_range(&q, 10, 0, flat.len());
        let got: Vec<ChunkId> = got.iter().map(|s| s.chunk).collect();
        let want: Vec<ChunkId> = want.iter().take(10).map(|w| w.1).collect();
        assert_eq!(got, want);
        // Among one document's positions.
        let only = flat.exact_among(&q, 5, flat.positions_of(&docs[..1]));
        assert_eq!(only.len(), 5);
        let first: Vec<ChunkId> = all.iter().step_by(2).map(|(c, _)| *c).collect();
        assert!(only.iter().all(|s| first.contains(&s.chunk)));
    }

    #[test]
    fn replacing_and_removing_leave_tombstones() {
        let mut flat = Flat::new(1);
        let doc = DocumentId::new();
        let c = ChunkId::new();
        assert!(flat.put(c, doc, 1, &[1.0]));
        assert!(flat.put(c, doc, 2, &[-1.0]));
        // An older write does not replace a newer one.
        assert!(!flat.put(c, doc, 1, &[0.5]));
        assert_eq!((flat.len(), flat.dead(), flat.live_count()), (2, 1, 1));
        assert_eq!(flat.seq_of(c), Some(2));
        let got = flat.exact_range(&[1.0], 5, 0, flat.len());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].score, -1.0);
        assert!(flat.remove(c));
        assert!(!flat.remove(c));
        assert_eq!(flat.live_count(), 0);
        assert!(flat.positions_of(&[doc]).is_empty());
    }
}
