//! The `/api/v1/ai` routes over HTTP: OpenAI-compatible completions (grounded or not,
//! streamed or not), the model list, embeddings, summaries, Q&A, mind maps and document
//! analysis; on the embedded default (the local extractive answerer) and against the fake
//! OpenAI provider (its usage reported as is, a mind map retried once, a broken stream).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault, prompt_tokens, reply_pieces};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

const LOCAL: &str = "quire-local-extractive";
const FAKE_MODEL: &str = "gpt-4o-mini";
/// The embedded default's embedding model.
const EMBEDDER: &str = "quire-local-ngram-384";
/// The bundled semantic embedding model every deployment offers (docs/retrieval.md).
const SEMANTIC: &str = "quire-local-minilm";
/// The static model distilled from it.
const STATIC: &str = "quire-local-static";

const LEASE: &str = "Lease agreement for the Harbor Street apartment.\n\n\
The tenant pays a monthly rent of 1,200 euros to the landlord on the first day of each month. \
The rent rises by two percent every year on the first of April. \
The lease starts on the first of April 2025 and ends on the thirty-first of March 2027. \
The tenant may end the lease early with three months of written notice to the landlord.\n\n\
The landlord keeps a security deposit of 3,600 euros in a separate bank account. \
The deposit is returned to the tenant within thirty days after the tenant moves out. \
The landlord repairs the heating and the plumbing of the apartment within five working days. \
The tenant repairs small damage to the walls, doors and windows of the apartment. \
Pets are allowed in the apartment with the written consent of the landlord. \
The tenant insures the furniture of the apartment against fire and water damage.";

/// An owner, a collection and the lease, ready: `(token, org, collection, document)`.
async fn seeded(app: &TestApp, who: &str) -> (String, String, String, String) {
    let (token, org) = app.owner(who).await;
    let collection = app.collection(&token, &org, "Contracts").await;
    let document = app
        .ready_document(&token, &org, "lease.txt", LEASE, &collection)
        .await;
    (token, org, collection, document)
}

async fn post(
    app: &TestApp,
    token: &str,
    org: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.call_in(token, Method::POST, path, Some(body), Some(org))
        .await
}

/// A streamed completion: the status, the content type and the `data:` payloads in order.
async fn stream(
    app: &TestApp,
    token: &str,
    org: &str,
    body: Value,
) -> (StatusCode, String, Vec<String>) {
    let res = app
        .client
        .post(app.url("/api/v1/ai/chat/completions"))
        .bearer_auth(token)
        .header("x-tenant-id", org)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.expect("body");
    let events = text
        .split("\n\n")
        // Blank separators and `: keep-alive` comments carry no event.
        .filter(|e| !e.trim().is_empty() && !e.starts_with(':'))
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("an SSE data line: {e:?}"))
                .to_owned()
        })
        .collect();
    (status, content_type, events)
}

fn json_events(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

/// The concatenated `delta.content` of chunks.
fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Every citation is verified against the lease: the quote is its text, at `start..end`.
fn assert_citations(citations: &Value, document: &str) {
    let list = citations.as_array().expect("citations");
    assert!(!list.is_empty(), "no citation: {citations}");
    for c in list {
        let quote = c["quote"].as_str().expect("quote");
        assert!(
            !quote.is_empty() && LEASE.contains(quote),
            "not from the document: {c}"
        );
        assert_eq!(c["document_id"], document, "{c}");
        assert_eq!(c["document_name"], "lease.txt", "{c}");
        assert!(
            c["chunk_id"].as_str().is_some_and(|id| id.len() == 36),
            "{c}"
        );
        let (start, end) = (c["start"].as_u64(), c["end"].as_u64());
        assert_eq!(
            end.zip(start).map(|(e, s)| e - s),
            Some(quote.chars().count() as u64),
            "{c}"
        );
        assert!(c["score"].as_f64().is_some(), "{c}");
    }
}

fn quotes(citations: &Value) -> Vec<String> {
    citations
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["quote"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn usage_adds_up(usage: &Value) {
    let (p, c, t) = (
        usage["prompt_tokens"].as_u64().expect("prompt_tokens"),
        usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
        usage["total_tokens"].as_u64().expect("total_tokens"),
    );
    assert!(p > 0 && c > 0, "{usage}");
    assert_eq!(p + c, t, "{usage}");
}

/// The fields a validation error names: an OpenAI error object's `errors` under `/api/v1/ai`,
/// a problem's `errors` elsewhere (the shape each path must answer in is checked).
fn field_names(path: &str, body: &Value) -> BTreeSet<String> {
    let errors = if path.starts_with("/api/v1/ai/") {
        let error = openai_error(body);
        let fields = &error["errors"];
        let first = fields[0]["field"].as_str();
        assert_eq!(
            error["param"].as_str(),
            first,
            "param names the first field: {body}"
        );
        fields
    } else {
        assert_eq!(body["code"], "validation_failed", "a problem: {body}");
        &body["errors"]
    };
    errors
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The error object of an OpenAI-shaped error body (`{"error": {message, type, code, param}}`),
/// checked to hold exactly what OpenAI's SDKs read, and no problem+json field.
fn openai_error(body: &Value) -> &Value {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message: {body}"
    );
    assert!(error["type"].as_str().is_some(), "type: {body}");
    assert!(error["code"].as_str().is_some(), "code: {body}");
    assert!(
        error["param"].is_null() || error["param"].is_string(),
        "param: {body}"
    );
    assert!(
        body.get("detail").is_none() && body.get("status").is_none(),
        "no problem+json fields: {body}"
    );
    error
}

#[tokio::test]
async fn grounded_completions_quote_the_document_streamed_or_not() {
    let app = spawn_app().await;
    let (token, org, collection, document) = seeded(&app, "ann").await;
    let request = json!({
        "model": LOCAL,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "When does the lease end?"}]}
        ],
        "temperature": 0.2,
        "top_p": 1,
        "user": "ignored-by-quire",
        "quire": {"collection_ids": [collection], "top_k": 4}
    });

    let (status, done) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/chat/completions",
        request.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["object"], "chat.completion");
    assert!(
        done["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{done}"
    );
    assert!(
        done["created"].as_i64().is_some_and(|t| t > 1_700_000_000),
        "{done}"
    );
    assert_eq!(done["model"], LOCAL);
    let choice = &done["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "stop");
    let content = choice["message"]["content"].as_str().expect("content");
    assert!(content.contains("thirty-first of March 2027"), "{content}");
    assert!(content.contains("[S1]"), "cites its source: {content}");
    usage_adds_up(&done["usage"]);
    assert_citations(&done["quire"]["citations"], &document);
    assert!(
        quotes(&done["quire"]["citations"])
            .iter()
            .any(|q| q.contains("thirty-first of March 2027")),
        "{done}"
    );

    // Streamed: the same text, chunk by chunk, the citations on the last chunk, the usage
    // chunk when asked, then [DONE].
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, content_type, events) = stream(&app, &token, &org, streamed).await;
    assert_eq!(status, StatusCode::OK, "{events:?}");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks = json_events(&events);
    assert_eq!(chunks.len(), events.len() - 1, "one [DONE]: {events:?}");
    assert!(chunks.len() >= 4, "role, content, stop, usage: {events:?}");
    let first = &chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let id = first["id"].as_str().expect("id");
    assert!(id.starts_with("chatcmpl-"));
    assert!(
        chunks.iter().all(|c| c["id"] == id && c["model"] == LOCAL),
        "{events:?}"
    );
    assert_eq!(streamed_text(&chunks), content, "streamed == not streamed");
    let (usage_chunk, rest) = chunks.split_last().expect("chunks");
    let stop = rest.last().expect("the stop chunk");
    assert_eq!(stop["choices"][0]["finish_reason"], "stop", "{stop}");
    assert_eq!(stop["choices"][0]["delta"], json!({}), "{stop}");
    assert_eq!(
        quotes(&stop["quire"]["citations"]),
        quotes(&done["quire"]["citations"]),
        "{stop}"
    );
    assert_citations(&stop["quire"]["citations"], &document);
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    usage_adds_up(&usage_chunk["usage"]);
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"], done["usage"]["completion_tokens"],
        "the same answer costs the same"
    );
    assert!(
        rest.iter()
            .all(|c| c.get("usage").is_none() && c["choices"][0]["finish_reason"] != "length"),
        "{events:?}"
    );

    // Without include_usage: no usage chunk; still [DONE] last.
    let mut plain = request.clone();
    plain["stream"] = json!(true);
    let (status, _, events) = stream(&app, &token, &org, plain).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_events(&events);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "{events:?}"
    );
    assert_eq!(
        chunks
            .last()
            .map(|c| c["choices"][0]["finish_reason"].clone()),
        Some(json!("stop"))
    );
    assert_eq!(streamed_text(&chunks), content);

    // Not grounded: no `quire` in the answer, and the local answerer says what it is.
    let (status, free) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/chat/completions",
        json!({"model": LOCAL, "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert!(free.get("quire").is_none(), "{free}");
    assert!(
        free["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("local extractive answerer")),
        "{free}"
    );
}

#[tokio::test]
async fn models_embeddings_and_unknown_models() {
    let app = spawn_app().await;
    let (token, org) = app.owner("bea").await;

    let (status, list) = app
        .call_in(&token, Method::GET, "/api/v1/ai/models", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["object"], "list");
    // The chat model, then the embedding model: a client discovers both.
    assert_eq!(
        list["data"],
        json!([
            {"id": LOCAL, "object": "model", "created": 0, "owned_by": "quire"},
            {"id": EMBEDDER, "object": "model", "created": 0, "owned_by": "quire"},
            {"id": SEMANTIC, "object": "model", "created": 0, "owned_by": "quire"},
            {"id": STATIC, "object": "model", "created": 0, "owned_by": "quire"},
        ])
    );

    let (status, problem) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/chat/completions",
        json!({"model": "gpt-9", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let error = openai_error(&problem);
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("invalid_request_error"), &json!("validation_failed"))
    );
    let detail = error["message"].as_str().expect("message");
    assert!(
        detail.contains("gpt-9") && detail.contains(LOCAL),
        "{detail}"
    );

    // The OpenAI path to embeddings answers exactly what /embeddings does.
    for body in [
        json!({"input": ["the rent is due monthly", "the deposit"]}),
        json!({"input": "one text", "encoding_format": "base64"}),
    ] {
        let (s1, a) = post(&app, &token, &org, "/api/v1/embeddings", body.clone()).await;
        let (s2, b) = post(&app, &token, &org, "/api/v1/ai/embeddings", body).await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{a} {b}");
        assert_eq!(a, b);
        assert_eq!(b["object"], "list");
        assert!(b["data"][0]["embedding"].is_array() || b["data"][0]["embedding"].is_string());
    }
    let (status, problem) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/embeddings",
        json!({"input": "x", "encoding_format": "int8"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        field_names("/api/v1/ai/embeddings", &problem),
        BTreeSet::from(["encoding_format".to_owned()])
    );
    assert!(
        problem["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("encoding_format: must be float or base64")),
        "{problem}"
    );

    // A viewer key lists models but may not call them.
    let (status, key) = app
        .call(
            &token,
            Method::POST,
            "/api/v1/orgs/bea/api-keys",
            Some(json!({"name": "read-only", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().expect("secret");
    let (status, _) = app
        .call_in(secret, Method::GET, "/api/v1/ai/models", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = post(
        &app,
        secret,
        &org,
        "/api/v1/ai/summarize",
        json!({"text": LEASE}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(openai_error(&problem)["type"], "permission_error");
}

#[tokio::test]
async fn summaries_answers_mind_maps_and_analyses() {
    let app = spawn_app().await;
    let (token, org, collection, document) = seeded(&app, "cat").await;

    // Three styles of a text; concise is the default.
    let mut summaries = Vec::new();
    for style in ["concise", "detailed", "bullets"] {
        let (status, s) = post(
            &app,
            &token,
            &org,
            "/api/v1/ai/summarize",
            json!({"text": LEASE, "style": style}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{style}: {s}");
        assert_eq!(s["model"], LOCAL);
        usage_adds_up(&s["usage"]);
        let summary = s["summary"].as_str().expect("summary").to_owned();
        assert!(
            !summary.is_empty() && summary.len() < LEASE.len(),
            "{style}: {summary}"
        );
        summaries.push(summary);
    }
    let bullets = &summaries[2];
    let lines: Vec<&str> = bullets.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{bullets}");
    for line in &lines {
        let item = line
            .strip_prefix("- ")
            .unwrap_or_else(|| panic!("not a bullet: {line:?}"));
        assert!(LEASE.contains(item.trim()), "not from the text: {item}");
    }
    assert!(
        !summaries[0].contains("\n- "),
        "concise is prose: {}",
        summaries[0]
    );
    let (_, default) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/summarize",
        json!({"text": LEASE}),
    )
    .await;
    assert_eq!(default["summary"].as_str(), Some(summaries[0].as_str()));

    // A document of the organization; another tenant's is not found.
    let (status, s) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/summarize",
        json!({"document_id": document, "style": "bullets"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert!(
        s["summary"].as_str().is_some_and(|t| t.starts_with("- ")),
        "{s}"
    );
    let (dan, dan_org) = app.owner("dan").await;
    let (status, problem) = post(
        &app,
        &dan,
        &dan_org,
        "/api/v1/ai/summarize",
        json!({"document_id": document}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(!problem.to_string().contains("Harbor"), "{problem}");

    // Q&A with verified sources, all collections or one; another tenant's collection is
    // not found.
    for body in [
        json!({"question": "When does the lease end?"}),
        json!({"question": "When does the lease end?", "collection_ids": [collection], "top_k": 3}),
    ] {
        let (status, a) = post(&app, &token, &org, "/api/v1/ai/qa", body).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        assert!(
            a["answer"]
                .as_str()
                .is_some_and(|t| t.contains("thirty-first of March 2027")),
            "{a}"
        );
        assert_citations(&a["sources"], &document);
        assert_eq!(a["model"], LOCAL);
        usage_adds_up(&a["usage"]);
    }
    let (status, problem) = post(
        &app,
        &dan,
        &dan_org,
        "/api/v1/ai/qa",
        json!({"question": "When does the lease end?", "collection_ids": [collection]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    // Mind maps exactly as deep as asked (the lease has the material for 3 levels).
    for (depth, input) in [
        (1, json!({"document_id": document, "depth": 1})),
        (3, json!({"document_id": document, "depth": 3})),
        (2, json!({"topic": "the lease"})),
    ] {
        let (status, m) = post(&app, &token, &org, "/api/v1/ai/mindmap", input).await;
        assert_eq!(status, StatusCode::OK, "depth {depth}: {m}");
        assert_eq!(tree_depth(&m["root"]), depth, "{m}");
        assert!(
            m["root"]["label"].as_str().is_some_and(|l| !l.is_empty()),
            "{m}"
        );
        assert_eq!(m["model"], LOCAL);
        usage_adds_up(&m["usage"]);
    }

    // Analysis: exactly the keys asked for.
    let (status, a) = post(
        &app,
        &token,
        &org,
        &format!("/api/v1/documents/{document}/analyze"),
        json!({"tasks": ["keywords", "sentiment"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let keys: BTreeSet<&str> = a
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["document_id", "keywords", "sentiment", "model", "usage"]),
        "{a}"
    );
    assert_eq!(a["document_id"], document.as_str());
    let keywords = a["keywords"].as_array().expect("keywords");
    assert!(
        !keywords.is_empty() && keywords.iter().all(Value::is_string),
        "{a}"
    );
    assert!(
        ["positive", "negative", "neutral"]
            .contains(&a["sentiment"]["label"].as_str().unwrap_or("")),
        "{a}"
    );
    assert!(
        a["sentiment"]["score"]
            .as_f64()
            .is_some_and(|s| (-1.0..=1.0).contains(&s)),
        "{a}"
    );
    let (status, a) = post(
        &app,
        &token,
        &org,
        &format!("/api/v1/documents/{document}/analyze"),
        json!({"tasks": ["entities", "summary", "entities"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert!(
        a.get("keywords").is_none() && a.get("sentiment").is_none(),
        "{a}"
    );
    assert!(a["summary"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    let entities = a["entities"].as_array().expect("entities");
    assert!(
        entities
            .iter()
            .all(|e| e["text"].is_string() && e["type"].is_string()),
        "{a}"
    );
    let (status, _) = post(
        &app,
        &dan,
        &dan_org,
        &format!("/api/v1/documents/{document}/analyze"),
        json!({"tasks": ["summary"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Levels below the root.
fn tree_depth(node: &Value) -> usize {
    node["children"].as_array().map_or(0, |c| {
        c.iter().map(|n| 1 + tree_depth(n)).max().unwrap_or(0)
    })
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let app = spawn_app().await;
    let (token, org, _, document) = seeded(&app, "eve").await;
    let analyze = format!("/api/v1/documents/{document}/analyze");
    let cases = [
        (
            "/api/v1/ai/summarize",
            json!({}),
            vec!["document_id", "text"],
        ),
        (
            "/api/v1/ai/summarize",
            json!({"text": "x", "document_id": document}),
            vec!["document_id", "text"],
        ),
        (
            "/api/v1/ai/summarize",
            json!({"text": "x", "style": "haiku"}),
            vec!["style"],
        ),
        (
            "/api/v1/ai/summarize",
            json!({"text": "x", "lang": "en"}),
            vec!["lang"],
        ),
        ("/api/v1/ai/summarize", json!({"text": "  "}), vec!["text"]),
        (
            "/api/v1/ai/mindmap",
            json!({"topic": "lease", "depth": 5}),
            vec!["depth"],
        ),
        (
            "/api/v1/ai/mindmap",
            json!({"depth": 0}),
            vec!["depth", "document_id", "topic"],
        ),
        ("/api/v1/ai/qa", json!({"question": ""}), vec!["question"]),
        (
            "/api/v1/ai/qa",
            json!({"question": "q", "top_k": 99}),
            vec!["top_k"],
        ),
        (
            "/api/v1/ai/qa",
            json!({"question": "q", "collection_ids": []}),
            vec!["collection_ids"],
        ),
        (analyze.as_str(), json!({"tasks": []}), vec!["tasks"]),
        (
            analyze.as_str(),
            json!({"tasks": ["summary", "mood"]}),
            vec!["tasks[1]"],
        ),
        (
            "/api/v1/ai/chat/completions",
            json!({"model": LOCAL, "messages": []}),
            vec!["messages"],
        ),
        (
            "/api/v1/ai/chat/completions",
            json!({"model": LOCAL, "n": 2, "temperature": 3,
                   "messages": [{"role": "tool", "content": "x"}]}),
            vec!["messages[0].role", "n"],
        ),
        (
            "/api/v1/ai/chat/completions",
            json!({"model": LOCAL, "temperature": 3, "max_completion_tokens": 0,
                   "messages": [{"role": "user", "content": "x"}]}),
            vec!["max_tokens", "temperature"],
        ),
        (
            "/api/v1/ai/chat/completions",
            json!({"model": LOCAL, "messages": [{"role": "user", "content": "x"}],
                   "quire": {"collections": []}}),
            vec!["quire.collections"],
        ),
    ];
    for (path, body, fields) in cases {
        let (status, problem) = post(&app, &token, &org, path, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {problem}"
        );
        let expected: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        assert_eq!(
            field_names(path, &problem),
            expected,
            "{path} {body}: {problem}"
        );
    }
    // Another organization's document is not found, whatever the body.
    let (status, problem) = post(
        &app,
        &token,
        &org,
        "/api/v1/documents/0190f0c2-0000-7000-8000-000000000000/analyze",
        json!({"tasks": ["mood"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
}

/// A server whose provider (the fake) serves `gpt-4o-mini` for chat.
async fn with_fake(fake: &FakeOpenAi) -> TestApp {
    spawn_app_with(TestOptions {
        provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
        tweaks: vec![|s| {
            s.provider.embedding_dimensions = Some(64);
            s.provider.chat_models = vec![FAKE_MODEL.to_owned()];
        }],
        ..TestOptions::default()
    })
    .await
}

fn chat_requests(fake: &FakeOpenAi) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn provider_usage_is_passed_through() {
    let reply = "The fake provider answers this.";
    let fake = FakeOpenAi::builder().reply(reply).start();
    let app = with_fake(&fake).await;
    let (token, org) = app.owner("fay").await;

    let (status, list) = app
        .call_in(&token, Method::GET, "/api/v1/ai/models", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: BTreeSet<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            FAKE_MODEL,
            LOCAL,
            EMBEDDER,
            SEMANTIC,
            STATIC,
            "text-embedding-3-small"
        ]),
        "{list}"
    );

    let request = json!({
        "model": FAKE_MODEL,
        "messages": [{"role": "developer", "content": "Be kind."},
                     {"role": "user", "content": "Say something."}],
        "max_tokens": 50
    });
    let (status, done) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/chat/completions",
        request.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["choices"][0]["message"]["content"], reply);
    let reported = fake.last_usage().expect("the fake reported usage");
    assert_eq!(
        done["usage"],
        json!({
            "prompt_tokens": reported.prompt_tokens,
            "completion_tokens": reported.completion_tokens,
            "total_tokens": reported.prompt_tokens + reported.completion_tokens,
        })
    );
    assert_eq!(
        reported.completion_tokens as usize,
        reply_pieces(reply).len()
    );
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["messages"][0]["role"], "system",
        "developer is sent as system"
    );
    assert_eq!(sent[0]["max_tokens"], 50, "{}", sent[0]);

    let mut streamed = request;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, events) = stream(&app, &token, &org, streamed).await;
    assert_eq!(status, StatusCode::OK);
    let chunks = json_events(&events);
    assert_eq!(streamed_text(&chunks), reply);
    let reported = fake.last_usage().expect("usage");
    assert_eq!(
        chunks.last().map(|c| c["usage"].clone()),
        Some(json!({
            "prompt_tokens": reported.prompt_tokens,
            "completion_tokens": reported.completion_tokens,
            "total_tokens": reported.prompt_tokens + reported.completion_tokens,
        }))
    );
}

#[tokio::test]
async fn a_stream_the_provider_breaks_ends_with_an_error_event() {
    let fake = FakeOpenAi::builder()
        .reply("One two three four five six seven.")
        .start();
    let app = with_fake(&fake).await;
    let (token, org) = app.owner("gus").await;
    fake.push_faults([Fault::DisconnectAfter(2)]);
    let (status, _, events) = stream(
        &app,
        &token,
        &org,
        json!({"model": FAKE_MODEL, "stream": true,
               "messages": [{"role": "user", "content": "Count."}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let chunks = json_events(&events);
    let last = chunks.last().expect("events");
    assert_eq!(
        (&last["error"]["type"], &last["error"]["code"]),
        (&json!("server_error"), &json!("provider_unavailable")),
        "{events:?}"
    );
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(streamed_text(&chunks[..chunks.len() - 1]), "One two ");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"] != "stop"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_provider_stream() {
    let fake = FakeOpenAi::builder()
        .reply("A long answer that is never read to its end.")
        .start();
    let app = with_fake(&fake).await;
    let (token, org) = app.owner("hal").await;
    fake.push_faults([Fault::StallAfter(1, Duration::from_secs(30))]);
    let mut res = app
        .client
        .post(app.url("/api/v1/ai/chat/completions"))
        .bearer_auth(&token)
        .header("x-tenant-id", &org)
        .json(&json!({"model": FAKE_MODEL, "stream": true,
                      "messages": [{"role": "user", "content": "Go on."}]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let first = res.chunk().await.expect("a chunk").expect("not the end");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    assert_eq!(fake.abandoned_streams(), 0);
    drop(res);
    assert!(
        fake.until(Duration::from_secs(10), |f| f.abandoned_streams() == 1)
            .await,
        "the upstream stream outlived its client"
    );
}

#[tokio::test]
async fn mind_maps_are_asked_again_once() {
    let valid = r#"{"label": "Lease", "children": [{"label": "Rent", "children": [{"label": "Monthly"}]}, {"label": "Deposit"}]}"#;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeOpenAi::builder()
        .reply_with(move |_| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                "Here is your map: {label: Lease".to_owned()
            } else {
                valid.to_owned()
            }
        })
        .start();
    let app = with_fake(&fake).await;
    let (token, org) = app.owner("ida").await;
    let (status, m) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/mindmap",
        json!({"topic": "Lease", "depth": 2, "model": FAKE_MODEL}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        m["root"],
        json!({"label": "Lease", "children": [
            {"label": "Rent", "children": [{"label": "Monthly", "children": []}]},
            {"label": "Deposit", "children": []}
        ]})
    );
    assert_eq!(m["model"], FAKE_MODEL);
    // The usage of both attempts, as the fake counted them.
    let sent = chat_requests(&fake);
    assert_eq!(sent.len(), 2);
    let prompt: u32 = sent.iter().map(prompt_tokens).sum();
    let completion =
        reply_pieces("Here is your map: {label: Lease").len() + reply_pieces(valid).len();
    assert_eq!(m["usage"]["prompt_tokens"], prompt, "{m}");
    assert_eq!(m["usage"]["completion_tokens"], completion, "{m}");
}

#[tokio::test]
async fn a_mind_map_invalid_twice_is_a_502() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeOpenAi::builder()
        .reply_with(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            "I would rather write a poem.".to_owned()
        })
        .start();
    let app = with_fake(&fake).await;
    let (token, org) = app.owner("jon").await;
    let (status, problem) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/mindmap",
        json!({"topic": "Lease", "model": FAKE_MODEL}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    let error = openai_error(&problem);
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("server_error"), &json!("provider_unavailable"))
    );
    let detail = error["message"].as_str().expect("message");
    assert!(
        detail.contains("mind map") && detail.contains("twice"),
        "{detail}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "asked once more, then gave up"
    );
}

#[tokio::test]
async fn the_whitelist_limits_models() {
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(TestOptions {
        provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
        tweaks: vec![|s| {
            s.provider.embedding_dimensions = Some(64);
            s.provider.chat_models = vec![FAKE_MODEL.to_owned()];
            s.chat.allowed_models = vec![FAKE_MODEL.to_owned()];
        }],
        ..TestOptions::default()
    })
    .await;
    let (token, org) = app.owner("kim").await;
    let (status, list) = app
        .call_in(&token, Method::GET, "/api/v1/ai/models", None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The whitelist holds chat models only; embedding models are the deployment's.
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            FAKE_MODEL,
            EMBEDDER,
            SEMANTIC,
            STATIC,
            "text-embedding-3-small"
        ]
    );
    let (status, problem) = post(
        &app,
        &token,
        &org,
        "/api/v1/ai/chat/completions",
        json!({"model": LOCAL, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let detail = openai_error(&problem)["message"].as_str().expect("message");
    assert!(
        detail.ends_with(&format!("allowed: {FAKE_MODEL}")),
        "{detail}"
    );
    assert!(
        chat_requests(&fake).is_empty(),
        "nothing reached the provider"
    );
}
