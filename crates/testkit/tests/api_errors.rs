//! Bad input, black-box: every case answers a problem+json 4xx in the contract's shape, never a
//! 5xx or a hang; 5xx bodies are opaque.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{TestOptions, spawn_app, spawn_app_with};

/// Asserts the contract's problem shape and returns the body.
async fn problem(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let header_id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], format!("urn:quire:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(body["request_id"], header_id, "the body names the request");
    body
}

fn field_errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .expect("errors[]")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().expect("field").to_owned(),
                e["message"].as_str().expect("message").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/nothing/here", "/api/v2/health", "/%FF%FE"] {
        problem(app.get(path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let res = app
            .client
            .request(method.clone(), app.url("/health/ready"))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.headers()["allow"], "GET", "{method}");
        problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
    // Inside the versioned scope too.
    let res = app.get("/api/v1/auth/login").await;
    assert_eq!(res.headers()["allow"], "POST");
    problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn valid_json_passes() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/__test/echo",
            &json!({"name": "quire", "count": 3, "tags": ["a"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body, json!({"name": "quire", "count": 3, "tags": ["a"]}));
}

async fn post_raw(
    app: &testkit::TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/__test/echo"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in [
        "{\"name\": ",
        "not json",
        "",
        "{\"name\": \"abc\", \"count\": 1,}",
    ] {
        let res = post_raw(&app, "application/json", body).await;
        problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    }
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_422_with_field_errors() {
    let app = spawn_app().await;
    let cases = [
        (json!({"name": "abc"}), "count", "is required"),
        (json!({"count": 1}), "name", "is required"),
        (json!({"name": "abc", "count": "three"}), "count", ""),
        (json!({"name": "abc", "count": -1}), "count", ""),
        (
            json!({"name": "abc", "count": 1, "tags": [1]}),
            "tags[0]",
            "",
        ),
        (json!([1, 2, 3]), "body", "must be a JSON object"),
        (json!("text"), "body", ""),
    ];
    for (body, field, message) in cases {
        let res = app.post_json("/__test/echo", &body).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let errors = field_errors(&p);
        assert_eq!(errors.len(), 1, "{p}");
        assert_eq!(errors[0].0, field, "{p}");
        if !message.is_empty() {
            assert_eq!(errors[0].1, message, "{p}");
        }
    }
}

#[tokio::test]
async fn validation_rules_are_422_with_every_failing_field() {
    let app = spawn_app().await;
    let res = app
        .post_json("/__test/echo", &json!({"name": "ab", "count": 99}))
        .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&p),
        vec![
            ("count".to_owned(), "must be between 1 and 10".to_owned()),
            ("name".to_owned(), "must be 3 to 20 characters".to_owned()),
        ]
    );
    // Control characters and odd Unicode are data, not crashes.
    let res = app
        .post_json(
            "/__test/echo",
            &json!({"name": "a\u{0}b\u{202e}c", "count": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let app = spawn_app().await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ] {
        let res = post_raw(&app, ct, r#"{"name":"abc","count":1}"#).await;
        problem(
            res,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    let res = app
        .client
        .post(app.url("/__test/echo"))
        .body(r#"{"name":"abc","count":1}"#)
        .send()
        .await
        .expect("sent");
    problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // `application/problem+json`-style suffixes are JSON.
    let res = post_raw(
        &app,
        "application/merge-patch+json; charset=utf-8",
        r#"{"name":"abc","count":1}"#,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_are_413_with_or_without_a_length() {
    let app =
        spawn_app_with(TestOptions::default().tweak(|s| s.http.body_limit_bytes = 1024)).await;
    let big = format!(
        r#"{{"name":"abc","count":1,"tags":["{}"]}}"#,
        "x".repeat(4096)
    );
    let res = post_raw(&app, "application/json", big.clone()).await;
    let p = problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(
        p["detail"].as_str().expect("detail").contains("1024"),
        "{p}"
    );

    // Chunked, so the server learns the size only while reading.
    let chunks: Vec<Result<String, std::io::Error>> = (0..8).map(|_| Ok("x".repeat(512))).collect();
    let stream = futures_util::stream::iter(chunks);
    let res = post_raw(&app, "application/json", reqwest::Body::wrap_stream(stream)).await;
    problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Just under the limit is fine.
    let res = post_raw(&app, "application/json", r#"{"name":"abc","count":1}"#).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_pagination_is_422_naming_the_parameter() {
    let app = spawn_app().await;
    let ok: Value = app.get("/__test/page").await.json().await.expect("json");
    assert_eq!(ok, json!({"limit": 20, "after": null}));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "query"),
        ("limit=99999999999", "query"),
        ("cursor=not-a-cursor!", "cursor"),
    ] {
        let res = app.get(&format!("/__test/page?{query}")).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(field_errors(&p)[0].0, field, "{query}: {p}");
    }
}

#[tokio::test]
async fn absurd_headers_get_a_4xx_never_a_5xx() {
    let app = spawn_app().await;
    // Non-UTF-8 and oversized values of headers we read are ignored, not fatal.
    let res = app
        .client
        .get(app.url("/health/live"))
        .header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("bytes"),
        )
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"\xff").expect("bytes"),
        )
        .header("x-tenant-id", "x".repeat(8000))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);

    // A body with a content type that is not UTF-8 is a 415 problem.
    let res = app
        .client
        .post(app.url("/__test/echo"))
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"application/\xffjson").expect("bytes"),
        )
        .body("{}")
        .send()
        .await
        .expect("sent");
    problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // A 64 KiB header is within the protocol limits and reaches the app harmlessly.
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-huge", "x".repeat(64 * 1024))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);

    // Past the limits (a 128 KiB head, 96 headers) the HTTP layer itself refuses before the
    // application sees the request: it answers 431 and closes. A client still writing its huge
    // head may see the close (a reset) before the 431; either way it is refused, promptly,
    // never with a 5xx and never left hanging.
    let bounded = testkit::http_client()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let huge = bounded
        .get(app.url("/health/live"))
        .header("x-huge", "x".repeat(200 * 1024));
    let mut many = bounded.get(app.url("/health/live"));
    for i in 0..200 {
        many = many.header(format!("x-h{i}"), "v");
    }
    for (what, request) in [("a 200 KiB header", huge), ("200 headers", many)] {
        match request.send().await {
            Ok(res) => assert_eq!(
                res.status(),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{what}"
            ),
            Err(e) => assert!(
                !e.is_timeout() && (e.is_request() || e.is_connect()),
                "{what}: refused by closing, not by hanging: {e:?}"
            ),
        }
    }

    // The server is still fine afterwards.
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn internal_errors_are_opaque_500s() {
    let app = spawn_app().await;
    let res = app.get("/__test/internal").await;
    let p = problem(res, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    let text = p.to_string();
    for leak in ["SELECT", "password", "/srv", ".rs", "loading the user"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    assert_eq!(p["detail"], "an internal error occurred");
}

#[tokio::test]
async fn slow_handlers_time_out_with_a_503_problem() {
    let app =
        spawn_app_with(TestOptions::default().tweak(|s| s.http.request_timeout_secs = 1)).await;
    let res = app.get("/__test/slow").await;
    problem(res, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_route_time_limit_outlasts_the_default() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.http.request_timeout_secs = 1;
        s.chat.answer_timeout_secs = 30;
    }))
    .await;
    let res = app.get("/__test/slow-answer").await;
    assert_eq!(res.status(), StatusCode::OK);
}
