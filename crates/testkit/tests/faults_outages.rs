//! Outages as a client meets them (issue 15, items 7 and 8): a request that fails because the
//! database or the cache is down answers 503 with a stable code and `Retry-After`, never 500
//! `internal`; while the database is down requests are refused at once instead of each
//! waiting for a connection; readiness names the model provider when it is down, and chat
//! answers 503 while it is; metrics label every answer with its route.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::faults::{self, PrivatePostgres, PrivateRedis};
use testkit::{TestApp, TestOptions, spawn_app_with};

/// `POST /api/v1/auth/login` as `who` (signed up by [`TestApp::owner`]).
async fn login(app: &TestApp, who: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": format!("{who}@example.com"), "password": "correct horse battery"}),
    )
    .await
}

/// `method path` as `token` in `org`, with a JSON `body`: the whole response (its headers
/// matter here).
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    (token, org): (&str, &str),
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("X-Tenant-ID", org);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("an answer")
}

/// Checks an outage answer: 503, `code`, a `Retry-After` of whole seconds, a detail naming
/// `component`, no cause chain. Returns the body.
async fn assert_outage(res: reqwest::Response, code: &str, component: &str) -> Value {
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: Value = res.json().await.unwrap_or_default();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "a Retry-After in seconds: {body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(component), "{detail}");
    assert!(
        !detail.contains("caused by") && !detail.contains("Connection"),
        "{detail}"
    );
    body
}

/// The count of `/metrics` requests answered `status` under `route`.
async fn answered(app: &TestApp, route: &str, status: u16) -> f64 {
    let text = app
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("quire_http_requests_total{"))
        .filter(|l| {
            l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Issue 15, item 8: with Redis down, the credential routes (whose rate limit fails closed)
/// answer 503 `service_unavailable` naming the cache, at once, counted under their route;
/// they work again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_routes_answer_503_while_redis_is_down() {
    if !faults::available("credential_routes_answer_503_while_redis_is_down") {
        return;
    }
    let mut redis = PrivateRedis::start_new();
    let app = spawn_app_with(TestOptions::default().on_redis(redis.url())).await;
    app.owner("anabel").await;
    assert_eq!(login(&app, "anabel").await.status(), StatusCode::OK);

    redis.stop();
    let started = Instant::now();
    assert_outage(login(&app, "anabel").await, "service_unavailable", "cache").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered in {:?}",
        started.elapsed()
    );
    assert!(
        answered(&app, "/api/v1/auth/login", 503).await >= 1.0,
        "the 503 is counted under its route, not `unmatched`"
    );

    redis.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = login(&app, "anabel").await.status();
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} with Redis back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 15, item 8: with PostgreSQL down, a request answers 503 `service_unavailable`
/// naming the database (not a hang, then 500 `internal`); once one request met the outage,
/// the others are refused at once; every route works again soon after it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_at_once_and_ends_by_itself() {
    if !faults::available("a_postgres_outage_answers_503_at_once_and_ends_by_itself") {
        return;
    }
    let mut pg = PrivatePostgres::start_new();
    let app = spawn_app_with(
        TestOptions {
            redis: true,
            ..TestOptions::default()
        }
        .on_postgres(pg.url()),
    )
    .await;
    let (token, org) = app.owner("bobby").await;
    let documents = "/api/v1/documents?limit=20";
    let (status, _) = app
        .call_in(&token, Method::GET, documents, None, Some(&org))
        .await;
    assert_eq!(status, StatusCode::OK);

    pg.stop();
    // The page read above may be served again for `documents.list_recheck_ms` (and the
    // credential for `auth.recheck_ms`): past both, the first request meets the outage (at
    // most the pool's acquire timeout, 5 s).
    let reused = app
        .settings
        .documents
        .list_recheck_ms
        .max(app.settings.auth.recheck_ms);
    tokio::time::sleep(Duration::from_millis(reused + 50)).await;
    let res = send(&app, Method::GET, documents, (&token, &org), None).await;
    assert_outage(res, "service_unavailable", "database").await;
    // The next ones are refused at once, whatever their route.
    for path in ["/api/v1/auth/me", documents, "/api/v1/chat/sessions"] {
        let started = Instant::now();
        let res = send(&app, Method::GET, path, (&token, &org), None).await;
        assert_outage(res, "service_unavailable", "database").await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} answered in {:?}",
            started.elapsed()
        );
    }
    assert!(answered(&app, "/api/v1/documents", 503).await >= 1.0);
    assert_eq!(
        answered(&app, "unmatched", 500).await,
        0.0,
        "no 500 under `unmatched`"
    );
    // The platform routes still answer (readiness says what is down).
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["failing"], json!(["database"]), "{ready}");

    pg.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app
            .call_in(&token, Method::GET, documents, None, Some(&org))
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} with the database back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const FAKE_MODEL: &str = "gpt-4o-mini";

/// A server (SQLite) whose chat provider is `fake`, trying each call twice.
fn provider_app(fake: &FakeOpenAi) -> TestOptions {
    TestOptions::default()
        .chatting_with(fake.base_url())
        .tweak(|s| {
            s.provider.max_retries = 1;
            s.provider.down_for_ms = 2_000;
        })
}

/// Issue 15, item 7: readiness names the provider while it is down; chat, once a call found
/// it down, answers 503 `provider_unavailable` with `Retry-After` at once (nothing tried,
/// nothing stored), streamed or not; both recover when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_down_provider_and_chat_answers_503_at_once() {
    let fake = FakeOpenAi::builder().chat_models(&[FAKE_MODEL]).start();
    let app = spawn_app_with(provider_app(&fake)).await;
    let (token, org) = app.owner("cyrus").await;
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(
        ready["components"]["provider"]["status"], "up",
        "the provider is a component: {ready}"
    );

    let (status, s) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let ask = format!(
        "/api/v1/chat/sessions/{}/messages",
        s["id"].as_str().expect("id")
    );
    // The provider fails every request for a while.
    fake.push_faults(vec![
        Fault::Status {
            status: 503,
            retry_after: Some("0".into()),
        };
        200
    ]);
    let (status, body) = app
        .call_in(
            &token,
            Method::POST,
            &ask,
            Some(json!({"content": "Anyone there?"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "tried and failed: {body}");
    let tried = fake.request_count();

    // Now it is known down: refused at once, the provider not asked, nothing stored.
    let started = Instant::now();
    let caller = (token.as_str(), org.as_str());
    let body = json!({"content": "And now?"});
    let res = send(&app, Method::POST, &ask, caller, Some(body)).await;
    assert_outage(res, "provider_unavailable", "provider").await;
    let body = json!({"content": "Streamed?", "stream": true});
    let streamed = send(&app, Method::POST, &ask, caller, Some(body)).await;
    assert_outage(streamed, "provider_unavailable", "provider").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.request_count(), tried, "the provider was not asked");
    let (_, history) = app
        .call_in(&token, Method::GET, &ask, None, Some(&org))
        .await;
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(2),
        "only the first question and its failed answer: {history}"
    );

    // Readiness names it (its probe fails too, while the faults last).
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["failing"], json!(["provider"]), "{ready}");

    // It answers again: readiness and chat recover within a few seconds.
    fake.clear_faults();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app
            .call_in(
                &token,
                Method::POST,
                &ask,
                Some(json!({"content": "Back?"})),
                Some(&org),
            )
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
}
