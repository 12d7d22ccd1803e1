#!/usr/bin/env python3
"""How soon a worker's /readyz tells of an object-store outage, and how
soon it is ready again: `make probe-outage`.

A worker with the default settings (flushes every 10 s) commits a steady
stream to an s3:// lake on an s3proxy of this probe's own; then that
server is killed for 30 s, and later frozen (SIGSTOP) for 60 s. /readyz is
polled every half second; the figures are seconds from the fault to red,
from the repair to green, and the store errors the worker counted. JSON on
stdout. The local broker must run (`make kafka-up`).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, ROOT, free_port, topic_env  # noqa: E402


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except Exception:
        return False


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except Exception:
        pass
    return float("nan")


def until(condition, limit: float) -> float:
    """Seconds until `condition()` holds, polled every 0.5 s; None past `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if condition():
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def main() -> None:
    state = tempfile.TemporaryDirectory()
    s3_env = dict(os.environ, S3_PORT=str(free_port()), S3_STATE_DIR=state.name)
    s3 = ["bash", str(ROOT / "deploy/local/s3.sh")]
    subprocess.run(s3 + ["up"], env=s3_env, check=True, stdout=subprocess.DEVNULL)
    pid = lambda: int(Path(state.name, "s3proxy.pid").read_text().strip())  # noqa: E731
    env = topic_env(f"probe-outage-{os.getpid()}", 2)
    metrics_port = free_port()
    env.update({
        "NEWSFLOW__KAFKA__GROUP_ID": f"probe-outage-{os.getpid()}",
        "NEWSFLOW__OUTPUT__URI": f"s3://newsflow/probe-outage-{os.getpid()}",
        "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_env['S3_PORT']}",
        "AWS_ACCESS_KEY_ID": "newsflow",
        "AWS_SECRET_ACCESS_KEY": "newsflow-local-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    })
    producer_env = dict(env, NEWSFLOW__METRICS__LISTEN=f"127.0.0.1:{free_port()}")
    stream = subprocess.Popen(
        [BIN / "newsflow-producer", "generate", "--seed", "9", "--count", "1000000", "--rate", "2000"],
        env=producer_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([BIN / "newsflow-consumer", "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"flush_interval": "10s (default)"}
    try:
        if until(lambda: ready(metrics_port), 60) is None:
            sys.exit("probe-outage: the worker never became ready")
        time.sleep(25)  # a few flushes committed
        subprocess.run(s3 + ["down"], env=s3_env, check=True, stdout=subprocess.DEVNULL)
        red = until(lambda: not ready(metrics_port), 30)
        time.sleep(max(0.0, 30 - (red or 30)))
        subprocess.run(s3 + ["up"], env=s3_env, check=True, stdout=subprocess.DEVNULL)
        green = until(lambda: ready(metrics_port), 180)
        results["killed_30s"] = {"seconds_to_red": red, "seconds_to_green_after_restart": green,
                                 "store_errors_counted": metric(metrics_port, "newsflow_store_errors_total")}
        time.sleep(20)
        os.kill(pid(), signal.SIGSTOP)
        red = until(lambda: not ready(metrics_port), 60)
        time.sleep(max(0.0, 60 - (red or 60)))
        os.kill(pid(), signal.SIGCONT)
        green = until(lambda: ready(metrics_port), 180)
        results["frozen_60s"] = {"seconds_to_red": red, "seconds_to_green_after_thaw": green,
                                 "store_errors_counted": metric(metrics_port, "newsflow_store_errors_total")}
    finally:
        stream.kill()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        subprocess.run(s3 + ["down"], env=s3_env, stdout=subprocess.DEVNULL)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
