-- Views over newsflow's Delta tables for DuckDB (1.5 with its `delta`
-- extension; `httpfs` as well for s3://). Set the lake's root first, then
-- read this file and deploy/sql/article_footer.sql:
--
--   duckdb -cmd "SET VARIABLE lake = 'var/lake'" \
--          -cmd ".read deploy/sql/duckdb.sql" -cmd ".read deploy/sql/article_footer.sql" \
--          -c "SELECT * FROM article_footer ORDER BY social_comments DESC LIMIT 10"
--
-- For s3:// create a secret first, e.g.
--   CREATE SECRET (TYPE s3, PROVIDER credential_chain);
CREATE OR REPLACE TEMPORARY VIEW article_totals AS
    SELECT * FROM delta_scan(getvariable('lake') || '/article_totals');
CREATE OR REPLACE TEMPORARY VIEW article_engagement AS
    SELECT * FROM delta_scan(getvariable('lake') || '/article_engagement');
CREATE OR REPLACE TEMPORARY VIEW events AS
    SELECT * FROM delta_scan(getvariable('lake') || '/events');
