//! Scanned PDFs and tables over HTTP, on SQLite and on PostgreSQL with Redis: a scan (made in
//! the test: text rendered by `pdftoppm`, wrapped as images in a PDF without a text layer) is
//! read by OCR, becomes `ready`, its chunks say `ocr: true` and search finds its words; a
//! collection's OCR languages are validated (no shell, no options, no paths); without the
//! tool such a file fails naming it; a 2,000-row CSV's chunks each start with its header, so
//! a row is found by a column name and a value.
//!
//! The OCR scenarios need poppler-utils' `pdftoppm` and `tesseract` with English
//! (`.ci/run` installs them): under `CI` a missing tool fails the test; elsewhere it skips
//! with a printed reason.

use extract::fixtures;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn call(
    app: &TestApp,
    token: &str,
    org: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call_in(token, method, path, body, Some(org)).await
}

async fn chunks(app: &TestApp, token: &str, org: &str, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = format!("/api/v1/documents/{id}/chunks?limit=100");
    loop {
        let (status, page) = call(app, token, org, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/v1/documents/{id}/chunks?limit=100&cursor={cursor}");
            }
            None => return all,
        }
    }
}

async fn upload_settled(
    app: &TestApp,
    token: &str,
    org: &str,
    name: &str,
    bytes: &[u8],
    collection: &str,
) -> Value {
    let (status, up) = app.upload(token, org, name, bytes, Some(collection)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    app.settled(token, org, up["document"]["id"].as_str().expect("id"))
        .await
}

async fn ocr_scenario(app: &TestApp, pdftoppm: &std::path::Path) {
    let (token, org) = app.owner("ann").await;
    let (status, c) = call(
        app,
        &token,
        &org,
        Method::POST,
        "/api/v1/collections",
        Some(json!({"name": "Scans", "ocr_languages": ["eng"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["ocr_languages"], json!(["eng"]));
    let collection = c["id"].as_str().expect("id").to_owned();

    let scan = fixtures::scanned_pdf(
        &[
            "Quarterly revenue grew by seventeen percent in the northern region.",
            "The zebra crossing near the harbour was repainted in March.",
        ],
        pdftoppm,
    )
    .expect("a scan");
    let doc = upload_settled(app, &token, &org, "scan.pdf", &scan, &collection).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["pages"], 2, "{doc}");
    assert_eq!(doc["ocr_pages"], 2, "{doc}");
    let id = doc["id"].as_str().expect("id");
    let items = chunks(app, &token, &org, id).await;
    assert!(!items.is_empty());
    assert!(items.iter().all(|c| c["ocr"] == true), "{items:?}");
    let text: String = items
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    for word in ["quarterly", "revenue", "zebra", "harbour"] {
        assert!(text.contains(word), "{word} in {text:?}");
    }
    let (status, found) = call(
        app,
        &token,
        &org,
        Method::POST,
        "/api/v1/search",
        Some(json!({"query": "zebra harbour", "mode": "keyword"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["results"][0]["document_id"], id, "{found}");

    // A document with a text layer is not OCR'd and says so.
    let plain = fixtures::pdf(&["A page with a text layer."]);
    let doc = upload_settled(app, &token, &org, "plain.pdf", &plain, &collection).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["ocr_pages"], 0, "{doc}");
    let items = chunks(app, &token, &org, doc["id"].as_str().expect("id")).await;
    assert!(items.iter().all(|c| c["ocr"] == false), "{items:?}");

    // A language whose pack is not installed: the file fails, naming it.
    let (status, other) = call(
        app,
        &token,
        &org,
        Method::POST,
        "/api/v1/collections",
        Some(json!({"name": "Unknown language", "ocr_languages": ["zzz"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other = other["id"].as_str().expect("id");
    let doc = upload_settled(app, &token, &org, "scan2.pdf", &scan, other).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    let error = doc["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("OCR could not read it") && error.contains("zzz"),
        "{error}"
    );
}

/// Languages are a list of Tesseract codes: anything else is a 422 naming the field, on
/// create and on change; `null` goes back to the default.
async fn languages_are_validated(app: &TestApp) {
    let (token, org) = app.owner("bob").await;
    let collection = app.collection(&token, &org, "Checked").await;
    let path = format!("/api/v1/collections/{collection}");
    let nine: Vec<String> = [
        "eng", "deu", "fra", "spa", "ita", "por", "nld", "swe", "fin",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for bad in [
        json!(["eng;rm -rf /"]),
        json!(["eng+deu"]),
        json!(["$(reboot)"]),
        json!(["-l"]),
        json!(["../../etc/passwd"]),
        json!(["ENG"]),
        json!(["en"]),
        json!([""]),
        json!([]),
        json!(nine),
        json!("eng"),
        json!([1]),
    ] {
        for (method, uri, body) in [
            (
                Method::POST,
                "/api/v1/collections".to_owned(),
                json!({"name": "x", "ocr_languages": bad}),
            ),
            (
                Method::PATCH,
                path.clone(),
                json!({"ocr_languages": bad.clone()}),
            ),
        ] {
            let (status, p) = call(app, &token, &org, method, &uri, Some(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {p}");
            if bad
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                assert_eq!(p["errors"][0]["field"], "ocr_languages", "{bad}: {p}");
            }
        }
    }
    let (status, c) = call(
        app,
        &token,
        &org,
        Method::PATCH,
        &path,
        Some(json!({"ocr_languages": ["eng", "deu", "chi_sim", "eng"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["ocr_languages"], json!(["eng", "deu", "chi_sim"]));
    let (_, c) = call(app, &token, &org, Method::GET, &path, None).await;
    assert_eq!(c["ocr_languages"], json!(["eng", "deu", "chi_sim"]));
    let (status, c) = call(
        app,
        &token,
        &org,
        Method::PATCH,
        &path,
        Some(json!({"ocr_languages": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["ocr_languages"], Value::Null);
}

/// A 2,000-row CSV: every chunk starts with the header row, and a column name with a value
/// finds the row's chunk.
async fn table_scenario(app: &TestApp) {
    let (token, org) = app.owner("cat").await;
    let collection = app.collection(&token, &org, "Tables").await;
    let mut csv = String::from("id,city,population\n");
    for i in 0..2_000 {
        csv.push_str(&format!("{i},Town {i},{}\n", i * 37));
    }
    let doc = upload_settled(app, &token, &org, "towns.csv", csv.as_bytes(), &collection).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let items = chunks(app, &token, &org, doc["id"].as_str().expect("id")).await;
    assert!(items.len() > 10, "{} chunks", items.len());
    for c in &items {
        let text = c["text"].as_str().expect("text");
        assert!(text.starts_with("id | city | population\n"), "{text:?}");
        assert_eq!(c["ocr"], false);
    }
    for mode in ["keyword", "hybrid"] {
        let (status, found) = call(
            app,
            &token,
            &org,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": "city 1234 population", "mode": mode})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let first = found["results"][0]["text"].as_str().unwrap_or_default();
        assert!(
            first.starts_with("id | city | population\n")
                && first.contains("\n1234 | Town 1234 | 45658"),
            "{mode}: {first:?}"
        );
    }
}

#[tokio::test]
async fn scans_languages_and_tables_on_sqlite() {
    let app = spawn_app().await;
    languages_are_validated(&app).await;
    table_scenario(&app).await;
    if let Some(pdftoppm) = fixtures::installed_ocr_tools().map(|t| t.pdftoppm) {
        ocr_scenario(&app, &pdftoppm).await;
    }
}

#[tokio::test]
async fn scans_languages_and_tables_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    languages_are_validated(&app).await;
    table_scenario(&app).await;
    if let Some(pdftoppm) = fixtures::installed_ocr_tools().map(|t| t.pdftoppm) {
        ocr_scenario(&app, &pdftoppm).await;
    }
}

/// Without the tool, a scan fails with a clear reason, and the server lives on.
#[tokio::test]
async fn a_missing_ocr_tool_fails_the_scan_with_its_reason() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.documents.ocr.pdftoppm = "/nonexistent/pdftoppm".into();
    }))
    .await;
    let (token, org) = app.owner("dan").await;
    let collection = app.collection(&token, &org, "Scans").await;
    let doc = upload_settled(
        &app,
        &token,
        &org,
        "scan.pdf",
        &fixtures::image_only_pdf(),
        &collection,
    )
    .await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(
        doc["error"],
        "the file contains no extractable text, and OCR could not read it: \
         pdftoppm was not found at /nonexistent/pdftoppm (is it installed?)",
        "{doc}"
    );
    // With OCR off, as before.
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.documents.ocr.enabled = false;
    }))
    .await;
    let (token, org) = app.owner("eve").await;
    let collection = app.collection(&token, &org, "Scans").await;
    let doc = upload_settled(
        &app,
        &token,
        &org,
        "scan.pdf",
        &fixtures::image_only_pdf(),
        &collection,
    )
    .await;
    assert_eq!(
        doc["error"], "the file contains no extractable text",
        "{doc}"
    );
}
