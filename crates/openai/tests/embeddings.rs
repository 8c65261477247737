//! The embeddings adapter against the fake OpenAI-compatible server: batching and order,
//! retries and their delays, error mapping, the key, the request shape, token counting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use local_ai::LocalEmbedder;
use openai::{BoxFuture, EmbeddingConfig, OpenAiEmbedder, Pause, ProviderConfig};
use retrieval::{EmbedError, Embedder as _};
use secrecy::SecretString;
use testkit::fake_openai::{FakeOpenAi, Fault, fault_message};

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
        timeout: Duration::from_secs(10),
        ..ProviderConfig::default()
    }
}

fn config(dimensions: u32) -> EmbeddingConfig {
    EmbeddingConfig {
        dimensions: Some(dimensions),
        ..EmbeddingConfig::new("text-embedding-3-small")
    }
}

fn embedder(
    provider: ProviderConfig,
    config: EmbeddingConfig,
) -> (OpenAiEmbedder, Arc<RecordedPauses>) {
    let pauses = Arc::new(RecordedPauses::default());
    let e = OpenAiEmbedder::new(provider, config)
        .expect("an embedder")
        .with_pause(pauses.clone());
    (e, pauses)
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[tokio::test]
async fn a_batch_split_across_requests_comes_back_in_input_order() {
    // The fake lists each answer's items last first: order must come from `index`.
    let fake = FakeOpenAi::builder().dimensions(64).reversed().start();
    let (e, _) = embedder(
        provider(&fake),
        EmbeddingConfig {
            max_batch_inputs: 3,
            max_batch_chars: 80,
            ..config(48)
        },
    );
    let inputs = strings(&[
        "running shoes",
        "tax forms for small businesses",
        "how to repot a houseplant",
        "slow-cooked beef stew",
        "the history of printing",
        &"a long input that fills a request on its own ".repeat(2),
        "trail runners",
        "weather in Tehran",
    ]);
    let out = e.embed(&inputs).await.unwrap();
    assert_eq!(out.vectors.len(), inputs.len());
    let local = LocalEmbedder::new(48);
    for (input, v) in inputs.iter().zip(&out.vectors) {
        assert_eq!(v.len(), 48);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_close(v, &local.vector(input));
    }

    let requests = fake.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .collect();
    // 3 by count (68 chars); 44 chars, then the long input (90 > 80) alone; the rest.
    assert_eq!(sizes, [3, 2, 1, 2]);
    assert!(requests.iter().all(|r| r.path == "/v1/embeddings"));
    let expected: u64 = inputs.iter().map(|t| tiktoken_count(t)).sum();
    assert_eq!(out.tokens, expected);
    assert!(e.embed(&[]).await.unwrap().vectors.is_empty());
    assert_eq!(fake.request_count(), 4, "no request for no input");
}

fn tiktoken_count(text: &str) -> u64 {
    LocalEmbedder::new(8).embed_now(&[text.to_owned()]).tokens
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_once_after_that_delay() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Status {
        status: 429,
        retry_after: Some("7".to_owned()),
    }]);
    let (e, pauses) = embedder(provider(&fake), config(64));
    let out = e.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(out.vectors.len(), 1);
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays(), [Duration::from_secs(7)]);
}

#[tokio::test]
async fn retry_after_longer_than_the_cap_gives_up_at_once() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Status {
        status: 429,
        retry_after: Some("120".to_owned()),
    }]);
    let (e, pauses) = embedder(provider(&fake), config(64));
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Unavailable(m) if m.contains("HTTP 429") && m.contains("120 s")),
        "{err}"
    );
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_with_jittered_backoff() {
    let fake = FakeOpenAi::start();
    let status = |status| Fault::Status {
        status,
        retry_after: None,
    };
    fake.push_faults([status(500), status(502)]);
    let config_ = ProviderConfig {
        backoff_base: Duration::from_millis(250),
        backoff_max: Duration::from_secs(20),
        ..provider(&fake)
    };
    let (e, pauses) = embedder(config_, config(64));
    e.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(fake.request_count(), 3);
    let delays = pauses.delays();
    assert_eq!(delays.len(), 2);
    // Full jitter: uniform below min(max, base × 2ⁿ).
    assert!(delays[0] <= Duration::from_millis(250), "{delays:?}");
    assert!(delays[1] <= Duration::from_millis(500), "{delays:?}");
}

#[tokio::test]
async fn the_backoff_ceiling_stops_at_backoff_max() {
    let fake = FakeOpenAi::start();
    fake.push_faults(std::iter::repeat_n(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        6,
    ));
    let config_ = ProviderConfig {
        max_retries: 6,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(3),
        ..provider(&fake)
    };
    let (e, pauses) = embedder(config_, config(64));
    e.embed(&strings(&["hello"])).await.unwrap();
    let delays = pauses.delays();
    assert_eq!(delays.len(), 6);
    for (n, d) in delays.iter().enumerate() {
        let ceiling = Duration::from_secs(1 << n).min(Duration::from_secs(3));
        assert!(*d <= ceiling, "retry {n}: {d:?}");
    }
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_retried() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Delay(Duration::from_secs(3))]);
    let config_ = ProviderConfig {
        timeout: Duration::from_millis(300),
        ..provider(&fake)
    };
    let (e, pauses) = embedder(config_, config(64));
    let out = e.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(out.vectors.len(), 1);
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Drop]);
    let (e, pauses) = embedder(provider(&fake), config(64));
    e.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(fake.request_count(), 2);
    assert_eq!(pauses.delays().len(), 1);
}

#[tokio::test]
async fn exhausted_retries_are_unavailable() {
    let fake = FakeOpenAi::start();
    let status = |status| Fault::Status {
        status,
        retry_after: None,
    };
    fake.push_faults([status(503), status(503), status(503)]);
    let config_ = ProviderConfig {
        max_retries: 2,
        ..provider(&fake)
    };
    let (e, pauses) = embedder(config_, config(64));
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Unavailable(m) if m == "HTTP 503 (after 3 attempts)"),
        "{err}"
    );
    assert_eq!(fake.request_count(), 3);
    assert_eq!(pauses.delays().len(), 2);

    fake.push_faults([Fault::Drop, Fault::Drop, Fault::Drop]);
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Unavailable(m) if m.starts_with("the connection failed")),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_ = ProviderConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        max_retries: 1,
        ..ProviderConfig::default()
    };
    let (e, pauses) = embedder(config_, config(64));
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Unavailable(m) if m.starts_with("could not connect")),
        "{err}"
    );
    assert_eq!(pauses.delays().len(), 1);
}

#[tokio::test]
async fn a_400_is_rejected_with_the_providers_message_and_not_retried() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Status {
        status: 400,
        retry_after: None,
    }]);
    let (e, pauses) = embedder(provider(&fake), config(64));
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Rejected(m) if *m == fault_message(400)),
        "{err}"
    );
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());

    for status in [404, 413, 422] {
        fake.push_faults([Fault::Status {
            status,
            retry_after: None,
        }]);
        let err = e.embed(&strings(&["hello"])).await.unwrap_err();
        assert!(matches!(&err, EmbedError::Rejected(_)), "{status}: {err}");
    }
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn a_malformed_answer_is_unknown() {
    let fake = FakeOpenAi::start();
    fake.push_faults([Fault::Malformed]);
    let (e, pauses) = embedder(provider(&fake), config(64));
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(matches!(err, EmbedError::Unknown(_)), "{err}");
    assert_eq!(fake.request_count(), 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn a_vector_of_the_wrong_dimension_is_unknown() {
    // ada-002 is 1536 dimensions and no `dimensions` is sent: the fake answers its default 64.
    let fake = FakeOpenAi::start();
    let (e, _) = embedder(
        provider(&fake),
        EmbeddingConfig::new("text-embedding-ada-002"),
    );
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    let EmbedError::Unknown(cause) = err else {
        panic!("{err}");
    };
    assert!(format!("{cause:#}").contains("64 dimensions"), "{cause:#}");
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
    let (e, _) = embedder(with_key.clone(), config(64));
    e.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(
        fake.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!format!("{e:?}").contains(key));
    assert!(!format!("{with_key:?}").contains(key));

    // Errors, whatever their kind, do not carry it.
    fake.push_faults([
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Fault::Drop,
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        Fault::Malformed,
    ]);
    for _ in 0..3 {
        let err = e.embed(&strings(&["hello"])).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(key), "{shown}");
    }

    // A wrong key: the credentials are refused, at once.
    let wrong = ProviderConfig {
        api_key: Some(SecretString::from("sk-wrong-key-0000")),
        ..provider(&fake)
    };
    let (e, pauses) = embedder(wrong, config(64));
    let before = fake.request_count();
    let err = e.embed(&strings(&["hello"])).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Unavailable(m) if m == "the provider refused the credentials (HTTP 401)"),
        "{err}"
    );
    assert!(!err.to_string().contains("sk-wrong"));
    assert_eq!(fake.request_count(), before + 1);
    assert!(pauses.delays().is_empty());
}

#[tokio::test]
async fn dimensions_are_sent_only_when_configured() {
    let fake = FakeOpenAi::builder().dimensions(1536).start();
    let (native, _) = embedder(
        provider(&fake),
        EmbeddingConfig::new("text-embedding-3-small"),
    );
    let out = native.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(out.vectors[0].len(), 1536);
    let (short, _) = embedder(provider(&fake), config(256));
    let out = short.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(out.vectors[0].len(), 256);

    let requests = fake.requests();
    assert!(
        requests[0].body.get("dimensions").is_none(),
        "{}",
        requests[0].body
    );
    assert_eq!(requests[1].body["dimensions"], 256);
    for r in &requests {
        assert_eq!(r.body["encoding_format"], "float");
        assert_eq!(r.body["model"], "text-embedding-3-small");
        assert_eq!(r.body["input"], serde_json::json!(["hello"]));
    }
}

#[tokio::test]
async fn without_usage_tokens_are_counted_locally() {
    let fake = FakeOpenAi::builder().without_usage().start();
    let (e, _) = embedder(provider(&fake), config(64));
    let out = e
        .embed(&strings(&["hello world", "running shoes"]))
        .await
        .unwrap();
    // cl100k_base: 2 + 2.
    assert_eq!(out.tokens, 4);

    let with_usage = FakeOpenAi::start();
    let (e, _) = embedder(provider(&with_usage), config(64));
    let out = e.embed(&strings(&["hello world"])).await.unwrap();
    assert_eq!(out.tokens, 2);
}

#[test]
fn the_model_is_named_after_the_config() {
    let e = OpenAiEmbedder::new(
        ProviderConfig {
            base_url: "http://127.0.0.1:9/v1".to_owned(),
            ..ProviderConfig::default()
        },
        config(512),
    )
    .unwrap();
    assert_eq!(e.model().name(), "text-embedding-3-small");
    assert_eq!(e.model().dimensions(), 512);
}
