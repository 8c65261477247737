//! Ingestion benchmark (not a test; prints figures): pages per second for extraction plus
//! chunking over a folder of PDFs, and megabytes per second for chunking alone.
//!
//! `cargo bench -p extract --bench ingest -- [DIR]` (or `QUIRE_BENCH_DIR=DIR`): writes 20
//! generated PDFs of English prose (10 to 50 pages each, the same for every run: a fixed
//! seed) to `DIR` as `gen-*.pdf`, copies `tests/fixtures/real-pdfs` there as `real-*.pdf`,
//! and measures over those files, so that `docs/bench/extract_bench.py` (pypdf + tiktoken)
//! reads the very same ones. `docs/bench/extract-bench.sh` runs both.
//!
//! Lines starting with `rust ` are for scripts: `key=value` pairs.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use documents::{ChunkingSettings, ExtractLimits, ExtractedText, Extractor, Format};
use extract::{ExtractorConfig, ProcessExtractor, chunk, extract, fixtures};

const SEED: u64 = 0x5155_4952_4521;
const DOCUMENTS: usize = 20;
/// Rounds of each measurement; the fastest is reported.
const ROUNDS: usize = 5;

fn main() {
    // pdf-extract panics on some real files by design (caught, then the fallback reads them).
    std::panic::set_hook(Box::new(|_| {}));
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .or_else(|| std::env::var("QUIRE_BENCH_DIR").ok())
        .map_or_else(
            || std::env::temp_dir().join("quire-extract-bench"),
            PathBuf::from,
        );
    std::fs::create_dir_all(&dir).unwrap();
    let generated_pages = write_corpus(&dir);

    let load = |prefix: &str| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".pdf")
            })
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let generated = load("gen-");
    let real = load("real-");
    let settings = ChunkingSettings::default();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "corpus: {} generated PDFs ({generated_pages} pages, {:.1} MB) and {} real PDFs in {}",
        generated.len(),
        generated.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1e6,
        real.len(),
        dir.display()
    );
    println!("cores: {cores}");

    // Load the tokenizer before timing anything.
    let _ = chunk(&text_of("warm up the tokenizer"), &settings);

    // The machine may be shared: every figure is the best of a few rounds.
    let single = best_of(ROUNDS, || measure(&generated, 1, &settings));
    report("generated single", &single);
    let parallel = best_of(ROUNDS, || measure(&generated, cores, &settings));
    report(&format!("generated parallel{cores}"), &parallel);
    let real_run = best_of(ROUNDS, || measure(&real, 1, &settings));
    report("real single", &real_run);
    let process = best_of(ROUNDS, || measure_process(&generated));
    report(&format!("generated process{cores}"), &process);

    // Chunking alone, over the text of the generated set.
    let all: String = generated
        .iter()
        .filter_map(|(_, b)| extract(Format::Pdf, b, &ExtractLimits::default()).ok())
        .map(|t| t.text)
        .collect::<Vec<_>>()
        .join("\n\n");
    let input = text_of(&all);
    let mut best = f64::MAX;
    let mut drafts = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        drafts = chunk(&input, &settings).len();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "rust chunking bytes={} chunks={drafts} seconds={best:.3} mb_per_s={:.2}",
        all.len(),
        all.len() as f64 / 1e6 / best
    );
}

fn best_of(rounds: usize, mut run: impl FnMut() -> Run) -> Run {
    (0..rounds)
        .map(|_| run())
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .unwrap()
}

#[derive(Debug, Default)]
struct Run {
    files: usize,
    pages: u64,
    failed: usize,
    chunks: usize,
    seconds: f64,
    /// Time spent extracting and chunking, summed over threads.
    extract_seconds: f64,
    chunk_seconds: f64,
}

fn report(label: &str, run: &Run) {
    println!(
        "rust {} files={} pages={} failed={} chunks={} seconds={:.3} extract_s={:.3} chunk_s={:.3} pages_per_s={:.1}",
        label.replace(' ', "_"),
        run.files,
        run.pages,
        run.failed,
        run.chunks,
        run.seconds,
        run.extract_seconds,
        run.chunk_seconds,
        run.pages as f64 / run.seconds
    );
}

/// Extracts and chunks every file on `threads` threads (files handed out one by one).
fn measure(files: &[(String, Vec<u8>)], threads: usize, settings: &ChunkingSettings) -> Run {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<(u64, usize, usize, Duration, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let (mut pages, mut chunks, mut failed) = (0u64, 0usize, 0usize);
                    let (mut in_extract, mut in_chunk) = (Duration::ZERO, Duration::ZERO);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((_, bytes)) = files.get(i) else {
                            break;
                        };
                        let t = Instant::now();
                        let extracted = extract(Format::Pdf, bytes, &ExtractLimits::default());
                        in_extract += t.elapsed();
                        match extracted {
                            Ok(text) => {
                                pages += u64::from(text.pages().unwrap_or(0));
                                let t = Instant::now();
                                chunks += chunk(&text, settings).len();
                                in_chunk += t.elapsed();
                            }
                            Err(_) => failed += 1,
                        }
                    }
                    (pages, chunks, failed, in_extract, in_chunk)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    Run {
        files: files.len(),
        pages: results.iter().map(|r| r.0).sum(),
        chunks: results.iter().map(|r| r.1).sum(),
        failed: results.iter().map(|r| r.2).sum(),
        seconds: start.elapsed().as_secs_f64(),
        extract_seconds: results.iter().map(|r| r.3.as_secs_f64()).sum(),
        chunk_seconds: results.iter().map(|r| r.4.as_secs_f64()).sum(),
    }
}

/// Extraction only, through `ProcessExtractor` (a child per file, as in production), with
/// as many children at once as cores.
fn measure_process(files: &[(String, Vec<u8>)]) -> Run {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let extractor = Arc::new(ProcessExtractor::new(
        env!("CARGO_BIN_EXE_extract-child"),
        Vec::new(),
        ExtractorConfig {
            max_concurrent: cores,
            ..ExtractorConfig::default()
        },
    ));
    let start = Instant::now();
    let outcomes = runtime.block_on(async {
        let tasks: Vec<_> = files
            .iter()
            .map(|(_, bytes)| {
                let extractor = Arc::clone(&extractor);
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    extractor
                        .extract(Format::Pdf, bytes, ExtractLimits::default(), None)
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        outcomes
    });
    Run {
        files: files.len(),
        pages: outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .map(|t| u64::from(t.pages().unwrap_or(0)))
            .sum(),
        failed: outcomes.iter().filter(|o| o.is_err()).count(),
        chunks: 0,
        seconds: start.elapsed().as_secs_f64(),
        extract_seconds: 0.0,
        chunk_seconds: 0.0,
    }
}

fn text_of(s: &str) -> ExtractedText {
    ExtractedText {
        text: s.to_owned(),
        page_starts: Vec::new(),
        title: None,
        ocr_pages: Vec::new(),
        tables: Vec::new(),
    }
}

/// Writes the generated PDFs and copies the real ones; returns the generated page count.
fn write_corpus(dir: &Path) -> u64 {
    let mut rng = Rng(SEED);
    let mut pages_total = 0;
    for d in 0..DOCUMENTS {
        let pages = 10 + rng.below(41);
        let texts: Vec<String> = (0..pages).map(|_| page(&mut rng)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        std::fs::write(dir.join(format!("gen-{d:02}.pdf")), fixtures::pdf(&refs)).unwrap();
        pages_total += pages as u64;
    }
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-pdfs");
    for entry in std::fs::read_dir(real).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pdf") {
            let name = path.file_name().unwrap().to_string_lossy();
            std::fs::copy(&path, dir.join(format!("real-{name}"))).unwrap();
        }
    }
    pages_total
}

/// About 450 words of prose: paragraphs of sentences of common English words.
fn page(rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut words = 0;
    while words < 400 + rng.below(100) {
        let sentences = 3 + rng.below(5);
        for _ in 0..sentences {
            let n = 6 + rng.below(20);
            for i in 0..n {
                let w = WORDS[rng.below(WORDS.len())];
                if i == 0 {
                    let mut c = w.chars();
                    let first = c.next().unwrap().to_ascii_uppercase();
                    out.push(first);
                    out.push_str(c.as_str());
                } else {
                    out.push_str(w);
                }
                if i + 1 < n {
                    out.push_str(if rng.below(12) == 0 { ", " } else { " " });
                }
            }
            out.push_str(match rng.below(10) {
                0 => "? ",
                1 => "! ",
                _ => ". ",
            });
            words += n;
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "she",
    "other",
    "its",
    "may",
    "these",
    "what",
    "them",
    "than",
    "some",
    "him",
    "time",
    "into",
    "only",
    "do",
    "could",
    "new",
    "about",
    "two",
    "first",
    "then",
    "most",
    "also",
    "over",
    "after",
    "such",
    "years",
    "where",
    "many",
    "should",
    "people",
    "any",
    "between",
    "through",
    "work",
    "state",
    "system",
    "report",
    "company",
    "market",
    "revenue",
    "customer",
    "product",
    "quarter",
    "growth",
    "strategy",
    "policy",
    "research",
    "analysis",
    "development",
    "management",
    "information",
    "government",
    "university",
    "community",
    "environment",
    "technology",
    "service",
    "process",
    "project",
    "program",
    "question",
    "problem",
    "answer",
    "result",
    "evidence",
    "history",
    "language",
    "document",
    "contract",
    "agreement",
    "payment",
    "invoice",
    "schedule",
    "meeting",
    "committee",
    "decision",
    "proposal",
    "budget",
    "cost",
    "price",
    "value",
    "increase",
    "decrease",
    "significant",
    "important",
    "different",
    "available",
    "additional",
    "particular",
    "economic",
    "social",
    "political",
    "financial",
    "national",
    "international",
    "local",
    "public",
    "private",
    "general",
    "specific",
    "recent",
    "current",
    "previous",
    "following",
    "several",
    "various",
    "large",
    "small",
    "high",
    "low",
    "early",
    "late",
    "long",
    "short",
    "clear",
    "simple",
    "complex",
    "modern",
    "ancient",
    "river",
    "mountain",
    "city",
    "village",
    "country",
    "ocean",
    "forest",
    "garden",
    "kitchen",
    "library",
    "hospital",
    "school",
    "station",
    "bridge",
    "road",
    "building",
    "window",
    "engine",
    "machine",
    "computer",
    "network",
    "server",
    "database",
    "software",
    "hardware",
    "security",
    "privacy",
    "access",
    "account",
    "password",
    "message",
    "letter",
    "chapter",
    "section",
    "paragraph",
    "sentence",
    "measure",
    "describe",
    "explain",
    "consider",
    "provide",
    "require",
    "include",
    "continue",
    "develop",
    "establish",
    "maintain",
    "reduce",
    "improve",
    "support",
    "produce",
    "receive",
    "remain",
    "suggest",
    "indicate",
    "represent",
    "although",
    "because",
    "however",
    "therefore",
    "moreover",
    "nevertheless",
    "meanwhile",
    "perhaps",
    "quickly",
    "slowly",
    "carefully",
    "nearly",
    "already",
    "always",
    "never",
    "often",
    "sometimes",
    "usually",
    "today",
    "tomorrow",
    "yesterday",
    "morning",
    "evening",
    "winter",
    "summer",
    "spring",
    "autumn",
    "water",
    "energy",
    "light",
    "sound",
    "colour",
    "weight",
    "distance",
    "temperature",
    "pressure",
    "surface",
    "material",
    "structure",
    "pattern",
    "method",
    "theory",
    "experiment",
    "sample",
    "figure",
    "table",
    "model",
    "data",
];
