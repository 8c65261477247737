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
    assert!(StaticEmbedder::known_words() >= 10);
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
