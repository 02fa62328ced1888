"""Requests no well-behaved client sends, written byte by byte over HTTP and message by message
over gRPC: each must get a clear error (400 with {"error": ...}, or INVALID_ARGUMENT), never a
dropped connection or a 500, and valid variants of the encodings must work."""

import http.client
import json
import struct
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
from tritonclient.utils import serialize_byte_tensor

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def post(server, path, body, headers=None):
    host, port = server.http.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response, payload


def infer_json(server, request, path="/v2/models/iris-svc/infer"):
    response, payload = post(server, path, json.dumps(request).encode(), {"Content-Type": "application/json"})
    return response.status, json.loads(payload)


def iris_input(**overrides):
    return {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW, **overrides}


def logged(server, matches, seconds=2):
    """Whether the server logs a line that `matches` within `seconds` (its stderr is read on
    another thread)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(matches(line) for line in list(server.log)):
            return True
        time.sleep(0.02)
    return False


def binary_request(header, *blobs, length=None):
    """A body of the binary extension: the JSON header, then the blobs."""
    head = json.dumps(header).encode()
    body = head + b"".join(blobs)
    return body, {"Inference-Header-Content-Length": str(len(head) if length is None else length)}


@pytest.mark.parametrize(
    "request_body, message",
    [
        ({"inputs": [iris_input(data=[[5.1, 3.5], [1.4, 0.2]])]}, None),  # nested data is fine
        ({"inputs": [iris_input(data=[5.1, 3.5, 1.4])]}, "expected 4 values for the shape, received 3"),
        ({"inputs": [iris_input(data=[5.1, "3.5", 1.4, 0.2])]}, "expected float32 at [1], received a string"),
        ({"inputs": [iris_input(data=None)]}, "has no data"),
        ({"inputs": [iris_input(shape=[1, -4])]}, "dimension 1 of shape [1, -4] is -4"),
        ({"inputs": [iris_input(shape=[0, 4], data=[])]}, "dimension 0 of shape [0, 4] is 0"),
        ({"inputs": [iris_input(shape=[1, 3], data=[1, 2, 3])]}, "expects shape [-1, 4] (-1: any size), received [1, 3]"),
        ({"inputs": [iris_input(datatype="FLOAT32")]}, "received FLOAT32 (not a datatype of the protocol)"),
        ({"inputs": [iris_input(parameters={"binary_data_size": 16})]}, "both 'data' and the 'binary_data_size'"),
        ({"inputs": [iris_input()], "parameters": {"binary_data_output": "yes"}}, "must be true or false"),
        ({"inputs": [iris_input()], "outputs": [{"name": "label", "parameters": {"classification": "two"}}]}, "parameter 'classification' must be a class count"),
        ({"inputs": [iris_input(data=None, parameters={"shared_memory_region": "r", "shared_memory_byte_size": 16})]}, "--allow-shared-memory"),
        ({"inputs": [iris_input(data=None, parameters={"shared_memory_region": "r"})]}, "'shared_memory_byte_size' is needed"),
        ({"inputs": [iris_input(name="x" * 5000)]}, "unexpected inference input 'xxxxxxxx"),
        ({"inputs": [iris_input()], "outputs": [{"name": "label"}, {"name": "label"}]}, "requested twice"),
        ({"inputs": [iris_input()], "id": 7}, "not an inference request"),
        ({"input": [iris_input()]}, "missing field `inputs`"),
    ],
)
def test_json_requests(server, request_body, message):
    status, body = infer_json(server, request_body)
    if message is None:
        assert status == 200, body
    else:
        assert status == 400, body
        assert message in body["error"]


@pytest.mark.parametrize(
    "name, datatype, data, message",
    [
        ("in_int8", "INT8", [1, 300], "value 300 at [1] is out of range for int8"),
        ("in_uint16", "UINT16", [-1, 0], "value -1 at [0] is out of range for uint16"),
        ("in_float16", "FP16", [1, 70000], "value 70000 at [1] is out of range for float16"),
        ("in_bool", "BOOL", [1, 0], "expected bool at [0], received a number"),
    ],
)
def test_values_outside_their_datatype_are_refused(server, name, datatype, data, message):
    request = {"inputs": [{"name": name, "shape": [1, 2], "datatype": datatype, "data": data}]}
    status, body = infer_json(server, request, "/v2/models/every-dtype/infer")
    assert status == 400
    assert message in body["error"]


def test_binary_inputs_and_outputs_follow_the_extension(server):
    body, headers = binary_request(
        {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
        },
        struct.pack("<4f", *IRIS_ROW),
    )
    response, payload = post(server, "/v2/models/iris-svc/infer", body, headers)
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/octet-stream"
    length = int(response.getheader("Inference-Header-Content-Length"))
    header = json.loads(payload[:length])
    probabilities, label = header["outputs"]
    assert probabilities["parameters"] == {"binary_data_size": 12}
    assert "data" not in probabilities
    assert label["data"] == [0]  # setosa, as JSON: binary_data was not asked for it
    values = struct.unpack("<3f", payload[length:])
    assert values[0] > 0.9


@pytest.mark.parametrize(
    "announced, blob, length_header, message",
    [
        (12, struct.pack("<3f", 1, 2, 3), None, "takes 16 bytes, but 12 bytes were sent"),
        (16, struct.pack("<5f", 1, 2, 3, 4, 5), None, "4 bytes follow the inputs' binary data"),
        (16, struct.pack("<4f", 1, 2, 3, 4), "1000000000", "Inference-Header-Content-Length"),
        (16, struct.pack("<4f", 1, 2, 3, 4), "ten", "Inference-Header-Content-Length"),
    ],
)
def test_binary_bodies_that_do_not_add_up(server, announced, blob, length_header, message):
    input_header = {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": announced}}
    body, headers = binary_request({"inputs": [input_header]}, blob)
    if length_header is not None:
        headers["Inference-Header-Content-Length"] = length_header
    response, payload = post(server, "/v2/models/iris-svc/infer", body, headers)
    assert response.status == 400, payload
    assert message in json.loads(payload)["error"]


def test_binary_data_without_the_header_length_is_explained(server):
    header = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}
    body, _ = binary_request(header)
    response, payload = post(server, "/v2/models/iris-svc/infer", body)
    assert response.status == 400
    assert "is the Inference-Header-Content-Length header set?" in json.loads(payload)["error"]


def test_a_bool_byte_other_than_0_or_1_is_refused(server):
    body, headers = binary_request(
        {"inputs": [{"name": "in_bool", "shape": [1, 2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]},
        bytes([1, 2]),
    )
    response, payload = post(server, "/v2/models/every-dtype/infer", body, headers)
    assert response.status == 400
    assert "a bool must be 0 or 1" in json.loads(payload)["error"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/v2/models/iris-svc", 200),
        ("/v2/models/iris-svc/versions/1.0.0", 200),
        ("/v2/models/iris-svc/versions/2.0.0", 404),
        ("/v2/models/iris-svc/versions/1.0.0/ready", 200),
        ("/v2/models/nope/ready", 404),
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
    ],
)
def test_metadata_and_health_paths(server, path, status):
    host, port = server.http.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path)
    assert connection.getresponse().status == status


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def grpc_request(*inputs, raw=(), model="iris-svc"):
    return pb.ModelInferRequest(model_name=model, inputs=list(inputs), raw_input_contents=list(raw))


def grpc_input(name="input", datatype="FP32", shape=(1, 4), **contents):
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    if contents:
        tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    return tensor


def test_grpc_typed_contents_give_the_raw_answer(stub):
    typed = stub.ModelInfer(grpc_request(grpc_input(fp32_contents=IRIS_ROW)))
    raw = stub.ModelInfer(grpc_request(grpc_input(), raw=[struct.pack("<4f", *IRIS_ROW)]))
    assert typed.raw_output_contents == raw.raw_output_contents
    probabilities = np.frombuffer(typed.raw_output_contents[1], dtype=np.float32)
    assert probabilities.shape == (3,) and probabilities[0] > 0.9


TEXT = "support-tickets-tfidf"
TICKETS = [b"I was charged twice this month", b"my package never arrived"]


def length_prefixed(strings):
    """The binary form of BYTES, as tritonclient encodes it."""
    return serialize_byte_tensor(np.array(strings, dtype=np.object_)).item()


def test_grpc_text_in_bytes_contents_or_raw_gives_the_class_names(stub):
    """BYTES over gRPC either way: typed in contents.bytes_contents, or raw, each element a
    4-byte little-endian length then its bytes; the answer is the same, in raw form."""
    shape = (len(TICKETS), 1)
    typed = stub.ModelInfer(grpc_request(grpc_input("text", "BYTES", shape, bytes_contents=TICKETS), model=TEXT))
    raw = stub.ModelInfer(grpc_request(grpc_input("text", "BYTES", shape), raw=[length_prefixed(TICKETS)], model=TEXT))
    assert typed.raw_output_contents == raw.raw_output_contents
    label = [output.name for output in typed.outputs].index("output_label")
    assert typed.raw_output_contents[label] == length_prefixed([b"billing", b"delivery"])


@pytest.mark.parametrize(
    "request_message, message",
    [
        (grpc_request(grpc_input(), raw=[b"\0" * 12]), "takes 16 bytes, but 12 bytes were sent"),
        (
            grpc_request(grpc_input("text", "BYTES", (1, 1)), raw=[struct.pack("<I", 200) + b"refund please"], model=TEXT),
            "claims 200 bytes, but only 13 bytes of data follow",
        ),
        (
            grpc_request(grpc_input("text", "BYTES", (2, 1), bytes_contents=[b"one"]), model=TEXT),
            "holds 2 values, but 1 were sent",
        ),
        (grpc_request(grpc_input(), raw=[b"\0" * 16, b"\0" * 16]), "raw_input_contents has 2 entries for 1 inputs"),
        (grpc_request(grpc_input(fp32_contents=IRIS_ROW), raw=[b"\0" * 16]), "both contents and raw_input_contents"),
        (grpc_request(grpc_input()), "has no data"),
        (grpc_request(grpc_input(fp64_contents=IRIS_ROW)), "FP32 values go in contents.fp32_contents"),
        (grpc_request(grpc_input(fp32_contents=IRIS_ROW[:3])), "holds 4 values, but 3 were sent"),
        (grpc_request(grpc_input(shape=(1, -4), fp32_contents=IRIS_ROW)), "dimension 1 of shape [1, -4] is -4"),
        (grpc_request(grpc_input(fp32_contents=IRIS_ROW, int_contents=[1])), "but contents.int_contents has values"),
        (
            grpc_request(grpc_input("in_int8", "INT8", (1, 2), int_contents=[1, 300]), model="every-dtype"),
            "value 300 at [1] is out of range for int8",
        ),
        (
            grpc_request(grpc_input("in_float16", "FP16", (1, 2), fp32_contents=[1, 2]), model="every-dtype"),
            "FP16 values go in raw_input_contents",
        ),
    ],
)
def test_grpc_messages_that_do_not_fit(stub, request_message, message):
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request_message)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_grpc_refuses_shared_memory_unless_allowed(stub):
    request = grpc_request(grpc_input(fp32_contents=IRIS_ROW))
    output = request.outputs.add(name="label")
    output.parameters["shared_memory_region"].string_param = "r"
    output.parameters["shared_memory_byte_size"].int64_param = 8
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--allow-shared-memory" in raised.value.details()


def test_grpc_classification_needs_a_class_count(stub):
    request = grpc_request(grpc_input(fp32_contents=IRIS_ROW))
    request.outputs.add(name="probabilities").parameters["classification"].string_param = "2"
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameter 'classification' must be a class count" in raised.value.details()


def test_error_messages_clip_what_the_caller_sent(server):
    status, body = infer_json(server, {"inputs": [iris_input(name="x" * 5000)]})
    assert status == 400
    assert len(body["error"]) < 300, body["error"]
    assert "(5000 bytes)" in body["error"]


def test_non_finite_floats_are_exact_in_binary_and_null_in_json(server):
    """JSON has no NaN or infinity: such values come back as null in JSON outputs, and exactly
    as binary data, which the client can ask for."""
    values = struct.pack("<2f", float("nan"), float("inf"))
    other = {"in_float64": [[-1.0, 1.0]]}
    body, headers = binary_request(
        {
            "inputs": [
                {"name": "in_float32", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                *everything_else(other),
            ],
            "outputs": [{"name": "out_float32", "parameters": {"binary_data": True}}, {"name": "out_float64"}],
        },
        values,
    )
    response, payload = post(server, "/v2/models/every-dtype/infer", body, headers)
    assert response.status == 200, payload
    length = int(response.getheader("Inference-Header-Content-Length"))
    header = json.loads(payload[:length])
    returned = struct.unpack("<2f", payload[length:])
    assert np.isnan(returned[0]) and returned[1] == float("inf")
    assert header["outputs"][1]["data"] == [-1.0, 1.0]


def everything_else(given):
    """JSON inputs for every every-dtype input but in_float32, from its sample unless `given`."""
    from conftest import EVERY_DTYPE, read_bundle

    bundle = read_bundle(EVERY_DTYPE)
    return [
        {
            "name": spec["name"],
            "shape": [1, 2],
            "datatype": {"bool": "BOOL", "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES"}.get(
                spec["dtype"], spec["dtype"].upper()
            ),
            "data": given.get(spec["name"], bundle["sample"]["input"][spec["name"]]),
        }
        for spec in bundle["inputs"]
        if spec["name"] != "in_float32"
    ]


def test_grpc_unknown_model_and_version(stub):
    for request in (pb.ModelMetadataRequest(name="nope"), pb.ModelMetadataRequest(name="iris-svc", version="2")):
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelMetadata(request)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# Past the server's --max-body-bytes (8 MiB by default), for REST bodies and gRPC messages alike.
TOO_LARGE = 8 * 1024 * 1024 + 4


def test_a_body_over_the_limit_gets_413(server):
    rows = TOO_LARGE // 16
    body, headers = binary_request(
        {"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "parameters": {"binary_data_size": rows * 16}}]},
        bytes(rows * 16),
    )
    response, payload = post(server, "/v2/models/iris-svc/infer", body, headers)
    assert response.status == 413
    assert "--max-body-bytes" in json.loads(payload)["error"]


def test_a_grpc_message_over_the_limit_is_refused(stub):
    rows = TOO_LARGE // 16
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(grpc_request(grpc_input(shape=(rows, 4)), raw=[bytes(rows * 16)]))
    assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "--max-body-bytes" in raised.value.details()
    assert len(dict(raised.value.trailing_metadata())["x-request-id"]) == 32


def test_large_answers_are_compressed_only_when_asked(server):
    """Compressed when the caller accepts it and the answer is large; a small answer never is:
    setting up a gzip stream costs more than a small answer's whole request."""
    rows = 500
    large = json.dumps({"inputs": [iris_input(shape=[rows, 4], data=IRIS_ROW * rows)]}).encode()
    small = json.dumps({"inputs": [iris_input()]}).encode()
    for accept, encoding in (("gzip", "gzip"), ("deflate", "deflate"), (None, None)):
        headers = {"Accept-Encoding": accept} if accept else {}
        response, _ = post(server, "/v2/models/iris-svc/infer", large, headers)
        assert response.status == 200
        assert response.getheader("Content-Encoding") == encoding
        response, _ = post(server, "/v2/models/iris-svc/infer", small, headers)
        assert response.status == 200
        assert response.getheader("Content-Encoding") is None


def test_grpc_request_ids_come_back_in_metadata(stub):
    """The request's own id, else the caller's x-request-id metadata, else a generated one; on
    errors too (in the trailing metadata)."""
    request = grpc_request(grpc_input(fp32_contents=IRIS_ROW))
    request.id = "grpc-own-id"
    _, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "ignored")])
    assert ("x-request-id", "grpc-own-id") in call.initial_metadata()
    request.id = ""
    _, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "from-metadata")])
    assert ("x-request-id", "from-metadata") in call.initial_metadata()
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(grpc_request(grpc_input()), metadata=[("traceparent", parent)])
    trailing = dict(raised.value.trailing_metadata())
    assert len(trailing["x-request-id"]) == 32
    assert trailing["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_grpc_calls_are_counted_by_method_and_code(server, stub):
    def count(status):
        with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
            text = response.read().decode()
        series = f'predictor_requests_total{{model="iris-svc",protocol="grpc",endpoint="ModelInfer",status="{status}"}} '
        return next((float(line[len(series):]) for line in text.splitlines() if line.startswith(series)), 0.0)

    before = count("OK"), count("INVALID_ARGUMENT")
    stub.ModelInfer(grpc_request(grpc_input(fp32_contents=IRIS_ROW)))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(grpc_request(grpc_input()))
    assert (count("OK"), count("INVALID_ARGUMENT")) == (before[0] + 1, before[1] + 1)


NOT_UTF8 = b"iris\xff\xfevc"


@pytest.mark.parametrize(
    "method, message",
    [
        ("inference.GRPCInferenceService/ModelInfer", b"\xff\xff\xff\xff"),  # not protobuf
        (
            "inference.GRPCInferenceService/ModelInfer",
            pb.ModelInferRequest(model_name="iris-svc").SerializeToString().replace(b"iris-svc", NOT_UTF8),
        ),
        # The health service's messages are decoded as the inference service's are.
        ("grpc.health.v1.Health/Check", b"\xff\xff\xff\xff"),
        ("grpc.health.v1.Health/Check", b"\x0a\x08" + NOT_UTF8),  # HealthCheckRequest.service, not UTF-8
    ],
    ids=["garbage", "not-utf8", "health-garbage", "health-not-utf8"],
)
def test_grpc_messages_that_do_not_decode_are_the_callers_mistake(server, method, message):
    request_id = f"undecodable-{message.hex()[:12]}-{method[-5:]}"
    with grpc.insecure_channel(server.grpc) as channel:
        call = channel.unary_unary(f"/{method}")
        with pytest.raises(grpc.RpcError) as raised:
            call(message, metadata=[("x-request-id", request_id)])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failed to decode Protobuf message" in raised.value.details()
    # Refused before the service saw it, it still has its request id, a log line and a count.
    assert ("x-request-id", request_id) in raised.value.trailing_metadata()
    assert logged(server, lambda line: f'"{request_id}"' in line and '"INVALID_ARGUMENT"' in line)
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        text = response.read().decode()
    endpoint = method.split("/")[1]
    assert f'predictor_requests_total{{model="",protocol="grpc",endpoint="{endpoint}",status="INVALID_ARGUMENT"}}' in text


def test_a_grpc_call_its_client_cancels_is_counted_as_cancelled(tmp_path):
    """A gRPC client that gives up (its deadline passes) cancels the call; the server drops the
    work and logs and counts the call as CANCELLED. The call waits in a batching queue (3 s)
    longer than the client does (0.3 s)."""
    from conftest import REPO, Server

    bundle = tmp_path / "iris-svc"
    bundle.mkdir()
    source = REPO / "models/iris-svc"
    (bundle / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    text = (source / "predictor.toml").read_text()
    batching = "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = 3000"
    (bundle / "predictor.toml").write_text(text.replace("[runtime]\nthreads = 1", batching))
    server = Server([bundle])
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = grpc_request(grpc_input(fp32_contents=IRIS_ROW))
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(request, timeout=0.3, metadata=[("x-request-id", "impatient-1")])
            # The client's own deadline, or, at the same instant, the server's answer to the
            # deadline it was sent (tonic answers CANCELLED then): whichever comes first.
            assert raised.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        series = 'predictor_requests_total{model="iris-svc",protocol="grpc",endpoint="ModelInfer",status="CANCELLED"} 1'
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
                text = response.read().decode()
            if series in text:
                break
            time.sleep(0.05)
        assert series in text, text
        assert 'predictor_requests_in_flight{protocol="grpc"} 0' in text
        assert logged(server, lambda line: '"impatient-1"' in line and '"CANCELLED"' in line)
    finally:
        server.stop()
