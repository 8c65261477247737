//! The storage contracts of retrieval (spaces, vector rows, the keyword index, the chunk
//! catalog) on every adapter: in memory, SQLite and PostgreSQL, every case on a fresh store
//! (fresh maps; its own SQLite file; its own migrated PostgreSQL schema).

use testkit::contract::retrieval::RetrievalPorts;

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    testkit::contract::retrieval::$case(&RetrievalPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some((store, _guard)) = testkit::postgres_store().await else {
                        return;
                    };
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    spaces_one_live_per_scope_under_races,
    spaces_activate_and_replace,
    spaces_claims_and_leases,
    spaces_cascade,
    spaces_active_not_on_the_default,
    vector_rows_seq_paging_missing,
    vector_rows_retain_and_cascade,
    keyword_bm25_ranks_rare_words_first,
    keyword_is_tenant_and_collection_scoped,
    keyword_allow_is_exact,
    keyword_follows_stored_chunks,
    keyword_hostile_queries,
    keyword_unicode,
    keyword_scores_are_bm25_of_each_chunk,
    other_tenants_words_do_not_change_my_scores,
    flooding_a_word_cannot_hide_it_from_another_tenant,
    catalog_records,
    catalog_metadata_filter,
    catalog_scan_pages,
);

/// The keyword cases again on SQLite, term frequencies counted from FTS5's index whatever
/// the matches' size (`sqlite::` counts them from these small scopes' texts): both ways of
/// counting score alike.
macro_rules! on_sqlite_counting_from_the_index {
    ($($case:ident),* $(,)?) => {
        mod sqlite_fts_index {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    let store = store.with_keyword_texts_up_to(-1);
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                }
            )*
        }
    };
}

on_sqlite_counting_from_the_index!(
    keyword_bm25_ranks_rare_words_first,
    keyword_is_tenant_and_collection_scoped,
    keyword_allow_is_exact,
    keyword_follows_stored_chunks,
    keyword_hostile_queries,
    keyword_unicode,
    keyword_scores_are_bm25_of_each_chunk,
    other_tenants_words_do_not_change_my_scores,
    flooding_a_word_cannot_hide_it_from_another_tenant,
);

/// The keyword cases again on SQLite with the in-process keyword cache forced on (every
/// scope, loaded before the search answers): it answers as the SQL path does. Each case must
/// have been answered by the cache at least once (else it tested the SQL path again).
macro_rules! on_sqlite_from_the_keyword_cache {
    ($($case:ident),* $(,)?) => {
        mod sqlite_keyword_cache {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    let store = store.with_keyword_cache(Some(store_sql::KeywordCacheConfig {
                        min_chunks: 0,
                        load_inline: true,
                        ..store_sql::KeywordCacheConfig::default()
                    }));
                    let probe = store.clone();
                    testkit::contract::retrieval::$case(&RetrievalPorts::of(store)).await;
                    let stats = probe.keyword_cache_stats().expect("a keyword cache");
                    assert!(stats.hits > 0, "the cache answered: {stats:?}");
                }
            )*
        }
    };
}

on_sqlite_from_the_keyword_cache!(
    keyword_bm25_ranks_rare_words_first,
    keyword_is_tenant_and_collection_scoped,
    keyword_allow_is_exact,
    keyword_follows_stored_chunks,
    keyword_hostile_queries,
    keyword_unicode,
    keyword_scores_are_bm25_of_each_chunk,
    other_tenants_words_do_not_change_my_scores,
    flooding_a_word_cannot_hide_it_from_another_tenant,
);

/// SQLite and PostgreSQL leave out of a keyword query the words in more than a tenth of the
/// scope's chunks when a rarer word remains (they barely rank, and ranking them scores every
/// chunk they are in); a query of only common words still finds them.
#[tokio::test]
async fn sqlite_keyword_search_leaves_out_words_in_most_chunks() {
    let (store, _dir) = testkit::sqlite_store().await;
    keyword_search_leaves_out_words_in_most_chunks(store).await;
}

#[tokio::test]
async fn sqlite_keyword_cache_leaves_out_words_in_most_chunks() {
    let (store, _dir) = testkit::sqlite_store().await;
    let store = store.with_keyword_cache(Some(store_sql::KeywordCacheConfig {
        min_chunks: 0,
        load_inline: true,
        ..store_sql::KeywordCacheConfig::default()
    }));
    keyword_search_leaves_out_words_in_most_chunks(store.clone()).await;
    let stats = store.keyword_cache_stats().expect("a keyword cache");
    assert_eq!(stats.hits, 3, "the cache answered every search: {stats:?}");
}

#[tokio::test]
async fn postgres_keyword_search_leaves_out_words_in_most_chunks() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    keyword_search_leaves_out_words_in_most_chunks(store).await;
}

async fn keyword_search_leaves_out_words_in_most_chunks(store: store_sql::SqlStore) {
    use documents::{ChunkDraft, NewChunk};
    use retrieval::KeywordIndex as _;
    use testkit::contract::documents::{self as fixtures, DocumentPorts};

    let p = DocumentPorts::of(store.clone());
    let (tenant, _) = fixtures::two_tenants(&p).await;
    fixtures::upload(&p, tenant, None, "many", fixtures::T0).await;
    let claim = p
        .jobs
        .claim(fixtures::T0, std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    let chunks = NewChunk::assign(
        (0..1_200u32)
            .map(|i| {
                let text = if i == 7 {
                    "common words and one zebra".to_owned()
                } else {
                    format!("common words number {i}")
                };
                ChunkDraft {
                    ordinal: i,
                    end: u64::try_from(text.len()).expect("small"),
                    text,
                    tokens: 4,
                    tokens_by: None,
                    page: None,
                    start: 0,
                    ocr: false,
                }
            })
            .collect(),
    );
    let zebra = chunks[7].id;
    let ingested = documents::Ingested {
        pages: None,
        chunks,
        ocr_pages: 0,
    };
    assert!(
        p.jobs
            .complete(&claim, ingested, fixtures::T0)
            .await
            .expect("complete")
    );
    let found = store
        .search(tenant, None, "common zebra", 10, None)
        .await
        .expect("search");
    let ids: Vec<_> = found.iter().map(|c| c.chunk_id).collect();
    assert_eq!(ids, [zebra], "only the rare word is ranked");
    let found = store
        .search(tenant, None, "common words", 10, None)
        .await
        .expect("search");
    assert_eq!(found.len(), 10, "all common: the rarest is kept");
    // A word in no chunk is dropped, the other ranked.
    let found = store
        .search(tenant, None, "zebra absent", 10, None)
        .await
        .expect("search");
    assert_eq!(
        found.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        [zebra]
    );
}
