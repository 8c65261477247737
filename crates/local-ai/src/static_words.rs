//! [`StaticEmbedder`]: `quire-local-static`, a static (Model2Vec-style) embedder distilled
//! from the bundled semantic model.
//!
//! Each word's vector is the bundled model's (`quire-local-minilm`, paraphrase-MiniLM-L3-v2)
//! vector of the word alone; a text's vector is the weighted mean of its words' vectors,
//! L2-normalized. The table is not built ahead: the words of a batch of texts not yet known
//! are handed to the model in one call (pocket-encoder 0.1.2 still runs one forward pass per
//! word inside it) and kept in a word table, so a text of known words costs
//! lookups and additions, as the n-gram model's features do. The table is process-wide
//! ([`StaticEmbedder::new`]) or saved in a folder ([`StaticEmbedder::saved_in`], the data
//! folder of the embedded default), so a restart does not run the words again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use retrieval::{EmbeddingModel, Embeddings};

use crate::features::{STOP_WORDS, is_stop_word};
use crate::sentence::{encoder, prefix};
use crate::word_table;

/// The name of the static model.
pub const STATIC_MODEL: &str = "quire-local-static";

/// The version of how words and vectors are made here, part of the saved table's key: bump it
/// whenever [`words`], the common direction or a word's vector changes, so no saved table of
/// the old way is read.
const ALGORITHM: &str = "quire-local-static v1";

/// Its dimension (the bundled model's).
const DIMS: usize = 384;

/// Words longer than this (bytes) are cut: a long run of letters is a code or an
/// identifier, whose beginning says as much as its end.
const MAX_WORD: usize = 48;

/// Words kept in a table (about 1.5 KB each: ~150 MB at most, and as much saved). Past it the
/// table is emptied and refills: vectors stay the same, only slower for a while.
const TABLE_CAP: usize = 100_000;

/// Words given to the bundled model in one call (its limit is 4,096 inputs).
const LEARN_BATCH: usize = 4096;

/// A saved table is written once no word was added for this long...
const QUIET: Duration = Duration::from_secs(2);

/// ...or this long after its first unsaved word, whichever comes first.
const MOST_UNSAVED: Duration = Duration::from_secs(30);

/// A word table, in memory and optionally saved.
struct Words {
    table: RwLock<HashMap<String, Arc<[f32]>>>,
    /// Words this table ran through the model.
    computed: AtomicU64,
    saved: Option<Saved>,
    /// This table, for its writer thread (which ends when the table is dropped).
    me: Weak<Words>,
}

/// Where a table is saved, and the state of its writer.
struct Saved {
    path: PathBuf,
    identity: String,
    loaded: Once,
    state: Mutex<SaveState>,
    /// Held while a table is copied and written, so an older copy never lands after a newer.
    writing: Mutex<()>,
}

#[derive(Default)]
struct SaveState {
    /// When the first word not yet saved was added.
    unsaved_since: Option<Instant>,
    /// When the last one was.
    last_change: Option<Instant>,
    /// Whether the writer thread runs.
    writer: bool,
}

impl Words {
    fn new(saved: Option<Saved>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            table: RwLock::new(HashMap::new()),
            computed: AtomicU64::new(0),
            saved,
            me: me.clone(),
        })
    }

    fn read(&self) -> anyhow::Result<std::sync::RwLockReadGuard<'_, HashMap<String, Arc<[f32]>>>> {
        self.table
            .read()
            .map_err(|_| anyhow!("the word table is poisoned"))
    }

    /// Reads the saved table into this one, once (a missing file is an empty table; a corrupt,
    /// truncated or foreign one is logged, ignored and replaced at the next save).
    fn load(&self) {
        let Some(saved) = &self.saved else {
            return;
        };
        saved.loaded.call_once(|| {
            if let Some(dir) = saved.path.parent() {
                word_table::remove_stale_temporaries(dir);
            }
            match word_table::read(&saved.path, &saved.identity, DIMS, TABLE_CAP, MAX_WORD) {
                Ok(None) => {}
                Ok(Some(words)) => {
                    let n = words.len();
                    if let Ok(mut t) = self.table.write() {
                        for (w, v) in words {
                            t.entry(w).or_insert(v);
                        }
                    }
                    tracing::info!(path = %saved.path.display(), words = n, "the static model's word table is read");
                }
                Err(e) => {
                    tracing::warn!(
                        path = %saved.path.display(),
                        error = %format!("{e:#}"),
                        "the static model's saved word table is ignored and will be rebuilt"
                    );
                    self.changed();
                }
            }
        });
    }

    /// Notes that the table has words not yet saved, and starts the writer if it is idle.
    fn changed(&self) {
        let Some(saved) = &self.saved else {
            return;
        };
        let Ok(mut st) = saved.state.lock() else {
            return;
        };
        let now = Instant::now();
        st.unsaved_since.get_or_insert(now);
        st.last_change = Some(now);
        if !st.writer {
            let me = self.me.clone();
            st.writer = std::thread::Builder::new()
                .name("static-words".to_owned())
                .spawn(move || writer(&me))
                .is_ok();
        }
    }

    /// Writes the table now if it has unsaved words.
    fn save(&self) -> anyhow::Result<()> {
        let Some(saved) = &self.saved else {
            return Ok(());
        };
        let _writing = saved
            .writing
            .lock()
            .map_err(|_| anyhow!("the word table's writer is poisoned"))?;
        {
            let mut st = saved
                .state
                .lock()
                .map_err(|_| anyhow!("the word table's state is poisoned"))?;
            if st.unsaved_since.take().is_none() {
                return Ok(());
            }
        }
        let mut words: Vec<(String, Arc<[f32]>)> = self
            .read()?
            .iter()
            .map(|(w, v)| (w.clone(), v.clone()))
            .collect();
        words.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        word_table::write(&saved.path, &words, &saved.identity, DIMS)
    }
}

/// The writer of a saved table: waits until the table has been quiet for [`QUIET`] (or has
/// had unsaved words for [`MOST_UNSAVED`]), writes it, and ends when nothing is left unsaved.
fn writer(words: &Weak<Words>) {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Some(words) = words.upgrade() else {
            return;
        };
        let Some(saved) = &words.saved else {
            return;
        };
        let due = {
            let Ok(mut st) = saved.state.lock() else {
                return;
            };
            match (st.unsaved_since, st.last_change) {
                (Some(first), Some(last)) => {
                    last.elapsed() >= QUIET || first.elapsed() >= MOST_UNSAVED
                }
                _ => {
                    st.writer = false;
                    return;
                }
            }
        };
        if due && let Err(e) = words.save() {
            tracing::warn!(
                path = %saved.path.display(),
                error = %format!("{e:#}"),
                "the static model's word table could not be saved (kept in memory)"
            );
        }
    }
}

/// The process-wide table of [`StaticEmbedder::new`] (a vector depends only on its word).
fn shared() -> Arc<Words> {
    static SHARED: OnceLock<Arc<Words>> = OnceLock::new();
    SHARED.get_or_init(|| Words::new(None)).clone()
}

/// The words of a text with their counts, in first-seen order: lowercase runs of letters
/// and digits, function words left out (unless there is nothing else), cut at [`MAX_WORD`].
fn words(text: &str) -> Vec<(String, u32)> {
    let lower = text.to_lowercase();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for keep_stop_words in [false, true] {
        for w in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !keep_stop_words && is_stop_word(w) {
                continue;
            }
            let w = prefix(w, MAX_WORD);
            let n = counts.entry(w).or_insert(0);
            if *n == 0 {
                order.push(w);
            }
            *n += 1;
        }
        if !order.is_empty() {
            break;
        }
    }
    order
        .into_iter()
        .map(|w| (w.to_owned(), counts.get(w).copied().unwrap_or(1)))
        .collect()
}

/// The static embedder (see the module). Deterministic: a text's vector depends only on its
/// words, never on what was embedded before, nor on whether its words came from a saved table.
#[derive(Clone)]
pub struct StaticEmbedder {
    model: EmbeddingModel,
    words: Arc<Words>,
}

impl std::fmt::Debug for StaticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedder")
            .field("model", &self.model)
            .field("saved", &self.words.saved.as_ref().map(|s| &s.path))
            .finish_non_exhaustive()
    }
}

impl Default for StaticEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl StaticEmbedder {
    /// The model with the process-wide word table, in memory only (the bundled weights are
    /// expanded on the first word).
    #[must_use]
    pub fn new() -> Self {
        Self::with(shared())
    }

    /// The model with a word table of its own saved in `dir` (file
    /// `quire-local-static.words`): read on the first text (not before, so a server that
    /// embeds nothing never reads it), written by a thread of its own a few seconds after new
    /// words were learnt (see [`StaticEmbedder::flush`]).
    #[must_use]
    pub fn saved_in(dir: &Path) -> Self {
        Self::with(Words::new(Some(Saved {
            path: word_table::path_in(dir),
            identity: word_table::identity(ALGORITHM, STOP_WORDS),
            loaded: Once::new(),
            state: Mutex::new(SaveState::default()),
            writing: Mutex::new(()),
        })))
    }

    fn with(words: Arc<Words>) -> Self {
        // A constant name and 384 dimensions: always valid.
        let model = EmbeddingModel::new(STATIC_MODEL, DIMS as u32)
            .unwrap_or_else(|e| unreachable!("the static model's name: {e}"));
        Self { model, words }
    }

    /// Words in this embedder's table now.
    #[must_use]
    pub fn known_words(&self) -> usize {
        self.words.read().map_or(0, |t| t.len())
    }

    /// Words this embedder's table ran through the bundled model (not those it read from a
    /// saved table).
    #[must_use]
    pub fn computed_words(&self) -> u64 {
        self.words.computed.load(Ordering::Relaxed)
    }

    /// Writes the saved table now, if it has words not yet written (the writer thread does it
    /// a few seconds after the last new word; this is for shutdown and tests).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.words.save()
    }

    /// The vectors of the words of `wanted` not yet in the table, computed and added.
    fn learn(&self, wanted: &[&str]) -> anyhow::Result<()> {
        self.words.load();
        let missing: Vec<&str> = {
            let t = self.words.read()?;
            wanted
                .iter()
                .copied()
                .filter(|w| !t.contains_key(*w))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let common = common()?;
        let mut learnt = Vec::with_capacity(missing.len());
        for part in missing.chunks(LEARN_BATCH) {
            for (w, v) in part.iter().zip(raw_vectors(part)?) {
                learnt.push(((*w).to_owned(), Arc::<[f32]>::from(without(v, common))));
            }
        }
        self.words
            .computed
            .fetch_add(learnt.len() as u64, Ordering::Relaxed);
        {
            let mut t = self
                .words
                .table
                .write()
                .map_err(|_| anyhow!("the word table is poisoned"))?;
            if t.len() + learnt.len() > TABLE_CAP {
                t.clear();
            }
            t.extend(learnt);
        }
        self.words.changed();
        Ok(())
    }

    /// The vectors of `inputs` and their `cl100k_base` token count, on this thread (a text
    /// without letters or digits gets the zero vector).
    ///
    /// # Errors
    /// An inference failure of the bundled model.
    pub fn embed_now(&self, inputs: &[String]) -> anyhow::Result<Embeddings> {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let tokens = inputs.iter().map(|t| bpe.count_ordinary(t) as u64).sum();
        let texts: Vec<Vec<(String, u32)>> = inputs.iter().map(|t| words(t)).collect();
        let mut wanted: Vec<&str> = texts
            .iter()
            .flat_map(|ws| ws.iter().map(|(w, _)| w.as_str()))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        self.learn(&wanted)?;
        let mut vectors = Vec::with_capacity(inputs.len());
        for ws in &texts {
            let mut sum = vec![0.0f32; DIMS];
            let mut missing = Vec::new();
            {
                let t = self.words.read()?;
                for (w, n) in ws {
                    match t.get(w) {
                        Some(v) => add(&mut sum, v, weight(*n)),
                        None => missing.push((w.clone(), *n)),
                    }
                }
            }
            // Words the table dropped meanwhile (it was full): computed again.
            for (w, n) in &missing {
                if let Some(v) = raw_vectors(&[w.as_str()])?.pop() {
                    add(&mut sum, &without(v, common()?), weight(*n));
                }
            }
            vectors.push(normalized(sum));
        }
        Ok(Embeddings { vectors, tokens })
    }
}

/// The bundled model's vectors of `words`, each alone.
fn raw_vectors(words: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    let out = encoder()?
        .embed(words)
        .map_err(|e| anyhow!("{STATIC_MODEL}: {e}"))?;
    if out.iter().any(|v| v.len() != DIMS) {
        bail!("{STATIC_MODEL}: a word vector of another dimension than {DIMS}");
    }
    Ok(out)
}

/// The direction every word vector shares (the model's vector of a lone word carries its
/// `[CLS]` and `[SEP]` and what any word has): the normalized mean of the function words'
/// vectors, computed once. Removing it from each word (as SIF removes the first principal
/// component) leaves what tells words apart.
fn common() -> anyhow::Result<&'static [f32]> {
    static COMMON: OnceLock<Result<Vec<f32>, String>> = OnceLock::new();
    COMMON
        .get_or_init(|| {
            let vectors = raw_vectors(STOP_WORDS).map_err(|e| format!("{e:#}"))?;
            let mut mean = vec![0.0f32; DIMS];
            for v in &vectors {
                add(&mut mean, v, 1.0);
            }
            Ok(normalized(mean))
        })
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

/// `v` without its component along the unit vector `c`.
fn without(mut v: Vec<f32>, c: &[f32]) -> Vec<f32> {
    let along: f32 = v.iter().zip(c).map(|(x, y)| x * y).sum();
    for (x, y) in v.iter_mut().zip(c) {
        *x -= along * y;
    }
    v
}

/// A word's weight for `n` occurrences: sublinear, as the n-gram model's.
fn weight(n: u32) -> f32 {
    1.0 + (n as f32).ln()
}

fn add(sum: &mut [f32], v: &[f32], w: f32) {
    for (s, x) in sum.iter_mut().zip(v) {
        *s += w * x;
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}

crate::sentence::blocking_embedder!(StaticEmbedder);
