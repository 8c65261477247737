//! The HNSW graph of one space, over `hnsw_rs`: the graph's data id of a vector is its
//! position in the space's [`Flat`](crate::flat::Flat), and the graph holds the positions
//! `0..indexed()` (a prefix: positions are inserted in order, tombstones included, so the
//! prefix stays contiguous; a search filters tombstones out and scans the positions past the
//! prefix exactly). The graph holds int8 copies of the vectors ([`crate::quant`]) and is
//! traversed with their approximate distance; callers rescore what it returns exactly.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::flat::Pos;
use crate::quant::{SCALE_BYTES, dot_quantized, quantize, quantize_into};

/// `1 − cos` of two quantized normalized vectors, never negative (quantization and rounding
/// can push the dot product past 1, and `hnsw_rs` asserts distances are not negative).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuantizedCosine;

impl Distance<i8> for QuantizedCosine {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        (1.0 - dot_quantized(va, vb)).max(0.0)
    }
}

/// Layers `hnsw_rs` may use (its maximum).
const MAX_LAYERS: usize = 16;
/// Below this many vectors a batch is inserted on the calling thread, not through rayon.
const PARALLEL_BATCH: usize = 256;

/// The graph and how far it goes.
pub(crate) struct Graph {
    hnsw: Hnsw<'static, i8, QuantizedCosine>,
    indexed: AtomicUsize,
    dim: usize,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("indexed", &self.indexed())
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Graph {
    pub(crate) fn new(dim: usize, m: usize, ef_construction: usize, expected: usize) -> Self {
        Self {
            hnsw: Hnsw::new(
                m,
                expected.max(1024),
                MAX_LAYERS,
                ef_construction,
                QuantizedCosine,
            ),
            indexed: AtomicUsize::new(0),
            dim,
        }
    }

    /// Positions `0..indexed()` are in the graph.
    pub(crate) fn indexed(&self) -> usize {
        self.indexed.load(Ordering::Acquire)
    }

    /// Inserts the positions `from..from + n` whose vectors are `vectors` (`n · dim` floats),
    /// quantized; `from` must be `indexed()`. Only one thread appends at a time (the space's
    /// worker).
    pub(crate) fn append(&self, from: Pos, vectors: &[f32]) {
        debug_assert_eq!(from, self.indexed());
        let width = self.dim + SCALE_BYTES;
        let mut codes = Vec::with_capacity(vectors.len() / self.dim.max(1) * width);
        for v in vectors.chunks_exact(self.dim) {
            quantize_into(v, &mut codes);
        }
        let items: Vec<(&[i8], usize)> = codes
            .chunks_exact(width)
            .enumerate()
            .map(|(i, v)| (v, from + i))
            .collect();
        let n = items.len();
        if n >= PARALLEL_BATCH {
            self.hnsw.parallel_insert_slice(&items);
        } else {
            for item in items {
                self.hnsw.insert_slice(item);
            }
        }
        self.indexed.store(from + n, Ordering::Release);
    }

    /// Bytes of the graph's quantized vectors (its links and `hnsw_rs`'s bookkeeping aside).
    pub(crate) fn vector_bytes(&self) -> usize {
        self.indexed() * (self.dim + SCALE_BYTES)
    }

    /// Up to `k` positions nearest to `query` by the quantized distance (with `ef` candidates
    /// in the bottom layer) among those `keep` accepts; `None` keeps every position. Nearest
    /// first, but only approximately: the caller rescores them.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(Pos) -> bool>,
    ) -> Vec<Pos> {
        let query = quantize(query);
        let found = match keep {
            None => self.hnsw.search_filter(&query, k, ef, None),
            Some(keep) => {
                let filter = |id: &usize| keep(*id);
                self.hnsw.search_filter(&query, k, ef, Some(&filter))
            }
        };
        found.into_iter().map(|n| n.d_id).collect()
    }
}
