//! Where and how to reach a provider ([`ProviderConfig`]), and the process-wide TLS set-up
//! every reqwest client of the crate needs first ([`install_crypto_provider`]).

use std::sync::Once;
use std::time::Duration;

use secrecy::SecretString;

/// Where and how to reach an OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The API root, `/v1` included, as the OpenAI SDKs' `base_url`
    /// (`https://api.openai.com/v1`); requests go to `{base_url}/embeddings`, ….
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (local servers often need none).
    pub api_key: Option<SecretString>,
    /// Limit of one whole request (connect, send, wait, read the answer).
    pub timeout: Duration,
    /// Limit of establishing the connection.
    pub connect_timeout: Duration,
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// First backoff ceiling; it doubles on each retry.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// How long the provider is marked down, its calls refused at once, after a call or a
    /// readiness probe failed for want of it (see the `health` module); zero turns that off. The
    /// first client of a base URL in the process sets it for all.
    pub down_for: Duration,
}

impl Default for ProviderConfig {
    /// OpenAI, no key, 60 s per request, 10 s to connect, 4 retries from 250 ms up to 20 s,
    /// marked down for 2 s after a failed call.
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(20),
            down_for: Duration::from_secs(2),
        }
    }
}

/// Installs rustls' ring crypto provider as the process default, which reqwest (built
/// without a provider of its own, feature `tls`) needs before any client is built anywhere in
/// the process. Idempotent; a provider installed earlier by someone else is kept. Without the
/// `tls` feature it does nothing.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "tls")]
        {
            // `Err` only when a provider is already installed, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}
