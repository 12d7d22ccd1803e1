#!/usr/bin/env python3
"""`make bench-compaction`: what compaction does to a lake of --events
events (default 5,000,000), and what analysts feel of it.

1. `newsflow-producer generate` publishes the events into fresh topics;
2. one release worker drains them into a fresh local lake with
   `output.flush_max_events` = --flush-events (default 25,000): a flush per
   25,000 events gives the file sizes a worker leaves behind on a live
   stream at its default 10 s flush (0.1 MB on average in `make bench`),
   without waiting hours for them;
3. before and after `newsflow-lake compact` (release, defaults: 128 MiB
   target), per table: data files in the log, their mean size, and, with
   DuckDB's `delta` extension, the time to read one article's footer
   (`article_footer WHERE article_id = …`) and every article's footer
   (median of --repeats warm runs each); compaction's wall time, CPU, peak
   RSS and throughput (MB read per second);
4. `newsflow-lake vacuum` with no retention, and its count of deleted files.

Prints a table and writes var/bench/compaction.json.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, OUT, ROOT, free_port, measured, settle, topic_env  # noqa: E402

import duckdb  # noqa: E402
import duckdb_extension_delta  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

TABLES = ("events", "article_engagement", "article_totals")


def table_files(lake: Path) -> dict:
    """Per table: data files in the log and their mean size in bytes."""
    files = {}
    for table in TABLES:
        sizes = [os.path.getsize(uri) for uri in DeltaTable(str(lake / table)).file_uris()]
        files[table] = {
            "files": len(sizes),
            "mean_bytes": statistics.mean(sizes) if sizes else 0,
            "bytes": sum(sizes),
        }
    return files


def duckdb_timings(lake: Path, article: str, repeats: int) -> dict:
    """Median wall time of one article's footer and of all footers, each
    in a fresh connection (opening the table, its log included, is part of
    what an analyst waits for)."""
    extension = os.path.join(
        os.path.dirname(duckdb_extension_delta.__file__),
        "extensions",
        "v" + duckdb.__version__,
        "delta.duckdb_extension",
    )
    sql_dir = ROOT / "deploy" / "sql"
    queries = {
        "one_footer_s": (
            "SELECT confirming_sources, social_comments, forum_posts FROM article_footer WHERE article_id = ?",
            [article],
        ),
        "all_footers_s": (
            "SELECT count(*), sum(confirming_sources), sum(social_comments), sum(forum_posts) FROM article_footer",
            [],
        ),
    }
    timings, answers = {}, {}
    for name, (sql, params) in queries.items():
        runs = []
        for _ in range(repeats):
            con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
            con.execute(f"LOAD '{extension}'")
            started = time.monotonic()
            con.execute("SET VARIABLE lake = ?", [str(lake)])
            con.execute((sql_dir / "duckdb.sql").read_text())
            con.execute((sql_dir / "article_footer.sql").read_text())
            answers[name] = con.execute(sql, params).fetchall()
            runs.append(time.monotonic() - started)
            con.close()
        timings[name] = statistics.median(runs)
    return {"timings": timings, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--flush-events", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "compaction.log"
    log.write_text("")
    stamp = time.strftime("%Y%m%d%H%M%S")
    env = topic_env(f"bench-compaction.{stamp}", args.partitions)
    lake = OUT / "lake-compaction"
    shutil.rmtree(lake, ignore_errors=True)
    env.update(
        {
            "NEWSFLOW__KAFKA__GROUP_ID": f"bench-compaction-{stamp}",
            "NEWSFLOW__OUTPUT__URI": str(lake),
            "NEWSFLOW__OUTPUT__FLUSH_MAX_EVENTS": str(args.flush_events),
        }
    )

    print(f"bench-compaction: publishing {args.events:,} events", flush=True)
    measured([BIN / "newsflow-producer", "generate", "--seed", "42", "--count", str(args.events)], env, log)
    settle()
    print("bench-compaction: draining them into a fresh lake", flush=True)
    env["NEWSFLOW__METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
    drain = measured([BIN / "newsflow-consumer", "run", "--exit-when-caught-up"], env, log)
    print(f"  worker: {drain['wall']:.1f} s", flush=True)

    # The most revised article: the worst case of a lookup.
    con = duckdb.connect()
    article = con.execute(
        "SELECT article_id FROM (SELECT article_id, count(*) AS n FROM read_parquet(?) GROUP BY article_id) "
        "ORDER BY n DESC, article_id LIMIT 1",
        [DeltaTable(str(lake / "article_totals")).file_uris()],
    ).fetchone()[0]
    con.close()

    before_files = table_files(lake)
    before = duckdb_timings(lake, article, args.repeats)
    print("bench-compaction: compacting", flush=True)
    compact = measured([BIN / "newsflow-lake", "compact"], env, log)
    report = json.loads(compact["stdout"])
    after_files = table_files(lake)
    after = duckdb_timings(lake, article, args.repeats)
    if after["answers"] != before["answers"]:
        sys.exit(f"bench-compaction: compaction changed the answers: {before['answers']} -> {after['answers']}")
    vacuum_env = dict(env)
    vacuum_env.update({
        "NEWSFLOW__VACUUM__RETENTION": "0s",
        "NEWSFLOW__VACUUM__LOG_RETENTION": "0s",
        "NEWSFLOW__VACUUM__ALLOW_UNSAFE_RETENTION": "true",
    })
    # Vacuum spares files younger than an hour whatever the retention; the
    # bench's lake is minutes old, so its files are dated two hours back.
    two_hours_ago = time.time() - 7200
    for path in Path(lake).rglob("*"):
        if path.is_file():
            os.utime(path, (two_hours_ago, two_hours_ago))
    vacuum = measured([BIN / "newsflow-lake", "vacuum"], vacuum_env, log)
    vacuum_report = json.loads(vacuum["stdout"])

    bytes_read = sum(t["bytes_read"] for t in report["compaction"]["tables"])
    results = {
        "events": args.events,
        "flush_max_events": args.flush_events,
        "article": article,
        "before": {"files": before_files, **before["timings"]},
        "after": {"files": after_files, **after["timings"]},
        "compaction": {
            "seconds": compact["wall"],
            "cpu_s": compact["cpu"],
            "peak_rss_mb": compact["rss_mb"],
            "bytes_read": bytes_read,
            "mb_per_s": bytes_read / compact["wall"] / 1e6,
            "tables": report["compaction"]["tables"],
        },
        "vacuum": {
            "seconds": vacuum["wall"],
            "data_files_deleted": sum(t["data_files_deleted"] for t in vacuum_report["vacuum"]["tables"]),
            "log_files_deleted": sum(t["log_files_deleted"] for t in vacuum_report["vacuum"]["tables"]),
        },
        "answers": before["answers"],
    }
    (OUT / "compaction.json").write_text(json.dumps(results, indent=2))

    print(f"\n{args.events:,} events, lake written with output.flush_max_events = {args.flush_events:,}")
    print(f"{'table':<20}{'files before':>14}{'mean MB':>10}{'files after':>13}{'mean MB':>10}")
    for table in TABLES:
        b, a = before_files[table], after_files[table]
        print(f"{table:<20}{b['files']:>14,}{b['mean_bytes'] / 1e6:>10.3f}{a['files']:>13,}{a['mean_bytes'] / 1e6:>10.3f}")
    c = results["compaction"]
    print(
        f"compaction: {c['seconds']:.1f} s, {c['bytes_read'] / 1e6:,.0f} MB read, {c['mb_per_s']:.1f} MB/s, "
        f"{c['cpu_s']:.1f} CPU-s, peak RSS {c['peak_rss_mb']:.0f} MB"
    )
    print(f"DuckDB (median of {args.repeats}, fresh connection each)   before    after")
    print(f"  one article's footer ({article})".ljust(44) + f"{before['timings']['one_footer_s']:>8.3f} s{after['timings']['one_footer_s']:>8.3f} s")
    print("  every article's footer".ljust(44) + f"{before['timings']['all_footers_s']:>8.3f} s{after['timings']['all_footers_s']:>8.3f} s")
    v = results["vacuum"]
    print(f"vacuum (no retention): {v['data_files_deleted']:,} data files and {v['log_files_deleted']:,} log entries deleted in {v['seconds']:.1f} s")
    print(f"results: {OUT / 'compaction.json'}")


if __name__ == "__main__":
    main()
