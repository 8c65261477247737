#!/usr/bin/env python3
"""The keyword SQL of PostgreSQL before issue 16 (store-sql `postgres_search` at 7c481c7, k = 30),
as a psql script over a schema the retrieval bench filled (run the bench and keep its schema).

Usage: psql -Atq $URL -c "select text from <schema>.chunks order by random() limit 220" > sample.txt
       python3 keyword-sql-before.py <schema> <tenant uuid> old > old.sql
       psql -q $URL -f old.sql | grep ^Time   # then take p50 / p99 of the last 200
"""
import random, sys
random.seed(11)
S=sys.argv[1]; T=sys.argv[2]; mode=sys.argv[3]
hexid=T.replace('-','')
lines=[l.split() for l in open('sample.txt')]
print(f"SET search_path={S};")
print("\\timing on")
print("\\o /dev/null")
for n,ws in enumerate(lines[:220]):
    q=[random.choice(ws) for _ in range(3)]+[f"q{n}"]
    words=[]
    for w in q:
        if w not in words: words.append(w)
    if mode=='old':
        wq=" || ".join(f"plainto_tsquery('simple'::regconfig, '{w}')" for w in words)
        print(f"""WITH q AS (SELECT tsvector_to_array(to_tsvector('simple'::regconfig, '{' '.join(words)}')) AS lexemes),
cand AS MATERIALIZED (SELECT c.id, c.document_id, c.token_count, c.tsv FROM chunks AS c WHERE c.tenant_id = '{T}' AND c.tsv @@ (({wq}) && '''_t{hexid}'''::tsquery)),
stats AS (SELECT GREATEST(COALESCE(SUM(d.chunk_count), 0), 1)::float8 AS n, CASE WHEN COALESCE(SUM(d.chunk_count), 0) > 0 AND SUM(d.token_count) > 0 THEN SUM(d.token_count)::float8 / SUM(d.chunk_count) ELSE 1 END AS avgdl FROM documents AS d WHERE d.tenant_id = '{T}'),
terms AS (SELECT cand.id, cand.document_id, cand.token_count, t.lexeme, cardinality(t.positions)::float8 AS tf FROM cand CROSS JOIN q CROSS JOIN LATERAL unnest(ts_filter(setweight(cand.tsv, 'A', q.lexemes), '{{a}}')) AS t),
df AS (SELECT lexeme, COUNT(*)::float8 AS df FROM terms GROUP BY lexeme)
SELECT terms.id AS chunk_id, SUM(ln(1 + GREATEST(stats.n - df.df + 0.5, 0) / (df.df + 0.5)) * terms.tf * 2.2 / (terms.tf + 1.2 * (0.25 + 0.75 * GREATEST(terms.token_count, 1) / stats.avgdl)))::float8 AS score
FROM terms JOIN df ON df.lexeme = terms.lexeme CROSS JOIN stats GROUP BY terms.id ORDER BY score DESC, terms.id LIMIT 30;""")
