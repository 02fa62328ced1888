"""tritonclient's asyncio clients (tritonclient.http.aio on aiohttp, tritonclient.grpc.aio on
grpc.aio), as an async application uses them: model configuration, statistics, the repository
index, compressed inference, gRPC streaming, and system shared memory."""

import asyncio
import uuid

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio
import tritonclient.utils.shared_memory as shm

from conftest import REPO, Server, read_bundle

IRIS = REPO / "models/iris-svc"


@pytest.fixture(scope="module")
def sharing():
    server = Server([IRIS], ["--allow-shared-memory"])
    yield server
    server.stop()


def run(coroutine):
    return asyncio.run(coroutine)


def sample():
    bundle = read_bundle(IRIS)
    return (
        np.array(bundle["sample"]["input"], dtype=np.float32),
        np.array(bundle["sample"]["output"], dtype=np.float32),
        bundle["sample"]["tolerance"],
    )


def test_http_aio_configuration_statistics_index_and_compressed_inference(sharing):
    rows, expected, tolerance = sample()

    async def calls():
        client = httpaio.InferenceServerClient(url=sharing.http)
        try:
            config = await client.get_model_config("iris-svc")
            before = await client.get_inference_statistics("iris-svc")
            index = await client.get_model_repository_index()
            tensor = httpaio.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows)
            result = await client.infer(
                "iris-svc",
                [tensor],
                request_compression_algorithm="gzip",
                response_compression_algorithm="gzip",
            )
            after = await client.get_inference_statistics("iris-svc")
            return config, before, index, result.as_numpy("probabilities"), after
        finally:
            await client.close()

    config, before, index, probabilities, after = run(calls())
    assert config["name"] == "iris-svc" and config["platform"] == "onnxruntime_onnx"
    assert [(m["name"], m["state"]) for m in index] == [("iris-svc", "READY")]
    np.testing.assert_allclose(probabilities, expected, atol=tolerance, rtol=0)
    count = lambda stats: int(stats["model_stats"][0]["inference_count"])  # noqa: E731
    assert count(after) == count(before) + len(rows)


def test_grpc_aio_configuration_statistics_index_streaming_and_compression(sharing):
    rows, expected, tolerance = sample()

    async def calls():
        client = grpcaio.InferenceServerClient(url=sharing.grpc)
        try:
            config = await client.get_model_config("iris-svc", as_json=True)
            stats = await client.get_inference_statistics("iris-svc", as_json=True)
            index = await client.get_model_repository_index(as_json=True)
            tensor = grpcaio.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows)
            compressed = await client.infer("iris-svc", [tensor], compression_algorithm="gzip")

            async def requests():
                for number in range(3):
                    request = grpcaio.InferInput("input", [1, 4], "FP32")
                    request.set_data_from_numpy(rows[number : number + 1])
                    yield {"model_name": "iris-svc", "inputs": [request], "request_id": str(number)}

            streamed = []
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                streamed.append((result.get_response().id, result.as_numpy("probabilities")))
                if len(streamed) == 3:
                    break
            return config, stats, index, compressed.as_numpy("probabilities"), streamed
        finally:
            await client.close()

    config, stats, index, compressed, streamed = run(calls())
    assert config["config"]["name"] == "iris-svc"
    assert stats["model_stats"][0]["name"] == "iris-svc"
    assert [m["name"] for m in index["models"]] == ["iris-svc"]
    np.testing.assert_allclose(compressed, expected, atol=tolerance, rtol=0)
    # One answer per request, in order.
    assert [request_id for request_id, _ in streamed] == ["0", "1", "2"]
    for number, (_, probabilities) in enumerate(streamed):
        np.testing.assert_allclose(probabilities[0], expected[number], atol=tolerance, rtol=0)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_aio_clients_use_system_shared_memory(sharing, protocol):
    rows, expected, tolerance = sample()
    key = f"/predictor-aio-{uuid.uuid4().hex}"
    handle = shm.create_shared_memory_region(key.strip("/"), key, rows.nbytes + expected.nbytes)
    shm.set_shared_memory_region(handle, [rows])
    aio = httpaio if protocol == "http" else grpcaio

    async def calls():
        client = aio.InferenceServerClient(url=sharing.http if protocol == "http" else sharing.grpc)
        try:
            await client.register_system_shared_memory("inputs", key, rows.nbytes)
            await client.register_system_shared_memory("outputs", key, expected.nbytes, offset=rows.nbytes)
            tensor = aio.InferInput("input", list(rows.shape), "FP32")
            tensor.set_shared_memory("inputs", rows.nbytes)
            output = aio.InferRequestedOutput("probabilities")
            output.set_shared_memory("outputs", expected.nbytes)
            await client.infer("iris-svc", [tensor], outputs=[output])
        finally:
            await client.unregister_system_shared_memory()
            await client.close()

    try:
        run(calls())
        written = shm.get_contents_as_numpy(handle, np.float32, [(rows.nbytes + expected.nbytes) // 4])
        np.testing.assert_allclose(written[rows.size :].reshape(expected.shape), expected, atol=tolerance, rtol=0)
    finally:
        shm.destroy_shared_memory_region(handle)
