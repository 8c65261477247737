//! The OpenAPI document as a client generator reads it: every error answer of every operation
//! has the body the server sends (`application/problem+json` [`Problem`], or OpenAI's error
//! object as `application/json` under `/api/v1/ai`), every route that needs a credential says
//! so (`security`) and documents 401, and what an operation's shape implies is there (a tenant
//! header: 400/403/404; a path id: 404; a body: 400/413/415/422; under `/api/`: 500/503).
//!
//! Then the server is held to it: every operation is called without a credential, and every
//! operation that reads a body is called signed in with a body of the wrong media type and with
//! one that is not JSON; each answer's status must be documented for that operation, with the
//! documented content type. `.ci/schemathesis.sh` goes further with generated inputs.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::sweep::{ROUTES, Scope};
use testkit::{TestApp, spawn_app};

const PROBLEM: &str = "#/components/schemas/Problem";
const OPENAI_ERROR: &str = "#/components/schemas/OpenAiError";
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every `(method, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Every operation id the document gives more than one operation, with the operations. A
/// client generator names one method per id, and a link (schemathesis infers them from the
/// URLs an answer holds) finds its operation by id: a shared id sends it to the wrong route.
fn shared_operation_ids(ops: &[(String, String, Value)]) -> Vec<String> {
    let mut by_id: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (method, path, op) in ops {
        match op["operationId"].as_str() {
            Some(id) => by_id
                .entry(id)
                .or_default()
                .push(format!("{method} {path}")),
            None => by_id
                .entry("")
                .or_default()
                .push(format!("{method} {path} (no operationId)")),
        }
    }
    by_id
        .into_iter()
        .filter(|(id, ops)| id.is_empty() || ops.len() > 1)
        .map(|(id, ops)| {
            format!(
                "operationId {id:?} is shared or missing: {}",
                ops.join(", ")
            )
        })
        .collect()
}

/// The problems of one operation's document, empty when it is complete.
fn problems_of(path: &str, method: &str, op: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let responses = op["responses"].as_object().expect("responses");
    let openai = path == "/api/v1/ai" || path.starts_with("/api/v1/ai/");
    let (media, schema) = if openai {
        ("application/json", OPENAI_ERROR)
    } else {
        ("application/problem+json", PROBLEM)
    };
    for (status, response) in responses {
        if response["description"].as_str().is_none_or(str::is_empty) {
            out.push(format!(
                "{method} {path} {status}: no description (OpenAPI 3.1 requires one)"
            ));
        }
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        let content = response["content"].as_object();
        let media_types: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
        // Outside the API (the health routes), an error may carry a report of its own.
        let own_body = !path.starts_with("/api/")
            && content.is_some_and(|c| c.values().all(|m| m["schema"]["$ref"] != PROBLEM));
        if own_body {
            continue;
        }
        if media_types != [media] || response["content"][media]["schema"]["$ref"] != schema {
            out.push(format!(
                "{method} {path} {status}: the body is {media_types:?} {}, not {media} {schema}",
                response["content"]
            ));
        }
    }
    let secured = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
    let documented = |status: u16| responses.contains_key(&status.to_string());
    let mut needs = |status: u16, why: &str| {
        if !documented(status) {
            out.push(format!(
                "{method} {path}: {why}, but {status} is not documented"
            ));
        }
    };
    if secured {
        needs(401, "it needs a credential");
    }
    if path.starts_with("/api/") && path != "/api/v1/openapi.json" {
        needs(503, "a backing service may be down");
        needs(500, "it is an API route");
    }
    for param in op["parameters"].as_array().into_iter().flatten() {
        let name = param["name"].as_str().unwrap_or_default();
        match param["in"].as_str() {
            Some("header") if name.eq_ignore_ascii_case("x-tenant-id") => {
                for status in [400, 403, 404] {
                    needs(status, "it reads X-Tenant-ID");
                }
            }
            Some("path") => needs(404, "it names a resource in its path"),
            Some("query") => needs(422, "it reads query parameters"),
            _ => {}
        }
    }
    if !op["requestBody"].is_null() {
        for status in [400, 413, 415, 422] {
            needs(status, "it reads a body");
        }
    }
    out
}

#[tokio::test]
async fn every_operation_documents_its_error_answers_and_security() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    let ops = operations(&doc);
    let mut problems = shared_operation_ids(&ops);
    for (method, path, op) in &ops {
        problems.extend(problems_of(path, method, op));
    }
    // Security, from the isolation sweep's table of who may call what (which
    // `isolation_sweep.rs` keeps equal to the document's routes).
    for (method, path, scope) in ROUTES {
        let op = &doc["paths"][*path][method.to_lowercase()];
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        match (scope, secured) {
            (Scope::Public, true) => problems.push(format!(
                "{method} {path}: public, but the document asks for a credential"
            )),
            (Scope::Public, false) | (_, true) => {}
            (_, false) => problems.push(format!(
                "{method} {path}: needs a credential, but the document has no `security`"
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "the OpenAPI document is incomplete:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_document_check_can_fail() {
    // An operation as an annotation that forgot the most would give it.
    let op = serde_json::json!({
        "security": [{"bearer": []}],
        "parameters": [{"name": "X-Tenant-ID", "in": "header"}, {"name": "id", "in": "path"}],
        "requestBody": {"content": {"application/json": {}}},
        "responses": {
            "200": {},
            "404": {"description": "gone", "content": {"application/json": {"schema": {"$ref": PROBLEM}}}}
        }
    });
    let problems = problems_of("/api/v1/things/{id}", "post", &op);
    for expected in [
        "200: no description",
        "404: the body is [\"application/json\"]",
        "401 is not documented",
        "400 is not documented",
        "403 is not documented",
        "413 is not documented",
        "415 is not documented",
        "422 is not documented",
        "503 is not documented",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not found in {problems:#?}"
        );
    }
    let shared = shared_operation_ids(&[
        (
            "get".into(),
            "/api/v1/a/{id}/download".into(),
            serde_json::json!({"operationId": "download"}),
        ),
        (
            "get".into(),
            "/api/v1/b/{id}/download".into(),
            serde_json::json!({"operationId": "download"}),
        ),
        (
            "get".into(),
            "/api/v1/c".into(),
            serde_json::json!({"operationId": "c"}),
        ),
    ]);
    assert_eq!(
        shared,
        [
            "operationId \"download\" is shared or missing: get /api/v1/a/{id}/download, get /api/v1/b/{id}/download"
        ]
    );
    let problems = problems_of("/api/v1/ai/things", "post", &op);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not application/json #/components/schemas/OpenAiError")),
        "{problems:#?}"
    );
}

/// `path` with its parameters filled: `{org}` with `org`, any other with a fresh id.
fn concrete(path: &str, org: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg == "{org}" {
                org.to_owned()
            } else if seg.starts_with('{') {
                "0190f3a2-0000-7000-8000-000000000000".to_owned()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The problem with `res` as the answer of `op`, if any: an undocumented status, or a content
/// type other than the documented ones.
fn answer_problem(
    what: &str,
    op: &Value,
    status: StatusCode,
    content_type: &str,
) -> Option<String> {
    let Some(response) = op["responses"].get(status.as_str()) else {
        return Some(format!(
            "{what}: answered {status}, which is not documented"
        ));
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let documented: Vec<&String> = response["content"]
        .as_object()
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    if documented.is_empty() || documented.iter().any(|d| *d == media) {
        None
    } else {
        Some(format!(
            "{what}: answered {status} as {media:?}, documented as {documented:?}"
        ))
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<(&str, &'static str)>,
) -> (StatusCode, String) {
    let mut req = app.client.request(
        Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
        app.url(url),
    );
    if let Some((token, org)) = auth {
        req = req.bearer_auth(token).header("X-Tenant-ID", org);
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("Content-Type", content_type).body(bytes);
    }
    let res = req.send().await.expect("sent");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (res.status(), content_type)
}

#[tokio::test]
async fn the_server_answers_only_what_the_document_says() {
    let app = spawn_app().await;
    let (token, org) = app.owner("ann").await;
    let doc: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    let mut problems = Vec::new();
    let mut calls = 0;
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/api/") || (method == "post" && path == "/api/v1/auth/logout") {
            continue;
        }
        let url = concrete(&path, &org);
        // Without a credential.
        let (status, content_type) = send(&app, &method, &url, None, None).await;
        calls += 1;
        problems.extend(answer_problem(
            &format!("{method} {path} without a credential"),
            &op,
            status,
            &content_type,
        ));
        if op["requestBody"].is_null() || path == "/api/v1/users/me" {
            continue;
        }
        // Signed in, with a body of the wrong media type, and with one that is not JSON.
        for (body, what) in [
            (("text/plain", "x"), "a text/plain body"),
            (("application/json", "{not json"), "a body that is not JSON"),
        ] {
            let (status, content_type) =
                send(&app, &method, &url, Some((&token, &org)), Some(body)).await;
            calls += 1;
            problems.extend(answer_problem(
                &format!("{method} {path} with {what}"),
                &op,
                status,
                &content_type,
            ));
        }
    }
    assert!(calls > 100, "only {calls} calls: is the document empty?");
    assert!(
        problems.is_empty(),
        "answers the document does not describe:\n{}",
        problems.join("\n")
    );
}
