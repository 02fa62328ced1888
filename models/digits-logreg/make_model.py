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
"""Make model.onnx: scaled logistic regression on the 8x8 digits data (64 inputs, 10 classes).

Run with the pinned versions above (PEP 723; e.g. `pipx run` or `uv run`), or in a virtual
environment holding them:
    python models/digits-logreg/make_model.py
It prints the [sample] input (the first image of each of digits 0 and 7) and the expected
output, computed by scikit-learn itself, for predictor.toml.
"""

from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_digits(return_X_y=True)
X = X.astype(np.float32)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0)).fit(X, y)

onnx_model = to_onnx(
    model,
    initial_types=[("input", FloatTensorType([None, 64]))],
    options={id(model.steps[-1][1]): {"zipmap": False}},
    target_opset={"": 17, "ai.onnx.ml": 3},
)
Path(__file__).with_name("model.onnx").write_bytes(onnx_model.SerializeToString())

sample = X[[np.flatnonzero(y == 0)[0], np.flatnonzero(y == 7)[0]]]
print("input =", sample.astype(int).tolist())
print("expected =", np.round(model.predict_proba(sample).astype(np.float64), 6).tolist())
