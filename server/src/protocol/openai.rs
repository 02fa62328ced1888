//! OpenAI's embeddings API (`POST /v1/embeddings`) apart from HTTP: the request its clients send
//! (`model`, `input` as a string or a list of strings, `encoding_format`), answered by a text
//! bundle whose prediction is one vector per text, with the tokens it read as `usage`.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub input: Value,
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
    let texts = texts(request.input)?;
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
/// prediction is float32 [rows, dim].
fn embedding_size(model: &Model) -> Result<usize, ServeError> {
    let bundle = model.bundle();
    let spec = bundle.prediction_spec();
    let size = match spec.shape.as_slice() {
        &[-1, dim] if dim > 0 && spec.dtype == DType::Float32 => usize::try_from(dim).ok(),
        _ => None,
    };
    match (size, &bundle.config.text) {
        (Some(dim), Some(_)) => Ok(dim),
        _ => Err(ServeError::invalid(format!(
            "model '{}' does not answer embeddings: /v1/embeddings takes a text bundle ([text]) whose prediction is float32 [-1, dim]; use /v2/models/{}/infer",
            model.name(),
            model.name()
        ))),
    }
}

/// The texts of `input`: a string, or a non-empty list of strings.
fn texts(input: Value) -> Result<Vec<String>, ServeError> {
    let refused = |what: &str| {
        ServeError::invalid(format!(
            "input: expected a string or a list of strings, received {what}"
        ))
    };
    match input {
        Value::String(text) => Ok(vec![text]),
        Value::Array(items) if items.is_empty() => Err(refused("an empty list")),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                Value::Number(_) | Value::Array(_) => Err(refused(
                    "token ids (the bundle's own tokenizer reads the text: send the text)",
                )),
                _ => Err(refused("a list holding something else")),
            })
            .collect(),
        Value::Null => Err(refused("null")),
        _ => Err(refused("another kind of value")),
    }
}
