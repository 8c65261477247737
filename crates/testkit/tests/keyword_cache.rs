//! The in-process keyword cache of SQLite (`store_sql::KeywordCacheConfig`) against the SQL
//! path over the same database: random scopes and queries give the same top k with the same
//! scores; another tenant's chunks never appear nor move a score; a deleted document's chunks
//! vanish and a stored chunk appears at the next search; searches racing a load answer
//! exactly; allow lists filter after the statistics.

use std::collections::HashSet;

use documents::{CollectionId, DocumentId};
use kernel::TenantId;
use retrieval::{Candidate, KeywordIndex as _};
use store_sql::{KeywordCacheConfig, SqlStore};
use testkit::contract::documents::{at_ms, two_tenants};
use testkit::contract::retrieval::{RetrievalPorts, new_collection, store_document};

/// xorshift64*: seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).expect("n")).expect("fits")
    }
    /// Skewed towards small indexes (a few words are common, most rare).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        let c = self.below(n);
        a.min(b).min(c)
    }
}

/// Words of the test texts: ASCII, mixed case, and some with diacritics (folded alike).
fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    words.extend(
        [
            "Café", "cafe", "ÉCOLE", "naïve", "Zürich", "plan", "PLAN", "x1", "über", "año",
        ]
        .iter()
        .map(|w| (*w).to_owned()),
    );
    words
}

/// A text of skewed words; `the` in half the texts and `and` in a quarter (common words,
/// left out of a query that has a rarer one).
fn text(rng: &mut Rng, vocabulary: &[String]) -> String {
    let n = 3 + rng.below(12);
    let mut words: Vec<String> = (0..n)
        .map(|_| vocabulary[rng.skewed(vocabulary.len())].clone())
        .collect();
    if rng.below(2) == 0 {
        words.push("The".to_owned());
    }
    if rng.below(4) == 0 {
        words.push("and".to_owned());
    }
    words.join(if rng.below(4) == 0 { ", " } else { " " })
}

fn forced() -> Option<KeywordCacheConfig> {
    Some(KeywordCacheConfig {
        min_chunks: 0,
        load_inline: true,
        ..KeywordCacheConfig::default()
    })
}

/// Two stores over one SQLite file: one searching in SQL only, one from the cache.
async fn stores() -> (SqlStore, SqlStore, RetrievalPorts, tempfile::TempDir) {
    let (store, dir) = testkit::sqlite_store().await;
    let sql = store.clone().with_keyword_cache(None);
    let cached = store.clone().with_keyword_cache(forced());
    (sql, cached, RetrievalPorts::of(store), dir)
}

async fn search(
    store: &SqlStore,
    tenant: TenantId,
    collections: Option<&[CollectionId]>,
    query: &str,
    k: usize,
    allow: Option<&[DocumentId]>,
) -> Vec<Candidate> {
    store
        .search(tenant, collections, query, k, allow)
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e:#}"))
}

fn hits(store: &SqlStore) -> u64 {
    store.keyword_cache_stats().expect("a cache").hits
}

/// Same chunks in the same order with the same scores.
fn assert_same(cached: &[Candidate], sql: &[Candidate], what: &str) {
    let ids = |c: &[Candidate]| c.iter().map(|c| c.chunk_id).collect::<Vec<_>>();
    assert_eq!(ids(cached), ids(sql), "{what}");
    for (a, b) in cached.iter().zip(sql) {
        assert!(
            (a.score - b.score).abs() <= 1e-6 * b.score.abs().max(1.0),
            "{what}: {} vs {}",
            a.score,
            b.score
        );
    }
}

/// A tenant's chunks in two collections and outside any (1,500 in all, so common words are
/// left out), another tenant's with the same words; random queries, scopes, k and allow
/// lists: the cache answers each, as the SQL path does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_and_sql_agree_on_random_scopes_and_queries() {
    let (sql, cached, p, _dir) = stores().await;
    let (a, b) = two_tenants(&p.docs).await;
    let ca = new_collection(&p, a, "A").await.id;
    let cb = new_collection(&p, a, "B").await.id;
    let cother = new_collection(&p, b, "other").await.id;
    let words = vocabulary();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut docs: Vec<DocumentId> = Vec::new();
    let mut at = 0;
    for d in 0..30 {
        let collection = [Some(ca), Some(cb), None][d % 3];
        let texts: Vec<String> = (0..50).map(|_| text(&mut rng, &words)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        at += 10;
        let (doc, _) = store_document(&p, a, collection, &texts, at_ms(at)).await;
        docs.push(doc.id);
    }
    for _ in 0..5 {
        let texts: Vec<String> = (0..40).map(|_| text(&mut rng, &words)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        at += 10;
        store_document(&p, b, Some(cother), &texts, at_ms(at)).await;
    }
    let scopes: [Option<Vec<CollectionId>>; 5] = [
        None,
        Some(vec![ca]),
        Some(vec![cb]),
        Some(vec![ca, cb]),
        Some(vec![cb, ca, cother]),
    ];
    let before = hits(&cached);
    let mut searches = 0;
    for q in 0..300 {
        let n = 1 + rng.below(4);
        let mut query: Vec<String> = (0..n)
            .map(|_| words[rng.skewed(words.len())].clone())
            .collect();
        if rng.below(5) == 0 {
            query.push("absentword".to_owned());
        }
        match rng.below(6) {
            0 => query.push("the".to_owned()),
            1 => query.push("and".to_owned()),
            2 => query = vec!["the".to_owned(), "and".to_owned()],
            _ => {}
        }
        let query = query.join(" ");
        let scope = &scopes[rng.below(scopes.len())];
        let k = 1 + rng.below(25);
        let allow: Option<Vec<DocumentId>> = (rng.below(3) == 0).then(|| {
            let mut allow: Vec<DocumentId> =
                docs.iter().copied().filter(|_| rng.below(3) == 0).collect();
            allow.push(DocumentId::new());
            allow
        });
        let what = format!("query {q}: {query:?} in {scope:?}, k {k}, allow {allow:?}");
        let from_sql = search(&sql, a, scope.as_deref(), &query, k, allow.as_deref()).await;
        let from_cache = search(&cached, a, scope.as_deref(), &query, k, allow.as_deref()).await;
        assert_same(&from_cache, &from_sql, &what);
        searches += 1;
    }
    assert_eq!(
        hits(&cached) - before,
        searches,
        "the cache answered every search"
    );
    assert!(
        sql.keyword_cache_stats().is_none(),
        "the SQL store has no cache"
    );
}

/// Another tenant's chunks never come back from the cache and never move its scores; a
/// deleted document's chunks vanish at the next search, a stored one appears; a query of the
/// other tenant's words alone finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_follows_writes_and_keeps_tenants_apart() {
    let (sql, cached, p, _dir) = stores().await;
    let (a, b) = two_tenants(&p.docs).await;
    let (d1, c1) = store_document(
        &p,
        a,
        None,
        &["alpha beta gamma", "alpha alpha delta"],
        at_ms(10),
    )
    .await;
    let (_, c2) = store_document(&p, a, None, &["beta epsilon", "zeta alpha"], at_ms(20)).await;
    let query = "alpha beta";
    let first = search(&cached, a, None, query, 10, None).await;
    assert_same(
        &first,
        &search(&sql, a, None, query, 10, None).await,
        "start",
    );
    let mine: HashSet<_> = c1.iter().chain(&c2).copied().collect();

    // The other tenant stores the same words, many times: nothing of it shows, no score moves.
    let flood: Vec<String> = (0..200).map(|i| format!("alpha beta flood{i}")).collect();
    let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
    store_document(&p, b, None, &flood, at_ms(30)).await;
    let after = search(&cached, a, None, query, 10, None).await;
    assert_eq!(after, first, "B's chunks moved A's results");
    assert!(after.iter().all(|c| mine.contains(&c.chunk_id)));
    assert!(
        search(&cached, a, None, "flood7", 10, None)
            .await
            .is_empty(),
        "B's words are not A's"
    );
    let of_b = search(&cached, b, None, "flood7", 10, None).await;
    assert_eq!(of_b.len(), 1);

    // A deleted document's chunks vanish, and the scores are the remaining scope's.
    p.docs
        .documents
        .delete(a, d1.id, at_ms(40))
        .await
        .expect("delete")
        .expect("found");
    let gone = search(&cached, a, None, query, 10, None).await;
    assert!(
        gone.iter().all(|c| !c1.contains(&c.chunk_id)),
        "a deleted chunk came back: {gone:?}"
    );
    assert_same(
        &gone,
        &search(&sql, a, None, query, 10, None).await,
        "after the delete",
    );

    // A stored chunk is found at the next search (only the added chunks are read).
    let loads = cached.keyword_cache_stats().expect("cache").delta_loads;
    let (_, c3) = store_document(&p, a, None, &["omega alpha"], at_ms(50)).await;
    let found = search(&cached, a, None, "omega", 10, None).await;
    assert_eq!(found.iter().map(|c| c.chunk_id).collect::<Vec<_>>(), c3);
    assert_same(
        &search(&cached, a, None, query, 10, None).await,
        &search(&sql, a, None, query, 10, None).await,
        "after the insert",
    );
    assert!(
        cached.keyword_cache_stats().expect("cache").delta_loads > loads,
        "the insert was read alone"
    );
    // A's cached segment never holds B's chunks.
    let stats = cached.keyword_cache_stats().expect("cache");
    assert_eq!(stats.chunks, 3 + 200, "A's three chunks and B's 200, apart");
}

/// Without waiting for loads (the default): the first search of a stale scope is answered in
/// SQL while the load runs; searches racing it answer exactly; once loaded the cache answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_during_a_load_answer_from_sql() {
    let (store, _dir) = testkit::sqlite_store().await;
    let sql = store.clone().with_keyword_cache(None);
    let cached = store.clone().with_keyword_cache(Some(KeywordCacheConfig {
        min_chunks: 0,
        load_page: 7,
        ..KeywordCacheConfig::default()
    }));
    let p = RetrievalPorts::of(store);
    let (a, _) = two_tenants(&p.docs).await;
    let texts: Vec<String> = (0..300)
        .map(|i| format!("common text {} number {i}", i % 17))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (doc, _) = store_document(&p, a, None, &texts, at_ms(10)).await;
    let query = "common 3 number";
    let expected = search(&sql, a, None, query, 10, None).await;
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let cached = cached.clone();
            tokio::spawn(async move { search(&cached, a, None, query, 10, None).await })
        })
        .collect();
    for r in racing {
        assert_same(&r.await.expect("joined"), &expected, "during the load");
    }
    cached.keyword_cache_settled().await;
    // A second load of the same segment would still be running or done by now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cached.keyword_cache_settled().await;
    let loads = cached.keyword_cache_stats().expect("cache").loads;
    assert_eq!(loads, 1, "one load for the racing searches");
    let before = hits(&cached);
    assert_same(
        &search(&cached, a, None, query, 10, None).await,
        &expected,
        "loaded",
    );
    assert_eq!(hits(&cached), before + 1, "the cache answered");
    // A delete: the next search is exact at once (in SQL), the cache follows.
    p.docs
        .documents
        .delete(a, doc.id, at_ms(20))
        .await
        .expect("delete")
        .expect("found");
    assert!(search(&cached, a, None, query, 10, None).await.is_empty());
    cached.keyword_cache_settled().await;
    assert!(search(&cached, a, None, query, 10, None).await.is_empty());
}

/// A scope below `min_chunks` is searched in SQL and never loaded, and once seen small its
/// searches skip the cache's version read until the SQL path's statistics show it has grown;
/// the cache's memory bound drops the least recently used segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_scopes_stay_in_sql_and_memory_is_bounded() {
    let (store, _dir) = testkit::sqlite_store().await;
    let cached = store.clone().with_keyword_cache(Some(KeywordCacheConfig {
        min_chunks: 3,
        max_postings: 10,
        load_inline: true,
        ..KeywordCacheConfig::default()
    }));
    let p = RetrievalPorts::of(store);
    let (a, b) = two_tenants(&p.docs).await;
    store_document(&p, a, None, &["one two", "two three"], at_ms(10)).await;
    let scope_reads = |s: &SqlStore| s.keyword_cache_stats().expect("a cache").scope_reads;
    assert_eq!(search(&cached, a, None, "two", 10, None).await.len(), 2);
    assert_eq!(hits(&cached), 0, "two chunks: below the threshold");
    assert_eq!(cached.keyword_cache_stats().expect("cache").segments, 0);
    assert_eq!(scope_reads(&cached), 1);
    assert_eq!(search(&cached, a, None, "one", 10, None).await.len(), 1);
    assert_eq!(scope_reads(&cached), 1, "a scope seen small skips the read");

    store_document(&p, a, None, &["two four"], at_ms(20)).await;
    store_document(&p, b, None, &["x y", "y z", "z x"], at_ms(30)).await;
    assert_eq!(search(&cached, a, None, "two", 10, None).await.len(), 3);
    assert_eq!(
        hits(&cached),
        0,
        "the SQL path answers and sees the scope grown"
    );
    assert_eq!(scope_reads(&cached), 1);
    assert_eq!(search(&cached, a, None, "two", 10, None).await.len(), 3);
    assert_eq!(hits(&cached), 1, "grown: the cache answers");
    assert_eq!(scope_reads(&cached), 2);
    let stats = cached.keyword_cache_stats().expect("cache");
    assert_eq!((stats.segments, stats.postings), (1, 6));
    assert_eq!(search(&cached, b, None, "y", 10, None).await.len(), 2);
    let stats = cached.keyword_cache_stats().expect("cache");
    assert_eq!(
        (stats.segments, stats.postings),
        (1, 6),
        "A's segment dropped for B's"
    );
}

/// The default settings cache every scope: a collection of two chunks is answered from the
/// cache once loaded (its SQL path reads and counts the matches' texts on every search), with
/// what SQL answers, and another organization's search never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_caches_a_small_collection() {
    let (store, _dir) = testkit::sqlite_store().await;
    let sql = store.clone().with_keyword_cache(None);
    let p = RetrievalPorts::of(store.clone());
    let (a, b) = two_tenants(&p.docs).await;
    store_document(
        &p,
        a,
        None,
        &["receipts go to the desk", "the desk files receipts"],
        at_ms(10),
    )
    .await;
    let expected = search(&sql, a, None, "receipts desk", 10, None).await;
    assert_eq!(expected.len(), 2);
    assert_same(
        &search(&store, a, None, "receipts desk", 10, None).await,
        &expected,
        "first search, in SQL while the scope loads",
    );
    store.keyword_cache_settled().await;
    assert_same(
        &search(&store, a, None, "receipts desk", 10, None).await,
        &expected,
        "loaded",
    );
    assert_eq!(hits(&store), 1, "two chunks, answered from the cache");
    assert!(
        search(&store, b, None, "receipts desk", 10, None)
            .await
            .is_empty()
    );
}
