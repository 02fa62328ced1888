"""The benchmark: the release server pinned to one core, oha pinned to the other, bounded loads on
127.0.0.1, and in the same run the two limits it is measured against: R, ONNX Runtime's own runs
per second for each model and batch size (one thread, in-process), and H, the requests per second
of a trivial axum handler that reads the same bodies on the same core. Prints one table and every
target as a ratio, and writes results.json and a plot (PNG) next to it. Run by bench/run.

    python bench/run.py --out .cache/bench
"""

import argparse
import atexit
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_CPU, LOAD_CPU = "0", "1"
TICKS = os.sysconf("SC_CLK_TCK")

# The requests' rows: iris's first sample, and an MLP row of fixed values (alone and 32 times).
IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]
MLP_ROW = [[round(((i * 37) % 200) / 100 - 1, 3) for i in range(512)]]
MLP_32 = MLP_ROW * 32
JSON_TYPE = ["content-type: application/json"]

# A VM's host may run something else on our two CPUs (vmstat's "st", steal time): a load during
# which it took more than this share of them runs again, up to STEAL_ATTEMPTS times in all, and
# the attempt it took least from is kept; every row shows its share.
STEAL_TOLERATED = 0.03
STEAL_ATTEMPTS = 3


def steal_seconds():
    """The time the host took from the server's and the load's CPUs so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        cpus = {fields[0]: fields for fields in map(str.split, stat) if fields[0].startswith("cpu")}
    return sum(int(cpus[f"cpu{cpu}"][8]) for cpu in (SERVER_CPU, LOAD_CPU)) / TICKS


def least_stolen(load):
    """`(load(), the share of the two CPUs the host took meanwhile)`, of the attempt it took least
    from (see STEAL_TOLERATED)."""
    best = None
    for _ in range(STEAL_ATTEMPTS):
        steal_before, wall_before = steal_seconds(), time.monotonic()
        outcome = load()
        steal = (steal_seconds() - steal_before) / (2 * (time.monotonic() - wall_before))
        if best is None or steal < best[1]:
            best = (outcome, steal)
        if steal <= STEAL_TOLERATED:
            break
    return best


def print_scenarios(rows, width=45):
    """The table of bench/text and bench/image: each scenario's rows per second (a sentence or an
    image a row), latencies and the CPU time the host took."""
    print(f"{'scenario':{width}} {'conn':>4} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'steal':>6}")
    for row in rows:
        p50 = "" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
        p99 = "" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
        print(f"{row['scenario']:{width}} {row['connections']:>4} {row['rows_per_second']:9.1f} {p50:>8} {p99:>8} "
              f"{row['steal']:6.1%}")


def release(name):
    return str(REPO / "target/release" / name)


def pinned(cpu, command, **kwargs):
    """A server started on `cpu`; killed when the benchmark exits, a failed one too (Popen.kill
    does nothing to a process already waited for)."""
    process = subprocess.Popen(["taskset", "-c", cpu, *command], **kwargs)
    atexit.register(process.kill)
    return process


class Server:
    """`predictor serve` on the server core, logging as in production (an access line per request,
    to a file); times start-up to the first ready answer."""

    def __init__(self, bundles, log, flags=(), binary=None):
        started = time.monotonic()
        self.log = open(log, "w")
        self.process = pinned(
            SERVER_CPU,
            [binary or release("predictor"), "serve", "--log-format", "json",
             "--port", "0", "--grpc-port", "0", "--metrics-port", "0",
             "--max-queued-requests", "256", *flags, *map(str, bundles)],
            stderr=self.log,
        )
        self.address = None
        while True:
            if self.address is None:
                self.address = listening_address(log)
            else:
                try:
                    with urllib.request.urlopen(f"http://{self.address}/v2/health/ready", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
            if self.process.poll() is not None:
                sys.exit("the server exited:\n" + Path(log).read_text())
            time.sleep(0.001)
        self.startup_ms = (time.monotonic() - started) * 1000
        self.grpc_address = listening_address(log, "grpc_address")

    def rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.log.close()


def listening_address(log, key="address"):
    """The HTTP (or with `key` another) address from the server's "listening" log line, once
    written."""
    for line in Path(log).read_text().splitlines():
        if '"listening"' in line:
            return json.loads(line)[key]
    return None


def oha_command(url, body, connections, seconds, headers=(), output_format="json", extra=()):
    """The oha command line that loads `url` with `body` from the load core."""
    # One file per body: mixed loads run side by side.
    body_file = Path(os.environ["BENCH_OUT"]) / f"body-{hashlib.sha256(body).hexdigest()[:16]}.bin"
    body_file.write_bytes(body)
    command = ["taskset", "-c", LOAD_CPU, os.environ["OHA"], "-z", f"{seconds}s", "-w", "-c", str(connections),
               "-m", "POST", "--no-tui", "--output-format", output_format, "-D", str(body_file),
               "--disable-compression", *extra]
    for header in headers:
        command += ["-H", header]
    return [*command, url]


def oha(url, body, connections, seconds, headers=()):
    """Loads `url` with `body` from the load core; returns oha's JSON summary."""
    output = subprocess.run(oha_command(url, body, connections, seconds, headers), check=True, capture_output=True)
    return json.loads(output.stdout)


def perf_analyzer(url, protocol, model, shape, concurrency, seconds):
    """Triton's perf_analyzer from the load core, a time window of `seconds`: its throughput and
    latency percentiles (from its CSV report), as a Triton user measures."""
    report = Path(os.environ["BENCH_OUT"]) / "perf_analyzer.csv"
    command = ["taskset", "-c", LOAD_CPU, os.environ["PERF_ANALYZER"], "-m", model, "-u", url, "-i", protocol,
               "--shape", shape, "--concurrency-range", str(concurrency), "--measurement-interval",
               str(int(seconds * 1000)), "--stability-percentage", "100", "--max-trials", "10", "-f", str(report)]
    # perf_analyzer reports once three windows in a row agree within 100 %; on a VM whose host
    # takes its CPU away now and then (vmstat's "st"), the first three do not always, so it may
    # take up to ten, and says why when it gives up.
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": os.environ["CUDART"]})
    if run.returncode != 0:
        sys.exit(f"perf_analyzer failed ({run.returncode}): {' '.join(command)}\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    header, values = report.read_text().splitlines()[:2]
    row = dict(zip(header.split(","), values.split(",")))
    return {
        "requests_per_second": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
    }


def bench_runtime(bundle, rows, seconds, inputs=None):
    """bench_runtime's figures on the server's core: a bundle's runs of `rows`, from its sample, or
    from `inputs` (a JSON file of a text bundle's sentences or an image bundle's image files)."""
    output = subprocess.run(
        ["taskset", "-c", SERVER_CPU, release("examples/bench_runtime"), str(bundle), str(rows), str(seconds),
         *([str(inputs)] if inputs else [])],
        check=True, capture_output=True, text=True,
    )
    return json.loads(output.stdout)


def instructions_per_request(binary, bundle, path, body):
    """callgrind's count of the whole server's instructions per request of `body` to `path`: the
    server run under valgrind twice, answering 1,000 and then 5,000 requests from oha at 8
    connections; the difference divided by 4,000, so that start-up and shutdown cancel out. The
    host's steal cannot change it."""
    out = Path(os.environ["BENCH_OUT"])
    totals = []
    for requests in (1000, 5000):
        counts, log = out / f"callgrind-{requests}.out", out / f"server-callgrind-{requests}.log"
        with open(log, "w") as log_file:
            process = pinned(SERVER_CPU, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={counts}",
                                          binary, "serve", "--log-format", "json", "--port", "0", "--grpc-port", "0",
                                          "--metrics-port", "0", "--max-queued-requests", "256", str(bundle)],
                             stderr=log_file)
            deadline, address = time.monotonic() + 600, None
            while address is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the server under callgrind did not start:\n" + log.read_text())
                address = listening_address(log)
                time.sleep(0.1)
            command = oha_command(f"http://{address}{path}", body, 8, 1, JSON_TYPE, extra=["-n", str(requests)])
            # -n counts the requests; the -z of oha_command would end the load at a second.
            z = command.index("-z")
            del command[z:z + 2]
            subprocess.run(command, check=True, capture_output=True, timeout=1800)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=600)
        summary = next(line for line in counts.read_text().splitlines() if line.startswith(("summary:", "totals:")))
        totals.append(int(summary.split()[1]))
    return (totals[1] - totals[0]) / 4000


def json_body(rows):
    return json.dumps({"data": rows}).encode()


def binary_body(rows):
    values = [v for row in rows for v in row]
    header = json.dumps({
        "inputs": [{"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * len(values)}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    return header + struct.pack(f"<{len(values)}f", *values), len(header)


def measure_limits(iris, mlp, seconds):
    """R, ONNX Runtime's own runs per second, and H, a trivial server's requests per second, on the
    server's core: `({name: bench_runtime's figures}, {name: req/s})`."""
    limits = {
        "R iris b1": least_stolen(lambda: bench_runtime(iris, 1, 3))[0],
        "R mlp b1": least_stolen(lambda: bench_runtime(mlp, 1, 3))[0],
        "R mlp b32": least_stolen(lambda: bench_runtime(mlp, 32, 3))[0],
    }
    trivial = pinned(SERVER_CPU, [release("examples/bench_trivial_server"), str(iris), "18790"])
    time.sleep(0.5)
    h = {}
    for name, body, path, headers in (
        ("H iris b1 json", json_body(IRIS_ROW), "/predict", JSON_TYPE),
        ("H mlp b1 json", json_body(MLP_ROW), "/predict", JSON_TYPE),
        ("H mlp b32 json", json_body(MLP_32), "/predict", JSON_TYPE),
    ):
        h[name] = least_stolen(lambda: oha(f"http://127.0.0.1:18790{path}", body, 32 if "b1" in name else 1, seconds,
                                           headers))[0]["summary"]["requestsPerSec"]
    trivial.terminate()
    trivial.wait()
    trivial = pinned(SERVER_CPU, [release("examples/bench_trivial_server"), str(mlp), "18791"])
    time.sleep(0.5)
    body, length = binary_body(MLP_32)
    h["H mlp b32 binary"] = least_stolen(lambda: oha("http://127.0.0.1:18791/v2/binary", body, 1, seconds,
                                                     [f"inference-header-content-length: {length}"]))[0]["summary"]["requestsPerSec"]
    trivial.terminate()
    trivial.wait()
    return limits, h


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--baseline", type=Path,
                        help="another predictor binary (an earlier commit's release build): the iris "
                             "scenarios run on both, alternately, for a before/after in one run")
    args = parser.parse_args()
    os.environ["BENCH_OUT"] = str(args.out)
    seconds = args.seconds
    iris = REPO / "models/iris-svc"
    mlp, mlp_batched = args.out / "models/mlp-512", args.out / "models/mlp-512-batched"

    # The limits, on the same cores, at the start and at the end of the run: the ratios take their
    # mean, and the two show how far the machine itself drifted meanwhile.
    limits_at_start = measure_limits(iris, mlp, seconds)

    rows = []

    def add_row(name, result, connections, batch, cpu, steal):
        codes = result.get("statusCodeDistribution", {})
        errors = sum(n for code, n in codes.items() if code != "200") + sum(result.get("errorDistribution", {}).values())
        rps = result["summary"]["requestsPerSec"]
        rows.append({
            "scenario": name, "connections": connections, "batch": batch,
            "requests_per_second": rps, "rows_per_second": rps * batch,
            "p50_ms": result["latencyPercentiles"]["p50"] * 1000,
            "p99_ms": result["latencyPercentiles"]["p99"] * 1000,
            "errors": errors, "server_cpu": cpu, "steal": steal,
        })

    def with_cpu(server, load):
        """`load()` and the share of a core the server used meanwhile."""
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        outcome = load()
        return outcome, (server.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)

    def scenario(server, name, path, body, connections, batch, headers):
        (result, cpu), steal = least_stolen(lambda: with_cpu(
            server, lambda: oha(f"http://{server.address}{path}", body, connections, seconds, headers)))
        add_row(name, result, connections, batch, cpu, steal)

    def pa_scenario(server, protocol, name, model, shape, connections, batch):
        url = server.grpc_address if protocol == "grpc" else server.address
        (result, cpu), steal = least_stolen(lambda: with_cpu(
            server, lambda: perf_analyzer(url, protocol, model, shape, connections, seconds)))
        rows.append({
            "scenario": name, "connections": connections, "batch": batch,
            "rows_per_second": result["requests_per_second"] * batch, "errors": 0, "server_cpu": cpu,
            "steal": steal, **result,
        })

    def mixed(server, loads):
        """Several oha loads at once, each `(name, path, body, connections, batch, headers)`; the
        server's CPU is shared by all, so each row shows the whole."""
        def all_at_once():
            running = [
                (load, subprocess.Popen(oha_command(f"http://{server.address}{load[1]}", load[2], load[3], seconds,
                                                    load[5]), stdout=subprocess.PIPE))
                for load in loads
            ]
            return [(load, json.loads(process.communicate()[0])) for load, process in running]
        (results, cpu), steal = least_stolen(lambda: with_cpu(server, all_at_once))
        for (name, _, _, connections, batch, _), result in results:
            add_row(name, result, connections, batch, cpu, steal)

    # The first start after a build reads the new binary from disk (about a second here): the
    # start-up measured is the next one's.
    Server([iris], args.out / "server-iris.log").stop()
    server = Server([iris], args.out / "server-iris.log")
    startup_ms, idle_rss = server.startup_ms, server.rss_mib()
    for connections in (1, 32):
        scenario(server, "iris json b1", "/predict", json_body(IRIS_ROW), connections, 1, JSON_TYPE)
    # As python requests and curl --compressed call: accepting gzip (small answers stay plain).
    scenario(server, "iris json b1 gzip ok", "/predict", json_body(IRIS_ROW), 32, 1,
             [*JSON_TYPE, "accept-encoding: gzip, deflate"])
    loaded_rss = server.rss_mib()
    server.stop()

    if args.baseline:
        # Alternately, so that both see the same machine: baseline, this build, baseline.
        for binary, build in ((args.baseline, "baseline"), (None, "again"), (args.baseline, "baseline")):
            server = Server([iris], args.out / "server-iris-baseline.log", binary=binary)
            scenario(server, f"iris json b1 {build}", "/predict", json_body(IRIS_ROW), 32, 1, JSON_TYPE)
            pa_scenario(server, "grpc", f"pa grpc iris b1 {build}", "iris-svc", "input:1,4", 32, 1)
            server.stop()

    # The instructions a request costs (callgrind), on this build and the baseline: the seed's
    # /predict and v2's infer, each with iris's row as JSON.
    v2_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                      "data": IRIS_ROW[0]}]}).encode()
    builds = [("this build", release("predictor"))] + ([("baseline", str(args.baseline))] if args.baseline else [])
    instructions = {
        (name, build): instructions_per_request(binary, iris, path, body)
        for build, binary in builds
        for name, path, body in (("/predict", "/predict", json_body(IRIS_ROW)),
                                 ("v2 infer", "/v2/models/iris-svc/infer", v2_body))
    }

    # The prediction log's cost: the same scenario with every inference recorded, and 1 %.
    for rate, name in (("1", "iris json b1 plog 100%"), ("0.01", "iris json b1 plog 1%")):
        server = Server([iris], args.out / "server-iris-plog.log",
                        ["--prediction-log-rate", rate, "--prediction-log-file", str(args.out / "predictions.jsonl")])
        scenario(server, name, "/predict", json_body(IRIS_ROW), 32, 1, JSON_TYPE)
        server.stop()

    # The same tool over both protocols (perf_analyzer's REST is v2 with binary data).
    server = Server([iris, mlp], args.out / "server-perf-analyzer.log")
    for protocol in ("grpc", "http"):
        for name, model, shape, connections, batch in (
            ("iris b1", "iris-svc", "input:1,4", 1, 1),
            ("iris b1", "iris-svc", "input:1,4", 32, 1),
            ("mlp b32", "mlp-512", "input:32,512", 1, 32),
        ):
            pa_scenario(server, protocol, f"pa {protocol} {name}", model, shape, connections, batch)
    server.stop()

    server = Server([mlp, mlp_batched], args.out / "server-mlp.log")
    for connections in (1, 32):
        scenario(server, "mlp json b1", "/models/mlp-512/predict", json_body(MLP_ROW), connections, 1, JSON_TYPE)
    scenario(server, "mlp json b1 batching", "/models/mlp-512-batched/predict", json_body(MLP_ROW), 32, 1, JSON_TYPE)
    scenario(server, "mlp json b32", "/models/mlp-512/predict", json_body(MLP_32), 1, 32, JSON_TYPE)
    body, length = binary_body(MLP_32)
    for connections in (1, 4):
        scenario(server, "mlp binary b32", "/v2/models/mlp-512/infer", body, connections, 32,
                 [f"inference-header-content-length: {length}"])
    server.stop()

    # Mixed: small iris requests beside large mlp batches on one server; iris's p99 alone and
    # beside the mlp load.
    server = Server([iris, mlp], args.out / "server-mixed.log")
    iris_load = ("iris json b1 alone", "/models/iris-svc/predict", json_body(IRIS_ROW), 8, 1, JSON_TYPE)
    mixed(server, [iris_load])
    mixed(server, [("iris json b1 mixed", *iris_load[1:]),
                   ("mlp json b32 mixed", "/models/mlp-512/predict", json_body(MLP_32), 4, 32, JSON_TYPE)])
    server.stop()
    limits_at_end = measure_limits(iris, mlp, seconds)
    limits = {name: {key: (figures[key] + limits_at_end[0][name][key]) / 2 for key in figures}
              for name, figures in limits_at_start[0].items()}
    h = {name: (rps + limits_at_end[1][name]) / 2 for name, rps in limits_at_start[1].items()}

    def row(name, connections):
        return next(r for r in rows if r["scenario"] == name and r["connections"] == connections)

    def limit(h_rps, r_rps):
        return 1 / (1 / h_rps + 1 / r_rps)

    worst = min(rows, key=lambda r: 3 * r["p50_ms"] / r["p99_ms"])
    r_iris, r_mlp32 = limits["R iris b1"]["runs_per_second"], limits["R mlp b32"]["runs_per_second"]
    batch_run_ms = limits["R mlp b32"]["seconds_per_run"] * 1000
    targets = [
        # The measure: an iris request over HTTP/JSON, the seed's /predict (the request H
        # answers trivially); v2 infer's count is printed beside it.
        ("iris json b1 /predict <= 100 k instructions", 100_000 / instructions[("/predict", "this build")], 1.0),
        ("iris b1 c32 >= 0.65 L", row("iris json b1", 32)["requests_per_second"] / limit(h["H iris b1 json"], r_iris), 0.65),
        ("mlp b1 c32 batching rows/s >= 1.5 x without",
         row("mlp json b1 batching", 32)["rows_per_second"] / row("mlp json b1", 32)["rows_per_second"], 1.5),
        ("mlp b1 c32 batching p99 <= 2 ms + 3 x batch run",
         (2 + 3 * batch_run_ms) / row("mlp json b1 batching", 32)["p99_ms"], 1.0),
        ("mlp b32 c1 json >= 0.8 L", row("mlp json b32", 1)["requests_per_second"] / limit(h["H mlp b32 json"], r_mlp32), 0.8),
        ("mlp b32 c1 binary >= 0.85 R", row("mlp binary b32", 1)["requests_per_second"] / r_mlp32, 0.85),
        ("mlp b32 c4 binary >= 0.95 R", row("mlp binary b32", 4)["requests_per_second"] / r_mlp32, 0.95),
        ("perf_analyzer: gRPC iris b1 c32 >= 0.9 x REST",
         row("pa grpc iris b1", 32)["requests_per_second"] / row("pa http iris b1", 32)["requests_per_second"], 0.9),
        ("perf_analyzer: gRPC mlp b32 >= 0.95 x REST binary",
         row("pa grpc mlp b32", 1)["requests_per_second"] / row("pa http mlp b32", 1)["requests_per_second"], 0.95),
        (f"p99 <= 3 x p50 in every scenario (worst: {worst['scenario']} c{worst['connections']})",
         3 * worst["p50_ms"] / worst["p99_ms"], 1.0),
        ("start-up <= 300 ms", 300 / startup_ms, 1.0),
        ("RSS idle <= 40 MiB", 40 / idle_rss, 1.0),
        ("RSS after load <= 60 MiB", 60 / loaded_rss, 1.0),
    ]

    print(f"\n{'scenario':<22}{'conns':>6}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cpu':>6}"
          f"{'steal':>7}")
    for r in rows:
        print(f"{r['scenario']:<22}{r['connections']:>6}{r['requests_per_second']:>10.0f}{r['rows_per_second']:>11.0f}"
              f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['errors']:>8}{r['server_cpu']:>6.2f}{r['steal']:>7.1%}")
    print("\nlimits (same cores, same run; the mean of the start's and the end's):")
    for name, value in limits.items():
        start, end = limits_at_start[0][name]["runs_per_second"], limits_at_end[0][name]["runs_per_second"]
        print(f"  {name:<20} {value['runs_per_second']:>10.0f} runs/s  ({value['seconds_per_run'] * 1e3:.3f} ms/run; "
              f"{start:.0f} at the start, {end:.0f} at the end)")
    for name, value in h.items():
        start, end = limits_at_start[1][name], limits_at_end[1][name]
        print(f"  {name:<20} {value:>10.0f} req/s   ({start:.0f} at the start, {end:.0f} at the end)")
    print(f"\nstart-up to ready: {startup_ms:.1f} ms; RSS idle {idle_rss:.1f} MiB, after load {loaded_rss:.1f} MiB")
    plain = row("iris json b1", 32)["requests_per_second"]
    print("prediction log, iris json b1 c32 req/s against none: "
          f"100 % {row('iris json b1 plog 100%', 32)['requests_per_second'] / plain:.2f}, "
          f"1 % {row('iris json b1 plog 1%', 32)['requests_per_second'] / plain:.2f}")
    alone, beside = row("iris json b1 alone", 8), row("iris json b1 mixed", 8)
    print(f"mixed: iris json b1 c8 p99 {alone['p99_ms']:.3f} ms alone, {beside['p99_ms']:.3f} ms beside mlp json b32 c4 "
          f"({beside['p99_ms'] / alone['p99_ms']:.1f} x)")
    stolen = max(rows, key=lambda r: r["steal"])
    print(f"host steal: at most {stolen['steal']:.1%} of the two CPUs during a row ({stolen['scenario']} "
          f"c{stolen['connections']}); a row over {STEAL_TOLERATED:.0%} ran {STEAL_ATTEMPTS} times and shows its least")
    if args.baseline:
        for scenario_name in ("iris json b1", "pa grpc iris b1"):
            this = [r["requests_per_second"] for r in rows
                    if r["scenario"] in (scenario_name, f"{scenario_name} again") and r["connections"] == 32]
            before = [r["requests_per_second"] for r in rows if r["scenario"] == f"{scenario_name} baseline"]
            this, before = sum(this) / len(this), sum(before) / len(before)
            print(f"before/after, {scenario_name} c32: this build {this:.0f} req/s, baseline {before:.0f} req/s "
                  f"({this / before:.2f} x)")
    for (name, build), count in instructions.items():
        if build == "baseline":
            continue
        baseline = instructions.get((name, "baseline"))
        against = f" ({count / baseline:.2f} x the baseline's {baseline / 1000:.1f} k)" if baseline else ""
        print(f"callgrind, iris json b1 {name}: {count / 1000:.1f} k instructions a request{against}")
    print("\ntargets (ratio >= 1 meets the target; for 'x >= k y' the ratio shown is x/y against k):")
    for name, ratio, needed in targets:
        verdict = "ok" if ratio >= needed else "MISSED"
        print(f"  {name:<48} {ratio:>6.2f}  (needs {needed})  {verdict}")

    results = {"rows": rows, "limits": limits, "h": h,
               "limits_at_start": limits_at_start, "limits_at_end": limits_at_end, "startup_ms": startup_ms,
               "idle_rss_mib": idle_rss, "loaded_rss_mib": loaded_rss,
               "instructions_per_request": [{"request": n, "build": b, "instructions": c}
                                            for (n, b), c in instructions.items()],
               "targets": [{"name": n, "ratio": r, "needed": k} for n, r, k in targets]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, args.out / "results.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.png'}")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['scenario']}\nc{r['connections']}" for r in rows]
    figure, (throughput, latency) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    throughput.bar(labels, [r["rows_per_second"] for r in rows], color="tab:blue")
    throughput.set_ylabel("rows/s")
    throughput.set_yscale("log")
    throughput.set_title("predictor on one core (oha or perf_analyzer on the other)")
    latency.bar(labels, [r["p99_ms"] for r in rows], color="tab:orange")
    latency.set_ylabel("p99 latency (ms)")
    latency.set_yscale("log")
    plt.setp(latency.get_xticklabels(), rotation=30, ha="right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
