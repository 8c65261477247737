//! Attacks on documents, each named after its threat, on both backends (SQLite with the
//! in-process cache, PostgreSQL with Redis): an organization filling storage past its plan with
//! parallel uploads, one organization's slow files holding every ingestion worker, and
//! internal error chains reaching clients through a document's or a job's `error`.

use std::time::{Duration, Instant};

use extract::fixtures;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::multipart::Form;
use testkit::{TestApp, TestOptions, spawn_app_with};

/// The provider's embedding model (the fake) and the local one.
const REMOTE_MODEL: &str = "text-embedding-3-small";
const LOCAL_MODEL: &str = "quire-local-ngram-384";

/// `len` bytes of text, different for each `n`.
fn text_of(len: usize, n: usize) -> Vec<u8> {
    let mut t = format!("file number {n} says hello. ").into_bytes();
    t.resize(len, b'x');
    t
}

async fn collection_with_model(app: &TestApp, token: &str, org: &str, model: &str) -> String {
    let (status, c) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({ "name": format!("on {model}"), "embedding_model": model })),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    c["id"].as_str().expect("a collection id").to_owned()
}

async fn plan(app: &TestApp, token: &str, org: &str) -> Value {
    let (status, plan) = app
        .call_in(token, Method::GET, "/api/v1/billing/plan", None, Some(org))
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    plan
}

// ---------------------------------------------------------------------------------------------
// Storage: plans limit the bytes of original files, and parallel uploads cannot pass together.

/// 1,000 bytes of storage on every plan, files of at most 500 bytes, no upload rate limit.
fn small_storage(s: &mut settings::Settings) {
    s.rate_limits.upload = billing::RateBudget::default();
    for plan in s.billing.plans.values_mut() {
        plan.max_storage_bytes = Some(1_000);
    }
    s.documents.max_file_bytes = 500;
}

async fn storage_limit_holds(opts: TestOptions) {
    let app = spawn_app_with(opts.tweak(small_storage)).await;
    let (token, org) = app.owner("ann").await;

    // One file over the per-file limit: 413, whatever storage is left.
    let (status, body) = app
        .upload(&token, &org, "big.txt", &text_of(600, 0), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large", "{body}");

    // Eight uploads of 300 bytes at once against 1,000 bytes: exactly three fit.
    let files: Vec<Vec<u8>> = (1..=8).map(|n| text_of(300, n)).collect();
    let names: Vec<String> = (1..=8).map(|n| format!("part-{n}.txt")).collect();
    let results = join_all(
        files
            .iter()
            .zip(&names)
            .map(|(bytes, name)| app.upload(&token, &org, name, bytes, None)),
    )
    .await;
    let mut accepted = Vec::new();
    for (status, body) in &results {
        if *status == StatusCode::ACCEPTED {
            accepted.push(body["document"]["id"].as_str().expect("id").to_owned());
        } else {
            assert_eq!(*status, StatusCode::PAYMENT_REQUIRED, "{body}");
            assert_eq!(body["code"], "storage_limit_exceeded", "{body}");
        }
    }
    assert_eq!(
        accepted.len(),
        3,
        "three files of 300 bytes fit in 1,000: {results:?}"
    );
    let p = plan(&app, &token, &org).await;
    assert_eq!(p["storage_used_bytes"], 900, "{p}");
    assert_eq!(p["storage_limit_bytes"], 1_000, "{p}");

    // 200 more bytes would pass the limit; 100 reach it exactly.
    let (status, body) = app
        .upload(&token, &org, "two.txt", &text_of(200, 20), None)
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["code"], "storage_limit_exceeded", "{body}");
    let (status, body) = app
        .upload(&token, &org, "one.txt", &text_of(100, 21), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Full: even a byte is refused, and plain-text ingestion too.
    let (status, body) = app.upload(&token, &org, "byte.txt", b"z", None).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");

    // Deleting a document frees its bytes.
    let (status, body) = app
        .call_in(
            &token,
            Method::DELETE,
            &format!("/api/v1/documents/{}", accepted[0]),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(plan(&app, &token, &org).await["storage_used_bytes"], 700);
    let (status, body) = app
        .upload(&token, &org, "again.txt", &text_of(300, 30), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(plan(&app, &token, &org).await["storage_used_bytes"], 1_000);

    // Another organization's storage is its own.
    let (other, other_org) = app.owner("bob").await;
    let (status, body) = app
        .upload(&other, &other_org, "mine.txt", &text_of(300, 40), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn parallel_uploads_cannot_exceed_the_storage_limit() {
    storage_limit_holds(TestOptions::default()).await;
}

#[tokio::test]
async fn parallel_uploads_cannot_exceed_the_storage_limit_on_postgres_and_redis() {
    storage_limit_holds(TestOptions::production()).await;
}

// ---------------------------------------------------------------------------------------------
// Fairness: one organization's slow files never hold every ingestion worker.

/// Two workers (so the default cap per organization is one), a patient provider.
fn two_workers(s: &mut settings::Settings) {
    s.rate_limits.upload = billing::RateBudget::default();
    s.documents.workers = 2;
    s.provider.timeout_secs = 30;
    s.provider.max_retries = 0;
    s.provider.embedding_dimensions = Some(64);
}

async fn slow_files_do_not_starve(production: bool) {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        postgres: production,
        redis: production,
        provider: Some((fake.base_url(), REMOTE_MODEL.to_owned())),
        tweaks: vec![two_workers],
        ..TestOptions::default()
    })
    .await;
    let (ann, a) = app.owner("ann").await;
    let (bob, b) = app.owner("bob").await;
    let slow = collection_with_model(&app, &ann, &a, REMOTE_MODEL).await;
    let quick = collection_with_model(&app, &bob, &b, LOCAL_MODEL).await;

    let before = fake.request_count();
    // Each of ann's files takes 8 s at the provider: slow files.
    fake.push_faults(vec![Fault::Delay(Duration::from_secs(8)); 8]);
    for n in 0..4 {
        let (status, body) = app
            .upload(
                &ann,
                &a,
                &format!("slow-{n}.txt"),
                &text_of(400, n),
                Some(&slow),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert!(
        fake.until(Duration::from_secs(30), |f| f.request_count() > before)
            .await,
        "ann's first file reaches the provider"
    );

    // Bob's one small file is ready long before ann's first slow file could end.
    let started = Instant::now();
    let (status, body) = app
        .upload(&bob, &b, "quick.txt", b"Bob's small file.", Some(&quick))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["document"]["id"].as_str().expect("id").to_owned();
    let doc = app.settled(&bob, &b, &id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "bob waited {took:?} behind ann's slow files"
    );
    // And ann holds one worker at most: one of her files reached the provider.
    assert_eq!(fake.request_count() - before, 1, "{:?}", fake.requests());
}

#[tokio::test]
async fn one_tenants_slow_files_do_not_starve_another() {
    slow_files_do_not_starve(false).await;
}

#[tokio::test]
async fn one_tenants_slow_files_do_not_starve_another_on_postgres_and_redis() {
    slow_files_do_not_starve(true).await;
}

// ---------------------------------------------------------------------------------------------
// Errors: a failed document's or job's `error` is a reason for people, never an internal chain.

/// One attempt per job, no provider retries.
fn fail_fast(s: &mut settings::Settings) {
    s.rate_limits.upload = billing::RateBudget::default();
    s.documents.max_attempts = 1;
    s.provider.max_retries = 0;
    s.provider.embedding_dimensions = Some(64);
}

/// What an internal chain, a path, SQL or a crash reason would show.
const INTERNAL_MARKERS: &[&str] = &[
    "caused by",
    "Caused by",
    "embedding:",
    "embeddings:",
    "storage:",
    "chunking:",
    "blob store",
    "expected value",
    "line 1",
    "JSON",
    "HTTP",
    "panic",
    "signal",
    "/",
    "\\",
    ".rs",
    "SELECT",
    "INSERT",
    "sqlx",
    "database",
];

fn assert_for_people(what: &str, error: &Value) {
    let e = error
        .as_str()
        .unwrap_or_else(|| panic!("{what} has an error"));
    assert!(!e.is_empty(), "{what}");
    for marker in INTERNAL_MARKERS {
        assert!(
            !e.contains(marker),
            "{what}'s error shows {marker:?}: {e:?}"
        );
    }
}

async fn errors_are_for_people(production: bool) {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        postgres: production,
        redis: production,
        provider: Some((fake.base_url(), REMOTE_MODEL.to_owned())),
        tweaks: vec![fail_fast],
        ..TestOptions::default()
    })
    .await;
    let (token, org) = app.owner("ann").await;
    let remote = collection_with_model(&app, &token, &org, REMOTE_MODEL).await;

    // The provider answers garbage: the client library's chain (which call, serde's reason)
    // stays in the log.
    fake.push_faults([Fault::Malformed, Fault::Malformed, Fault::Malformed]);
    let (status, body) = app
        .upload(
            &token,
            &org,
            "notes.txt",
            b"Some notes about apples and pears.",
            Some(&remote),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["document"]["id"].as_str().expect("id").to_owned();
    let job = body["job_id"].as_str().expect("job id").to_owned();
    let doc = app.settled(&token, &org, &id).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_for_people("the document", &doc["error"]);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("embedding service was unavailable")),
        "{doc}"
    );
    let (status, j) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/jobs/{job}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["status"], "dead", "{j}");
    assert_for_people("the job", &j["error"]);
    assert_eq!(j["error"], doc["error"], "{j} {doc}");

    // A file that cannot be read keeps its plain-words reason.
    let (status, body) = app
        .upload(&token, &org, "locked.pdf", &fixtures::encrypted_pdf(), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["document"]["id"].as_str().expect("id").to_owned();
    let doc = app.settled(&token, &org, &id).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_for_people("the encrypted document", &doc["error"]);
    assert_eq!(
        doc["error"], "the PDF is encrypted; upload an unprotected copy",
        "{doc}"
    );

    // The same file through `POST /documents/extract`.
    let (status, body) = app
        .send_form(
            &token,
            &org,
            "/api/v1/documents/extract",
            Form::new().file("file", "locked.pdf", &fixtures::encrypted_pdf()),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for field in body["errors"].as_array().expect("errors") {
        assert_for_people("the extraction", &field["message"]);
    }
}

#[tokio::test]
async fn document_errors_show_no_internal_chain() {
    errors_are_for_people(false).await;
}

#[tokio::test]
async fn document_errors_show_no_internal_chain_on_postgres_and_redis() {
    errors_are_for_people(true).await;
}
