"""Endurance and overload, with printed figures (not part of the test run). The release server
with the iris bundle is pinned to one core and oha to the other, as in bench/run.py:

1. capacity: requests/s at 32 connections for 10 s;
2. endurance: `--minutes` (10) at 80% of that rate; every answer must be a 200, and RSS may grow
   at most 5% from the end of the first minute (warm) to the end;
3. overload: `--connections` (1,000) for `--overload-seconds` (60) with no rate limit; the server
   sheds what it cannot take (503 + Retry-After), its RSS stays bounded and the p99 of the
   admitted (200) requests stays bounded;
4. attacks: for `--attack-seconds` (30), hostile connections beside a normal load at half the
   capacity: 200 connections that send nothing, 100 that send half a request head and 64 uploads
   of one byte a second, each reopened as soon as the server closes it. The normal callers' p99
   and errors are printed, and the RSS.

    python bench/endurance.py --out .cache/bench [--minutes 10]
"""

import argparse
import csv
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from run import REPO, Server, json_body, oha, oha_command

IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]
JSON_TYPE = ["content-type: application/json"]


def sample_rss(server, every, samples, stop):
    """Appends (seconds since start, RSS MiB) every `every` seconds until `stop` is set."""
    started = time.monotonic()
    while not stop.wait(every):
        samples.append((time.monotonic() - started, server.rss_mib()))


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--overload-seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--attack-seconds", type=float, default=30)
    args = parser.parse_args()
    os.environ["BENCH_OUT"] = str(args.out)
    body = json_body(IRIS_ROW)

    server = Server([REPO / "models/iris-svc"], args.out / "endurance-server.log")
    url = f"http://{server.address}/predict"
    idle_rss = server.rss_mib()
    capacity = oha(url, body, 32, 10, JSON_TYPE)["summary"]["requestsPerSec"]
    rate = 0.8 * capacity
    print(f"capacity: {capacity:.0f} req/s at 32 connections; endurance at {rate:.0f} req/s for {args.minutes} min",
          flush=True)

    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server, 10, samples, stop))
    sampler.start()
    seconds = int(args.minutes * 60)
    output = subprocess.run(oha_command(url, body, 32, seconds, JSON_TYPE, extra=["-q", str(rate)]),
                            check=True, capture_output=True)
    stop.set()
    sampler.join()
    result = json.loads(output.stdout)
    codes = result.get("statusCodeDistribution", {})
    answered = sum(codes.values())
    errors = answered - codes.get("200", 0) + sum(result.get("errorDistribution", {}).values())
    warm = next((rss for t, rss in samples if t >= 60), samples[0][1] if samples else server.rss_mib())
    end_rss = server.rss_mib()
    growth = (end_rss / warm - 1) * 100
    print(f"\nendurance: {answered} requests ({answered / seconds:.0f}/s), {errors} errors, "
          f"p50 {result['latencyPercentiles']['p50'] * 1e3:.2f} ms, p99 {result['latencyPercentiles']['p99'] * 1e3:.2f} ms")
    print(f"  RSS MiB: idle {idle_rss:.1f}, warm (1 min) {warm:.1f}, max {max(r for _, r in samples):.1f}, "
          f"end {end_rss:.1f}; growth from warm {growth:+.2f}%  ({'ok' if growth <= 5 and errors == 0 else 'MISSED'}: "
          "no error, growth <= 5%)", flush=True)

    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server, 1, samples, stop))
    sampler.start()
    overload = subprocess.run(oha_command(url, body, args.connections, args.overload_seconds, JSON_TYPE,
                                          output_format="csv"),
                              check=True, capture_output=True, text=True)
    stop.set()
    sampler.join()
    by_status = {}
    for row in csv.DictReader(io.StringIO(overload.stdout)):
        by_status.setdefault(row["status"], []).append(float(row["request-duration"]))
    admitted = sorted(by_status.get("200", []))
    shed = sorted(by_status.get("503", []))
    other = {status: len(times) for status, times in by_status.items() if status not in ("200", "503")}
    peak = max((r for _, r in samples), default=server.rss_mib())
    print(f"\noverload: {args.connections} connections for {args.overload_seconds:.0f} s")
    print(f"  admitted (200): {len(admitted)} ({len(admitted) / args.overload_seconds:.0f}/s), "
          f"p50 {percentile(admitted, 0.5) * 1e3:.2f} ms, p99 {percentile(admitted, 0.99) * 1e3:.2f} ms, "
          f"max {admitted[-1] * 1e3 if admitted else float('nan'):.2f} ms")
    print(f"  shed (503): {len(shed)} ({len(shed) / args.overload_seconds:.0f}/s), "
          f"p99 {percentile(shed, 0.99) * 1e3:.2f} ms; other answers: {other or 'none'}")
    print(f"  RSS MiB: before {end_rss:.1f}, peak {peak:.1f}, after {server.rss_mib():.1f}")

    attack(server, url, body, 0.5 * capacity, args.attack_seconds)
    server.stop()


def attacker(address, opening, stop):
    """Keeps one hostile connection open until `stop`: it sends `opening` (bytes, or a function
    called with the socket), and is reopened whenever the server closes it."""
    host, port = address.rsplit(":", 1)
    while not stop.is_set():
        try:
            with socket.create_connection((host, int(port)), timeout=1) as connection:
                if callable(opening):
                    opening(connection, stop)
                    continue
                connection.sendall(opening)
                connection.settimeout(0.5)
                while not stop.is_set():
                    try:
                        if not connection.recv(1024):
                            break  # closed by the server: reopen
                    except socket.timeout:
                        pass
        except OSError:
            stop.wait(0.05)


def slow_upload(connection, stop):
    connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 1000\r\n\r\n")
    while not stop.wait(1):
        connection.sendall(b" ")


def attack(server, url, body, rate, seconds):
    stop = threading.Event()
    kinds = [(200, b""), (100, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-"), (64, slow_upload)]
    threads = [threading.Thread(target=attacker, args=(server.address, opening, stop), daemon=True)
               for count, opening in kinds for _ in range(count)]
    for thread in threads:
        thread.start()
    samples, sampling = [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server, 1, samples, sampling))
    sampler.start()
    output = subprocess.run(oha_command(url, body, 16, seconds, JSON_TYPE, extra=["-q", str(rate)]),
                            check=True, capture_output=True)
    stop.set()
    sampling.set()
    sampler.join()
    result = json.loads(output.stdout)
    codes = result.get("statusCodeDistribution", {})
    answered = sum(codes.values())
    errors = answered - codes.get("200", 0) + sum(result.get("errorDistribution", {}).values())
    print(f"\nattacks: {sum(count for count, _ in kinds)} hostile connections (idle, half-sent heads, "
          f"1-byte/s uploads) beside {rate:.0f} req/s for {seconds:.0f} s")
    print(f"  normal callers: {answered} requests, {errors} errors, "
          f"p50 {result['latencyPercentiles']['p50'] * 1e3:.2f} ms, p99 {result['latencyPercentiles']['p99'] * 1e3:.2f} ms")
    print(f"  RSS MiB: peak {max((r for _, r in samples), default=server.rss_mib()):.1f}, "
          f"after {server.rss_mib():.1f}", flush=True)


if __name__ == "__main__":
    main()
