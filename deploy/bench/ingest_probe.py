"""Probes `newsflow-producer serve` as a hostile or broken client would and
prints the figures issue 13 asks for, as JSON:

- worst_body: the answer to 16 MiB of `x` lines (every line rejected), its
  size in bytes, and the server's peak RSS (VmHWM) after it;
- idle_flood: authorised requests served while more idle connections than
  the connection cap are held open, as a success rate;
- shutdown: seconds between `/readyz` turning red after SIGTERM and the
  ingest port refusing connections (positive: readiness went red first).

Needs a broker on 127.0.0.1:9092. Run with `make bench-ingest`.
"""

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

TOKEN = "probe-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


def start(binary, extra_env, log):
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "NEWSFLOW__INGEST__LISTEN": f"127.0.0.1:{port}",
            "NEWSFLOW__METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
            "NEWSFLOW__INGEST__AUTH_TOKEN": TOKEN,
            "NEWSFLOW__KAFKA__BROKERS": "127.0.0.1:9092",
        }
    )
    env.update(extra_env)
    child = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 60
    while readyz(metrics_port) is not True:
        if time.time() > deadline or child.poll() is not None:
            raise SystemExit("the ingest endpoint did not become ready")
        time.sleep(0.1)
    return child, port, metrics_port


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def post(port, body, timeout):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            size = 0
            while chunk := r.read(1 << 20):
                size += len(chunk)
            return r.status, size
    except urllib.error.HTTPError as e:
        return e.code, len(e.read())


def worst_body(binary, log):
    child, port, _ = start(binary, {}, log)
    try:
        started = time.time()
        status, size = post(port, b"x\n" * 8388608, timeout=600)
        return {
            "status": status,
            "response_bytes": size,
            "seconds": round(time.time() - started, 2),
            "peak_rss_mb": round(peak_rss_mb(child.pid), 1),
        }
    finally:
        child.kill()
        child.wait()


class IdleCrowd(threading.Thread):
    """Holds `size` connections that never send a byte, reopening each one
    the server closes, as an attacker without the token would."""

    def __init__(self, port, size):
        super().__init__(daemon=True)
        self.port, self.size = port, size
        self.sockets = {}
        self.reopened = 0
        self.stop = threading.Event()

    def open_one(self):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", self.port))
        self.sockets[s.fileno()] = s

    def run(self):
        for _ in range(self.size):
            self.open_one()
        poller = select.poll()
        for fd in self.sockets:
            poller.register(fd, select.POLLIN | select.POLLHUP)
        while not self.stop.is_set():
            for fd, _ in poller.poll(100):
                s = self.sockets.pop(fd, None)
                poller.unregister(fd)
                if s is not None:
                    s.close()
                    self.reopened += 1
                    self.open_one()
                    poller.register(max(self.sockets), select.POLLIN | select.POLLHUP)
        for s in self.sockets.values():
            s.close()


def idle_flood(binary, log, idle, seconds):
    child, port, _ = start(binary, {}, log)
    crowd = IdleCrowd(port, idle)
    try:
        crowd.start()
        time.sleep(2)
        event = json.dumps(
            {
                "schema_version": 1,
                "event_id": "probe-1",
                "event_type": "social_comment",
                "article_id": "probe",
                "occurred_at": "2026-11-01T10:00:00Z",
                "platform": "x",
            }
        ).encode()
        served = tried = 0
        deadline = time.time() + seconds
        while time.time() < deadline:
            tried += 1
            try:
                status, _ = post(port, event, timeout=5)
                served += status == 200
            except OSError:
                time.sleep(0.5)
        return {
            "idle_connections": idle,
            "idle_reopened_by_the_crowd": crowd.reopened,
            "authorised_tried": tried,
            "authorised_served": served,
        }
    finally:
        crowd.stop.set()
        crowd.join()
        child.kill()
        child.wait()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def shutdown(binary, log):
    child, port, metrics_port = start(binary, {}, log)
    child.send_signal(signal.SIGTERM)
    sent = time.time()
    red = refused = None
    while child.poll() is None or red is None or refused is None:
        now = time.time() - sent
        if red is None and readyz(metrics_port) is not True:
            red = now
        if refused is None and not port_open(port):
            refused = now
        if now > 120:
            child.kill()
            break
        time.sleep(0.02)
    return {
        "readiness_red_after_s": round(red, 2),
        "port_refused_after_s": round(refused, 2),
        "red_before_refused_s": round(refused - red, 2),
        "exit_code": child.wait(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/newsflow-producer")
    parser.add_argument("--idle", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=45)
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        figures = {
            "worst_body": worst_body(args.binary, log),
            "idle_flood": idle_flood(args.binary, log, args.idle, args.seconds),
            "shutdown": shutdown(args.binary, log),
        }
        log.seek(0)
        figures["refusal_log_lines"] = sum(
            "too many connections" in line or "refusing new ones" in line for line in log
        )
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
