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

/// `POST /search` of `collection` (hybrid, as an answer searches): the status and the body.
async fn search_in(
    app: &TestApp,
    token: &str,
    org: &str,
    collection: &str,
    query: &str,
) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::POST,
        "/api/v1/search",
        Some(json!({"query": query, "collection_ids": [collection], "top_k": 8})),
        Some(org),
    )
    .await
}

const RECEIPTS: &str = "Receipts must be uploaded within thirty days of the trip. Late receipts \
are not refunded.";

/// A search reuses its collection check and its spaces list for `auth.recheck_ms`
/// (`retrieval::recent`); none of that may let anyone see what they should not: another
/// organization naming the same collection id is refused while the owner's check is kept; a
/// member removed is refused at once; a collection deleted through this server is refused at
/// once (the delete goes through the port that forgets); a deleted document is never found.
async fn what_a_search_reuses_never_outlives_a_change_here(app: &TestApp) {
    let (ann, org) = app.owner("ann").await;
    let handbook = app.collection(&ann, &org, "Handbook").await;
    let receipts = app
        .ready_document(&ann, &org, "receipts.txt", RECEIPTS, &handbook)
        .await;
    let (s, found) = search_in(app, &ann, &org, &handbook, "receipts thirty days").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(document_ids(&found), [receipts.as_str()], "{found}");

    // Another organization names the collection while Ann's check is kept.
    let (zed, zed_org) = app.owner("zed").await;
    let (s, refused) = search_in(app, &zed, &zed_org, &handbook, "receipts").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another tenant's collection: {refused}"
    );

    // A member searches (her check kept), is removed, and is refused at once.
    let (bea, bea_id) = app.join(&ann, &org, "bea", "member").await;
    let (s, found) = search_in(app, &bea, &org, &handbook, "receipts").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let (s, _) = app
        .call(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/ann/members/{bea_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, refused) = search_in(app, &bea, &org, &handbook, "receipts").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a removed member: {refused}");

    // A deleted document is never found, kept checks or not.
    let (s, found) = search_in(app, &ann, &org, &handbook, "receipts").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/documents/{receipts}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, found) = search_in(app, &ann, &org, &handbook, "receipts thirty days").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert!(
        document_ids(&found).is_empty(),
        "a deleted document: {found}"
    );

    // A new collection's first document makes its space through this server: a vector
    // search asked all along (its empty spaces list kept each time) finds it once it is ready.
    let fresh = app.collection(&ann, &org, "Fresh").await;
    let (s, up) = app
        .upload(&ann, &org, "fresh.txt", RECEIPTS.as_bytes(), Some(&fresh))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let doc = up["document"]["id"]
        .as_str()
        .expect("a document id")
        .to_owned();
    let vector =
        json!({"query": "receipts thirty days", "collection_ids": [fresh], "mode": "vector"});
    loop {
        let (s, found) = app
            .call_in(
                &ann,
                Method::POST,
                "/api/v1/search",
                Some(vector.clone()),
                Some(&org),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        let (s, d) = app
            .call_in(
                &ann,
                Method::GET,
                &format!("/api/v1/documents/{doc}"),
                None,
                Some(&org),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        if d["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (s, found) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/search",
            Some(vector),
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(
        document_ids(&found),
        [doc.as_str()],
        "a new space shows at once: {found}"
    );

    // The collection is deleted through this server (its check kept just before): refused
    // at once.
    let (s, found) = search_in(app, &ann, &org, &handbook, "receipts").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/collections/{handbook}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, refused) = search_in(app, &ann, &org, &handbook, "receipts").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a deleted collection: {refused}");
}

/// The recheck time of these tests: long enough that every step above runs within it.
fn remembering(production: bool) -> TestOptions {
    options(production).tweak(|s| s.auth.recheck_ms = 1_000)
}

#[tokio::test]
async fn what_a_search_reuses_never_outlives_a_change_here_on_sqlite() {
    let app = spawn_app_with(remembering(false)).await;
    what_a_search_reuses_never_outlives_a_change_here(&app).await;
}

#[tokio::test]
async fn what_a_search_reuses_never_outlives_a_change_here_on_postgres() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    let app = spawn_app_with(remembering(true)).await;
    what_a_search_reuses_never_outlives_a_change_here(&app).await;
}

/// A collection deleted through another server (here a second server over the same SQLite
/// file) is refused within `auth.recheck_ms` of the delete; meanwhile its text is never found.
#[tokio::test]
async fn a_collection_deleted_elsewhere_is_refused_within_the_bound() {
    let a = spawn_app_with(remembering(false)).await;
    let b = a.sibling(None).await;
    let (ann, org) = a.owner("ann").await;
    let handbook = a.collection(&ann, &org, "Handbook").await;
    let receipts = a
        .ready_document(&ann, &org, "receipts.txt", RECEIPTS, &handbook)
        .await;
    let (s, found) = search_in(&b, &ann, &org, &handbook, "receipts thirty days").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(document_ids(&found), [receipts.as_str()], "{found}");
    let started = std::time::Instant::now();
    let (s, _) = a
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/collections/{handbook}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    loop {
        let (s, found) = search_in(&b, &ann, &org, &handbook, "receipts thirty days").await;
        if s == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(s, StatusCode::OK, "{found}");
        assert!(
            document_ids(&found).is_empty(),
            "a deleted collection's text: {found}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1_500),
            "still searched on the other server after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("the other server refused after {:?}", started.elapsed());
}
