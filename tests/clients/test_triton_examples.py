"""The calls of Triton's own Python client examples (triton-inference-server/client,
src/python/examples), made the way they make them and held to what they assert, against ONNX
versions of the example models they call (server/tests/fixtures/triton-examples): `simple` (INT32
sum and difference), `simple_int8`, `simple_string` (the same on decimal text) and
`simple_identity` (BYTES in, the same out). No registry carries the examples, so CI cannot fetch
them; these tests are their calls, and docs/api.md says which examples were run unchanged."""

import asyncio
import time
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import service_pb2
from tritonclient.utils import (
    InferenceServerException,
    serialize_byte_tensor,
    serialized_byte_size,
    triton_to_np_dtype,
)

from conftest import REPO, Server, client, module

EXAMPLES = REPO / "server/tests/fixtures/triton-examples"
PROTOCOLS = ["http", "grpc"]

# The examples' data: 0..15 and sixteen ones, one row.
INPUT0 = np.arange(start=0, stop=16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.ones(shape=(1, 16), dtype=np.int32)


@pytest.fixture(scope="module")
def server():
    names = ("simple", "simple_int8", "simple_string", "simple_identity")
    server = Server([EXAMPLES / name for name in names], ["--allow-shared-memory"])
    yield server
    server.stop()


def sum_inputs(protocol, datatype="INT32", input0=INPUT0, input1=INPUT1):
    """INPUT0 and INPUT1 as simple_*_infer_client sends them (over REST the first as JSON, the
    second as binary data)."""
    inputs = [module(protocol).InferInput(name, [1, 16], datatype) for name in ("INPUT0", "INPUT1")]
    if protocol == "http":
        inputs[0].set_data_from_numpy(input0, binary_data=False)
        inputs[1].set_data_from_numpy(input1, binary_data=True)
    else:
        inputs[0].set_data_from_numpy(input0)
        inputs[1].set_data_from_numpy(input1)
    return inputs


def sum_outputs(protocol):
    if protocol == "http":
        return [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
                httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    return [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]


def assert_sum_and_difference(results, input0=INPUT0, input1=INPUT1):
    np.testing.assert_array_equal(results.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(results.as_numpy("OUTPUT1"), input0 - input1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_simple_infer_with_and_without_outputs_named(server, protocol, compression):
    """simple_{http,grpc}_infer_client: the sums and differences, asked for by name or not, with
    the request (and answer) compressed as its flags choose, and query parameters over REST."""
    triton = client(server, protocol)
    if protocol == "http":
        options = {"query_params": {"test_1": 1, "test_2": 2}, "request_compression_algorithm": compression,
                   "response_compression_algorithm": compression}
    else:
        options = {"headers": {"test_1": "1", "test_2": "2"}, "compression_algorithm": compression}
    results = triton.infer("simple", sum_inputs(protocol), outputs=sum_outputs(protocol), **options)
    assert_sum_and_difference(results)
    assert_sum_and_difference(triton.infer("simple", sum_inputs(protocol), outputs=None, **options))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_wrong_model_name_is_refused_in_tritons_words(server, protocol):
    triton = client(server, protocol)
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("wrong_model_name", sum_inputs(protocol), outputs=sum_outputs(protocol))
    assert raised.value.message().startswith("Request for unknown model"), raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        triton.get_model_metadata("wrong_model_name")
    assert "Request for unknown model" in raised.value.message()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_simple_int8(server, protocol):
    """grpc_explicit_int8_content_client's model, with the tensors as tritonclient sends them."""
    input0, input1 = INPUT0.astype(np.int8), INPUT1.astype(np.int8)
    results = client(server, protocol).infer("simple_int8", sum_inputs(protocol, "INT8", input0, input1))
    assert_sum_and_difference(results, input0, input1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_infer(server, protocol):
    """simple_{http,grpc}_async_infer_client: requests in flight together, each answered."""
    if protocol == "http":
        triton = httpclient.InferenceServerClient(url=server.http, concurrency=4)
        pending = [triton.async_infer("simple", sum_inputs("http"), outputs=sum_outputs("http")) for _ in range(4)]
        for request in pending:
            assert_sum_and_difference(request.get_result())
        return
    triton = client(server, "grpc")
    done = []
    for _ in range(4):
        triton.async_infer("simple", sum_inputs("grpc"), lambda result, error: done.append((result, error)),
                           outputs=sum_outputs("grpc"))
    deadline = time.monotonic() + 30
    while len(done) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(done) == 4, "the callbacks of the four calls"
    for result, error in done:
        assert error is None
        assert_sum_and_difference(result)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_aio_infer(server, protocol):
    """simple_{http,grpc}_aio_infer_client: the asyncio clients, health and metadata first, then
    two requests at once, and a wrong model name in Triton's words."""
    async def calls():
        if protocol == "http":
            triton = httpaio.InferenceServerClient(url=server.http)
        else:
            triton = grpcaio.InferenceServerClient(url=server.grpc)
        try:
            assert await triton.is_server_live() and await triton.is_server_ready()
            assert await triton.is_model_ready("simple")
            await triton.get_model_metadata("simple")
            await triton.get_model_config("simple")
            inputs = sum_inputs(protocol)
            results = await asyncio.gather(*(triton.infer("simple", inputs) for _ in range(2)))
            for result in results:
                assert_sum_and_difference(result)
            with pytest.raises(InferenceServerException) as raised:
                await triton.infer("wrong_model_name", inputs)
            assert raised.value.message().startswith("Request for unknown model")
        finally:
            await triton.close()

    asyncio.run(calls())


def as_text(array):
    return np.array([str(value).encode("utf-8") for value in array.flatten()], dtype=np.object_).reshape(array.shape)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_simple_string_and_identity(server, protocol):
    """simple_{http,grpc}_string_infer_client: decimal text in, the sums and differences as text
    out; then simple_identity gives back what it is sent, as bytes or as text."""
    triton = client(server, protocol)
    results = triton.infer("simple_string", sum_inputs(protocol, "BYTES", as_text(INPUT0), as_text(INPUT1)),
                           outputs=sum_outputs(protocol))
    sums = np.array([int(value) for value in results.as_numpy("OUTPUT0").flatten()]).reshape(1, 16)
    differences = np.array([int(value) for value in results.as_numpy("OUTPUT1").flatten()]).reshape(1, 16)
    np.testing.assert_array_equal(sums, INPUT0 + INPUT1)
    np.testing.assert_array_equal(differences, INPUT0 - INPUT1)
    # Text, text with a NUL in it, and 4-byte blobs of 0x00010203, as the examples send them.
    sent = (
        np.array([[f"word{i}".encode() for i in range(16)]], dtype=np.object_),
        np.array([["he\x00llo".encode("utf-8") for _ in range(16)]], dtype=np.object_),
        np.array([[b"\x00\x01\x02\x03" for _ in range(16)]], dtype=np.bytes_),
    )
    for words in sent:
        for binary in (True, False) if protocol == "http" else (True,):
            tensor = module(protocol).InferInput("INPUT0", list(words.shape), "BYTES")
            if protocol == "http":
                tensor.set_data_from_numpy(words, binary_data=binary)
                outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)]
            else:
                tensor.set_data_from_numpy(words)
                outputs = [grpcclient.InferRequestedOutput("OUTPUT0")]
            answer = triton.infer("simple_identity", [tensor], outputs=outputs).as_numpy("OUTPUT0")
            if words.dtype == np.object_ and binary:
                assert np.array_equal(words, answer)
            else:
                assert np.array_equal(np.char.encode(answer.astype(str)), words.astype(np.bytes_))


def test_explicit_contents_over_grpc(server):
    """grpc_explicit_{int,int8,byte}_content_client: the tensors in the typed contents fields of a
    raw ModelInferRequest, not in raw_input_contents."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for model, datatype, fill in (
            ("simple", "INT32", lambda tensor, values: tensor.contents.int_contents.extend(values)),
            ("simple_int8", "INT8", lambda tensor, values: tensor.contents.int_contents.extend(values)),
            ("simple_string", "BYTES",
             lambda tensor, values: tensor.contents.bytes_contents.extend(str(v).encode() for v in values)),
        ):
            request = service_pb2.ModelInferRequest(model_name=model, model_version="")
            for name, values in (("INPUT0", INPUT0.flatten().tolist()), ("INPUT1", INPUT1.flatten().tolist())):
                tensor = request.inputs.add(name=name, datatype=datatype, shape=[1, 16])
                fill(tensor, values)
            request.outputs.add(name="OUTPUT0")
            request.outputs.add(name="OUTPUT1")
            answer = stub.ModelInfer(request)
            dtype = triton_to_np_dtype(answer.outputs[0].datatype)
            if datatype == "BYTES":
                # Each element its 4-byte length, then its bytes.
                raw = answer.raw_output_contents[0]
                sums, at = [], 0
                while at < len(raw):
                    length = int.from_bytes(raw[at:at + 4], "little")
                    sums.append(int(raw[at + 4:at + 4 + length]))
                    at += 4 + length
            else:
                sums = np.frombuffer(answer.raw_output_contents[0], dtype=dtype).tolist()
            assert sums == (INPUT0 + INPUT1).flatten().tolist(), model


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", ["simple", "simple_string"])
def test_system_shared_memory(server, protocol, model):
    """simple_{http,grpc}_shm_client and their _string twins: every system and CUDA region
    unregistered first, then each input and output in a region of the client's own making, sized
    as the examples size them (for text, the serialized size of the expected answer)."""
    triton = client(server, protocol)
    triton.unregister_system_shared_memory()
    triton.unregister_cuda_shared_memory()
    expected = {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}
    if model == "simple":
        datatype = "INT32"
        data = {"INPUT0": INPUT0, "INPUT1": INPUT1, **expected}
    else:
        datatype = "BYTES"
        data = {name: serialize_byte_tensor(as_text(values)) for name, values in
                {"INPUT0": INPUT0, "INPUT1": INPUT1, **expected}.items()}
    size = {name: serialized_byte_size(values) if model != "simple" else values.nbytes for name, values in data.items()}
    suffix = uuid.uuid4().hex[:8]
    handles = {}
    try:
        for name, values in data.items():
            key = f"/{name.lower()}_{suffix}"
            handles[name] = shm.create_shared_memory_region(f"{name.lower()}_data", key, size[name])
            if name.startswith("INPUT"):
                shm.set_shared_memory_region(handles[name], [values])
            triton.register_system_shared_memory(f"{name.lower()}_data", key, size[name])
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            inputs.append(module(protocol).InferInput(name, [1, 16], datatype))
            inputs[-1].set_shared_memory(f"{name.lower()}_data", size[name])
        outputs = []
        for name in ("OUTPUT0", "OUTPUT1"):
            outputs.append(module(protocol).InferRequestedOutput(name))
            outputs[-1].set_shared_memory(f"{name.lower()}_data", size[name])
        results = triton.infer(model, inputs, outputs=outputs)
        for name, values in expected.items():
            output = results.get_output(name)
            assert output is not None, f"{name} is missing in the response"
            datatype_of, shape = (output["datatype"], output["shape"]) if protocol == "http" else (output.datatype, output.shape)
            read = shm.get_contents_as_numpy(handles[name], triton_to_np_dtype(datatype_of), shape)
            np.testing.assert_array_equal(np.array([int(v) for v in read.flatten()]).reshape(1, 16), values)
        status = triton.get_system_shared_memory_status()
        assert len(status if protocol == "http" else status.regions) == 4
    finally:
        triton.unregister_system_shared_memory()
        for handle in handles.values():
            shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reused_infer_objects(server, protocol):
    """reuse_infer_objects_client: the same InferInput and InferRequestedOutput objects sent
    again, with their data replaced between calls."""
    triton = client(server, protocol)
    inputs, outputs = sum_inputs(protocol), sum_outputs(protocol)
    assert_sum_and_difference(triton.infer("simple", inputs, outputs=outputs))
    doubled = INPUT0 * 2
    if protocol == "http":
        inputs[0].set_data_from_numpy(doubled, binary_data=True)
    else:
        inputs[0].set_data_from_numpy(doubled)
    assert_sum_and_difference(triton.infer("simple", inputs, outputs=outputs), input0=doubled)


def test_grpc_keepalive_and_channel_arguments(server):
    """simple_grpc_keepalive_client and simple_grpc_custom_args_client: the client's keepalive
    pings and its own channel arguments leave the calls as they were."""
    keepalive = grpcclient.KeepAliveOptions(keepalive_time_ms=2**31 - 1, keepalive_timeout_ms=20000,
                                            keepalive_permit_without_calls=False, http2_max_pings_without_data=2)
    for triton in (
        grpcclient.InferenceServerClient(url=server.grpc, keepalive_options=keepalive),
        grpcclient.InferenceServerClient(url=server.grpc, channel_args=[("grpc.max_receive_message_length", 2**20)]),
    ):
        assert_sum_and_difference(triton.infer("simple", sum_inputs("grpc"), outputs=sum_outputs("grpc")))
