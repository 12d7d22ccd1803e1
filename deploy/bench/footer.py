#!/usr/bin/env python3
"""`make bench-footer`: the footer API on a table of --articles articles.

1. Tables: `newsflow-bench footer-table` writes article_totals (through the
   lake's flush path, no Kafka) on a local path and on s3:// (the local
   s3proxy), ids and titles as long as the seed article's.
2. Start-up and memory: `newsflow-footer serve` (release) on each; seconds
   from spawn to /readyz, then its resident memory (VmRSS, VmHWM) and the
   bytes its footers take (newsflow_footer_index_bytes), per million.
3. Throughput: wrk (Debian), keep-alive connections, ids drawn at random
   from the whole table by a Lua script: lookups per second and latency.
4. Latency at a fixed rate: oha (crates.io) at --rate requests/s over
   ids drawn from the table by a pattern: p50, p99, p99.9.
5. The alternative a site has today: DuckDB's point lookup through the
   `article_footer` view on the same local table, warm connection.
6. Freshness: a worker counts a stream (flush every second) while the
   service follows its lake; for each commit of article_totals, the time
   from the commit (its commitInfo.timestamp) to the first answer that
   reflects it (polled every 20 ms): p50, p99, max.

The load generators run on the same machine as the service (two cores
here): the rates are this machine's, not a server's. Prints a table and
writes var/bench/footer.json.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release"
OUT = ROOT / "var" / "bench"
TOOLS = Path(os.environ.get("NEWSFLOW_CACHE", Path.home() / ".cache" / "newsflow")) / "bin"
SEED = "politik.2026-11-01.russland-nordkorea-buendnis"
sys.path.insert(0, str(ROOT / "deploy" / "local"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lake_latency import free_port, s3_env  # noqa: E402


def article_id(n: int) -> str:
    """The ids `newsflow-bench footer-table` writes (crates/bench/src/footer_table.rs)."""
    return f"politik.2026-11-01.neue-allianz-meldung-{n:07d}"


def percentile(values: list, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def write_table(uri: str, articles: int, env: dict, titles: bool = True) -> dict:
    out = subprocess.run(
        [str(BIN / "newsflow-bench"), "footer-table", "--uri", uri, "--articles", str(articles)]
        + ([] if titles else ["--no-titles"]),
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


class Footer:
    """`newsflow-footer serve` on a lake, timed to ready."""

    def __init__(self, uri: str, env: dict, log: Path):
        self.port, self.metrics_port = free_port(), free_port()
        env = dict(env, NEWSFLOW__OUTPUT__URI=uri,
                   NEWSFLOW__FOOTER__LISTEN=f"127.0.0.1:{self.port}",
                   NEWSFLOW__METRICS__LISTEN=f"127.0.0.1:{self.metrics_port}",
                   NEWSFLOW__FOOTER__MAX_CONNECTIONS="20000")
        started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "newsflow-footer"), "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"newsflow-footer exited; see {log}")
            try:
                get(f"http://127.0.0.1:{self.metrics_port}/readyz")
                break
            except OSError:
                time.sleep(0.02)
        self.ready_seconds = time.monotonic() - started

    def memory(self) -> dict:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = lambda key: int(re.search(rf"{key}:\s+(\d+)", status).group(1))  # noqa: E731
        metrics = get(f"http://127.0.0.1:{self.metrics_port}/metrics").decode()
        value = lambda name: float(re.search(rf"^{name} (\S+)$", metrics, re.M).group(1))  # noqa: E731
        return {"rss_mb": kib("VmRSS") / 1024, "peak_rss_mb": kib("VmHWM") / 1024,
                "index_mb": value("newsflow_footer_index_bytes") / 1e6,
                "articles": int(value("newsflow_footer_articles"))}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def per_million(memory: dict) -> dict:
    millions = max(memory["articles"], 1) / 1e6
    return {"rss_mb_per_million": memory["rss_mb"] / millions,
            "index_mb_per_million": memory["index_mb"] / millions}


WRK_SCRIPT = """
math.randomseed(%(seed)d)
request = function()
  local n = math.random(0, %(articles)d - 1)
  return wrk.format("GET", string.format("/v1/articles/politik.2026-11-01.neue-allianz-meldung-%%07d/footer", n))
end
"""


def wrk(port: int, articles: int, seconds: int, connections: int) -> dict:
    script = OUT / "footer-wrk.lua"
    script.write_text(WRK_SCRIPT % {"seed": 7, "articles": articles})
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(p: str) -> float:
        number, suffix = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(number) * unit[suffix]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency("50"), "p99_ms": latency("99"),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "connections": connections,
            "output": out}


def oha(port: int, rate: int, seconds: int) -> dict:
    binary = sorted(TOOLS.glob("oha-*"))[-1]
    # `[.]`, not `\.`: the URL parser turns a backslash into a slash.
    url = f"http://127.0.0.1:{port}/v1/articles/politik[.]2026-11-01[.]neue-allianz-meldung-0[0-9]{{6}}/footer"
    out = subprocess.run(
        [str(binary), "-z", f"{seconds}s", "-q", str(rate), "-c", "50", "--no-tui", "--latency-correction",
         "--output-format", "json", "--rand-regex-url", url],
        capture_output=True, text=True, check=True,
    ).stdout
    report = json.loads(out)
    p = report["latencyPercentiles"]
    return {"rate_asked": rate, "requests_per_s": report["summary"]["requestsPerSec"],
            "p50_ms": p["p50"] * 1e3, "p99_ms": p["p99"] * 1e3, "p99_9_ms": p["p99.9"] * 1e3,
            "status_codes": report.get("statusCodeDistribution", {})}


def duckdb_lookups(lake: str, articles: int, lookups: int) -> dict:
    from footer_sql import connect
    con = connect(lake)
    rng = random.Random(7)
    con.execute("SELECT * FROM article_footer WHERE article_id = ?", [article_id(0)]).fetchall()
    times = []
    for _ in range(lookups):
        started = time.perf_counter()
        con.execute("SELECT confirming_sources, social_comments, forum_posts FROM article_footer "
                    "WHERE article_id = ?", [article_id(rng.randrange(articles))]).fetchall()
        times.append((time.perf_counter() - started) * 1e3)
    return {"lookups": lookups, "p50_ms": statistics.median(times), "p99_ms": percentile(times, 99),
            "lookups_per_s_one_connection": 1e3 / statistics.mean(times)}


def commit_times(lake: Path) -> dict:
    """Version -> commitInfo.timestamp (ms) of article_totals' commits."""
    times = {}
    for path in (lake / "article_totals" / "_delta_log").glob("*.json"):
        for line in path.read_text().splitlines():
            if '"commitInfo"' in line:
                times[int(path.stem)] = json.loads(line)["commitInfo"]["timestamp"]
    return times


def freshness(seconds: int, log: Path) -> dict:
    """Commit-to-answer latency with a worker committing every second."""
    stamp = str(int(time.time()))
    lake = OUT / "footer-fresh-lake"
    shutil.rmtree(lake, ignore_errors=True)
    prefix = f"bench.footer-fresh.{stamp}"
    env = dict(os.environ, NEWSFLOW__OUTPUT__URI=str(lake), NEWSFLOW__KAFKA__GROUP_ID=prefix,
               NEWSFLOW__TOPICS__ARTICLES=f"{prefix}.articles", NEWSFLOW__TOPICS__COMMENTS=f"{prefix}.comments",
               NEWSFLOW__TOPICS__FORUM_POSTS=f"{prefix}.forum-posts",
               NEWSFLOW__TOPICS__DEAD_LETTERS=f"{prefix}.dead-letters",
               NEWSFLOW__OUTPUT__FLUSH_INTERVAL="1s", RUST_LOG="warn")
    subprocess.run([str(BIN / "newsflow-producer"), "replay", str(ROOT / "tests/fixtures/seed-article.ndjson")],
                   env=env, check=True, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([str(BIN / "newsflow-consumer"), "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    while not (lake / "article_totals" / "_delta_log").exists() or len(commit_times(lake)) < 2:
        time.sleep(0.2)
    footer = Footer(str(lake), env, log)
    producer = subprocess.Popen(
        [str(BIN / "newsflow-producer"), "generate", "--seed", "9", "--rate", "1000",
         "--count", str(1000 * seconds)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []  # (wall time ms, table_version)
    url = f"http://127.0.0.1:{footer.port}/v1/articles/{SEED}/footer"
    first = max(commit_times(lake))
    # Until the stream ends, and 3 s beyond for its last flush.
    until = None
    while until is None or time.monotonic() < until:
        if until is None and producer.poll() is not None:
            until = time.monotonic() + 3
        body = json.loads(get(url))
        seen.append((time.time() * 1e3, body["table_version"]))
        time.sleep(0.02)
    footer.stop()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    delays = []
    for version, committed in sorted(commit_times(lake).items()):
        if version <= first:
            continue
        shown = next((at for at, v in seen if v >= version), None)
        if shown is not None:
            delays.append((shown - committed) / 1e3)
    return {"commits": len(delays), "delays_s": sorted(round(d, 3) for d in delays),
            "p50_s": statistics.median(delays), "p99_s": percentile(delays, 99),
            "max_s": max(delays), "poll_interval_s": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=10_000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "footer.log"
    log.write_text("")
    results = {"articles": args.articles}

    local = OUT / "footer-lake"
    shutil.rmtree(local, ignore_errors=True)
    results["table_local"] = write_table(str(local), args.articles, dict(os.environ))
    s3 = dict(os.environ, **s3_env())
    s3_uri = f"s3://newsflow/bench-footer-{int(time.time())}"
    results["table_s3"] = write_table(s3_uri, args.articles, s3)
    print(f"tables of {args.articles} articles written", flush=True)

    footer = Footer(str(local), dict(os.environ), log)
    results["start_local_s"] = footer.ready_seconds
    memory = footer.memory()
    results["memory_local"] = dict(memory, **per_million(memory))
    print(f"local: ready in {footer.ready_seconds:.1f} s, {memory}", flush=True)
    results["wrk"] = wrk(footer.port, args.articles, args.seconds, 64)
    print(f"wrk: {results['wrk']['requests_per_s']:.0f} lookups/s", flush=True)
    results["oha"] = oha(footer.port, args.rate, args.seconds)
    print(f"oha at {args.rate}/s: {results['oha']}", flush=True)
    results["memory_after_load"] = footer.memory()
    footer.stop()

    # A quarter of the articles: the memory per million is the slope
    # between the two sizes (the process's own memory, its runtime and
    # code, does not grow with the table).
    quarter = OUT / "footer-lake-quarter"
    shutil.rmtree(quarter, ignore_errors=True)
    write_table(str(quarter), args.articles // 4, dict(os.environ))
    footer = Footer(str(quarter), dict(os.environ), log)
    small = footer.memory()
    footer.stop()
    shutil.rmtree(quarter, ignore_errors=True)
    big = results["memory_local"]
    results["rss_mb_per_million_slope"] = (big["rss_mb"] - small["rss_mb"]) / ((big["articles"] - small["articles"]) / 1e6)
    results["rss_mb_fixed"] = small["rss_mb"] - results["rss_mb_per_million_slope"] * small["articles"] / 1e6

    # The same articles without titles: what an article costs besides its
    # title's bytes.
    untitled = OUT / "footer-lake-untitled"
    shutil.rmtree(untitled, ignore_errors=True)
    write_table(str(untitled), args.articles, dict(os.environ), titles=False)
    footer = Footer(str(untitled), dict(os.environ), log)
    memory = footer.memory()
    results["memory_without_titles"] = dict(memory, **per_million(memory))
    results["rss_mb_per_million_without_titles"] = (memory["rss_mb"] - results["rss_mb_fixed"]) / (memory["articles"] / 1e6)
    footer.stop()
    shutil.rmtree(untitled, ignore_errors=True)
    results["duckdb"] = duckdb_lookups(str(local), args.articles, 200)
    print(f"duckdb: {results['duckdb']}", flush=True)

    footer = Footer(s3_uri, s3, log)
    results["start_s3_s"] = footer.ready_seconds
    memory = footer.memory()
    results["memory_s3"] = dict(memory, **per_million(memory))
    footer.stop()
    print(f"s3: ready in {results['start_s3_s']:.1f} s", flush=True)

    results["freshness"] = freshness(60, log)
    print(f"freshness: {results['freshness']}", flush=True)

    wrk_output = results["wrk"].pop("output")
    (OUT / "footer.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "footer-wrk.txt").write_text(wrk_output)
    print(f"""
footer API on {args.articles:,} articles (this machine, load generator beside it)
  start-up to ready       local {results['start_local_s']:.1f} s, s3:// {results['start_s3_s']:.1f} s
  memory                  {results['memory_local']['rss_mb_per_million']:.0f} MB RSS per million articles
                          ({results['memory_local']['index_mb_per_million']:.0f} MB of it the footers themselves, ids of {results['table_local']['mean_id_bytes']:.0f} B
                          and titles of {results['table_local']['mean_title_bytes']:.0f} B included)
  memory per million more {results['rss_mb_per_million_slope']:.0f} MB RSS (the slope from {args.articles // 4:,} to {args.articles:,}; {results['rss_mb_fixed']:.0f} MB fixed)
  memory without titles   {results['rss_mb_per_million_without_titles']:.0f} MB RSS per million beyond the fixed ({results['memory_without_titles']['index_mb_per_million']:.0f} MB the footers)
  lookups (wrk, 64 conn)  {results['wrk']['requests_per_s']:,.0f}/s, p50 {results['wrk']['p50_ms']:.2f} ms, p99 {results['wrk']['p99_ms']:.2f} ms, non-2xx {results['wrk']['non_2xx']}
  at {args.rate}/s (oha)       p50 {results['oha']['p50_ms']:.2f} ms, p99 {results['oha']['p99_ms']:.2f} ms, p99.9 {results['oha']['p99_9_ms']:.2f} ms
  DuckDB point lookup     p50 {results['duckdb']['p50_ms']:.1f} ms, p99 {results['duckdb']['p99_ms']:.1f} ms (article_footer, warm connection)
  freshness               commit to answer p50 {results['freshness']['p50_s']:.2f} s, p99 {results['freshness']['p99_s']:.2f} s over {results['freshness']['commits']} commits (poll 1 s)
figures in {OUT / 'footer.json'}""")


if __name__ == "__main__":
    main()
