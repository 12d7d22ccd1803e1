"""Reads one article's current footer from newsflow's Delta tables with
every reader the README names that runs here, and prints them as JSON:
{reader: [confirming_sources, social_comments, forum_posts]}.

    readers.py LAKE_URI ARTICLE_ID

Each reads through the transaction log: Polars (`scan_delta`), pandas and
pyarrow through the `deltalake` package, and DuckDB over the `deltalake`
dataset. For s3:// the AWS_* variables of the environment apply.
"""

import json
import sys

import duckdb
import polars as pl
from deltalake import DeltaTable

COUNTS = ["confirming_sources", "social_comments", "forum_posts"]


def main() -> None:
    root, article = sys.argv[1].rstrip("/"), sys.argv[2]
    totals = f"{root}/article_totals"
    footers = {}

    latest = (
        pl.scan_delta(totals)
        .filter(pl.col("article_id") == article)
        .sort("version", descending=True)
        .head(1)
        .collect()
    )
    footers["polars"] = [int(latest[c][0]) for c in COUNTS]

    frame = DeltaTable(totals).to_pandas()
    row = frame[frame.article_id == article].sort_values("version").iloc[-1]
    footers["pandas"] = [int(row[c]) for c in COUNTS]

    table = DeltaTable(totals).to_pyarrow_table()
    rows = [r for r in table.to_pylist() if r["article_id"] == article]
    best = max(rows, key=lambda r: r["version"])
    footers["pyarrow"] = [int(best[c]) for c in COUNTS]

    dataset = DeltaTable(totals).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("article_totals", dataset)
    footers["duckdb_over_deltalake"] = list(
        con.execute(
            "SELECT confirming_sources, social_comments, forum_posts FROM article_totals "
            "WHERE article_id = ? ORDER BY version DESC LIMIT 1",
            [article],
        ).fetchone()
    )
    print(json.dumps(footers))


if __name__ == "__main__":
    main()
