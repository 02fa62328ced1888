"""The Open Inference Protocol v2, checked with the stock Triton clients (tritonclient, HTTP and
gRPC) as their documentation uses them, against the real server and every bundle."""

import base64
import json
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import BUNDLES, EVERY_DTYPE, REPO, client, module, public_inputs, read_bundle, sample_rows, seed_rows

REPO_MODELS = REPO / "models"

PROTOCOLS = ["http", "grpc"]
# The ways a tritonclient sends tensors: HTTP with JSON or binary data, gRPC (raw bytes).
ENCODINGS = ["http-json", "http-binary", "grpc"]
NUMPY_DTYPES = {
    "bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "float16": np.float16, "float32": np.float32, "float64": np.float64,
    # BYTES: tritonclient sends and returns numpy object arrays (str in, bytes out); an image
    # bundle's are encoded images (bytes).
    "string": np.object_,
    "bytes": np.object_,
}


def infer_input(encoding, name, array):
    """An input as tritonclient builds it, for one encoding."""
    protocol = encoding.split("-")[0]
    tensor = module(protocol).InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    if encoding == "http-json" and any(isinstance(value, bytes) for value in array.flat):
        # JSON carries bytes that are not text (an image) in base64, as the input's content_type
        # parameter says; tritonclient sets no input parameters of its own, so it is set here.
        encoded = [base64.b64encode(value).decode() for value in array.flat]
        tensor.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(array.shape), binary_data=False)
        tensor._parameters["content_type"] = "base64"
    elif protocol == "http":
        tensor.set_data_from_numpy(array, binary_data=encoding == "http-binary")
    else:
        tensor.set_data_from_numpy(array)
    return tensor


def requested_output(encoding, name):
    if encoding.startswith("http"):
        return httpclient.InferRequestedOutput(name, binary_data=encoding == "http-binary")
    return grpcclient.InferRequestedOutput(name)


def seed_predict(server, name, data):
    """The seed API's answer for the same rows: the reference every protocol must match."""
    request = urllib.request.Request(
        f"http://{server.http}/models/{name}/predict",
        data=json.dumps({"data": seed_rows(data)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["prediction"]


def prediction_name(bundle):
    return bundle.get("prediction") or bundle["outputs"][0]["name"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_is_live_ready_and_describes_itself(server, protocol):
    triton = client(server, protocol)
    assert triton.is_server_live()
    assert triton.is_server_ready()
    metadata = triton.get_server_metadata(as_json=True) if protocol == "grpc" else triton.get_server_metadata()
    assert metadata["name"] == "predictor"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_model_metadata_and_readiness_follow_the_bundle(server, protocol, folder):
    bundle = read_bundle(folder)
    triton = client(server, protocol)
    assert triton.is_model_ready(bundle["name"])
    assert triton.is_model_ready(bundle["name"], model_version=bundle["version"])
    kwargs = {"as_json": True} if protocol == "grpc" else {}
    metadata = triton.get_model_metadata(bundle["name"], **kwargs)
    assert metadata["name"] == bundle["name"]
    assert metadata["versions"] == [bundle["version"]]
    assert metadata["platform"] == "onnxruntime_onnx"
    for kind in ("inputs", "outputs"):
        described = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata[kind]]
        declared = [
            (t["name"], np_to_triton_dtype(np.dtype(NUMPY_DTYPES[t["dtype"]])), t["shape"])
            for t in (public_inputs(bundle) if kind == "inputs" else bundle[kind])
        ]
        assert described == declared


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_inference_gives_the_seed_prediction_and_the_sample(server, encoding, folder):
    bundle = read_bundle(folder)
    [spec] = public_inputs(bundle)
    rows = sample_rows(folder, bundle)
    array = np.array(rows, dtype=NUMPY_DTYPES[spec["dtype"]])
    triton = client(server, encoding.split("-")[0])
    result = triton.infer(bundle["name"], [infer_input(encoding, spec["name"], array)], request_id="sample-1")
    prediction = result.as_numpy(prediction_name(bundle))
    # The seed API prints each value in its own type's shortest form, which reads back exactly.
    seed = np.array(seed_predict(server, bundle["name"], rows), dtype=prediction.dtype)
    np.testing.assert_array_equal(prediction, seed)
    np.testing.assert_allclose(prediction, bundle["sample"]["output"], atol=bundle["sample"]["tolerance"], rtol=0)
    response = result.get_response(as_json=True) if encoding == "grpc" else result.get_response()
    assert response["id"] == "sample-1"
    assert response["model_name"] == bundle["name"]
    assert [o["name"] for o in response["outputs"]] == [o["name"] for o in bundle["outputs"]]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_outputs_filter_returns_only_what_was_asked(server, encoding):
    bundle = read_bundle(BUNDLES[0])
    array = np.array(bundle["sample"]["input"], dtype=np.float32)
    wanted = prediction_name(bundle)
    triton = client(server, encoding.split("-")[0])
    result = triton.infer(
        bundle["name"],
        [infer_input(encoding, bundle["inputs"][0]["name"], array)],
        outputs=[requested_output(encoding, wanted)],
    )
    response = result.get_response(as_json=True) if encoding == "grpc" else result.get_response()
    assert [o["name"] for o in response["outputs"]] == [wanted]
    assert result.as_numpy(wanted).shape == (len(array), len(bundle["labels"]))


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_and_answers(server, compression):
    """tritonclient's request and response compression (Content-Encoding, Accept-Encoding)."""
    bundle = read_bundle(BUNDLES[0])
    array = np.array(bundle["sample"]["input"], dtype=np.float32)
    result = client(server, "http").infer(
        bundle["name"],
        [infer_input("http-binary", bundle["inputs"][0]["name"], array)],
        request_compression_algorithm=compression,
        response_compression_algorithm=compression,
    )
    seed = seed_predict(server, bundle["name"], bundle["sample"]["input"])
    np.testing.assert_array_equal(result.as_numpy(prediction_name(bundle)), np.array(seed, dtype=np.float32))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_datatype_comes_back_unchanged(server, encoding):
    """The every-dtype fixture returns each input as it came: the extremes of each type survive
    the decoding and encoding of every transport."""
    bundle = read_bundle(EVERY_DTYPE)
    sample = bundle["sample"]["input"]
    arrays = {
        spec["name"]: np.array(sample[spec["name"]] * 2, dtype=NUMPY_DTYPES[spec["dtype"]])
        for spec in bundle["inputs"]
    }
    triton = client(server, encoding.split("-")[0])
    result = triton.infer(bundle["name"], [infer_input(encoding, name, a) for name, a in arrays.items()])
    for name, array in arrays.items():
        returned = result.as_numpy(name.replace("in_", "out_"))
        assert returned.dtype == array.dtype, name
        if array.dtype == np.object_:
            # BYTES come back as bytes: the UTF-8 of the strings sent.
            returned = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(returned)
        np.testing.assert_array_equal(returned, array, err_msg=name)


def bad_requests():
    """(case, model, inputs as (name, array, datatype), expected status, expected message part)."""
    good = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    return [
        ("wrong datatype", "iris-svc", [("input", good.astype(np.float64), "FP64")], "expects datatype FP32, received FP64"),
        ("wrong shape", "iris-svc", [("input", good[:, :3], "FP32")], "expects shape [-1, 4]"),
        ("wrong rank", "iris-svc", [("input", good[0], "FP32")], "received [4]"),
        ("unknown input", "iris-svc", [("inputs", good, "FP32")], "unexpected inference input 'inputs' for model 'iris-svc'"),
        ("missing input", "every-dtype", [("in_bool", np.array([[True, False]]), "BOOL")], "missing input 'in_int8'"),
        ("input twice", "iris-svc", [("input", good, "FP32"), ("input", good, "FP32")], "given twice"),
        ("unknown model", "iris-svm", [("input", good, "FP32")], "Request for unknown model: 'iris-svm' is not found"),
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", bad_requests(), ids=lambda case: case[0])
def test_bad_requests_get_clear_errors_the_client_reports(server, encoding, case):
    _, model, inputs, message = case
    protocol = encoding.split("-")[0]
    tensors = []
    for name, array, datatype in inputs:
        tensor = module(protocol).InferInput(name, list(array.shape), datatype)
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=encoding == "http-binary")
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    with pytest.raises(InferenceServerException) as raised:
        client(server, protocol).infer(model, tensors)
    expected_status = {
        "http": "404" if model == "iris-svm" else "400",
        "grpc": "StatusCode.NOT_FOUND" if model == "iris-svm" else "StatusCode.INVALID_ARGUMENT",
    }[protocol]
    assert raised.value.status() == expected_status
    assert message in raised.value.message()
    assert client(server, protocol).is_server_ready(), "a bad request must not hurt the server"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unknown_output_and_version_are_refused(server, encoding):
    protocol = encoding.split("-")[0]
    array = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    triton = client(server, protocol)
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("iris-svc", [infer_input(encoding, "input", array)], outputs=[requested_output(encoding, "proba")])
    assert raised.value.message().startswith("unexpected inference output 'proba' for model 'iris-svc'")
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("iris-svc", [infer_input(encoding, "input", array)], model_version="9")
    assert raised.value.message().startswith("Request for unknown model: 'iris-svc' version 9 is not found")
    assert not triton.is_model_ready("iris-svc", model_version="9") if protocol == "http" else True


@pytest.fixture(scope="module")
def edges_server():
    from conftest import REPO, Server

    server = Server([REPO / "server/tests/fixtures/batch-edges", *BUNDLES])
    yield server
    server.stop()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_inputs_whose_rows_disagree_are_the_callers_mistake(edges_server, encoding):
    """3 rows of x against 1 of y: a 400 / INVALID_ARGUMENT naming both, on every encoding,
    never a 500 with ONNX Runtime's text, nor a silent broadcast."""
    triton = client(edges_server, encoding.split("-")[0])
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.ones((1, 2), dtype=np.float32)
    inputs = [infer_input(encoding, "x", x), infer_input(encoding, "y", y)]
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("batch-edges", inputs)
    assert "inputs 'x' and 'y' disagree on their rows" in raised.value.message()
    assert "'x' has 3, 'y' has 1" in raised.value.message()
    expected = "StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400"
    assert raised.value.status() == expected


def test_grpc_answers_of_several_rows_are_not_held_back(edges_server, capsys):
    """8 rows of digits over one gRPC connection, 200 calls in a row: each answer is the seed's
    (its probabilities are 320 bytes, past what Nagle's algorithm let through at once before
    TCP_NODELAY). The latency is printed, not asserted: bench/ measures speed."""
    import time

    digits = next(folder for folder in BUNDLES if folder.name == "digits-logreg")
    bundle = read_bundle(digits)
    rows = (bundle["sample"]["input"] * 4)[:8]
    array = np.array(rows, dtype=np.float32)
    expected = np.array(seed_predict(edges_server, bundle["name"], rows), dtype=np.float32)
    triton = grpcclient.InferenceServerClient(url=edges_server.grpc)
    took = []
    for _ in range(200):
        started = time.perf_counter()
        result = triton.infer(bundle["name"], [infer_input("grpc", "input", array)])
        took.append(time.perf_counter() - started)
        np.testing.assert_array_equal(result.as_numpy("probabilities"), expected)
    took.sort()
    with capsys.disabled():
        print(f"\ngRPC digits, 8 rows, one connection: p50 {took[100] * 1e3:.3f} ms, p99 {took[197] * 1e3:.3f} ms")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_model_config_is_the_bundles_as_triton_writes_it(server, protocol, folder):
    bundle = read_bundle(folder)
    triton = client(server, protocol)
    config = triton.get_model_config(bundle["name"], **({"as_json": True} if protocol == "grpc" else {}))
    if protocol == "grpc":
        config = config["config"]
    assert config["name"] == bundle["name"]
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    batching = bundle.get("runtime", {}).get("max_batch_size", 0)
    assert int(config.get("max_batch_size", 0)) == (batching if batching > 1 else 0)
    for kind, declared in (("input", public_inputs(bundle)), ("output", bundle["outputs"])):
        described = [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[kind]]
        reshaped = [t["name"] for t in config[kind] if "reshape" in t]
        # Triton's config names BYTES TYPE_STRING; a batching model's dims leave out the batch.
        expected = [
            (
                t["name"],
                "TYPE_" + np_to_triton_dtype(np.dtype(NUMPY_DTYPES[t["dtype"]])).replace("BYTES", "STRING"),
                (t["shape"][1:] or [1]) if batching > 1 else t["shape"],
            )
            for t in declared
        ]
        assert described == expected
        # A batched tensor of the batch dimension alone is dims [1] reshaped to [], as Triton has it.
        assert reshaped == [t["name"] for t in declared if batching > 1 and len(t["shape"]) == 1]
    # Triton writes the queue delay in microseconds; no dynamic_batching where the model does not batch.
    if batching > 1:
        delay = bundle["runtime"].get("max_queue_delay_ms", 0) * 1000
        assert int(config["dynamic_batching"].get("max_queue_delay_microseconds", 0)) == delay
    else:
        assert "dynamic_batching" not in config
    # The bundle's one version, named as perf_analyzer names it, has the same config.
    version = bundle["version"].split(".")[0]
    versioned = triton.get_model_config(bundle["name"], version, **({"as_json": True} if protocol == "grpc" else {}))
    assert (versioned["config"] if protocol == "grpc" else versioned) == config


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_statistics_count_what_the_model_ran(server, protocol):
    bundle = read_bundle(BUNDLES[0])
    [spec] = bundle["inputs"]
    triton = client(server, protocol)
    kwargs = {"as_json": True} if protocol == "grpc" else {}

    def stats():
        [model] = triton.get_inference_statistics(bundle["name"], **kwargs)["model_stats"]
        return model

    before = stats()
    rows = np.array(bundle["sample"]["input"], dtype=np.float32)
    for _ in range(3):
        triton.infer(bundle["name"], [infer_input(protocol if protocol == "grpc" else "http-json", spec["name"], rows)])
    after = stats()
    success = lambda model: int(model["inference_stats"]["success"].get("count", 0))
    assert success(after) - success(before) == 3
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3 * len(rows)
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    assert after["name"] == bundle["name"]
    # Triton numbers versions: perf_analyzer matches the leading number (1 for 1.0.0).
    assert after["version"] == bundle["version"].split(".")[0]
    [versioned] = triton.get_inference_statistics(bundle["name"], after["version"], **kwargs)["model_stats"]
    assert success(versioned) == success(after)
    every = triton.get_inference_statistics(**kwargs)["model_stats"]
    assert {model["name"] for model in every} >= {read_bundle(folder)["name"] for folder in BUNDLES}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_repository_index_lists_the_models_and_loading_is_refused(server, protocol):
    triton = client(server, protocol)
    index = triton.get_model_repository_index(**({"as_json": True} if protocol == "grpc" else {}))
    if protocol == "grpc":
        index = index["models"]
    states = {entry["name"]: entry["state"] for entry in index}
    for folder in BUNDLES:
        assert states[read_bundle(folder)["name"]] == "READY"
    for change in (triton.load_model, triton.unload_model):
        with pytest.raises(InferenceServerException) as raised:
            change(read_bundle(BUNDLES[0])["name"])
        assert "fixed by its image or unit" in raised.value.message()


TEXT = "support-tickets-tfidf"


def text(element):
    """A BYTES element as tritonclient returns it: bytes from binary data, str from JSON."""
    return element.decode() if isinstance(element, bytes) else element


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_text_goes_in_and_class_names_come_out(server, encoding):
    """BYTES both ways against the text classifier: tritonclient's numpy object arrays of str
    in, and the model's own class names (bytes) and probabilities out."""
    bundle = read_bundle(REPO_MODELS / TEXT)
    rows = bundle["sample"]["input"]
    array = np.array(rows, dtype=np.object_)
    triton = client(server, encoding.split("-")[0])
    result = triton.infer(
        TEXT,
        [infer_input(encoding, "text", array)],
        outputs=[requested_output(encoding, "output_label"), requested_output(encoding, "output_probability")],
    )
    labels = result.as_numpy("output_label")
    assert [text(label) for label in labels] == ["billing", "delivery", "technical"]
    probabilities = result.as_numpy("output_probability")
    np.testing.assert_allclose(probabilities, bundle["sample"]["output"], atol=bundle["sample"]["tolerance"], rtol=0)
    np.testing.assert_array_equal(probabilities, np.array(seed_predict(server, TEXT, rows), dtype=np.float32))


def classified(encoding, name, k):
    if encoding.startswith("http"):
        return httpclient.InferRequestedOutput(name, binary_data=encoding == "http-binary", class_count=k)
    return grpcclient.InferRequestedOutput(name, class_count=k)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("model", ["iris-svc", "iris-svc-zipmap", TEXT])
def test_classification_gives_the_top_classes_of_the_probabilities(server, encoding, model):
    """tritonclient's class_count: the k best classes as "score:index:label", the same as
    sorting the probabilities by hand; as Triton, per row for a model that batches (the text
    classifier), over the whole output for one that does not (one row sent)."""
    bundle = read_bundle(REPO_MODELS / model)
    [spec] = bundle["inputs"]
    batched = bundle.get("runtime", {}).get("max_batch_size", 0) > 1
    rows = bundle["sample"]["input"] if batched else bundle["sample"]["input"][:1]
    array = np.array(rows, dtype=NUMPY_DTYPES[spec["dtype"]])
    scores = bundle["prediction"]
    triton = client(server, encoding.split("-")[0])
    plain = triton.infer(model, [infer_input(encoding, spec["name"], array)], outputs=[requested_output(encoding, scores)])
    probabilities = plain.as_numpy(scores)
    result = triton.infer(model, [infer_input(encoding, spec["name"], array)], outputs=[classified(encoding, scores, 2)])
    top = result.as_numpy(scores)
    assert top.shape == ((len(array), 2) if batched else (2,))
    for row, classes in zip(probabilities, top.reshape(len(array), 2)):
        best = np.argsort(-row, kind="stable")[:2]
        expected = [f"{row[i]:.6f}:{i}:{bundle['labels'][i]}" for i in best]
        assert [text(c) for c in classes] == expected


@pytest.fixture(scope="module")
def token_server():
    from conftest import Server

    server = Server([REPO / "server/tests/fixtures/token-pair"])
    yield server
    server.stop()


def token_inputs(encoding, ids, mask):
    return [
        infer_input(encoding, "input_ids", np.array(ids, dtype=np.int64)),
        infer_input(encoding, "attention_mask", np.array(mask, dtype=np.int64)),
    ]


def refused_by_model(server):
    return sum('"the model refused the request\'s data"' in line for line in server.log)


def assert_no_server_error(server):
    """No ERROR line in the server's log, and no 5xx (nor gRPC INTERNAL) in its metrics."""
    assert not [line for line in server.log if '"level":"ERROR"' in line]
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        metrics = response.read().decode()
    requests = [line for line in metrics.splitlines() if line.startswith("predictor_requests_total{")]
    assert not [line for line in requests if 'status="5' in line or 'status="INTERNAL"' in line], requests


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_run_that_fails_on_the_callers_data_is_the_callers_mistake(token_server, encoding):
    """Data that passes every check of the bundle but that the graph cannot run (an odd sequence
    where the model reshapes tokens into pairs): a 400 / INVALID_ARGUMENT with ONNX Runtime's
    message, one WARN line and no ERROR line, and no 5xx in the metrics; the model still answers
    good requests."""
    triton = client(token_server, encoding.split("-")[0])
    answer = triton.infer("token-pair", token_inputs(encoding, [[1, 2, 3, 4]], [[1, 1, 1, 0]]))
    assert answer.as_numpy("masked").tolist() == [[1, 2, 3, 0]]
    assert answer.as_numpy("pairs").tolist() == [[[1, 2], [3, 0]]]
    warned_before = refused_by_model(token_server)
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("token-pair", token_inputs(encoding, [[1, 2, 3]], [[1, 1, 1]]))
    assert raised.value.status() == ("StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400")
    assert "The input tensor cannot be reshaped to the requested shape" in raised.value.message()
    assert triton.infer("token-pair", token_inputs(encoding, [[5, 6]], [[1, 1]])).as_numpy("masked").tolist() == [[5, 6]]
    # The server's log is read by a thread of the fixture: wait for the line, then count.
    deadline = time.monotonic() + 30
    while refused_by_model(token_server) == warned_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refused_by_model(token_server) - warned_before == 1, "".join(token_server.log)
    assert_no_server_error(token_server)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_inputs_that_disagree_on_a_dimension_the_graph_shares_are_refused_naming_it(token_server, encoding):
    """input_ids [1, 4] with attention_mask [1, 5]: the graph names both sequences 'sequence', so
    the request is refused before it reaches the model, naming both inputs and the dimension (it
    was a 500 with ONNX Runtime's broadcast error)."""
    triton = client(token_server, encoding.split("-")[0])
    warned_before = refused_by_model(token_server)
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("token-pair", token_inputs(encoding, [[1, 2, 3, 4]], [[1, 1, 1, 0, 1]]))
    assert raised.value.status() == ("StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400")
    assert (
        "inputs 'input_ids' and 'attention_mask' disagree on the dimension the model names 'sequence': "
        "'input_ids' has 4 (axis 1), 'attention_mask' has 5 (axis 1)"
    ) in raised.value.message()
    assert refused_by_model(token_server) == warned_before, "refused before the model: no WARN of the run"
    assert_no_server_error(token_server)
