//! `/api/v1` documents routes: collections, uploads of every format to `ready`, the 4xx of the
//! contract, hostile files ending `failed` with the server alive, duplicates, deletes,
//! reindexing, extraction without storage, formats and jobs.

use extract::fixtures;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::multipart::Form;
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn collection(app: &TestApp, token: &str, org: &str, body: Value) -> Value {
    let (status, c) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/collections",
            Some(body),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    c
}

async fn uploaded(app: &TestApp, token: &str, org: &str, name: &str, bytes: &[u8]) -> Value {
    let (status, body) = app.upload(token, org, name, bytes, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
    assert_eq!(body["document"]["status"], "queued", "{body}");
    assert!(body["job_id"].is_string(), "{body}");
    app.settled(token, org, body["document"]["id"].as_str().expect("id"))
        .await
}

async fn chunks(app: &TestApp, token: &str, org: &str, id: &str) -> Vec<Value> {
    let (status, page) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/documents/{id}/chunks?limit=100"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

/// One small file of every accepted format: `(name, bytes, format)`.
fn one_of_each_format() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let prose = "Quire answers questions from your documents. ".repeat(30);
    let pdf = fixtures::pdf(&[
        "The first page talks about apples.",
        "The second page talks about pears.",
        "The third page talks about plums.",
    ]);
    let docx = fixtures::docx(&[
        "Quarterly report",
        "Revenue grew by twelve percent.",
        "Costs fell.",
    ]);
    let html = format!(
        "<!doctype html><html><head><title>Guide</title><style>.x{{color:red}}</style><script>var secret=1;</script></head><body><h1>Guide</h1><p>{prose}</p></body></html>"
    );
    let csv = "name,role\nAda,engineer\nGrace,admiral\n";
    let md = format!("# Title\n\n{prose}\n\n## Section\n\nMore text.");
    vec![
        ("notes.txt", prose.into_bytes(), "text"),
        ("readme.md", md.into_bytes(), "markdown"),
        ("guide.html", html.into_bytes(), "html"),
        ("people.csv", csv.as_bytes().to_vec(), "csv"),
        ("fruit.pdf", pdf, "pdf"),
        ("report.docx", docx, "docx"),
    ]
}

#[tokio::test]
async fn collections_crud_stats_and_validation() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;

    let c = collection(&app, &token, &org, json!({"name": "Handbook"})).await;
    assert_eq!(
        c["chunking"],
        json!({"max_tokens": 400, "overlap": 40, "tokenizer": "cl100k_base"})
    );
    let id = c["id"].as_str().expect("id");

    for (body, field) in [
        (json!({"name": "  "}), "name"),
        (
            json!({"name": "x", "chunking": {"max_tokens": 10}}),
            "chunking.max_tokens",
        ),
        (
            json!({"name": "x", "chunking": {"max_tokens": 100, "overlap": 60}}),
            "chunking.overlap",
        ),
        (
            json!({"name": "x", "chunking": {"tokenizer": "gpt2"}}),
            "chunking.tokenizer",
        ),
        (
            json!({"name": "x", "description": "d".repeat(2_001)}),
            "description",
        ),
    ] {
        let (status, p) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/collections",
                Some(body),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let (status, p) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "x", "nope": 1})),
            Some(&org),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused: {p}"
    );

    // Missing tenant header.
    let (status, p) = app
        .call(&token, Method::GET, "/api/v1/collections", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["code"], "tenant_required");

    let (status, patched) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{id}"),
            Some(json!({"name": "Staff handbook", "description": "rules", "chunking": {"max_tokens": 64, "overlap": 8}})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Staff handbook");
    assert_eq!(patched["description"], "rules");
    assert_eq!(patched["chunking"]["max_tokens"], 64);
    let (_, cleared) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{id}"),
            Some(json!({"description": null})),
            Some(&org),
        )
        .await;
    assert_eq!(cleared["description"], Value::Null, "{cleared}");
    assert_eq!(cleared["name"], "Staff handbook", "absent fields stay");

    // Pagination, oldest first.
    collection(&app, &token, &org, json!({"name": "Second"})).await;
    collection(&app, &token, &org, json!({"name": "Third"})).await;
    let (_, first) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/collections?limit=2",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    assert_eq!(first["items"][0]["id"], id);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/collections?limit=2&cursor={cursor}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(second["items"][0]["name"], "Third");
    assert_eq!(second["next_cursor"], Value::Null);

    // Stats follow the documents.
    let (status, before) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/collections/{id}/stats"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        before,
        json!({"documents": 0, "chunks": 0, "tokens": 0, "bytes": 0})
    );
    let text = "Holidays are booked through the portal.\n\n".repeat(40);
    let (status, up) = app
        .upload(&token, &org, "policy.txt", text.as_bytes(), Some(id))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let doc = app
        .settled(&token, &org, up["document"]["id"].as_str().expect("id"))
        .await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let (_, after) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/collections/{id}/stats"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(after["documents"], 1);
    assert_eq!(after["bytes"], text.len());
    assert_eq!(after["chunks"], doc["chunks"]);
    assert_eq!(after["tokens"], doc["tokens"]);
    assert!(
        doc["chunks"].as_u64().expect("chunks") > 1,
        "64-token chunks: {doc}"
    );

    // Deleting the collection takes its documents (and their files) along.
    let (status, _) = app
        .call_in(
            &token,
            Method::DELETE,
            &format!("/api/v1/collections/{id}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [
        format!("/api/v1/collections/{id}"),
        format!("/api/v1/collections/{id}/stats"),
        format!("/api/v1/documents/{}", doc["id"].as_str().expect("id")),
    ] {
        let (status, _) = app
            .call_in(&token, Method::GET, &path, None, Some(&org))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let blobs = app.settings.blob_dir().join(&org);
    let left = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the original files are gone");
    for bad in ["not-a-uuid", "0190b3b6-0000-7000-8000-000000000000"] {
        let (status, p) = app
            .call_in(
                &token,
                Method::GET,
                &format!("/api/v1/collections/{bad}"),
                None,
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    }
}

/// A settled document and its job show no stage and no units (`GET /documents/{id}` and
/// `GET /jobs/{id}` carry them while the job runs: `stage`, `done` of `total` `unit`s).
async fn ended_without_stage(app: &TestApp, token: &str, org: &str, doc: &Value) {
    let id = doc["id"].as_str().expect("id");
    let (status, read) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/documents/{id}"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let job = doc["job_id"].as_str().expect("job id");
    let (status, job) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/jobs/{job}"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    for shown in [&read, &job] {
        assert_eq!(shown["done"], 0, "{shown}");
        assert_eq!(shown["total"], 0, "{shown}");
        assert_eq!(shown["unit"], Value::Null, "{shown}");
        assert_eq!(shown["stage"], Value::Null, "{shown}");
    }
}

#[tokio::test]
async fn every_format_reaches_ready_with_chunks_that_point_at_the_text() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;
    for (name, bytes, format) in one_of_each_format() {
        let doc = uploaded(&app, &token, &org, name, &bytes).await;
        assert_eq!(doc["status"], "ready", "{name}: {doc}");
        assert_eq!(doc["format"], format, "{name}");
        assert_eq!(doc["name"], name);
        assert_eq!(doc["bytes"], bytes.len());
        assert!(
            (doc["progress"].as_f64().expect("progress") - 1.0).abs() < 1e-6,
            "{doc}"
        );
        assert_eq!(doc["error"], Value::Null);
        ended_without_stage(&app, &token, &org, &doc).await;
        let id = doc["id"].as_str().expect("id");
        let list = chunks(&app, &token, &org, id).await;
        assert_eq!(
            list.len() as u64,
            doc["chunks"].as_u64().expect("chunks"),
            "{name}"
        );
        let mut tokens = 0;
        for (i, c) in list.iter().enumerate() {
            assert_eq!(c["ordinal"], i, "{name}: in order");
            assert!(c["tokens"].as_u64().expect("tokens") > 0);
            assert!(c["tokens"].as_u64().expect("tokens") <= 400);
            assert!(c["end"].as_u64() > c["start"].as_u64(), "{c}");
            tokens += c["tokens"].as_u64().expect("tokens");
        }
        assert_eq!(tokens, doc["tokens"].as_u64().expect("tokens"), "{name}");
        let all: String = list
            .iter()
            .map(|c| c["text"].as_str().expect("text"))
            .collect();
        match format {
            "html" => {
                assert!(all.contains("Quire answers"), "{all}");
                assert!(
                    !all.contains("secret") && !all.contains("color:red"),
                    "no scripts or styles: {all}"
                );
            }
            "csv" => assert!(
                all.contains("Ada") && all.contains("engineer") && all.contains("role"),
                "{all}"
            ),
            "docx" => assert!(all.contains("Revenue grew by twelve percent."), "{all}"),
            "pdf" => {
                assert_eq!(doc["pages"], 3, "{doc}");
                assert!(all.contains("pears"), "{all}");
                assert_eq!(list[0]["page"], 1);
            }
            _ => assert!(all.contains("Quire answers"), "{all}"),
        }
        // The job is visible and done.
        let job = doc["job_id"].as_str().expect("job id");
        let (status, j) = app
            .call_in(
                &token,
                Method::GET,
                &format!("/api/v1/jobs/{job}"),
                None,
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["kind"], "ingest");
        assert_eq!(j["document_id"], id);
        assert!(j["finished_at"].is_string(), "{j}");
    }
    // A long PDF: chunks know their pages.
    let pages: Vec<String> = (1..=6)
        .map(|p| {
            format!(
                "Page {p} says: {}",
                "lorem ipsum dolor sit amet ".repeat(60)
            )
        })
        .collect();
    let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
    let doc = uploaded(&app, &token, &org, "long.pdf", &fixtures::pdf(&refs)).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let list = chunks(&app, &token, &org, doc["id"].as_str().expect("id")).await;
    let pages_seen: std::collections::BTreeSet<u64> =
        list.iter().filter_map(|c| c["page"].as_u64()).collect();
    assert!(
        pages_seen.len() >= 5,
        "chunks start on most pages: {pages_seen:?}"
    );
    assert!(
        list.windows(2)
            .all(|w| w[0]["page"].as_u64() <= w[1]["page"].as_u64())
    );
}

#[tokio::test]
async fn uploads_refuse_what_the_contract_refuses_and_keep_nothing() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.documents.max_file_bytes = 256 * 1024;
    }))
    .await;
    let (token, org) = app.owner("ann").await;

    // 413: declared too large, and streamed past the limit without a length.
    let big = vec![b'a'; 300 * 1024];
    let (status, p) = app.upload(&token, &org, "big.txt", &big, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert_eq!(p["code"], "payload_too_large");
    let (ct, body) = Form::new().file("file", "big.txt", &big).finish();
    let stream = futures_util::stream::iter(
        body.chunks(16 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let res = app
        .client
        .post(app.url("/api/v1/documents"))
        .bearer_auth(&token)
        .header("x-tenant-id", &org)
        .header("content-type", ct)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // 415: content and name disagree, unknown content, unknown extension, not multipart.
    let pdf = fixtures::pdf(&["hello"]);
    for (name, bytes) in [
        ("report.txt", pdf.clone()),
        ("notes.pdf", b"just text".to_vec()),
        ("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
        ("tool.exe", b"plain words".to_vec()),
        ("blob.txt", vec![0u8, 159, 146, 150, 0, 0, 1, 2]),
    ] {
        let (status, p) = app.upload(&token, &org, name, &bytes, None).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}: {p}");
        assert_eq!(p["code"], "unsupported_media_type", "{p}");
    }
    let (status, p) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/documents",
            Some(json!({"file": "x"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{p}");

    // 422: no file, empty file, bad metadata, unknown collection, unknown field.
    let cases: Vec<(Form, &str)> = vec![
        (Form::new().text("metadata", "{}"), "file"),
        (Form::new().file("file", "empty.txt", b""), "file"),
        (
            Form::new()
                .file("file", "a.txt", b"hi")
                .text("metadata", "[1,2]"),
            "metadata",
        ),
        (
            Form::new()
                .file("file", "a.txt", b"hi")
                .text("metadata", "{nope"),
            "metadata",
        ),
        (
            Form::new().file("file", "a.txt", b"hi").text(
                "metadata",
                &format!("{{\"k\":\"{}\"}}", "v".repeat(17 * 1024)),
            ),
            "metadata",
        ),
        (
            Form::new()
                .file("file", "a.txt", b"hi")
                .text("collection_id", "0190b3b6-0000-7000-8000-000000000000"),
            "collection_id",
        ),
        (
            Form::new()
                .file("file", "a.txt", b"hi")
                .text("collection_id", "nope"),
            "collection_id",
        ),
        (
            Form::new()
                .file("file", "a.txt", b"hi")
                .text("colour", "red"),
            "colour",
        ),
    ];
    for (form, field) in cases {
        let (status, p) = app.send_form(&token, &org, "/api/v1/documents", form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }

    // Nothing of all that was kept: no documents, no files.
    let (_, list) = app
        .call_in(&token, Method::GET, "/api/v1/documents", None, Some(&org))
        .await;
    assert_eq!(list["items"], json!([]), "{list}");
    let blobs = app.settings.blob_dir();
    let files = walk(&blobs);
    assert!(files.is_empty(), "no file left behind: {files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn hostile_files_end_failed_with_a_clear_error_and_the_server_lives() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.documents.max_pages = 5;
    }))
    .await;
    let (token, org) = app.owner("ann").await;
    let six_pages = fixtures::pdf(&["one", "two", "three", "four", "five", "six"]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("locked.pdf", fixtures::encrypted_pdf(), "encrypted"),
        ("bomb.docx", fixtures::zip_bomb_docx(), "too large"),
        ("long.pdf", six_pages, "6 pages"),
        (
            "scan.pdf",
            fixtures::image_only_pdf(),
            "no extractable text",
        ),
        ("blank.txt", b"   \n\n\t  ".to_vec(), "no extractable text"),
        (
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R".to_vec(),
            "could not be read",
        ),
    ];
    for (name, bytes, expected) in cases {
        let doc = uploaded(&app, &token, &org, name, &bytes).await;
        assert_eq!(doc["status"], "failed", "{name}: {doc}");
        let error = doc["error"].as_str().expect("an error");
        assert!(error.contains(expected), "{name}: {error}");
        assert!(
            !error.contains('/') || error.contains("pdf"),
            "no paths: {error}"
        );
        let job = doc["job_id"].as_str().expect("job");
        let (_, j) = app
            .call_in(
                &token,
                Method::GET,
                &format!("/api/v1/jobs/{job}"),
                None,
                Some(&org),
            )
            .await;
        assert_eq!(j["status"], "failed", "{j}");
        assert_eq!(j["error"], error);
        assert_eq!(j["attempts"], 1, "a permanent failure is not retried: {j}");
    }
    let res = app.get("/health/live").await;
    assert_eq!(res.status(), StatusCode::OK, "the server is alive");
    // A failed document can be listed by status.
    let (_, failed) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/documents?status=failed&limit=100",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(failed["items"].as_array().expect("items").len(), 6);
    let (status, p) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/documents?status=lost",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
}

#[tokio::test]
async fn duplicates_delete_and_reindex() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;
    let a = collection(&app, &token, &org, json!({"name": "A"})).await;
    let b = collection(&app, &token, &org, json!({"name": "B"})).await;
    let (a, b) = (a["id"].as_str().expect("id"), b["id"].as_str().expect("id"));
    let text = "Expenses are reimbursed within thirty days. ".repeat(100);

    let (status, first) = app
        .upload(&token, &org, "exp.txt", text.as_bytes(), Some(a))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let id = first["document"]["id"].as_str().expect("id").to_owned();
    let (status, again) = app
        .upload(&token, &org, "copy.txt", text.as_bytes(), Some(a))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same content in the same collection: {again}"
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["document"]["id"], id.as_str());
    let (status, other) = app
        .upload(&token, &org, "exp.txt", text.as_bytes(), Some(b))
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "another collection is another copy: {other}"
    );
    assert_ne!(other["document"]["id"], id.as_str());

    let doc = app.settled(&token, &org, &id).await;
    assert_eq!(doc["status"], "ready");
    let before = doc["chunks"].as_u64().expect("chunks");

    // Reindex after changing the chunking: more, smaller chunks.
    let (status, _) = app
        .call_in(
            &token,
            Method::PATCH,
            &format!("/api/v1/collections/{a}"),
            Some(json!({"chunking": {"max_tokens": 64, "overlap": 0}})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/documents/{id}/reindex"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().expect("job id");
    let doc = app.settled(&token, &org, &id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["job_id"], job);
    assert!(doc["chunks"].as_u64().expect("chunks") > before, "{doc}");
    let (_, j) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/jobs/{job}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(j["kind"], "reindex");
    assert_eq!(j["status"], "succeeded");
    let list = chunks(&app, &token, &org, &id).await;
    assert!(
        list.iter()
            .all(|c| c["tokens"].as_u64().expect("tokens") <= 64)
    );

    // Delete: the document, its chunks and its file are gone.
    let (status, _) = app
        .call_in(
            &token,
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [
        format!("/api/v1/documents/{id}"),
        format!("/api/v1/documents/{id}/chunks"),
    ] {
        let (status, _) = app
            .call_in(&token, Method::GET, &path, None, Some(&org))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app
        .call_in(
            &token,
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a second delete finds nothing"
    );
    let (status, _) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/documents/{id}/reindex"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        !app.settings.blob_dir().join(&org).join(&id).exists(),
        "the file is gone"
    );
    let (_, stats) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/collections/{a}/stats"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(
        stats,
        json!({"documents": 0, "chunks": 0, "tokens": 0, "bytes": 0})
    );
    // Once deleted, the same content may come back.
    let (status, back) = app
        .upload(&token, &org, "exp.txt", text.as_bytes(), Some(a))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{back}");

    // Filters.
    let (_, in_b) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/documents?collection_id={b}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(in_b["items"].as_array().expect("items").len(), 1);
    assert_eq!(in_b["items"][0]["collection_id"], b);
}

#[tokio::test]
async fn extract_stores_nothing_and_formats_tell_the_configuration() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;
    let form = Form::new().file(
        "file",
        "two.pdf",
        &fixtures::pdf(&["Alpha page.", "Beta page."]),
    );
    let (status, body) = app
        .send_form(&token, &org, "/api/v1/documents/extract", form)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["format"], "pdf");
    assert_eq!(body["pages"], 2);
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("Alpha page.") && text.contains("Beta page."),
        "{text}"
    );
    let form = Form::new().file("file", "locked.pdf", &fixtures::encrypted_pdf());
    let (status, p) = app
        .send_form(&token, &org, "/api/v1/documents/extract", form)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("encrypted"),
        "{p}"
    );
    let (_, list) = app
        .call_in(&token, Method::GET, "/api/v1/documents", None, Some(&org))
        .await;
    assert_eq!(list["items"], json!([]), "extract stores nothing");
    assert!(walk(&app.settings.blob_dir()).is_empty());

    let (status, f) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/documents/formats",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = f["formats"]
        .as_array()
        .expect("formats")
        .iter()
        .map(|x| x["format"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["pdf", "docx", "html", "markdown", "text", "csv"]);
    assert_eq!(f["max_file_bytes"], app.settings.documents.max_file_bytes);
    assert_eq!(f["max_pages"], 500);
    assert_eq!(f["formats"][0]["max_pages"], 500);
    assert_eq!(f["isolation"], "thread");
    assert_eq!(f["default_chunking"]["max_tokens"], 400);
}

#[tokio::test]
async fn roles_decide_who_writes() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;
    let (status, key) = app
        .call(
            &token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "ro", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let viewer = key["secret"].as_str().expect("secret").to_owned();
    let (status, key) = app
        .call(
            &token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "rw", "role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let member = key["secret"].as_str().expect("secret").to_owned();

    let (status, _) = app
        .upload(&viewer, &org, "a.txt", b"viewers read", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call_in(&viewer, Method::GET, "/api/v1/documents", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call_in(
            &member,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "x"})),
            Some(&org),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "members do not manage collections"
    );
    let (status, up) = app
        .upload(&member, &org, "a.txt", b"members write documents", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let id = up["document"]["id"].as_str().expect("id");
    let (status, _) = app
        .call_in(
            &viewer,
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call_in(
            &member,
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(&token, Method::GET, "/api/v1/jobs/not-a-job", None)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the tenant header comes first"
    );
    let (status, _) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/jobs/not-a-job",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_to_ready_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    let (token, org) = app.owner("ann").await;
    let c = collection(&app, &token, &org, json!({"name": "Docs"})).await;
    let cid = c["id"].as_str().expect("id");
    for (name, bytes, format) in one_of_each_format() {
        let (status, up) = app.upload(&token, &org, name, &bytes, Some(cid)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{up}");
        let doc = app
            .settled(&token, &org, up["document"]["id"].as_str().expect("id"))
            .await;
        assert_eq!(doc["status"], "ready", "{name}: {doc}");
        assert_eq!(doc["format"], format);
        assert!(doc["chunks"].as_u64().expect("chunks") > 0, "{doc}");
        ended_without_stage(&app, &token, &org, &doc).await;
    }
    let doc = uploaded(&app, &token, &org, "locked.pdf", &fixtures::encrypted_pdf()).await;
    assert_eq!(doc["status"], "failed");
    let (_, stats) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/collections/{cid}/stats"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(stats["documents"], 6);
}

/// The embedding ledger records, for a document's chunks, what the local embedder's own
/// `cl100k_base` count of each chunk's text gives (the number it billed before the chunker's
/// counts were taken for it): prose, a CSV whose chunks repeat its header, and a text with a
/// run too long for the chunker to count whole (that chunk is counted by the embedder).
async fn ledger_counts_each_chunk_as_the_embedder_would(app: &TestApp) {
    let (token, org) = app.owner("lee").await;
    let prose: String = (0..400)
        .map(|i| format!("Sentence {i} tells of harbours, ledgers and the tide. "))
        .collect();
    let csv: String = std::iter::once("name,city,amount\n".to_owned())
        .chain((0..600).map(|i| format!("person {i},Town {},{}\n", i % 17, i * 3)))
        .collect();
    // Runs of 3,000 letters without whitespace: counted in parts by the chunker, and a part's
    // tokens are not the whole run's.
    let long_run = format!(
        "Before the run. {} after the run, {} and the end.",
        "thequickbrownfoxjumpsoverthelazydog".repeat(86),
        "zyxwvutsrqponmlkjihgfedcba".repeat(116)
    );
    let mut expected = 0u64;
    let mut inexact = 0;
    for (name, bytes) in [
        ("prose.txt", prose.as_bytes()),
        ("table.csv", csv.as_bytes()),
        ("run.txt", long_run.as_bytes()),
    ] {
        let doc = uploaded(app, &token, &org, name, bytes).await;
        assert_eq!(doc["status"], "ready", "{name}: {doc}");
        let id = doc["id"].as_str().expect("id");
        let all = chunks(app, &token, &org, id).await;
        assert_eq!(all.len() as u64, doc["chunks"].as_u64().expect("chunks"));
        for c in &all {
            let text = c["text"].as_str().expect("text").to_owned();
            let own = local_ai::LocalEmbedder::default()
                .embed_now(std::slice::from_ref(&text))
                .tokens;
            if c["tokens"].as_u64() != Some(own) {
                inexact += 1;
            }
            expected += own;
        }
    }
    assert!(
        inexact > 0,
        "the long runs' chunks are counted in parts by the chunker"
    );
    let (status, report) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/usage?window=24h",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let embedding = testkit::usage_of_kind(&report, "embedding").expect("embedding usage");
    assert_eq!(
        embedding["prompt_tokens"].as_u64(),
        Some(expected),
        "{report}"
    );
}

#[tokio::test]
async fn the_ledger_counts_chunks_as_the_embedder_would_on_sqlite() {
    let app = spawn_app().await;
    ledger_counts_each_chunk_as_the_embedder_would(&app).await;
}

#[tokio::test]
async fn the_ledger_counts_chunks_as_the_embedder_would_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    ledger_counts_each_chunk_as_the_embedder_would(&app).await;
}
