//! Sign-in throttling in the spirit of NIST SP 800-63B, on the cache port (shared by every
//! server), checked before any password is hashed:
//!
//! - per client IP, the budget of the credential routes is kept at the HTTP edge
//!   (`api::limits::by_address::<AuthRate>`, with the `RateLimit-*` headers), before this runs;
//! - per account and IP: at most `failures_per_account_ip` failed logins in 15 minutes, so an
//!   attacker at one address locks only that address out of the account, never its owner
//!   elsewhere;
//! - per account: at most `failures_per_account` failed logins an hour from all addresses
//!   together, which slows distributed guessing.
//!
//! Every lock ends with its window: nobody can be locked out for good. A success clears the
//! account-and-IP counter.
//!
//! Mail (codes, resets, verification) and code attempts have budgets per purpose and per
//! requester inside a larger one per address: [`LoginThrottle::mail`],
//! [`LoginThrottle::take_code`].

use std::sync::Arc;
use std::time::Duration;

use kernel::cache::{Cache, CacheError, CacheKey};

use crate::model::EmailAddress;

const ACCOUNT_IP_WINDOW: Duration = Duration::from_secs(15 * 60);
const ACCOUNT_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Mails of one purpose to one address an hour, from one requester.
pub const MAILS_PER_REQUESTER: u32 = 3;
/// Mails of one purpose to one address an hour, from every requester together.
pub const MAILS_PER_ADDRESS: u32 = 10;
/// Attempts at one code from one requester.
pub const CODE_TRIES_PER_REQUESTER: u32 = 5;
/// Attempts at the codes of one address an hour from one requester (over every code).
pub const CODE_TRIES_PER_REQUESTER_HOUR: u32 = 10;
/// Attempts at the codes of one address an hour, from every requester together (counting
/// only attempts within each requester's own allowances).
pub const CODE_GUESSES_PER_ADDRESS: u32 = 20;

/// Why a mail goes out: each purpose has its own budget, so spending one (asking for sign-in
/// codes) leaves the others (a password reset) to the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailPurpose {
    /// A sign-in code.
    Code,
    /// A password-reset token.
    Reset,
    /// A code that confirms the address of a new account.
    Verify,
}

impl MailPurpose {
    fn as_str(self) -> &'static str {
        match self {
            MailPurpose::Code => "code",
            MailPurpose::Reset => "reset",
            MailPurpose::Verify => "verify",
        }
    }
}

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

    /// Counts a mail of `purpose` to `email` asked for by `requester` (the client address);
    /// `false` when a budget is spent: 3 an hour per purpose, address and requester, inside
    /// 10 an hour per purpose and address. So nobody floods a mailbox through the API, and
    /// one requester cannot spend the owner's budget (a stranger's code requests leave the
    /// owner's codes and resets alone). A refusal by the requester's budget does not count
    /// against the address's.
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn mail(
        &self,
        purpose: MailPurpose,
        email: &EmailAddress,
        requester: &str,
    ) -> Result<bool, CacheError> {
        let p = purpose.as_str();
        let mine = self
            .cache
            .increment(
                &CacheKey::global("mail-to-from", &[p, email.as_str(), requester]),
                1,
                ACCOUNT_WINDOW,
            )
            .await?;
        if mine.value > i64::from(MAILS_PER_REQUESTER) {
            return Ok(false);
        }
        let all = self
            .cache
            .increment(
                &CacheKey::global("mail-to", &[p, email.as_str()]),
                1,
                ACCOUNT_WINDOW,
            )
            .await?;
        Ok(all.value <= i64::from(MAILS_PER_ADDRESS))
    }

    /// Stores the hash of a new one-time code for `email` under the random `id`, replacing
    /// any earlier code (whose attempt counters die with it: they are kept per code id).
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn store_code(
        &self,
        email: &EmailAddress,
        id: &str,
        hash: &str,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.cache
            .set(
                &Self::code_key(email),
                format!("{id}:{hash}").as_bytes(),
                ttl,
            )
            .await
    }

    fn code_key(email: &EmailAddress) -> CacheKey {
        CacheKey::global("login-code", &[email.as_str()])
    }

    /// Checks a presented code's hash from `requester` (the client address): `true` (and the
    /// code is spent, atomically) when it matches. Attempts are counted per code and
    /// requester ([`CODE_TRIES_PER_REQUESTER`], and [`CODE_TRIES_PER_REQUESTER_HOUR`] over every
    /// code), so a stranger's wrong guesses do not kill the owner's code, and per address over
    /// the hour ([`CODE_GUESSES_PER_ADDRESS`] from every requester together): past that the
    /// live code is deleted and every attempt fails until
    /// the window ends, which bounds brute force (see `docs/security.md`).
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn take_code(
        &self,
        email: &EmailAddress,
        requester: &str,
        hash: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let key = Self::code_key(email);
        let Some(stored) = self.cache.get(&key).await? else {
            return Ok(false);
        };
        let stored = String::from_utf8_lossy(&stored).into_owned();
        let Some((id, stored_hash)) = stored.split_once(':') else {
            return Ok(false);
        };
        // The requester's own allowances first: attempts past them never reach the address's
        // budget, so one requester alone cannot spend it.
        for (key, limit, window) in [
            (
                CacheKey::global("login-code-tries", &[email.as_str(), id, requester]),
                CODE_TRIES_PER_REQUESTER,
                ttl,
            ),
            (
                CacheKey::global("login-code-tries-hour", &[email.as_str(), requester]),
                CODE_TRIES_PER_REQUESTER_HOUR,
                ACCOUNT_WINDOW,
            ),
        ] {
            if self.cache.increment(&key, 1, window).await?.value > i64::from(limit) {
                return Ok(false);
            }
        }
        let all = self
            .cache
            .increment(
                &CacheKey::global("login-code-guesses", &[email.as_str()]),
                1,
                ACCOUNT_WINDOW,
            )
            .await?;
        if all.value > i64::from(CODE_GUESSES_PER_ADDRESS) {
            self.cache.delete(&key).await?;
            return Ok(false);
        }
        if stored_hash != hash {
            return Ok(false);
        }
        // One-shot: of concurrent right guesses exactly one takes it.
        Ok(self
            .cache
            .take(&key)
            .await?
            .is_some_and(|v| v == stored.as_bytes()))
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
