"""Make the benchmark's compute-heavy model: an MLP with 512 inputs, two hidden layers of 1024
(ReLU) and 10 softmax outputs, random but fixed weights (seed 0). Writes two bundles under the
given folder: mlp-512 (each request runs alone) and mlp-512-batched (dynamic batching). The
expected sample output comes from ONNX's own reference evaluator.

    python bench/make_mlp.py .cache/bench/models
"""

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper, save
from onnx.reference import ReferenceEvaluator

SIZES = [512, 1024, 1024, 10]


def build():
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    previous = "input"
    for layer, (fan_in, fan_out) in enumerate(zip(SIZES, SIZES[1:])):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = np.zeros(fan_out, dtype=np.float32)
        initializers += [numpy_helper.from_array(weight, f"w{layer}"), numpy_helper.from_array(bias, f"b{layer}")]
        out = f"h{layer}"
        nodes.append(helper.make_node("Gemm", [previous, f"w{layer}", f"b{layer}"], [out]))
        if layer < len(SIZES) - 2:
            nodes.append(helper.make_node("Relu", [out], [f"{out}_relu"]))
            out = f"{out}_relu"
        previous = out
    nodes.append(helper.make_node("Softmax", [previous], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp_512",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["rows", SIZES[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["rows", SIZES[-1]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="predictor-bench")
    model.ir_version = 8
    checker.check_model(model)
    return model


def bundle_toml(name, sample, expected, batching):
    rows = ", ".join(f"{v:.6f}" for v in sample[0])
    probabilities = ", ".join(f"{v:.7g}" for v in expected[0])
    runtime = "threads = 1\n" + ("max_batch_size = 32\nmax_queue_delay_ms = 2\n" if batching else "")
    return f"""# Made by bench/make_mlp.py for the benchmark; not a real predictor.
schema_version = 1
name = "{name}"
version = "1.0.0"
description = "Benchmark MLP: 512 inputs, two hidden layers of 1024, 10 classes."
model = "model.onnx"

[[inputs]]
name = "input"
dtype = "float32"
shape = [-1, 512]

[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 10]

[sample]
input = [[{rows}]]
output = [[{probabilities}]]
tolerance = 1e-5

[runtime]
{runtime}"""


def main():
    root = Path(sys.argv[1])
    model = build()
    sample = np.round(np.random.default_rng(1).standard_normal((1, SIZES[0])), 6).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"input": sample})[0]
    for name, batching in (("mlp-512", False), ("mlp-512-batched", True)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        save(model, folder / "model.onnx")
        (folder / "predictor.toml").write_text(bundle_toml(name, sample, expected, batching))
        print(folder)


if __name__ == "__main__":
    main()
