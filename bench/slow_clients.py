#!/usr/bin/env python3
"""Slow clients against an otpd binary in production mode.

Starts redis-server and otpd (file-descriptor limit --nofile, soft and hard)
on free ports, opens --connections connections that send complete headers
of a receipt post (no API key needed) with `Content-Length: 4000` and never
the body, and meanwhile has 4 other clients call /healthz for --seconds.
Prints what otpd held (connections, file descriptors, RSS, at the peak) and
what the other clients saw (answered, failed, p50/p99), as one Markdown row.

    bench/slow_clients.py target/release/otpd --connections 1100 --nofile 1024

Python's standard library only; needs redis-server on PATH.
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

SLOW = (
    b"POST /v1/carriers/console/receipts HTTP/1.1\r\nHost: otpd\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, within=20):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def process_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return fds, rss_kb


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    work = tempfile.mkdtemp()
    redis_port, http_port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=work,
    )
    config = os.path.join(work, "otpd.toml")
    with open(config, "w") as f:
        f.write(
            f'index_secret = "{"i" * 32}"\n'
            f'[http]\nlisten = "127.0.0.1:{http_port}"\nworkers = 2\n'
            # One client address for all: no flood shedding.
            f"flood_per_second = 1000000\nflood_burst = 1000000\n"
            f'[grpc]\nlisten = ""\n'
            f'[redis]\nurl = "redis://127.0.0.1:{redis_port}"\n'
            f'[[secrets]]\nid = "bench"\nvalue = "{"s" * 32}"\n'
            f'[[api_keys]]\nid = "bench"\nsha256 = "{"0" * 64}"\nservices = ["*"]\n'
            f"[services.demo]\n"
        )
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    log = open(os.path.join(work, "otpd.log"), "w")
    otpd = subprocess.Popen(
        [args.binary, "--config", config], stdout=log, stderr=log, preexec_fn=limit
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(base + "/readyz")
        idle_fds, idle_rss = process_figures(otpd.pid)
        slow = []
        for _ in range(args.connections):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", http_port))
            except BlockingIOError:
                pass
            slow.append(s)
        time.sleep(0.5)
        for s in slow:
            try:
                s.send(SLOW)
            except OSError:
                pass
        latencies, failures, peak = [], [0], [idle_fds, idle_rss]
        stop = time.monotonic() + args.seconds

        def client():
            while time.monotonic() < stop:
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
                        answer.read()
                    latencies.append(time.monotonic() - started)
                except OSError:
                    failures[0] += 1

        def sampler():
            while time.monotonic() < stop:
                fds, rss = process_figures(otpd.pid)
                peak[0], peak[1] = max(peak[0], fds), max(peak[1], rss)
                time.sleep(0.2)

        threads = [threading.Thread(target=client) for _ in range(4)]
        threads.append(threading.Thread(target=sampler))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answered = len(latencies)
        quantiles = statistics.quantiles(latencies, n=100) if answered >= 2 else [float("nan")] * 99
        with open(os.path.join(work, "otpd.log")) as f:
            emfile = f.read().count("Too many open files")
        print(
            "| slow connections | nofile | otpd fds idle → peak | RSS idle → peak (MB) "
            "| others answered | others failed | p50 | p99 | `Too many open files` lines |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {args.connections} | {args.nofile} | {idle_fds} → {peak[0]} "
            f"| {idle_rss / 1024:.0f} → {peak[1] / 1024:.0f} | {answered} | {failures[0]} "
            f"| {quantiles[49] * 1000:.0f} ms | {quantiles[98] * 1000:.0f} ms | {emfile} |"
        )
        for s in slow:
            s.close()
    finally:
        otpd.terminate()
        otpd.wait()
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
