-- article_footer: one row per article, its current footer.
--
-- `article_totals` keeps a row for every change of an article (its
-- snapshots); the current footer is the row with the article's highest
-- `version`. This view picks it with one grouped aggregate, no window
-- function, so analysts query `article_footer` like a plain table:
--
--   SELECT * FROM article_footer WHERE article_id = 'a-123';
--
-- It runs unchanged in DuckDB (with `article_totals` a view over
-- `delta_scan('<lake>/article_totals')`, see deploy/sql/duckdb.sql) and in
-- Spark SQL (with `article_totals` a temporary view over
-- `spark.read.format("delta")`). DataFusion and Polars spell it
-- differently: docs/querying.md. The readers test runs this very file.
CREATE OR REPLACE TEMPORARY VIEW article_footer AS
SELECT
    article_id,
    max_by(title, version) AS title,
    max_by(confirming_sources, version) AS confirming_sources,
    max_by(social_comments, version) AS social_comments,
    max_by(forum_posts, version) AS forum_posts,
    max_by(first_event_at, version) AS first_event_at,
    max_by(last_event_at, version) AS last_event_at,
    max(version) AS version,
    max_by(emitted_at, version) AS emitted_at
FROM article_totals
GROUP BY article_id;
