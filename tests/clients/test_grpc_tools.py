"""The gRPC ecosystem's own clients against the real server: the standard health service
(grpcio-health-checking, what Kubernetes gRPC probes and grpc_health_probe call), server reflection
(grpcio-reflection, what grpcurl, grpcui and Postman use), and message compression with
tritonclient's own option; and the v2 health answers' JSON bodies, which KServe's SDK parses."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import BUNDLES, read_bundle


def test_the_health_service_reports_the_server_and_each_model(server):
    with grpc.insecure_channel(server.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", *(read_bundle(folder)["name"] for folder in BUNDLES)]:
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in raised.value.details()
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        # Watch streams SERVICE_UNKNOWN for a name it does not have, as grpc.health.v1 says.
        watch = health.Watch(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()
    # Counted as answered: a successful unary call's status comes in its trailers, not its headers.
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        metrics = response.read().decode()
    assert 'protocol="grpc",endpoint="Check",status="OK"}' in metrics
    assert 'protocol="grpc",endpoint="Check",status="NOT_FOUND"}' in metrics
    assert 'endpoint="Check",status="UNKNOWN"' not in metrics


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_the_services_and_describes_the_inference_service(server, version):
    """grpcurl asks v1 first, older tools v1alpha; both carry the same messages, so the v1alpha
    classes grpcio-reflection ships serve for both."""
    with grpc.insecure_channel(server.grpc) as channel:
        reflection_info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        answers = reflection_info(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService"),
        ]), timeout=10)
        listed, described = list(answers)
        names = {service.name for service in listed.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names, names
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in described.file_descriptor_response.file_descriptor_proto]
        methods = {m.name for f in files for s in f.service for m in s.method}
        assert {"ModelInfer", "ModelMetadata", "ModelConfig"} <= methods, methods


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_grpc_messages_may_be_compressed(server, algorithm):
    bundle = read_bundle(BUNDLES[0])
    [spec] = bundle["inputs"]
    rows = np.array(bundle["sample"]["input"], dtype=np.float32)
    tensor = grpcclient.InferInput(spec["name"], list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    triton = grpcclient.InferenceServerClient(url=server.grpc)
    plain = triton.infer(bundle["name"], [tensor])
    compressed = triton.infer(bundle["name"], [tensor], compression_algorithm=algorithm)
    name = bundle.get("prediction") or bundle["outputs"][0]["name"]
    np.testing.assert_array_equal(compressed.as_numpy(name), plain.as_numpy(name))


@pytest.mark.parametrize("path, body", [
    ("/v2/health/live", {"live": True}),
    ("/v2/health/ready", {"ready": True}),
])
def test_v2_health_answers_carry_json_bodies(server, path, body):
    with urllib.request.urlopen(f"http://{server.http}{path}") as answer:
        assert answer.status == 200
        assert json.load(answer) == body


def test_model_readiness_names_the_model(server):
    name = read_bundle(BUNDLES[0])["name"]
    with urllib.request.urlopen(f"http://{server.http}/v2/models/{name}/ready") as answer:
        assert json.load(answer) == {"name": name, "ready": True}


def test_a_stream_answers_each_request_in_order_and_reports_errors_in_line(server):
    """tritonclient's start_stream: one answer per request, in order; a bad request's error comes
    back on the stream, which goes on."""
    import queue

    bundle = read_bundle(BUNDLES[0])
    [spec] = bundle["inputs"]
    answers = queue.Queue()
    triton = grpcclient.InferenceServerClient(url=server.grpc)
    triton.start_stream(callback=lambda result, error: answers.put((result, error)))
    rows = np.array(bundle["sample"]["input"], dtype=np.float32)
    for index in range(5):
        shape = list(rows.shape) if index != 2 else [rows.shape[0], rows.shape[1] + 1]
        data = rows if index != 2 else np.zeros(shape, dtype=np.float32)
        tensor = grpcclient.InferInput(spec["name"], shape, "FP32")
        tensor.set_data_from_numpy(data)
        triton.async_stream_infer(bundle["name"], [tensor], request_id=f"stream-{index}")
    received = [answers.get(timeout=30) for _ in range(5)]
    triton.stop_stream()
    for index, (result, error) in enumerate(received):
        if index == 2:
            assert result is None and "expects shape" in error.message()
        else:
            assert error is None, error
            assert result.get_response().id == f"stream-{index}"
    # Each message is counted under the stream's method, as the table of calls names it.
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        metrics = response.read().decode()
    for status in ("OK", "INVALID_ARGUMENT"):
        series = f'predictor_requests_total{{model="{bundle["name"]}",protocol="grpc",endpoint="ModelStreamInfer",status="{status}"}} '
        assert series in metrics, status


def test_health_turns_not_serving_the_moment_shutdown_begins():
    """Watches open on the health service (the server and a model) see NOT_SERVING as soon as
    SIGTERM arrives, and so does Check, while the server still drains a request in flight (a
    stalled upload holds the drain open)."""
    import signal
    import socket
    import time

    from conftest import REPO, Server

    server = Server([REPO / "models/iris-svc"], ["--drain-timeout-seconds", "60"])
    try:
        host, port = server.http.rsplit(":", 1)
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{")
        deadline = time.monotonic() + 30
        while 'predictor_requests_in_flight{protocol="http"} 1' not in urllib.request.urlopen(
            f"http://{server.metrics}/metrics"
        ).read().decode():
            assert time.monotonic() < deadline, "the stalled upload never became a request in flight"
            time.sleep(0.05)
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        with grpc.insecure_channel(server.grpc) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = lambda service: health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status
            watches = {service: health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=30)
                       for service in ["", "iris-svc"]}
            for service, watch in watches.items():
                assert next(watch).status == serving, service
            server.process.send_signal(signal.SIGTERM)
            for service, watch in watches.items():
                assert next(watch).status == not_serving, service
                # Nothing changes any more: the watch ends, and the drain does not wait for it.
                assert next(watch, None) is None, service
            # A new call now meets the drain (the connection's GOAWAY, the listener closed) or
            # Check's own reading of the server's state: never SERVING.
            for service in watches:
                try:
                    assert check(service) == not_serving, service
                except grpc.RpcError as refused:
                    assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
        # The drain goes on until the stalled caller leaves; then the server exits cleanly.
        assert server.process.poll() is None, "the server left before its drain"
        stalled.close()
        assert server.process.wait(timeout=30) == 0
    finally:
        server.stop()
