#!/usr/bin/env python3
"""Writes the hand-made seed corpora of the fuzz targets, fuzz/corpus/<target>/: valid requests
and bundles, and near misses of each (one thing wrong), so that the fuzzers start from the shapes
the decoders expect and the replay test covers every error path once. Python's standard library
only; the gRPC messages are encoded by hand (protobuf's wire format is small).

A file named ok-* must be accepted by at least one of the declarations the targets decode against
(predictor::fuzzing::bundles), one named bad-* by none: the replay test (server/tests/fuzz_corpora.rs)
checks both, so that the corpora stay what their names say. Inputs kept from fuzzing are named
found-*; they only must not fail.

Run from anywhere: fuzz/make_corpus.py. It rewrites the ok-* and bad-* files and leaves the others."""

import json
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]

# The every-dtype fixture's inputs: (name, v2 datatype, struct format, two values); "s" is BYTES,
# each element its 4-byte little-endian length, then its UTF-8.
EVERY = [
    ("in_bool", "BOOL", "?", [True, False]),
    ("in_int8", "INT8", "b", [-128, 127]),
    ("in_int16", "INT16", "h", [-32768, 32767]),
    ("in_int32", "INT32", "i", [-2147483648, 2147483647]),
    ("in_int64", "INT64", "q", [-9007199254740991, 9007199254740991]),
    ("in_uint8", "UINT8", "B", [0, 255]),
    ("in_uint16", "UINT16", "H", [0, 65535]),
    ("in_uint32", "UINT32", "I", [0, 4294967295]),
    ("in_uint64", "UINT64", "Q", [0, 18446744073709551615]),
    ("in_float16", "FP16", "e", [-0.000061035156, 65504.0]),
    ("in_float32", "FP32", "f", [-1.5, 3.25]),
    ("in_float64", "FP64", "d", [-1e300, 2.5e-300]),
    ("in_string", "BYTES", "s", ["", "naïve façade, 日本語 ✓"]),
]


def dumps(value):
    return json.dumps(value, separators=(",", ":")).encode()


def seed_json():
    every = {name: [values] for name, _, _, values in EVERY}
    yield "ok-iris-one-row", dumps({"data": [IRIS_ROW]})
    yield "ok-iris-two-rows", dumps({"data": [IRIS_ROW, [6.4, 3.2, 4.5, 1.5]]})
    yield "ok-every-dtype-table", dumps({"data": every})
    yield "ok-integers-and-exponents", b'{"data": [[1, -0, 2e0, 3.0E-1]]}'
    # Found by fuzzing: serde_json's default float parser read 20.05e-300 one unit in the last
    # place off (2.0049999999999998e-299, not 2.005e-299).
    yield "ok-float64-correctly-rounded", dumps(
        {"data": dict(every, in_float64=[[0, 1]])}
    ).replace(b"[[0,1]]", b"[[0, 20.05e-300]]")
    yield "bad-ragged", dumps({"data": [IRIS_ROW, [1, 2]]})
    yield "bad-empty-rows", dumps({"data": []})
    yield "bad-empty-row", dumps({"data": [[]]})
    yield "bad-too-deep", dumps({"data": [[[[[[1]]]]]]})
    yield "bad-mixed-depth", dumps({"data": [[1, [2], 3, 4]]})
    yield "bad-out-of-range", dumps({"data": [[1e39, 0, 0, 0]]})
    yield "bad-wrong-types", dumps({"data": [[None, True, "a", {}]]})
    yield "bad-not-an-array", dumps({"data": "rows"})
    yield "bad-unknown-field", dumps({"data": [IRIS_ROW], "extra": 1})
    yield "bad-missing-data", b"{}"
    yield "bad-table-for-one-input", dumps({"data": {"input": [IRIS_ROW]}})
    yield "bad-table-missing-input", dumps({"data": {"in_bool": [[True, False]]}})
    yield "bad-table-unknown-input", dumps({"data": dict(every, other=[[1, 2]])})
    yield "bad-table-bad-value", dumps({"data": dict(every, in_int8=[[1, 300]])})
    yield "bad-json-cut-off", b'{"data": [[1, 2,'
    yield "bad-trailing", dumps({"data": [IRIS_ROW]}) + b" x"
    yield "bad-deep-nesting", b'{"data": ' + b"[" * 200 + b"]" * 200 + b"}"
    # Found by fuzzing: the JSON parser's error quoted a long unknown key whole.
    yield "bad-long-unknown-field", b'{"data": [[1, 2, 3, 4]], "' + b"x" * 5000 + b'": 1}'
    # Error messages quoted a long unknown input name, or a request's shape, whole.
    yield "bad-long-unknown-input", dumps({"data": dict(every, **{"x" * 5000: [[1, 2]]})})


def v2_input(name, datatype, shape, data=None, **parameters):
    tensor = {"name": name, "shape": shape, "datatype": datatype}
    if parameters:
        tensor["parameters"] = parameters
    if data is not None:
        tensor["data"] = data
    return tensor


def iris_request(**fields):
    request = {"inputs": [v2_input("input", "FP32", [1, 4], IRIS_ROW)]}
    request.update(fields)
    return request


def v2_json():
    every = [v2_input(name, dtype, [1, 2], values) for name, dtype, _, values in EVERY]
    yield "ok-iris", dumps(iris_request(id="42", outputs=[{"name": "probabilities"}]))
    yield "ok-iris-nested", dumps(
        {"inputs": [v2_input("input", "FP32", [2, 4], [IRIS_ROW, [6.4, 3.2, 4.5, 1.5]])]}
    )
    yield "ok-iris-parameters", dumps(
        iris_request(
            parameters={"binary_data_output": True},
            outputs=[{"name": "label", "parameters": {"binary_data": False}}],
        )
    )
    yield "ok-every-dtype", dumps({"inputs": every})
    yield "ok-float64-correctly-rounded", dumps({"inputs": every}).replace(
        b"[-1e+300,2.5e-300]", b"[20.05e-300, 2.5e-300]"
    )
    yield "bad-wrong-datatype", dumps({"inputs": [v2_input("input", "FP64", [1, 4], IRIS_ROW)]})
    yield "bad-unknown-datatype", dumps({"inputs": [v2_input("input", "FLOAT", [1, 4], IRIS_ROW)]})
    yield "bad-zero-dimension", dumps({"inputs": [v2_input("input", "FP32", [0, 4], [])]})
    yield "bad-negative-dimension", dumps({"inputs": [v2_input("input", "FP32", [-1, 4], IRIS_ROW)]})
    yield "bad-huge-shape", dumps(
        {"inputs": [v2_input("input", "FP32", [9223372036854775807, 4], IRIS_ROW)]}
    )
    yield "bad-overflowing-shape", dumps(
        {"inputs": [v2_input("in_int8", "INT8", [4294967296, 4294967296, 2], [1, 2])]}
    )
    yield "bad-too-few-values", dumps({"inputs": [v2_input("input", "FP32", [1, 4], [1, 2, 3])]})
    yield "bad-too-many-values", dumps({"inputs": [v2_input("input", "FP32", [1, 4], [1] * 5)]})
    yield "bad-no-data", dumps({"inputs": [v2_input("input", "FP32", [1, 4])]})
    yield "bad-given-twice", dumps(
        {"inputs": [v2_input("input", "FP32", [1, 4], IRIS_ROW)] * 2}
    )
    yield "bad-unknown-input", dumps({"inputs": [v2_input("other", "FP32", [1, 4], IRIS_ROW)]})
    yield "bad-missing-input", dumps({"inputs": every[1:]})
    yield "bad-unknown-output", dumps(iris_request(outputs=[{"name": "scores"}]))
    yield "bad-output-twice", dumps(iris_request(outputs=[{"name": "label"}, {"name": "label"}]))
    yield "bad-shared-memory", dumps(
        {"inputs": [v2_input("input", "FP32", [1, 4], IRIS_ROW, shared_memory_region="r")]}
    )
    yield "ok-classification", dumps(
        iris_request(outputs=[{"name": "probabilities", "parameters": {"classification": 2}}])
    )
    yield "bad-classification-not-a-count", dumps(
        iris_request(outputs=[{"name": "probabilities", "parameters": {"classification": "2"}}])
    )
    yield "bad-classification-of-text", dumps(
        {
            "inputs": [v2_input(n, d, [1, 2], v) for n, d, _, v in EVERY],
            "outputs": [{"name": "out_string", "parameters": {"classification": 1}}],
        }
    )
    yield "bad-parameter-type", dumps(iris_request(parameters={"binary_data_output": "yes"}))
    yield "bad-fp16-out-of-range", dumps(
        {"inputs": [v2_input("in_float16", "FP16", [1, 2], [70000, 1])]}
    )
    yield "bad-int-out-of-range", dumps({"inputs": [v2_input("in_uint8", "UINT8", [1, 2], [1, 256])]})
    yield "bad-fraction-for-integer", dumps(
        {"inputs": [v2_input("in_int32", "INT32", [1, 2], [1.5, 2])]}
    )
    yield "bad-not-an-object", b"[]"
    yield "bad-json-cut-off", b'{"inputs": [{"name": "input",'
    # The JSON parser's error quotes a misplaced string whole.
    yield "bad-many-dimensions", dumps({"inputs": [v2_input("input", "FP32", [1] * 2000, [1])]})
    yield "bad-many-dimensions-one-zero", dumps(
        {"inputs": [v2_input("input", "FP32", [1] * 2000 + [0], [1])]}
    )
    yield "bad-long-string-shape", dumps(
        {"inputs": [{"name": "input", "shape": "x" * 5000, "datatype": "FP32", "data": IRIS_ROW}]}
    )


def binary(values, fmt):
    if fmt == "s":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    return struct.pack("<%d%s" % (len(values), fmt), *values)


def with_header(request, data):
    header = dumps(request)
    return str(len(header)).encode() + b"\n" + header + data


def v2_binary():
    iris = binary(IRIS_ROW, "f")
    sized = {"inputs": [v2_input("input", "FP32", [1, 4], binary_data_size=16)]}
    yield "ok-iris", with_header(sized, iris)
    yield "ok-iris-binary-output", with_header(
        dict(sized, parameters={"binary_data_output": True}), iris
    )
    every = [v2_input(n, d, [1, 2], binary_data_size=len(binary(v, f))) for n, d, f, v in EVERY]
    yield "ok-every-dtype", with_header(
        {"inputs": every}, b"".join(binary(v, f) for _, _, f, v in EVERY)
    )
    mixed = [v2_input("in_bool", "BOOL", [1, 2], binary_data_size=2)] + [
        v2_input(n, d, [1, 2], v) for n, d, _, v in EVERY[1:]
    ]
    yield "ok-every-dtype-mixed", with_header({"inputs": mixed}, b"\x01\x00")
    yield "ok-no-header", dumps(iris_request())
    yield "bad-header-empty", b"\n" + dumps(sized) + iris
    yield "bad-header-too-long", b"999\n" + dumps(sized) + iris
    yield "bad-header-not-a-number", b"x\n" + dumps(sized) + iris
    yield "bad-header-negative", b"-1\n" + dumps(sized) + iris
    # Found by fuzzing: the error quoted the header's value whole.
    yield "bad-header-long", b"1" * 5000 + b"\n" + dumps(sized) + iris
    yield "bad-size-too-large", with_header(
        {"inputs": [v2_input("input", "FP32", [1, 4], binary_data_size=32)]}, iris
    )
    yield "bad-size-too-small", with_header(
        {"inputs": [v2_input("input", "FP32", [1, 4], binary_data_size=8)]}, iris
    )
    yield "bad-bytes-left-over", with_header(sized, iris + b"\0\0\0\0")
    yield "bad-size-and-data", with_header(
        {"inputs": [v2_input("input", "FP32", [1, 4], IRIS_ROW, binary_data_size=16)]}, iris
    )
    yield "bad-size-not-a-number", with_header(
        {"inputs": [v2_input("input", "FP32", [1, 4], binary_data_size="16")]}, iris
    )
    yield "bad-bool-not-0-or-1", with_header(
        {"inputs": [v2_input("in_bool", "BOOL", [1, 2], binary_data_size=2)]}, b"\x01\x02"
    )
    # NaN and infinity are values like any other in binary data.
    nan = {"FP16": b"\x00\x7e\x00\x7c", "FP32": binary([float("nan"), float("-inf")], "f")}
    nan["FP64"] = binary([float("nan"), float("inf")], "d")
    yield "ok-every-dtype-nan", with_header(
        {"inputs": every}, b"".join(nan.get(d, binary(v, f)) for _, d, f, v in EVERY)
    )


# Protobuf's wire format, as much of it as ModelInferRequest needs.
def varint(number):
    number &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, value):
    """One field: an int as a varint, bytes or str length-delimited."""
    if isinstance(value, bool) or isinstance(value, int):
        return varint(number << 3) + varint(int(value))
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def packed(number, values, fmt=None):
    """A packed repeated field: varints, or fixed-size values in struct format `fmt`."""
    if fmt:
        body = binary(values, fmt)
    else:
        body = b"".join(varint(int(v)) for v in values)
    return field(number, body)


def parameter(key, value):
    if isinstance(value, bool):
        typed = field(1, value)
    elif isinstance(value, int):
        typed = field(2, value)
    else:
        typed = field(3, value)
    return field(1, key) + field(2, typed)


# InferTensorContents field and packing by v2 datatype.
CONTENTS = {
    "BOOL": (1, None),
    "INT8": (2, None),
    "INT16": (2, None),
    "INT32": (2, None),
    "INT64": (3, None),
    "UINT8": (4, None),
    "UINT16": (4, None),
    "UINT32": (4, None),
    "UINT64": (5, None),
    "FP32": (6, "f"),
    "FP64": (7, "d"),
    "BYTES": (8, None),
}


def grpc_input(name, datatype, shape, contents=None, **parameters):
    out = field(1, name) + field(2, datatype) + packed(3, shape)
    for key, value in parameters.items():
        out += field(4, parameter(key, value))
    if contents is not None:
        number, fmt = CONTENTS[datatype]
        if datatype == "BYTES":
            # Repeated bytes are never packed: one field per element.
            out += field(5, b"".join(field(number, value) for value in contents))
        else:
            out += field(5, packed(number, contents, fmt))
    return out


def grpc_request(inputs, raw=(), outputs=(), model="iris-svc", request_id=""):
    out = field(1, model)
    if request_id:
        out += field(3, request_id)
    out += b"".join(field(5, tensor) for tensor in inputs)
    out += b"".join(field(6, field(1, name)) for name in outputs)
    out += b"".join(field(7, data) for data in raw)
    return out


def grpc_infer():
    iris_raw = binary(IRIS_ROW, "f")
    yield "ok-iris-raw", grpc_request([grpc_input("input", "FP32", [1, 4])], [iris_raw])
    yield "ok-iris-typed", grpc_request(
        [grpc_input("input", "FP32", [1, 4], IRIS_ROW)], outputs=["probabilities"], request_id="7"
    )
    typed = [grpc_input(n, d, [1, 2], v) for n, d, _, v in EVERY if d != "FP16"]
    typed.append(grpc_input("in_float16", "FP16", [1, 2]))
    raw = [b""] * (len(typed) - 1) + [binary([1.0, 2.0], "e")]
    yield "ok-every-dtype-raw", grpc_request(
        [grpc_input(n, d, [1, 2]) for n, d, _, _ in EVERY],
        [binary(v, f) for _, _, f, v in EVERY],
        model="every-dtype",
    )
    yield "bad-every-dtype-typed-but-fp16", grpc_request(typed[:-1], model="every-dtype")
    yield "bad-fp16-typed", grpc_request(
        [field(1, "in_float16") + field(2, "FP16") + packed(3, [1, 2]) + field(5, packed(6, [1, 2], "f"))]
    )
    yield "bad-raw-and-typed-both", grpc_request(typed, raw, model="every-dtype")
    yield "bad-raw-count-mismatch", grpc_request(
        [grpc_input("input", "FP32", [1, 4])], [iris_raw, iris_raw]
    )
    yield "bad-raw-size-mismatch", grpc_request([grpc_input("input", "FP32", [1, 4])], [iris_raw[:8]])
    yield "bad-typed-wrong-field", grpc_request(
        [field(1, "input") + field(2, "FP32") + packed(3, [1, 4]) + field(5, packed(7, IRIS_ROW, "d"))]
    )
    yield "bad-narrowed-out-of-range", grpc_request(
        [grpc_input("in_int8", "INT8", [1, 2], [1, 300])], model="every-dtype"
    )
    yield "bad-no-data", grpc_request([grpc_input("input", "FP32", [1, 4])])
    yield "bad-negative-shape", grpc_request([grpc_input("input", "FP32", [-1, 4])], [iris_raw])
    yield "bad-huge-shape", grpc_request(
        [grpc_input("input", "FP32", [1 << 62, 1 << 62])], [iris_raw]
    )
    yield "bad-shared-memory", grpc_request(
        [grpc_input("input", "FP32", [1, 4], shared_memory_region="r")], [iris_raw]
    )
    yield "bad-unknown-output", grpc_request([grpc_input("input", "FP32", [1, 4])], [iris_raw], ["x"])
    yield "bad-many-dimensions", grpc_request([grpc_input("input", "FP32", [1] * 2000)], [iris_raw])
    yield "bad-truncated", grpc_request([grpc_input("input", "FP32", [1, 4])], [iris_raw])[:-3]


def bundle_toml():
    for path in sorted(REPO.glob("models/*/predictor.toml")):
        yield "ok-" + path.parent.name, path.read_bytes()
    fixtures = REPO / "server/tests/fixtures"
    for path in sorted(fixtures.glob("*/predictor.toml")):
        yield "ok-" + path.parent.name, path.read_bytes()
    iris = (REPO / "models/iris-svc/predictor.toml").read_text()
    variants = {
        "unknown-key": iris.replace("[sample]", "[sample]\ntolerence = 1"),
        "unknown-dtype": iris.replace('"int64"', '"long"'),
        "labels-mismatch": iris.replace('"virginica"]', '"virginica", "other"]'),
        "fields": iris.replace("schema_version = 1", "schema_version = 2")
        .replace('name = "iris-svc"', 'name = "Iris SVC"')
        .replace('model = "model.onnx"', 'model = "../model.onnx"')
        .replace("shape = [-1, 4]", "shape = [-1, 0]")
        .replace("tolerance = 1e-4", "tolerance = nan"),
        "batching": iris.replace("threads = 1", "threads = 1\nmax_batch_size = 8\nmax_queue_delay_ms = 5"),
        "sample-ragged": iris.replace("[6.4, 3.2, 4.5, 1.5]", "[6.4, 3.2]"),
        "sample-table": iris.replace(
            "input = [[5.1", "input = { input = [[5.1, 3.5, 1.4, 0.2]] }\n# [[5.1"
        ),
        "sample-datetime": iris.replace("output = [[", "output = [[1979-05-27T07:32:00Z, "),
        "inline-tables": 'schema_version = 1\nname = "a"\nversion = "1"\nmodel = "m.onnx"\n'
        'inputs = [{ name = "x", dtype = "int8", shape = [-1] }]\n'
        'outputs = [{ name = "y", dtype = "bool", shape = [-1] }]\n'
        "sample = { input = [1, 2], output = [true, false], tolerance = 0 }\n",
        "not-toml": "schema_version = \n",
    }
    for name, text in variants.items():
        yield ("ok-" if name in ("batching", "inline-tables") else "bad-") + name, text.encode()


def main():
    for target in (seed_json, v2_json, v2_binary, grpc_infer, bundle_toml):
        folder = FUZZ / "corpus" / target.__name__
        folder.mkdir(parents=True, exist_ok=True)
        for old in [*folder.glob("ok-*"), *folder.glob("bad-*")]:
            old.unlink()
        for name, data in target():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
