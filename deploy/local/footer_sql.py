"""The seed article's footer as DuckDB reads it through the Delta log, for
the demo's comparison with the footer API (the same query report.py runs)."""
import os
from pathlib import Path

import duckdb
import duckdb_extension_delta

SQL = Path(__file__).resolve().parents[1] / "sql"


def connect(lake: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the delta extension and the article_footer
    view over the lake at `lake`."""
    extension = os.path.join(
        os.path.dirname(duckdb_extension_delta.__file__),
        "extensions", "v" + duckdb.__version__, "delta.duckdb_extension",
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    con.execute("SET VARIABLE lake = ?", [lake])
    con.execute((SQL / "duckdb.sql").read_text())
    con.execute((SQL / "article_footer.sql").read_text())
    return con


def footer_from_duckdb(lake: str, article_id: str) -> tuple:
    """(confirming_sources, social_comments, forum_posts) of one article."""
    row = connect(lake).execute(
        "SELECT confirming_sources, social_comments, forum_posts FROM article_footer WHERE article_id = ?",
        [article_id],
    ).fetchone()
    return tuple(row) if row else (None, None, None)
