#!/usr/bin/env python3
"""`make bench`: throughput, CPU and memory of newsflow on this machine.

One run of this script measures, each at least --runs times, medians
reported:

- producer: `newsflow-producer generate` publishing --events events
  (acks=all, idempotent) into fresh topics; the first set is then drained;
- raw baseline: `newsflow-bench raw-drain`, a counting-only consumer with the
  worker's fetch settings, draining those topics (the client's ceiling here);
- worker: `newsflow-consumer run --exit-when-caught-up` draining the same
  topics with a fresh group and lake (all three datasets, checkpoints,
  commits), alternating with the raw runs so their ratio holds on a noisy
  machine; plus the files it wrote and their mean size;
- HTTP ingest: `newsflow-producer serve` taking NDJSON batches of 1,000 from
  concurrent loopback clients;
- state: `newsflow-bench state` holding 10k, 100k and 1M distinct articles
  (eight events each, over a day of event time, drained as a worker would),
  peak RSS of the process from wait4(2).

For each process: events/s, MB/s, CPU seconds (user+sys) per million events,
and peak RSS, from wait4(2). Prints a table and writes var/bench/results.json.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release"
OUT = ROOT / "var" / "bench"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topic_env(prefix: str, partitions: int) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "NEWSFLOW__KAFKA__PARTITIONS": str(partitions),
            "NEWSFLOW__TOPICS__ARTICLES": f"{prefix}.articles",
            "NEWSFLOW__TOPICS__COMMENTS": f"{prefix}.comments",
            "NEWSFLOW__TOPICS__FORUM_POSTS": f"{prefix}.forum-posts",
            "NEWSFLOW__TOPICS__DEAD_LETTERS": f"{prefix}.dead-letters",
            "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{free_port()}",
            "RUST_LOG": "warn",
        }
    )
    return env


def measured(cmd: list, env: dict, log: Path) -> dict:
    """Runs cmd to completion; wall time, CPU and peak RSS from wait4."""
    with open(log, "ab") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed ({proc.returncode}); see {log}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "stdout": out.decode(),
    }


def figures(events: int, nbytes: int, run: dict) -> dict:
    return {
        "events_per_s": events / run["wall"],
        "mb_per_s": nbytes / run["wall"] / 1e6,
        "cpu_s_per_million": run["cpu"] / (events / 1e6),
        "peak_rss_mb": run["rss_mb"],
        "seconds": run["wall"],
    }


def median(runs: list) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def lake_files(lake: Path) -> tuple:
    sizes = [p.stat().st_size for p in lake.rglob("*.parquet")]
    return len(sizes), (sum(sizes) / len(sizes) if sizes else 0)


def ingest_run(env: dict, total: int, clients: int, log: Path) -> dict:
    port, metrics = free_port(), free_port()
    env = dict(env)
    env.update(
        {
            "NEWSFLOW__INGEST__LISTEN": f"127.0.0.1:{port}",
            "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{metrics}",
            "NEWSFLOW__INGEST__AUTH_TOKEN": TOKEN,
        }
    )
    with open(log, "ab") as err:
        proc = subprocess.Popen([BIN / "newsflow-producer", "serve"], env=env, stderr=err)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", metrics, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("bench: serve did not become ready")
        time.sleep(0.2)

    batches = total // 1000
    bodies = []
    for b in range(min(batches, 64)):
        lines = []
        for i in range(1000):
            n = b * 1000 + i
            lines.append(
                '{"schema_version":1,"event_id":"h-%d-%%d","event_type":"social_comment",'
                '"article_id":"http-%d","occurred_at":"2026-11-28T08:00:00Z","platform":"x",'
                '"author_id":"user-%d"}' % (n, n % 5000, n % 977)
            )
        bodies.append("\n".join(lines))
    accepted = [0] * clients
    sent_bytes = [0] * clients

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for b in range(k, batches, clients):
            body = (bodies[b % len(bodies)] % tuple(range(b * 1000, b * 1000 + 1000))).encode()
            conn.request("POST", "/v1/events", body, {"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            payload = json.loads(response.read())
            if response.status != 200:
                raise SystemExit(f"bench: ingest answered {response.status}: {payload}")
            accepted[k] += payload["accepted"]
            sent_bytes[k] += len(body)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    run = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}
    return figures(sum(accepted), sum(sent_bytes), run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--ingest-events", type=int, default=500_000)
    parser.add_argument("--ingest-clients", type=int, default=8)
    parser.add_argument("--state-articles", default="10000,100000,1000000")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "bench.log"
    log.write_text("")
    stamp = time.strftime("%Y%m%d%H%M%S")
    prefixes = [f"bench.{stamp}.{i}" for i in range(args.runs)]
    results = {"events": args.events, "partitions": args.partitions, "runs": args.runs}

    print(f"bench: publishing {args.events:,} events {args.runs}x (producer generate)", flush=True)
    producer_runs = []
    for i, prefix in enumerate(prefixes):
        env = topic_env(prefix, args.partitions)
        run = measured([BIN / "newsflow-producer", "generate", "--seed", "42", "--count", str(args.events)], env, log)
        producer_runs.append(run)
        print(f"  producer run {i + 1}: {args.events / run['wall']:,.0f} events/s", flush=True)

    drain_env = topic_env(prefixes[0], args.partitions)
    raw_runs, worker_runs, files = [], [], []
    for i in range(args.runs):
        raw = measured([BIN / "newsflow-bench", "raw-drain"], drain_env, log)
        raw["report"] = json.loads(raw["stdout"])
        raw_runs.append(raw)
        print(f"  raw drain {i + 1}: {raw['report']['messages'] / raw['wall']:,.0f} events/s", flush=True)
        lake = OUT / f"lake-{i}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(drain_env)
        env.update(
            {
                "NEWSFLOW__KAFKA__GROUP_ID": f"bench-worker-{stamp}-{i}",
                "NEWSFLOW__OUTPUT__URI": str(lake),
                "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{free_port()}",
            }
        )
        worker = measured([BIN / "newsflow-consumer", "run", "--exit-when-caught-up"], env, log)
        worker_runs.append(worker)
        files.append(lake_files(lake))
        shutil.rmtree(lake, ignore_errors=True)
        print(f"  worker drain {i + 1}: {raw['report']['messages'] / worker['wall']:,.0f} events/s", flush=True)

    messages = raw_runs[0]["report"]["messages"]
    nbytes = raw_runs[0]["report"]["bytes"]
    results["bytes_per_event"] = nbytes / messages
    results["producer"] = median([figures(args.events, nbytes * args.events / messages, r) for r in producer_runs])
    results["raw_drain"] = median([figures(messages, nbytes, r) for r in raw_runs])
    results["worker_drain"] = median([figures(messages, nbytes, r) for r in worker_runs])
    results["worker_to_raw"] = statistics.median(
        r["wall"] / w["wall"] for r, w in zip(raw_runs, worker_runs)
    )
    results["worker_files"] = {
        "files": statistics.median(f[0] for f in files),
        "mean_bytes": statistics.median(f[1] for f in files),
    }

    print(f"bench: HTTP ingest, {args.ingest_events:,} events in batches of 1,000, {args.ingest_clients} clients", flush=True)
    ingest_runs = []
    for i in range(args.runs):
        env = topic_env(f"bench.{stamp}.ingest", args.partitions)
        run = ingest_run(env, args.ingest_events, args.ingest_clients, log)
        ingest_runs.append(run)
        print(f"  ingest run {i + 1}: {run['events_per_s']:,.0f} events/s", flush=True)
    results["ingest"] = median(ingest_runs)

    results["state"] = {}
    for articles in [int(a) for a in args.state_articles.split(",")]:
        runs = []
        for _ in range(args.runs):
            run = measured([BIN / "newsflow-bench", "state", "--articles", str(articles)], dict(os.environ), log)
            runs.append(dict(json.loads(run["stdout"]), peak_rss_mb=run["rss_mb"]))
        results["state"][articles] = {
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "bytes_per_article": statistics.median(r["bytes_per_article"] for r in runs),
            "dedup_mb": statistics.median(r["dedup_bytes"] for r in runs) / 2**20,
            "articles_mb": statistics.median(r["article_bytes"] for r in runs) / 2**20,
        }
        print(f"  state {articles:,} articles: {results['state'][articles]['bytes_per_article']:,.0f} bytes each", flush=True)

    topics = [f"{p}.{t}" for p in prefixes + [f"bench.{stamp}.ingest"] for t in ("articles", "comments", "forum-posts", "dead-letters")]
    subprocess.run([BIN / "newsflow-bench", "delete-topics", *topics], env=dict(os.environ), stderr=subprocess.DEVNULL)

    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    row = "| {:<26} | {:>12} | {:>8} | {:>14} | {:>13} |"
    print()
    print(row.format("stage", "events/s", "MB/s", "CPU-s / M ev", "peak RSS MB"))
    print(row.format("-" * 26, "-" * 12, "-" * 8, "-" * 14, "-" * 13))
    for name, key in [("producer generate", "producer"), ("raw consumer (ceiling)", "raw_drain"), ("worker drain", "worker_drain"), ("HTTP ingest (serve)", "ingest")]:
        r = results[key]
        print(row.format(name, f"{r['events_per_s']:,.0f}", f"{r['mb_per_s']:.1f}", f"{r['cpu_s_per_million']:.2f}", f"{r['peak_rss_mb']:.0f}"))
    print()
    print(f"worker / raw baseline: {results['worker_to_raw']:.2f}   events: {messages:,} of {results['bytes_per_event']:.0f} bytes, {args.partitions} partitions")
    print(f"worker files: {results['worker_files']['files']:.0f}, mean {results['worker_files']['mean_bytes'] / 1e6:.2f} MB")
    for articles, s in results["state"].items():
        print(f"state, {int(articles):>9,} articles: peak RSS {s['peak_rss_mb']:.0f} MB, {s['bytes_per_article']:.0f} bytes per article (dedup {s['dedup_mb']:.0f} MB, articles {s['articles_mb']:.0f} MB)")
    print(f"\nwritten to {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
