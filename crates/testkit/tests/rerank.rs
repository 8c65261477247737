//! Reranking (issue 18), on SQLite and on PostgreSQL + Redis, against the fake provider's
//! `/rerank` (which ranks documents in reverse): off by default; a collection's
//! `rerank_top_n` reorders the first N fused results and leaves the rest; the provider's
//! tokens are metered; a hanging, failing or garbled reranker leaves the fused order (the
//! search still answers 200); evaluations record whether they reranked.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::{TestApp, TestOptions, spawn_app_with};

fn ids(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|h| h["chunk_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn search(app: &TestApp, token: &str, org: &str, collection: &str) -> Vec<String> {
    let (status, found) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/search",
            Some(
                json!({"query": "lighthouse keeper", "collection_ids": [collection],
                        "mode": "keyword", "top_k": 4}),
            ),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    ids(&found)
}

fn reranks(fake: &FakeOpenAi) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/v1/rerank")
        .count()
}

async fn scenario(app: &TestApp, fake: &FakeOpenAi) {
    let (token, org) = app.owner("ann").await;
    let collection = app.collection(&token, &org, "Coast").await;
    for (name, text) in [
        (
            "a.txt",
            "The lighthouse keeper lit the lamp. The lighthouse keeper slept.",
        ),
        ("b.txt", "A lighthouse keeper keeps the lighthouse."),
        ("c.txt", "The keeper of the lighthouse wrote a log."),
        ("d.txt", "Ships passed the lighthouse at night."),
        ("e.txt", "The harbour had a lighthouse."),
    ] {
        app.ready_document(&token, &org, name, text, &collection)
            .await;
    }
    let fused = search(app, &token, &org, &collection).await;
    assert_eq!(fused.len(), 4);
    assert_eq!(reranks(fake), 0, "reranking is off by default");

    // Out of range: 422.
    for bad in [json!(0), json!(151), json!(-1)] {
        let (status, problem) = app
            .call_in(
                &token,
                Method::PATCH,
                &format!("/api/v1/collections/{collection}"),
                Some(json!({"rerank_top_n": bad})),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
    }
    let (status, patched) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{collection}"),
            Some(json!({"rerank_top_n": 3})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rerank_top_n"], 3);

    // The first three come back in the reranker's (reverse) order; the fourth stays.
    let reranked = search(app, &token, &org, &collection).await;
    assert_eq!(
        reranked,
        [&fused[2], &fused[1], &fused[0], &fused[3]].map(String::clone),
        "fused {fused:?}"
    );
    assert_eq!(reranks(fake), 1);
    let sent: Value = fake
        .requests()
        .iter()
        .rfind(|r| r.path == "/v1/rerank")
        .expect("a rerank request")
        .body
        .clone();
    assert_eq!(sent["top_n"], 3);
    assert_eq!(sent["query"], "lighthouse keeper");
    assert_eq!(sent["documents"].as_array().map(Vec::len), Some(3));

    // Metered: the provider's 30 tokens under the rerank model.
    let (status, usage) = app
        .call_in(&token, Method::GET, "/api/v1/usage", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert!(usage.to_string().contains("rerank-v3.5"), "{usage}");

    // A reranker that hangs, fails or garbles: the fused order, 200, within the timeout.
    for fault in [
        Fault::Hang,
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Fault::Malformed,
        Fault::Drop,
    ] {
        fake.push_faults([fault]);
        let started = Instant::now();
        let order = search(app, &token, &org, &collection).await;
        assert_eq!(order, fused, "the fused order stands");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(fake.pending_faults(), 0);
    }

    // Evaluations record it, and can measure without it.
    let doc = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/documents?limit=1",
            None,
            Some(&org),
        )
        .await
        .1["items"][0]["id"]
        .clone();
    for (rerank, recorded) in [(None, true), (Some(false), false)] {
        let mut body = json!({"collection_ids": [collection], "modes": ["keyword"],
                              "cases": [{"question": "lighthouse keeper",
                                         "expected_document_ids": [doc]}]});
        if let Some(r) = rerank {
            body["rerank"] = json!(r);
        }
        let (status, e) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/evaluations",
                Some(body),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{e}");
        assert_eq!(e["rerank"], recorded, "{e}");
    }

    // Off again.
    let (status, patched) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{collection}"),
            Some(json!({"rerank_top_n": null})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched["rerank_top_n"].is_null());
    let before = reranks(fake);
    assert_eq!(search(app, &token, &org, &collection).await, fused);
    assert_eq!(reranks(fake), before);
}

#[tokio::test]
async fn reranking_on_sqlite() {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        reranker: Some(fake.base_url()),
        ..TestOptions::default()
    })
    .await;
    scenario(&app, &fake).await;
}

#[tokio::test]
async fn reranking_on_postgres_and_redis() {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        reranker: Some(fake.base_url()),
        ..TestOptions::production()
    })
    .await;
    scenario(&app, &fake).await;
}
