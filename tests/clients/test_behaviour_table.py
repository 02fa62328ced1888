"""One table of behaviours, run over both transports: each case is sent once with tritonclient's
HTTP client (REST, JSON) and once with its gRPC client, to one server, and must give the same
outcome: the same answer, or the refusal each protocol names for it (its HTTP status and its gRPC
code) with the same words. REST and gRPC share one inference path, one gate and one table of
calls in the server; this is where a difference between them would show."""

import shutil
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BUNDLES, REPO, Server, module

TOKEN = "behaviour-table-token-0123456789"
AUTHORIZED = {"authorization": f"Bearer {TOKEN}"}
MAX_BODY_BYTES = 64 * 1024
TIMEOUT_SECONDS = 2
FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
TRANSPORTS = ["http", "grpc"]


def bundle(name):
    return next(folder for folder in BUNDLES if folder.name == name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("behaviours")
    tokens = folder / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    # iris-svc made to wait past the deadline (10 s, the most a bundle may say) for others to
    # share its run.
    slow = folder / "slow-iris"
    shutil.copytree(bundle("iris-svc"), slow)
    toml = slow / "predictor.toml"
    text = toml.read_text().replace('name = "iris-svc"', 'name = "slow-iris"')
    toml.write_text(text.replace("[runtime]\nthreads = 1", "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = 10000"))
    flags = [
        "--auth-token-file", str(tokens),
        "--max-body-bytes", str(MAX_BODY_BYTES),
        "--max-concurrent-requests", "2",
        "--request-timeout-seconds", str(TIMEOUT_SECONDS),
    ]
    models = [bundle("iris-svc"), bundle("support-tickets-tfidf"), REPO / "server/tests/fixtures/batch-edges", slow]
    server = Server(models, flags)
    yield server
    server.stop()


def client(server, transport):
    # A longer HTTP timeout than conftest's client: the deadline case waits on a slow model.
    if transport == "http":
        return httpclient.InferenceServerClient(url=server.http, network_timeout=60)
    return grpcclient.InferenceServerClient(url=server.grpc)


def infer(server, transport, model, inputs, outputs=None, headers=AUTHORIZED):
    """`inputs`: (name, array, datatype) each; `outputs`: (name, class count) each."""
    tensors = []
    for name, array, datatype in inputs:
        tensor = module(transport).InferInput(name, list(array.shape), datatype)
        if transport == "http":
            tensor.set_data_from_numpy(array, binary_data=False)
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    requested = None
    if outputs is not None:
        options = {"binary_data": False} if transport == "http" else {}
        requested = [
            module(transport).InferRequestedOutput(name, class_count=count, **options) for name, count in outputs
        ]
    return client(server, transport).infer(model, tensors, outputs=requested, headers=headers)


def refusal(call):
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


# What each refusal is called: (HTTP status, gRPC code) by what the caller did.
STATUSES = {
    "invalid": ("400", "StatusCode.INVALID_ARGUMENT"),
    "not found": ("404", "StatusCode.NOT_FOUND"),
    "too large": ("413", "StatusCode.OUT_OF_RANGE"),
    "unauthenticated": ("401", "StatusCode.UNAUTHENTICATED"),
    "overloaded": ("503", "StatusCode.UNAVAILABLE"),
    "too slow": ("503", "StatusCode.DEADLINE_EXCEEDED"),
}

# (case, model, inputs, outputs, headers, refusal, words every transport's message holds)
REFUSALS = [
    ("bad datatype", "iris-svc", [("input", FLOWER.astype(np.float64), "FP64")], None, AUTHORIZED,
     "invalid", "input 'input' expects datatype FP32, received FP64"),
    ("wrong shape", "iris-svc", [("input", FLOWER[:, :3], "FP32")], None, AUTHORIZED,
     "invalid", "input 'input' expects shape [-1, 4] (-1: any size), received [1, 3]"),
    ("rows that disagree", "batch-edges",
     [("x", np.zeros((3, 2), np.float32), "FP32"), ("y", np.zeros((1, 2), np.float32), "FP32")], None, AUTHORIZED,
     "invalid", "inputs 'x' and 'y' disagree on their rows"),
    ("unknown model", "iris-svm", [("input", FLOWER, "FP32")], None, AUTHORIZED,
     "not found", "Request for unknown model: 'iris-svm' is not found; this server has"),
    ("unknown output", "iris-svc", [("input", FLOWER, "FP32")], [("proba", 0)], AUTHORIZED,
     "invalid", "unexpected inference output 'proba' for model 'iris-svc'; its outputs are"),
    ("classification of no scores", "support-tickets-tfidf", [("text", np.array([[b"refund"]], np.object_), "BYTES")],
     [("output_label", 2)], AUTHORIZED, "invalid", "classification needs numeric scores, but the output is BYTES"),
    ("body over the limit", "iris-svc", [("input", np.zeros((MAX_BODY_BYTES // 16 + 1, 4), np.float32), "FP32")],
     None, AUTHORIZED, "too large", f"({MAX_BODY_BYTES} bytes, its --max-body-bytes)"),
    ("token missing", "iris-svc", [("input", FLOWER, "FP32")], None, None,
     "unauthenticated", "this server needs a bearer token"),
    ("deadline", "slow-iris", [("input", FLOWER, "FP32")], None, AUTHORIZED,
     "too slow", f"did not finish within {TIMEOUT_SECONDS} s (--request-timeout-seconds)"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_each_refusal_is_the_same_over_rest_and_grpc(server, case):
    _, model, inputs, outputs, headers, kind, words = case
    for transport, expected_status in zip(TRANSPORTS, STATUSES[kind]):
        status, message = refusal(lambda: infer(server, transport, model, inputs, outputs, headers))
        assert (transport, status) == (transport, expected_status), message
        assert words in message, f"{transport}: {message}"
    assert client(server, "grpc").is_server_ready(headers=AUTHORIZED)


def in_flight(server):
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("predictor_requests_in_flight{")
    )


def test_overload_is_shed_at_once_the_same_over_rest_and_grpc(server):
    """Two calls of the slow model hold both places (until their deadline); a third call, over
    either transport, is refused at once rather than queued."""
    for transport in TRANSPORTS:
        deadline = time.monotonic() + 60
        while in_flight(server) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight(server) == 0, "the previous calls still hold their places"
        holders = [
            threading.Thread(target=lambda: refusal(lambda: infer(server, "grpc", "slow-iris", [("input", FLOWER, "FP32")])))
            for _ in range(2)
        ]
        for holder in holders:
            holder.start()
        while in_flight(server) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert in_flight(server) >= 2, "the two slow calls never held both places"
        status, message = refusal(lambda: infer(server, transport, "iris-svc", [("input", FLOWER, "FP32")]))
        for holder in holders:
            holder.join()
        assert status == STATUSES["overloaded"][TRANSPORTS.index(transport)], message
        assert "its limit (--max-concurrent-requests); retry later" in message


def test_classification_and_bytes_answer_the_same_over_rest_and_grpc(server):
    """iris-svc does not batch, so, as Triton ranks it, its whole output is ranked as one: the two
    best of both rows' six scores, `score:index[:label]`."""
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    tickets = np.array([[b"I was charged twice this month"], [b"my package never arrived"]], np.object_)
    text = lambda values: [value.decode() if isinstance(value, bytes) else value for value in values]
    answers = {}
    for transport in TRANSPORTS:
        classes = infer(server, transport, "iris-svc", [("input", flowers, "FP32")], [("probabilities", 2)])
        labels = infer(server, transport, "support-tickets-tfidf", [("text", tickets, "BYTES")], [("output_label", 0)])
        answers[transport] = (text(classes.as_numpy("probabilities")), text(labels.as_numpy("output_label")))
    assert answers["http"] == answers["grpc"]
    classes, labels = answers["grpc"]
    assert [entry.split(":")[1:] for entry in classes] == [["0", "setosa"], ["5"]]
    assert labels == ["billing", "delivery"]
