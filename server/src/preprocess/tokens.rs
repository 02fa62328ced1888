//! Text to a transformer's token inputs: a Hugging Face `tokenizer.json` (bundle data) turns one
//! string per row into `input_ids`, `attention_mask` and `token_type_ids`, padded to the longest
//! row. The file's own padding is ignored (a fixed length would pad every short sentence to it);
//! its truncation is kept, at the smaller of its length and the bundle's sequence bound.

use std::path::Path;

use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// The characters of a text read for each token a row may have: a text is cut there before it is
/// tokenized, so that a long text costs the tokenizer no more than a row's tokens need (the
/// library tokenizes a whole text before truncating it: 8 MB of text would make millions of
/// tokens). A text whose first tokens average more than this many characters (long runs of
/// spaces) gets fewer tokens than the bound.
pub const CHARS_PER_TOKEN: usize = 32;

/// A bundle's tokenizer, ready to encode requests' texts.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    /// The most tokens of one row, special tokens included.
    max_tokens: usize,
    /// What pads a row to the longest of its batch (the file's padding token, else 0, as BERT's
    /// `[PAD]`).
    pad_id: i64,
    pad_type_id: i64,
}

/// The token inputs of some rows, each `rows × length`, row after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub rows: usize,
    pub length: usize,
    pub input_ids: Vec<i64>,
    /// 1 for a token, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl TextTokenizer {
    /// Reads `path` (a `tokenizer.json`); rows are cut at `max_tokens` tokens, or at the file's
    /// own truncation length where it is shorter.
    pub fn read(path: &Path, max_tokens: usize) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::from_bytes(&bytes, max_tokens)
            .map_err(|problem| format!("{}: {problem}", path.display()))
    }

    /// As [`TextTokenizer::read`], from the file's bytes.
    pub fn from_bytes(bytes: &[u8], max_tokens: usize) -> Result<Self, String> {
        if max_tokens < 2 {
            return Err(format!(
                "a sequence bound of {max_tokens} tokens leaves no room for a text (2 at least)"
            ));
        }
        let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|error| {
            format!("not a tokenizer.json the tokenizers library reads: {error}")
        })?;
        let (pad_id, pad_type_id) = tokenizer
            .get_padding()
            .map_or((0, 0), |padding| (padding.pad_id, padding.pad_type_id));
        tokenizer.with_padding(None);
        let truncation = match tokenizer.get_truncation() {
            Some(own) => TruncationParams {
                max_length: own.max_length.min(max_tokens),
                ..own.clone()
            },
            None => TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            },
        };
        let max_tokens = truncation.max_length;
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|error| format!("cannot truncate at {max_tokens} tokens: {error}"))?;
        Ok(TextTokenizer {
            tokenizer,
            max_tokens,
            pad_id: i64::from(pad_id),
            pad_type_id: i64::from(pad_type_id),
        })
    }

    /// The most tokens of one row, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// What pads a row's token ids, and its token type ids.
    pub fn pad_ids(&self) -> (i64, i64) {
        (self.pad_id, self.pad_type_id)
    }

    /// The token inputs of `texts`, one row each, padded to the longest row.
    pub fn encode(&self, texts: &[&str]) -> Result<TokenBatch, String> {
        let read = self.max_tokens.saturating_mul(CHARS_PER_TOKEN);
        let encodings = texts
            .iter()
            .map(|text| {
                let text = match text.char_indices().nth(read) {
                    Some((end, _)) => &text[..end],
                    None => text,
                };
                self.tokenizer
                    .encode_fast(text, true)
                    .map_err(|error| format!("cannot tokenize the text: {error}"))
            })
            .collect::<Result<Vec<Encoding>, String>>()?;
        let rows = encodings
            .iter()
            .map(|encoding| TokenBatch {
                rows: 1,
                length: encoding.len(),
                input_ids: widen(encoding.get_ids()),
                attention_mask: widen(encoding.get_attention_mask()),
                token_type_ids: widen(encoding.get_type_ids()),
            })
            .collect::<Vec<_>>();
        Ok(self.padded(&rows))
    }

    /// One batch of `parts` (each a request's rows), every row padded to the longest of all with
    /// the padding token, a zero mask and the padding type: requests of different lengths run
    /// together, and each row's tokens are what it had alone.
    pub fn padded(&self, parts: &[TokenBatch]) -> TokenBatch {
        let rows = parts.iter().map(|part| part.rows).sum();
        let length = parts.iter().map(|part| part.length).max().unwrap_or(0);
        let mut batch = TokenBatch {
            rows,
            length,
            input_ids: Vec::with_capacity(rows * length),
            attention_mask: Vec::with_capacity(rows * length),
            token_type_ids: Vec::with_capacity(rows * length),
        };
        for part in parts {
            for row in 0..part.rows {
                let tokens = row * part.length..(row + 1) * part.length;
                let padding = length - part.length;
                batch
                    .input_ids
                    .extend_from_slice(&part.input_ids[tokens.clone()]);
                batch
                    .input_ids
                    .extend(std::iter::repeat_n(self.pad_id, padding));
                batch
                    .attention_mask
                    .extend_from_slice(&part.attention_mask[tokens.clone()]);
                batch.attention_mask.extend(std::iter::repeat_n(0, padding));
                batch
                    .token_type_ids
                    .extend_from_slice(&part.token_type_ids[tokens]);
                batch
                    .token_type_ids
                    .extend(std::iter::repeat_n(self.pad_type_id, padding));
            }
        }
        batch
    }
}

fn widen(values: &[u32]) -> Vec<i64> {
    values.iter().map(|&value| i64::from(value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `tokenizer.json` laid out as BERT's (all-MiniLM-L6-v2's, as sentence-transformers ships
    /// it: lowercasing normaliser, BERT pre-tokenizer, WordPiece, `[CLS] … [SEP]`, padding to a
    /// fixed 128 and truncation at 128), with a vocabulary of a few words.
    fn bert_like(truncation: usize) -> String {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the", "cat", "sat", "##s", "on",
            "mat", ".", "!",
        ];
        let vocab = vocab
            .iter()
            .enumerate()
            .map(|(id, token)| format!("\"{token}\": {id}"))
            .collect::<Vec<_>>()
            .join(", ");
        let special = |id: usize, content: &str| {
            format!(
                r#"{{"id": {id}, "content": "{content}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
            )
        };
        format!(
            r###"{{
  "version": "1.0",
  "truncation": {{"direction": "Right", "max_length": {truncation}, "strategy": "LongestFirst", "stride": 0}},
  "padding": {{"strategy": {{"Fixed": 128}}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}},
  "added_tokens": [{}, {}, {}, {}],
  "normalizer": {{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
  "pre_tokenizer": {{"type": "BertPreTokenizer"}},
  "post_processor": {{"type": "TemplateProcessing",
    "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}],
    "pair": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}, {{"Sequence": {{"id": "B", "type_id": 1}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 1}}}}],
    "special_tokens": {{"[CLS]": {{"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}}, "[SEP]": {{"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}}}},
  "decoder": {{"type": "WordPiece", "prefix": "##", "cleanup": true}},
  "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": {{{vocab}}}}}
}}"###,
            special(0, "[PAD]"),
            special(1, "[UNK]"),
            special(2, "[CLS]"),
            special(3, "[SEP]"),
        )
    }

    fn tokenizer(truncation: usize, max_tokens: usize) -> TextTokenizer {
        TextTokenizer::from_bytes(bert_like(truncation).as_bytes(), max_tokens).unwrap()
    }

    #[test]
    fn rows_are_padded_to_the_longest_not_to_the_files_fixed_length() {
        let batch = tokenizer(128, 256)
            .encode(&["Hello world!", "The cats sat on the mat.", ""])
            .unwrap();
        assert_eq!((batch.rows, batch.length), (3, 10));
        #[rustfmt::skip]
        assert_eq!(batch.input_ids, [
            2, 4, 5, 13, 3, 0, 0, 0, 0, 0,
            2, 6, 7, 9, 8, 10, 6, 11, 12, 3,
            2, 3, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        #[rustfmt::skip]
        assert_eq!(batch.attention_mask, [
            1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(batch.token_type_ids, [0; 30]);
    }

    #[test]
    fn truncation_is_at_the_smaller_of_the_files_and_the_bundles_bound() {
        let long = "the cat sat on the mat ".repeat(3_000);
        for (file, bundle, expected) in [(128, 8, 8), (6, 256, 6)] {
            let tokenizer = tokenizer(file, bundle);
            assert_eq!(tokenizer.max_tokens(), expected);
            let batch = tokenizer.encode(&[&long]).unwrap();
            assert_eq!(batch.length, expected);
            // The special tokens stay: the text is cut, not the [SEP].
            assert_eq!(batch.input_ids[0], 2);
            assert_eq!(batch.input_ids[expected - 1], 3);
        }
    }

    #[test]
    fn a_long_text_is_read_only_as_far_as_its_tokens_need() {
        let tokenizer = tokenizer(128, 8);
        let words = "the cat sat on the mat ".repeat(1_000);
        let cut = &words[..8 * CHARS_PER_TOKEN];
        assert_eq!(tokenizer.encode(&[&words]), tokenizer.encode(&[cut]));
        // Past the characters read, nothing counts: 8 MB of spaces then a word is no token.
        let spaces = format!("{}hello", " ".repeat(8 << 20));
        assert_eq!(tokenizer.encode(&[&spaces]).unwrap().input_ids, [2, 3]);
    }

    #[test]
    fn requests_of_different_lengths_pad_into_one_batch_unchanged() {
        let tokenizer = tokenizer(128, 256);
        let short = tokenizer.encode(&["hello"]).unwrap();
        let long = tokenizer
            .encode(&["the cat sat on the mat", "world"])
            .unwrap();
        let batch = tokenizer.padded(&[short.clone(), long.clone()]);
        let alone = tokenizer
            .encode(&["hello", "the cat sat on the mat", "world"])
            .unwrap();
        assert_eq!(batch, alone);
        assert_eq!(short.length, 3);
        assert_eq!(long.length, 8);
    }

    /// all-MiniLM-L6-v2's own tokenizer.json gives, sentence by sentence, the tokens the
    /// `tokenizers` Python package gives (server/tests/data/all-minilm-l6-v2/make_references.py):
    /// accents, CJK, emoji, control characters, subwords, and a long text truncated at the file's
    /// 128 under the bundle's 256; together, each row is its own tokens padded to the longest.
    #[test]
    fn a_real_tokenizer_gives_what_the_python_package_gives() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all-minilm-l6-v2");
        let references: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("references.json")).unwrap())
                .unwrap();
        let bound = references["bound"].as_u64().unwrap() as usize;
        let tokenizer = TextTokenizer::read(&folder.join("tokenizer.json"), bound).unwrap();
        assert_eq!(
            tokenizer.max_tokens() as u64,
            references["max_tokens"].as_u64().unwrap()
        );
        let rows = references["rows"].as_array().unwrap();
        let numbers = |row: &serde_json::Value, field: &str| -> Vec<i64> {
            row[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_i64().unwrap())
                .collect()
        };
        let mut alone = Vec::new();
        for row in rows {
            let text = row["text"].as_str().unwrap();
            let batch = tokenizer.encode(&[text]).unwrap();
            assert_eq!(batch.input_ids, numbers(row, "input_ids"), "{text:?}");
            assert_eq!(
                batch.attention_mask,
                numbers(row, "attention_mask"),
                "{text:?}"
            );
            assert_eq!(
                batch.token_type_ids,
                numbers(row, "token_type_ids"),
                "{text:?}"
            );
            alone.push(batch);
        }
        let texts: Vec<&str> = rows
            .iter()
            .map(|row| row["text"].as_str().unwrap())
            .collect();
        let together = tokenizer.encode(&texts).unwrap();
        assert_eq!(together, tokenizer.padded(&alone));
        assert_eq!(together.length, tokenizer.max_tokens());
    }

    #[test]
    fn what_is_not_a_tokenizer_is_named() {
        let error = TextTokenizer::from_bytes(b"{\"version\": \"1.0\"}", 128)
            .err()
            .unwrap();
        assert!(error.contains("not a tokenizer.json"), "{error}");
        let error = TextTokenizer::from_bytes(bert_like(128).as_bytes(), 1)
            .err()
            .unwrap();
        assert!(error.contains("no room"), "{error}");
    }
}
