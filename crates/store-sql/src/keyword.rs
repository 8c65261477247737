//! [`KeywordIndex`] on SQL: BM25 over the words of stored chunks, with an index the database
//! maintains itself from `chunks` (migration `m20261122_000012_retrieval`), so it can never
//! drift from what is stored.
//!
//! Query words ([`query_words`]): the lowercase runs of Unicode letters and digits of the
//! client's query, deduplicated, at most [`retrieval::MAX_QUERY_WORDS`]. Client text never reaches `MATCH`
//! or a `tsquery` parser: on SQLite each word is a quoted FTS5 string; on PostgreSQL each word
//! is a bound parameter of `plainto_tsquery`. A query without words finds nothing.
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
//! - SQLite: FTS5 finds chunks, never ranks them (its `bm25()` uses table-wide statistics,
//!   every tenant's). A match is `text : ("w1" OR "w2" …) AND scope : "t<tenant>"
//!   [AND scope : ("c…" OR …)] [AND scope : ("d…" OR …)]`: tenant, collections and allowed
//!   documents are intersections inside the FTS index, never a filter after a LIMIT. Each
//!   word's df is the count of such matches for that word alone, stopped one past the
//!   pruning threshold ([`COMMON_SHARE`]); words above it are left out when a rarer word
//!   remains. The remaining words' matches are read with their length and text, tf is counted
//!   from the text with FTS5's folding ([`fold`]), and the scores are ranked here. Because the
//!   statistics do not depend on `allow`, a long `allow` list is searched in batches whose
//!   results merge exactly.
//! - PostgreSQL: candidates are the tenant's chunks whose `tsv` matches the OR of the words and
//!   the scope lexemes (one GIN intersection), then BM25 in SQL: idf from document frequencies
//!   among those candidates (every chunk of the scope that has a word is one), tf from the
//!   positions of the query's lexemes in `tsv` (kept by `ts_filter(setweight(tsv, 'A',
//!   lexemes), '{a}')`, which is far cheaper than unnesting every lexeme of every candidate).
//!   It reads every candidate of the scope (no top-k shortcut, no word left out). `allow`
//!   filters candidates before the LIMIT, after the statistics.
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

/// A scope's chunks matching an FTS5 query, with what BM25 needs of each: its length and its
/// text (the term frequencies are counted from it, see [`term_frequencies`]).
const SQLITE_CANDIDATES: &str = "\
SELECT c.id AS chunk_id, c.token_count AS len, c.text AS text \
FROM (SELECT rowid AS rid FROM chunk_fts WHERE chunk_fts MATCH $1) AS m \
JOIN chunk_fts_rows AS r ON r.rowid = m.rid \
JOIN chunks AS c ON c.id = r.chunk_id";

/// BM25's parameters, the same on every backend.
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// BM25's idf of a word in `df` of `n` chunks (never negative).
fn idf(n: f64, df: f64) -> f64 {
    (1.0 + (n - df + 0.5).max(0.0) / (df + 0.5)).ln()
}

/// `word` as FTS5's `unicode61 remove_diacritics 2` indexes it: lowercase, without
/// combining marks (`Café` → `cafe`).
fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    fold_into(word, &mut out);
    out
}

fn fold_into(word: &str, out: &mut String) {
    use unicode_normalization::{UnicodeNormalization as _, char::is_combining_mark};
    out.extend(
        word.nfd()
            .filter(|c| !is_combining_mark(*c))
            .flat_map(char::to_lowercase),
    );
}

/// How often each of `words` (folded) occurs in `text`, by the tokenizer's rule (runs of
/// letters and digits). ASCII text (most text) is searched for each word with the standard
/// library's substring search and a word-boundary check, without splitting it into words.
fn term_frequencies(text: &str, words: &[String]) -> Vec<u32> {
    if !text.is_ascii() {
        return term_frequencies_by_word(text, words);
    }
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let boundary = |i: Option<usize>| {
        i.and_then(|i| bytes.get(i))
            .is_none_or(|b| !b.is_ascii_alphanumeric())
    };
    words
        .iter()
        .map(|w| {
            if w.is_empty() || !w.is_ascii() {
                return 0;
            }
            let n = lower
                .match_indices(w.as_str())
                .filter(|(i, _)| boundary(i.checked_sub(1)) && boundary(Some(i + w.len())))
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
        .collect()
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
            tf[i] += 1;
        }
    }
    tf
}

/// `ids` as one text parameter for `string_to_array($n, ',')::uuid[]` (our own ids, never
/// client text; no array binding needed).
fn uuid_list(ids: impl IntoIterator<Item = Uuid>) -> String {
    ids.into_iter()
        .map(|u| u.hyphenated().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The PostgreSQL search (see the module doc). `$1`: the words, space-separated; `$2`: the
/// tenant; `$3`: the scope `tsquery` (lexemes made of our own ids); `$4`: k; then the optional
/// collection and allow lists; then one parameter per word.
fn postgres_search(words: usize, collections: bool, allow: bool) -> String {
    let mut next = 5;
    let mut param = || {
        let p = format!("${next}");
        next += 1;
        p
    };
    let (collections_chunks, collections_documents) = if collections {
        let p = param();
        (
            format!(" AND c.collection_id = ANY(string_to_array({p}, ',')::uuid[])"),
            format!(" AND d.collection_id = ANY(string_to_array({p}, ',')::uuid[])"),
        )
    } else {
        (String::new(), String::new())
    };
    let allow_filter = if allow {
        format!(
            " WHERE terms.document_id = ANY(string_to_array({}, ',')::uuid[])",
            param()
        )
    } else {
        String::new()
    };
    let words_query = (0..words)
        .map(|_| format!("plainto_tsquery('simple'::regconfig, {})", param()))
        .collect::<Vec<_>>()
        .join(" || ");
    format!(
        "WITH q AS ( \
             SELECT tsvector_to_array(to_tsvector('simple'::regconfig, $1)) AS lexemes \
         ), \
         cand AS MATERIALIZED ( \
             SELECT c.id, c.document_id, c.token_count, c.tsv FROM chunks AS c \
             WHERE c.tenant_id = $2 \
               AND c.tsv @@ (({words_query}) && $3::tsquery){collections_chunks} \
         ), \
         stats AS ( \
             SELECT GREATEST(COALESCE(SUM(d.chunk_count), 0), 1)::float8 AS n, \
                    CASE WHEN COALESCE(SUM(d.chunk_count), 0) > 0 AND SUM(d.token_count) > 0 \
                         THEN SUM(d.token_count)::float8 / SUM(d.chunk_count) \
                         ELSE 1 END AS avgdl \
             FROM documents AS d WHERE d.tenant_id = $2{collections_documents} \
         ), \
         terms AS ( \
             SELECT cand.id, cand.document_id, cand.token_count, t.lexeme, \
                    cardinality(t.positions)::float8 AS tf \
             FROM cand CROSS JOIN q \
             CROSS JOIN LATERAL unnest(ts_filter(setweight(cand.tsv, 'A', q.lexemes), '{{a}}')) AS t \
         ), \
         df AS (SELECT lexeme, COUNT(*)::float8 AS df FROM terms GROUP BY lexeme) \
         SELECT terms.id AS chunk_id, \
                SUM(ln(1 + GREATEST(stats.n - df.df + 0.5, 0) / (df.df + 0.5)) \
                    * terms.tf * 2.2 \
                    / (terms.tf + 1.2 * (0.25 + 0.75 * GREATEST(terms.token_count, 1) \
                                                 / stats.avgdl)))::float8 AS score \
         FROM terms JOIN df ON df.lexeme = terms.lexeme CROSS JOIN stats{allow_filter} \
         GROUP BY terms.id \
         ORDER BY score DESC, terms.id \
         LIMIT $4"
    )
}

/// The scope as a `tsquery` of the lexemes the `tsv` column adds (our own hex ids only).
fn postgres_scope(tenant: TenantId, collections: Option<&[CollectionId]>) -> String {
    let mut scope = format!("'_t{}'", tenant.as_uuid().simple());
    if let Some(collections) = collections {
        let any = collections
            .iter()
            .map(|c| format!("'_c{}'", c.as_uuid().simple()))
            .collect::<Vec<_>>()
            .join(" | ");
        scope.push_str(&format!(" & ({any})"));
    }
    scope
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

/// A scope's BM25 statistics: its chunk count and their total length in tokens.
#[derive(Debug, Clone, Copy)]
struct ScopeStats {
    chunks: i64,
    tokens: i64,
}

impl SqlStore {
    /// The scope's chunk count and length, summed from `documents` (whose `chunk_count` and
    /// `token_count` are written in the transaction that stores the chunks).
    async fn scope_stats(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
    ) -> Result<ScopeStats, IndexError> {
        let backend = self.db.get_database_backend();
        let mut sql = "SELECT CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT) AS n, \
                       CAST(COALESCE(SUM(token_count), 0) AS BIGINT) AS tokens \
                       FROM documents WHERE tenant_id = ?"
            .to_owned();
        let mut values: Vec<Value> = vec![tenant.as_uuid().into()];
        if let Some(collections) = collections {
            sql.push_str(" AND collection_id IN (");
            sql.push_str(&vec!["?"; collections.len()].join(", "));
            sql.push(')');
            values.extend(collections.iter().map(|c| Value::from(c.as_uuid())));
        }
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(backend, &sql, values))
            .await
            .context("reading the scope's chunk statistics")?;
        let Some(row) = row else {
            return Ok(ScopeStats {
                chunks: 0,
                tokens: 0,
            });
        };
        Ok(ScopeStats {
            chunks: row.try_get("", "n").context("reading the chunk count")?,
            tokens: row
                .try_get("", "tokens")
                .context("reading the token count")?,
        })
    }

    /// How many of the scope's chunks hold each word, each counted up to `cap` (`None`: no
    /// cap), inside FTS5's scope intersection, so only the tenant's own chunks count.
    async fn scope_frequencies(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        cap: Option<i64>,
    ) -> Result<Vec<i64>, IndexError> {
        let sql = (0..words.len())
            .map(|i| {
                format!(
                    "SELECT {i} AS i, COUNT(*) AS n FROM \
                     (SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ? LIMIT ?)"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut values: Vec<Value> = Vec::with_capacity(words.len() * 2);
        for word in words {
            values.push(fts_query(std::slice::from_ref(word), tenant, collections, None).into());
            values.push(cap.unwrap_or(-1).into());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                &sql,
                values,
            ))
            .await
            .context("counting the scope's chunks per word")?;
        let mut df = vec![0_i64; words.len()];
        for row in rows {
            let i: i64 = row.try_get("", "i").context("reading a word index")?;
            let n: i64 = row.try_get("", "n").context("reading a frequency")?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| df.get_mut(i)) {
                *slot = n;
            }
        }
        Ok(df)
    }

    /// SQLite: FTS5 finds the scope's chunks that hold a word; BM25 is computed here with the
    /// scope's own statistics (FTS5's `bm25()` would use the whole table's, every tenant's).
    async fn search_sqlite(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: usize,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let stats = self.scope_stats(tenant, collections).await?;
        // Words too common in the scope are left out when a rarer one remains: counting stops
        // one past the threshold, so a common word costs no more than a rare one.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let common = (stats.chunks as f64 * COMMON_SHARE) as i64;
        let prune = words.len() >= 2 && stats.chunks >= PRUNE_FROM_ROWS;
        let cap = prune.then_some(common + 1);
        let mut df = self
            .scope_frequencies(words, tenant, collections, cap)
            .await?;
        let mut kept: Vec<(String, i64)> = words
            .iter()
            .cloned()
            .zip(df.iter().copied())
            .filter(|(_, d)| !prune || *d <= common)
            .collect();
        if kept.is_empty() {
            // Every word is common: the rarest alone, with exact counts.
            df = self
                .scope_frequencies(words, tenant, collections, None)
                .await?;
            kept = words
                .iter()
                .cloned()
                .zip(df.iter().copied())
                .min_by_key(|(_, d)| *d)
                .into_iter()
                .collect();
        }
        kept.retain(|(_, d)| *d > 0);
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        #[allow(clippy::cast_precision_loss)]
        let (n, average) = {
            let n = stats.chunks.max(1) as f64;
            let average = if stats.chunks > 0 && stats.tokens > 0 {
                stats.tokens as f64 / stats.chunks as f64
            } else {
                1.0
            };
            (n, average)
        };
        #[allow(clippy::cast_precision_loss)]
        let idfs: Vec<f64> = kept.iter().map(|(_, d)| idf(n, *d as f64)).collect();
        let folded: Vec<String> = kept.iter().map(|(w, _)| fold(w)).collect();
        let kept_words: Vec<String> = kept.into_iter().map(|(w, _)| w).collect();
        // The least weighty word stands in for a chunk whose words the tokenizer here reads
        // differently from FTS5's (it matched, so it holds one of them).
        let weakest = idfs
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);

        let batches: Vec<Option<&[DocumentId]>> = match allow {
            None => vec![None],
            Some(allow) => allow.chunks(ALLOW_BATCH).map(Some).collect(),
        };
        let mut found: Vec<Candidate> = Vec::new();
        for batch in batches {
            let query = fts_query(&kept_words, tenant, collections, batch);
            let rows = self
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    SQLITE_CANDIDATES,
                    [Value::from(query)],
                ))
                .await
                .context("searching chunks by keyword")?;
            for row in rows {
                let chunk: Uuid = row
                    .try_get("", "chunk_id")
                    .context("reading a keyword hit")?;
                let length: i64 = row.try_get("", "len").context("reading a chunk length")?;
                let text: String = row.try_get("", "text").context("reading a chunk text")?;
                let mut tf = term_frequencies(&text, &folded);
                if tf.iter().all(|t| *t == 0) {
                    tf[weakest] = 1;
                }
                #[allow(clippy::cast_precision_loss)]
                let norm = K1 * (1.0 - B + B * length.max(1) as f64 / average);
                let score: f64 = tf
                    .iter()
                    .zip(&idfs)
                    .filter(|(t, _)| **t > 0)
                    .map(|(t, idf)| {
                        let t = f64::from(*t);
                        idf * t * (K1 + 1.0) / (t + norm)
                    })
                    .sum();
                #[allow(clippy::cast_possible_truncation)]
                found.push(Candidate {
                    chunk_id: documents::ChunkId::from_uuid(chunk),
                    score: score as f32,
                });
            }
            // Keep memory bounded by k between batches (the order is total: exact merge).
            if found.len() > k.saturating_mul(4).max(1_024) {
                sort_best_first(&mut found);
                found.truncate(k);
            }
        }
        Ok(found)
    }

    async fn search_postgres(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: i64,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let sql = postgres_search(words.len(), collections.is_some(), allow.is_some());
        let mut values: Vec<Value> = vec![
            words.join(" ").into(),
            tenant.as_uuid().into(),
            postgres_scope(tenant, collections).into(),
            k.into(),
        ];
        if let Some(collections) = collections {
            values.push(uuid_list(collections.iter().map(CollectionId::as_uuid)).into());
        }
        if let Some(allow) = allow {
            values.push(uuid_list(allow.iter().map(DocumentId::as_uuid)).into());
        }
        values.extend(words.iter().map(|w| Value::from(w.clone())));
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
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        let mut found = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                self.search_postgres(
                    &words,
                    tenant,
                    collections.as_deref(),
                    limit,
                    allow.as_deref(),
                )
                .await?
            }
            _ => {
                self.search_sqlite(&words, tenant, collections.as_deref(), k, allow.as_deref())
                    .await?
            }
        };
        sort_best_first(&mut found);
        found.truncate(k);
        Ok(found)
    }
}

/// Best score first, then chunk id: a total order, so merged batches rank exactly.
fn sort_best_first(found: &mut [Candidate]) {
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
    fn term_frequencies_fold_as_fts5_does() {
        let words: Vec<String> = ["cafe", "ecole", "plan"].iter().map(|w| fold(w)).collect();
        assert_eq!(fold("ÉCOLE"), "ecole");
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
    fn postgres_parameters_are_numbered_in_order() {
        let sql = postgres_search(2, true, true);
        assert!(sql.contains("c.collection_id = ANY(string_to_array($5, ','"));
        assert!(sql.contains("terms.document_id = ANY(string_to_array($6, ','"));
        assert!(sql.contains(
            "plainto_tsquery('simple'::regconfig, $7) || plainto_tsquery('simple'::regconfig, $8)"
        ));
        let sql = postgres_search(1, false, false);
        assert!(sql.contains("plainto_tsquery('simple'::regconfig, $5)"));
        assert!(!sql.contains("$6"));
    }
}
