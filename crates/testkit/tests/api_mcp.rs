//! `POST /api/v1/mcp`, the Model Context Protocol server, black-box on the embedded default and
//! on PostgreSQL + Redis: the handshake, `tools/list`, each tool through the use case of its
//! HTTP route; and the attacker's moves: another organization's documents (by id, by search,
//! by naming its tenant), a revoked key and a removed member refused at their next message, a
//! viewer asking, a used-up quota, a spent rate budget, bad arguments and bad transport input.
//!
//! Then the official MCP Python SDK (`mcp` on PyPI) runs `tests/python/mcp_sdk.py` against the
//! same server. Its interpreter is `MCP_SDK_PYTHON` (`.ci/run` makes a venv with the pinned
//! package), else `python3`; when it cannot import `mcp` the test is skipped with a message, or
//! fails when `CI` is set.

use std::path::Path;

use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

const LEASE: &str = "Lease agreement for the Harbor Street apartment.\n\n\
The tenant pays a monthly rent of 1,200 euros to the landlord on the first day of each month. \
The lease starts on the first of April 2025 and ends on the thirty-first of March 2027. \
The landlord keeps a security deposit of 3,600 euros in a separate bank account.";

const SECRET: &str = "Project Falcon launch plan.\n\n\
The launch code of project Falcon is 4471 and the monthly rent of the hangar is paid by Falcon Ltd.";

const PROTOCOL: &str = "2025-06-18";

struct Seeded {
    token: String,
    org: String,
    collection: String,
    lease: String,
    member_key_id: String,
    member_key: String,
    viewer_key: String,
    revoked_key: String,
    other_org: String,
    other_token: String,
    other_collection: String,
    secret: String,
    quota_org: String,
    quota_key: String,
}

async fn api_key(app: &TestApp, token: &str, org: &str, role: &str) -> (String, String) {
    let (status, key) = app
        .call(
            token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": role, "role": role})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["api_key"]["id"].as_str().expect("id").to_owned(),
        key["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn revoke(app: &TestApp, token: &str, org: &str, id: &str) {
    let (status, body) = app
        .call(
            token,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

async fn seed(app: &TestApp) -> Seeded {
    let (token, org) = app.owner("ann").await;
    let collection = app.collection(&token, &org, "Contracts").await;
    let lease = app
        .ready_document(&token, &org, "lease.txt", LEASE, &collection)
        .await;
    let (member_key_id, member_key) = api_key(app, &token, &org, "member").await;
    let (_, viewer_key) = api_key(app, &token, &org, "viewer").await;
    let (revoked_id, revoked_key) = api_key(app, &token, &org, "member").await;
    revoke(app, &token, &org, &revoked_id).await;

    let (other_token, other_org) = app.owner("bob").await;
    let falcon = app.collection(&other_token, &other_org, "Falcon").await;
    let secret = app
        .ready_document(&other_token, &other_org, "falcon.txt", SECRET, &falcon)
        .await;

    let (quota_token, quota_org) = app.owner("cyd").await;
    let (_, quota_key) = api_key(app, &quota_token, &quota_org, "member").await;
    let (_, me) = app.call(&token, Method::GET, "/api/v1/auth/me", None).await;
    let id = UserId::parse(me["user"]["id"].as_str().unwrap_or_default()).expect("id");
    app.make_platform_admin(id).await;
    let (status, patched) = app
        .call(
            &token,
            Method::PATCH,
            &format!("/api/v1/admin/orgs/{quota_org}"),
            Some(json!({"monthly_token_limit": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    Seeded {
        token,
        org,
        collection,
        lease,
        member_key_id,
        member_key,
        viewer_key,
        revoked_key,
        other_org,
        other_token,
        other_collection: falcon,
        secret,
        quota_org,
        quota_key,
    }
}

/// One raw POST to the endpoint: status, headers, JSON body (`null` when none).
async fn post(
    app: &TestApp,
    token: Option<&str>,
    tenant: Option<&str>,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.post(app.url("/api/v1/mcp")).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(t) = tenant {
        req = req.header("x-tenant-id", t);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.expect("sent");
    let (status, headers) = (res.status(), res.headers().clone());
    let text = res.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

const MCP_HEADERS: [(&str, &str); 3] = [
    ("accept", "application/json, text/event-stream"),
    ("content-type", "application/json"),
    ("mcp-protocol-version", PROTOCOL),
];

/// A JSON-RPC request as an MCP client sends it: the HTTP status and the JSON-RPC answer.
async fn rpc(
    app: &TestApp,
    token: &str,
    tenant: Option<&str>,
    method: &str,
    params: Value,
) -> (StatusCode, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let (status, headers, answer) =
        post(app, Some(token), tenant, &MCP_HEADERS, body.to_string()).await;
    if status == StatusCode::OK {
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{answer}"
        );
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["id"], 7, "{answer}");
    }
    (status, answer)
}

/// `tools/call`: the result (success or the tool's error), or the JSON-RPC error.
async fn call(
    app: &TestApp,
    token: &str,
    tenant: Option<&str>,
    tool: &str,
    arguments: Value,
) -> Value {
    let (status, answer) = rpc(
        app,
        token,
        tenant,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tool}: {answer}");
    answer
}

/// A successful tool result's structured content.
fn ok(answer: &Value) -> &Value {
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str();
    assert!(text.is_some_and(|t| !t.is_empty()), "{answer}");
    &answer["result"]["structuredContent"]
}

/// A tool's refusal: its structured error, with this code.
fn refused<'a>(answer: &'a Value, code: &str) -> &'a Value {
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let error = &answer["result"]["structuredContent"]["error"];
    assert_eq!(error["code"], code, "{answer}");
    assert!(
        error["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{answer}"
    );
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with(code), "{answer}");
    error
}

/// A JSON-RPC invalid-params error naming `field`.
fn invalid(answer: &Value, field: Option<&str>) {
    assert!(answer.get("result").is_none(), "{answer}");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    if let Some(field) = field {
        assert_eq!(
            answer["error"]["data"]["errors"][0]["field"], field,
            "{answer}"
        );
    }
}

fn assert_problem(
    (status, headers, body): &(StatusCode, reqwest::header::HeaderMap, Value),
    want: StatusCode,
    code: &str,
) {
    assert_eq!(*status, want, "{body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{body}"
    );
    assert_eq!(body["code"], code, "{body}");
}

/// The organization's chat requests of the last day, and the member key's requests.
async fn usage(app: &TestApp, s: &Seeded) -> (u64, u64) {
    let (status, usage) = app
        .call_in(
            &s.token,
            Method::GET,
            "/api/v1/usage?window=24h",
            None,
            Some(&s.org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let requests = |list: &str, key: &str, value: &str| {
        usage[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row[key] == value)
            .and_then(|row| row["requests"].as_u64())
            .unwrap_or(0)
    };
    (
        requests("by_kind", "kind", "chat"),
        requests("by_user", "api_key_id", &s.member_key_id),
    )
}

async fn handshake_and_tools(app: &TestApp, s: &Seeded) {
    let key = s.member_key.as_str();
    // An API key alone names its organization; the header may name it too.
    for tenant in [None, Some(s.org.as_str())] {
        let (status, init) = rpc(
            app,
            key,
            tenant,
            "initialize",
            json!({"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "api_mcp", "version": "1"}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{init}");
        assert_eq!(init["result"]["protocolVersion"], PROTOCOL, "{init}");
        assert_eq!(init["result"]["serverInfo"]["name"], "quire", "{init}");
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
    }
    let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, headers, _) =
        post(app, Some(key), None, &MCP_HEADERS, notification.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(headers.get("mcp-session-id").is_none(), "stateless");
    let (status, ping) = rpc(app, key, None, "ping", json!({})).await;
    assert_eq!(
        (status, &ping["result"]),
        (StatusCode::OK, &json!({})),
        "{ping}"
    );

    let (status, list) = rpc(app, key, None, "tools/list", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let tools = list["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["search", "ask", "list_documents", "read_document"]);
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().is_some(), "{t}");
    }

    // search: the tenant's passage, by key or by signed-in user with the tenant.
    for (token, tenant) in [(key, None), (s.token.as_str(), Some(s.org.as_str()))] {
        let answer = call(
            app,
            token,
            tenant,
            "search",
            json!({"query": "monthly rent"}),
        )
        .await;
        let results = ok(&answer)["results"].as_array().expect("results").clone();
        assert!(!results.is_empty(), "{answer}");
        for r in &results {
            assert_eq!(r["document_id"], s.lease.as_str(), "{answer}");
        }
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("lease.txt") && t.contains("1,200 euros")),
            "{answer}"
        );
    }
    let scoped = call(
        app,
        key,
        None,
        "search",
        json!({"query": "security deposit", "collection_ids": [s.collection], "top_k": 1, "mode": "keyword"}),
    )
    .await;
    assert_eq!(
        ok(&scoped)["results"].as_array().map(Vec::len),
        Some(1),
        "{scoped}"
    );

    // ask: a grounded answer with verified citations, metered as the key's chat usage.
    let before = usage(app, s).await;
    let answer = call(
        app,
        key,
        None,
        "ask",
        json!({"question": "When does the lease end?"}),
    )
    .await;
    let content = ok(&answer);
    assert!(
        content["answer"]
            .as_str()
            .is_some_and(|t| t.contains("thirty-first of March 2027")),
        "{answer}"
    );
    let sources = content["sources"].as_array().expect("sources");
    assert!(!sources.is_empty(), "{answer}");
    for c in sources {
        assert_eq!(c["document_id"], s.lease.as_str(), "{answer}");
        assert!(
            LEASE.contains(c["quote"].as_str().expect("quote")),
            "{answer}"
        );
    }
    assert!(
        content["usage"]["total_tokens"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "{answer}"
    );
    let after = usage(app, s).await;
    assert_eq!(after.0, before.0 + 1, "one more chat request in the ledger");
    assert!(after.1 > before.1, "the member key's usage grew");

    // list_documents and read_document.
    let listed = call(app, key, None, "list_documents", json!({"status": "ready"})).await;
    let items = ok(&listed)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], s.lease.as_str());
    let page = call(app, key, None, "list_documents", json!({"limit": 1})).await;
    assert!(ok(&page)["next_cursor"].is_null(), "{page}");
    let read = call(
        app,
        key,
        None,
        "read_document",
        json!({"document_id": s.lease}),
    )
    .await;
    let content = ok(&read);
    assert_eq!(content["document"]["id"], s.lease.as_str());
    let text = read["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("lease.txt") && text.contains("3,600 euros"),
        "{read}"
    );
    assert!(
        content["chunks"].as_array().is_some_and(|c| !c.is_empty()),
        "{read}"
    );
}

async fn attacks(app: &TestApp, s: &Seeded) {
    let key = s.member_key.as_str();
    // Another organization's document: not found by id, never in a search or a list, and
    // nothing of it in any answer.
    let read = call(
        app,
        key,
        None,
        "read_document",
        json!({"document_id": s.secret}),
    )
    .await;
    refused(&read, "not_found");
    for answer in [
        call(
            app,
            key,
            None,
            "search",
            json!({"query": "launch code Falcon 4471"}),
        )
        .await,
        call(app, key, None, "list_documents", json!({})).await,
        call(
            app,
            &s.token,
            Some(&s.org),
            "search",
            json!({"query": "Falcon hangar", "mode": "keyword"}),
        )
        .await,
    ] {
        assert!(!answer.to_string().contains("4471"), "{answer}");
        assert!(!answer.to_string().contains(&s.secret), "{answer}");
    }
    for (tool, arguments) in [
        (
            "ask",
            json!({"question": "What is the launch code?", "collection_ids": [s.other_collection]}),
        ),
        (
            "search",
            json!({"query": "launch code", "collection_ids": [s.other_collection]}),
        ),
        (
            "list_documents",
            json!({"collection_id": s.other_collection}),
        ),
    ] {
        let answer = call(app, key, None, tool, arguments).await;
        assert!(!answer.to_string().contains("4471"), "{answer}");
        if tool == "list_documents" {
            assert_eq!(ok(&answer)["items"], json!([]), "{answer}");
        } else {
            refused(&answer, "not_found");
        }
    }
    // Naming the other organization: 404 whoever asks, before the protocol (problem+json).
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    for (token, tenant) in [
        (key, s.other_org.as_str()),
        (key, "bob"),
        (s.token.as_str(), s.other_org.as_str()),
        (s.other_token.as_str(), s.org.as_str()),
    ] {
        let answer = post(app, Some(token), Some(tenant), &MCP_HEADERS, init.clone()).await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "not_found");
    }

    // Credentials: none, a wrong key, a revoked key → 401; an access token without the
    // tenant → 400 tenant_required.
    for token in [None, Some("qk_not-a-key"), Some(s.revoked_key.as_str())] {
        let answer = post(app, token, None, &MCP_HEADERS, init.clone()).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(answer.1["www-authenticate"], "Bearer");
    }
    let answer = post(app, Some(&s.token), None, &MCP_HEADERS, init.clone()).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "tenant_required");

    // A key revoked between two messages is refused at the next one.
    let (id, fresh) = api_key(app, &s.token, &s.org, "member").await;
    ok(&call(app, &fresh, None, "list_documents", json!({})).await);
    revoke(app, &s.token, &s.org, &id).await;
    let answer = post(app, Some(&fresh), None, &MCP_HEADERS, init.clone()).await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");

    // A member removed between two messages: refused at the next one, and so is the key they
    // made (an admin: members may not make keys).
    let dan = person(app, "dan").await;
    let store = app.store().await;
    store
        .add(
            TenantId::parse(&s.org).expect("org id"),
            dan.id,
            Role::Admin,
            SystemClock.now(),
        )
        .await
        .expect("membership");
    let (_, dan_key) = api_key(app, &dan.token, &s.org, "member").await;
    ok(&call(
        app,
        &dan.token,
        Some(&s.org),
        "search",
        json!({"query": "rent"}),
    )
    .await);
    ok(&call(app, &dan_key, None, "list_documents", json!({})).await);
    let (status, body) = app
        .call(
            &s.token,
            Method::DELETE,
            &format!("/api/v1/orgs/{}/members/{}", s.org, dan.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let answer = post(
        app,
        Some(&dan.token),
        Some(&s.org),
        &MCP_HEADERS,
        init.clone(),
    )
    .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not_found");
    let answer = post(app, Some(&dan_key), None, &MCP_HEADERS, init.clone()).await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");

    // A viewer reads and searches, and may not ask (a model call is a member's).
    let viewer = s.viewer_key.as_str();
    ok(&call(app, viewer, None, "search", json!({"query": "rent"})).await);
    ok(&call(
        app,
        viewer,
        None,
        "read_document",
        json!({"document_id": s.lease}),
    )
    .await);
    refused(
        &call(
            app,
            viewer,
            None,
            "ask",
            json!({"question": "When does the lease end?"}),
        )
        .await,
        "forbidden",
    );

    // A key's scopes hold per tool: one limited to `chat` asks, and may not search or read
    // (their routes need `read`); one limited to `read` reads and may not ask.
    for (scopes, allowed, denied) in [
        (json!(["chat"]), "ask", ["search", "read_document"]),
        (json!(["read"]), "search", ["ask", "ask"]),
    ] {
        let (status, key) = app
            .call(
                &s.token,
                Method::POST,
                &format!("/api/v1/orgs/{}/api-keys", s.org),
                Some(json!({"name": "scoped", "role": "member", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key = key["secret"].as_str().expect("secret");
        let arguments = |tool: &str| match tool {
            "ask" => json!({"question": "When does the lease end?"}),
            "search" => json!({"query": "rent"}),
            _ => json!({"document_id": s.lease}),
        };
        ok(&call(app, key, None, allowed, arguments(allowed)).await);
        for tool in denied {
            let answer = call(app, key, None, tool, arguments(tool)).await;
            let error = refused(&answer, "forbidden");
            assert_eq!(error["status"], 403, "{answer}");
            assert!(!answer.to_string().contains("1,200"), "{answer}");
        }
    }

    // A used-up quota: the tool's error says so and when it resets; nothing answered.
    let answer = call(
        app,
        &s.quota_key,
        Some(&s.quota_org),
        "ask",
        json!({"question": "When does the lease end?"}),
    )
    .await;
    let error = refused(&answer, "quota_exceeded");
    assert_eq!(error["status"], 402);
    assert!(error["resets_at"].as_str().is_some(), "{answer}");
}

async fn bad_input(app: &TestApp, s: &Seeded) {
    let key = s.member_key.as_str();
    // Bad arguments: JSON-RPC -32602 naming the field, never a result.
    for (tool, arguments, field) in [
        ("search", json!({}), Some("query")),
        (
            "search",
            json!({"query": "rent", "top_k": 0}),
            Some("top_k"),
        ),
        (
            "search",
            json!({"query": "rent", "mode": "psychic"}),
            Some("mode"),
        ),
        (
            "search",
            json!({"query": "rent", "top_k": "many"}),
            Some("top_k"),
        ),
        ("search", json!({"query": "x".repeat(2_001)}), Some("query")),
        ("ask", json!({"question": ""}), Some("question")),
        (
            "ask",
            json!({"question": "q", "collection_ids": ["nope"]}),
            Some("collection_ids[0]"),
        ),
        (
            "ask",
            json!({"question": "q", "temperature": 2}),
            Some("temperature"),
        ),
        ("list_documents", json!({"status": "lost"}), Some("status")),
        ("list_documents", json!({"limit": 1000}), Some("limit")),
        ("list_documents", json!({"cursor": "!!"}), Some("cursor")),
        (
            "read_document",
            json!({"document_id": "nope"}),
            Some("document_id"),
        ),
        (
            "read_document",
            json!({"document_id": s.lease, "limit": 0}),
            Some("limit"),
        ),
        ("no_such_tool", json!({}), None),
    ] {
        let answer = call(app, key, None, tool, arguments).await;
        invalid(&answer, field);
    }
    let (status, answer) = rpc(
        app,
        key,
        None,
        "tools/call",
        json!({"name": "search", "arguments": 5}),
    )
    .await;
    assert!(
        status.is_client_error() || answer["error"].is_object(),
        "{answer}"
    );
    let (status, answer) = rpc(app, key, None, "resources/list", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["error"]["code"], -32601, "{answer}");

    // The transport's refusals are problem+json.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let only_json = [
        ("accept", "application/json"),
        ("content-type", "application/json"),
    ];
    let answer = post(app, Some(key), None, &only_json, list.clone()).await;
    assert_problem(&answer, StatusCode::NOT_ACCEPTABLE, "not_acceptable");
    let text = [("accept", MCP_HEADERS[0].1), ("content-type", "text/plain")];
    let answer = post(app, Some(key), None, &text, list.clone()).await;
    assert_problem(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    for junk in ["{\"jsonrpc\": ", "[1, 2]", "{\"hello\": \"world\"}"] {
        let answer = post(app, Some(key), None, &MCP_HEADERS, junk.to_owned()).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "validation_failed");
    }
    let bad_version = [
        MCP_HEADERS[0],
        MCP_HEADERS[1],
        ("mcp-protocol-version", "1999-01-01"),
    ];
    let answer = post(app, Some(key), None, &bad_version, list.clone()).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "validation_failed");
    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "search", "arguments": {"query": "x".repeat(app.settings.http.body_limit_bytes)}}});
    let answer = post(app, Some(key), None, &MCP_HEADERS, huge.to_string()).await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // No server-initiated stream and no session to end: 405 with Allow.
    for method in [Method::GET, Method::DELETE] {
        let res = app
            .client
            .request(method.clone(), app.url("/api/v1/mcp"))
            .bearer_auth(key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(res.headers()["allow"], "POST", "{method}");
    }
}

struct Person {
    id: UserId,
    token: String,
}

async fn person(app: &TestApp, name: &str) -> Person {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{name}@example.com"), "password": "correct horse battery", "name": name}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    Person {
        id: UserId::parse(body["user"]["id"].as_str().expect("id")).expect("uuid"),
        token: body["tokens"]["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
    }
}

async fn scenario(app: &TestApp) {
    let s = seed(app).await;
    handshake_and_tools(app, &s).await;
    attacks(app, &s).await;
    bad_input(app, &s).await;
}

#[tokio::test]
async fn the_mcp_server_on_the_embedded_default() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn the_mcp_server_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}

/// A tool counts against its route's rate budget: the second `ask` of a key with a budget of
/// one answer a minute is refused with when to retry, and `search` (another class) still works.
async fn rate_limited(app: &TestApp) {
    let (token, org) = app.owner("ann").await;
    let collection = app.collection(&token, &org, "Contracts").await;
    app.ready_document(&token, &org, "lease.txt", LEASE, &collection)
        .await;
    let (_, key) = api_key(app, &token, &org, "member").await;
    let question = json!({"question": "When does the lease end?"});
    ok(&call(app, &key, None, "ask", question.clone()).await);
    let answer = call(app, &key, None, "ask", question).await;
    let error = refused(&answer, "rate_limited");
    assert!(
        error["retry_after_secs"].as_u64().is_some_and(|s| s >= 1),
        "{answer}"
    );
    ok(&call(app, &key, None, "search", json!({"query": "rent"})).await);
}

fn one_answer_a_minute(s: &mut settings::Settings) {
    s.rate_limits.chat.per_api_key = 1;
}

#[tokio::test]
async fn a_tool_is_rate_limited_as_its_route_on_the_embedded_default() {
    rate_limited(&spawn_app_with(TestOptions::default().tweak(one_answer_a_minute)).await).await;
}

#[tokio::test]
async fn a_tool_is_rate_limited_as_its_route_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    rate_limited(&spawn_app_with(TestOptions::production().tweak(one_answer_a_minute)).await).await;
}

/// Runs the SDK script against `app`, seeded; fails with its output unless every check passed.
async fn run_sdk(app: &TestApp, python: String) {
    let s = seed(app).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_sdk.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .env("SDK_BASE_URL", &app.address)
        .env("SDK_TENANT", &s.org)
        .env("SDK_TOKEN", &s.token)
        .env("SDK_KEY", &s.member_key)
        .env("SDK_VIEWER_KEY", &s.viewer_key)
        .env("SDK_REVOKED_KEY", &s.revoked_key)
        .env("SDK_DOCUMENT", &s.lease)
        .env("SDK_OTHER_DOCUMENT", &s.secret)
        .env("SDK_OTHER_TENANT", &s.other_org)
        .env("SDK_QUOTA_TENANT", &s.quota_org)
        .env("SDK_QUOTA_KEY", &s.quota_key)
        .env("NO_PROXY", "127.0.0.1,localhost");
    testkit::python::run_checks("MCP SDK", cmd).await;
}

#[tokio::test]
async fn the_official_mcp_python_sdk_on_the_embedded_default() {
    let Some(python) = testkit::python::interpreter(
        "the_official_mcp_python_sdk_on_the_embedded_default",
        "MCP_SDK_PYTHON",
        "mcp.client.streamable_http",
    ) else {
        return;
    };
    run_sdk(&spawn_app().await, python).await;
}

#[tokio::test]
async fn the_official_mcp_python_sdk_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let Some(python) = testkit::python::interpreter(
        "the_official_mcp_python_sdk_on_postgres_and_redis",
        "MCP_SDK_PYTHON",
        "mcp.client.streamable_http",
    ) else {
        return;
    };
    run_sdk(&spawn_app_with(TestOptions::production()).await, python).await;
}
