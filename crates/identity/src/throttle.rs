//! Sign-in throttling in the spirit of NIST SP 800-63B, on the cache port (shared by every
//! server), checked before any password is hashed:
//!
//! - per client IP, the budget of the credential routes is kept at the HTTP edge
//!   (`api::middleware::auth_rate_limit`, with the `RateLimit-*` headers), before this runs;
//! - per account and IP: at most `failures_per_account_ip` failed logins in 15 minutes, so an
//!   attacker at one address locks only that address out of the account, never its owner
//!   elsewhere;
//! - per account: at most `failures_per_account` failed logins an hour from all addresses
//!   together, which slows distributed guessing.
//!
//! Every lock ends with its window: nobody can be locked out for good. A success clears the
//! account-and-IP counter.

use std::sync::Arc;
use std::time::Duration;

use kernel::cache::{Cache, CacheError, CacheKey};

use crate::model::EmailAddress;

const ACCOUNT_IP_WINDOW: Duration = Duration::from_secs(15 * 60);
const ACCOUNT_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failed logins per account per client IP per 15 minutes.
    pub failures_per_account_ip: u32,
    /// Failed logins per account per hour, from all addresses.
    pub failures_per_account: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            failures_per_account_ip: 5,
            failures_per_account: 50,
        }
    }
}

/// Refused for now; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// Counts sign-in attempts and failures.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    cache: Arc<dyn Cache>,
    policy: ThrottlePolicy,
}

/// What the throttle answers.
pub type ThrottleResult = Result<Result<(), RetryAfter>, CacheError>;

impl LoginThrottle {
    /// A throttle over `cache`.
    #[must_use]
    pub fn new(cache: Arc<dyn Cache>, policy: ThrottlePolicy) -> Self {
        Self { cache, policy }
    }

    fn account_ip_key(email: &EmailAddress, ip: &str) -> CacheKey {
        CacheKey::global("login-fail", &[email.as_str(), ip])
    }

    fn account_key(email: &EmailAddress) -> CacheKey {
        CacheKey::global("login-fail-all", &[email.as_str()])
    }

    /// Refuses a login for `email` from `ip` while either failure budget is spent.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn check_account(&self, email: &EmailAddress, ip: &str) -> ThrottleResult {
        for (key, limit, window) in [
            (
                Self::account_ip_key(email, ip),
                self.policy.failures_per_account_ip,
                ACCOUNT_IP_WINDOW,
            ),
            (
                Self::account_key(email),
                self.policy.failures_per_account,
                ACCOUNT_WINDOW,
            ),
        ] {
            // Adding 0 reads the value and its time left in one atomic step.
            let c = self.cache.increment(&key, 0, window).await?;
            if c.value >= i64::from(limit) {
                return Ok(Err(RetryAfter(c.ttl)));
            }
        }
        Ok(Ok(()))
    }

    /// Records a failed login.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn failed(&self, email: &EmailAddress, ip: &str) -> Result<(), CacheError> {
        self.cache
            .increment(&Self::account_ip_key(email, ip), 1, ACCOUNT_IP_WINDOW)
            .await?;
        self.cache
            .increment(&Self::account_key(email), 1, ACCOUNT_WINDOW)
            .await?;
        Ok(())
    }

    /// Counts a mail to `email` (resets, codes); `false` once 3 were sent within the hour, so
    /// nobody can flood a mailbox through the API.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn mail(&self, email: &EmailAddress) -> Result<bool, CacheError> {
        let c = self
            .cache
            .increment(
                &CacheKey::global("mail-to", &[email.as_str()]),
                1,
                ACCOUNT_WINDOW,
            )
            .await?;
        Ok(c.value <= 3)
    }

    /// Stores the hash of a new sign-in code for `email`, replacing any earlier one and
    /// resetting its attempt counter.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn store_code(
        &self,
        email: &EmailAddress,
        hash: &str,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.cache
            .delete(&CacheKey::global("login-code-tries", &[email.as_str()]))
            .await?;
        self.cache
            .set(
                &CacheKey::global("login-code", &[email.as_str()]),
                hash.as_bytes(),
                ttl,
            )
            .await
    }

    /// Checks a presented code's hash: `true` (and the code is spent, atomically) when it
    /// matches within the first 5 attempts. After 5 wrong attempts the code is gone.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn take_code(
        &self,
        email: &EmailAddress,
        hash: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let key = CacheKey::global("login-code", &[email.as_str()]);
        let tries = self
            .cache
            .increment(
                &CacheKey::global("login-code-tries", &[email.as_str()]),
                1,
                ttl,
            )
            .await?;
        if tries.value > 5 {
            self.cache.delete(&key).await?;
            return Ok(false);
        }
        match self.cache.get(&key).await? {
            Some(stored) if stored == hash.as_bytes() => {
                // One-shot: of concurrent right guesses exactly one takes it.
                Ok(self
                    .cache
                    .take(&key)
                    .await?
                    .is_some_and(|v| v == hash.as_bytes()))
            }
            _ => Ok(false),
        }
    }

    /// Records a successful login: the account-and-IP failures are forgiven.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn succeeded(&self, email: &EmailAddress, ip: &str) -> Result<(), CacheError> {
        self.cache.delete(&Self::account_ip_key(email, ip)).await?;
        Ok(())
    }
}
