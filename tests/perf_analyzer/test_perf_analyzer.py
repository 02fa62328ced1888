"""Triton's perf_analyzer, the first tool a Triton user runs, unchanged against the real binary:
over HTTP and gRPC, synchronous and --async, gRPC --streaming, and with -b 8 on a bundle with dynamic batching.
Each run is short (count windows of a few hundred requests) and must complete a measurement with
the server-side breakdown.
The binary is the one the tritonclient 2.41.0 wheel ships; it loads libcudart.so.12 (from
nvidia-cuda-runtime-cu12) but uses no GPU."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/clients"))
from conftest import Server  # noqa: E402  (the client tests' server fixture, reused)

PERF_ANALYZER = Path(sys.executable).parent / "perf_analyzer"
CUDART = next(Path(sys.prefix).glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))

# Debian's libb64-0d (scripts/perf-analyzer-deps) is the one library pip cannot bring: without it
# these tests skip, but in CI (PREDICTOR_REQUIRE_PERF_ANALYZER=1) they must run.
if b"libb64.so.0d" not in subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True).stdout:
    if os.environ.get("PREDICTOR_REQUIRE_PERF_ANALYZER") == "1":
        raise RuntimeError("libb64-0d is missing: run scripts/perf-analyzer-deps")
    pytest.skip("libb64-0d is missing (scripts/perf-analyzer-deps installs it)", allow_module_level=True)


def perf_analyzer(*arguments):
    """Runs perf_analyzer to its end (bounded); returns its output, failing on a non-zero exit."""
    environment = {**os.environ, "LD_LIBRARY_PATH": str(CUDART)}
    command = [str(PERF_ANALYZER), "--measurement-mode", "count_windows",
               "--measurement-request-count", "200", "--max-trials", "10",
               # Stability is not what this checks: a busy CI machine may vary a lot.
               "--stability-percentage", "100", *arguments]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)}\n{output}"
    return output


def assert_measured(output):
    """A completed measurement with the server-side breakdown (from the statistics extension)."""
    found = re.findall(r"Throughput: ([0-9.]+) infer/sec", output)
    assert found and float(found[-1]) > 0, output
    assert "Avg latency" in output, output
    assert "Server: " in output and "Inference count:" in output, output


@pytest.fixture(scope="module")
def server():
    server = Server([REPO / "models/iris-svc"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    """iris-mlp with dynamic batching up to 8 rows: its configuration has max_batch_size 8."""
    folder = tmp_path_factory.mktemp("bundles") / "iris-mlp"
    shutil.copytree(REPO / "models/iris-mlp", folder)
    config = folder / "predictor.toml"
    text = config.read_text()
    assert "[runtime]\nthreads = 1" in text
    config.write_text(text.replace("[runtime]\nthreads = 1", "[runtime]\nthreads = 1\nmax_batch_size = 8\nmax_queue_delay_ms = 1"))
    server = Server([folder])
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("mode", [[], ["--async", "--concurrency-range", "4"]], ids=["sync", "async"])
def test_perf_analyzer_measures_the_server(server, protocol, mode):
    url = server.http if protocol == "http" else server.grpc
    output = perf_analyzer("-m", "iris-svc", "-u", url, "-i", protocol, "--shape", "input:1,4", *mode)
    assert_measured(output)


def test_perf_analyzer_streams_over_grpc(server):
    output = perf_analyzer("-m", "iris-svc", "-u", server.grpc, "-i", "grpc", "--streaming",
                           "--shape", "input:1,4")
    assert_measured(output)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_batches_of_8_on_a_batched_bundle(batched, protocol):
    url = batched.http if protocol == "http" else batched.grpc
    output = perf_analyzer("-m", "iris-mlp", "-u", url, "-i", protocol, "-b", "8")
    assert "Batch size: 8" in output
    assert_measured(output)


@pytest.fixture(scope="module")
def sharing():
    server = Server([REPO / "models/iris-svc"], ["--allow-shared-memory"])
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_with_system_shared_memory(sharing, protocol):
    """--shared-memory system: perf_analyzer registers its own regions and names them in every
    request, for the inputs and the outputs (--output-shared-memory-size)."""
    url = sharing.http if protocol == "http" else sharing.grpc
    output = perf_analyzer("-m", "iris-svc", "-u", url, "-i", protocol, "--shape", "input:1,4",
                           "--shared-memory", "system", "--output-shared-memory-size", "64")
    assert_measured(output)


def test_perf_analyzer_with_grpc_compression(server):
    output = perf_analyzer("-m", "iris-svc", "-u", server.grpc, "-i", "grpc", "--shape", "input:1,4",
                           "--grpc-compression-algorithm", "gzip")
    assert_measured(output)
