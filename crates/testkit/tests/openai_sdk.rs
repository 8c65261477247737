//! The OpenAI surface as OpenAI's clients see it, on the embedded default and on PostgreSQL
//! and Redis: every `/api/v1/ai` error in OpenAI's error shape with the status the SDKs map
//! to their typed exceptions (a used-up quota is 429 `insufficient_quota`), the rest of the API
//! still problem+json; `/ai/models` listing embedding models; base64 embeddings; `/ai/config`;
//! and who may read what (another organization, a viewer key, a revoked key).
//!
//! Then the official `openai` Python package (PyPI) runs `tests/python/openai_sdk.py` against
//! the same server. Its interpreter is `OPENAI_SDK_PYTHON` (`.ci/run` makes a venv with the
//! pinned package), else `python3`; when it cannot import `openai` the test is skipped with a
//! message, or fails when `CI` is set.

use std::path::Path;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

const LOCAL: &str = "quire-local-extractive";
const EMBEDDER: &str = "quire-local-ngram-384";

const LEASE: &str = "Lease agreement for the Harbor Street apartment.\n\n\
The tenant pays a monthly rent of 1,200 euros to the landlord on the first day of each month. \
The lease starts on the first of April 2025 and ends on the thirty-first of March 2027. \
The landlord keeps a security deposit of 3,600 euros in a separate bank account.";

/// Who and what the checks use.
struct Seeded {
    /// The owner's access token and organization.
    token: String,
    org: String,
    collection: String,
    member_key: String,
    viewer_key: String,
    revoked_key: String,
    /// An organization the keys and the owner are not in, and its owner's token.
    other_org: String,
    other_token: String,
    /// An organization whose monthly quota (1 token) is used up, and a member key of it.
    quota_org: String,
    quota_key: String,
}

/// A new API key of `org` with `role`: `(id, secret)`.
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

async fn seed(app: &TestApp) -> Seeded {
    let (token, org) = app.owner("ann").await;
    let collection = app.collection(&token, &org, "Contracts").await;
    app.ready_document(&token, &org, "lease.txt", LEASE, &collection)
        .await;
    let (_, member_key) = api_key(app, &token, &org, "member").await;
    let (_, viewer_key) = api_key(app, &token, &org, "viewer").await;
    let (revoked_id, revoked_key) = api_key(app, &token, &org, "member").await;
    let (status, _) = app
        .call(
            &token,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/api-keys/{revoked_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (other_token, other_org) = app.owner("bob").await;
    let (quota_token, quota_org) = app.owner("cyd").await;
    let (_, quota_key) = api_key(app, &quota_token, &quota_org, "member").await;
    // A platform administrator sets cyd's organization a 1-token month.
    let (_, me) = app.call(&token, Method::GET, "/api/v1/auth/me", None).await;
    let id = kernel::UserId::parse(me["user"]["id"].as_str().unwrap_or_default()).expect("id");
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
        member_key,
        viewer_key,
        revoked_key,
        other_org,
        other_token,
        quota_org,
        quota_key,
    }
}

/// A raw request: status, headers and the JSON body (`null` when there is none).
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    tenant: Option<&str>,
    body: Option<(&str, String)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(t) = tenant {
        req = req.header("x-tenant-id", t);
    }
    if let Some((content_type, b)) = body {
        req = req.header("content-type", content_type).body(b);
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

/// Checks an OpenAI-shaped error: status, `application/json`, `{"error": {message, type,
/// code, param}}` with this `type` and `code`, and no problem+json field. Answers the error.
fn assert_openai(
    (status, headers, body): &(StatusCode, reqwest::header::HeaderMap, Value),
    want_status: StatusCode,
    want_type: &str,
    want_code: &str,
) -> Value {
    assert_eq!(*status, want_status, "{body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{body}"
    );
    let error = &body["error"];
    assert_eq!(error["type"], want_type, "{body}");
    assert_eq!(error["code"], want_code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error.get("param").is_some(),
        "param is always there: {body}"
    );
    assert!(
        body.get("detail").is_none() && body.get("type").is_none(),
        "{body}"
    );
    error.clone()
}

/// Checks a problem+json answer with this status and code.
fn assert_problem(
    (status, headers, body): &(StatusCode, reqwest::header::HeaderMap, Value),
    want_status: StatusCode,
    want_code: &str,
) {
    assert_eq!(*status, want_status, "{body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{body}"
    );
    assert_eq!(body["code"], want_code, "{body}");
}

fn json_body(v: &Value) -> Option<(&'static str, String)> {
    Some(("application/json", v.to_string()))
}

/// The vectors of an embeddings answer, decoding base64 (little-endian f32).
fn vectors(answer: &Value) -> Vec<Vec<f32>> {
    answer["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| match &d["embedding"] {
            Value::String(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64");
                assert_eq!(bytes.len() % 4, 0);
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            Value::Array(floats) => floats
                .iter()
                .map(|f| f.as_f64().expect("a float") as f32)
                .collect(),
            other => panic!("an embedding: {other}"),
        })
        .collect()
}

async fn the_surface(app: &TestApp, s: &Seeded) {
    let ai = |p: &str| format!("/api/v1/ai/{p}");
    let member = Some(s.member_key.as_str());
    let tenant = Some(s.org.as_str());

    // The list holds the chat model and the embedding models, and the listed embedding model
    // embeds: float and base64 give the same vectors.
    let (status, _, list) = raw(app, Method::GET, &ai("models"), member, tenant, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    // The bundled semantic model and the static one distilled from it are offered by every
    // deployment too (docs/retrieval.md).
    assert_eq!(
        ids,
        [LOCAL, EMBEDDER, "quire-local-minilm", "quire-local-static"]
    );
    let input = json!(["monthly rent", "security deposit"]);
    let mut answers = Vec::new();
    for format in ["float", "base64"] {
        let body = json!({"model": EMBEDDER, "input": input, "encoding_format": format});
        let (status, _, answer) = raw(
            app,
            Method::POST,
            &ai("embeddings"),
            member,
            tenant,
            json_body(&body),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["data"][0]["embedding"].is_string(),
            format == "base64",
            "{answer}"
        );
        answers.push(vectors(&answer));
    }
    assert_eq!(answers[0].len(), 2);
    assert_eq!(answers[0][0].len(), 384);
    assert_eq!(
        answers[0], answers[1],
        "base64 is the float vector, bit for bit"
    );
    let bad = json!({"model": EMBEDDER, "input": "x", "encoding_format": "int8"});
    let error = assert_openai(
        &raw(
            app,
            Method::POST,
            &ai("embeddings"),
            member,
            tenant,
            json_body(&bad),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request_error",
        "validation_failed",
    );
    assert_eq!(error["param"], "encoding_format");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("must be float or base64")),
        "{error}"
    );

    // /ai/config: the models with kind, dimensions and price, the defaults and the limits.
    let (status, _, config) = raw(app, Method::GET, &ai("config"), member, tenant, None).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        config["models"],
        json!([
            {"id": LOCAL, "kind": "chat", "price": {"prompt": 0, "completion": 0}},
            {"id": EMBEDDER, "kind": "embedding", "dimensions": 384,
             "price": {"prompt": 0, "completion": 0}},
            {"id": "quire-local-minilm", "kind": "embedding", "dimensions": 384,
             "price": {"prompt": 0, "completion": 0}},
            {"id": "quire-local-static", "kind": "embedding", "dimensions": 384,
             "price": {"prompt": 0, "completion": 0}},
        ])
    );
    assert_eq!(
        config["defaults"],
        json!({"chat_model": LOCAL, "embedding_model": EMBEDDER,
               "max_completion_tokens": app.settings.chat.max_answer_tokens})
    );
    let limits = &config["limits"];
    assert_eq!(limits["plan"], "free", "{config}");
    assert_eq!(limits["monthly_token_limit"], 1_000_000, "{config}");
    assert!(limits["resets_at"].as_str().is_some(), "{config}");
    assert_eq!(limits["rate_window_secs"], 60, "{config}");
    assert_eq!(
        limits["rate_limits"][0],
        json!({"class": "chat", "per_user": 60, "per_api_key": 60, "per_ip": 120, "per_tenant": 600})
    );
    assert_eq!(limits["rate_limits"][1]["class"], "embeddings");
    assert_eq!(limits["request"]["completion_messages"], 500);
    assert_eq!(limits["request"]["embedding_inputs"], 2_048);
    // Each organization its own: cyd's shows its override.
    let (status, _, quota_config) = raw(
        app,
        Method::GET,
        &ai("config"),
        Some(&s.quota_key),
        Some(&s.quota_org),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{quota_config}");
    assert_eq!(quota_config["limits"]["monthly_token_limit"], 1);

    // A viewer key reads the models and the configuration, and may not call a model.
    let viewer = Some(s.viewer_key.as_str());
    for path in ["models", "config"] {
        let (status, _, body) = raw(app, Method::GET, &ai(path), viewer, tenant, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let embed = json!({"model": EMBEDDER, "input": "x"});
    assert_openai(
        &raw(
            app,
            Method::POST,
            &ai("embeddings"),
            viewer,
            tenant,
            json_body(&embed),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_error",
        "forbidden",
    );

    // Another organization's models and configuration: not found, whoever asks (its id or
    // slug, by a key or a member of another organization), and nothing of it in the answer.
    for (token, org) in [
        (s.member_key.as_str(), s.other_org.as_str()),
        (s.member_key.as_str(), "bob"),
        (s.token.as_str(), s.other_org.as_str()),
        (s.other_token.as_str(), s.org.as_str()),
    ] {
        for path in ["models", "config"] {
            let answer = raw(app, Method::GET, &ai(path), Some(token), Some(org), None).await;
            assert_openai(
                &answer,
                StatusCode::NOT_FOUND,
                "not_found_error",
                "not_found",
            );
            assert!(!answer.2.to_string().contains("free"), "{}", answer.2);
        }
    }

    // Credentials: none, a wrong one, a revoked key: 401 with WWW-Authenticate.
    for token in [None, Some("qk_not-a-key"), Some(s.revoked_key.as_str())] {
        let answer = raw(app, Method::GET, &ai("config"), token, tenant, None).await;
        assert_openai(
            &answer,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "unauthenticated",
        );
        assert_eq!(answer.1["www-authenticate"], "Bearer");
    }
    // The route as the router matches it decides, percent-encoding or not.
    assert_openai(
        &raw(app, Method::GET, "/api/v1/%61i/config", None, tenant, None).await,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "unauthenticated",
    );
    assert_openai(
        &raw(app, Method::GET, &ai("models"), member, None, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "tenant_required",
    );

    // Answers made outside the handlers: the router, a wrong method, a body that is not JSON,
    // another media type.
    assert_openai(
        &raw(app, Method::GET, &ai("nothing-here"), member, tenant, None).await,
        StatusCode::NOT_FOUND,
        "not_found_error",
        "not_found",
    );
    let wrong_method = raw(app, Method::DELETE, &ai("models"), member, tenant, None).await;
    assert_openai(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
    );
    assert_eq!(wrong_method.1["allow"], "GET");
    for (content_type, body, status, code) in [
        (
            "application/json",
            "{\"input\": ",
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "text/plain",
            "monthly rent",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ] {
        let body = Some((content_type, body.to_owned()));
        let answer = raw(app, Method::POST, &ai("embeddings"), member, tenant, body).await;
        assert_openai(&answer, status, "invalid_request_error", code);
    }

    // A used-up quota: 429 `insufficient_quota` that the SDKs do not retry, with when it resets.
    let quota = (Some(s.quota_key.as_str()), Some(s.quota_org.as_str()));
    let ask = json!({"model": LOCAL, "messages": [{"role": "user", "content": "Hi"}]});
    for (path, body) in [("chat/completions", &ask), ("embeddings", &embed)] {
        let answer = raw(
            app,
            Method::POST,
            &ai(path),
            quota.0,
            quota.1,
            json_body(body),
        )
        .await;
        let error = assert_openai(
            &answer,
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "quota_exceeded",
        );
        assert_eq!(answer.1["x-should-retry"], "false", "{path}");
        assert!(error["resets_at"].as_str().is_some(), "{error}");
    }

    // The rest of the API keeps problem+json: the same refusals on /embeddings, and a path
    // that only starts like /ai.
    assert_problem(
        &raw(
            app,
            Method::POST,
            "/api/v1/embeddings",
            quota.0,
            quota.1,
            json_body(&embed),
        )
        .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    );
    assert_problem(
        &raw(
            app,
            Method::POST,
            "/api/v1/embeddings",
            member,
            tenant,
            json_body(&bad),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_problem(
        &raw(app, Method::GET, "/api/v1/aimodels", member, tenant, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn the_openai_surface_on_the_embedded_default() {
    let app = spawn_app().await;
    let seeded = seed(&app).await;
    the_surface(&app, &seeded).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_openai_surface() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    let schema_ref = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .map(str::to_owned)
    };
    let openai_error = Some("#/components/schemas/OpenAiError".to_owned());
    for (path, method) in [
        ("/api/v1/ai/models", "get"),
        ("/api/v1/ai/config", "get"),
        ("/api/v1/ai/chat/completions", "post"),
        ("/api/v1/ai/embeddings", "post"),
        ("/api/v1/ai/summarize", "post"),
    ] {
        for status in ["401", "403", "404"] {
            assert_eq!(
                schema_ref(path, method, status),
                openai_error,
                "{method} {path} {status}"
            );
        }
    }
    assert_eq!(
        schema_ref("/api/v1/ai/chat/completions", "post", "429"),
        openai_error
    );
    assert!(
        doc["paths"]["/api/v1/ai/chat/completions"]["post"]["responses"]["402"].is_null(),
        "no 402 under /ai: a quota is a 429 there"
    );
    assert_eq!(
        schema_ref("/api/v1/ai/config", "get", "200"),
        Some("#/components/schemas/AiConfigDto".to_owned())
    );
    let schemas = &doc["components"]["schemas"];
    for field in ["message", "type", "code", "param"] {
        assert!(
            schemas["OpenAiErrorBody"]["properties"][field]["description"].is_string(),
            "OpenAiErrorBody.{field} is documented"
        );
    }
    // A field's schema: the object's own, or one of the parts it is made of (`allOf`: a
    // flattened struct, by reference).
    let property = |schema: &str, field: &str| -> Value {
        let own = &schemas[schema]["properties"][field];
        if !own.is_null() {
            return own.clone();
        }
        for part in schemas[schema]["allOf"].as_array().into_iter().flatten() {
            let part = match part["$ref"].as_str() {
                Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                None => part,
            };
            if !part["properties"][field].is_null() {
                return part["properties"][field].clone();
            }
        }
        Value::Null
    };
    for (schema, fields) in [
        ("AiConfigDto", &["models", "defaults", "limits"][..]),
        ("ConfigModelDto", &["id", "kind", "dimensions", "price"][..]),
        (
            "ConfigDefaultsDto",
            &["chat_model", "embedding_model", "max_completion_tokens"][..],
        ),
        (
            "ConfigLimitsDto",
            &[
                "plan",
                "monthly_token_limit",
                "used",
                "remaining",
                "resets_at",
                "max_concurrent_streams",
                "storage_limit_bytes",
                "rate_window_secs",
                "rate_limits",
                "request",
            ][..],
        ),
    ] {
        for field in fields {
            let p = property(schema, field);
            assert!(
                p["description"].is_string() || p["$ref"].is_string() || p["allOf"].is_array(),
                "{schema}.{field} is documented: {}",
                schemas[schema]
            );
        }
    }
}

#[tokio::test]
async fn the_openai_surface_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    let seeded = seed(&app).await;
    the_surface(&app, &seeded).await;
}

/// Runs the SDK script against `app`, seeded; fails with its output unless every check passed.
async fn run_sdk(app: &TestApp, python: String) {
    let s = seed(app).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_sdk.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .env("SDK_BASE_URL", &app.address)
        .env("SDK_TENANT", &s.org)
        .env("SDK_KEY", &s.member_key)
        .env("SDK_VIEWER_KEY", &s.viewer_key)
        .env("SDK_REVOKED_KEY", &s.revoked_key)
        .env("SDK_COLLECTION", &s.collection)
        .env("SDK_OTHER_TENANT", &s.other_org)
        .env("SDK_QUOTA_TENANT", &s.quota_org)
        .env("SDK_QUOTA_KEY", &s.quota_key)
        .env("SDK_CHAT_MODEL", LOCAL)
        .env("SDK_EMBEDDING_MODEL", EMBEDDER)
        // The SDK would read these; the test's own values only.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("NO_PROXY", "127.0.0.1,localhost");
    testkit::python::run_checks("OpenAI SDK", cmd).await;
}

#[tokio::test]
async fn the_official_python_sdk_on_the_embedded_default() {
    let Some(python) = testkit::python::interpreter(
        "the_official_python_sdk_on_the_embedded_default",
        "OPENAI_SDK_PYTHON",
        "openai",
    ) else {
        return;
    };
    run_sdk(&spawn_app().await, python).await;
}

#[tokio::test]
async fn the_official_python_sdk_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let Some(python) = testkit::python::interpreter(
        "the_official_python_sdk_on_postgres_and_redis",
        "OPENAI_SDK_PYTHON",
        "openai",
    ) else {
        return;
    };
    run_sdk(&spawn_app_with(TestOptions::production()).await, python).await;
}
