//! The embedding models a deployment offers (`quire::embedders`): the n-gram model, the bundled
//! semantic `quire-local-minilm`, the static `quire-local-static` distilled from it, and
//! sentence-transformers folders of
//! `retrieval.local_models`, loaded and checked at start; `retrieval.embedder` picks the
//! default.

use std::path::PathBuf;

use settings::{EmbedderKind, LocalModelSettings, Settings};

fn names(settings: &Settings) -> (String, Vec<String>) {
    let e = quire::embedders(settings).expect("the embedders");
    let default = e.default_embedder().model().name().to_owned();
    let all = e.models().iter().map(|m| m.name().to_owned()).collect();
    (default, all)
}

#[test]
fn the_ngram_model_is_the_default_and_the_bundled_models_are_always_offered() {
    let (default, all) = names(&Settings::default());
    assert_eq!(default, "quire-local-ngram-384");
    assert_eq!(
        all,
        [
            "quire-local-ngram-384",
            "quire-local-minilm",
            "quire-local-static"
        ]
    );
}

#[test]
fn retrieval_embedder_minilm_makes_the_bundled_model_the_default() {
    let mut s = Settings::default();
    s.retrieval.embedder = EmbedderKind::Minilm;
    let (default, all) = names(&s);
    assert_eq!(default, "quire-local-minilm");
    assert!(all.contains(&"quire-local-ngram-384".to_owned()), "{all:?}");
}

#[test]
fn retrieval_embedder_static_makes_the_distilled_model_the_default() {
    let mut s = Settings::default();
    s.retrieval.embedder = EmbedderKind::Static;
    let (default, all) = names(&s);
    assert_eq!(default, "quire-local-static");
    assert!(all.contains(&"quire-local-minilm".to_owned()), "{all:?}");
    // The setting's spelling, and a local model may not take it as its name.
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("quire.toml");
    std::fs::write(&file, "[retrieval]\nembedder = \"static\"\n").expect("written");
    let loaded = Settings::load(Some(&file)).expect("loads");
    assert_eq!(loaded.retrieval.embedder, EmbedderKind::Static);
    std::fs::write(&file, "[retrieval.local_models.static]\npath = \"/x\"\n").expect("written");
    let err = Settings::load(Some(&file))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("static"), "{err}");
}

#[test]
fn a_bad_local_model_folder_fails_the_start_naming_the_setting() {
    let mut s = Settings::default();
    s.retrieval.local_models.insert(
        "mine".to_owned(),
        LocalModelSettings {
            path: PathBuf::from("/nonexistent/model"),
        },
    );
    let err = format!("{:#}", quire::embedders(&s).expect_err("a missing folder"));
    assert!(err.contains("retrieval.local_models.mine.path"), "{err}");
    assert!(err.contains("/nonexistent/model is not a folder"), "{err}");
}

#[test]
fn settings_refuse_a_default_that_names_no_model() {
    let toml = "[retrieval]\nembedder = \"nope\"\n";
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("quire.toml");
    std::fs::write(&file, toml).expect("written");
    let err = Settings::load(Some(&file))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("retrieval.embedder = \"nope\""), "{err}");
    let toml = "[retrieval.local_models.quire-local-x]\npath = \"/x\"\n";
    std::fs::write(&file, toml).expect("written");
    let err = Settings::load(Some(&file))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("quire-local-"), "{err}");
}

#[test]
fn a_folder_model_can_be_the_default() {
    let Some(path) = std::env::var_os("QUIRE_TEST_MINILM_PATH") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "QUIRE_TEST_MINILM_PATH is not set: .ci/run installs the model folder"
        );
        return;
    };
    let mut s = Settings::default();
    s.retrieval.local_models.insert(
        "all-minilm-l6-v2".to_owned(),
        LocalModelSettings { path: path.into() },
    );
    s.retrieval.embedder = EmbedderKind::Named("all-minilm-l6-v2".to_owned());
    let (default, all) = names(&s);
    assert_eq!(default, "all-minilm-l6-v2");
    assert_eq!(
        all,
        [
            "all-minilm-l6-v2",
            "quire-local-ngram-384",
            "quire-local-minilm",
            "quire-local-static"
        ]
    );
}
