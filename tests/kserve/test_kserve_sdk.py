"""KServe's own Python SDK (kserve 0.21: InferenceRESTClient, InferenceGRPCClient) against the real
binary and every bundle: server and model health, and inference over REST and gRPC giving the
seed API's prediction. It parses the v2 health answers' JSON bodies, which tritonclient does not
read."""

import asyncio
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/clients"))
from conftest import BUNDLES, Server, public_inputs, read_bundle, sample_rows, seed_rows  # noqa: E402  (the client tests' fixtures, reused)

# predictor.toml's dtype: the numpy type and the protocol's datatype (BYTES: an object array of str).
TYPES = {
    "float32": (np.float32, "FP32"),
    "float64": (np.float64, "FP64"),
    "int64": (np.int64, "INT64"),
    "int32": (np.int32, "INT32"),
    "string": (np.object_, "BYTES"),
    "bytes": (np.object_, "BYTES"),
}


@pytest.fixture(scope="module")
def server():
    server = Server(BUNDLES)
    yield server
    server.stop()


def seed_prediction(server, name, rows):
    request = urllib.request.Request(
        f"http://{server.http}/models/{name}/predict",
        data=json.dumps({"data": seed_rows(rows)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["prediction"]


def request_for(folder, bundle):
    [spec] = public_inputs(bundle)
    numpy_type, datatype = TYPES[spec["dtype"]]
    rows = np.array(sample_rows(folder, bundle), dtype=numpy_type)
    tensor = InferInput(spec["name"], list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows)
    return InferRequest(model_name=bundle["name"], infer_inputs=[tensor])


def prediction(bundle, response):
    name = bundle.get("prediction") or bundle["outputs"][0]["name"]
    return next(output for output in response.outputs if output.name == name).as_numpy()


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_the_rest_client_checks_health_and_infers(server, folder):
    bundle = read_bundle(folder)

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        base = f"http://{server.http}"
        try:
            assert await client.is_server_live(base)
            assert await client.is_server_ready(base)
            assert await client.is_model_ready(base, bundle["name"])
            return await client.infer(base, request_for(folder, bundle), model_name=bundle["name"])
        finally:
            await client.close()

    response = asyncio.run(run())
    expected = seed_prediction(server, bundle["name"], sample_rows(folder, bundle))
    np.testing.assert_array_equal(prediction(bundle, response), np.array(expected, dtype=prediction(bundle, response).dtype))


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_the_grpc_client_checks_health_and_infers(server, folder):
    bundle = read_bundle(folder)

    async def run():
        client = InferenceGRPCClient(server.grpc, timeout=30)
        try:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert await client.is_model_ready(bundle["name"])
            return await client.infer(request_for(folder, bundle))
        finally:
            await client.close()

    response = asyncio.run(run())
    expected = seed_prediction(server, bundle["name"], sample_rows(folder, bundle))
    np.testing.assert_array_equal(prediction(bundle, response), np.array(expected, dtype=prediction(bundle, response).dtype))
