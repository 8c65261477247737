//! [`Cache`] on Redis (deadpool-redis): shared by every server process.
//!
//! Every key is `{prefix}:{CacheKey}`. Counters use a Lua script so that increment and expiry
//! are one atomic step; one-shot reads use `GETDEL`; `set_if_absent` is `SET NX PX`. Each call
//! is bounded by a timeout so a stalled Redis turns into [`CacheError::Unavailable`], not a hang.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands as _, Script};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};
use kernel::cache::{Bounded, Cache, CacheError, CacheKey, Counter, effective_ttl};
use kernel::health::{HealthCheck, Outage, PoolStats};

/// How long one Redis call may take.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// `INCRBY` and, on a key without expiry, `PEXPIRE`, atomically. Returns `{value, pttl}`.
const INCREMENT_LUA: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {v, ttl}
";

/// Adds `ARGV[1]` to an existing counter only if the result stays at most `ARGV[2]`, keeping
/// its expiry; a negative counter counts as 0. Returns `{status, value, pttl}`: status 1 added,
/// 0 refused, -1 missing.
const INCREMENT_WITHIN_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return {-1, 0, 0}
end
local n = tonumber(v)
if not n or n ~= math.floor(n) then
  return redis.error_reply('value is not an integer')
end
if n < 0 then
  n = 0
end
local ttl = redis.call('PTTL', KEYS[1])
local next = n + tonumber(ARGV[1])
if next > tonumber(ARGV[2]) then
  return {0, n, ttl}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'KEEPTTL')
return {1, next, ttl}
";

/// A lease of a leased counter: the base is `KEYS[1]`, its leases a hash `KEYS[2]` of
/// `id → "amount:expires_ms"` (Redis' clock) with an expiry at least its longest lease's.
/// ARGV: lease id, amount, max, ttl in ms. Expired leases are removed; a held lease is renewed.
/// Returns `{status, value, pttl of the base}`: status 1 added or renewed, 0 refused, -1 no base.
const LEASE_WITHIN_LUA: &str = r"
local base = redis.call('GET', KEYS[1])
if not base then
  return {-1, 0, 0}
end
local n = tonumber(base)
if not n or n ~= math.floor(n) then
  return redis.error_reply('value is not an integer')
end
if n < 0 then
  n = 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
local total = n
local held = nil
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  local amount = tonumber(string.sub(v, 1, sep - 1))
  local expires = tonumber(string.sub(v, sep + 1))
  if expires <= now then
    redis.call('HDEL', KEYS[2], all[i])
  else
    total = total + amount
    if all[i] == ARGV[1] then
      held = amount
    end
  end
end
local pttl = redis.call('PTTL', KEYS[1])
local amount = held
if not amount then
  amount = tonumber(ARGV[2])
  if total + amount > tonumber(ARGV[3]) then
    return {0, total, pttl}
  end
  total = total + amount
end
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d:%d', amount, now + ttl))
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {1, total, pttl}
";

/// Ends lease `ARGV[1]` (hash `KEYS[2]`) and adds `ARGV[2]` to the base `KEYS[1]` if there is
/// one, keeping its expiry. Returns 1 when the lease was held and live, else 0.
const END_LEASE_LUA: &str = r"
local v = redis.call('HGET', KEYS[2], ARGV[1])
local held = 0
if v then
  redis.call('HDEL', KEYS[2], ARGV[1])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local sep = string.find(v, ':', 1, true)
  if tonumber(string.sub(v, sep + 1)) > now then
    held = 1
  end
end
local add = tonumber(ARGV[2])
if add ~= 0 then
  local base = redis.call('GET', KEYS[1])
  if base then
    local n = tonumber(base)
    if not n or n ~= math.floor(n) then
      return redis.error_reply('value is not an integer')
    end
    if n < 0 then
      n = 0
    end
    redis.call('SET', KEYS[1], string.format('%d', n + add), 'KEEPTTL')
  end
end
return held
";

/// The Redis cache.
pub struct RedisCache {
    pool: Pool,
    prefix: String,
    max_size: usize,
    increment: Script,
    increment_within: Script,
    lease_within: Script,
    end_lease: Script,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// Reads the `{status, value, pttl}` answer of the bounded scripts (`increment_within`,
/// `lease_within`): status 1 added, 0 refused, anything else no base.
fn bounded(
    result: redis::RedisResult<(i64, i64, i64)>,
    key: &CacheKey,
    what: &'static str,
) -> Result<Bounded, CacheError> {
    match result {
        Ok((status, value, pttl)) => {
            let counter = Counter {
                value,
                ttl: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
            };
            Ok(match status {
                1 => Bounded::Added(counter),
                0 => Bounded::Refused(counter),
                _ => Bounded::Missing,
            })
        }
        Err(e) if e.to_string().contains("not an integer") => {
            Err(CacheError::NotACounter(key.clone()))
        }
        Err(e) => Err(unavailable(anyhow::Error::new(e).context(what))),
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> CacheError {
    CacheError::Unavailable(e.into())
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(effective_ttl(ttl).as_millis()).unwrap_or(u64::MAX)
}

impl RedisCache {
    /// A pool of up to `pool_size` connections to `url`; keys are written under `prefix`.
    /// Connections are made lazily: call [`Cache::ping`] to check reachability.
    ///
    /// # Errors
    /// When the URL is malformed.
    pub fn new(url: &str, prefix: &str, pool_size: usize) -> anyhow::Result<Self> {
        let mut cfg = Config::from_url(url);
        let max_size = pool_size.max(1);
        cfg.pool = Some(PoolConfig {
            max_size,
            timeouts: Timeouts {
                wait: Some(OP_TIMEOUT),
                create: Some(OP_TIMEOUT),
                recycle: Some(OP_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .context("creating the Redis pool (is the URL valid?)")?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            max_size,
            increment: Script::new(INCREMENT_LUA),
            increment_within: Script::new(INCREMENT_WITHIN_LUA),
            lease_within: Script::new(LEASE_WITHIN_LUA),
            end_lease: Script::new(END_LEASE_LUA),
        })
    }

    fn key(&self, key: &CacheKey) -> String {
        format!("{}:{}", self.prefix, key.as_str())
    }

    /// The hash holding the leases of the leased counter `key`. It never collides with
    /// another key: a [`CacheKey`] writes `%` only as `%25` or `%3A`.
    fn leases_key(&self, key: &CacheKey) -> String {
        format!("{}:{}%leases", self.prefix, key.as_str())
    }

    async fn conn(&self) -> Result<Connection, CacheError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Runs one Redis call under [`OP_TIMEOUT`].
    async fn run<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(anyhow::Error::new(e).context(what))),
            Err(_) => Err(unavailable(anyhow::anyhow!("redis {what}: timed out"))),
        }
    }

    /// Deletes every key under this cache's prefix (test clean-up). Returns how many.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn purge_prefix(&self) -> Result<u64, CacheError> {
        self.purge_matching(&format!("{}:*", glob_escape(&self.prefix)))
            .await
    }

    /// Deletes every key matching the glob `pattern` (SCAN, then DEL in batches).
    async fn purge_matching(&self, pattern: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn().await?;
        let pattern = pattern.to_owned();
        let keys: Vec<String> = self
            .run("scan", async {
                let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(&pattern).await?;
                let mut keys = Vec::new();
                while let Some(k) = iter.next_item().await {
                    keys.push(k?);
                }
                Ok(keys)
            })
            .await?;
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            removed += self.run("del", conn.del::<_, u64>(chunk)).await?;
        }
        Ok(removed)
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn().await?;
        self.run("get", conn.get(self.key(key))).await
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        self.run("set", conn.pset_ex(self.key(key), value, millis(ttl)))
            .await
    }

    async fn set_if_absent(
        &self,
        key: &CacheKey,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut conn = self.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let stored: Option<String> = self.run("set nx", cmd.query_async(&mut conn)).await?;
        Ok(stored.is_some())
    }

    async fn take(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn().await?;
        self.run("getdel", conn.get_del(self.key(key))).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let mut conn = self.conn().await?;
        let n: u64 = self.run("del", conn.del(self.key(key))).await?;
        Ok(n > 0)
    }

    async fn purge_tenant(&self, tenant: kernel::TenantId) -> Result<u64, CacheError> {
        self.purge_matching(&format!(
            "{}:{}*",
            glob_escape(&self.prefix),
            glob_escape(&CacheKey::tenant_prefix(tenant))
        ))
        .await
    }

    async fn increment(
        &self,
        key: &CacheKey,
        by: i64,
        ttl: Duration,
    ) -> Result<Counter, CacheError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.increment.key(self.key(key));
        invocation.arg(by).arg(millis(ttl));
        let result: redis::RedisResult<(i64, i64)> =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| unavailable(anyhow::anyhow!("redis increment: timed out")))?;
        match result {
            Ok((value, pttl)) => Ok(Counter {
                value,
                ttl: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
            }),
            Err(e) if e.to_string().contains("not an integer") => {
                Err(CacheError::NotACounter(key.clone()))
            }
            Err(e) => Err(unavailable(anyhow::Error::new(e).context("increment"))),
        }
    }

    async fn increment_within(
        &self,
        key: &CacheKey,
        by: i64,
        max: i64,
    ) -> Result<Bounded, CacheError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.increment_within.key(self.key(key));
        invocation.arg(by).arg(max);
        let result: redis::RedisResult<(i64, i64, i64)> =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| unavailable(anyhow::anyhow!("redis increment_within: timed out")))?;
        bounded(result, key, "increment_within")
    }

    async fn lease_within(
        &self,
        key: &CacheKey,
        lease: &str,
        amount: i64,
        max: i64,
        ttl: Duration,
    ) -> Result<Bounded, CacheError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.lease_within.key(self.key(key));
        invocation
            .key(self.leases_key(key))
            .arg(lease)
            .arg(amount)
            .arg(max)
            .arg(millis(ttl));
        let result: redis::RedisResult<(i64, i64, i64)> =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| unavailable(anyhow::anyhow!("redis lease_within: timed out")))?;
        bounded(result, key, "lease_within")
    }

    async fn end_lease(&self, key: &CacheKey, lease: &str, add: i64) -> Result<bool, CacheError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.end_lease.key(self.key(key));
        invocation.key(self.leases_key(key)).arg(lease).arg(add);
        let result: redis::RedisResult<i64> =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| unavailable(anyhow::anyhow!("redis end_lease: timed out")))?;
        match result {
            Ok(held) => Ok(held == 1),
            Err(e) if e.to_string().contains("not an integer") => {
                Err(CacheError::NotACounter(key.clone()))
            }
            Err(e) => Err(unavailable(anyhow::Error::new(e).context("end_lease"))),
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let pong: String = self
            .run("ping", redis::cmd("PING").query_async(&mut conn))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(anyhow::anyhow!(
                "redis answered {pong:?} to PING"
            )))
        }
    }
}

#[async_trait]
impl HealthCheck for RedisCache {
    fn component(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.ping().await.map_err(anyhow::Error::new)
    }

    fn explains(&self, error: &(dyn std::error::Error + 'static)) -> Option<Outage> {
        kernel::health::chain(error)
            .any(|e| {
                matches!(
                    e.downcast_ref::<CacheError>(),
                    Some(CacheError::Unavailable(_))
                )
            })
            .then_some(Outage::Down)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let status = self.pool.status();
        Some(PoolStats {
            size: u32::try_from(status.size).unwrap_or(u32::MAX),
            idle: u32::try_from(status.available).unwrap_or(u32::MAX),
            max: u32::try_from(status.max_size).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_url() {
        let cache = RedisCache::new("redis://:hunter2@127.0.0.1:6379", "quire", 2).expect("pool");
        assert!(!format!("{cache:?}").contains("hunter2"));
    }

    #[test]
    fn glob_characters_in_the_prefix_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
