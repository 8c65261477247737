//! Retrieval over HTTP: uploaded documents become searchable in all three modes on every
//! backend (SQLite with the embedded index; PostgreSQL without pgvector, which falls back to
//! the embedded index; PostgreSQL with pgvector), `POST /embeddings` speaks OpenAI's shape,
//! `POST /vector/ingest` feeds the same pipeline, and a collection whose embedding model
//! changes re-embeds in the background without search ever failing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::FakeOpenAi;
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

const HANDBOOK: &str = "Travel policy.\n\nEmployees book flights through the travel desk. \
Economy class is the rule for flights under six hours.\n\nExpenses.\n\nReceipts must be \
uploaded within thirty days. Meals abroad are reimbursed up to a daily allowance.";
const GARDEN: &str = "Gardening notes.\n\nTomatoes need full sun and deep watering twice a \
week. Basil grows well beside tomatoes and keeps pests away.";

async fn search(app: &TestApp, token: &str, tenant: &str, body: Value) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::POST,
        "/api/v1/search",
        Some(body),
        Some(tenant),
    )
    .await
}

fn names(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|h| h["document_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A collection with the handbook and the garden notes, both ready.
async fn seeded(app: &TestApp, who: &str) -> (String, String, String, String, String) {
    let (token, org) = app.owner(who).await;
    let collection = app.collection(&token, &org, "Handbook").await;
    let handbook = app
        .ready_document(&token, &org, "handbook.txt", HANDBOOK, &collection)
        .await;
    let garden = app
        .ready_document(&token, &org, "garden.md", GARDEN, &collection)
        .await;
    (token, org, collection, handbook, garden)
}

async fn scenario(app: &TestApp) {
    let (token, org, collection, handbook, garden) = seeded(app, "ann").await;

    // Every mode finds the right document first, with the fields the contract names.
    for (mode, query) in [
        ("hybrid", "how many days to upload receipts"),
        ("vector", "receipts for expenses"),
        ("keyword", "receipts"),
    ] {
        let (status, found) =
            search(app, &token, &org, json!({"query": query, "mode": mode})).await;
        assert_eq!(status, StatusCode::OK, "{mode}: {found}");
        let first = &found["results"][0];
        assert_eq!(first["document_id"], handbook.as_str(), "{mode}: {found}");
        assert_eq!(first["document_name"], "handbook.txt");
        assert_eq!(first["collection_id"], collection.as_str());
        assert_eq!(first["ordinal"], 0);
        assert!(first["chunk_id"].as_str().is_some_and(|c| c.len() == 36));
        assert!(
            first["text"]
                .as_str()
                .is_some_and(|t| t.contains("Receipts"))
        );
        assert!(first["score"].as_f64().is_some_and(|s| s > 0.0), "{found}");
    }
    let (_, found) = search(app, &token, &org, json!({"query": "tomatoes and basil"})).await;
    assert_eq!(
        found["results"][0]["document_id"],
        garden.as_str(),
        "{found}"
    );
    // Hybrid scores are fused ranks in 0..1, best first.
    let scores: Vec<f64> = found["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["score"].as_f64())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0), "{scores:?}");

    // top_k, min_score, the collection filter.
    let (_, found) = search(app, &token, &org, json!({"query": "flights", "top_k": 1})).await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let (_, found) = search(
        app,
        &token,
        &org,
        json!({"query": "flights", "mode": "vector", "min_score": 0.99}),
    )
    .await;
    assert_eq!(found["results"], json!([]), "{found}");
    let (status, other) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "Empty"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, found) = search(
        app,
        &token,
        &org,
        json!({"query": "receipts", "collection_ids": [other["id"]]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["results"], json!([]), "another collection: {found}");
    let (status, found) = search(
        app,
        &token,
        &org,
        json!({"query": "receipts", "collection_ids": ["0190b6f2-7c1a-7000-8000-000000000000"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{found}");

    // Bad input: 422 naming the fields, in one answer.
    let (status, err) = search(
        app,
        &token,
        &org,
        json!({"query": " ", "top_k": 51, "mode": "fuzzy", "collection_ids": ["nope"], "filter": {"a": [1]}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let fields: Vec<&str> = err["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    for f in ["query", "top_k", "mode", "collection_ids[0]", "filter.a"] {
        assert!(fields.contains(&f), "{f} missing from {err}");
    }
    let (status, _) = search(app, &token, &org, json!({"query": "x", "top_k": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Queries that look like FTS syntax are just words.
    for q in [
        "\"",
        "NEAR(receipts",
        "a:b OR *",
        ")'; DROP TABLE chunks; --",
    ] {
        let (status, found) =
            search(app, &token, &org, json!({"query": q, "mode": "keyword"})).await;
        assert_eq!(status, StatusCode::OK, "{q}: {found}");
    }

    // Plain texts through /vector/ingest, with metadata to filter on.
    let (status, queued) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/vector/ingest",
            Some(json!({"collection_id": collection, "documents": [
                {"content": "The cafeteria serves vegetarian lunch on Fridays.", "metadata": {"title": "Cafeteria", "lang": "en", "year": 2024}},
                {"content": "La cafétéria sert un déjeuner végétarien le vendredi.", "metadata": {"title": "Cafétéria", "lang": "fr", "year": 2024}}
            ]})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let queued = queued["documents"].as_array().expect("documents").clone();
    assert_eq!(queued.len(), 2);
    for d in &queued {
        let id = d["document_id"].as_str().expect("id");
        assert!(d["job_id"].is_string(), "{d}");
        let doc = app.settled(&token, &org, id).await;
        assert_eq!(doc["status"], "ready", "{doc}");
        assert_eq!(doc["format"], "text", "{doc}");
    }
    let (_, found) = search(
        app,
        &token,
        &org,
        json!({"query": "vegetarian lunch", "filter": {"lang": "fr"}}),
    )
    .await;
    assert_eq!(names(&found), ["Cafétéria"], "{found}");
    let (_, found) = search(
        app,
        &token,
        &org,
        json!({"query": "vegetarian lunch", "filter": {"year": 2024}, "mode": "keyword"}),
    )
    .await;
    assert_eq!(
        names(&found),
        ["Cafeteria"],
        "keyword needs the words: {found}"
    );
    let (_, found) = search(
        app,
        &token,
        &org,
        json!({"query": "vegetarian lunch", "filter": {"year": "2024"}}),
    )
    .await;
    assert_eq!(
        found["results"],
        json!([]),
        "a string is not a number: {found}"
    );
    for bad in [
        json!({"collection_id": collection, "documents": []}),
        json!({"collection_id": collection, "documents": [{"content": "  "}]}),
        json!({"collection_id": "nope", "documents": [{"content": "x"}]}),
        json!({"collection_id": collection, "documents": [{"content": "x", "metadata": {"k": "v".repeat(17_000)}}]}),
    ] {
        let (status, err) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/vector/ingest",
                Some(bad.clone()),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
    }
    let (status, _) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/vector/ingest",
            Some(json!({"collection_id": "0190b6f2-7c1a-7000-8000-000000000000", "documents": [{"content": "x"}]})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A deleted document leaves every mode at once.
    let (status, _) = app
        .call_in(
            &token,
            Method::DELETE,
            &format!("/api/v1/documents/{garden}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for mode in ["hybrid", "vector", "keyword"] {
        let (_, found) = search(
            app,
            &token,
            &org,
            json!({"query": "tomatoes basil", "mode": mode, "top_k": 50}),
        )
        .await;
        assert!(
            !found.to_string().contains(&garden),
            "{mode} still finds a deleted document: {found}"
        );
    }
    // A reindexed document is found through its new chunks only.
    let (status, re) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/documents/{handbook}/reindex"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{re}");
    let doc = app.settled(&token, &org, &handbook).await;
    assert_eq!(doc["status"], "ready");
    let (_, chunks) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/documents/{handbook}/chunks"),
            None,
            Some(&org),
        )
        .await;
    let current: Vec<&str> = chunks["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for mode in ["vector", "keyword"] {
        let (_, found) = search(
            app,
            &token,
            &org,
            json!({"query": "receipts travel flights", "mode": mode, "top_k": 50}),
        )
        .await;
        let got: Vec<&str> = found["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| r["document_id"] == handbook.as_str())
            .filter_map(|r| r["chunk_id"].as_str())
            .collect();
        assert!(!got.is_empty(), "{mode}: {found}");
        assert!(
            got.iter().all(|c| current.contains(c)),
            "{mode} returned a chunk replaced by the reindex: {got:?} vs {current:?}"
        );
    }

    // The embeddings route answers in the same tenant after all of it.
    let (status, _) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": "hi"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn embeddings(app: &TestApp) {
    let (token, org) = app.owner("eve").await;
    let (status, out) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": ["first text", "second text"]})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["object"], "list");
    assert_eq!(out["model"], "quire-local-ngram-384");
    let data = out["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        let v: Vec<f64> = d["embedding"]
            .as_array()
            .expect("floats")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "normalized: {norm}");
    }
    assert!(
        out["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|t| t >= 4),
        "{out}"
    );
    assert_eq!(out["usage"]["prompt_tokens"], out["usage"]["total_tokens"]);
    // One string, base64 as OpenAI's SDKs ask by default.
    let (status, b64) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": "first text", "encoding_format": "base64"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b64}");
    let encoded = b64["data"][0]["embedding"].as_str().expect("base64");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("valid base64");
    assert_eq!(bytes.len(), 384 * 4);
    let first = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let want = out["data"][0]["embedding"][0].as_f64().expect("float");
    assert!((f64::from(first) - want).abs() < 1e-6);
    for (bad, field) in [
        (json!({"input": []}), "input"),
        (json!({"input": [""]}), "input[0]"),
        (json!({"input": "x", "model": "gpt-unknown"}), "model"),
        (json!({"input": "x", "dimensions": 12}), "dimensions"),
        (
            json!({"input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
    ] {
        let (status, err) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/embeddings",
                Some(bad.clone()),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert!(err.to_string().contains(field), "{bad}: {err}");
    }
    let (status, err) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": "x", "model": "gpt-unknown"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err.to_string().contains("quire-local-ngram-384"),
        "lists the models: {err}"
    );
}

#[tokio::test]
async fn search_embeddings_and_ingest_on_sqlite() {
    let app = spawn_app().await;
    scenario(&app).await;
    embeddings(&app).await;
}

#[tokio::test]
async fn search_embeddings_and_ingest_on_postgres_without_pgvector() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    scenario(&app).await;
    embeddings(&app).await;
}

#[tokio::test]
async fn search_on_postgres_with_pgvector() {
    if testkit::pgvector_url().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the pgvector tests: .ci/run exports QUIRE_TEST_PGVECTOR_URL"
        );
        eprintln!("SKIPPED (pgvector): QUIRE_TEST_PGVECTOR_URL is not set");
        return;
    }
    let app = spawn_app_with(TestOptions {
        postgres: true,
        pgvector: true,
        ..TestOptions::default()
    })
    .await;
    scenario(&app).await;
}

/// Changing a collection's model re-embeds in the background through the provider; search
/// answers throughout and ends up in the new space.
#[tokio::test]
async fn a_new_embedding_model_re_embeds_in_the_background() {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
        tweaks: vec![|s| s.provider.embedding_dimensions = Some(64)],
        ..TestOptions::default()
    })
    .await;
    let (token, org, collection, handbook, _) = seeded(&app, "max").await;
    let before = fake.requests().len();
    // An unknown model is refused, listing the ones there are.
    let (status, err) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{collection}"),
            Some(json!({"embedding_model": "nope"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err.to_string().contains("text-embedding-3-small"), "{err}");
    let (status, c) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{collection}"),
            Some(json!({"embedding_model": "text-embedding-3-small"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["embedding_model"], "text-embedding-3-small");
    // Search never fails while the new space fills; wait for the cut-over.
    let store = app.store().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, found) = search(
            &app,
            &token,
            &org,
            json!({"query": "receipts", "mode": "vector"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(
            found["results"][0]["document_id"],
            handbook.as_str(),
            "{found}"
        );
        let spaces = retrieval::SpaceRepository::list(
            &store,
            kernel::TenantId::parse(&tenant_id(&app, &token, &org).await).expect("tenant id"),
            None,
        )
        .await
        .expect("spaces");
        if spaces.len() == 1 && spaces[0].model.name() == "text-embedding-3-small" {
            assert_eq!(spaces[0].status, retrieval::SpaceStatus::Active);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cut-over: {spaces:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        fake.requests().len() > before,
        "the provider embedded the collection"
    );
    // Queries of the collection now go to the provider too.
    let n = fake.requests().len();
    let (_, found) = search(
        &app,
        &token,
        &org,
        json!({"query": "tomatoes", "mode": "vector"}),
    )
    .await;
    assert!(
        found["results"].as_array().is_some_and(|r| !r.is_empty()),
        "{found}"
    );
    assert_eq!(fake.requests().len(), n + 1, "one query embedding");
}

async fn tenant_id(app: &TestApp, token: &str, slug: &str) -> String {
    let (status, org) = app
        .call(token, Method::GET, &format!("/api/v1/orgs/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{org}");
    org["id"].as_str().expect("id").to_owned()
}
