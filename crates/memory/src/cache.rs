//! [`Cache`] in one process: a map under a mutex, with lazy expiry and a size cap on plain
//! values (counters and leases are never evicted before they expire).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kernel::cache::{Bounded, Cache, CacheError, CacheKey, Counter, effective_ttl};
use kernel::health::HealthCheck;

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    Counter(i64),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at: Instant,
}

/// The leases of one leased counter: amount and expiry by lease id.
type Leases = HashMap<String, (i64, Instant)>;

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Leases by counter key, apart from the base (they outlive it).
    leases: HashMap<String, Leases>,
}

/// The in-process cache. Each operation holds the lock only for a map access, so it is
/// atomic with respect to every other operation of this process.
///
/// Bounded: when `max_entries` is reached, expired entries are swept; if that frees too
/// little, the tenth of plain values (bytes) closest to expiry is evicted. Counters (rate-limit
/// windows, throttles) and leases (quota reservations, stream slots) are never evicted before
/// they expire, so pressure on the cache cannot reset a security counter: their number is
/// bounded by what creates them within their windows (requests per rate window, organizations,
/// calls in flight), not by `max_entries`.
#[derive(Debug)]
pub struct InProcessCache {
    inner: Mutex<Inner>,
    max_entries: usize,
}

impl InProcessCache {
    /// An empty cache holding at most `max_entries` (at least 16).
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(16),
        }
    }

    /// Entries held now, expired ones included until swept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more entry: sweeps what expired, then evicts the tenth of plain
    /// values closest to expiry. Counters are never evicted (see the type's documentation).
    fn reserve(&self, inner: &mut Inner, now: Instant) {
        if inner.map.len() < self.max_entries {
            return;
        }
        inner.map.retain(|_, e| e.expires_at > now);
        inner.leases.retain(|_, set| {
            set.retain(|_, (_, until)| *until > now);
            !set.is_empty()
        });
        if inner.map.len() < self.max_entries {
            return;
        }
        let mut plain: Vec<(Instant, String)> = inner
            .map
            .iter()
            .filter(|(_, e)| matches!(e.value, Value::Bytes(_)))
            .map(|(k, e)| (e.expires_at, k.clone()))
            .collect();
        let evict = (self.max_entries / 10).max(1).min(plain.len());
        if evict == 0 {
            return;
        }
        plain.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, k) in plain.into_iter().take(evict) {
            inner.map.remove(&k);
        }
    }

    /// The sum of `key`'s live leases (expired ones are removed) and the amount of `lease`
    /// when it is held.
    fn live_leases(inner: &mut Inner, key: &str, lease: &str, now: Instant) -> (i64, Option<i64>) {
        let Some(set) = inner.leases.get_mut(key) else {
            return (0, None);
        };
        set.retain(|_, (_, until)| *until > now);
        let total = set
            .values()
            .map(|(amount, _)| *amount)
            .fold(0i64, i64::saturating_add);
        let held = set.get(lease).map(|(amount, _)| *amount);
        if set.is_empty() {
            inner.leases.remove(key);
        }
        (total, held)
    }

    /// The live entry under `key`, removing it if it expired.
    fn live<'m>(
        map: &'m mut HashMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Option<&'m mut Entry> {
        if map.get(key).is_some_and(|e| e.expires_at <= now) {
            map.remove(key);
        }
        map.get_mut(key)
    }

    fn insert(&self, inner: &mut Inner, key: &CacheKey, value: Value, ttl: Duration) {
        let now = Instant::now();
        if !inner.map.contains_key(key.as_str()) {
            self.reserve(inner, now);
        }
        inner.map.insert(
            key.as_str().to_owned(),
            Entry {
                value,
                expires_at: now + effective_ttl(ttl),
            },
        );
    }
}

/// The value as a counter: a counter, or bytes that spell an integer (as Redis reads them).
fn counter_of(value: &Value) -> Option<i64> {
    match value {
        Value::Counter(n) => Some(*n),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse::<i64>().ok(),
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.clone(),
        Value::Counter(n) => n.to_string().into_bytes(),
    }
}

#[async_trait]
impl Cache for InProcessCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let mut inner = self.lock();
        Ok(Self::live(&mut inner.map, key.as_str(), Instant::now()).map(|e| bytes_of(&e.value)))
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut inner = self.lock();
        self.insert(&mut inner, key, Value::Bytes(value.to_vec()), ttl);
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &CacheKey,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        if Self::live(&mut inner.map, key.as_str(), Instant::now()).is_some() {
            return Ok(false);
        }
        self.insert(&mut inner, key, Value::Bytes(value.to_vec()), ttl);
        Ok(true)
    }

    async fn take(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        Ok(inner
            .map
            .remove(key.as_str())
            .filter(|e| e.expires_at > now)
            .map(|e| bytes_of(&e.value)))
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        Ok(inner
            .map
            .remove(key.as_str())
            .is_some_and(|e| e.expires_at > now))
    }

    async fn purge_tenant(&self, tenant: kernel::TenantId) -> Result<u64, CacheError> {
        let prefix = CacheKey::tenant_prefix(tenant);
        let mut inner = self.lock();
        let before = inner.map.len() + inner.leases.len();
        inner.map.retain(|k, _| !k.starts_with(&prefix));
        inner.leases.retain(|k, _| !k.starts_with(&prefix));
        Ok((before - inner.map.len() - inner.leases.len()) as u64)
    }

    async fn increment(
        &self,
        key: &CacheKey,
        by: i64,
        ttl: Duration,
    ) -> Result<Counter, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(entry) = Self::live(&mut inner.map, key.as_str(), now) {
            let current =
                counter_of(&entry.value).ok_or_else(|| CacheError::NotACounter(key.clone()))?;
            let value = current.saturating_add(by);
            entry.value = Value::Counter(value);
            return Ok(Counter {
                value,
                ttl: entry.expires_at.saturating_duration_since(now),
            });
        }
        let ttl = effective_ttl(ttl);
        self.insert(&mut inner, key, Value::Counter(by), ttl);
        Ok(Counter { value: by, ttl })
    }

    async fn increment_within(
        &self,
        key: &CacheKey,
        by: i64,
        max: i64,
    ) -> Result<Bounded, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let Some(entry) = Self::live(&mut inner.map, key.as_str(), now) else {
            return Ok(Bounded::Missing);
        };
        let current =
            counter_of(&entry.value).ok_or_else(|| CacheError::NotACounter(key.clone()))?;
        let current = current.max(0);
        let ttl = entry.expires_at.saturating_duration_since(now);
        let next = current.saturating_add(by);
        if next > max {
            return Ok(Bounded::Refused(Counter {
                value: current,
                ttl,
            }));
        }
        entry.value = Value::Counter(next);
        Ok(Bounded::Added(Counter { value: next, ttl }))
    }

    async fn lease_within(
        &self,
        key: &CacheKey,
        lease: &str,
        amount: i64,
        max: i64,
        ttl: Duration,
    ) -> Result<Bounded, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let Some(entry) = Self::live(&mut inner.map, key.as_str(), now) else {
            return Ok(Bounded::Missing);
        };
        let base = counter_of(&entry.value)
            .ok_or_else(|| CacheError::NotACounter(key.clone()))?
            .max(0);
        let base_ttl = entry.expires_at.saturating_duration_since(now);
        let (leased, held) = Self::live_leases(&mut inner, key.as_str(), lease, now);
        let total = base.saturating_add(leased);
        let until = now + effective_ttl(ttl);
        if let Some(held) = held {
            inner
                .leases
                .entry(key.as_str().to_owned())
                .or_default()
                .insert(lease.to_owned(), (held, until));
            return Ok(Bounded::Added(Counter {
                value: total,
                ttl: base_ttl,
            }));
        }
        let next = total.saturating_add(amount);
        if next > max {
            return Ok(Bounded::Refused(Counter {
                value: total,
                ttl: base_ttl,
            }));
        }
        inner
            .leases
            .entry(key.as_str().to_owned())
            .or_default()
            .insert(lease.to_owned(), (amount, until));
        Ok(Bounded::Added(Counter {
            value: next,
            ttl: base_ttl,
        }))
    }

    async fn end_lease(&self, key: &CacheKey, lease: &str, add: i64) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let (_, held) = Self::live_leases(&mut inner, key.as_str(), lease, now);
        if let Some(set) = inner.leases.get_mut(key.as_str()) {
            set.remove(lease);
            if set.is_empty() {
                inner.leases.remove(key.as_str());
            }
        }
        if let Some(entry) = Self::live(&mut inner.map, key.as_str(), now) {
            let base = counter_of(&entry.value)
                .ok_or_else(|| CacheError::NotACounter(key.clone()))?
                .max(0);
            if add != 0 {
                entry.value = Value::Counter(base.saturating_add(add));
            }
        }
        Ok(held.is_some())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for InProcessCache {
    fn component(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_size_cap_holds() {
        let cache = InProcessCache::new(100);
        for i in 0..1_000 {
            let key = CacheKey::global("t", &[&i.to_string()]);
            cache
                .set(&key, b"x", Duration::from_secs(60))
                .await
                .expect("set");
            assert!(cache.len() <= 100, "cap exceeded at {i}");
        }
        let newest = CacheKey::global("t", &["999"]);
        assert_eq!(cache.get(&newest).await.expect("get"), Some(b"x".to_vec()));
    }

    #[tokio::test]
    async fn pressure_evicts_plain_values_never_counters_or_leases() {
        let cache = InProcessCache::new(16);
        let counter = CacheKey::global("c", &["window"]);
        let leased = CacheKey::global("c", &["quota"]);
        // The counters expire first: an eviction by expiry alone would take them.
        cache
            .increment(&counter, 5, Duration::from_secs(1))
            .await
            .expect("increment");
        cache
            .set_if_absent(&leased, b"0", Duration::from_secs(1))
            .await
            .expect("seed");
        cache
            .lease_within(&leased, "a", 7, 10, Duration::from_secs(1))
            .await
            .expect("lease");
        for i in 0..1_000 {
            let key = CacheKey::global("t", &[&i.to_string()]);
            cache
                .set(&key, b"x", Duration::from_secs(60))
                .await
                .expect("set");
        }
        let after = cache
            .increment(&counter, 1, Duration::from_secs(1))
            .await
            .expect("increment");
        assert_eq!(after.value, 6, "the counter survived the pressure");
        // The base may go (it is rebuilt), the lease may not.
        cache
            .set_if_absent(&leased, b"0", Duration::from_secs(1))
            .await
            .expect("seed");
        assert!(matches!(
            cache
                .lease_within(&leased, "b", 4, 10, Duration::from_secs(1))
                .await
                .expect("lease"),
            Bounded::Refused(c) if c.value == 7
        ));
        assert!(cache.len() <= 17);
    }
}
