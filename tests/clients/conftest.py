"""Fixtures for the client tests: the real `predictor` binary serving every bundle under models/
and the every-dtype test fixture, on free ports, with the real ONNX Runtime. The KServe, docs and
perf_analyzer suites import it too, from virtual environments without tritonclient or numpy: it
imports only the standard library and pytest."""

import base64
import json
import os
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent for p in (REPO / "models").glob("*/predictor.toml"))
EVERY_DTYPE = REPO / "server/tests/fixtures/every-dtype"


def read_bundle(folder):
    with open(folder / "predictor.toml", "rb") as file:
        return tomllib.load(file)


def public_inputs(bundle):
    """The inputs callers send: a text bundle's one text input, an image bundle's one input of
    encoded images, else the declared inputs."""
    if "text" in bundle:
        return [{"name": bundle["text"].get("input", "text"), "dtype": "string", "shape": [-1]}]
    if "image" in bundle:
        return [{"name": bundle["image"].get("input", "image"), "dtype": "bytes", "shape": [-1]}]
    return bundle["inputs"]


def sample_rows(folder, bundle):
    """The sample's rows as a request carries them: an image bundle's sample names image files in
    its folder, whose bytes are the rows; other bundles' are the rows themselves."""
    if "image" in bundle:
        return [(folder / name).read_bytes() for name in bundle["sample"]["input"]]
    return bundle["sample"]["input"]


def seed_rows(rows):
    """Rows as the seed API's JSON takes them: an image (bytes) in base64."""
    return [base64.b64encode(row).decode() if isinstance(row, bytes) else row for row in rows]


class Server:
    """A `predictor serve` process; `http`, `grpc` and `metrics` are its host:port addresses."""

    def __init__(self, bundles, flags=()):
        binary = os.environ.get("PREDICTOR_BINARY", str(REPO / "target/debug/predictor"))
        # On a single port the gRPC and metrics ports are refused: only the one is given.
        ports = ["--port", "0"] if "--single-port" in flags else ["--port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        self.process = subprocess.Popen(
            [binary, "serve", *ports, "--log-format", "json", *flags, *map(str, bundles)],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        for line in self.process.stderr:
            self.log.append(line)
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("message") == "listening":
                self.http, self.grpc = event["address"], event["grpc_address"]
                self.metrics = event["metrics_address"]
                break
        else:
            raise RuntimeError("the server exited before listening:\n" + "".join(self.log))
        # Keep reading, so that a full pipe never blocks the server's logging.
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def server():
    server = Server([*BUNDLES, EVERY_DTYPE])
    yield server
    server.stop()


def client(server, protocol):
    """tritonclient's client of `server` over `protocol` ("http" or "grpc")."""
    return module(protocol).InferenceServerClient(url=server.http if protocol == "http" else server.grpc)


def module(protocol):
    """tritonclient's module of `protocol`: its InferInput, InferRequestedOutput, ... Imported
    here, not at the top: the KServe, docs and perf_analyzer tests share this file in
    environments without tritonclient's HTTP and gRPC clients."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return httpclient if protocol == "http" else grpcclient
