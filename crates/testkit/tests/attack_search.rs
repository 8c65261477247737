//! Attacks on keyword search across tenants, black-box through HTTP, on both backends (SQLite
//! with the in-process cache, PostgreSQL with Redis): a tenant's keyword scores must not move
//! with another tenant's text (they would tell how often the other uses a word), and the rule
//! that leaves out words found in most chunks must count only the searcher's own chunks (or
//! another tenant could flood a word and hide it).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

async fn keyword(app: &TestApp, token: &str, org: &str, query: &str) -> Value {
    let (status, found) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": query, "mode": "keyword", "top_k": 20})),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {found}");
    found
}

/// `(chunk_id, score)` of each hit, in order.
fn ranking(found: &Value) -> Vec<(String, f64)> {
    found["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["chunk_id"].as_str().expect("chunk_id").to_owned(),
                r["score"].as_f64().expect("score"),
            )
        })
        .collect()
}

fn document_ids(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["document_id"].as_str().map(str::to_owned))
        .collect()
}

/// Feeds `texts` through `POST /vector/ingest` (100 a request) and waits until every
/// document is ready.
async fn ingest(app: &TestApp, token: &str, org: &str, collection: &str, texts: &[String]) {
    let mut ids = Vec::new();
    for batch in texts.chunks(100) {
        let documents: Vec<Value> = batch.iter().map(|t| json!({"content": t})).collect();
        let (status, queued) = app
            .call_in(
                token,
                Method::POST,
                "/api/v1/vector/ingest",
                Some(json!({"collection_id": collection, "documents": documents})),
                Some(org),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        ids.extend(
            queued["documents"]
                .as_array()
                .expect("documents")
                .iter()
                .filter_map(|d| d["document_id"].as_str().map(str::to_owned)),
        );
    }
    for id in ids {
        let doc = app.settled(token, org, &id).await;
        assert_eq!(doc["status"], "ready", "{doc}");
    }
}

/// Enough workers to ingest a thousand small texts quickly.
fn options(production: bool) -> TestOptions {
    let base = if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    };
    base.tweak(|s| s.documents.workers = 4)
}

async fn other_tenants_words_do_not_change_my_scores(app: &TestApp) {
    let (bob, beta) = app.owner("bob").await;
    let deals = app.collection(&bob, &beta, "Deals").await;
    app.ready_document(
        &bob,
        &beta,
        "deals.txt",
        "Globex merger plan for the quarter.\n\nNotes on the Globex account and its plan.\n\n\
         A plan without the company name.",
        &deals,
    )
    .await;
    let before = ranking(&keyword(app, &bob, &beta, "globex plan").await);
    assert!(!before.is_empty());

    // Another tenant writes the same words, often, in texts of other lengths.
    let (ann, acme) = app.owner("ann").await;
    let flood = app.collection(&ann, &acme, "Flood").await;
    let texts: Vec<String> = (0..60)
        .map(|i| {
            if i % 2 == 0 {
                format!("globex {i}")
            } else {
                format!(
                    "Globex plan, Globex report number {i}, a much longer text than Bob's notes"
                )
            }
        })
        .collect();
    ingest(app, &ann, &acme, &flood, &texts).await;

    let after = ranking(&keyword(app, &bob, &beta, "globex plan").await);
    assert_eq!(
        after, before,
        "Bob's keyword scores moved with Ann's documents"
    );
}

async fn flooding_a_word_cannot_hide_it_from_another_tenant(app: &TestApp) {
    let (ann, acme) = app.owner("ann").await;
    let legal = app.collection(&ann, &acme, "Legal").await;
    let contract = app
        .ready_document(
            &ann,
            &acme,
            "contract.txt",
            "The Globex contract is signed.",
            &legal,
        )
        .await;

    // Bob puts the word into far more than a tenth of all chunks (and over the thousand
    // chunks from which common words are left out).
    let (bob, beta) = app.owner("bob").await;
    let spam = app.collection(&bob, &beta, "Spam").await;
    let texts: Vec<String> = (0..1_100).map(|i| format!("globex globex {i}")).collect();
    ingest(app, &bob, &beta, &spam, &texts).await;

    for query in ["globex", "globex quarterly"] {
        let found = keyword(app, &ann, &acme, query).await;
        assert_eq!(
            document_ids(&found),
            [contract.as_str()],
            "{query:?}: Bob's flood hid Ann's word: {found}"
        );
    }
}

#[tokio::test]
async fn other_tenants_words_do_not_change_my_scores_on_sqlite() {
    let app = spawn_app_with(options(false)).await;
    other_tenants_words_do_not_change_my_scores(&app).await;
}

#[tokio::test]
async fn other_tenants_words_do_not_change_my_scores_on_postgres() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    let app = spawn_app_with(options(true)).await;
    other_tenants_words_do_not_change_my_scores(&app).await;
}

#[tokio::test]
async fn flooding_a_word_cannot_hide_it_from_another_tenant_on_sqlite() {
    let app = spawn_app_with(options(false)).await;
    flooding_a_word_cannot_hide_it_from_another_tenant(&app).await;
}

#[tokio::test]
async fn flooding_a_word_cannot_hide_it_from_another_tenant_on_postgres() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    let app = spawn_app_with(options(true)).await;
    flooding_a_word_cannot_hide_it_from_another_tenant(&app).await;
}
