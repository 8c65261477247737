//! The cache/coordination port: key-value with TTL, atomic counters (rate limits, quotas) and
//! one-shot values (login codes, reset tokens), shared by every server process.
//!
//! Keys are built only through [`CacheKey`], which namespaces them and puts the tenant in every
//! key that holds tenant data. Adapters add a deployment-wide prefix (`quire:` by default, a
//! random one per test).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::id::TenantId;

/// A namespaced cache key, without the deployment prefix.
///
/// Global keys read `{namespace}:{part}:…`; tenant keys read `t:{tenant}:{namespace}:{part}:…`,
/// so one tenant's entries can never be addressed through another tenant's key. `:` and `%`
/// inside a part are percent-escaped, so parts cannot forge a key of another shape.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// A key for data that belongs to no tenant (per-IP throttles, login codes by email).
    ///
    /// `namespace` is a fixed lower-case word chosen in code (`ratelimit`, `login-code`).
    #[must_use]
    pub fn global(namespace: &'static str, parts: &[&str]) -> Self {
        Self::build(None, namespace, parts)
    }

    /// A key for data of one tenant (memberships, quotas, per-tenant limits).
    #[must_use]
    pub fn tenant(tenant: TenantId, namespace: &'static str, parts: &[&str]) -> Self {
        Self::build(Some(tenant), namespace, parts)
    }

    fn build(tenant: Option<TenantId>, namespace: &'static str, parts: &[&str]) -> Self {
        debug_assert!(
            !namespace.is_empty()
                && namespace.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'),
            "cache namespaces are fixed lower-case words"
        );
        let mut key = String::with_capacity(64);
        if let Some(t) = tenant {
            key.push_str("t:");
            key.push_str(&t.to_string());
            key.push(':');
        }
        key.push_str(namespace);
        for part in parts {
            key.push(':');
            for c in part.chars() {
                match c {
                    '%' => key.push_str("%25"),
                    ':' => key.push_str("%3A"),
                    c => key.push(c),
                }
            }
        }
        Self(key)
    }

    /// What every key of `tenant` starts with (without the deployment prefix).
    #[must_use]
    pub fn tenant_prefix(tenant: TenantId) -> String {
        format!("t:{tenant}:")
    }

    /// The key as a string (without the deployment prefix).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A counter after an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The value after the increment.
    pub value: i64,
    /// Time until the counter (its window) expires.
    pub ttl: Duration,
}

/// The outcome of [`Cache::increment_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounded {
    /// Added; the counter after it.
    Added(Counter),
    /// Not added: it would have passed the bound. The counter as it is.
    Refused(Counter),
    /// No counter under the key: nothing was done (seed it with [`Cache::set_if_absent`]
    /// and ask again).
    Missing,
}

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The value under the key is not a counter.
    #[error("the value under {0} is not a counter")]
    NotACounter(CacheKey),
    /// The cache could not be reached or answered with an error.
    #[error("cache unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Key-value storage with expiry and atomic operations, shared by all server processes.
///
/// Every TTL is at least one millisecond (a zero TTL is raised to that). Values are opaque
/// bytes; counters are integers stored by [`Cache::increment`].
///
/// Counters and leases are security state (rate-limit windows, throttles, quotas, stream
/// slots): an adapter never drops one before it expires, whatever its memory pressure; only
/// plain values (set with [`Cache::set`] and [`Cache::set_if_absent`]) may be evicted early.
///
/// # Errors
/// Every method returns [`CacheError::Unavailable`] when the backing store fails; callers
/// decide whether to fail closed (rate limits on auth) or open.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key` for `ttl`, replacing any value.
    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Stores `value` only if `key` is absent; `true` when it was stored. Atomic across
    /// processes: of concurrent callers exactly one gets `true`.
    async fn set_if_absent(
        &self,
        key: &CacheKey,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError>;

    /// Reads and removes the value under `key` in one step: of concurrent callers at most one
    /// gets it (one-shot codes and tokens).
    async fn take(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError>;

    /// Removes `key`; `true` when something was removed.
    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError>;

    /// Removes every key of `tenant` ([`CacheKey::tenant`]), counters and leases included
    /// (erasing an organization); returns how many.
    async fn purge_tenant(&self, tenant: TenantId) -> Result<u64, CacheError>;

    /// Adds `by` to the counter under `key`, atomically. A missing counter starts at 0 and
    /// expires after `ttl`; later increments do not extend it (a fixed window).
    ///
    /// # Errors
    /// Also [`CacheError::NotACounter`] when the key holds a non-integer value.
    async fn increment(
        &self,
        key: &CacheKey,
        by: i64,
        ttl: Duration,
    ) -> Result<Counter, CacheError>;

    /// Adds `by` to the existing counter under `key` only if the result stays at most `max`,
    /// atomically across processes: of concurrent callers, exactly as many are let through
    /// as fit. A negative counter counts as 0 (a release that outlived its window). The
    /// counter keeps its expiry. Quotas and concurrency caps are built on this.
    ///
    /// # Errors
    /// Also [`CacheError::NotACounter`] when the key holds a non-integer value.
    async fn increment_within(
        &self,
        key: &CacheKey,
        by: i64,
        max: i64,
    ) -> Result<Bounded, CacheError>;

    /// Holds `amount` under the lease `lease` of the leased counter `key`, atomically across
    /// processes, only if the counter stays at most `max`. A leased counter is a base (an
    /// integer seeded with [`Cache::set_if_absent`], with its own expiry) plus every live
    /// lease; the leases are kept apart from the base, so they outlive a base that expires and
    /// is seeded again (rebuilt). A lease lives for `ttl`; holding a lease that is already
    /// held renews it (its amount unchanged, `Added` whatever `max` says). Expired leases stop
    /// counting. [`Bounded::Missing`] when the base is absent: nothing was done.
    ///
    /// # Errors
    /// Also [`CacheError::NotACounter`] when the base is not an integer.
    async fn lease_within(
        &self,
        key: &CacheKey,
        lease: &str,
        amount: i64,
        max: i64,
        ttl: Duration,
    ) -> Result<Bounded, CacheError>;

    /// Ends the lease `lease` of the leased counter `key` and adds `add` to its base, in one
    /// atomic step; `true` when the lease was held (and live). With no base, the lease is
    /// ended and nothing is added.
    ///
    /// # Errors
    /// Also [`CacheError::NotACounter`] when the base is not an integer.
    async fn end_lease(&self, key: &CacheKey, lease: &str, add: i64) -> Result<bool, CacheError>;

    /// Answers when the cache is reachable.
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Raises a TTL to the one-millisecond floor every adapter applies.
#[must_use]
pub fn effective_ttl(ttl: Duration) -> Duration {
    ttl.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_tenant_scoped() {
        let t = TenantId::new();
        assert_eq!(
            CacheKey::global("ratelimit", &["ip", "1.2.3.4"]).as_str(),
            "ratelimit:ip:1.2.3.4"
        );
        assert_eq!(
            CacheKey::tenant(t, "membership", &["u1"]).as_str(),
            format!("t:{t}:membership:u1")
        );
    }

    #[test]
    fn parts_cannot_forge_other_keys() {
        let forged = CacheKey::global("ratelimit", &["ip:::1"]);
        assert_eq!(forged.as_str(), "ratelimit:ip%3A%3A%3A1");
        assert_ne!(
            CacheKey::global("a", &["b:c"]),
            CacheKey::global("a", &["b", "c"])
        );
        assert_ne!(
            CacheKey::global("a", &["%3A"]),
            CacheKey::global("a", &[":"])
        );
    }
}
