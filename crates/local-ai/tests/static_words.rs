//! `quire-local-static`: word vectors distilled from the bundled model, at the n-gram model's
//! speed once its words are known.

use local_ai::{STATIC_MODEL, StaticEmbedder};
use retrieval::Embedder;

mod common;

use common::{DOCS, QUERIES, dot, ranked, strings};

#[tokio::test]
async fn the_static_model_finds_paraphrases_and_is_deterministic() {
    let e = StaticEmbedder::new();
    assert_eq!(e.model().name(), STATIC_MODEL);
    assert_eq!(e.model().dimensions(), 384);
    let docs = e.embed_now(&strings(DOCS)).unwrap().vectors;
    for (query, expected) in QUERIES {
        let q = &e.embed_now(&strings(&[query])).unwrap().vectors[0];
        let scored = ranked(q, &docs);
        assert_eq!(scored[0].0, *expected, "{query:?}: {scored:?}");
    }
    let out = e
        .embed(&strings(&[
            "hello world",
            "  ",
            "running shoes",
            "to be or not to be",
        ]))
        .await
        .unwrap();
    assert_eq!(out.vectors.len(), 4);
    assert!(
        out.vectors[1].iter().all(|x| *x == 0.0),
        "a blank text is the zero vector"
    );
    for i in [0, 2, 3] {
        let norm = dot(&out.vectors[i], &out.vectors[i]).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{i}: {norm}");
    }
    // cl100k_base tokens, as the n-gram model counts: 2 + 1 (the blank) + 2 + 6.
    assert_eq!(out.tokens, 11);
    // The same text gives the same vector alone, in a batch, and whatever was learnt since.
    let alone = e.embed_now(&strings(&["running shoes"])).unwrap().vectors;
    assert_eq!(alone[0], out.vectors[2]);
    let _ = e
        .embed_now(&strings(&["zebra quantum marmalade xylophone"]))
        .unwrap();
    let again = e.embed_now(&strings(&["running shoes"])).unwrap().vectors;
    assert_eq!(again[0], out.vectors[2]);
    assert!(e.known_words() >= 10);
}

/// Words of many lengths in word pieces (one to several pieces each), some in other scripts.
const WORDS: &[&str] = &[
    "cat",
    "dog",
    "budget",
    "committee",
    "windowsill",
    "afternoon",
    "vaccine",
    "hospital",
    "bicycle",
    "tyre",
    "patch",
    "marmalade",
    "xylophone",
    "quantum",
    "zebra",
    "photosynthesis",
    "antidisestablishmentarianism",
    "2025",
    "4b",
    "naïve",
    "café",
    "über",
    "日本語",
    "données",
    "running",
    "runner",
    "ran",
    "reconciliation",
    "invoice",
    "invoices",
    "kubernetes",
    "postgresql",
    "tokenizer",
    "embedding",
    "paraphrase",
    "thermodynamics",
    "lighthouse",
    "seaside",
    "forecast",
    "storm",
    "kitty",
    "nap",
    "immunisation",
    "elderly",
    "punctured",
    "wheel",
    "council",
    "yearly",
    "financial",
    "plan",
    "a1b2c3",
    "zzzzzz",
    "qwertyuiop",
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Words handed to the bundled model in one call: each word's vector is, bit for bit, the one
/// it gets alone (a batching pocket-encoder must keep this; docs/retrieval.md).
#[test]
fn a_batch_of_words_gives_each_word_its_vector_alone() {
    let encoder = pocket_encoder::Encoder::new().unwrap();
    let together = encoder.embed(WORDS).unwrap();
    assert_eq!(together.len(), WORDS.len());
    for (w, v) in WORDS.iter().zip(&together) {
        let alone = encoder.embed(&[w]).unwrap().remove(0);
        assert_eq!(bits(&alone), bits(v), "{w:?}");
    }
}

/// A word learnt in a batch of new words gets the same vector, bit for bit, as learnt alone:
/// two fresh tables, one learning each word in a call of its own, the other all at once.
#[test]
fn a_word_learnt_in_a_batch_is_the_word_learnt_alone() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alone = StaticEmbedder::saved_in(a.path());
    let batch = StaticEmbedder::saved_in(b.path());
    let texts = strings(WORDS);
    let all = batch.embed_now(&texts).unwrap().vectors;
    assert_eq!(batch.computed_words(), WORDS.len() as u64);
    for (t, v) in texts.iter().zip(&all) {
        let one = alone.embed_now(std::slice::from_ref(t)).unwrap().vectors;
        assert_eq!(bits(&one[0]), bits(v), "{t:?}");
    }
    assert_eq!(alone.computed_words(), WORDS.len() as u64);
}

/// Texts whose words the tests below learn and compare.
fn texts() -> Vec<String> {
    strings(&[DOCS[0], DOCS[1], DOCS[2], "zebra marmalade xylophone"])
}

fn same(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| bits(x) == bits(y))
}

/// The saved table spares a restart the model: a new embedder on the same folder reads it and
/// runs no word through the model, and gives the very same vectors.
#[test]
fn the_saved_table_spares_a_restart_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let first = StaticEmbedder::saved_in(dir.path());
    let before = first.embed_now(&texts()).unwrap().vectors;
    let learnt = first.computed_words();
    assert!(learnt >= 20, "{learnt}");
    first.flush().unwrap();
    let file = dir.path().join("quire-local-static.words");
    assert!(file.is_file());
    // Bounded: the words' vectors and little else.
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len < 400 + learnt * (49 + 384 * 4), "{len} bytes");

    let restarted = StaticEmbedder::saved_in(dir.path());
    assert_eq!(restarted.known_words(), 0, "nothing is read before a text");
    let after = restarted.embed_now(&texts()).unwrap().vectors;
    assert!(same(&before, &after));
    assert_eq!(restarted.computed_words(), 0);
    assert_eq!(restarted.known_words(), first.known_words());
    // A new word is still learnt.
    let _ = restarted.embed_now(&strings(&["lighthouse"])).unwrap();
    assert_eq!(restarted.computed_words(), 1);
}

/// The table is written by a thread of its own a few seconds after the last new word: the
/// embedding call returns without writing it.
#[test]
fn the_table_is_written_off_the_embedding_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quire-local-static.words");
    let e = StaticEmbedder::saved_in(dir.path());
    let v = e.embed_now(&texts()).unwrap().vectors;
    assert!(!file.exists(), "written during the call");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "never written");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let again = StaticEmbedder::saved_in(dir.path());
    assert!(same(&v, &again.embed_now(&texts()).unwrap().vectors));
    assert_eq!(again.computed_words(), 0);
}

/// The saved file's layout (`crates/local-ai/src/word_table.rs`): the header's end, and the
/// FNV-1a checksum that closes it.
fn header_end(bytes: &[u8]) -> usize {
    let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    12 + n + 8
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `bytes` with every vector replaced by a wrong one and, when `foreign`, another identity
/// (one byte of it changed), the checksum made right again.
fn poisoned(bytes: &[u8], foreign: bool) -> Vec<u8> {
    let mut out = bytes[..bytes.len() - 8].to_vec();
    if foreign {
        let n = u32::from_le_bytes([out[8], out[9], out[10], out[11]]) as usize;
        out[12 + n - 1] ^= 0x01;
    }
    let mut at = header_end(&out);
    while at < out.len() {
        let n = out[at] as usize;
        at += 1 + n;
        for x in 0..384 {
            let v: f32 = if x == 0 { 1.0 } else { 0.0 };
            out[at + x * 4..at + x * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        at += 384 * 4;
    }
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A saved table is read only when it is whole and was made by this model and algorithm:
/// truncated, corrupt, foreign (another program's file) or another model's tables are
/// ignored (logged) and rebuilt, never a crash and never a wrong vector. The control: the same
/// wrong vectors under this model's identity are read (so the identity is what refuses them).
#[test]
fn a_damaged_or_foreign_table_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quire-local-static.words");
    let first = StaticEmbedder::saved_in(dir.path());
    let right = first.embed_now(&texts()).unwrap().vectors;
    let learnt = first.computed_words();
    first.flush().unwrap();
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 3].to_vec()),
        ("cut by a byte", good[..good.len() - 1].to_vec()),
        ("a bit flipped", flipped),
        ("empty", Vec::new()),
        ("not a word table", b"{\"hello\": \"world\"}\n".to_vec()),
        ("another model or algorithm", poisoned(&good, true)),
    ];
    for (what, bytes) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let e = StaticEmbedder::saved_in(dir.path());
        let got = e.embed_now(&texts()).unwrap().vectors;
        assert!(same(&right, &got), "{what}: wrong vectors");
        assert_eq!(e.computed_words(), learnt, "{what}: not rebuilt");
        // Rebuilt: the file is replaced by a good one.
        e.flush().unwrap();
        let again = StaticEmbedder::saved_in(dir.path());
        assert!(same(&right, &again.embed_now(&texts()).unwrap().vectors));
        assert_eq!(again.computed_words(), 0, "{what}: not replaced");
    }
    // The control: wrong vectors under this identity are taken as they are.
    std::fs::write(&file, poisoned(&good, false)).unwrap();
    let e = StaticEmbedder::saved_in(dir.path());
    let got = e.embed_now(&texts()).unwrap().vectors;
    assert_eq!(e.computed_words(), 0);
    assert!(!same(&right, &got));
}

/// The vector leg alone on the golden sets of `crates/testkit/data/eval` (each question
/// against its set's passages, by cosine), for the local models: a quick look while tuning.
/// `cargo test -p local-ai --test static_words -- --ignored --nocapture vector_leg`
#[test]
#[ignore = "prints figures; run by hand"]
fn vector_leg_on_the_golden_sets() {
    use local_ai::{LocalEmbedder, MiniLmEmbedder};
    let sets = [
        include_str!("../../testkit/data/eval/founding-texts.json"),
        include_str!("../../testkit/data/eval/field-notes.json"),
    ];
    let fixed = StaticEmbedder::new();
    let ngram = LocalEmbedder::default();
    let minilm = MiniLmEmbedder::new();
    type Embed<'a> = Box<dyn Fn(&[String]) -> Vec<Vec<f32>> + 'a>;
    let models: Vec<(&str, Embed)> = vec![
        ("ngram", Box::new(|t| ngram.embed_now(t).vectors)),
        ("static", Box::new(|t| fixed.embed_now(t).unwrap().vectors)),
        ("minilm", Box::new(|t| minilm.embed_now(t).unwrap().vectors)),
    ];
    for set in sets {
        let set: serde_json::Value = serde_json::from_str(set).unwrap();
        let names: Vec<&str> = set["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        let texts: Vec<String> = set["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["text"].as_str().unwrap().to_owned())
            .collect();
        let cases: Vec<(String, usize)> = set["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| {
                let doc = c["expected_documents"].as_array()?.first()?.as_str()?;
                let at = names.iter().position(|n| *n == doc)?;
                Some((c["question"].as_str()?.to_owned(), at))
            })
            .collect();
        for (name, embed) in &models {
            let docs = embed(&texts);
            let questions: Vec<String> = cases.iter().map(|(q, _)| q.clone()).collect();
            let qs = embed(&questions);
            let (mut r1, mut r5, mut mrr) = (0.0, 0.0, 0.0);
            for (q, (_, at)) in qs.iter().zip(&cases) {
                let mine = dot(q, &docs[*at]);
                let rank = docs.iter().filter(|d| dot(q, d) > mine).count();
                if rank == 0 {
                    r1 += 1.0;
                }
                if rank < 5 {
                    r5 += 1.0;
                }
                if rank < 10 {
                    mrr += 1.0 / (rank as f64 + 1.0);
                }
            }
            let n = cases.len() as f64;
            println!(
                "{} {name}: R@1 {:.3} R@5 {:.3} MRR@10 {:.3} ({} cases)",
                set["name"],
                r1 / n,
                r5 / n,
                mrr / n,
                cases.len()
            );
        }
    }
}
