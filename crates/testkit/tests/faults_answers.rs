//! Faults of model answers (issue 15): a provider that sends far more than it was asked for,
//! answers abandoned by a dead server, a provider that fails before its first token, and a
//! database outage while an answer streams. Whatever happens, an answer whose first token
//! reached a client is stored (complete or incomplete) and billed for what was produced, and
//! never beyond what was reserved.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::{TestApp, TestOptions, spawn_app_with};

const FAKE_MODEL: &str = "gpt-4o-mini";

/// A server whose provider (the fake) serves [`FAKE_MODEL`] for chat.
fn provider_app(fake: &FakeOpenAi) -> TestOptions {
    TestOptions::default()
        .chatting_with(fake.base_url())
        .tweak(|s| {
            s.provider.first_token_timeout_secs = 5;
            s.provider.idle_timeout_secs = 600;
            s.chat.resume_grace_ms = 0;
            s.chat.answer_lease_secs = 3;
        })
}

/// [`provider_app`] whose servers sweep an abandoned answer 2 s after its lease ran out
/// (a run cut off from the database retries its usage and its end for 1 s each).
fn quick_sweep_app(fake: &FakeOpenAi) -> TestOptions {
    provider_app(fake).tweak(|s| {
        s.chat.answer_store_retry_secs = 1;
        s.billing.ledger_retry_secs = 1;
    })
}

/// `opts` on PostgreSQL and Redis.
fn in_production(opts: TestOptions) -> TestOptions {
    TestOptions {
        postgres: true,
        redis: true,
        ..opts
    }
}

/// A new session of the owner (no documents: the provider is asked for chat only).
async fn new_session(app: &TestApp, token: &str, org: &str) -> String {
    let (status, s) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({})),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    s["id"].as_str().expect("id").to_owned()
}

/// The session's messages, oldest first.
async fn messages(app: &TestApp, token: &str, org: &str, session: &str) -> Vec<Value> {
    let (status, page) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Polls the session's last message until `done` holds (failing after `within`); a failed
/// read is polled again.
async fn last_message_until(
    app: &TestApp,
    token: &str,
    org: &str,
    session: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        // Tolerant: the database may be coming back.
        let (status, page) = app
            .call_in(
                token,
                Method::GET,
                &format!("/api/v1/chat/sessions/{session}/messages"),
                None,
                Some(org),
            )
            .await;
        let last = page["items"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        if status == StatusCode::OK && done(&last) {
            return last;
        }
        assert!(Instant::now() < deadline, "never came: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    testkit::usage_of_kind(&report, "chat").map_or((0, 0, 0), |k| {
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

    // The ledger holds at most 50 completion tokens per call.
    let (_, completion, requests) = chat_usage(&app, &token, &org).await;
    assert_eq!(requests, 2);
    assert!(completion <= 100, "{completion} completion tokens billed");
}

/// Asks `content` in `session` with `stream: true` and reads until `deltas` delta events came:
/// the rest of the body and what was read.
async fn ask_streamed(
    app: &TestApp,
    token: &str,
    org: &str,
    session: &str,
    content: &str,
    deltas: usize,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<impl AsRef<[u8]> + use<>>> + Unpin + use<>,
    String,
) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/chat/sessions/{session}/messages")))
        .bearer_auth(token)
        .header("X-Tenant-ID", org)
        .json(&json!({"content": content, "stream": true}))
        .send()
        .await
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("event: delta").count() < deltas {
        let chunk = body.next().await.expect("more").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (body, seen)
}

/// A server on its own runtime, so that the test can kill it (drop every task of it at once,
/// as `kill -9` would: nothing settles, nothing is stored) and keep going.
fn on_own_runtime(opts: TestOptions) -> (tokio::runtime::Runtime, TestApp) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let app = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(spawn_app_with(opts)))
            .join()
            .expect("the app started")
    });
    (rt, app)
}

async fn an_answer_abandoned_by_a_killed_server_is_ended_and_billed(production: bool) {
    let fake = FakeOpenAi::builder()
        .chat_models(&[FAKE_MODEL])
        .reply("One two three four five six seven eight nine ten eleven twelve.")
        .start();
    let mut opts = quick_sweep_app(&fake);
    if production {
        opts = in_production(opts);
    }
    let (doomed, dead) = on_own_runtime(opts);
    let (token, org) = dead.owner("kim").await;
    let s = new_session(&dead, &token, &org).await;
    // Six pieces, then the provider stalls for ten minutes.
    fake.push_faults([Fault::StallAfter(6, Duration::from_secs(600))]);
    let (body, seen) = ask_streamed(&dead, &token, &org, &s, "Count for me.", 6).await;
    // The message exists from the start; what the client got reaches it with a checkpoint
    // (within about a second).
    let sent: String = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["text"].as_str().map(str::to_owned))
        .collect();
    let checkpointed = last_message_until(&dead, &token, &org, &s, Duration::from_secs(10), |m| {
        m["status"] == "streaming" && m["content"].as_str() == Some(sent.as_str())
    })
    .await;
    assert_eq!(checkpointed["role"], "assistant");
    assert!(sent.starts_with("One two three"), "{sent}");
    let usage = checkpointed["usage"].clone();
    assert!(usage["completion_tokens"].as_u64() > Some(0), "{usage}");

    // kill -9: every task of the server is dropped where it stands.
    doomed.shutdown_background();
    drop(body);

    // Another server sweeps: the answer ends `incomplete` with what was checkpointed, and
    // its usage is in the ledger, once.
    let other = dead.sibling(None).await;
    let ended = last_message_until(&other, &token, &org, &s, Duration::from_secs(20), |m| {
        m["status"] != "streaming"
    })
    .await;
    assert_eq!(ended["status"], "incomplete", "{ended}");
    assert_eq!(ended["content"], checkpointed["content"]);
    assert_eq!(ended["usage"], usage);
    assert!(
        ended["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopped")),
        "{ended}"
    );
    let (prompt, completion, requests) = chat_usage(&other, &token, &org).await;
    assert_eq!(requests, 1);
    assert_eq!(Some(prompt), usage["prompt_tokens"].as_u64());
    assert_eq!(Some(completion), usage["completion_tokens"].as_u64());
    drop(other);
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_abandoned_by_a_killed_server_is_ended_and_billed_on_sqlite() {
    an_answer_abandoned_by_a_killed_server_is_ended_and_billed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_abandoned_by_a_killed_server_is_ended_and_billed_on_postgres() {
    an_answer_abandoned_by_a_killed_server_is_ended_and_billed(true).await;
}

async fn a_provider_failing_before_the_first_token_leaves_a_failed_answer(production: bool) {
    let fake = FakeOpenAi::builder().chat_models(&[FAKE_MODEL]).start();
    let mut opts = provider_app(&fake);
    if production {
        opts = in_production(opts);
    }
    let app = spawn_app_with(opts).await;
    let (token, org) = app.owner("lou").await;
    let s = new_session(&app, &token, &org).await;
    // 503s until the adapter's retries run out.
    fake.push_faults(vec![
        Fault::Status {
            status: 503,
            retry_after: Some("0".into()),
        };
        3
    ]);
    let (status, body) = app
        .call_in(
            &token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{s}/messages"),
            Some(json!({"content": "Anyone there?"})),
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let history = messages(&app, &token, &org, &s).await;
    assert_eq!(
        history.len(),
        2,
        "the question and the failed answer: {history:?}"
    );
    let failed = &history[1];
    assert_eq!(failed["role"], "assistant");
    assert_eq!(failed["status"], "incomplete");
    assert_eq!(failed["content"], "");
    let error = failed["error"].as_str().expect("the error is stored");
    assert!(!error.is_empty() && !error.contains("caused by"), "{error}");
    assert_eq!(failed["usage"]["completion_tokens"], 0);
    // Nothing was produced: nothing is billed.
    assert_eq!(chat_usage(&app, &token, &org).await.2, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_before_the_first_token_leaves_a_failed_answer_on_sqlite() {
    a_provider_failing_before_the_first_token_leaves_a_failed_answer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_before_the_first_token_leaves_a_failed_answer_on_postgres() {
    a_provider_failing_before_the_first_token_leaves_a_failed_answer(true).await;
}

/// Reads an SSE body to its end: the events' `(name, data)`.
async fn sse_to_end<B: AsRef<[u8]>>(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    mut seen: String,
) -> Vec<(String, Value)> {
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(chunk.expect("bytes").as_ref()));
    }
    seen.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).ok()?))
        })
        .collect()
}

/// A server of `options` on a private PostgreSQL and Redis whose provider (the fake)
/// replies `reply`, an owner and a session: `(pg, fake, app, token, org, session)`.
async fn on_private_postgres(
    reply: &str,
    options: fn(&FakeOpenAi) -> TestOptions,
) -> (
    testkit::faults::PrivatePostgres,
    FakeOpenAi,
    TestApp,
    String,
    String,
    String,
) {
    let pg = testkit::faults::PrivatePostgres::start_new();
    let fake = FakeOpenAi::builder()
        .chat_models(&[FAKE_MODEL])
        .reply(reply)
        .start();
    let opts = TestOptions {
        redis: true,
        ..options(&fake)
    }
    .on_postgres(pg.url());
    let app = spawn_app_with(opts).await;
    let (token, org) = app.owner("pat").await;
    let s = new_session(&app, &token, &org).await;
    (pg, fake, app, token, org, s)
}

/// Issue 15, item 4: an answer that ends while PostgreSQL is down is stored, and billed, once
/// the database is back; its client gets the answer's id when it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_ending_while_postgres_is_down_is_stored_and_billed_when_it_returns() {
    if !testkit::faults::available(
        "an_answer_ending_while_postgres_is_down_is_stored_and_billed_when_it_returns",
    ) {
        return;
    }
    let reply = "The answer arrives slowly, piece by piece, and ends while the database is down.";
    let (mut pg, fake, app, token, org, s) = on_private_postgres(reply, provider_app).await;
    // Three pieces, a pause of 3 s (PostgreSQL goes down meanwhile), then the rest.
    fake.push_faults([Fault::StallAfter(3, Duration::from_secs(3))]);
    let (mut body, seen) = ask_streamed(&app, &token, &org, &s, "Take your time.", 3).await;
    let down = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    // The provider finishes while the database is down: the answer waits to be stored.
    assert!(
        fake.until(Duration::from_secs(15), |f| f.open_streams() == 0)
            .await,
        "the provider's stream ended"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| pg.start());
    let outage = down.elapsed();
    let events = sse_to_end(&mut body, seen).await;
    let (last, end) = events.last().cloned().expect("events");
    assert_eq!(last, "done", "{events:?}");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .filter_map(|(_, d)| d["text"].as_str().map(str::to_owned))
        .collect();
    assert!(text.ends_with("the database is down."), "{text}");
    let history = messages(&app, &token, &org, &s).await;
    let stored = history.last().expect("the answer");
    assert_eq!(stored["id"], end["message_id"]);
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"].as_str(), Some(text.as_str()));
    let (prompt, completion, requests) = chat_usage(&app, &token, &org).await;
    assert_eq!(requests, 1, "billed once");
    assert_eq!(Some(prompt), stored["usage"]["prompt_tokens"].as_u64());
    assert_eq!(
        Some(completion),
        stored["usage"]["completion_tokens"].as_u64()
    );
    assert!(outage > Duration::from_secs(2), "{outage:?}");
    drop(app);
}

/// Issue 15, item 4, past the bound: PostgreSQL stays down longer than an answer's usage and
/// end are retried. The client's stream ends with `storage_unavailable`; once the database is
/// back, the answer's last checkpoint is ended `incomplete` by the sweeper and billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_outliving_its_retries_ends_storage_unavailable_and_its_checkpoint_is_billed() {
    if !testkit::faults::available(
        "an_answer_outliving_its_retries_ends_storage_unavailable_and_its_checkpoint_is_billed",
    ) {
        return;
    }
    let reply = "A short answer that ends while the database is down for good.";
    // Usage and the end are retried for 1 s each.
    let (mut pg, fake, app, token, org, s) = on_private_postgres(reply, quick_sweep_app).await;
    fake.push_faults([Fault::StallAfter(3, Duration::from_secs(2))]);
    let (mut body, seen) = ask_streamed(&app, &token, &org, &s, "Quickly.", 3).await;
    // Let a checkpoint hold the three pieces, then take the database away.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    tokio::task::block_in_place(|| pg.stop());
    let events = sse_to_end(&mut body, seen).await;
    let (last, error) = events.last().cloned().expect("events");
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(error["code"], "storage_unavailable", "{error}");
    tokio::task::block_in_place(|| pg.start());
    let ended = last_message_until(&app, &token, &org, &s, Duration::from_secs(30), |m| {
        m["status"] != "streaming" && !m.is_null()
    })
    .await;
    assert_eq!(ended["status"], "incomplete", "{ended}");
    assert!(
        !ended["content"].as_str().unwrap_or_default().is_empty(),
        "{ended}"
    );
    // The sweeper ends the message, then settles its reservation: the bill follows the status.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (prompt, completion, requests) = loop {
        let usage = chat_usage(&app, &token, &org).await;
        if usage.2 > 0 || Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(requests, 1, "the checkpoint is billed once");
    assert_eq!(Some(prompt), ended["usage"]["prompt_tokens"].as_u64());
    assert_eq!(
        Some(completion),
        ended["usage"]["completion_tokens"].as_u64()
    );
    drop(app);
}
