//! [`KeywordIndex`] on SQL: BM25 over the words of stored chunks, with an index the database
//! maintains itself from `chunks` (migration `m20261122_000012_retrieval`), so it can never
//! drift from what is stored.
//!
//! Query words ([`query_words`]): the lowercase runs of Unicode letters and digits of the
//! client's query, deduplicated, at most [`retrieval::MAX_QUERY_WORDS`]. Client text never reaches `MATCH`
//! or a `tsquery` parser: on SQLite each word is a quoted FTS5 string; on PostgreSQL each word
//! is a bound parameter of `plainto_tsquery`. A query without words finds nothing.
//!
//! - SQLite: FTS5's own `bm25(chunk_fts, 1.0, 0.0)` (the `scope` column weighs nothing) over
//!   `text : ("w1" OR "w2" …) AND scope : "t<tenant>" [AND scope : ("c…" OR …)]
//!   [AND scope : ("d…" OR …)]`: tenant, collections and allowed documents are intersections
//!   inside the FTS index, never a filter after a LIMIT. FTS5's statistics (row count, average
//!   length, document frequencies) are table-wide: every tenant's chunks count, which moves
//!   scores but never what a search can see; because they do not depend on the query's other
//!   terms, a long `allow` list is searched in batches whose best results merge exactly. (The
//!   three scope tokens count in FTS5's row length: the same shift for every row.)
//! - PostgreSQL: candidates are the tenant's chunks whose `tsv` matches the OR of the words and
//!   the scope lexemes (one GIN intersection), then BM25 in SQL: idf from document frequencies
//!   among those candidates (every chunk of the scope that has a word is one), tf from the
//!   positions of the query's lexemes in `tsv` (kept by `ts_filter(setweight(tsv, 'A',
//!   lexemes), '{a}')`, which is far cheaper than unnesting every lexeme of every candidate),
//!   length from the chunk's `token_count` against the scope's
//!   average (summed from `documents`, whose `chunk_count` and `token_count` are written with
//!   the chunks), k1 = 1.2, b = 0.75, idf = ln(1 + (N − df + 0.5) / (df + 0.5)). Statistics are
//!   scope-wide here: a tenant's scores do not move with other tenants' data, at the cost of
//!   reading every candidate of the scope (no top-k shortcut). `allow` filters candidates
//!   before the LIMIT, after the statistics.
//!
//! Scores are "higher is better" on both (FTS5's negative bm25 is negated), but not equal
//! across backends: the statistics differ as said, FTS5 counts words where PostgreSQL uses
//! `token_count`, and FTS5 folds diacritics (`remove_diacritics 2`) where `simple` does not.

use std::collections::{HashMap, HashSet};

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

const SQLITE_SEARCH: &str = "\
SELECT r.chunk_id AS chunk_id, m.score AS score \
FROM ( \
    SELECT rowid AS rid, bm25(chunk_fts, 1.0, 0.0) AS score \
    FROM chunk_fts WHERE chunk_fts MATCH $1 \
    ORDER BY score, rowid LIMIT $2 \
) AS m JOIN chunk_fts_rows AS r ON r.rowid = m.rid \
ORDER BY m.score, r.chunk_id";

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

fn candidates(rows: Vec<sea_orm::QueryResult>, negate: bool) -> Result<Vec<Candidate>, IndexError> {
    rows.into_iter()
        .map(|row| {
            let chunk: Uuid = row
                .try_get("", "chunk_id")
                .context("reading a keyword hit")?;
            let score: f64 = row.try_get("", "score").context("reading a BM25 score")?;
            let score = if negate { -score } else { score } as f32;
            Ok(Candidate {
                chunk_id: documents::ChunkId::from_uuid(chunk),
                score,
            })
        })
        .collect()
}

/// A word in more than this share of all chunks is left out of an SQLite keyword query (when
/// a rarer word remains): its BM25 weight is small (idf ≤ ln 10) but ranking it means scoring
/// every chunk it is in. The effect of a stop-word list, for every language, from the index's
/// own statistics.
const COMMON_SHARE: f64 = 0.1;
/// Below this many chunks in the table every word is kept.
const PRUNE_FROM_ROWS: i64 = 1_000;

impl SqlStore {
    /// `words` without those too common to be worth ranking ([`COMMON_SHARE`]); never empty
    /// when `words` is not. Frequencies are FTS5's, table-wide (`chunk_fts_terms`); a word FTS5
    /// folds differently (diacritics) is looked up as is and, not found, counts as rare.
    async fn selective_words(&self, words: &[String]) -> Result<Vec<String>, IndexError> {
        if words.len() < 2 {
            return Ok(words.to_vec());
        }
        let total = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COALESCE(MAX(rowid), 0) AS n FROM chunk_fts_rows",
            ))
            .await
            .context("counting indexed chunks")?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()
            .context("reading the chunk count")?
            .unwrap_or(0);
        if total < PRUNE_FROM_ROWS {
            return Ok(words.to_vec());
        }
        let sql = vec!["SELECT term, doc FROM chunk_fts_terms WHERE term = ?"; words.len()]
            .join(" UNION ALL ");
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                &sql,
                words.iter().map(|w| Value::from(w.clone())),
            ))
            .await
            .context("reading term frequencies")?;
        let mut df: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let term: String = row.try_get("", "term").context("reading a term")?;
            let doc: i64 = row.try_get("", "doc").context("reading a frequency")?;
            df.insert(term, doc);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let common = (total as f64 * COMMON_SHARE) as i64;
        let freq = |w: &String| df.get(w).copied().unwrap_or(0);
        let rare: Vec<String> = words
            .iter()
            .filter(|w| freq(w) <= common)
            .cloned()
            .collect();
        if !rare.is_empty() {
            return Ok(rare);
        }
        Ok(words
            .iter()
            .min_by_key(|w| freq(w))
            .cloned()
            .into_iter()
            .collect())
    }

    async fn search_sqlite(
        &self,
        words: &[String],
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        k: i64,
        allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        let words = self.selective_words(words).await?;
        let words = words.as_slice();
        let batches: Vec<Option<&[DocumentId]>> = match allow {
            None => vec![None],
            Some(allow) => allow.chunks(ALLOW_BATCH).map(Some).collect(),
        };
        let mut found: Vec<Candidate> = Vec::new();
        for batch in batches {
            let query = fts_query(words, tenant, collections, batch);
            let statement = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                SQLITE_SEARCH,
                [Value::from(query), Value::from(k)],
            );
            let rows = self
                .db
                .query_all_raw(statement)
                .await
                .context("searching chunks by keyword")?;
            found.extend(candidates(rows, true)?);
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
        candidates(rows, false)
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
                self.search_sqlite(
                    &words,
                    tenant,
                    collections.as_deref(),
                    limit,
                    allow.as_deref(),
                )
                .await?
            }
        };
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk_id.cmp(&b.chunk_id))
        });
        found.truncate(k);
        Ok(found)
    }
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
