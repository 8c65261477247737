//! The cache contract on every adapter: in-process and Redis.

use std::sync::Arc;

use kernel::cache::{Cache, CacheKey};
use memory::InProcessCache;

#[tokio::test]
async fn in_process_cache_meets_the_contract() {
    testkit::contract::cache::run(Arc::new(InProcessCache::new(10_000))).await;
}

#[tokio::test]
async fn redis_cache_meets_the_contract() {
    let Some((cache, _guard)) = testkit::redis_cache().await else {
        return;
    };
    testkit::contract::cache::run(cache).await;
}

#[tokio::test]
async fn redis_prefixes_isolate_deployments() {
    let Some((a, _ga)) = testkit::redis_cache().await else {
        return;
    };
    let Some((b, _gb)) = testkit::redis_cache().await else {
        return;
    };
    let k = CacheKey::global("isolation", &["k"]);
    a.set(&k, b"a", std::time::Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(b.get(&k).await.expect("get"), None);
    assert_eq!(a.purge_prefix().await.expect("purge"), 1);
    assert_eq!(a.get(&k).await.expect("get"), None);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let cache = cache_redis::RedisCache::new("redis://127.0.0.1:1", "x", 1).expect("pool");
    let err = cache.ping().await.expect_err("nothing listens on port 1");
    assert!(matches!(err, kernel::cache::CacheError::Unavailable(_)));
}
