//! The chat-completions adapter against the fake OpenAI-compatible server: streamed deltas,
//! usage (reported or counted), retries before the first token and none after it, the
//! first-token and idle timeouts, error mapping, cancellation, the key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::{
    ChatModel as _, ChatRequest, ModelError, ModelEvent, ModelStream, PromptMessage, PromptRole,
    Task, Usage,
};
use futures_util::StreamExt as _;
use openai::{BoxFuture, ChatConfig, OpenAiChat, Pause, ProviderConfig};
use secrecy::SecretString;
use testkit::fake_openai::{ChatUsage, FakeOpenAi, Fault, fault_message, reply_pieces};

const MODEL: &str = "gpt-4o-mini";

/// Records the delays instead of waiting.
#[derive(Debug, Default)]
struct RecordedPauses(Mutex<Vec<Duration>>);

impl RecordedPauses {
    fn delays(&self) -> Vec<Duration> {
        self.0.lock().expect("pauses").clone()
    }
}

impl Pause for RecordedPauses {
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        self.0.lock().expect("pauses").push(d);
        Box::pin(std::future::ready(()))
    }
}

fn provider(fake: &FakeOpenAi) -> ProviderConfig {
    ProviderConfig {
        base_url: fake.base_url(),
        // One test follows a failure with another call: no breaker (tested on its own).
        down_for: Duration::ZERO,
        // Must not limit a stream (the slow tests below outlast it if it did).
        timeout: Duration::from_millis(500),
        ..ProviderConfig::default()
    }
}

fn model(provider: ProviderConfig, config: ChatConfig) -> (OpenAiChat, Arc<RecordedPauses>) {
    let pauses = Arc::new(RecordedPauses::default());
    let m = OpenAiChat::new(provider, config)
        .expect("a chat model")
        .with_pause(pauses.clone());
    (m, pauses)
}

fn request(question: &str) -> ChatRequest {
    ChatRequest {
        model: MODEL.to_owned(),
        messages: vec![
            PromptMessage::new(PromptRole::System, "Answer from the sources only."),
            PromptMessage::new(PromptRole::User, question),
        ],
        temperature: Some(0.2),
        max_tokens: Some(256),
        task: Task::Chat,
        sources: Vec::new(),
    }
}

/// What a stream yielded: its deltas, its usage, the error it ended with.
#[derive(Debug, Default)]
struct Outcome {
    deltas: Vec<String>,
    usage: Option<Usage>,
    error: Option<ModelError>,
    /// Events after a usage or an error (there must be none).
    after_end: usize,
}

impl Outcome {
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

async fn drain(mut stream: ModelStream) -> Outcome {
    let mut out = Outcome::default();
    while let Some(event) = stream.next().await {
        if out.usage.is_some() || out.error.is_some() {
            out.after_end += 1;
            continue;
        }
        match event {
            Ok(ModelEvent::Delta(d)) => out.deltas.push(d),
            Ok(ModelEvent::Usage(u)) => out.usage = Some(u),
            Err(e) => out.error = Some(e),
        }
    }
    out
}

fn usage_of(u: ChatUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
    }
}

fn status(status: u16) -> Fault {
    Fault::Status {
        status,
        retry_after: None,
    }
}

#[tokio::test]
async fn a_streamed_answer_arrives_in_deltas_with_the_providers_usage() {
    let reply = "Le bail court jusqu'en 2027 [S1] — فارسی 😀 too.";
    let fake = FakeOpenAi::builder().reply(reply).start();
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("When does the lease end?")).await.unwrap()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), reply);
    assert_eq!(out.deltas, reply_pieces(reply));
    assert!(out.deltas.len() > 5, "{:?}", out.deltas);
    assert_eq!(out.after_end, 0);
    let expected = usage_of(fake.last_usage().expect("the fake's usage"));
    assert_eq!(out.usage, Some(expected));
    assert_eq!(
        expected.completion_tokens as usize,
        reply_pieces(reply).len()
    );
    assert!(pauses.delays().is_empty());

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(
        requests[0].body,
        serde_json::json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Answer from the sources only."},
                {"role": "user", "content": "When does the lease end?"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_tokens": 256,
        })
    );
    assert_eq!(requests[0].authorization, None);
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test]
async fn the_default_reply_and_a_reply_that_cites_the_prompt() {
    let fake = FakeOpenAi::start();
    let (m, _) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("What is due?")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: What is due?");

    let citing = FakeOpenAi::builder()
        .reply_with(|req| {
            let system = req["messages"][0]["content"].as_str().unwrap_or_default();
            if system.contains("[S2]") {
                "It is due in May [S2].".to_owned()
            } else {
                "I don't know.".to_owned()
            }
        })
        .start();
    let (m, _) = model(provider(&citing), ChatConfig::default());
    let mut req = request("What is due?");
    req.messages[0].content = "Sources:\n[S1] rent\n[S2] the invoice is due in May".to_owned();
    let out = drain(m.stream(req).await.unwrap()).await;
    assert_eq!(out.text(), "It is due in May [S2].");
}

#[tokio::test]
async fn without_usage_from_the_provider_tokens_are_counted_locally() {
    let reply = "The lease ends on 31 March 2027, as clause 4 says.";
    let fake = FakeOpenAi::builder().reply(reply).without_usage().start();
    let (m, _) = model(provider(&fake), ChatConfig::default());
    let req = request("When does the lease end?");
    let prompt: u32 = req
        .messages
        .iter()
        .map(|msg| m.count_tokens(MODEL, &msg.content) + 4)
        .sum::<u32>()
        + 3;
    let out = drain(m.stream(req).await.unwrap()).await;
    assert_eq!(out.text(), reply);
    let usage = out.usage.expect("a usage, counted");
    assert!(usage.completion_tokens > 0);
    assert_eq!(usage.completion_tokens, m.count_tokens(MODEL, reply));
    assert_eq!(usage.prompt_tokens, prompt);
    // Not the fake's own counts (pieces, characters / 4).
    assert_ne!(
        Some(usage),
        fake.last_usage().map(usage_of),
        "the counts must be tiktoken's"
    );

    // Not asking for usage at all: nothing sent, counted the same way.
    let asking = FakeOpenAi::builder().reply(reply).start();
    let (m, _) = model(
        provider(&asking),
        ChatConfig {
            include_usage: false,
            ..ChatConfig::default()
        },
    );
    let out = drain(m.stream(request("When does the lease end?")).await.unwrap()).await;
    assert_eq!(out.usage, Some(usage));
    assert!(asking.requests()[0].body.get("stream_options").is_none());
}

#[tokio::test]
async fn an_answer_without_any_token_yields_only_its_usage() {
    let fake = FakeOpenAi::builder().reply("").start();
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("Say nothing.")).await.unwrap()).await;
    assert!(out.deltas.is_empty(), "{:?}", out.deltas);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.usage, fake.last_usage().map(usage_of));
    assert_eq!(out.usage.map(|u| u.completion_tokens), Some(0));
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_once_after_that_delay() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Status {
        status: 429,
        retry_after: Some("7".to_owned()),
    }]);
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: hello");
    assert!(out.usage.is_some());
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays(), [Duration::from_secs(7)]);
}

#[tokio::test]
async fn server_errors_are_retried_with_jittered_backoff() {
    let fake = FakeOpenAi::start();
    fake.push_faults([status(500), status(500)]);
    let (m, pauses) = model(
        ProviderConfig {
            backoff_base: Duration::from_millis(250),
            ..provider(&fake)
        },
        ChatConfig::default(),
    );
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: hello");
    assert_eq!(fake.request_count(), 3);
    let delays = pauses.delays();
    assert_eq!(delays.len(), 2);
    assert!(delays[0] <= Duration::from_millis(250), "{delays:?}");
    assert!(delays[1] <= Duration::from_millis(500), "{delays:?}");
}

#[tokio::test]
async fn exhausted_retries_are_unavailable() {
    let fake = FakeOpenAi::start();
    fake.push_faults([status(503), status(503), status(503)]);
    let (m, pauses) = model(
        ProviderConfig {
            max_retries: 2,
            ..provider(&fake)
        },
        ChatConfig::default(),
    );
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Unavailable(msg) if msg == "HTTP 503 (after 3 attempts)"),
        "{err}"
    );
    assert_eq!(fake.request_count(), 3);
    assert_eq!(pauses.delays().len(), 2);
}

fn slow_first_token() -> ChatConfig {
    ChatConfig {
        first_token_timeout: Duration::from_millis(200),
        ..ChatConfig::default()
    }
}

#[tokio::test]
async fn a_first_token_slower_than_its_timeout_is_retried() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::FirstTokenDelay(Duration::from_secs(2))]);
    let (m, pauses) = model(provider(&fake), slow_first_token());
    let started = std::time::Instant::now();
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: hello");
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays().len(), 1);
    // The slow attempt was abandoned, not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A provider that never answers is the same.
    fake.push_faults([Fault::Hang]);
    let out = drain(m.stream(request("again")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: again");
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn a_first_token_that_never_comes_is_unavailable_after_the_retries() {
    let fake = FakeOpenAi::start();
    fake.push_faults([
        Fault::FirstTokenDelay(Duration::from_secs(2)),
        Fault::FirstTokenDelay(Duration::from_secs(2)),
    ]);
    let (m, pauses) = model(
        ProviderConfig {
            max_retries: 1,
            ..provider(&fake)
        },
        slow_first_token(),
    );
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Unavailable(msg)
            if msg == "no first token within 200 ms (after 2 attempts)"),
        "{err}"
    );
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays().len(), 1);
}

#[tokio::test]
async fn a_stream_broken_before_its_first_token_is_retried() {
    let fake = FakeOpenAi::start();
    // Role chunk, then the connection closes; then a 200 that is not a stream.
    fake.push_faults([Fault::DisconnectAfter(0), Fault::Malformed, Fault::Drop]);
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: hello");
    assert_eq!(fake.request_count(), 4);
    assert_eq!(pauses.delays().len(), 3);
}

#[tokio::test]
async fn a_disconnect_after_the_first_token_interrupts_without_retry() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::DisconnectAfter(2)]);
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("When does the lease end?")).await.unwrap()).await;
    let pieces = reply_pieces("You asked: When does the lease end?");
    assert_eq!(out.deltas, pieces[..2]);
    assert!(
        matches!(&out.error, Some(ModelError::Interrupted(msg)) if msg.starts_with("the answer was cut short")),
        "{:?}",
        out.error
    );
    assert_eq!(out.usage, None);
    assert_eq!(out.after_end, 0, "the stream ends after its error");
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn a_malformed_chunk_after_the_first_token_interrupts() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::MalformedChunk]);
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("hello there")).await.unwrap()).await;
    assert_eq!(out.deltas, ["You "]);
    assert!(
        matches!(&out.error, Some(ModelError::Interrupted(msg)) if msg.contains("malformed chunk")),
        "{:?}",
        out.error
    );
    assert_eq!(out.after_end, 0);
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn a_stall_longer_than_the_idle_timeout_interrupts() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::StallAfter(2, Duration::from_secs(10))]);
    let (m, pauses) = model(
        provider(&fake),
        ChatConfig {
            idle_timeout: Duration::from_millis(200),
            ..ChatConfig::default()
        },
    );
    let out = drain(m.stream(request("hello there")).await.unwrap()).await;
    assert_eq!(out.deltas, ["You ", "aske"]);
    assert!(
        matches!(&out.error, Some(ModelError::Interrupted(msg))
            if msg == "the answer was cut short: no data from the provider for 200 ms"),
        "{:?}",
        out.error
    );
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
    // The abandoned stream's connection was closed.
    assert!(
        fake.until(Duration::from_secs(5), |f| f.abandoned_streams() == 1)
            .await
    );
}

#[tokio::test]
async fn a_stall_shorter_than_the_idle_timeout_and_longer_than_the_request_timeout_is_fine() {
    // ProviderConfig::timeout (500 ms here) must not apply to a stream.
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::StallAfter(1, Duration::from_millis(800))]);
    let (m, _) = model(provider(&fake), ChatConfig::default());
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "You asked: hello");
}

#[tokio::test]
async fn a_400_is_rejected_with_the_providers_message_and_not_retried() {
    let fake = FakeOpenAi::start();
    fake.push_faults([status(400)]);
    let (m, pauses) = model(provider(&fake), ChatConfig::default());
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Rejected(msg) if *msg == fault_message(400)),
        "{err}"
    );
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());

    // A model the provider does not serve.
    let mut req = request("hello");
    req.model = "gpt-nope".to_owned();
    let err = m.stream(req).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Rejected(msg) if msg.contains("`gpt-nope` does not exist")),
        "{err}"
    );
    assert_eq!(fake.request_count(), 2);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let fake = FakeOpenAi::start();
    // One piece, then silence: only the client can end this stream early.
    fake.push_faults([Fault::StallAfter(1, Duration::from_secs(30))]);
    let (m, _) = model(provider(&fake), ChatConfig::default());
    let mut stream = m.stream(request("hello")).await.unwrap();
    let first = stream.next().await;
    assert!(
        matches!(&first, Some(Ok(ModelEvent::Delta(d))) if d == "You "),
        "{first:?}"
    );
    assert_eq!(fake.open_streams(), 1);
    assert_eq!(fake.abandoned_streams(), 0);
    drop(stream);
    assert!(
        fake.until(Duration::from_secs(5), |f| f.abandoned_streams() == 1
            && f.open_streams() == 0)
            .await,
        "the fake still streams: open {}, abandoned {}",
        fake.open_streams(),
        fake.abandoned_streams()
    );
}

#[tokio::test]
async fn concurrent_streams_do_not_mix() {
    let fake = FakeOpenAi::start();
    let (m, _) = model(provider(&fake), ChatConfig::default());
    let questions = ["first question", "second question", "third question"];
    let outs = futures_util::future::join_all(
        questions
            .iter()
            .map(|q| async { drain(m.stream(request(q)).await.unwrap()).await }),
    )
    .await;
    for (q, out) in questions.iter().zip(outs) {
        assert_eq!(out.text(), format!("You asked: {q}"));
        assert!(out.usage.is_some());
    }
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn the_key_is_sent_and_never_shown() {
    let key = "sk-test-do-not-leak-4242";
    let fake = FakeOpenAi::builder().api_key(key).start();
    let with_key = ProviderConfig {
        api_key: Some(SecretString::from(key)),
        max_retries: 1,
        ..provider(&fake)
    };
    let (m, _) = model(
        with_key,
        ChatConfig {
            first_token_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..ChatConfig::default()
        },
    );
    let out = drain(m.stream(request("hello")).await.unwrap()).await;
    assert_eq!(out.text(), "You asked: hello");
    assert_eq!(
        fake.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!format!("{m:?}").contains(key));

    // Errors, whatever their kind and whenever they come, do not carry it.
    let mut shown = Vec::new();
    fake.push_faults([status(500), Fault::Drop]);
    shown.push(m.stream(request("hello")).await.err().expect("an error"));
    fake.push_faults([status(400)]);
    shown.push(m.stream(request("hello")).await.err().expect("an error"));
    fake.push_faults([Fault::Hang, Fault::Hang]);
    shown.push(m.stream(request("hello")).await.err().expect("an error"));
    for fault in [
        Fault::DisconnectAfter(1),
        Fault::MalformedChunk,
        Fault::StallAfter(1, Duration::from_secs(5)),
    ] {
        fake.push_faults([fault]);
        let out = drain(m.stream(request("hello")).await.unwrap()).await;
        shown.push(out.error.expect("an interrupted stream"));
    }
    assert_eq!(shown.len(), 6);
    for err in &shown {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(key), "{text}");
    }

    // A wrong key: the credentials are refused, at once.
    let (m, pauses) = model(
        ProviderConfig {
            api_key: Some(SecretString::from("sk-wrong-key-0000")),
            ..provider(&fake)
        },
        ChatConfig::default(),
    );
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Unavailable(msg) if msg == "the provider refused the credentials (HTTP 401)"),
        "{err}"
    );
    assert!(!err.to_string().contains("sk-wrong"));
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (m, pauses) = model(
        ProviderConfig {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            max_retries: 1,
            ..ProviderConfig::default()
        },
        ChatConfig::default(),
    );
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(
        matches!(&err, ModelError::Unavailable(msg) if msg.starts_with("could not connect")),
        "{err}"
    );
    assert_eq!(pauses.delays().len(), 1);
}

/// The circuit breaker (issue 15, item 7): a call that failed for want of the provider marks
/// it down for `down_for`: the calls meanwhile are refused without a request; the first one
/// after it tries again.
#[tokio::test]
async fn a_failed_call_marks_the_provider_down_for_a_while() {
    let fake = FakeOpenAi::start();
    let (m, _) = model(
        ProviderConfig {
            max_retries: 0,
            down_for: Duration::from_millis(400),
            ..provider(&fake)
        },
        ChatConfig::default(),
    );
    fake.push_faults([Fault::Status {
        status: 503,
        retry_after: None,
    }]);
    let err = m.stream(request("hello")).await.err().expect("an error");
    assert!(matches!(err, ModelError::Unavailable(_)), "{err}");
    assert_eq!(fake.request_count(), 1);
    let refused = m.refusing().expect("marked down");
    assert!(refused <= Duration::from_millis(400), "{refused:?}");
    let err = m.stream(request("hello")).await.err().expect("refused");
    assert!(
        matches!(err, ModelError::Down { retry_after } if retry_after <= Duration::from_millis(400)),
        "{err}"
    );
    assert_eq!(fake.request_count(), 1, "not asked while down");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(m.refusing(), None);
    let out = drain(m.stream(request("hello")).await.expect("tried again")).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(fake.request_count(), 2);
}
