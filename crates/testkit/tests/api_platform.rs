//! Platform endpoints, black-box: health, readiness, metrics, OpenAPI, docs, request ids,
//! security headers, CORS and compression.

use reqwest::StatusCode;
use serde_json::Value;
use testkit::{TestOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

async fn assert_ready(app: &testkit::TestApp) {
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["failing"], serde_json::json!([]));
    for c in ["database", "cache"] {
        assert_eq!(body["components"][c]["status"], "up", "{c} in {body}");
        assert!(body["components"][c]["latency_ms"].is_number());
    }
}

#[tokio::test]
async fn ready_on_the_embedded_default() {
    assert_ready(&spawn_app().await).await;
}

#[tokio::test]
async fn ready_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production()).await;
    assert_ready(&app).await;
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains(r#"quire_pool_connections{component="cache",state="max"} 4"#),
        "the Redis pool reports its size:\n{metrics}"
    );
}

#[tokio::test]
async fn readiness_names_the_failing_component_and_hides_the_cause() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.cache.backend = settings::CacheBackend::Redis;
        s.cache.redis_url = Some("redis://127.0.0.1:1".to_owned().into());
    }))
    .await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = res.text().await.expect("text");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failing"], serde_json::json!(["cache"]));
    assert_eq!(body["components"]["database"]["status"], "up");
    assert!(
        !text.contains("127.0.0.1:1") && !text.to_lowercase().contains("refused"),
        "{text}"
    );

    // Liveness does not depend on other components; /health reports but answers 200.
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    let health: Value = app.get("/health").await.json().await.expect("json");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["components"]["cache"]["status"], "down");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_report_pools() {
    let app = spawn_app().await;
    app.get("/health/live").await;
    app.get("/health/live").await;
    app.get("/no/such/route/0190f3a2").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text")
    );
    let text = res.text().await.expect("text");
    for line in [
        r#"quire_http_requests_total{method="GET",route="/health/live",status="200"} 2"#,
        r#"quire_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"quire_http_request_duration_seconds_count{method="GET",route="/health/live",status="200"} 2"#,
        "quire_http_requests_in_flight 1",
        r#"quire_pool_connections{component="database",state="max"} 5"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("0190f3a2"),
        "raw paths must not become labels"
    );
}

#[tokio::test]
async fn openapi_documents_every_route_and_the_problem_shape() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in ["/health/live", "/health/ready", "/health", "/metrics"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} is documented"
        );
    }
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
    ] {
        assert!(
            doc["paths"][path]["post"].is_object(),
            "{path} is documented"
        );
    }
    assert!(doc["paths"]["/api/v1/auth/me"]["get"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in [
        "type",
        "title",
        "status",
        "detail",
        "code",
        "request_id",
        "errors",
    ] {
        assert!(problem[field].is_object(), "Problem.{field} is documented");
    }
}

#[tokio::test]
async fn docs_are_served_from_the_binary() {
    let app = spawn_app().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/docs/");
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no CDN: {html}"
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        assert_eq!(app.get(asset).await.status(), StatusCode::OK, "{asset}");
    }
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .expect("js");
    assert!(
        init.contains("/api/v1/openapi.json"),
        "the page loads our document: {init}"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "client-abc.123")
        .send()
        .await
        .expect("sent");
    assert_eq!(echoed.headers()["x-request-id"], "client-abc.123");

    for bad in ["has spaces", "<script>alert(1)</script>", &"x".repeat(4096)] {
        let res = app
            .client
            .get(app.url("/health/live"))
            .header("x-request-id", bad)
            .send()
            .await
            .expect("sent");
        let id = res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "generated ids are UUIDs: {id}"
        );
    }
    let generated = app.get("/health/live").await;
    assert!(generated.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn security_headers_are_set_and_hsts_only_when_configured() {
    let app = spawn_app().await;
    for path in ["/health/live", "/does-not-exist"] {
        let res = app.get(path).await;
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(!h.contains_key("strict-transport-security"), "{path}");
    }
    let tls = spawn_app_with(TestOptions::default().tweak(|s| {
        s.http.hsts = true;
        s.http.hsts_max_age_secs = 600;
    }))
    .await;
    let res = tls.get("/health/live").await;
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=600; includeSubDomains"
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.http.cors_allowed_origins = vec!["https://app.example.com".to_owned()];
    }))
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/health/live"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, x-tenant-id",
            )
            .send()
    };
    let ok = preflight("https://app.example.com").await.expect("sent");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let evil = preflight("https://evil.example").await.expect("sent");
    assert!(evil.status().is_client_error(), "{}", evil.status());
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    assert_eq!(
        evil.headers()["content-type"],
        "application/problem+json",
        "refusals are problems too"
    );

    let simple = app
        .client
        .get(app.url("/health/live"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("sent");
    assert!(!simple.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn responses_are_gzip_compressed_on_request() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-encoding"], "gzip");
}
