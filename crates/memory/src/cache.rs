//! [`Cache`] in one process: a map under a mutex, with lazy expiry and a size cap.

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

/// The in-process cache. Each operation holds the lock only for a map access, so it is
/// atomic with respect to every other operation of this process.
///
/// Bounded: when `max_entries` is reached, expired entries are swept; if that frees too
/// little, the tenth of entries closest to expiry is evicted.
#[derive(Debug)]
pub struct InProcessCache {
    map: Mutex<HashMap<String, Entry>>,
    max_entries: usize,
}

impl InProcessCache {
    /// An empty cache holding at most `max_entries` (at least 16).
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(16),
        }
    }

    /// Entries held now, expired ones included until swept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more entry.
    fn reserve(&self, map: &mut HashMap<String, Entry>, now: Instant) {
        if map.len() < self.max_entries {
            return;
        }
        map.retain(|_, e| e.expires_at > now);
        if map.len() < self.max_entries {
            return;
        }
        let evict = (self.max_entries / 10).max(1);
        let mut by_expiry: Vec<(Instant, String)> =
            map.iter().map(|(k, e)| (e.expires_at, k.clone())).collect();
        by_expiry.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, k) in by_expiry.into_iter().take(evict) {
            map.remove(&k);
        }
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

    fn insert(
        &self,
        map: &mut HashMap<String, Entry>,
        key: &CacheKey,
        value: Value,
        ttl: Duration,
    ) {
        let now = Instant::now();
        if !map.contains_key(key.as_str()) {
            self.reserve(map, now);
        }
        map.insert(
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
        let mut map = self.lock();
        Ok(Self::live(&mut map, key.as_str(), Instant::now()).map(|e| bytes_of(&e.value)))
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut map = self.lock();
        self.insert(&mut map, key, Value::Bytes(value.to_vec()), ttl);
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &CacheKey,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut map = self.lock();
        if Self::live(&mut map, key.as_str(), Instant::now()).is_some() {
            return Ok(false);
        }
        self.insert(&mut map, key, Value::Bytes(value.to_vec()), ttl);
        Ok(true)
    }

    async fn take(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let mut map = self.lock();
        let now = Instant::now();
        Ok(map
            .remove(key.as_str())
            .filter(|e| e.expires_at > now)
            .map(|e| bytes_of(&e.value)))
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let mut map = self.lock();
        let now = Instant::now();
        Ok(map.remove(key.as_str()).is_some_and(|e| e.expires_at > now))
    }

    async fn increment(
        &self,
        key: &CacheKey,
        by: i64,
        ttl: Duration,
    ) -> Result<Counter, CacheError> {
        let mut map = self.lock();
        let now = Instant::now();
        if let Some(entry) = Self::live(&mut map, key.as_str(), now) {
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
        self.insert(&mut map, key, Value::Counter(by), ttl);
        Ok(Counter { value: by, ttl })
    }

    async fn increment_within(
        &self,
        key: &CacheKey,
        by: i64,
        max: i64,
    ) -> Result<Bounded, CacheError> {
        let mut map = self.lock();
        let now = Instant::now();
        let Some(entry) = Self::live(&mut map, key.as_str(), now) else {
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
}
