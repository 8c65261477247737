//! `quire eval FILE`: a golden set file run against a deployment's indexes through the use
//! case of `POST /evaluations`, stored and printed; on SQLite and on PostgreSQL + Redis. Its
//! figures are the route's; a non-member and an unknown document name are refused.

use std::process::Output;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

mod common;

const GOLDEN: &str = include_str!("../../../crates/testkit/data/eval/field-notes.json");

async fn eval(app: &TestApp, file: &std::path::Path, extra: &[&str]) -> Output {
    let s = &app.settings;
    let mut cmd = common::quire();
    cmd.arg("eval")
        .arg(file)
        .args(extra)
        .arg("--data-dir")
        .arg(&s.data_dir)
        .env("QUIRE_LOG__FILTER", "warn");
    if let Some(url) = &s.database.url {
        cmd.env("QUIRE_DATABASE__URL", url.expose_secret());
    }
    if let Some(schema) = &s.database.schema {
        cmd.env("QUIRE_DATABASE__SCHEMA", schema);
    }
    cmd.output().await.expect("quire eval runs")
}

async fn scenario(app: &TestApp) {
    let (token, org) = app.owner("evalcli").await;
    let collection = app.collection(&token, &org, "Notes").await;
    let golden: Value = serde_json::from_str(GOLDEN).expect("json");
    let docs = golden["documents"].as_array().expect("documents");
    let body = json!({
        "collection_id": collection,
        "documents": docs.iter().map(|d| json!({"content": d["text"], "metadata": {"title": d["name"]}})).collect::<Vec<_>>(),
    });
    let (status, out) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/vector/ingest",
            Some(body),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    for d in out["documents"].as_array().expect("ids") {
        let doc = app
            .settled(&token, &org, d["document_id"].as_str().expect("id"))
            .await;
        assert_eq!(doc["status"], "ready", "{doc}");
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("golden.json");
    std::fs::write(&file, GOLDEN).expect("written");

    let run = eval(
        app,
        &file,
        &[
            "--org",
            "evalcli",
            "--as",
            "evalcli@example.com",
            "--collection",
            &collection,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("48 questions"), "{stdout}");
    for mode in ["keyword", "vector", "hybrid"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(mode)),
            "{mode}: {stdout}"
        );
    }

    // Stored as the route stores a run, with the figures the route gives for the same set.
    let (status, page) = app
        .call_in(&token, Method::GET, "/api/v1/evaluations", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let stored = &page["items"][0];
    assert_eq!(stored["collection_ids"], json!([collection]));
    assert!(
        stdout.contains(stored["id"].as_str().expect("id")),
        "{stdout}"
    );
    let (status, cases) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/evaluations/{}", stored["id"].as_str().expect("id")),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cases}");
    let (status, via_route) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/evaluations",
            Some(json!({"collection_ids": [collection], "cases": cases["cases"]})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{via_route}");
    assert_eq!(stored["results"], via_route["results"]);
    let r1 = via_route["results"]["keyword"]["recall_at_1"]
        .as_f64()
        .expect("figure");
    assert!(stdout.contains(&format!("{r1:.3}")), "{stdout}");

    // Someone who is not an admin of the organization cannot run it as themself; an unknown
    // name or organization is an error, not a run with fewer targets.
    let (_stranger, _) = app.owner("stranger").await;
    let refused = eval(
        app,
        &file,
        &["--org", "evalcli", "--as", "stranger@example.com"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a member"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut renamed = golden.clone();
    renamed["cases"][0]["expected_documents"] = json!(["missing.txt"]);
    std::fs::write(&file, renamed.to_string()).expect("written");
    let missing = eval(
        app,
        &file,
        &["--org", "evalcli", "--as", "evalcli@example.com"],
    )
    .await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no document named \"missing.txt\""),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let nowhere = eval(
        app,
        &file,
        &["--org", "nowhere", "--as", "evalcli@example.com"],
    )
    .await;
    assert!(!nowhere.status.success());
    let (status, page) = app
        .call_in(&token, Method::GET, "/api/v1/evaluations", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(2),
        "only the two runs: {page}"
    );
}

#[tokio::test]
async fn eval_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn eval_on_postgres_and_redis() {
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
