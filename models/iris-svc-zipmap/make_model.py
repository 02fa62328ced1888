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
"""Make model.onnx: the seed's iris SVC exported as the seed exports it, with skl2onnx's defaults.

The defaults keep the ZipMap: the probabilities come out as a sequence of maps from class to
probability, one map per row, which predictor serves as class scores [rows, classes]. Nothing
is set but the input's name and type: the opsets too are skl2onnx's choice (the oldest that
the model needs).

Run with the pinned versions above (PEP 723; e.g. `pipx run` or `uv run`), or in a virtual
environment holding them:
    python models/iris-svc-zipmap/make_model.py
It prints the [sample] expected output, computed by scikit-learn itself, for predictor.toml.
"""

from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.svm import SVC

X, y = load_iris(return_X_y=True)
model = SVC(probability=True, random_state=0).fit(X.astype(np.float32), y)

onnx_model = convert_sklearn(
    model,
    initial_types=[("input", FloatTensorType([None, 4]))],
)
Path(__file__).with_name("model.onnx").write_bytes(onnx_model.SerializeToString())

sample = np.array([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]], dtype=np.float32)
print("outputs =", [(o.name, o.type.WhichOneof("value")) for o in onnx_model.graph.output])
print("expected =", np.round(model.predict_proba(sample).astype(np.float64), 6).tolist())
