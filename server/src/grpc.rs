//! The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`, on its own port,
//! running the same models as the REST routes. Tensors arrive as `raw_input_contents` or typed
//! `contents`; outputs always go back as `raw_output_contents`, as Triton sends them.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::model::PredictError;
use crate::oip::{self, InferError, RequestInputs};
use crate::registry::Registry;
use crate::tensor::{DType, TensorData};

#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::*;

pub struct InferenceService {
    registry: Arc<Registry>,
}

/// Serves the gRPC service on `listener` until `shutdown` completes, then lets calls in flight
/// finish. Messages may be as large as `max_message_bytes`, the REST body limit.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = GrpcInferenceServiceServer::new(InferenceService { registry })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

fn status(error: InferError) -> Status {
    match error {
        InferError::NotFound(message) => Status::not_found(message),
        InferError::Predict(error) => match error {
            PredictError::InvalidInput(_) | PredictError::NoLabels(_) => {
                Status::invalid_argument(error.to_string())
            }
            PredictError::Overloaded { .. } | PredictError::Unavailable(_) => {
                Status::unavailable(error.to_string())
            }
            PredictError::Runtime(_) | PredictError::LabelOutOfRange { .. } => {
                tracing::error!(%error, "prediction failed");
                Status::internal("the model failed to run; the server log has the details")
            }
        },
    }
}

fn invalid(message: String) -> Status {
    status(InferError::Predict(PredictError::InvalidInput(message)))
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.registry.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        oip::find_model(&self.registry, &request.name, Some(&request.version)).map_err(status)?;
        Ok(Response::new(ModelReadyResponse {
            ready: self.registry.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: oip::SERVER_NAME.to_string(),
            version: oip::SERVER_VERSION.to_string(),
            extensions: oip::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = oip::find_model(&self.registry, &request.name, Some(&request.version))
            .map_err(status)?;
        let metadata = oip::model_metadata(&model);
        let describe = |tensors: Vec<oip::TensorMetadata>| {
            tensors
                .into_iter()
                .map(|t| TensorMetadata {
                    name: t.name.to_string(),
                    datatype: t.datatype.to_string(),
                    shape: t.shape.to_vec(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name.to_string(),
            versions: metadata.versions.map(str::to_string).to_vec(),
            platform: metadata.platform.to_string(),
            inputs: describe(metadata.inputs),
            outputs: describe(metadata.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        let model = oip::find_model(
            &self.registry,
            &request.model_name,
            Some(&request.model_version),
        )
        .map_err(status)?;
        let raw = &request.raw_input_contents;
        if !raw.is_empty() && raw.len() != request.inputs.len() {
            return Err(invalid(format!(
                "raw_input_contents has {} entries for {} inputs; give one per input, in the order of inputs",
                raw.len(),
                request.inputs.len()
            )));
        }
        let mut inputs = RequestInputs::new(&model);
        for (index, input) in request.inputs.iter().enumerate() {
            let slot = inputs
                .slot(&input.name, &input.datatype, &input.shape)
                .map_err(status)?;
            let data = match (raw.get(index), &input.contents) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "input '{}' has both contents and raw_input_contents; send one",
                        input.name
                    )))
                }
                (Some(bytes), None) => inputs.decode_raw(&slot, bytes).map_err(status)?,
                (None, Some(contents)) => typed_contents(contents, slot.dtype)
                    .map_err(|problem| invalid(format!("input '{}': {problem}", input.name)))?,
                (None, None) => {
                    return Err(invalid(format!(
                        "input '{}' has no data: give its contents or raw_input_contents",
                        input.name
                    )))
                }
            };
            inputs.fill(slot, data).map_err(status)?;
        }
        let requested = request.outputs.iter().map(|o| (o.name.as_str(), None));
        let chosen = oip::choose_outputs(&model, requested, true).map_err(status)?;
        let tensors = model
            .infer(inputs.finish().map_err(status)?)
            .await
            .map_err(|error| status(error.into()))?;
        let specs = &model.bundle().config.outputs;
        let mut outputs = Vec::with_capacity(chosen.len());
        let mut raw_output_contents = Vec::with_capacity(chosen.len());
        for choice in chosen {
            let tensor = &tensors[choice.index];
            outputs.push(InferOutputTensor {
                name: specs[choice.index].name.clone(),
                datatype: tensor.dtype().v2_name().to_string(),
                shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            });
            let mut bytes = Vec::new();
            tensor.data().write_le_bytes(&mut bytes);
            raw_output_contents.push(bytes);
        }
        Ok(Response::new(ModelInferResponse {
            model_name: model.name().to_string(),
            model_version: model.bundle().config.version.clone(),
            id: request.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        }))
    }
}

/// Typed contents in the field the protocol gives `dtype` (INT8 to INT32 share `int_contents`,
/// each value checked against the narrower type).
fn typed_contents(contents: &InferTensorContents, dtype: DType) -> Result<TensorData, String> {
    fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
        values: &[W],
        dtype: DType,
    ) -> Result<Vec<T>, String> {
        values
            .iter()
            .enumerate()
            .map(|(index, &value)| {
                T::try_from(value)
                    .map_err(|_| format!("value {value} at [{index}] is out of range for {dtype}"))
            })
            .collect()
    }
    let c = contents;
    let (data, field) =
        match dtype {
            DType::Float16 => return Err(
                "FP16 values go in raw_input_contents: the protocol has no typed field for them"
                    .to_string(),
            ),
            DType::Bool => (TensorData::Bool(c.bool_contents.clone()), "bool_contents"),
            DType::Int8 => (
                TensorData::Int8(narrow(&c.int_contents, dtype)?),
                "int_contents",
            ),
            DType::Int16 => (
                TensorData::Int16(narrow(&c.int_contents, dtype)?),
                "int_contents",
            ),
            DType::Int32 => (TensorData::Int32(c.int_contents.clone()), "int_contents"),
            DType::Int64 => (
                TensorData::Int64(c.int64_contents.clone()),
                "int64_contents",
            ),
            DType::Uint8 => (
                TensorData::Uint8(narrow(&c.uint_contents, dtype)?),
                "uint_contents",
            ),
            DType::Uint16 => (
                TensorData::Uint16(narrow(&c.uint_contents, dtype)?),
                "uint_contents",
            ),
            DType::Uint32 => (TensorData::Uint32(c.uint_contents.clone()), "uint_contents"),
            DType::Uint64 => (
                TensorData::Uint64(c.uint64_contents.clone()),
                "uint64_contents",
            ),
            DType::Float32 => (
                TensorData::Float32(c.fp32_contents.clone()),
                "fp32_contents",
            ),
            DType::Float64 => (
                TensorData::Float64(c.fp64_contents.clone()),
                "fp64_contents",
            ),
        };
    if data.is_empty() {
        return Err(format!(
            "{} values go in contents.{field}, which is empty",
            dtype.v2_name()
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_turns_false_as_soon_as_shutdown_begins() {
        let registry = Arc::new(Registry::new(Vec::new()));
        let service = InferenceService {
            registry: registry.clone(),
        };
        let ready = || async {
            let request = Request::new(ServerReadyRequest {});
            service
                .server_ready(request)
                .await
                .unwrap()
                .into_inner()
                .ready
        };
        assert!(ready().await);
        registry.begin_shutdown();
        assert!(!ready().await);
    }
}
