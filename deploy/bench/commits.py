#!/usr/bin/env python3
"""`make bench-commits`: Delta's optimistic concurrency under many writers,
on the local S3 API server (s3proxy, which honours conditional puts).

For each writer count in --writers, `newsflow-bench commit-race` runs that
many writers (one shard each, with its own lake handle, as pods have) for
--seconds against one fresh lake on s3://, each flushing one event at a time
through the real flush path (data files, checkpoint, a fenced commit per
table). Twice:

- saturated: every writer flushes as fast as it can, which finds the most
  commits per second one table takes and what a commit costs when every
  writer races for it;
- paced: every writer flushes once per --interval (a worker's
  `output.flush_interval`), which shows when the races start at a given
  cadence.

Reports flushes/s, commits/s per table, races lost per commit and commit
latency percentiles (retries included), and writes var/bench/commits.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, OUT  # noqa: E402

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "newsflow",
    "AWS_SECRET_ACCESS_KEY": "newsflow-local-secret",
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_ALLOW_HTTP": "true",
}


def race(uri: str, writers: int, seconds: int, interval: str) -> dict:
    import os

    env = dict(os.environ)
    env.update(S3_ENV)
    env["RUST_LOG"] = "error"
    done = subprocess.run(
        [BIN / "newsflow-bench", "commit-race", "--uri", uri, "--writers", str(writers),
         "--seconds", str(seconds), "--interval", interval],
        env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        sys.exit(f"bench-commits: commit-race with {writers} writers failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", default="1,2,5,10,20,40")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--interval", default="1s")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d%H%M%S")
    results = {"saturated": [], "paced": [], "interval": args.interval, "seconds": args.seconds}
    for mode, interval in (("saturated", "0s"), ("paced", args.interval)):
        print(f"bench-commits: {mode} (one flush per writer every {interval})", flush=True)
        print(f"{'writers':>8}{'flushes/s':>11}{'commits/s':>11}{'races/commit':>14}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'max s':>8}")
        for writers in (int(w) for w in args.writers.split(",")):
            uri = f"s3://newsflow/bench/commits-{stamp}-{mode}-{writers}"
            report = race(uri, writers, args.seconds, interval)
            results[mode].append(report)
            events = report["tables"]["events"]
            print(
                f"{writers:>8}{report['flushes_per_s']:>11.1f}{events['commits_per_s']:>11.1f}"
                f"{events['conflicts_per_commit']:>14.2f}{events['latency_p50_s']:>8.3f}"
                f"{events['latency_p95_s']:>8.3f}{events['latency_p99_s']:>8.3f}{events['latency_max_s']:>8.3f}",
                flush=True,
            )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "commits.json").write_text(json.dumps(results, indent=2))
    print(f"(figures of the events table, the first in commit order and the most contended; all three in {OUT / 'commits.json'})")


if __name__ == "__main__":
    main()
