//! The seed's REST API apart from HTTP: a request's `data` (rows, or a table of rows by input
//! name) to the prediction output, or to each row's label.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{Model, PredictError};
use crate::serving::decoding::decode_sized;
use crate::serving::error::ServeError;
use crate::tensor::Tensor;

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

/// Runs `model` on `data` and returns its prediction output.
pub async fn predict(model: &Arc<Model>, data: Box<RawValue>) -> Result<Tensor, ServeError> {
    let decoding = model.clone();
    let inputs = decode_sized(data.get().len(), move || {
        // The JSON text is several times the size of its tensors: freed here, before waiting.
        decoding.bundle().decode_inputs(&data, "data")
    })
    .await
    .map_err(PredictError::InvalidInput)?;
    let mut outputs = model.infer(inputs).await?;
    Ok(outputs.swap_remove(model.bundle().prediction))
}

/// Like [`predict`], then each row's label (None past the declared labels); refused before
/// running when the bundle declares no labels.
pub async fn predict_labels(
    model: &Arc<Model>,
    data: Box<RawValue>,
) -> Result<Vec<Option<String>>, ServeError> {
    if let Some(why) = model.bundle().why_no_labels() {
        // The labels routes of a bundle without labels do not exist for it.
        return Err(ServeError::not_found(format!(
            "model '{}' has no labels: {why}",
            model.name()
        )));
    }
    let prediction = predict(model, data).await?;
    model
        .bundle()
        .labels_of(&prediction)
        .map_err(ServeError::internal)
}

/// The sample's own input, as a request would send it (`/predict/test`).
pub fn sample_input(model: &Model) -> Box<RawValue> {
    model.bundle().sample_input.clone()
}
