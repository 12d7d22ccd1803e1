#!/usr/bin/env python3
"""Prints what `make demo` produced, read from the Delta tables with DuckDB's
`delta` extension (through the tables' logs): the seed article's footer (checked against the footer printed on the
article page), the most-discussed articles, and the queries to reproduce
them. Exits 1 if the footer differs from the page."""
import re
import sys

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from footer_sql import connect  # noqa: E402

lake, page_path = sys.argv[1], sys.argv[2]
SEED = "politik.2026-11-01.russland-nordkorea-buendnis"
# The views analysts use: the tables over delta_scan, and one row per
# article (deploy/sql/article_footer.sql). The extension ships in the
# duckdb-extension-delta wheel, built for this DuckDB version: no
# extension server is needed.
con = connect(lake)
row = con.execute(
    "SELECT title, confirming_sources, social_comments, forum_posts FROM article_footer WHERE article_id = ?", [SEED]
).fetchone()
if row is None:
    sys.exit(f"the seed article {SEED} is not in {lake}/article_totals")
title, sources, comments, posts = row

page = open(page_path, encoding="utf-8").read()
def on_page(label):
    return int(re.search(re.escape(label) + r"\s*(\d+)", page).group(1))
expected = (on_page("bestätigen:"), on_page("sozialen Medien:"), on_page("Forenbeiträge:"))

print(f"\n  {title}\n  ({SEED})\n")
print(f"    Analysierte Quellen, die diese Meldung bestätigen: {sources}")
print(f"    Analysierte Kommentare in sozialen Medien: {comments}")
print(f"    Analysierte Forenbeiträge: {posts}\n")
if (sources, comments, posts) == expected:
    print(f"  matches the footer printed on the article page ({' / '.join(map(str, expected))})")
else:
    print(f"  DIFFERS from the article page, which says {' / '.join(map(str, expected))}")

top = con.execute(
    "SELECT article_id, coalesce(title, '(no title yet)'), confirming_sources, social_comments, forum_posts "
    "FROM article_footer ORDER BY social_comments + forum_posts DESC, article_id LIMIT 10"
).fetchall()
articles, events = con.execute(
    "SELECT (SELECT count(*) FROM article_footer), (SELECT count(*) FROM events)"
).fetchone()
print(f"\n  Most-discussed of {articles} articles ({events} archived events):\n")
print(f"  {'article':<34} {'sources':>7} {'comments':>8} {'posts':>6}  title")
for article_id, t, s, c, p in top:
    print(f"  {article_id:<34} {s:>7} {c:>8} {p:>6}  {t[:48]}")

print(f"""
  Reproduce with DuckDB and its delta extension (INSTALL delta; LOAD delta;
  or the duckdb-extension-delta package), reading through the Delta log:

    duckdb -cmd "SET VARIABLE lake = '{lake}'" -cmd ".read deploy/sql/duckdb.sql" \\
           -cmd ".read deploy/sql/article_footer.sql" \\
           -c "SELECT * FROM article_footer ORDER BY social_comments + forum_posts DESC LIMIT 10"

  Every flush adds small files; pack them and trim the logs, beside running
  workers (hourly as a CronJob in production):

    target/release/newsflow-lake maintain
""")
sys.exit(0 if (sources, comments, posts) == expected else 1)
