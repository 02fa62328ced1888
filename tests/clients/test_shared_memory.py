"""Triton's system shared memory extension with tritonclient's own shared memory utilities
(POSIX shm_open regions, tritonclient.utils.shared_memory): register, infer with inputs read
from and outputs written to regions, status, unregister, over HTTP and gRPC, and what is refused:
offsets past a region, unregistered regions, a server that does not allow it, a caller without
the token."""

import uuid

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from conftest import EVERY_DTYPE, REPO, Server, read_bundle
from test_tritonclient import client, module

IRIS = REPO / "models/iris-svc"
TEXT = REPO / "models/support-tickets-tfidf"
TOKEN = "shared-memory-token-for-the-tests-01"


@pytest.fixture(scope="module")
def sharing(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    server = Server([IRIS, TEXT, EVERY_DTYPE], ["--allow-shared-memory", "--auth-token-file", str(tokens)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def not_sharing():
    server = Server([IRIS])
    yield server
    server.stop()


HEADERS = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def regions():
    """Regions made with tritonclient's utilities, destroyed after the test."""
    made = []

    def make(byte_size):
        key = f"/predictor-test-{uuid.uuid4().hex}"
        handle = shm.create_shared_memory_region(key.strip("/"), key, byte_size)
        made.append(handle)
        return key, handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_inputs_and_outputs_in_shared_memory_give_the_sample(sharing, regions, protocol):
    bundle = read_bundle(IRIS)
    rows = np.array(bundle["sample"]["input"], dtype=np.float32)
    expected = np.array(bundle["sample"]["output"], dtype=np.float32)
    in_key, in_handle = regions(rows.nbytes)
    out_key, out_handle = regions(expected.nbytes + 16)
    shm.set_shared_memory_region(in_handle, [rows])
    triton = client(sharing, protocol)
    triton.unregister_system_shared_memory(headers=HEADERS)
    triton.register_system_shared_memory("input-region", in_key, rows.nbytes, headers=HEADERS)
    # The output region starts 16 bytes into its object: offsets are the server's to add.
    triton.register_system_shared_memory("output-region", out_key, expected.nbytes, offset=16, headers=HEADERS)
    status = triton.get_system_shared_memory_status(headers=HEADERS, **({"as_json": True} if protocol == "grpc" else {}))
    names = sorted(status["regions"]) if protocol == "grpc" else sorted(r["name"] for r in status)
    assert names == ["input-region", "output-region"]

    tensor = module(protocol).InferInput("input", list(rows.shape), "FP32")
    tensor.set_shared_memory("input-region", rows.nbytes)
    output = module(protocol).InferRequestedOutput("probabilities")
    output.set_shared_memory("output-region", expected.nbytes)
    result = triton.infer("iris-svc", [tensor], outputs=[output], headers=HEADERS)
    answer = result.get_output("probabilities")
    shape = answer["shape"] if protocol == "http" else list(answer.shape)
    assert [int(d) for d in shape] == [3, 3]
    written = shm.get_contents_as_numpy(out_handle, np.float32, [expected.nbytes // 4 + 4])[4:].reshape(3, 3)
    np.testing.assert_allclose(written, expected, atol=bundle["sample"]["tolerance"], rtol=0)

    triton.unregister_system_shared_memory("input-region", headers=HEADERS)
    status = triton.get_system_shared_memory_status(headers=HEADERS, **({"as_json": True} if protocol == "grpc" else {}))
    names = sorted(status["regions"]) if protocol == "grpc" else sorted(r["name"] for r in status)
    assert names == ["output-region"]
    triton.unregister_system_shared_memory(headers=HEADERS)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_strings_travel_through_shared_memory_too(sharing, regions, protocol):
    texts = np.array([[b"my package never arrived"]], dtype=np.object_)
    serialized = serialize_byte_tensor(texts)
    byte_size = len(serialized.item())
    key, handle = regions(byte_size)
    # As Triton's examples do: the serialized tensor (each element its length, then its bytes).
    shm.set_shared_memory_region(handle, [serialized])
    triton = client(sharing, protocol)
    triton.register_system_shared_memory("text-region", key, byte_size, headers=HEADERS)
    try:
        tensor = module(protocol).InferInput("text", [1, 1], "BYTES")
        tensor.set_shared_memory("text-region", byte_size)
        result = triton.infer("support-tickets-tfidf", [tensor], headers=HEADERS)
        label = result.as_numpy("output_label")[0]
        assert (label.decode() if isinstance(label, bytes) else label) == "delivery"
    finally:
        triton.unregister_system_shared_memory("text-region", headers=HEADERS)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_offsets_and_sizes_are_checked_and_errors_are_clear(sharing, regions, protocol):
    key, handle = regions(64)
    triton = client(sharing, protocol)
    with pytest.raises(InferenceServerException) as refused:
        triton.register_system_shared_memory("too-big", key, 65, headers=HEADERS)
    assert "holds 64 bytes" in refused.value.message()
    triton.register_system_shared_memory("small", key, 32, offset=32, headers=HEADERS)
    def iris_input(region, byte_size, offset=0):
        tensor = module(protocol).InferInput("input", [1, 4], "FP32")
        tensor.set_shared_memory(region, byte_size, offset=offset)
        return tensor

    try:
        with pytest.raises(InferenceServerException) as refused:
            triton.infer("iris-svc", [iris_input("small", 16, offset=24)], headers=HEADERS)
        assert "16 bytes from offset 24 do not fit in shared memory region 'small' of 32 bytes" in refused.value.message()
        with pytest.raises(InferenceServerException) as refused:
            triton.infer("iris-svc", [iris_input("nowhere", 16)], headers=HEADERS)
        assert "no system shared memory region 'nowhere' is registered" in refused.value.message()
        # An output region too small for the answer.
        tensor = iris_input("small", 16)
        output = module(protocol).InferRequestedOutput("probabilities")
        output.set_shared_memory("small", 8, offset=16)
        with pytest.raises(InferenceServerException) as refused:
            triton.infer("iris-svc", [tensor], outputs=[output], headers=HEADERS)
        assert "the answer takes 12 bytes, more than the 8 bytes" in refused.value.message()
    finally:
        triton.unregister_system_shared_memory("small", headers=HEADERS)
    for key in ["/../etc/passwd", "/no-such-object-here"]:
        with pytest.raises(InferenceServerException):
            triton.register_system_shared_memory("bad", key, 1, headers=HEADERS)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_token_applies_to_shared_memory(sharing, regions, protocol):
    key, _ = regions(16)
    with pytest.raises(InferenceServerException) as refused:
        client(sharing, protocol).register_system_shared_memory("r", key, 16)
    assert "token" in refused.value.message().lower()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_without_the_flag_refuses_shared_memory(not_sharing, regions, protocol):
    key, _ = regions(16)
    triton = client(not_sharing, protocol)
    metadata = triton.get_server_metadata(**({"as_json": True} if protocol == "grpc" else {}))
    assert "system_shared_memory" not in metadata["extensions"]
    with pytest.raises(InferenceServerException) as refused:
        triton.register_system_shared_memory("r", key, 16)
    assert "--allow-shared-memory" in refused.value.message()
    tensor = module(protocol).InferInput("input", [1, 4], "FP32")
    tensor.set_shared_memory("r", 16)
    with pytest.raises(InferenceServerException) as refused:
        triton.infer("iris-svc", [tensor])
    assert "--allow-shared-memory" in refused.value.message()


NUMPY = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
         "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
         "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_input_in_shared_memory_beside_others_in_the_request(sharing, regions, protocol):
    """tritonclient sends raw contents only for the inputs not in shared memory (over gRPC, one
    entry fewer than the inputs): each must still reach its own input."""
    bundle = read_bundle(EVERY_DTYPE)
    sample = bundle["sample"]["input"]
    triton = client(sharing, protocol)
    key, handle = regions(8)
    floats = np.array(sample["in_float32"], dtype=np.float32)
    shm.set_shared_memory_region(handle, [floats])
    triton.register_system_shared_memory("floats", key, floats.nbytes, headers=HEADERS)
    try:
        tensors = []
        for spec in bundle["inputs"]:
            datatype = {"bool": "BOOL", "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES"}.get(
                spec["dtype"], spec["dtype"].upper()
            )
            tensor = module(protocol).InferInput(spec["name"], [1, 2], datatype)
            if spec["name"] == "in_float32":
                tensor.set_shared_memory("floats", floats.nbytes)
            else:
                tensor.set_data_from_numpy(np.array(sample[spec["name"]], dtype=NUMPY[datatype]))
            tensors.append(tensor)
        # A copy: tritonclient's HTTP client adds its binary header to the dict it is given.
        result = triton.infer("every-dtype", tensors, headers=dict(HEADERS))
        np.testing.assert_array_equal(result.as_numpy("out_float32"), floats)
        np.testing.assert_array_equal(result.as_numpy("out_int16"), np.array(sample["in_int16"], dtype=np.int16))
    finally:
        triton.unregister_system_shared_memory("floats", headers=HEADERS)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unserved_extensions_are_named(not_sharing, protocol):
    """Triton's trace and logging extensions, as tritonclient calls them: refused with a message
    that names the extension and what to use instead."""
    triton = client(not_sharing, protocol)
    for call, named in (
        (triton.get_trace_settings, "trace extension"),
        (triton.get_log_settings, "logging extension"),
    ):
        with pytest.raises(InferenceServerException) as refused:
            call()
        assert named in refused.value.message(), refused.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cuda_shared_memory_is_answered_as_triton_without_gpus_answers_it(not_sharing, protocol):
    """The calls Triton's shared memory examples begin with: the CUDA regions' status (none) and
    unregistering them all (nothing to do) succeed; registering one is refused, saying why."""
    triton = client(not_sharing, protocol)
    status = triton.get_cuda_shared_memory_status(headers=HEADERS)
    assert (status if protocol == "http" else dict(status.regions)) == ([] if protocol == "http" else {})
    triton.unregister_cuda_shared_memory(headers=HEADERS)
    triton.unregister_cuda_shared_memory("output_data", headers=HEADERS)
    with pytest.raises(InferenceServerException) as refused:
        # A serialized cudaIPC handle, as tritonclient's cuda_shared_memory module gives it: base64
        # text over REST, bytes over gRPC.
        handle = "AAAA" * 16 if protocol == "http" else b"\0" * 48
        triton.register_cuda_shared_memory("output_data", handle, 0, 64, headers=HEADERS)
    assert "runs its models on the CPU" in refused.value.message()
    assert "--allow-shared-memory" in refused.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        triton.get_cuda_shared_memory_status("output_data", headers=HEADERS)
    assert "no CUDA shared memory region 'output_data' is registered" in unknown.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_server_lists_every_extension_it_serves_and_shared_memory_only_when_allowed(
    sharing, not_sharing, protocol
):
    served = ["binary_tensor_data", "classification", "model_configuration", "statistics", "model_repository"]
    for server, expected in ((not_sharing, served), (sharing, [*served, "system_shared_memory"])):
        metadata = client(server, protocol).get_server_metadata(headers=HEADERS)
        extensions = metadata["extensions"] if protocol == "http" else list(metadata.extensions)
        assert sorted(extensions) == sorted(expected)


@pytest.mark.parametrize("endpoint", ["generate", "generate_stream", "versions/1/generate"])
def test_the_generate_extension_is_named_where_it_is_refused(not_sharing, endpoint):
    """Triton's generate extension (for text generation) has no gRPC method; over REST it is
    refused with a message naming it and the infer route that serves these models."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{not_sharing.http}/v2/models/iris-svc/{endpoint}",
        data=json.dumps({"text_input": "hello"}).encode(),
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 404
    message = json.load(refused.value)["error"]
    assert "generate extension is not served" in message and "/infer" in message, message
