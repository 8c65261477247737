//! [`KeywordIndex`] on SQL: BM25 over the words of stored chunks, with an index the database
//! maintains itself from `chunks` (migrations `m20261122_000012_retrieval` and
//! `m20261206_000021_keyword_postings`), so it can never drift from what is stored.
//!
//! Query words ([`query_words`]): the lowercase runs of Unicode letters and digits of the
//! client's query, deduplicated, at most [`retrieval::MAX_QUERY_WORDS`]. Client text never reaches `MATCH`
//! or a `tsquery` parser: on SQLite each word is a quoted FTS5 string; on PostgreSQL the words
//! are one bound parameter of `to_tsvector` (whose lexemes are compared with stored ones, never
//! parsed as a query). A query without words finds nothing.
//!
//! Every statistic BM25 uses (chunk count, average length, document frequencies) and the rule
//! that leaves out common words are the **searched scope's** (the tenant's chunks in the named
//! collections, all of the tenant's without any; `allow` does not narrow them): another
//! tenant's chunks can neither move a score nor hide a word (docs/retrieval.md says why the
//! scope and not the whole tenant). Both backends compute BM25 alike: k1 = 1.2, b = 0.75,
//! idf = ln(1 + (N − df + 0.5) / (df + 0.5)), the chunk's `token_count` as its length against
//! the scope's average (summed from `documents`, whose `chunk_count` and `token_count` are
//! written in the transaction that stores the chunks).
//!
//! One rule on both backends decides which words are ranked ([`SqlStore::kept_terms`]): each
//! word's document frequency in the scope is counted, stopped one past the pruning threshold
//! ([`COMMON_SHARE`]); words above it are left out when a rarer word remains (when none does,
//! the rarest alone is kept, with its exact count).
//!
//! - SQLite: FTS5 finds chunks, never ranks them (its `bm25()` uses table-wide statistics,
//!   every tenant's). A match is `text : ("w1" OR "w2" …) AND scope : "t<tenant>"
//!   [AND scope : ("c…" OR …)] [AND scope : ("d…" OR …)]`: tenant, collections and allowed
//!   documents are intersections inside the FTS index, never a filter after a LIMIT. Each
//!   word's df is the count of such matches for that word alone. Each match's length is read
//!   from `chunk_fts_rows` (migration `m20261207_000035_keyword_lengths`), and each kept
//!   word's tf in it is counted one of two ways, whichever costs less ([`TEXTS_UP_TO`]): when
//!   the matches hold many tokens, from FTS5's own index (`chunk_fts_instances`, an
//!   `fts5vocab` of type `instance`, for the word as FTS5 folds it: [`fold`]), BM25 summed
//!   in SQL and only the top k coming back, no chunk row or text read; when they hold few
//!   (a small scope, whose common words are not left out), from the matched chunks' texts,
//!   read with their lengths and counted here by the tokenizer's rule, BM25 summed alike.
//!   Because the statistics do not depend on `allow`, a long `allow` list is searched in
//!   batches whose results merge exactly. A scope of many chunks is searched instead from
//!   this process's keyword cache when it holds the scope at the version SQL shows
//!   (`keyword_cache.rs`: the same words, rule, statistics and BM25, summed in Rust).
//! - PostgreSQL: `keyword_postings` (migration `m20261206_000021_keyword_postings`, kept by
//!   triggers on `chunks`) holds each chunk's lexemes with their tf and the chunk's length,
//!   keyed `(tenant_id, term, collection_key, chunk_id)`. The query's words become `tsv`'s
//!   lexemes (`to_tsvector('simple', …)`); a word's df is an index-only count of the scope's
//!   postings; BM25 sums the kept terms' postings per chunk in SQL (index-only range scans,
//!   no chunk row or `tsvector` read) and only the top k come back. `allow` keeps the
//!   postings of the allowed documents' chunks, after the statistics.
//!
//! Scores are "higher is better" and computed alike, but not equal across backends: FTS5 folds
//! diacritics (`remove_diacritics 2`) where `simple` does not, and the two tokenizers differ at
//! the edges of words.

use std::collections::HashSet;

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{CollectionId, DocumentId};
use kernel::TenantId;
use retrieval::{Candidate, IndexError, KeywordIndex, query_words};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::SqlStore;

/// Allowed documents per FTS5 query on SQLite (batches merge exactly, see the module doc).
const ALLOW_BATCH: usize = 500;

/// `s` as an FTS5 string: in double quotes, inner quotes doubled. Inside quotes FTS5 reads no
/// operators: the tokenizer splits the string into a phrase.
fn fts_string(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn fts_any(column: &str, terms: impl IntoIterator<Item = String>) -> String {
    let terms: Vec<String> = terms.into_iter().map(|t| fts_string(&t)).collect();
    format!("{column} : ({})", terms.join(" OR "))
}

/// The FTS5 query of `words` within the scope (the ids are hex: `Uuid::simple`).
fn fts_query(
    words: &[String],
    tenant: TenantId,
    collections: Option<&[CollectionId]>,
    allow: Option<&[DocumentId]>,
) -> String {
    let mut query = fts_any("text", words.iter().cloned());
    query.push_str(&format!(
        " AND scope : {}",
        fts_string(&format!("t{}", tenant.as_uuid().simple()))
    ));
    if let Some(collections) = collections {
        query.push_str(" AND ");
        query.push_str(&fts_any(
            "scope",
            collections
                .iter()
                .map(|c| format!("c{}", c.as_uuid().simple())),
        ));
    }
    if let Some(allow) = allow {
        query.push_str(" AND ");
        query.push_str(&fts_any(
            "scope",
            allow.iter().map(|d| format!("d{}", d.as_uuid().simple())),
        ));
    }
    query
}

/// The SQLite search of `terms` kept words (see the module doc): `?` in this order: the FTS5
/// query of the kept words in the scope; per kept word its idf and its folded form; the
/// scope's average length; the weakest word's idf; the average length again; k.
///
/// `m`: the scope's chunks holding a kept word (FTS5). `t`: each kept word's term frequency
/// in each of them, counted from FTS5's index (`chunk_fts_instances`, one row per occurrence;
/// no chunk text is read), and a row of tf 0 for every match. Each match's rows are summed
/// with its length (`chunk_fts_rows.length`, its `token_count`, by rowid). A chunk that
/// matched but whose words FTS5 indexed differently from `fold` (tf 0 only) scores as if it
/// held the weakest word once. Scored and ranked in SQL: only the top k come back. The plan
/// is linear in the rows of `t`: they drive, each looks its chunk up by rowid.
fn sqlite_search(terms: usize) -> String {
    let tf = (0..terms)
        .map(|_| {
            "SELECT doc AS rid, CAST(? AS REAL) AS idf, COUNT(*) AS tf \
             FROM chunk_fts_instances \
             WHERE term = ? AND col = 'text' AND doc IN (SELECT rid FROM m) \
             GROUP BY doc"
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "WITH m AS MATERIALIZED (SELECT rowid AS rid FROM chunk_fts WHERE chunk_fts MATCH ?), \
         t AS MATERIALIZED ({tf} UNION ALL SELECT rid, 0.0 AS idf, 0 AS tf FROM m) \
         SELECT r.chunk_id AS chunk_id, \
                CASE WHEN SUM(t.tf) > 0 \
                THEN SUM(t.idf * t.tf * 2.2 \
                         / (t.tf + 1.2 * (0.25 + 0.75 * max(r.length, 1) / CAST(? AS REAL)))) \
                ELSE CAST(? AS REAL) * 2.2 \
                     / (1 + 1.2 * (0.25 + 0.75 * max(r.length, 1) / CAST(? AS REAL))) END \
                AS score \
         FROM t CROSS JOIN chunk_fts_rows AS r ON r.rowid = t.rid \
         GROUP BY t.rid \
         ORDER BY score DESC, r.chunk_id \
         LIMIT ?"
    )
}

/// SQLite: a search whose kept words' matches hold at most this many tokens (estimated:
/// the kept words' chunk counts, at most the scope's chunks, times the scope's average
/// length) reads those chunks' texts and counts term frequencies here ([`SQLITE_TEXTS`],
/// [`term_frequencies`]); above it they are counted from FTS5's index ([`sqlite_search`]).
/// Counting from the index costs per occurrence of each kept word in the whole table, every
/// tenant's (FTS5's `instance` table filters by term only), about 2 µs each; reading a text
/// costs per byte. In a small scope no word is left out ([`PRUNE_FROM_ROWS`]), so its common
/// words' occurrences, in this scope and in every other, would be counted one by one: the
/// texts are cheaper there. A large scope leaves its common words out, and its few kept
/// words' occurrences are cheaper than its many texts. When the whole scope holds at most this
/// many tokens, a search without `allow` reads the matches' texts in the statement that
/// counts its words ([`SqlStore::sqlite_stats_and_frequencies`]): one statement in all.
/// docs/retrieval.md has the figures.
pub(crate) const TEXTS_UP_TO: i64 = 65_536;

/// The SQLite search's matches with their lengths and texts (`?`: the FTS5 query), for
/// [`TEXTS_UP_TO`].
const SQLITE_TEXTS: &str = "\
SELECT r.chunk_id AS chunk_id, r.length AS length, c.text AS text \
FROM (SELECT rowid AS rid FROM chunk_fts WHERE chunk_fts MATCH ?) AS m \
CROSS JOIN chunk_fts_rows AS r ON r.rowid = m.rid \
JOIN chunks AS c ON c.id = r.chunk_id";

/// How often each of `words` (folded) occurs in `text`, by the tokenizer's rule (runs of
/// letters and digits). ASCII text (most text) is read once, run by run, each run compared
/// with the words of its length without case (one pass whatever the number of words, and no
/// lowercase copy of the text).
fn term_frequencies(text: &str, words: &[String]) -> Vec<u32> {
    if !text.is_ascii() {
        return term_frequencies_by_word(text, words);
    }
    let mut tf = vec![0_u32; words.len()];
    for run in text
        .as_bytes()
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|r| !r.is_empty())
    {
        for (count, word) in tf.iter_mut().zip(words) {
            if word.len() == run.len() && word.as_bytes().eq_ignore_ascii_case(run) {
                *count = count.saturating_add(1);
            }
        }
    }
    tf
}

/// [`term_frequencies`] for any text: each run of letters and digits, folded when not ASCII.
fn term_frequencies_by_word(text: &str, words: &[String]) -> Vec<u32> {
    let mut tf = vec![0_u32; words.len()];
    let mut folded = String::new();
    for run in text.split(|c: char| !c.is_alphanumeric()) {
        if run.is_empty() {
            continue;
        }
        let found = if run.is_ascii() {
            words
                .iter()
                .position(|w| w.as_bytes().eq_ignore_ascii_case(run.as_bytes()))
        } else {
            folded.clear();
            fold_into(run, &mut folded);
            words.iter().position(|w| *w == folded)
        };
        if let Some(i) = found {
            tf[i] = tf[i].saturating_add(1);
        }
    }
    tf
}

/// BM25 of a chunk of `length` with these term frequencies of words of these idfs, exactly
/// as [`sqlite_search`] sums it in SQL (the same operations in the same order): a chunk with
/// no counted word scores as if it held the weakest word once.
fn bm25_of(tf: &[u32], idfs: &[f64], weakest: f64, length: i64, average: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let norm = 1.2 * (0.25 + 0.75 * length.max(1) as f64 / average);
    if tf.iter().all(|t| *t == 0) {
        return weakest * 2.2 / (1.0 + norm);
    }
    tf.iter()
        .zip(idfs)
        .filter(|(t, _)| **t > 0)
        .map(|(t, idf)| {
            let t = f64::from(*t);
            idf * t * 2.2 / (t + norm)
        })
        .sum()
}

/// BM25's idf of a word in `df` of `n` chunks (never negative). The rest of BM25 (k1 = 1.2,
/// b = 0.75: a term's weight idf · tf · 2.2 / (tf + 1.2 · (0.25 + 0.75 · length / average)))
/// is summed in SQL on both backends, [`sqlite_search`] and [`postgres_search`].
pub(crate) fn idf(n: f64, df: f64) -> f64 {
    (1.0 + (n - df + 0.5).max(0.0) / (df + 0.5)).ln()
}

/// `word` as FTS5's `unicode61 remove_diacritics 2` indexes it: lowercase, without
/// combining marks (`Café` → `cafe`).
pub(crate) fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    fold_into(word, &mut out);
    out
}

pub(crate) fn fold_into(word: &str, out: &mut String) {
    use unicode_normalization::{UnicodeNormalization as _, char::is_combining_mark};
    out.extend(
        word.nfd()
            .filter(|c| !is_combining_mark(*c))
            .flat_map(char::to_lowercase),
    );
}

/// `ids` as one text parameter for `string_to_array($n, ',')::uuid[]` (our own ids, never
/// client text; no array binding needed).
fn uuid_list(ids: impl IntoIterator<Item = Uuid>) -> String {
    ids.into_iter()
        .map(|u| u.hyphenated().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The PostgreSQL search (see the module doc). `$1`: the tenant; `$2`: k; `$3`: the scope's
/// average length; then the optional collection and allow lists (`string_to_array` of ids);
/// then a (term, idf) pair per kept term.
fn postgres_search(terms: usize, collections: bool, allow: bool) -> String {
    let mut next = 4;
    let mut param = || {
        let p = format!("${next}");
        next += 1;
        p
    };
    let scope = if collections {
        format!(
            " AND p.collection_key = ANY(string_to_array({}, ',')::uuid[])",
            param()
        )
    } else {
        String::new()
    };
    let allow_filter = if allow {
        format!(
            " WHERE p.chunk_id IN (SELECT c.id FROM chunks AS c WHERE c.tenant_id = $1 \
               AND c.document_id = ANY(string_to_array({}, ',')::uuid[]))",
            param()
        )
    } else {
        String::new()
    };
    let weights = (0..terms)
        .map(|_| format!("({}::text, {}::float8)", param(), param()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT p.chunk_id, \
                SUM(w.idf * p.tf * 2.2 \
                    / (p.tf + 1.2 * (0.25 + 0.75 * GREATEST(p.length, 1) / $3::float8)))::float8 \
                    AS score \
         FROM (VALUES {weights}) AS w(term, idf) \
         JOIN keyword_postings AS p ON p.tenant_id = $1 AND p.term = w.term{scope}{allow_filter} \
         GROUP BY p.chunk_id \
         ORDER BY score DESC, p.chunk_id \
         LIMIT $2"
    )
}

fn candidates(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<Candidate>, IndexError> {
    rows.into_iter()
        .map(|row| {
            let chunk: Uuid = row
                .try_get("", "chunk_id")
                .context("reading a keyword hit")?;
            let score: f64 = row.try_get("", "score").context("reading a BM25 score")?;
            #[allow(clippy::cast_possible_truncation)]
            let score = score as f32;
            Ok(Candidate {
                chunk_id: documents::ChunkId::from_uuid(chunk),
                score,
            })
        })
        .collect()
}

/// A word in more than this share of the searched scope's chunks is left out of an SQLite
/// keyword query (when a rarer word remains): its BM25 weight is small (idf ≤ ln 10) but
/// ranking it means scoring every chunk it is in. The effect of a stop-word list, for every
/// language, from the scope's own statistics.
const COMMON_SHARE: f64 = 0.1;
/// Below this many chunks in the scope every word is kept.
const PRUNE_FROM_ROWS: i64 = 1_000;

/// The cap of the first count of each word's chunks in a scope of these statistics: one
/// past [`COMMON_SHARE`] of its chunks when words may be left out (two words or more, at
/// least [`PRUNE_FROM_ROWS`] chunks), else none.
pub(crate) fn prune_cap(stats: ScopeStats, prune_words: bool) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let common = (stats.chunks as f64 * COMMON_SHARE) as i64;
    (prune_words && stats.chunks >= PRUNE_FROM_ROWS).then_some(common + 1)
}

/// A scope's BM25 statistics: its chunk count and their total length in tokens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeStats {
    pub(crate) chunks: i64,
    pub(crate) tokens: i64,
}

impl SqlStore {
    /// The words BM25 ranks with, each with its document frequency in the scope: a word in
    /// more than [`COMMON_SHARE`] of the scope's chunks is left out when a rarer word remains
    /// (counting stops one past the threshold, so a common word costs no more than a rare
    /// one); when every word is common, the rarest alone (ties: the first in byte order),
    /// with its exact count. Words in no chunk are dropped. The same rule on every backend.
    ///
    /// Answers the scope's statistics too (its chunk count and length, summed from
    /// `documents`, whose `chunk_count` and `token_count` are written in the transaction that
    /// stores the chunks): on both backends with the counts in one statement, the cap
    /// computed in SQL from the statistics.
    async fn kept_terms(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        texts: bool,
    ) -> Result<Kept, IndexError> {
        let counted = self
            .stats_and_frequencies(words, tenant, collections, words.len() >= 2, texts)
            .await?;
        let stats = counted.stats;
        // A word counted up to the cap is in more than the common share of the chunks.
        let cap = prune_cap(stats, words.len() >= 2);
        let mut kept: Vec<(String, i64)> = counted
            .df
            .iter()
            .filter(|(_, d)| cap.is_none_or(|cap| *d < cap))
            .cloned()
            .collect();
        let mut left_out = kept.len() < counted.df.len();
        if kept.is_empty() && !counted.df.is_empty() {
            // Every word is common: the rarest alone, with exact (uncapped) counts.
            kept = self
                .stats_and_frequencies(words, tenant, collections, false, false)
                .await?
                .df
                .into_iter()
                .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                .into_iter()
                .collect();
            left_out = true;
        }
        kept.retain(|(_, d)| *d > 0);
        Ok(Kept {
            stats,
            terms: kept,
            // The texts read are the matches of every word: they are the kept words' matches
            // only when no word was left out (a word in no chunk matches nothing).
            texts: counted.texts.filter(|_| !left_out),
        })
    }

    /// The scope's statistics and each word's count of the scope's chunks holding it, counted
    /// up to [`prune_cap`] of those statistics (`prune_words`; else exact), in one statement:
    /// `(term, count)` per distinct term. On SQLite with `texts`, the same statement reads the
    /// texts of the matches of every word when the whole scope holds at most
    /// `keyword_texts_up_to` tokens (one statement fewer for a small scope's search).
    async fn stats_and_frequencies(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        prune_words: bool,
        texts: bool,
    ) -> Result<Counted, IndexError> {
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let (stats, df) = self
                    .postgres_stats_and_frequencies(words, tenant, collections, prune_words)
                    .await?;
                Ok(Counted {
                    stats,
                    df,
                    texts: None,
                })
            }
            _ => {
                self.sqlite_stats_and_frequencies(words, tenant, collections, prune_words, texts)
                    .await
            }
        }
    }

    /// PostgreSQL: [`SqlStore::stats_and_frequencies`]; the words as `tsv` spells them (the
    /// `simple` configuration's lexemes), each counted in the scope's postings (an index-only
    /// range scan, stopped at the cap).
    async fn postgres_stats_and_frequencies(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        prune_words: bool,
    ) -> Result<(ScopeStats, Vec<(String, i64)>), IndexError> {
        let (documents_scope, postings_scope) = if collections.is_some() {
            (
                " AND collection_id = ANY(string_to_array($4, ',')::uuid[])",
                " AND p.collection_key = ANY(string_to_array($4, ',')::uuid[])",
            )
        } else {
            ("", "")
        };
        // The statistics once (materialized), the cap from them as `prune_cap` computes it
        // (NULL: no limit), then one capped count per distinct lexeme of the words.
        let sql = format!(
            "WITH s AS MATERIALIZED (SELECT COALESCE(SUM(chunk_count), 0)::bigint AS n, \
                 COALESCE(SUM(token_count), 0)::bigint AS tokens \
                 FROM documents WHERE tenant_id = $1{documents_scope}), \
             cap AS MATERIALIZED (SELECT CASE WHEN $2 AND n >= {PRUNE_FROM_ROWS} \
                 THEN floor(n * {COMMON_SHARE:?})::bigint + 1 END AS c FROM s) \
             SELECT NULL::text AS term, n, tokens FROM s \
             UNION ALL \
             SELECT w.term, (SELECT COUNT(*) FROM ( \
                 SELECT 1 FROM keyword_postings AS p \
                 WHERE p.tenant_id = $1 AND p.term = w.term{postings_scope} \
                 LIMIT (SELECT c FROM cap)) AS f)::bigint, 0::bigint \
             FROM (SELECT DISTINCT unnest(tsvector_to_array( \
                 to_tsvector('simple'::regconfig, $3))) AS term) AS w"
        );
        let mut values: Vec<Value> = vec![
            tenant.as_uuid().into(),
            prune_words.into(),
            words.join(" ").into(),
        ];
        if let Some(collections) = collections {
            values.push(uuid_list(collections.iter().map(CollectionId::as_uuid)).into());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .context("reading the scope's statistics and its chunks per word")?;
        let mut stats = ScopeStats {
            chunks: 0,
            tokens: 0,
        };
        let mut df = Vec::with_capacity(words.len());
        for row in rows {
            let term: Option<String> = row.try_get("", "term").context("reading a term")?;
            let n: i64 = row.try_get("", "n").context("reading a count")?;
            match term {
                None => {
                    stats = ScopeStats {
                        chunks: n,
                        tokens: row
                            .try_get("", "tokens")
                            .context("reading the token count")?,
                    };
                }
                Some(term) => df.push((term, n)),
            }
        }
        // In term order (the rarest word's tie-break is by term).
        df.sort();
        Ok((stats, df))
    }

    /// SQLite: [`SqlStore::stats_and_frequencies`]; each word's count of FTS5 matches inside
    /// FTS5's scope intersection, and with `texts` the matches of every word with their
    /// lengths and texts when the scope's tokens are at most `keyword_texts_up_to` (the
    /// condition is on the statistics, tested in SQL before FTS5 is asked).
    async fn sqlite_stats_and_frequencies(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        prune_words: bool,
        texts: bool,
    ) -> Result<Counted, IndexError> {
        let mut values: Vec<Value> = vec![tenant.as_uuid().into()];
        let mut scope = String::new();
        if let Some(collections) = collections {
            scope = format!(
                " AND collection_id IN ({})",
                vec!["?"; collections.len()].join(", ")
            );
            values.extend(collections.iter().map(|c| Value::from(c.as_uuid())));
        }
        values.push(prune_words.into());
        // The statistics once (materialized), the cap from them as `prune_cap` computes it
        // (-1: no limit), then one count per word.
        let mut sql = format!(
            "WITH s AS MATERIALIZED (SELECT CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT) AS n, \
             CAST(COALESCE(SUM(token_count), 0) AS BIGINT) AS tokens \
             FROM documents WHERE tenant_id = ?{scope}), \
             cap AS (SELECT CASE WHEN ? AND n >= {PRUNE_FROM_ROWS} \
             THEN CAST(n * {COMMON_SHARE:?} AS INTEGER) + 1 ELSE -1 END AS c FROM s) \
             SELECT -1 AS i, n, tokens, NULL AS chunk_id, NULL AS text FROM s"
        );
        for (i, word) in words.iter().enumerate() {
            sql.push_str(&format!(
                " UNION ALL SELECT {i} AS i, COUNT(*) AS n, 0 AS tokens, NULL, NULL FROM \
                 (SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ? LIMIT (SELECT c FROM cap))"
            ));
            values.push(fts_query(std::slice::from_ref(word), tenant, collections, None).into());
        }
        if texts {
            sql.push_str(
                " UNION ALL SELECT -2 AS i, r.length, 0, r.chunk_id, c.text \
                 FROM (SELECT rowid AS rid FROM chunk_fts \
                       WHERE (SELECT tokens FROM s) <= ? AND chunk_fts MATCH ?) AS m \
                 CROSS JOIN chunk_fts_rows AS r ON r.rowid = m.rid \
                 JOIN chunks AS c ON c.id = r.chunk_id",
            );
            values.push(self.keyword_texts_up_to.into());
            values.push(fts_query(words, tenant, collections, None).into());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                &sql,
                values,
            ))
            .await
            .context("reading the scope's statistics and its chunks per word")?;
        let mut stats = ScopeStats {
            chunks: 0,
            tokens: 0,
        };
        let mut df = vec![0_i64; words.len()];
        let mut matched = Vec::new();
        for row in rows {
            let i: i64 = row.try_get("", "i").context("reading a word index")?;
            let n: i64 = row.try_get("", "n").context("reading a count")?;
            if i == -1 {
                stats = ScopeStats {
                    chunks: n,
                    tokens: row
                        .try_get("", "tokens")
                        .context("reading the token count")?,
                };
            } else if i == -2 {
                matched.push(MatchedText {
                    chunk_id: row
                        .try_get("", "chunk_id")
                        .context("reading a keyword hit")?,
                    length: n,
                    text: row.try_get("", "text").context("reading a chunk text")?,
                });
            } else if let Some(slot) = usize::try_from(i).ok().and_then(|i| df.get_mut(i)) {
                *slot = n;
            }
        }
        let read = texts && stats.tokens <= self.keyword_texts_up_to;
        Ok(Counted {
            stats,
            df: words.iter().cloned().zip(df).collect(),
            texts: read.then_some(matched),
        })
    }

    /// SQLite: FTS5 finds the scope's chunks that hold a kept word; BM25 is computed here with
    /// the scope's own statistics (FTS5's `bm25()` would use the whole table's, every
    /// tenant's).
    async fn search_sqlite(
        &self,
        kept: Vec<(String, i64)>,
        bm25: Bm25,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        #[allow(clippy::cast_precision_loss)]
        let idfs: Vec<f64> = kept.iter().map(|(_, d)| idf(bm25.n, *d as f64)).collect();
        // The least weighty word stands in for a chunk whose words FTS5 indexed differently
        // from `fold` (it matched, so it holds one of them).
        let weakest = idfs.iter().copied().fold(f64::INFINITY, f64::min);
        // The matches' tokens, estimated: each kept word's chunks (exact below the cap), at
        // most the scope's, times the scope's average length.
        #[allow(clippy::cast_precision_loss)]
        let matched = (kept.iter().map(|(_, d)| *d).sum::<i64>() as f64).min(bm25.n);
        #[allow(clippy::cast_precision_loss)]
        let read_texts = matched * bm25.average <= self.keyword_texts_up_to as f64;
        let sql = if read_texts {
            SQLITE_TEXTS.to_owned()
        } else {
            sqlite_search(kept.len())
        };
        let kept_words: Vec<String> = kept.iter().map(|(w, _)| w.clone()).collect();
        let folded: Vec<String> = kept_words.iter().map(|w| fold(w)).collect();
        let limit = i64::try_from(k).unwrap_or(i64::MAX);

        let batches: Vec<Option<&[DocumentId]>> = match allow {
            None => vec![None],
            Some(allow) => allow.chunks(ALLOW_BATCH).map(Some).collect(),
        };
        let mut found: Vec<Candidate> = Vec::new();
        for batch in batches {
            let mut values: Vec<Value> = Vec::with_capacity(kept.len() * 2 + 4);
            values.push(fts_query(&kept_words, tenant, collections, batch).into());
            if !read_texts {
                for (word, idf) in folded.iter().zip(&idfs) {
                    values.push((*idf).into());
                    values.push(word.as_str().into());
                }
                values.push(bm25.average.into());
                values.push(weakest.into());
                values.push(bm25.average.into());
                values.push(limit.into());
            }
            let rows = self
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    &sql,
                    values,
                ))
                .await
                .context("searching chunks by keyword")?;
            if read_texts {
                let matched = rows
                    .into_iter()
                    .map(|row| {
                        Ok::<_, IndexError>(MatchedText {
                            chunk_id: row
                                .try_get("", "chunk_id")
                                .context("reading a keyword hit")?,
                            length: row
                                .try_get("", "length")
                                .context("reading a chunk length")?,
                            text: row.try_get("", "text").context("reading a chunk text")?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                found.extend(score_texts(&matched, &kept, bm25));
            } else {
                found.extend(candidates(rows)?);
            }
            // Keep memory bounded by k between batches (the order is total: exact merge).
            if found.len() > k.saturating_mul(4).max(1_024) {
                sort_best_first(&mut found);
                found.truncate(k);
            }
        }
        Ok(found)
    }

    /// PostgreSQL: the kept terms' postings in the scope (index-only range scans), scored and
    /// ranked in SQL; only the top k come back.
    async fn search_postgres(
        &self,
        kept: Vec<(String, i64)>,
        bm25: Bm25,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: i64,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let sql = postgres_search(kept.len(), collections.is_some(), allow.is_some());
        let mut values: Vec<Value> = vec![tenant.as_uuid().into(), k.into(), bm25.average.into()];
        if let Some(collections) = collections {
            values.push(uuid_list(collections.iter().map(CollectionId::as_uuid)).into());
        }
        if let Some(allow) = allow {
            values.push(uuid_list(allow.iter().map(DocumentId::as_uuid)).into());
        }
        for (term, df) in kept {
            #[allow(clippy::cast_precision_loss)]
            let weight = idf(bm25.n, df as f64);
            values.push(term.into());
            values.push(weight.into());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .context("searching chunks by keyword")?;
        candidates(rows)
    }
}

/// BM25's scope-wide figures: the chunk count (at least 1) and the average length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bm25 {
    pub(crate) n: f64,
    pub(crate) average: f64,
}

impl From<ScopeStats> for Bm25 {
    #[allow(clippy::cast_precision_loss)]
    fn from(stats: ScopeStats) -> Self {
        let n = stats.chunks.max(1) as f64;
        let average = if stats.chunks > 0 && stats.tokens > 0 {
            stats.tokens as f64 / stats.chunks as f64
        } else {
            1.0
        };
        Self { n, average }
    }
}

/// A scope's statistics and its words' counts ([`SqlStore::stats_and_frequencies`]).
struct Counted {
    stats: ScopeStats,
    df: Vec<(String, i64)>,
    /// SQLite: the matches of every word, read in the same statement (a small scope).
    texts: Option<Vec<MatchedText>>,
}

/// The words a search ranks with ([`SqlStore::kept_terms`]).
struct Kept {
    stats: ScopeStats,
    terms: Vec<(String, i64)>,
    /// SQLite: the kept words' matches, already read with their texts.
    texts: Option<Vec<MatchedText>>,
}

/// An SQLite match read with its length and text ([`TEXTS_UP_TO`]).
struct MatchedText {
    chunk_id: Uuid,
    length: i64,
    text: String,
}

/// The BM25 scores of matches read with their texts: each kept word's tf counted in the
/// text ([`term_frequencies`]), summed as [`sqlite_search`] sums them in SQL.
fn score_texts(matched: &[MatchedText], kept: &[(String, i64)], bm25: Bm25) -> Vec<Candidate> {
    #[allow(clippy::cast_precision_loss)]
    let idfs: Vec<f64> = kept.iter().map(|(_, d)| idf(bm25.n, *d as f64)).collect();
    let weakest = idfs.iter().copied().fold(f64::INFINITY, f64::min);
    let folded: Vec<String> = kept.iter().map(|(w, _)| fold(w)).collect();
    matched
        .iter()
        .map(|m| {
            let tf = term_frequencies(&m.text, &folded);
            let score = bm25_of(&tf, &idfs, weakest, m.length, bm25.average);
            #[allow(clippy::cast_possible_truncation)]
            Candidate {
                chunk_id: documents::ChunkId::from_uuid(m.chunk_id),
                score: score as f32,
            }
        })
        .collect()
}

#[async_trait]
impl KeywordIndex for SqlStore {
    async fn search(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        query: &str,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        crate::rls::tenant(tenant, async {
            let words = query_words(query);
            if words.is_empty()
                || k == 0
                || collections.is_some_and(<[_]>::is_empty)
                || allow.is_some_and(<[_]>::is_empty)
            {
                return Ok(Vec::new());
            }
            // Deduplicated: a repeated id would only lengthen the query.
            let collections: Option<Vec<CollectionId>> = collections.map(|c| {
                let mut seen = HashSet::new();
                c.iter().copied().filter(|c| seen.insert(*c)).collect()
            });
            let allow: Option<Vec<DocumentId>> = allow.map(|a| {
                let mut seen = HashSet::new();
                a.iter().copied().filter(|d| seen.insert(*d)).collect()
            });
            let collections = collections.as_deref();
            let allow = allow.as_deref();
            // SQLite: a large scope's search from this process's cache when it is fresh.
            if let Some(cache) = &self.keyword_cache
                && self.db.get_database_backend() == DbBackend::Sqlite
                && let Some(found) = cache
                    .search(&self.db, &words, tenant, collections, k, allow)
                    .await?
            {
                return Ok(found);
            }
            // Without `allow`, a small scope's matches are read with its statistics.
            let kept = self
                .kept_terms(&words, tenant, collections, allow.is_none())
                .await?;
            if let Some(cache) = &self.keyword_cache
                && self.db.get_database_backend() == DbBackend::Sqlite
            {
                cache.note_scope(tenant, collections, kept.stats.chunks);
            }
            if kept.terms.is_empty() {
                return Ok(Vec::new());
            }
            let bm25 = Bm25::from(kept.stats);
            let mut found = match (self.db.get_database_backend(), kept.texts) {
                (DbBackend::Postgres, _) => {
                    let limit = i64::try_from(k).unwrap_or(i64::MAX);
                    self.search_postgres(kept.terms, bm25, tenant, collections, limit, allow)
                        .await?
                }
                (_, Some(matched)) => score_texts(&matched, &kept.terms, bm25),
                (_, None) => {
                    self.search_sqlite(kept.terms, bm25, tenant, collections, k, allow)
                        .await?
                }
            };
            sort_best_first(&mut found);
            found.truncate(k);
            Ok(found)
        })
        .await
    }
}

/// Best score first, then chunk id: a total order, so merged batches rank exactly.
pub(crate) fn sort_best_first(found: &mut [Candidate]) {
    found.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_every_term() {
        let tenant = TenantId::from_uuid(Uuid::nil());
        let q = fts_query(&["or".into(), "a\"b".into()], tenant, None, None);
        assert_eq!(
            q,
            "text : (\"or\" OR \"a\"\"b\") AND scope : \"t00000000000000000000000000000000\""
        );
    }

    #[test]
    fn words_fold_as_fts5_indexes_them() {
        assert_eq!(fold("ÉCOLE"), "ecole");
        assert_eq!(fold("Café"), "cafe");
        assert_eq!(fold("plan"), "plan");
    }

    #[test]
    fn term_frequencies_fold_as_fts5_does() {
        let words: Vec<String> = ["cafe", "ecole", "plan"].iter().map(|w| fold(w)).collect();
        assert_eq!(
            term_frequencies("Café, CAFE cafés; l'École plan-plan planet", &words),
            [2, 1, 2]
        );
        assert_eq!(term_frequencies("", &words), [0, 0, 0]);
        // The ASCII path agrees with the word-by-word one.
        for text in [
            "Plan, plan planet PLAN-plan cafe ecole2 ecole",
            "plan",
            "xplan planx 3plan plan3",
        ] {
            assert_eq!(
                term_frequencies(text, &words),
                term_frequencies_by_word(text, &words),
                "{text}"
            );
        }
        assert_eq!(
            term_frequencies("Plan, plan planet PLAN-plan", &words),
            [0, 0, 4]
        );
    }

    #[test]
    fn sqlite_parameters_are_in_order() {
        let sql = sqlite_search(2);
        assert_eq!(sql.matches('?').count(), 1 + 2 * 2 + 4);
        let matched = sql.find("MATCH ?").unwrap_or(usize::MAX);
        let first_idf = sql.find("CAST(? AS REAL) AS idf").unwrap_or(0);
        assert!(matched < first_idf, "the FTS5 query comes first");
        assert!(sql.ends_with("LIMIT ?"));
    }

    #[test]
    fn postgres_parameters_are_numbered_in_order() {
        let sql = postgres_search(2, true, true);
        assert!(sql.contains("p.collection_key = ANY(string_to_array($4, ','"));
        assert!(sql.contains("c.document_id = ANY(string_to_array($5, ','"));
        assert!(sql.contains("VALUES ($6::text, $7::float8), ($8::text, $9::float8)"));
        let sql = postgres_search(1, false, false);
        assert!(sql.contains("VALUES ($4::text, $5::float8)"));
        assert!(!sql.contains("$6"));
    }
}
