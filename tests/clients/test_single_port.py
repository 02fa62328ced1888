"""`serve --single-port`: the seed API, v2 REST (tritonclient.http) and v2 gRPC
(tritonclient.grpc) answered at once on one port, as KServe's Serverless mode (Knative) needs,
with the bearer tokens holding on the gRPC path of that port as on the gRPC port."""

import json
import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BUNDLES, Server

IRIS = next(b for b in BUNDLES if b.name == "iris-svc")
TOKEN = "s3cret-token-for-the-tests-0123"
FLOWER = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def infer(client, module, **options):
    tensor = module.InferInput("input", list(FLOWER.shape), "FP32")
    tensor.set_data_from_numpy(FLOWER)
    return client.infer("iris-svc", [tensor], **options)


def seed_label(address, headers=None):
    request = urllib.request.Request(f"http://{address}/predict/test/label", headers=headers or {})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["prediction"]


@pytest.fixture(scope="module")
def single():
    server = Server([IRIS], ["--single-port"])
    yield server
    server.stop()


def test_one_port_serves_the_seed_api_v2_rest_and_grpc_at_once(single):
    assert single.grpc == single.http == single.metrics
    http = httpclient.InferenceServerClient(url=single.http)
    grpc = grpcclient.InferenceServerClient(url=single.http)
    assert http.is_server_ready() and grpc.is_server_ready()
    assert grpc.get_model_metadata("iris-svc").name == "iris-svc"
    # The three at once: gRPC callers in threads (its client is thread-safe) while this thread
    # calls the seed API and REST (tritonclient.http is not), on connections open side by side.
    answers, errors = [], []

    def call_grpc():
        try:
            for _ in range(10):
                answers.append(infer(grpc, grpcclient).as_numpy("probabilities"))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=call_grpc) for _ in range(4)]
    for thread in threads:
        thread.start()
    rest = []
    for _ in range(10):
        assert seed_label(single.http) == ["setosa", "versicolor", "virginica"]
        rest.append(infer(http, httpclient).as_numpy("probabilities"))
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(answers) == 40
    for answer in answers + rest:
        np.testing.assert_allclose(answer, rest[0], rtol=0, atol=1e-6)
    assert int(np.argmax(rest[0])) == 0
    # The scrape is on the same port, and counts both protocols.
    with urllib.request.urlopen(f"http://{single.http}/metrics") as response:
        metrics = response.read().decode()
    assert 'protocol="grpc",endpoint="ModelInfer",status="OK"' in metrics
    assert 'protocol="http",endpoint="/v2/models/{model}/infer",status="200"' in metrics


def test_grpc_on_the_one_port_needs_the_token_but_for_the_health_methods(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    server = Server([IRIS], ["--single-port", "--auth-token-file", str(tokens)])
    try:
        grpc = grpcclient.InferenceServerClient(url=server.http)
        assert grpc.is_server_live() and grpc.is_model_ready("iris-svc")
        for headers in [None, {"authorization": "Bearer not-the-token-0123456789"}]:
            with pytest.raises(InferenceServerException) as raised:
                infer(grpc, grpcclient, headers=headers)
            assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
        result = infer(grpc, grpcclient, headers={"authorization": f"Bearer {TOKEN}"})
        assert result.as_numpy("label").tolist() == [0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            seed_label(server.http)
        assert refused.value.code == 401
        assert seed_label(server.http, {"Authorization": f"Bearer {TOKEN}"})[0] == "setosa"
    finally:
        server.stop()
