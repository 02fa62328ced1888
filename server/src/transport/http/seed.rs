//! The seed's REST API, per model: at the root when one model is served, and under
//! `/models/{name}` always.

use axum::extract::{FromRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiJson, AppState, SelectedModel};
use crate::bundle::{BundleConfig, TensorSpec};
use crate::protocol::seed::{self, PredictRequest, Prediction, SeedInput};
use crate::tensor::Tensor;

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

/// Every model is loaded and passed its sample before the server listens, so a server that
/// answers is ready, until shutdown begins or a model stops.
pub async fn health(State(registry): State<AppState>) -> (StatusCode, Json<Health>) {
    health_of(&registry, registry.is_ready())
}

pub async fn model_health(
    State(registry): State<AppState>,
    SelectedModel(model): SelectedModel,
) -> (StatusCode, Json<Health>) {
    health_of(&registry, registry.is_model_ready(&model))
}

fn health_of(registry: &AppState, ready: bool) -> (StatusCode, Json<Health>) {
    let status = match (ready, registry.is_serving()) {
        (true, _) => return (StatusCode::OK, Json(Health { status: "ok" })),
        (false, true) => "a model has stopped",
        (false, false) => "shutting down",
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status }))
}

#[derive(Serialize)]
pub struct ModelSummary<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    models: Vec<ModelSummary<'a>>,
}

pub async fn list_models(State(registry): State<AppState>) -> Response {
    let models = registry
        .models()
        .iter()
        .map(|m| ModelSummary {
            name: m.name(),
            version: &m.bundle().config.version,
        })
        .collect();
    Json(ModelList { models }).into_response()
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    inputs: &'a [TensorSpec],
    outputs: &'a [TensorSpec],
    prediction: &'a str,
    labels: &'a [String],
}

pub(super) async fn metadata(SelectedModel(model): SelectedModel) -> Response {
    let bundle = model.bundle();
    let BundleConfig {
        name,
        version,
        description,
        outputs,
        labels,
        ..
    } = &bundle.config;
    Json(Metadata {
        name,
        version,
        description,
        inputs: &bundle.public_inputs,
        outputs,
        prediction: &bundle.prediction_spec().name,
        labels,
    })
    .into_response()
}

#[derive(Serialize)]
struct Labels<'a> {
    labels: &'a [String],
}

pub(super) async fn labels(SelectedModel(model): SelectedModel) -> Response {
    let labels = &model.bundle().config.labels;
    Json(Labels { labels }).into_response()
}

pub(super) async fn predict(
    SelectedModel(model): SelectedModel,
    PredictBody(input): PredictBody,
) -> Result<Json<Prediction<Tensor>>, ApiError> {
    let prediction = seed::predict(&model, input).await?;
    Ok(Json(Prediction { prediction }))
}

pub(super) async fn predict_label(
    SelectedModel(model): SelectedModel,
    PredictBody(input): PredictBody,
) -> Result<Json<Prediction<Vec<Option<String>>>>, ApiError> {
    let prediction = seed::predict_labels(&model, input).await?;
    Ok(Json(Prediction { prediction }))
}

pub(super) async fn predict_test(
    SelectedModel(model): SelectedModel,
) -> Result<Json<Prediction<Tensor>>, ApiError> {
    let prediction = seed::predict(&model, SeedInput::Sample).await?;
    Ok(Json(Prediction { prediction }))
}

pub(super) async fn predict_test_label(
    SelectedModel(model): SelectedModel,
) -> Result<Json<Prediction<Vec<Option<String>>>>, ApiError> {
    let prediction = seed::predict_labels(&model, SeedInput::Sample).await?;
    Ok(Json(Prediction { prediction }))
}

/// The body of `/predict` and `/predict/label`: JSON (`{"data": ...}`), or one encoded image
/// when the request says `Content-Type: image/...`.
pub(super) struct PredictBody(SeedInput);

impl<S: Send + Sync> FromRequest<S> for PredictBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_image = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .get(..6)
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("image/"))
            });
        if is_image {
            let bytes = axum::body::Bytes::from_request(request, state).await?;
            return Ok(PredictBody(SeedInput::Image(bytes)));
        }
        let ApiJson(PredictRequest { data }) = ApiJson::from_request(request, state).await?;
        Ok(PredictBody(SeedInput::Json(data)))
    }
}
