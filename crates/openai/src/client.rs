//! The HTTP side every OpenAI-compatible adapter shares: the provider's configuration, the
//! client (rustls on ring), the retry policy and the mapping of HTTP outcomes to errors.
//!
//! Retry policy: 429, 408, 5xx, timeouts and connection failures are retried up to
//! `max_retries` times. The delay before retry `n` (0-based) is `Retry-After` when the provider
//! sends one (`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date; more than
//! [`MAX_RETRY_AFTER`] gives up at once rather than hold the caller), else "full jitter":
//! uniform in `0..=min(backoff_max, backoff_base × 2ⁿ)`. Any other answer is final: 401/403
//! mean the credentials were refused, another 4xx that the input was, and a 2xx body that does
//! not parse is an unknown failure.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ProviderConfig, install_crypto_provider};
use crate::health::ProviderHealth;

/// The longest `Retry-After` honoured: a provider asking for more gets an `Unavailable`
/// answer at once (the job that called retries later) instead of a caller blocked for minutes.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest provider error message passed on.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// A configuration the adapter cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The model's dimension is unknown or too large: `dimensions` must be set.
    #[error("{0}")]
    Dimensions(String),
    /// A setting out of range.
    #[error("invalid model settings: {0}")]
    Invalid(String),
    /// `base_url` is not an http(s) URL.
    #[error("base_url must be an http:// or https:// URL (got {0:?})")]
    BaseUrl(String),
    /// An `https://` base URL in a build without the `tls` feature.
    #[error("base_url is https:// but this build has no TLS (feature `tls` of the openai crate)")]
    NoTls,
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// How the adapters wait between retries; tests substitute one that records the delays.
pub trait Pause: Send + Sync + fmt::Debug {
    /// Completes after `d`.
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// [`Pause`] on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioPause;

impl Pause for TokioPause {
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Why a call failed for good (after the retries).
#[derive(Debug)]
pub(crate) enum CallError {
    /// The provider refused the request (4xx but 401/403/408/429); its message.
    Rejected(String),
    /// Unreachable, refused credentials, or still failing after every retry; a short reason.
    Unavailable(String),
    /// Not tried: the provider failed a call a moment ago ([`crate::health`]); calls are
    /// refused for this long.
    Down(Duration),
    /// A malformed answer or a bug.
    Unknown(anyhow::Error),
}

impl CallError {
    fn down_message(wait: Duration) -> String {
        format!(
            "the model provider is down; try again in {} s",
            kernel::clock::whole_secs_up(wait).max(1)
        )
    }
}

impl From<CallError> for retrieval::EmbedError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(m) => Self::Rejected(m),
            CallError::Unavailable(m) => Self::Unavailable(m),
            CallError::Down(wait) => Self::Unavailable(CallError::down_message(wait)),
            CallError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<CallError> for chat::ModelError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(m) => Self::Rejected(m),
            CallError::Unavailable(m) => Self::Unavailable(m),
            CallError::Down(retry_after) => Self::Down { retry_after },
            CallError::Unknown(e) => Self::Unknown(e),
        }
    }
}

/// How one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another try.
    Retry {
        /// Short and safe to show: `HTTP 503`, `timed out`.
        reason: String,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What the provider asked to wait.
        retry_after: Option<Duration>,
        /// The transport error, for the log only.
        detail: Option<String>,
    },
    /// Final.
    Fatal(CallError),
}

/// Backoff settings of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl RetryPolicy {
    /// The ceiling of the delay before retry `n` (0-based): `min(max, base × 2ⁿ)`.
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A full-jitter delay before retry `n`.
    fn jittered(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(fastrand::f64())
    }
}

/// The shared HTTP client of an adapter.
#[derive(Clone)]
pub(crate) struct HttpClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<SecretString>,
    policy: RetryPolicy,
    pause: Arc<dyn Pause>,
    health: Arc<ProviderHealth>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("policy", &self.policy)
            .field("pause", &self.pause)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `config` (installs the crypto provider first) whose requests are limited
    /// to `config.timeout` each.
    pub(crate) fn new(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Self::build(config, true)
    }

    /// A client for streamed answers: `config.connect_timeout` applies, `config.timeout` does
    /// not (a long answer may stream for minutes; the adapter keeps its own first-token and
    /// idle timeouts).
    pub(crate) fn streaming(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Self::build(config, false)
    }

    fn build(config: &ProviderConfig, whole_request_timeout: bool) -> Result<Self, ConfigError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                if url.scheme() == "https" && !cfg!(feature = "tls") {
                    return Err(ConfigError::NoTls);
                }
            }
            _ => return Err(ConfigError::BaseUrl(config.base_url.clone())),
        }
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "timeout and connect_timeout must be positive".to_owned(),
            ));
        }
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("quire/", env!("CARGO_PKG_VERSION")));
        if whole_request_timeout {
            builder = builder.timeout(config.timeout);
        }
        let http = builder
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base_url,
            api_key: config.api_key.clone(),
            policy: RetryPolicy {
                max_retries: config.max_retries,
                base: config.backoff_base,
                max: config.backoff_max,
            },
            pause: Arc::new(TokioPause),
            health: ProviderHealth::of(config),
        })
    }

    /// How long calls are refused while the provider is marked down ([`crate::health`]).
    pub(crate) fn refusing(&self) -> Option<Duration> {
        self.health.refusing()
    }

    /// The same client, waiting between retries through `pause`.
    pub(crate) fn set_pause(&mut self, pause: Arc<dyn Pause>) {
        self.pause = pause;
    }

    /// `POST {base_url}/{path}` with `body` as JSON, retried per the policy; the 2xx answer
    /// parsed as `T`. `what` names the call in logs and errors.
    pub(crate) async fn post_json<B, T>(
        &self,
        path: &str,
        body: &B,
        what: &'static str,
    ) -> Result<T, CallError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = self.url(path);
        let body = serde_json::to_vec(body)
            .map_err(|e| CallError::Unknown(anyhow::Error::new(e).context(what)))?;
        self.with_retries(what, || async {
            let res = self
                .post(&url, body.clone())
                .send()
                .await
                .map_err(transport)?;
            let res = check_status(res).await?;
            let bytes = res.bytes().await.map_err(transport)?;
            serde_json::from_slice::<T>(&bytes).map_err(|e| {
                Failure::Fatal(CallError::Unknown(anyhow::Error::new(e).context(format!(
                    "{what}: the provider's answer is not the expected JSON"
                ))))
            })
        })
        .await
    }

    /// `{base_url}/{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    /// A `POST` of a JSON `body` to `url`, with the key when there is one.
    pub(crate) fn post(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        match &self.api_key {
            // `bearer_auth` marks the header sensitive (kept out of reqwest's own Debug).
            Some(key) => req.bearer_auth(key.expose_secret()),
            None => req,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent; refused at
    /// once while the provider is marked down, and marking it down or up by the outcome
    /// ([`crate::health`]).
    pub(crate) async fn with_retries<T, F, Fut>(
        &self,
        what: &'static str,
        attempt: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        if let Some(wait) = self.health.refusing() {
            return Err(CallError::Down(wait));
        }
        let outcome = self.retried(what, attempt).await;
        match &outcome {
            Ok(_) | Err(CallError::Rejected(_)) => self.health.answered(),
            Err(CallError::Unavailable(_)) => self.health.failed(),
            Err(CallError::Down(_) | CallError::Unknown(_)) => {}
        }
        outcome
    }

    async fn retried<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut retry = 0u32;
        loop {
            let (reason, status, retry_after, detail) = match attempt().await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry {
                    reason,
                    status,
                    retry_after,
                    detail,
                }) => (reason, status, retry_after, detail),
            };
            if retry >= self.policy.max_retries {
                let attempts = retry + 1;
                tracing::warn!(
                    what,
                    status,
                    attempts,
                    detail,
                    "{what}: {reason}; giving up"
                );
                return Err(CallError::Unavailable(format!(
                    "{reason} (after {attempts} attempt{})",
                    if attempts == 1 { "" } else { "s" }
                )));
            }
            let delay = match retry_after {
                Some(d) if d > MAX_RETRY_AFTER => {
                    tracing::warn!(
                        what,
                        status,
                        retry_after_s = d.as_secs(),
                        "{what}: {reason}; the provider asks to wait too long"
                    );
                    return Err(CallError::Unavailable(format!(
                        "{reason}; the provider asked to wait {} s",
                        d.as_secs()
                    )));
                }
                Some(d) => d,
                None => self.policy.jittered(retry),
            };
            retry += 1;
            tracing::warn!(
                what,
                status,
                attempt = retry,
                max_retries = self.policy.max_retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                detail,
                "{what}: {reason}; retrying"
            );
            self.pause.pause(delay).await;
        }
    }
}

/// A transport error: final when the request could not even be built, else retried.
pub(crate) fn transport(e: reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::Fatal(CallError::Unknown(
            anyhow::Error::new(e.without_url()).context("building the request"),
        ));
    }
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    Failure::Retry {
        reason: reason.to_owned(),
        status: None,
        retry_after: None,
        detail: Some(error_chain(&e.without_url())),
    }
}

/// `e` and its sources, `: `-separated (for logs).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The response when it is a success; otherwise how the attempt failed.
pub(crate) async fn check_status(res: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let code = status.as_u16();
    if code == 429 || code == 408 || status.is_server_error() {
        return Err(Failure::Retry {
            reason: format!("HTTP {code}"),
            status: Some(code),
            retry_after: retry_after(res.headers(), SystemTime::now()),
            detail: None,
        });
    }
    if code == 401 || code == 403 {
        return Err(Failure::Fatal(CallError::Unavailable(format!(
            "the provider refused the credentials (HTTP {code})"
        ))));
    }
    if status.is_client_error() {
        // A body that cannot be read still leaves the status to report.
        let body = res.bytes().await.unwrap_or_default();
        let message = error_message(&body).unwrap_or_else(|| format!("HTTP {code}"));
        return Err(Failure::Fatal(CallError::Rejected(
            kernel::text::ellipsized(&message, MAX_MESSAGE_CHARS),
        )));
    }
    Err(Failure::Fatal(CallError::Unknown(anyhow::anyhow!(
        "the provider answered an unexpected HTTP {code}"
    ))))
}

/// How long the provider asks to wait: `retry-after-ms` (OpenAI), else `Retry-After` as
/// delta-seconds or an HTTP date (a date in the past is no wait).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms.min(1e12) / 1000.0));
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The message of an OpenAI-style error body (`{"error":{"message":…}}`), or of the other
/// shapes compatible servers use (`{"error":"…"}`, `{"message":…}`, `{"detail":…}`).
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = v
        .pointer("/error/message")
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .or_else(|| v.get("message"))
        .or_else(|| v.get("detail"))?;
    let text = match text {
        serde_json::Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "1500"), ("retry-after", "7")]),
                now
            ),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
    }

    #[test]
    fn backoff_ceilings_double_up_to_the_max() {
        let p = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(250),
            max: Duration::from_secs(20),
        };
        let ceilings: Vec<u128> = (0..9).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]
        );
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(20));
        for n in 0..12 {
            for _ in 0..50 {
                assert!(p.jittered(n) <= p.ceiling(n));
            }
        }
    }

    #[test]
    fn error_messages_of_several_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"too long","type":"invalid_request_error"}}"#)
                .as_deref(),
            Some("too long")
        );
        assert_eq!(
            error_message(br#"{"error":"nope"}"#).as_deref(),
            Some("nope")
        );
        assert_eq!(
            error_message(br#"{"detail":"bad"}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(error_message(b"<html>"), None);
        assert_eq!(error_message(br#"{"error":{"message":""}}"#), None);
    }

    #[test]
    fn base_url_must_be_http() {
        for bad in ["", "api.openai.com/v1", "ftp://x/v1", "http://"] {
            let config = ProviderConfig {
                base_url: bad.to_owned(),
                ..ProviderConfig::default()
            };
            assert!(
                matches!(HttpClient::new(&config), Err(ConfigError::BaseUrl(_))),
                "{bad}"
            );
        }
        let ok = HttpClient::new(&ProviderConfig {
            base_url: "http://127.0.0.1:9/v1/".to_owned(),
            ..ProviderConfig::default()
        })
        .unwrap();
        assert_eq!(ok.base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn https_needs_the_tls_feature() {
        let built = HttpClient::new(&ProviderConfig::default());
        if cfg!(feature = "tls") {
            built.unwrap();
        } else {
            assert!(matches!(built, Err(ConfigError::NoTls)));
        }
    }
}
