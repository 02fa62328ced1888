//! The seed's REST API apart from HTTP: a request's `data` (rows, or a table of rows by input
//! name) to the prediction output, or to each row's label.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{Model, PredictError};
use crate::serving::decoding::decode_sized;
use crate::serving::error::ServeError;
use crate::tensor::{Tensor, TensorData};

/// The body of `/predict` and `/predict/label`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// Rows for the model's input (or a table of rows by input name), kept as text and decoded
    /// straight into tensors.
    pub data: Box<RawValue>,
}

/// The answer of every prediction route.
#[derive(Serialize)]
pub struct Prediction<T> {
    pub prediction: T,
}

/// What a seed prediction route runs the model on.
pub enum SeedInput {
    /// The body's `data`: rows (an image bundle's each an image in base64), or a table of rows
    /// by input name.
    Json(Box<RawValue>),
    /// A body that is one encoded image (`Content-Type: image/...`), for an image bundle: one row.
    Image(Bytes),
    /// The bundle's own sample (`/predict/test`).
    Sample,
}

/// Runs `model` on `input` and returns its prediction output.
pub async fn predict(model: &Arc<Model>, input: SeedInput) -> Result<Tensor, ServeError> {
    let inputs = inputs_of(model, input)
        .await
        .map_err(PredictError::InvalidInput)?;
    let mut outputs = model.infer(inputs).await?;
    Ok(outputs.swap_remove(model.bundle().prediction))
}

async fn inputs_of(model: &Arc<Model>, input: SeedInput) -> Result<Vec<Tensor>, String> {
    let bundle = model.bundle();
    let is_image_bundle = bundle.config.image.is_some();
    match input {
        SeedInput::Sample => Ok(model.sample_inputs()),
        SeedInput::Image(bytes) if is_image_bundle => {
            // The body's own buffer when nothing else holds it: no copy.
            let image = TensorData::Bytes(vec![Vec::from(bytes)]);
            Ok(vec![
                Tensor::new(vec![1], image).map_err(|error| error.to_string())?
            ])
        }
        SeedInput::Image(_) => Err(format!(
            "model '{}' takes JSON ({{\"data\": rows}}), not an image: it is no image bundle",
            model.name()
        )),
        SeedInput::Json(data) => {
            let decoding = model.clone();
            decode_sized(data.get().len(), move || {
                // The JSON text is several times the size of its tensors: freed here, before
                // waiting.
                let inputs = decoding.bundle().decode_inputs(&data, "data")?;
                if !is_image_bundle {
                    return Ok(inputs);
                }
                inputs
                    .into_iter()
                    .map(|tensor| {
                        let (shape, data) = tensor.into_parts();
                        let images = data.from_base64().map_err(|problem| {
                            format!("data: each row is an image in base64; {problem}")
                        })?;
                        Tensor::new(shape, images).map_err(|error| error.to_string())
                    })
                    .collect()
            })
            .await
        }
    }
}

/// Like [`predict`], then each row's label (None past the declared labels); refused before
/// running when the bundle declares no labels.
pub async fn predict_labels(
    model: &Arc<Model>,
    input: SeedInput,
) -> Result<Vec<Option<String>>, ServeError> {
    if let Some(why) = model.bundle().why_no_labels() {
        // The labels routes of a bundle without labels do not exist for it.
        return Err(ServeError::not_found(format!(
            "model '{}' has no labels: {why}",
            model.name()
        )));
    }
    let prediction = predict(model, input).await?;
    model
        .bundle()
        .labels_of(&prediction)
        .map_err(ServeError::internal)
}
