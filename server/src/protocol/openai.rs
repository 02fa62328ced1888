//! OpenAI's embeddings API (`POST /v1/embeddings`) apart from HTTP: the request its clients send
//! (`model`, `input` as a string or a list of strings, `encoding_format`), answered by a text
//! bundle whose prediction is one vector per text, with the tokens it read as `usage`.

use std::fmt;

use base64::Engine;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::Model;
use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::tensor::{DType, Tensor, TensorData};

/// The body of `POST /v1/embeddings`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// The bundle's name.
    pub model: String,
    /// A text, or a list of texts (OpenAI's token arrays are refused: the bundle tokenizes).
    pub input: Texts,
    /// "float" (the default) or "base64": each vector's float32 values, little-endian, in base64
    /// (what OpenAI's Python client asks for unless told otherwise).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// The vectors' length, if given: it must be the model's own (they are not shortened).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// The caller's own label, accepted and not used.
    #[serde(default)]
    pub user: Option<String>,
}

/// The most texts one request may hold while its body is read, before the model's row bounds
/// apply: a body of many short texts decodes to several times its size, and no more than this.
pub const MAX_TEXTS: usize = 65_536;

/// `input`: a string, or a non-empty list of strings, read as they come (no JSON tree of them).
pub struct Texts(pub Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings (token ids are refused: the bundle's tokenizer reads the text)")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Texts, E> {
                Ok(Texts(vec![text.to_string()]))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Texts, E> {
                Ok(Texts(vec![text]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Texts, A::Error> {
                let mut texts = Vec::new();
                while let Some(Text(text)) = items.next_element::<Text>()? {
                    if texts.len() == MAX_TEXTS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_TEXTS} texts in one request: send fewer"
                        )));
                    }
                    texts.push(text);
                }
                if texts.is_empty() {
                    return Err(de::Error::custom("an empty list: send at least one text"));
                }
                Ok(Texts(texts))
            }
        }
        deserializer.deserialize_any(TextsVisitor)
    }
}

/// One text of a list.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string (token ids are refused: the bundle's tokenizer reads the text)",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text(text.to_string()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text, E> {
                Ok(Text(text))
            }
        }
        deserializer.deserialize_string(TextVisitor)
    }
}

/// The answer: one embedding per text, in order.
#[derive(Serialize)]
pub struct Embeddings {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vector,
}

/// A vector as `encoding_format` asks.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

/// The tokens the texts came to (no completion: both counts are the same).
#[derive(Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Runs the bundle `request.model` names on the request's texts.
pub async fn embeddings(
    registry: &Registry,
    request: EmbeddingsRequest,
) -> Result<Embeddings, ServeError> {
    let model = registry
        .find(&request.model)
        .ok_or_else(|| ServeError::not_found(registry.unknown_model(&request.model)))?;
    let dim = embedding_size(model)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ServeError::invalid(format!(
                "encoding_format: expected \"float\" or \"base64\", received '{}'",
                crate::text::clip(other)
            )))
        }
    };
    if let Some(asked) = request.dimensions.filter(|&asked| asked != dim) {
        return Err(ServeError::invalid(format!(
            "dimensions: model '{}' answers vectors of {dim} values, not {asked}; leave dimensions out",
            model.name()
        )));
    }
    let Texts(texts) = request.input;
    let rows = texts.len();
    let input = Tensor::new(vec![rows], TensorData::String(texts))
        .map_err(|error| ServeError::internal(error.to_string()))?;
    let (mut outputs, tokens) = model.infer_counting_tokens(vec![input]).await?;
    let prediction = outputs.swap_remove(model.bundle().prediction);
    let TensorData::Float32(values) = prediction.data() else {
        return Err(ServeError::internal(
            "the embeddings came back as another dtype",
        ));
    };
    let data = values
        .chunks_exact(dim)
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Floats(vector.to_vec())
            },
        })
        .collect();
    Ok(Embeddings {
        object: "list",
        data,
        model: model.name().to_string(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

/// The length of the vectors `model` answers, when it answers embeddings: a text bundle whose
/// prediction is float32 [rows, dim] and not class scores (a classifier has labels or a softmax).
fn embedding_size(model: &Model) -> Result<usize, ServeError> {
    let bundle = model.bundle();
    let spec = bundle.prediction_spec();
    let size = match spec.shape.as_slice() {
        &[-1, dim] if dim > 0 && spec.dtype == DType::Float32 => usize::try_from(dim).ok(),
        _ => None,
    };
    let classifier = !bundle.config.labels.is_empty() || bundle.config.softmax.is_some();
    match (size, &bundle.config.text) {
        (Some(dim), Some(_)) if !classifier => Ok(dim),
        _ => Err(ServeError::invalid(format!(
            "model '{}' does not answer embeddings: /v1/embeddings takes a text bundle ([text]) whose prediction is float32 [-1, dim] and not class scores (no labels, no softmax); use /v2/models/{}/infer",
            model.name(),
            model.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<Vec<String>, String> {
        serde_json::from_str::<Texts>(json)
            .map(|Texts(texts)| texts)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn input_is_a_text_or_a_list_of_texts() {
        assert_eq!(input(r#""hello""#).unwrap(), ["hello"]);
        assert_eq!(input(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        assert!(input("[]").unwrap_err().contains("an empty list"));
        for ids in ["[101, 102]", "[[101, 102]]"] {
            let error = input(ids).unwrap_err();
            assert!(error.contains("token ids are refused"), "{error}");
        }
    }

    #[test]
    fn a_list_stops_at_the_most_texts_a_request_may_hold() {
        let list = format!("[{}\"\"]", "\"\",".repeat(MAX_TEXTS));
        let error = input(&list).unwrap_err();
        assert!(error.contains("more than 65536 texts"), "{error}");
        let list = format!("[{}\"\"]", "\"\",".repeat(MAX_TEXTS - 1));
        assert_eq!(input(&list).unwrap().len(), MAX_TEXTS);
    }
}
