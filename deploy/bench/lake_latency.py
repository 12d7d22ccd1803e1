#!/usr/bin/env python3
"""`make bench-lake`: what a worker's flushes cost on a local path and on
s3:// (the local s3proxy), under a steady stream.

For each output, one release worker counts a stream published at --rate
events/s for --seconds, with output.flush_interval = --flush-interval; its
/metrics are read just before it is stopped:

- write: time to encode and store one flush's data files of a table
  (newsflow_flush_duration_seconds), mean;
- commit: time to commit one flush to one Delta table, lost races
  included (newsflow_lake_commit_duration_seconds), mean and p95;
- checkpoint: time to store one shard checkpoint, mean;
- commits per minute per worker, and lost races.

Prints a table and writes var/bench/lake_latency.json.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release"
OUT = ROOT / "var" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_env() -> dict:
    """The variables `deploy/local/s3.sh env` prints."""
    text = subprocess.run(
        ["bash", str(ROOT / "deploy/local/s3.sh"), "env"], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"export (\w+)=(\S+)", text))


def samples(metrics: str, name: str) -> list:
    """(labels, value) of every sample of `name`."""
    out = []
    for line in metrics.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            out.append((labels, float(line.rsplit(" ", 1)[1])))
    return out


def total(metrics: str, name: str, **match) -> float:
    return sum(v for labels, v in samples(metrics, name) if match.items() <= labels.items())


def p95(metrics: str, name: str, **match) -> float:
    buckets = sorted(
        (float(labels["le"]), v)
        for labels, v in samples(metrics, name + "_bucket")
        if match.items() <= labels.items()
    )
    count = buckets[-1][1] if buckets else 0
    if count == 0:
        return float("nan")
    below, lower = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= 0.95 * count:
            if upper == float("inf"):
                return lower
            share = (0.95 * count - below) / max(cumulative - below, 1e-9)
            return lower + (upper - lower) * share
        below, lower = cumulative, upper
    return lower


def run(name: str, uri: str, extra_env: dict, args, log: Path) -> dict:
    prefix = f"bench-lake-{name}-{int(time.time())}"
    metrics_port = free_port()
    env = dict(os.environ)
    env.update(extra_env)
    env.update(
        {
            "NEWSFLOW__KAFKA__PARTITIONS": "6",
            "NEWSFLOW__KAFKA__GROUP_ID": prefix,
            "NEWSFLOW__TOPICS__ARTICLES": f"{prefix}.articles",
            "NEWSFLOW__TOPICS__COMMENTS": f"{prefix}.comments",
            "NEWSFLOW__TOPICS__FORUM_POSTS": f"{prefix}.forum-posts",
            "NEWSFLOW__TOPICS__DEAD_LETTERS": f"{prefix}.dead-letters",
            "NEWSFLOW__OUTPUT__URI": uri,
            "NEWSFLOW__OUTPUT__FLUSH_INTERVAL": args.flush_interval,
            "RUST_LOG": "warn",
        }
    )
    count = args.rate * args.seconds
    with open(log, "ab") as err:
        producer_env = dict(env, NEWSFLOW__METRICS__LISTEN=f"127.0.0.1:{free_port()}")
        producer = subprocess.Popen(
            [BIN / "newsflow-producer", "generate", "--seed", "3", "--count", str(count), "--rate", str(args.rate)],
            env=producer_env, stdout=subprocess.DEVNULL, stderr=err,
        )
        time.sleep(3)  # the producer creates the topics
        worker_env = dict(env, NEWSFLOW__METRICS__LISTEN=f"127.0.0.1:{metrics_port}")
        worker = subprocess.Popen([BIN / "newsflow-consumer", "run"], env=worker_env, stderr=err)
        started = time.monotonic()
        producer.wait()
        time.sleep(5)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        minutes = (time.monotonic() - started) / 60
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    figures = {"uri": uri, "events": count, "minutes": minutes, "tables": {}}
    for table in ("events", "article_engagement", "article_totals"):
        commits = total(metrics, "newsflow_lake_commits_total", table=table, outcome="committed")
        seconds = total(metrics, "newsflow_lake_commit_duration_seconds_sum", table=table)
        attempts = total(metrics, "newsflow_lake_commit_duration_seconds_count", table=table)
        writes = total(metrics, "newsflow_flush_duration_seconds_count", dataset=table)
        write_seconds = total(metrics, "newsflow_flush_duration_seconds_sum", dataset=table)
        figures["tables"][table] = {
            "commits": commits,
            "lost_races": total(metrics, "newsflow_lake_commits_total", table=table, outcome="conflict_retried"),
            "commit_mean_ms": 1000 * seconds / attempts if attempts else float("nan"),
            "commit_p95_ms": 1000 * p95(metrics, "newsflow_lake_commit_duration_seconds", table=table),
            "write_mean_ms": 1000 * write_seconds / writes if writes else float("nan"),
        }
    checkpoints = total(metrics, "newsflow_checkpoint_duration_seconds_count")
    figures["checkpoint_mean_ms"] = (
        1000 * total(metrics, "newsflow_checkpoint_duration_seconds_sum") / checkpoints if checkpoints else float("nan")
    )
    figures["commits_per_minute"] = sum(t["commits"] for t in figures["tables"].values()) / minutes
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5000, help="events per second published")
    parser.add_argument("--seconds", type=int, default=60, help="how long the stream lasts")
    parser.add_argument("--flush-interval", default="10s", help="output.flush_interval of the worker")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "lake_latency.log"
    local = OUT / f"lake-latency-{int(time.time())}"
    results = [
        run("local", str(local), {}, args, log),
        run("s3", f"s3://newsflow/bench/lake-latency-{int(time.time())}", s3_env(), args, log),
    ]
    print(f"\n{args.rate} events/s for {args.seconds} s, output.flush_interval {args.flush_interval}, one worker, 6 shards\n")
    print(f"{'output':<8} {'table':<20} {'write ms':>9} {'commit ms':>10} {'p95 ms':>8} {'commits':>8} {'lost races':>10}")
    for result in results:
        kind = "s3" if result["uri"].startswith("s3://") else "local"
        for table, t in result["tables"].items():
            print(
                f"{kind:<8} {table:<20} {t['write_mean_ms']:>9.1f} {t['commit_mean_ms']:>10.1f} "
                f"{t['commit_p95_ms']:>8.1f} {t['commits']:>8.0f} {t['lost_races']:>10.0f}"
            )
        print(
            f"{kind:<8} checkpoint {result['checkpoint_mean_ms']:.1f} ms mean; "
            f"{result['commits_per_minute']:.1f} commits per minute (all three tables)"
        )
    (OUT / "lake_latency.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {OUT / 'lake_latency.json'}")


if __name__ == "__main__":
    main()
