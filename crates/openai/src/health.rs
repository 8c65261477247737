//! What this process knows of a provider's health: the readiness check of the `provider`
//! component, and a circuit breaker every call of the provider's clients goes through.
//!
//! A call that fails for want of the provider (after its retries: unreachable, 5xx or 429
//! throughout, refused credentials) marks the provider down for `ProviderConfig::down_for`
//! (2 s by default; zero turns the breaker off); meanwhile calls fail at once (`CallError::Down`:
//! chat answers 503 `provider_unavailable` with `Retry-After` instead of waiting out its
//! retries again), and the first call after it tries the provider again. Any answer from the
//! provider (a call or a probe that reaches it) marks it up.
//!
//! The check (`/health/ready`) answers from that state while it is fresh, else probes
//! `GET {base_url}/models` (one attempt, [`PROBE_TIMEOUT`]); a probe's outcome is kept for
//! [`PROBE_KEEP`], so frequent readiness checks cost the provider one request per
//! [`PROBE_KEEP`] and process.
//!
//! One state per base URL in the process ([`ProviderHealth::of`]): the chat and embedding
//! clients of one provider share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kernel::health::HealthCheck;
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{ProviderConfig, install_crypto_provider};

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a probe's (or a call's) outcome answers the check.
pub const PROBE_KEEP: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct State {
    /// Calls fail at once until then.
    down_until: Option<Instant>,
    /// The last outcome seen (a call or a probe): when, and whether the provider answered.
    last: Option<(Instant, bool)>,
}

/// The health of one provider (see the module docs).
pub struct ProviderHealth {
    base_url: String,
    api_key: Option<SecretString>,
    down_for: Duration,
    probe: reqwest::Client,
    state: Mutex<State>,
}

impl std::fmt::Debug for ProviderHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHealth")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ProviderHealth {
    /// The health of the provider at `config.base_url`, shared by every client of it in
    /// this process.
    #[must_use]
    pub fn of(config: &ProviderConfig) -> Arc<Self> {
        static ALL: OnceLock<Mutex<HashMap<String, Weak<ProviderHealth>>>> = OnceLock::new();
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let mut all = ALL
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|_, h| h.strong_count() > 0);
        if let Some(h) = all.get(&base_url).and_then(Weak::upgrade) {
            return h;
        }
        install_crypto_provider();
        let probe = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .connect_timeout(PROBE_TIMEOUT)
            .build()
            .unwrap_or_default();
        let health = Arc::new(Self {
            base_url: base_url.clone(),
            api_key: config.api_key.clone(),
            down_for: config.down_for,
            probe,
            state: Mutex::default(),
        });
        all.insert(base_url, Arc::downgrade(&health));
        health
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long calls are still refused, while the provider is marked down.
    #[must_use]
    pub fn refusing(&self) -> Option<Duration> {
        let until = self.lock().down_until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// A call or probe failed for want of the provider.
    pub(crate) fn failed(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.last = Some((now, false));
        if self.down_for.is_zero() {
            return;
        }
        if s.down_until.is_none_or(|t| t <= now) {
            tracing::warn!(provider = %self.base_url, down_for = ?self.down_for, "the model provider is down: its calls fail at once for a while");
        }
        s.down_until = Some(now + self.down_for);
    }

    /// The provider answered.
    pub(crate) fn answered(&self) {
        let mut s = self.lock();
        if s.last.is_some_and(|(_, up)| !up) {
            tracing::info!(provider = %self.base_url, "the model provider answers again");
        }
        s.down_until = None;
        s.last = Some((Instant::now(), true));
    }

    /// One `GET {base_url}/models`: any answer but 5xx, 429, 401 and 403 means the provider
    /// is there.
    async fn probe(&self) -> anyhow::Result<()> {
        let mut req = self.probe.get(format!("{}/models", self.base_url));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        match req.send().await {
            Ok(res) => {
                let code = res.status().as_u16();
                if res.status().is_server_error() || matches!(code, 401 | 403 | 429) {
                    self.failed();
                    anyhow::bail!("the provider answered HTTP {code}");
                }
                self.answered();
                Ok(())
            }
            Err(e) => {
                self.failed();
                Err(anyhow::Error::new(e.without_url()).context("probing the provider"))
            }
        }
    }
}

#[async_trait]
impl HealthCheck for ProviderHealth {
    fn component(&self) -> &'static str {
        "provider"
    }

    async fn check(&self) -> anyhow::Result<()> {
        let last = self.lock().last;
        match last {
            Some((at, up)) if at.elapsed() < PROBE_KEEP => {
                if up {
                    Ok(())
                } else {
                    anyhow::bail!("the provider failed its last call or probe")
                }
            }
            _ => self.probe().await,
        }
    }
}
