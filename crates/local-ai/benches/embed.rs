//! Throughput of the local embedders on one thread:
//! `RAYON_NUM_THREADS=1 cargo bench -p local-ai --bench embed` (candle's matrix products run on
//! rayon's pool: one thread measures one core).
//!
//! Embeds about 2 MB of ~400-token chunks (English prose with some numbers and names) with the
//! n-gram model and prints chunks/s and MB/s, for the vectors alone and with the `cl100k_base`
//! token count that `Embedder::embed` adds; then 200 of the chunks with the bundled
//! `quire-local-minilm` (128 word pieces of each are read) and, when `QUIRE_TEST_MINILM_PATH`
//! names a sentence-transformers folder, with that model (256 word pieces). The static
//! `quire-local-static` is measured cold (every word new to it: the 38 passages of the golden
//! set `founding-texts.json`, 2,610 words, 610 distinct once function words are left out) and warm (the same
//! 1,000 chunks as the n-gram model, once their words are known); and the cold cost per word
//! both ways on those words: one call per word and one call for all (pocket-encoder 0.1.2 runs
//! one forward pass per input either way; a batching pocket-encoder would show the gap).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use local_ai::{LocalEmbedder, MiniLmEmbedder, SentenceEmbedder, StaticEmbedder};

const WORDS: &[&str] = &[
    "the",
    "retrieval",
    "of",
    "documents",
    "running",
    "quarterly",
    "report",
    "shows",
    "that",
    "revenue",
    "grew",
    "by",
    "12%",
    "in",
    "2025",
    "while",
    "costs",
    "fell",
    "customers",
    "asked",
    "for",
    "better",
    "search",
    "and",
    "faster",
    "answers",
    "about",
    "contracts",
    "invoices",
    "policies",
    "employees",
    "handbook",
    "section",
    "4.2",
    "describes",
    "how",
    "leave",
    "is",
    "requested",
    "approved",
    "managers",
    "must",
    "review",
    "within",
    "five",
    "days",
    "otherwise",
    "request",
    "escalates",
    "automatically",
    "to",
    "human",
    "resources",
];

/// A deterministic chunk of about 340 words (~400 tokens).
fn chunk(seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = String::new();
    for i in 0..340 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        out.push(if i % 17 == 16 { '.' } else { ' ' });
    }
    out
}

fn main() {
    let embedder = LocalEmbedder::default();
    let chunks: Vec<String> = (0..1_000).map(chunk).collect();
    let bytes: usize = chunks.iter().map(String::len).sum();
    let tokens = embedder.embed_now(&chunks[..10]).tokens / 10;
    println!(
        "{} chunks, {:.2} MB, ~{tokens} tokens per chunk, {} dimensions",
        chunks.len(),
        bytes as f64 / 1e6,
        embedder.dimensions()
    );

    // Warm-up (and the tokenizer's one-time load).
    let _ = embedder.embed_now(&chunks[..50]);

    let start = Instant::now();
    let mut checksum = 0.0f32;
    for c in &chunks {
        checksum += embedder.vector(c)[0];
    }
    report(
        "vectors",
        start.elapsed().as_secs_f64(),
        chunks.len(),
        bytes,
    );

    let start = Instant::now();
    let out = embedder.embed_now(&chunks);
    report(
        "vectors + token count",
        start.elapsed().as_secs_f64(),
        chunks.len(),
        bytes,
    );
    println!("(checksum {checksum:.4}, {} tokens)", out.tokens);

    let some = &chunks[..200];
    let some_bytes: usize = some.iter().map(String::len).sum();
    let minilm = MiniLmEmbedder::new();
    let start = Instant::now();
    minilm.warm().expect("the bundled model loads");
    println!(
        "quire-local-minilm: weights expanded in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let _ = minilm.embed_now(&some[..16]).expect("embeds");
    let start = Instant::now();
    let _ = minilm.embed_now(some).expect("embeds");
    report(
        "quire-local-minilm",
        start.elapsed().as_secs_f64(),
        some.len(),
        some_bytes,
    );

    let fixed = StaticEmbedder::new();
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../testkit/data/eval/founding-texts.json"))
            .expect("the golden set parses");
    let passages: Vec<String> = golden["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|d| d["text"].as_str().map(str::to_owned))
        .collect();
    let passage_bytes: usize = passages.iter().map(String::len).sum();
    let words: usize = passages.iter().map(|p| p.split_whitespace().count()).sum();
    let _ = minilm.embed_now(&some[..1]).expect("embeds");
    let start = Instant::now();
    let _ = fixed.embed_now(&passages).expect("embeds");
    let cold = start.elapsed().as_secs_f64();
    report("static, cold passages", cold, passages.len(), passage_bytes);
    println!(
        "{:>24}: {:>8.2} ms per word learnt (the common direction's {} function words included)",
        "static, cold",
        cold * 1e3 / fixed.computed_words().max(1) as f64,
        local_ai::STOP_WORDS.len()
    );
    println!(
        "({} passages, {words} words, {} distinct words learnt)",
        passages.len(),
        fixed.known_words()
    );
    // The cold cost per word, both ways, on the same words in the same run: one call per word
    // against one call for all (the same passes with pocket-encoder 0.1.2 as published; the
    // second is what a batching `embed` would speed up, docs/benchmarks.md).
    let mut distinct: Vec<String> = passages
        .iter()
        .flat_map(|p| {
            p.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty() && !local_ai::STOP_WORDS.contains(w))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    let encoder = pocket_encoder::Encoder::new().expect("the bundled model loads");
    let start = Instant::now();
    for w in &distinct {
        let _ = encoder.embed(&[w]).expect("embeds");
    }
    let alone = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let _ = encoder.embed(&distinct).expect("embeds");
    let together = start.elapsed().as_secs_f64();
    println!(
        "{:>24}: {:>8.2} ms/word one call each, {:.2} ms/word in one call ({} words, {:.1}x)",
        "cold word vectors",
        alone * 1e3 / distinct.len() as f64,
        together * 1e3 / distinct.len() as f64,
        distinct.len(),
        alone / together
    );
    let start = Instant::now();
    let _ = fixed.embed_now(&passages).expect("embeds");
    report(
        "static, warm passages",
        start.elapsed().as_secs_f64(),
        passages.len(),
        passage_bytes,
    );
    let _ = fixed.embed_now(&chunks[..50]).expect("embeds");
    let start = Instant::now();
    let _ = fixed.embed_now(&chunks).expect("embeds");
    report(
        "static, warm + count",
        start.elapsed().as_secs_f64(),
        chunks.len(),
        bytes,
    );

    if let Some(dir) = std::env::var_os("QUIRE_TEST_MINILM_PATH") {
        let start = Instant::now();
        let folder = SentenceEmbedder::load("all-minilm-l6-v2", std::path::Path::new(&dir))
            .expect("the folder loads");
        println!(
            "all-minilm-l6-v2 (folder): loaded in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        let _ = folder.embed_now(&some[..16]).expect("embeds");
        let start = Instant::now();
        let _ = folder.embed_now(some).expect("embeds");
        report(
            "all-minilm-l6-v2 folder",
            start.elapsed().as_secs_f64(),
            some.len(),
            some_bytes,
        );
    }
}

fn report(what: &str, secs: f64, chunks: usize, bytes: usize) {
    println!(
        "{what:>24}: {:>8.0} chunks/s {:>7.1} MB/s",
        chunks as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}
