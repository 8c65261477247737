//! Faults of model answers (issue 15): a provider that sends far more than it was asked for,
//! answers abandoned by a dead server, a provider that fails before its first token, and a
//! database outage while an answer streams. Whatever happens, an answer whose first token
//! reached a client is stored (complete or incomplete) and billed for what was produced, and
//! never beyond what was reserved.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::FakeOpenAi;
use testkit::{TestApp, TestOptions, spawn_app_with};

const FAKE_MODEL: &str = "gpt-4o-mini";

/// A server whose provider (the fake) serves [`FAKE_MODEL`] for chat.
fn provider_app(fake: &FakeOpenAi) -> TestOptions {
    TestOptions {
        provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
        ..TestOptions::default()
    }
    .tweak(|s| {
        s.provider.embedding_dimensions = Some(64);
        s.provider.chat_models = vec![FAKE_MODEL.to_owned()];
        s.provider.first_token_timeout_secs = 5;
        s.chat.resume_grace_ms = 0;
    })
}

/// The `data:` payloads of an SSE body, comments and `[DONE]` left out.
fn data_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .flat_map(str::lines)
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The chat totals of `/usage`: `(prompt, completion, requests)`.
async fn chat_usage(app: &TestApp, token: &str, org: &str) -> (u64, u64, u64) {
    let (status, report) = app
        .call_in(token, Method::GET, "/api/v1/usage", None, Some(org))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report["by_kind"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kind"] == "chat")
        .map_or((0, 0, 0), |k| {
            (
                k["prompt_tokens"].as_u64().unwrap_or_default(),
                k["completion_tokens"].as_u64().unwrap_or_default(),
                k["requests"].as_u64().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_sending_far_more_than_max_tokens_is_cut_and_billed_within_the_reservation() {
    // 5,000 words (one cl100k token each), asked for at most 50.
    let fake = FakeOpenAi::builder()
        .chat_models(&[FAKE_MODEL])
        .reply("word ".repeat(5_000))
        .start();
    let app = spawn_app_with(provider_app(&fake)).await;
    let (token, org) = app.owner("max").await;
    let request = json!({
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "Talk."}],
        "max_tokens": 50
    });

    let (status, done) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/ai/chat/completions",
            Some(request.clone()),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["choices"][0]["finish_reason"], "length", "{done}");
    let words = done["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .count();
    assert!((45..=50).contains(&words), "{words} words kept");
    assert!(
        done["usage"]["completion_tokens"].as_u64() <= Some(50),
        "{done}"
    );

    let mut streamed = request;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let body = app
        .client
        .post(app.url("/api/v1/ai/chat/completions"))
        .bearer_auth(&token)
        .header("x-tenant-id", &org)
        .json(&streamed)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("the stream");
    let events = data_events(&body);
    let text: String = events
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.split_whitespace().count() <= 50, "{text}");
    assert!(
        events
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "length"),
        "{body}"
    );
    let usage = events
        .last()
        .map(|c| c["usage"].clone())
        .unwrap_or_default();
    assert!(usage["completion_tokens"].as_u64() <= Some(50), "{usage}");

    // The ledger holds at most 50 completion tokens per call, and the provider's streams
    // were dropped, not read to their end.
    let (_, completion, requests) = chat_usage(&app, &token, &org).await;
    assert_eq!(requests, 2);
    assert!(completion <= 100, "{completion} completion tokens billed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fake.abandoned_streams() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.abandoned_streams(),
        2,
        "the provider's streams were cut"
    );
}
