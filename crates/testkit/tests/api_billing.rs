//! Billing over HTTP: the ledger against what the fake provider reported (streamed,
//! non-streamed, cancelled and failed calls), the quota under 50 concurrent calls on both
//! backends, 402 with the reset time, rate-limit headers and 429, the stream cap, the estimate,
//! the plan and the admin routes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault, reply_pieces};
use testkit::{TestApp, TestOptions, spawn_app_with};

const FAKE_MODEL: &str = "gpt-4o-mini";

/// A server whose provider (the fake) serves `gpt-4o-mini`, on SQLite or PostgreSQL + Redis.
async fn with_fake(
    fake: &FakeOpenAi,
    production: bool,
    tweak: fn(&mut settings::Settings),
) -> TestApp {
    spawn_app_with(TestOptions {
        postgres: production,
        redis: production,
        provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
        tweaks: vec![tweak],
        ..TestOptions::default()
    })
    .await
}

fn fake_chat(s: &mut settings::Settings) {
    s.provider.embedding_dimensions = Some(64);
    s.provider.chat_models = vec![FAKE_MODEL.to_owned()];
}

async fn usage(app: &TestApp, token: &str, org: &str, path: &str) -> Value {
    let (status, body) = app.call_in(token, Method::GET, path, None, Some(org)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The totals of `kind` in a usage report (zeros when absent).
fn kind_totals(report: &Value, kind: &str) -> (u64, u64, u64) {
    testkit::usage_of_kind(report, kind).map_or((0, 0, 0), |k| {
        (
            k["prompt_tokens"].as_u64().unwrap_or_default(),
            k["completion_tokens"].as_u64().unwrap_or_default(),
            k["requests"].as_u64().unwrap_or_default(),
        )
    })
}

/// `POST /ai/chat/completions`, for reading the raw response (headers, a stream).
fn completion(app: &TestApp, token: &str, org: &str, body: &Value) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/v1/ai/chat/completions"))
        .bearer_auth(token)
        .header("x-tenant-id", org)
        .json(body)
}

async fn estimate(app: &TestApp, token: &str, org: &str, body: Value) -> Value {
    let (status, e) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/usage/estimate",
            Some(body),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    e
}

/// Makes `token`'s account a platform administrator.
async fn promote(app: &TestApp, token: &str) {
    let (_, me) = app.call(token, Method::GET, "/api/v1/auth/me", None).await;
    let id = kernel::UserId::parse(me["user"]["id"].as_str().unwrap_or_default()).expect("user id");
    app.make_platform_admin(id).await;
}

async fn patch_org(app: &TestApp, admin: &str, org: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        admin,
        Method::PATCH,
        &format!("/api/v1/admin/orgs/{org}"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn the_ledger_holds_what_the_provider_reported_once_per_call() {
    let reply = "One two three four five six seven eight nine ten.";
    let fake = FakeOpenAi::builder().reply(reply).start();
    let app = with_fake(&fake, false, fake_chat).await;
    let (token, org) = app.owner("lea").await;
    let before = usage(&app, &token, &org, "/api/v1/usage?window=24h").await;
    assert_eq!(kind_totals(&before, "chat"), (0, 0, 0), "{before}");
    let mut expected = (0u64, 0u64, 0u64);

    // Not streamed: the provider's usage.
    let ask = json!({"model": FAKE_MODEL, "max_tokens": 64,
                     "messages": [{"role": "user", "content": "Count to ten."}]});
    let (status, done) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/ai/chat/completions",
            Some(ask.clone()),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let reported = fake.last_usage().expect("usage");
    expected.0 += u64::from(reported.prompt_tokens);
    expected.1 += u64::from(reported.completion_tokens);
    expected.2 += 1;

    // Streamed: the provider's usage chunk.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let res = completion(&app, &token, &org, &streamed)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.expect("body").contains("[DONE]"));
    let reported = fake.last_usage().expect("usage");
    expected.0 += u64::from(reported.prompt_tokens);
    expected.1 += u64::from(reported.completion_tokens);
    expected.2 += 1;

    // Failed before the first token (every try a 500): nothing is billed.
    let server_error = || Fault::Status {
        status: 500,
        retry_after: None,
    };
    fake.push_faults([server_error(), server_error(), server_error()]);
    let (status, failed) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/ai/chat/completions",
            Some(ask.clone()),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{failed}");

    let after = usage(&app, &token, &org, "/api/v1/usage?window=24h").await;
    assert_eq!(kind_totals(&after, "chat"), expected, "{after}");

    // Cancelled: the provider stalls after its first piece and the client leaves. The
    // provider reported nothing; what was produced is billed: the prompt as counted and the
    // tokens of the one piece sent.
    fake.push_faults([Fault::StallAfter(1, Duration::from_secs(30))]);
    let mut res = completion(&app, &token, &org, &streamed)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let first = res.chunk().await.expect("a chunk").expect("not the end");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(res);
    assert!(
        fake.until(Duration::from_secs(10), |f| f.abandoned_streams() == 1)
            .await,
        "the upstream stream outlived its client"
    );
    let counted = estimate(
        &app,
        &token,
        &org,
        json!({"model": FAKE_MODEL, "messages": ask["messages"], "max_tokens": 64}),
    )
    .await;
    let piece = reply_pieces(reply).remove(0);
    let piece_tokens = estimate(
        &app,
        &token,
        &org,
        json!({"model": FAKE_MODEL, "text": piece}),
    )
    .await["prompt_tokens"]
        .as_u64()
        .expect("count");
    expected.0 += counted["prompt_tokens"].as_u64().expect("count");
    expected.1 += piece_tokens;
    expected.2 += 1;
    // Settlement of a dropped stream runs as the stream is dropped; poll until it landed.
    let mut last = Value::Null;
    for _ in 0..100 {
        last = usage(&app, &token, &org, "/api/v1/usage?window=24h").await;
        if kind_totals(&last, "chat").2 == expected.2 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kind_totals(&last, "chat"), expected, "{last}");

    // The caller's own usage is the same; the plan's `used` is every kind together.
    let mine = usage(&app, &token, &org, "/api/v1/usage/me?window=24h").await;
    assert_eq!(kind_totals(&mine, "chat"), expected, "{mine}");
    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(
        plan["used"].as_u64(),
        last["totals"]["total_tokens"].as_u64(),
        "{plan} vs {last}"
    );
    // gpt-4o-mini has a price: the cost is positive and adds up over the models.
    let cost = last["totals"]["cost"].as_i64().expect("cost");
    assert!(cost > 0, "{last}");
    let by_model: i64 = last["by_model"]
        .as_array()
        .expect("by_model")
        .iter()
        .filter_map(|m| m["cost"].as_i64())
        .sum();
    assert_eq!(by_model, cost);
}

/// 50 completions at once against a quota that fits exactly 10 of them. Each call uses
/// exactly what it reserves (the fake answers `max_tokens` tokens and reports no usage, so the
/// server counts), so the outcome does not depend on the order of settlements.
async fn fifty_at_once(production: bool) {
    let fake = FakeOpenAi::builder()
        .reply("go go go go go go go go")
        .without_usage()
        .start();
    let app = with_fake(&fake, production, fake_chat).await;
    let (token, org) = app.owner("max").await;
    let (root, _) = app.owner("root").await;
    promote(&app, &root).await;
    let ask = json!({"model": FAKE_MODEL, "max_tokens": 8,
                     "messages": [{"role": "user", "content": "Say go eight times."}]});
    let cost = estimate(&app, &token, &org, ask.clone()).await;
    let per_call = cost["prompt_tokens"].as_u64().expect("prompt")
        + cost["max_completion_tokens"].as_u64().expect("completion");
    assert_eq!(cost["max_completion_tokens"], 8);
    // Room for 10 calls, not 11; enough concurrent streams for all 50.
    let limit = per_call * 11 - 1;
    let (status, patched) = patch_org(
        &app,
        &root,
        &org,
        json!({"plan": "enterprise", "monthly_token_limit": limit}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["billing"]["monthly_token_limit"], limit);

    let calls = (0..50).map(|_| {
        let app = &app;
        let token = token.clone();
        let org = org.clone();
        let ask = ask.clone();
        async move {
            app.call_in(
                &token,
                Method::POST,
                "/api/v1/ai/chat/completions",
                Some(ask),
                Some(&org),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    // OpenAI's answer to a used-up quota (the route is under /ai): 429 `insufficient_quota`.
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, b)| &b["error"])
        .collect();
    assert_eq!(ok, 10, "{answers:?}");
    assert_eq!(refused.len(), 40, "{answers:?}");
    for r in &refused {
        assert_eq!(r["code"], "quota_exceeded");
        assert_eq!(r["type"], "insufficient_quota");
        let resets = r["resets_at"].as_str().expect("resets_at");
        assert!(resets.ends_with("-01T00:00:00Z"), "{r}");
    }
    // The refused calls never reached the provider, and the ledger holds exactly the ten.
    let sent = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count();
    assert_eq!(sent, 10);
    let report = usage(&app, &token, &org, "/api/v1/usage").await;
    assert_eq!(kind_totals(&report, "chat").2, 10, "{report}");
    assert_eq!(kind_totals(&report, "chat").1, 80, "{report}");
    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(plan["used"].as_u64(), Some(per_call * 10), "{plan}");
    assert_eq!(plan["remaining"].as_u64(), Some(per_call - 1), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_let_exactly_ten_through_on_the_embedded_default() {
    fifty_at_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_let_exactly_ten_through_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    fifty_at_once(true).await;
}

#[tokio::test]
async fn a_refused_question_stores_nothing_and_says_when_the_quota_resets() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        if let Some(free) = s.billing.plans.get_mut("free") {
            free.monthly_token_limit = Some(10);
        }
    }))
    .await;
    let (token, org) = app.owner("ned").await;
    let (status, session) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"title": "t"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().expect("id");
    let (status, refused) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{id}/messages"),
            Some(json!({"content": "What does the lease say about pets?"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{refused}");
    assert_eq!(refused["code"], "quota_exceeded");
    assert!(refused["resets_at"].as_str().is_some(), "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("resets at")),
        "{refused}"
    );
    let (status, messages) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/chat/sessions/{id}/messages"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        messages["items"],
        json!([]),
        "nothing was stored: {messages}"
    );
    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(plan["plan"], "free");
    assert_eq!(plan["monthly_token_limit"], 10);
    assert!(plan["used"].as_u64() <= Some(10), "{plan}");
}

#[tokio::test]
async fn rate_limits_send_their_headers_and_answer_429_when_spent() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.rate_limits.chat.per_user = 2;
        s.rate_limits.chat.per_ip = 0;
    }))
    .await;
    let (token, org) = app.owner("rae").await;
    let ask = json!({"model": "quire-local-extractive",
                     "messages": [{"role": "user", "content": "Hello there."}]});
    let send = || completion(&app, &token, &org, &ask).send();
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    for remaining in [1, 0] {
        let r = send().await.expect("sent");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "ratelimit-limit"), Some(2));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(remaining));
        assert!(header(&r, "ratelimit-reset").is_some_and(|s| (1..=60).contains(&s)));
    }
    let r = send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "ratelimit-remaining"), Some(0));
    assert!(header(&r, "retry-after").is_some_and(|s| (1..=60).contains(&s)));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Another class has its own budget; an unlimited route sends no headers.
    let (status, _) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": "hi"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = app
        .client
        .get(app.url("/api/v1/billing/plan"))
        .bearer_auth(&token)
        .header("x-tenant-id", &org)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn streams_beyond_the_plan_cap_are_refused_until_one_ends() {
    let fake = FakeOpenAi::builder().reply("A long answer.").start();
    let app = with_fake(&fake, false, |s| {
        fake_chat(s);
        if let Some(free) = s.billing.plans.get_mut("free") {
            free.max_concurrent_streams = 1;
        }
    })
    .await;
    let (token, org) = app.owner("sam").await;
    let ask = json!({"model": FAKE_MODEL, "stream": true,
                     "messages": [{"role": "user", "content": "Go on."}]});
    fake.push_faults([Fault::StallAfter(1, Duration::from_secs(30))]);
    let mut open = completion(&app, &token, &org, &ask)
        .send()
        .await
        .expect("sent");
    assert_eq!(open.status(), StatusCode::OK);
    open.chunk().await.expect("a chunk").expect("not the end");
    let refused = completion(&app, &token, &org, &ask)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The headers agree with the refusal: a slot frees when an answer ends, so ask again in
    // a second, and no request of the budget is left before then.
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(header("retry-after"), Some(1));
    assert_eq!(header("ratelimit-remaining"), Some(0));
    assert!(header("ratelimit-reset") >= Some(1));
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["error"]["code"], "rate_limited");
    drop(open);
    // The slot comes back when the stream ends: as soon as the server notices the client
    // left (at its next write, a keep-alive comment at the latest).
    assert!(
        fake.until(Duration::from_secs(15), |f| f.abandoned_streams() == 1)
            .await,
        "the upstream stream outlived its client"
    );
    let mut status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..100 {
        let (s, _) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/ai/chat/completions",
                Some(ask.clone()),
                Some(&org),
            )
            .await;
        status = s;
        if s == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn estimates_plans_and_admin_changes() {
    let app = spawn_app_with(TestOptions::default()).await;
    let (token, org) = app.owner("ida").await;
    // A local model: counted, free.
    let e = estimate(
        &app,
        &token,
        &org,
        json!({"model": "quire-local-extractive",
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hello world"}],
               "max_tokens": 100}),
    )
    .await;
    // Each message's tokens, plus 4 per message and 3 for the reply's priming.
    let mut parts = 0;
    for text in ["Be brief.", "Hello world"] {
        let one = estimate(
            &app,
            &token,
            &org,
            json!({"model": "quire-local-extractive", "text": text}),
        )
        .await;
        assert_eq!(
            one["max_completion_tokens"], 1_024,
            "the configured answer budget"
        );
        parts += one["prompt_tokens"].as_u64().expect("count");
    }
    assert!(parts >= 4, "{parts}");
    assert_eq!(e["prompt_tokens"].as_u64(), Some(parts + 2 * 4 + 3), "{e}");
    assert_eq!(e["max_completion_tokens"], 100);
    assert_eq!(e["estimated_cost"], 0);
    // An embedding model (the local default): no completion, no cost.
    let (status, space) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": "x"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{space}");
    let embedding_model = space["model"].as_str().expect("model").to_owned();
    let e = estimate(
        &app,
        &token,
        &org,
        json!({"model": embedding_model, "text": "Hello world"}),
    )
    .await;
    assert_eq!(e["max_completion_tokens"], 0, "{e}");
    assert!(e["prompt_tokens"].as_u64() > Some(0), "{e}");
    let (status, bad) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/usage/estimate",
            Some(json!({"model": "nope", "text": "x", "messages": []})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"model") && fields.contains(&"messages"),
        "{bad}"
    );
    let (status, bad) = app
        .call_in(
            &token,
            Method::GET,
            "/api/v1/usage?window=1y",
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(plan["plan"], "free");
    assert_eq!(plan["monthly_token_limit"], 1_000_000);
    assert_eq!(plan["limit_overridden"], false);
    let resets = plan["resets_at"].as_str().expect("resets_at");
    assert!(resets.ends_with("-01T00:00:00Z"), "{plan}");

    // Only platform administrators change plans; an unknown plan names the known ones.
    let (status, _) = patch_org(&app, &token, &org, json!({"plan": "pro"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (root, _) = app.owner("root").await;
    promote(&app, &root).await;
    let (status, bad) = patch_org(&app, &root, &org, json!({"plan": "platinum"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(bad.to_string().contains("enterprise"), "{bad}");
    let (status, bad) = patch_org(&app, &root, &org, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (status, done) = patch_org(&app, &root, &org, json!({"plan": "pro"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["plan"], "pro");
    assert_eq!(done["billing"]["monthly_token_limit"], 50_000_000);
    let (status, done) = patch_org(&app, &root, &org, json!({"monthly_token_limit": 1234})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(
        (plan["plan"].as_str(), plan["monthly_token_limit"].as_u64()),
        (Some("pro"), Some(1234))
    );
    assert_eq!(plan["limit_overridden"], true);
    let (status, _) = patch_org(&app, &root, &org, json!({"monthly_token_limit": null})).await;
    assert_eq!(status, StatusCode::OK);
    let plan = usage(&app, &token, &org, "/api/v1/billing/plan").await;
    assert_eq!(plan["monthly_token_limit"], 50_000_000);

    // Usage across tenants: the embeddings of a call show under the organization.
    let (status, _) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/embeddings",
            Some(json!({"input": ["one", "two"]})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, all) = app
        .call(&token, Method::GET, "/api/v1/admin/usage?window=24h", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{all}");
    let (status, all) = app
        .call(&root, Method::GET, "/api/v1/admin/usage?window=24h", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let mine = all["orgs"]
        .as_array()
        .expect("orgs")
        .iter()
        .find(|o| o["org_id"] == org.as_str())
        .expect("the organization is listed");
    assert!(
        mine["by_model"]
            .as_array()
            .expect("by_model")
            .iter()
            .any(|m| m["kind"] == "embedding" && m["requests"].as_u64() >= Some(1)),
        "{all}"
    );
    // A viewer of its own usage sees only itself.
    let me = usage(&app, &token, &org, "/api/v1/usage/me").await;
    for u in me["by_user"].as_array().expect("by_user") {
        assert!(u["user_id"].is_string(), "only the caller: {me}");
    }
}

/// `/usage`'s series: 24 hourly, 7 and 30 daily buckets from `since`, oldest first, empty ones
/// included; their sums add up to the totals; another organization's calls never appear in
/// it (its series stays all zeros), nor in the caller's own `/usage/me`.
async fn series_over_the_window(production: bool) {
    let fake = FakeOpenAi::builder().reply("One two three.").start();
    let app = with_fake(&fake, production, fake_chat).await;
    let (token, org) = app.owner("sam").await;
    let (other, other_org) = app.owner("oda").await;
    let ask = json!({"model": FAKE_MODEL, "max_tokens": 16,
                     "messages": [{"role": "user", "content": "Count to three."}]});
    for _ in 0..3 {
        let (status, body) = app
            .call_in(
                &token,
                Method::POST,
                "/api/v1/ai/chat/completions",
                Some(ask.clone()),
                Some(&org),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let field = |v: &Value, k: &str| v[k].as_u64().expect(k);
    for (window, buckets, step) in [
        ("24h", 24, time::Duration::hours(1)),
        ("7d", 7, time::Duration::days(1)),
        ("30d", 30, time::Duration::days(1)),
    ] {
        for (who, tenant, path) in [
            (&token, &org, "/api/v1/usage"),
            (&token, &org, "/api/v1/usage/me"),
            (&other, &other_org, "/api/v1/usage"),
        ] {
            let report = usage(&app, who, tenant, &format!("{path}?window={window}")).await;
            let series = report["series"].as_array().expect("series");
            assert_eq!(series.len(), buckets, "{window}: {report}");
            let since = time::OffsetDateTime::parse(
                report["since"].as_str().expect("since"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("since");
            for (i, point) in series.iter().enumerate() {
                let start = time::OffsetDateTime::parse(
                    point["start"].as_str().expect("start"),
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("start");
                assert_eq!(
                    start,
                    since + step * i32::try_from(i).expect("few"),
                    "{point}"
                );
            }
            for k in [
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cost",
                "requests",
            ] {
                let sum: u64 = series.iter().map(|p| field(p, k)).sum();
                assert_eq!(sum, field(&report["totals"], k), "{window} {k}: {report}");
            }
            let requests = field(&report["totals"], "requests");
            if tenant == &other_org {
                assert_eq!(requests, 0, "another organization's calls: {report}");
            } else {
                assert_eq!(requests, 3, "{report}");
                // Just made: all in the last bucket.
                assert_eq!(field(&series[buckets - 1], "requests"), 3, "{report}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_series_on_the_embedded_default() {
    series_over_the_window(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_series_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL and Redis") {
        return;
    }
    series_over_the_window(true).await;
}
