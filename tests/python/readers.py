"""Reads the current footer of every article from newsflow's Delta tables
with every common reader, each the way docs/querying.md tells analysts to,
and prints them as JSON:
{reader: {article_id: [confirming_sources, social_comments, forum_posts]}}.

    readers.py LAKE_URI [READER ...]

Readers (all by default): duckdb (its own `delta` extension, `httpfs` for
s3://, and deploy/sql/article_footer.sql), polars (`scan_delta`), pandas
and pyarrow (through the `deltalake` package), datafusion (over the
`deltalake` table provider). Each reads through the transaction log. For
s3:// the AWS_* variables of the environment apply.
"""

import json
import os
import sys
from pathlib import Path

COUNTS = ["confirming_sources", "social_comments", "forum_posts"]
SQL = Path(__file__).resolve().parents[2] / "deploy" / "sql"


def footers_from_rows(rows) -> dict:
    return {r[0]: [int(v) for v in r[1:4]] for r in rows}


def duckdb_reader(root: str) -> dict:
    import duckdb
    import duckdb_extension_delta
    import duckdb_extension_httpfs

    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    for package, name in ((duckdb_extension_httpfs, "httpfs"), (duckdb_extension_delta, "delta")):
        extension = os.path.join(
            os.path.dirname(package.__file__),
            "extensions",
            "v" + duckdb.__version__,
            f"{name}.duckdb_extension",
        )
        con.execute(f"LOAD '{extension}'")
    if root.startswith("s3://"):
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        con.execute(
            "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
            "URL_STYLE 'path', USE_SSL ?)",
            [
                os.environ["AWS_ACCESS_KEY_ID"],
                os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_REGION", "us-east-1"),
                endpoint.split("://", 1)[-1],
                endpoint.startswith("https://"),
            ],
        )
    con.execute("SET VARIABLE lake = ?", [root.removeprefix("file://")])
    con.execute((SQL / "duckdb.sql").read_text())
    con.execute((SQL / "article_footer.sql").read_text())
    return footers_from_rows(
        con.sql(f"SELECT article_id, {', '.join(COUNTS)} FROM article_footer").fetchall()
    )


def polars_reader(root: str) -> dict:
    import polars as pl

    frame = (
        pl.scan_delta(f"{root}/article_totals")
        .group_by("article_id")
        .agg(pl.col(COUNTS).sort_by("version").last())
        .collect()
    )
    return footers_from_rows(frame.select(["article_id", *COUNTS]).rows())


def pandas_reader(root: str) -> dict:
    from deltalake import DeltaTable

    frame = DeltaTable(f"{root}/article_totals").to_pandas(
        columns=["article_id", "version", *COUNTS]
    )
    latest = frame.sort_values("version").groupby("article_id").tail(1)
    return footers_from_rows(latest[["article_id", *COUNTS]].itertuples(index=False))


def pyarrow_reader(root: str) -> dict:
    from deltalake import DeltaTable

    table = DeltaTable(f"{root}/article_totals").to_pyarrow_table(
        columns=["article_id", "version", *COUNTS]
    )
    table = table.sort_by([("article_id", "ascending"), ("version", "descending")])
    footers = {}
    for row in table.to_pylist():
        # Sorted so that an article's first row is its latest version.
        footers.setdefault(row["article_id"], [int(row[c]) for c in COUNTS])
    return footers


def datafusion_reader(root: str) -> dict:
    from datafusion import SessionContext
    from deltalake import DeltaTable

    ctx = SessionContext()
    table = DeltaTable(f"{root}/article_totals")
    if root.startswith("s3://"):
        # deltalake's table provider plans the scan, but over its FFI
        # boundary DataFusion 55 looks the s3:// store up in its own
        # registry and finds none; deltalake's Arrow dataset reads the same
        # files of the same log version.
        ctx.register_dataset("article_totals", table.to_pyarrow_dataset())
    else:
        ctx.register_table("article_totals", table)
    columns = ", ".join(f"last_value({c} ORDER BY version) AS {c}" for c in COUNTS)
    rows = ctx.sql(
        f"SELECT article_id, {columns} FROM article_totals GROUP BY article_id"
    ).to_pylist()
    return {r["article_id"]: [int(r[c]) for c in COUNTS] for r in rows}


READERS = {
    "duckdb": duckdb_reader,
    "polars": polars_reader,
    "pandas": pandas_reader,
    "pyarrow": pyarrow_reader,
    "datafusion": datafusion_reader,
}


def main() -> None:
    root = sys.argv[1].rstrip("/")
    names = sys.argv[2:] or list(READERS)
    print(json.dumps({name: READERS[name](root) for name in names}))


if __name__ == "__main__":
    main()
