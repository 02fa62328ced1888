"""A text classifier bundle (models/support-tickets-wordpiece): a tokenizer fills the graph's token
inputs, the graph answers logits, the bundle makes their softmax ([softmax]) and names the
classes (labels). Every answer is compared with the pipeline its users would run in Python:
Hugging Face's tokenizers on the bundle's tokenizer.json (padded to the longest row), ONNX Runtime
on its model.onnx and numpy's softmax."""

import concurrent.futures

import numpy as np
import onnxruntime as ort
import openai
import pytest
from tokenizers import Tokenizer

from conftest import REPO, Server, read_bundle
from text_helpers import post, text_client_and_input

FOLDER = REPO / "models/support-tickets-wordpiece"
NAME = "support-tickets-wordpiece"
LABELS = ["billing", "delivery", "technical"]
# The same ONNX Runtime as Python's: float rounding only.
TOLERANCE = 1e-5
TICKETS = [
    "please refund the invoice, I was charged twice",
    "my parcel never arrived and tracking shows nothing",
    "the app crashes when I open it",
    "",
    "Café déjà vu: naïve résumé 🙂 我爱北京",
    " ".join(["the courier left my package outside"] * 500),  # 3,000 words: cut at 128 tokens
]


@pytest.fixture(scope="module")
def server():
    server = Server([FOLDER])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference():
    """The Python pipeline: class probabilities for a list of tickets, run as one batch."""
    tokenizer = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    session = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])

    def probabilities(tickets):
        encodings = tokenizer.encode_batch(tickets)
        (logits,) = session.run(
            None,
            {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            },
        )
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    return probabilities


def test_the_bundles_sample_is_the_python_pipelines_answer(reference):
    """The sample's expected output (scikit-learn's predict_proba, from make_model.py) is what the
    Python pipeline computes: the bundle's softmax is the one its makers meant."""
    sample = read_bundle(FOLDER)["sample"]
    np.testing.assert_allclose(reference(sample["input"]), sample["output"], atol=sample["tolerance"], rtol=0)


def test_tickets_on_the_seed_api_get_the_python_pipelines_probabilities_and_labels(server, reference):
    expected = reference(TICKETS)
    status, answer = post(server, "/predict", {"data": TICKETS})
    assert status == 200, answer
    np.testing.assert_allclose(answer["prediction"], expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.sum(answer["prediction"], axis=1), 1.0, atol=1e-6)
    status, answer = post(server, "/predict/label", {"data": TICKETS})
    assert status == 200, answer
    assert answer["prediction"] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert answer["prediction"][:3] == LABELS


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
def test_tickets_over_v2_get_logits_probabilities_and_the_top_classes(server, reference, protocol):
    module, client, text = text_client_and_input(server, protocol, TICKETS)
    expected = reference(TICKETS)
    result = client.infer(NAME, [text])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=TOLERANCE, rtol=0)
    # The logits are the graph's own output, served beside the probabilities made from them.
    logits = result.as_numpy("logits")
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), expected, atol=TOLERANCE, rtol=0)
    # The classification extension: the two best classes of each ticket, named by the labels.
    top = client.infer(NAME, [text], outputs=[module.InferRequestedOutput("probabilities", class_count=2)])
    for row, classes in zip(expected, top.as_numpy("probabilities")):
        best = np.argsort(-row)[:2]
        assert [entry.decode().split(":")[1:] for entry in classes] == [[str(i), LABELS[i]] for i in best]


def test_concurrent_tickets_of_different_lengths_each_get_their_own(server, reference):
    """Tickets of 1 to 40 words on 16 connections: the bundle batches 16 rows, padded to the
    longest; each answer is what the ticket gets alone."""
    words = "my order was charged twice and the app crashes while the parcel is late".split()
    tickets = [" ".join(words[: 1 + (index * 5) % len(words)] * (1 + index % 3)) for index in range(48)]
    expected = {ticket: reference([ticket])[0] for ticket in tickets}

    def one(ticket):
        status, answer = post(server, "/predict", {"data": [ticket]})
        assert status == 200, answer
        return ticket, np.asarray(answer["prediction"][0])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for ticket, probabilities in pool.map(one, tickets):
            np.testing.assert_allclose(probabilities, expected[ticket], atol=TOLERANCE, rtol=0, err_msg=ticket)


def test_a_classifier_is_not_an_embedding_model(server):
    """Its probabilities are float32 [-1, 3], but they are classes, not an embedding: the OpenAI
    route refuses it with a 400 that says so, in OpenAI's shape."""
    client = openai.OpenAI(base_url=f"http://{server.http}/v1", api_key="not-checked", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="not class scores"):
        client.embeddings.create(model=NAME, input="hello")


def test_callers_mistakes_are_400s(server):
    status, answer = post(server, "/predict", {"data": [["a ticket"]]})
    assert status == 400 and "input 'text' expects shape [-1]" in answer["error"], answer
    status, answer = post(server, "/predict/label", {"data": ["a"] * 65})
    assert status == 400 and "65" in answer["error"], answer
