# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "numpy==2.4.6",
#     "scipy==1.17.1",
#     "scikit-learn==1.7.2",
#     "skl2onnx==1.19.1",
#     "onnx==1.19.1",
# ]
# ///
"""Make model.onnx: a text classifier, TF-IDF then logistic regression, sorting short support
tickets into billing, delivery and technical. The corpus is written in tickets.py (fixed seed),
so nothing is downloaded.

The input is a string tensor [rows, 1]; the outputs are the class names (a string tensor) and
their probabilities as a ZipMap keyed by the class names, skl2onnx's default. One option is set:
`locale = "C"` for ONNX Runtime's StringNormalizer, which lower-cases the text. Without it the
operator asks the C library for the `en_US.UTF-8` locale by name and the model fails to load
where no locales are installed, as in predictor's OCI image. The "C" locale always exists; it
lower-cases ASCII letters only, which this corpus is written in.

Run with the pinned versions above (PEP 723; e.g. `pipx run` or `uv run`), or in a virtual
environment holding them:
    python models/support-tickets-tfidf/make_model.py
It prints the [sample] expected output, computed by scikit-learn itself, for predictor.toml.
"""

import sys
from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).parent))
import tickets  # noqa: E402 (the corpus, beside this file)

texts, classes = tickets.corpus()

model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000, random_state=0))
model.fit(texts, classes)
vectorizer = model.steps[0][1]

onnx_model = convert_sklearn(
    model,
    initial_types=[("text", StringTensorType([None, 1]))],
    options={id(vectorizer): {"locale": "C"}},
)
Path(__file__).with_name("model.onnx").write_bytes(onnx_model.SerializeToString())

sample = [
    "I was charged twice this month",
    "my package never arrived",
    "the app crashes on start",
]
print("classes =", model.classes_.tolist())
print("labels =", model.predict(sample).tolist())
print("expected =", np.round(model.predict_proba(sample).astype(np.float64), 6).tolist())
