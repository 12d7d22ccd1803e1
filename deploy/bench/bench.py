#!/usr/bin/env python3
"""`make bench`: throughput, CPU and memory of newsflow on this machine.

One run of this script measures, each at least --runs times, medians
reported:

- producer: `newsflow-producer generate` publishing --events events
  (acks=all, idempotent) into fresh topics; the first set is then drained;
- drains, on the lz4 topics the producer writes by default and on the same
  events published uncompressed, each drain after the machine has settled
  (dirty pages synced, the broker idle: a drain right after publishing, or
  right after another drain, runs 2 to 2.5 times slower, which is what made
  earlier raw figures low):
  - raw baseline: `newsflow-bench raw-drain`, a counting-only consumer with
    the worker's fetch settings (the client library's ceiling here);
  - kcat: one `kcat` per topic printing offsets only, a tool nobody here
    wrote;
  - worker: `newsflow-consumer run --exit-when-caught-up` with a fresh group
    and lake (all three tables, checkpoints, commits), alternating with the
    raw runs so their ratio holds on a noisy machine; plus the files it
    wrote and their mean size. It runs with the allocator settings the image
    and the worker Deployment ship (the Dockerfile's `ENV MIMALLOC_*`
    lines), as pods run it; on the lz4 topics also without them (mimalloc's
    own defaults), as a bare binary runs;
- cores: the worker drain pinned to one core (`taskset`) against all of
  them, with the broker's CPU over each drain;
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
import re
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
        # The allocator's trade shows here: memory returned to the kernel
        # sooner comes back as page faults and system time.
        "sys": usage.ru_stime,
        "faults": usage.ru_minflt,
        "rss_mb": usage.ru_maxrss / 1024,
        "stdout": out.decode(),
    }


def broker_cpu_ticks():
    """CPU ticks the local broker has used, or None when it is not ours."""
    try:
        pid = (ROOT / "var" / "kafka" / "kafka.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def settle(limit: float = 30.0) -> None:
    """Waits until written data is on disk and the broker is idle (under 5 %
    of a core for a second), so a drain measures reading, not the tail of
    the previous writes."""
    os.sync()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = broker_cpu_ticks()
        time.sleep(1)
        after = broker_cpu_ticks()
        if before is None or after is None or after - before < 5:
            return


def kcat_drain(env: dict, log: Path) -> dict:
    """One kcat per event topic, offsets only, all at once; the wall time of
    the slowest and the CPU of all three."""
    started = time.monotonic()
    procs = []
    with open(log, "ab") as err:
        for topic in ("articles", "comments", "forum-posts"):
            cmd = ["kcat", "-C", "-b", "127.0.0.1:9092", "-t", f"{env['NEWSFLOW__TOPICS__ARTICLES'].rsplit('.', 1)[0]}.{topic}",
                   "-o", "beginning", "-e", "-q", "-f", "%o\n"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err))
        lines, cpu = 0, 0.0
        for proc in procs:
            lines += proc.stdout.read().count(b"\n")
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"bench: kcat failed; see {log}")
            cpu += usage.ru_utime + usage.ru_stime
    return {"wall": time.monotonic() - started, "cpu": cpu, "rss_mb": 0.0, "messages": lines}


def figures(events: int, nbytes: int, run: dict) -> dict:
    return {
        "events_per_s": events / run["wall"],
        "mb_per_s": nbytes / run["wall"] / 1e6,
        "cpu_s_per_million": run["cpu"] / (events / 1e6),
        "sys_s_per_million": run.get("sys", 0.0) / (events / 1e6),
        "page_faults_per_million": run.get("faults", 0) / (events / 1e6),
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


def shipped_allocator_env() -> dict:
    """The allocator's settings as the image ships them (the Dockerfile's
    `ENV MIMALLOC_*` lines; the worker Deployment sets the same, see
    `make check-deploy`)."""
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    return dict(re.findall(r"^ENV (MIMALLOC_\w+)=(\S+)$", dockerfile, re.MULTILINE))


def worker_drain(env: dict, lake: Path, group: str, log: Path, cores: str = None, shipped: bool = True) -> dict:
    """One `newsflow-consumer run --exit-when-caught-up` with a fresh group
    and lake, pinned to `cores` (taskset) when given, with the allocator
    settings the image ships unless `shipped` is false; with the broker's
    CPU over the same drain."""
    shutil.rmtree(lake, ignore_errors=True)
    worker_env = {k: v for k, v in env.items() if not k.startswith("MIMALLOC_")}
    if shipped:
        worker_env.update(shipped_allocator_env())
    worker_env.update(
        {
            "NEWSFLOW__KAFKA__GROUP_ID": group,
            "NEWSFLOW__OUTPUT__URI": str(lake),
            "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{free_port()}",
        }
    )
    pin = ["taskset", "-c", cores] if cores else []
    before = broker_cpu_ticks()
    run = measured(pin + [BIN / "newsflow-consumer", "run", "--exit-when-caught-up"], worker_env, log)
    after = broker_cpu_ticks()
    run["broker_cpu"] = (after - before) / os.sysconf("SC_CLK_TCK") if before is not None and after is not None else None
    return run


def cores_scaling(env: dict, runs: int, stamp: str, log: Path) -> dict:
    """The worker pinned to one core against all of them, alternating; each
    with the broker's CPU over the same drain, to show what was left."""
    allowed = sorted(os.sched_getaffinity(0))
    pinned = {"1 core": "0", f"{len(allowed)} cores": ",".join(str(c) for c in allowed)}
    results = {name: [] for name in pinned}
    for i in range(runs):
        for name, cores in pinned.items():
            settle()
            lake = OUT / f"lake-cores-{i}-{cores.replace(',', '_')}"
            results[name].append(worker_drain(env, lake, f"bench-cores-{stamp}-{i}-{cores}", log, cores))
    return results


def drains(compression: str, env: dict, runs: int, stamp: str, log: Path) -> dict:
    """Raw, kcat and worker drains of one topic set, each after settling."""
    print(f"bench: draining {compression} topics", flush=True)
    raw_runs, kcat_runs, worker_runs, bare_runs, files = [], [], [], [], []
    for i in range(runs):
        settle()
        raw = measured([BIN / "newsflow-bench", "raw-drain"], env, log)
        raw["report"] = json.loads(raw["stdout"])
        raw_runs.append(raw)
        settle()
        kcat_runs.append(kcat_drain(env, log))
        settle()
        lake = OUT / f"lake-{compression}-{i}"
        worker = worker_drain(env, lake, f"bench-worker-{stamp}-{compression}-{i}", log)
        worker_runs.append(worker)
        files.append(lake_files(lake))
        if compression == "lz4":
            settle()
            lake = OUT / f"lake-{compression}-{i}-bare"
            bare_runs.append(worker_drain(env, lake, f"bench-bare-{stamp}-{compression}-{i}", log, shipped=False))
        # Deleted at the end, not here: ext4 skips inodes freed in the last
        # minutes when it creates a file, and creating the next run's files
        # past those freed by this run's thousands cost 5-8 % of the
        # worker's CPU (inode allocation in its profile).
        messages = raw["report"]["messages"]
        print(
            f"  run {i + 1}: raw {messages / raw['wall']:,.0f}/s, kcat {kcat_runs[-1]['messages'] / kcat_runs[-1]['wall']:,.0f}/s, "
            f"worker {messages / worker['wall']:,.0f}/s",
            flush=True,
        )
    messages = raw_runs[0]["report"]["messages"]
    nbytes = raw_runs[0]["report"]["bytes"]
    raw_figures = [figures(messages, nbytes, r) for r in raw_runs]
    return {
        "messages": messages,
        "bytes": nbytes,
        "raw_drain": median(raw_figures),
        "raw_drain_best": max(raw_figures, key=lambda f: f["events_per_s"]),
        "kcat_drain": median([figures(messages, nbytes, r) for r in kcat_runs]),
        "worker_drain": median([figures(messages, nbytes, r) for r in worker_runs]),
        "worker_drain_bare": median([figures(messages, nbytes, r) for r in bare_runs]) if bare_runs else None,
        # Paired runs: each worker drain against the raw drain just before it.
        "worker_to_raw": statistics.median(r["wall"] / w["wall"] for r, w in zip(raw_runs, worker_runs)),
        "worker_files": {
            "files": statistics.median(f[0] for f in files),
            "mean_bytes": statistics.median(f[1] for f in files),
        },
    }


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

    # The same events once more, uncompressed, for the drains below.
    config = OUT / "uncompressed.toml"
    config.write_text('[kafka.properties]\n"compression.type" = "none"\n')
    plain_prefix = f"bench.{stamp}.plain"
    measured([BIN / "newsflow-producer", "--config", config, "generate", "--seed", "42", "--count", str(args.events)],
             topic_env(plain_prefix, args.partitions), log)
    prefixes.append(plain_prefix)
    results["drains"] = {}
    for compression, prefix in [("lz4", prefixes[0]), ("none", plain_prefix)]:
        results["drains"][compression] = drains(compression, topic_env(prefix, args.partitions), args.runs, stamp, log)
    messages = results["drains"]["lz4"]["messages"]
    nbytes = results["drains"]["lz4"]["bytes"]

    print("bench: the worker on one core against all of them (lz4 topics)", flush=True)
    scaling = cores_scaling(topic_env(prefixes[0], args.partitions), args.runs, stamp, log)
    results["cores"] = {}
    for name, runs in scaling.items():
        broker = [r["broker_cpu"] for r in runs if r["broker_cpu"] is not None]
        results["cores"][name] = dict(
            median([figures(messages, nbytes, r) for r in runs]),
            broker_cpu_s=statistics.median(broker) if broker else None,
        )
    results["bytes_per_event"] = nbytes / messages
    results["producer"] = median([figures(args.events, nbytes * args.events / messages, r) for r in producer_runs])

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
    for lake in OUT.glob("lake-*"):
        shutil.rmtree(lake, ignore_errors=True)

    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    row = "| {:<34} | {:>12} | {:>8} | {:>14} | {:>13} |"
    print(row.format("stage", "events/s", "MB/s", "CPU-s / M ev", "peak RSS MB"))
    print(row.format("-" * 34, "-" * 12, "-" * 8, "-" * 14, "-" * 13))
    lines = [("producer generate (lz4)", results["producer"])]
    for compression, d in results["drains"].items():
        lines += [
            (f"raw consumer, {compression} (median)", d["raw_drain"]),
            (f"raw consumer, {compression} (best)", d["raw_drain_best"]),
            (f"kcat x3, {compression}", d["kcat_drain"]),
            (f"worker drain, {compression}", d["worker_drain"]),
        ]
        if d["worker_drain_bare"]:
            lines.append((f"worker drain, {compression}, bare", d["worker_drain_bare"]))
    lines.append(("HTTP ingest (serve)", results["ingest"]))
    for name, r in lines:
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        print(row.format(name, f"{r['events_per_s']:,.0f}", f"{r['mb_per_s']:.1f}", f"{r['cpu_s_per_million']:.2f}", rss))
    print()
    for compression, d in results["drains"].items():
        print(
            f"{compression}: worker / raw {d['worker_to_raw']:.2f} (paired runs), worker / best raw "
            f"{d['worker_drain']['events_per_s'] / d['raw_drain_best']['events_per_s']:.2f}; "
            f"worker CPU per event {d['worker_drain']['cpu_s_per_million'] / d['kcat_drain']['cpu_s_per_million']:.2f}x kcat's "
            f"({d['worker_drain']['sys_s_per_million']:.2f} CPU-s/M of it in the kernel, "
            f"{d['worker_drain']['page_faults_per_million']:,.0f} page faults per million events); "
            f"files {d['worker_files']['files']:.0f}, mean {d['worker_files']['mean_bytes'] / 1e6:.2f} MB"
        )
    for name, c in results["cores"].items():
        broker = f"{c['broker_cpu_s']:.1f}" if c["broker_cpu_s"] is not None else "-"
        print(
            f"worker on {name}: {c['events_per_s']:,.0f} events/s, {c['cpu_s_per_million']:.2f} CPU-s/M, "
            f"peak RSS {c['peak_rss_mb']:.0f} MB; broker {broker} CPU-s over the drain"
        )
    print(f"events: {messages:,} of {results['bytes_per_event']:.0f} bytes, {args.partitions} partitions")
    shipped = " ".join(f"{k}={v}" for k, v in shipped_allocator_env().items()) or "nothing"
    print(f"worker drains ran with {shipped}, as the image and the Deployment set it; 'bare' ones without it")
    for articles, s in results["state"].items():
        print(f"state, {int(articles):>9,} articles: peak RSS {s['peak_rss_mb']:.0f} MB, {s['bytes_per_article']:.0f} bytes per article (dedup {s['dedup_mb']:.0f} MB, articles {s['articles_mb']:.0f} MB)")
    print(f"\nwritten to {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
