"""The limits and the bearer tokens as the stock Triton clients meet them, over gRPC and HTTP:
the status codes they see must be the ones the protocol gives for shedding, deadlines and
authentication, so that their retry and error handling work."""

import shutil
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BUNDLES, Server

IRIS = next(b for b in BUNDLES if b.name == "iris-svc")
TOKEN = "s3cret-token-for-the-tests-0123"
FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def slow_iris(folder, delay_ms):
    """iris-svc made slow on purpose: a request waits `delay_ms` for others to share its run."""
    bundle = folder / "slow-iris"
    shutil.copytree(IRIS, bundle)
    toml = bundle / "predictor.toml"
    text = toml.read_text()
    assert "[runtime]\nthreads = 1" in text
    toml.write_text(text.replace("[runtime]\nthreads = 1", f"[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = {delay_ms}"))
    return bundle


def infer(client, module, **options):
    tensor = module.InferInput("input", list(FLOWER.shape), "FP32")
    tensor.set_data_from_numpy(FLOWER)
    return client.infer("iris-svc", [tensor], **options)


def grpc_status(call):
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


def test_grpc_sheds_calls_beyond_the_concurrency_limit_with_unavailable(tmp_path):
    server = Server([slow_iris(tmp_path, 2000)], ["--max-concurrent-requests", "2"])
    try:
        client = grpcclient.InferenceServerClient(url=server.grpc)
        answers = []
        waiting = [threading.Thread(target=lambda: answers.append(infer(client, grpcclient))) for _ in range(2)]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        status, message = grpc_status(lambda: infer(client, grpcclient))
        assert status == "StatusCode.UNAVAILABLE" and "--max-concurrent-requests" in message
        assert time.monotonic() - started < 1.0, "shed at once"
        for thread in waiting:
            thread.join()
        assert len(answers) == 2, "both admitted calls are answered"
        # Refused before its message was decoded, the call still has its access line.
        shed = [line for line in server.log if '"status":"UNAVAILABLE"' in line]
        assert len(shed) == 1 and '"endpoint":"ModelInfer"' in shed[0], shed
    finally:
        server.stop()


def test_grpc_calls_past_the_timeout_get_deadline_exceeded(tmp_path):
    server = Server([slow_iris(tmp_path, 2000)], ["--request-timeout-seconds", "0.3"])
    try:
        client = grpcclient.InferenceServerClient(url=server.grpc)
        status, message = grpc_status(lambda: infer(client, grpcclient))
        assert status == "StatusCode.DEADLINE_EXCEEDED" and "--request-timeout-seconds" in message
    finally:
        server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    server = Server([IRIS], ["--auth-token-file", str(tokens)])
    yield server
    server.stop()


def test_grpc_needs_the_token_but_for_the_health_methods(guarded):
    client = grpcclient.InferenceServerClient(url=guarded.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris-svc")
    for headers in [None, {"authorization": "Bearer not-the-token-0123456789"}]:
        status, _ = grpc_status(lambda: infer(client, grpcclient, headers=headers))
        assert status == "StatusCode.UNAUTHENTICATED"
        status, _ = grpc_status(lambda: client.get_model_metadata("iris-svc", headers=headers))
        assert status == "StatusCode.UNAUTHENTICATED"
    result = infer(client, grpcclient, headers={"authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("label").tolist() == [0]


def test_http_clients_send_the_token_as_a_header(guarded):
    client = httpclient.InferenceServerClient(url=guarded.http)
    assert client.is_server_ready()
    with pytest.raises(InferenceServerException) as raised:
        infer(client, httpclient)
    assert raised.value.status() == "401"
    result = infer(client, httpclient, headers={"Authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("label").tolist() == [0]
