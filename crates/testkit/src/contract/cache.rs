//! The [`Cache`] contract.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::TenantId;
use kernel::cache::{Bounded, Cache, CacheError, CacheKey};

const MINUTE: Duration = Duration::from_secs(60);

fn key(part: &str) -> CacheKey {
    CacheKey::global("contract", &[part])
}

/// Runs every case against `cache` (which should be empty of `contract:` keys).
pub async fn run(cache: Arc<dyn Cache>) {
    cache.ping().await.expect("ping");
    get_set_delete(&*cache).await;
    tenant_keys_do_not_collide(&*cache).await;
    values_expire(&*cache).await;
    set_if_absent_is_exclusive(&cache).await;
    take_is_one_shot(&cache).await;
    increment_is_atomic_with_a_fixed_window(&cache).await;
    increment_refuses_non_counters(&*cache).await;
    increment_within_lets_exactly_what_fits(&cache).await;
    leases_count_until_they_end_or_expire(&*cache).await;
    leases_outlive_their_base(&*cache).await;
    concurrent_leases_let_exactly_what_fits(&cache).await;
    purge_tenant_removes_only_its_keys(&*cache).await;
}

/// Erasing a tenant removes its values, counters and leased counters (the leases too: a
/// counter seeded again starts with none), and nothing of another tenant or global.
async fn purge_tenant_removes_only_its_keys(cache: &dyn Cache) {
    let (t1, t2) = (kernel::TenantId::new(), kernel::TenantId::new());
    let value = CacheKey::tenant(t1, "erase", &["value"]);
    let counter = CacheKey::tenant(t1, "erase", &["counter"]);
    let leased = CacheKey::tenant(t1, "erase", &["leased"]);
    let other = CacheKey::tenant(t2, "erase", &["value"]);
    let global = CacheKey::global("erase", &[&t1.to_string()]);
    cache.set(&value, b"v", MINUTE).await.expect("set");
    cache.increment(&counter, 2, MINUTE).await.expect("count");
    assert!(
        cache
            .set_if_absent(&leased, b"0", MINUTE)
            .await
            .expect("seed")
    );
    assert!(matches!(
        cache
            .lease_within(&leased, "a", 5, 10, MINUTE)
            .await
            .expect("lease"),
        Bounded::Added(_)
    ));
    cache.set(&other, b"o", MINUTE).await.expect("set");
    cache.set(&global, b"g", MINUTE).await.expect("set");

    assert!(cache.purge_tenant(t1).await.expect("purge") >= 3);
    assert_eq!(cache.get(&value).await.expect("get"), None);
    assert_eq!(cache.get(&counter).await.expect("get"), None);
    assert_eq!(cache.get(&leased).await.expect("get"), None);
    assert!(
        cache
            .set_if_absent(&leased, b"0", MINUTE)
            .await
            .expect("seed again")
    );
    assert!(
        matches!(
            cache.lease_within(&leased, "b", 10, 10, MINUTE).await.expect("lease"),
            Bounded::Added(c) if c.value == 10
        ),
        "the erased tenant's lease is gone"
    );
    assert_eq!(cache.get(&other).await.expect("get"), Some(b"o".to_vec()));
    assert_eq!(cache.get(&global).await.expect("get"), Some(b"g".to_vec()));
    cache.purge_tenant(t1).await.expect("purge again");
    assert_eq!(
        cache
            .purge_tenant(kernel::TenantId::new())
            .await
            .expect("none"),
        0
    );
}

async fn get_set_delete(cache: &dyn Cache) {
    let k = key("gsd");
    assert_eq!(cache.get(&k).await.expect("get"), None);
    cache.set(&k, b"one", MINUTE).await.expect("set");
    assert_eq!(cache.get(&k).await.expect("get"), Some(b"one".to_vec()));
    cache
        .set(&k, &[0, 159, 146, 150], MINUTE)
        .await
        .expect("overwrite with non-UTF-8");
    assert_eq!(
        cache.get(&k).await.expect("get"),
        Some(vec![0, 159, 146, 150])
    );
    assert!(cache.delete(&k).await.expect("delete"));
    assert!(!cache.delete(&k).await.expect("delete again"));
    assert_eq!(cache.get(&k).await.expect("get"), None);
}

async fn tenant_keys_do_not_collide(cache: &dyn Cache) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let ka = CacheKey::tenant(a, "contract", &["same"]);
    let kb = CacheKey::tenant(b, "contract", &["same"]);
    cache.set(&ka, b"a", MINUTE).await.expect("set a");
    assert_eq!(cache.get(&kb).await.expect("get b"), None);
    assert_eq!(cache.get(&key("same")).await.expect("get global"), None);
    cache.set(&kb, b"b", MINUTE).await.expect("set b");
    assert_eq!(cache.get(&ka).await.expect("get a"), Some(b"a".to_vec()));
}

/// Polls until `key` is gone; values set with a 1 ms TTL must vanish well within 5 s.
async fn wait_gone(cache: &dyn Cache, k: &CacheKey) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get(k).await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "{k} did not expire");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn values_expire(cache: &dyn Cache) {
    let k = key("ttl");
    cache
        .set(&k, b"x", Duration::from_millis(1))
        .await
        .expect("set");
    wait_gone(cache, &k).await;
    // A zero TTL is raised to the floor, never "forever".
    cache
        .set(&k, b"x", Duration::ZERO)
        .await
        .expect("set zero ttl");
    wait_gone(cache, &k).await;
    // Expired values are absent for every operation.
    assert!(!cache.delete(&k).await.expect("delete expired"));
    assert_eq!(cache.take(&k).await.expect("take expired"), None);
}

async fn set_if_absent_is_exclusive(cache: &Arc<dyn Cache>) {
    let k = key("nx");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let cache = Arc::clone(cache);
            let k = k.clone();
            tokio::spawn(async move {
                cache
                    .set_if_absent(&k, i.to_string().as_bytes(), MINUTE)
                    .await
                    .expect("set_if_absent")
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.expect("task") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent set_if_absent wins");
    assert!(
        !cache
            .set_if_absent(&k, b"late", MINUTE)
            .await
            .expect("again")
    );
    // Once expired, the key can be claimed again.
    let short = key("nx-short");
    assert!(
        cache
            .set_if_absent(&short, b"1", Duration::from_millis(1))
            .await
            .expect("nx")
    );
    wait_gone(&**cache, &short).await;
    assert!(
        cache
            .set_if_absent(&short, b"2", MINUTE)
            .await
            .expect("nx after expiry")
    );
}

async fn take_is_one_shot(cache: &Arc<dyn Cache>) {
    let k = key("code");
    cache.set(&k, b"123456", MINUTE).await.expect("set");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = Arc::clone(cache);
            let k = k.clone();
            tokio::spawn(async move { cache.take(&k).await.expect("take") })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(v) = t.await.expect("task") {
            got.push(v);
        }
    }
    assert_eq!(
        got,
        vec![b"123456".to_vec()],
        "exactly one concurrent take gets the value"
    );
    assert_eq!(cache.get(&k).await.expect("get"), None);
}

async fn increment_is_atomic_with_a_fixed_window(cache: &Arc<dyn Cache>) {
    let k = key("counter");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(cache);
            let k = k.clone();
            tokio::spawn(async move { cache.increment(&k, 1, MINUTE).await.expect("increment") })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        let c = t.await.expect("task");
        assert!(c.ttl > Duration::ZERO && c.ttl <= MINUTE, "ttl {:?}", c.ttl);
        assert!(seen.insert(c.value), "value {} returned twice", c.value);
    }
    assert_eq!(seen, (1..=50).collect::<HashSet<i64>>());
    // Later increments do not extend the window.
    let after = cache
        .increment(&k, 5, Duration::from_secs(3600))
        .await
        .expect("increment");
    assert_eq!(after.value, 55);
    assert!(
        after.ttl <= MINUTE,
        "the window must not slide: {:?}",
        after.ttl
    );
    // Negative steps work (releasing a reservation).
    assert_eq!(
        cache.increment(&k, -55, MINUTE).await.expect("dec").value,
        0
    );
    // The counter reads back as its decimal value.
    assert_eq!(cache.get(&k).await.expect("get"), Some(b"0".to_vec()));
    // An expired window starts again from zero.
    let short = key("short-counter");
    cache
        .increment(&short, 7, Duration::from_millis(1))
        .await
        .expect("inc");
    wait_gone(&**cache, &short).await;
    assert_eq!(
        cache.increment(&short, 1, MINUTE).await.expect("inc").value,
        1
    );
}

async fn increment_refuses_non_counters(cache: &dyn Cache) {
    let k = key("not-a-counter");
    cache.set(&k, b"hello", MINUTE).await.expect("set");
    match cache.increment(&k, 1, MINUTE).await {
        Err(CacheError::NotACounter(got)) => assert_eq!(got, k),
        other => panic!("expected NotACounter, got {other:?}"),
    }
    // A decimal string set by `set` counts as a counter on every adapter.
    cache.set(&k, b"41", MINUTE).await.expect("set number");
    assert_eq!(cache.increment(&k, 1, MINUTE).await.expect("inc").value, 42);
}

async fn increment_within_lets_exactly_what_fits(cache: &Arc<dyn Cache>) {
    let k = key("bounded");
    // A missing counter is not created.
    assert_eq!(
        cache.increment_within(&k, 1, 10).await.expect("within"),
        Bounded::Missing
    );
    assert_eq!(cache.get(&k).await.expect("get"), None);
    // Seeded (as billing seeds from its ledger), then 50 concurrent steps of 3 against a
    // bound of 4 + 30: exactly 10 fit.
    assert!(cache.set_if_absent(&k, b"4", MINUTE).await.expect("seed"));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(cache);
            let k = k.clone();
            tokio::spawn(async move { cache.increment_within(&k, 3, 34).await.expect("within") })
        })
        .collect();
    let mut added = HashSet::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Bounded::Added(c) => {
                assert!(c.ttl > Duration::ZERO && c.ttl <= MINUTE, "ttl {:?}", c.ttl);
                assert!(added.insert(c.value), "value {} returned twice", c.value);
            }
            Bounded::Refused(c) => {
                assert_eq!(c.value, 34, "a refusal reports the counter as it is");
                refused += 1;
            }
            Bounded::Missing => panic!("the counter was seeded"),
        }
    }
    assert_eq!(added, (1..=10).map(|i| 4 + 3 * i).collect::<HashSet<i64>>());
    assert_eq!(refused, 40);
    // Giving back makes room again; a negative step is never refused.
    assert!(matches!(
        cache.increment_within(&k, -6, 34).await.expect("within"),
        Bounded::Added(c) if c.value == 28
    ));
    assert!(matches!(
        cache.increment_within(&k, 6, 34).await.expect("within"),
        Bounded::Added(c) if c.value == 34
    ));
    // A counter driven below zero counts as zero.
    let neg = key("bounded-negative");
    cache.increment(&neg, -5, MINUTE).await.expect("dec");
    assert!(matches!(
        cache.increment_within(&neg, 2, 2).await.expect("within"),
        Bounded::Added(c) if c.value == 2
    ));
    // Not a counter.
    let text = key("bounded-text");
    cache.set(&text, b"hello", MINUTE).await.expect("set");
    assert!(matches!(
        cache.increment_within(&text, 1, 10).await,
        Err(CacheError::NotACounter(_))
    ));
}

async fn leases_count_until_they_end_or_expire(cache: &dyn Cache) {
    let k = key("leased");
    assert_eq!(
        cache
            .lease_within(&k, "a", 1, 10, MINUTE)
            .await
            .expect("lease"),
        Bounded::Missing,
        "no base, no lease"
    );
    assert!(cache.set_if_absent(&k, b"3", MINUTE).await.expect("seed"));
    assert!(matches!(
        cache.lease_within(&k, "a", 4, 10, MINUTE).await.expect("lease"),
        Bounded::Added(c) if c.value == 7
    ));
    assert!(matches!(
        cache.lease_within(&k, "b", 4, 10, MINUTE).await.expect("lease"),
        Bounded::Refused(c) if c.value == 7
    ));
    // Holding a held lease renews it, whatever the bound.
    assert!(matches!(
        cache.lease_within(&k, "a", 4, 0, MINUTE).await.expect("renew"),
        Bounded::Added(c) if c.value == 7
    ));
    // A short lease counts, then stops counting when it expires.
    assert!(matches!(
        cache
            .lease_within(&k, "short", 2, 10, Duration::from_millis(50))
            .await
            .expect("lease"),
        Bounded::Added(c) if c.value == 9
    ));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(
        cache.lease_within(&k, "c", 3, 10, MINUTE).await.expect("lease"),
        Bounded::Added(c) if c.value == 10
    ));
    assert!(
        !cache
            .end_lease(&k, "short", 0)
            .await
            .expect("expired lease")
    );
    // Ending a lease moves what it settles into the base, once.
    assert!(cache.end_lease(&k, "a", 2).await.expect("end"));
    assert!(!cache.end_lease(&k, "a", 0).await.expect("ended twice"));
    assert!(matches!(
        cache.lease_within(&k, "d", 3, 10, MINUTE).await.expect("lease"),
        Bounded::Refused(c) if c.value == 3 + 2 + 3
    ));
    assert!(matches!(
        cache.lease_within(&k, "d", 2, 10, MINUTE).await.expect("lease"),
        Bounded::Added(c) if c.value == 10
    ));
    assert_eq!(cache.get(&k).await.expect("base"), Some(b"5".to_vec()));
}

async fn leases_outlive_their_base(cache: &dyn Cache) {
    let k = key("leased-base");
    assert!(
        cache
            .set_if_absent(&k, b"1", Duration::from_millis(50))
            .await
            .expect("seed")
    );
    assert!(matches!(
        cache.lease_within(&k, "a", 5, 10, MINUTE).await.expect("lease"),
        Bounded::Added(c) if c.value == 6
    ));
    wait_gone(cache, &k).await;
    assert_eq!(
        cache
            .lease_within(&k, "b", 1, 10, MINUTE)
            .await
            .expect("lease"),
        Bounded::Missing
    );
    // Rebuilt: the lease in flight still counts.
    assert!(cache.set_if_absent(&k, b"4", MINUTE).await.expect("reseed"));
    assert!(matches!(
        cache.lease_within(&k, "b", 2, 10, MINUTE).await.expect("lease"),
        Bounded::Refused(c) if c.value == 9
    ));
    // With no base, ending a lease adds nothing and still ends it.
    assert!(cache.delete(&k).await.expect("delete"));
    assert!(cache.end_lease(&k, "a", 5).await.expect("end"));
    assert!(cache.set_if_absent(&k, b"0", MINUTE).await.expect("reseed"));
    assert!(matches!(
        cache.lease_within(&k, "b", 10, 10, MINUTE).await.expect("lease"),
        Bounded::Added(c) if c.value == 10
    ));
}

async fn concurrent_leases_let_exactly_what_fits(cache: &Arc<dyn Cache>) {
    let k = key("leased-race");
    assert!(cache.set_if_absent(&k, b"0", MINUTE).await.expect("seed"));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let cache = Arc::clone(cache);
            let k = k.clone();
            tokio::spawn(async move {
                cache
                    .lease_within(&k, &format!("l{i}"), 3, 34, MINUTE)
                    .await
                    .expect("lease")
            })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), Bounded::Added(_)) {
            added += 1;
        }
    }
    assert_eq!(added, 11, "34 / 3 leases fit");
}
