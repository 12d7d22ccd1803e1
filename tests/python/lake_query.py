"""Runs one SQL query over newsflow's Delta tables with DuckDB, for the
end-to-end tests, and prints the rows as JSON.

    lake_query.py LAKE_URI SQL

The SQL names the tables `article_totals`, `article_engagement` and `events`.
A local lake is read with DuckDB's own `delta` extension (`delta_scan`, the
contract's query); a lake on object storage through the `deltalake`
package's Arrow dataset, with the AWS_* variables of the environment. Both
read through the transaction log, never by globbing the folders. A table
whose log does not exist yet is simply absent.
"""

import json
import os
import sys

import duckdb

TABLES = ("article_totals", "article_engagement", "events")


def connect(uri: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    if "://" not in uri or uri.startswith("file://"):
        import duckdb_extension_delta

        extension = os.path.join(
            os.path.dirname(duckdb_extension_delta.__file__),
            "extensions",
            "v" + duckdb.__version__,
            "delta.duckdb_extension",
        )
        con.execute(f"LOAD '{extension}'")
        root = uri.removeprefix("file://")
        for table in TABLES:
            if os.path.isdir(os.path.join(root, table, "_delta_log")):
                con.execute(
                    f"CREATE VIEW {table} AS SELECT * FROM delta_scan('{root}/{table}')"
                )
    else:
        from deltalake import DeltaTable

        for table in TABLES:
            try:
                dataset = DeltaTable(f"{uri.rstrip('/')}/{table}").to_pyarrow_dataset()
            except Exception as e:  # the table may not exist yet
                if "not a Delta table" in str(e) or "no log files" in str(e).lower():
                    continue
                raise
            con.register(table, dataset)
    return con


def main() -> None:
    uri, sql = sys.argv[1], sys.argv[2]
    rows = connect(uri).sql(sql).fetchall()
    print(json.dumps(rows, default=str))


if __name__ == "__main__":
    main()
