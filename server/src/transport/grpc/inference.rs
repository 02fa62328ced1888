//! The inference service: each method translates between its messages and the protocol's
//! request path ([`crate::protocol::v2::infer`]), inside the call's observation. Tensors arrive as
//! `raw_input_contents` or typed `contents`; outputs always go back as `raw_output_contents`, as
//! Triton sends them.

use std::future::Future;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::*;
use super::{code_name, status};
use crate::metrics::RouteLabels;
use crate::protocol::v2::infer::{self, InferRequest, InputData, InputRequest, Placement};
use crate::protocol::v2::{self as oip, cuda_shared_memory, Parameter, Parameters, TypedContents};
use crate::request_context::{choose_request_id, REQUEST_ID, TRACEPARENT};
use crate::serving::decoding::decode_sized;
use crate::serving::error::{ErrorKind, ServeError};
use crate::serving::Registry;
use crate::transport::observe::Observation;
use crate::transport::timed_answer::TIMER;
use crate::transport::COMPRESS_ABOVE_BYTES;

pub struct InferenceService {
    pub(super) registry: Arc<Registry>,
}

/// A call as the service sees it: its metadata, and its method as the table of calls names it
/// (the gate found its route; a call made without the gate, as a unit test makes one, is
/// "unknown"), so that no second list of method names labels the metrics.
struct Call {
    metadata: MetadataMap,
    method: &'static str,
}

/// The method the gate found, in a call's extensions.
#[derive(Clone, Copy)]
pub(super) struct CalledMethod(pub(super) &'static str);

impl Call {
    /// `request`'s call and its message.
    fn of<T>(request: Request<T>) -> (Call, T) {
        let (metadata, extensions, message) = request.into_parts();
        let method = extensions
            .get::<CalledMethod>()
            .map_or("unknown", |called| called.0);
        (Call { metadata, method }, message)
    }
}

impl InferenceService {
    /// Runs one call inside a span that carries its request id (the request's own `id`, else the
    /// caller's `x-request-id` metadata, else generated) and trace id; then logs it, counts it,
    /// and returns the request id and the trace context in the answer's metadata.
    async fn observed<T: prost::Message>(
        &self,
        call: &Call,
        model: &str,
        own_id: &str,
        answer: impl Future<Output = Result<T, ServeError>>,
    ) -> Result<Response<T>, Status> {
        let text = |key: &str| call.metadata.get(key).and_then(|value| value.to_str().ok());
        let request_id = choose_request_id(Some(own_id), text(REQUEST_ID));
        let labels = RouteLabels {
            model: self.registry.model_label(model),
            protocol: "grpc",
            endpoint: call.method.to_string(),
        };
        // A call its client cancels is dropped before its answer: counted as CANCELLED.
        let observation = Observation::start(
            &self.registry,
            "gRPC",
            labels,
            Some(&request_id),
            text(TRACEPARENT),
            "CANCELLED",
        );
        let result = answer
            .instrument(observation.span().clone())
            .await
            .map_err(|error| {
                if let Some(detail) = error.internal_detail() {
                    observation.internal_error(detail);
                }
                status(&error)
            });
        let code = result.as_ref().err().map_or(Code::Ok, Status::code);
        let traceparent = observation.answer_traceparent();
        let timer = observation.answered(code_name(code));
        // The gate ends the duration with the answer's body; outside a gate (a unit test), now.
        let _ = TIMER.try_with(|slot| slot.put(timer));
        let mut answer = result.map(|message| {
            let small = message.encoded_len() < COMPRESS_ABOVE_BYTES;
            let mut response = Response::new(message);
            if small {
                response.disable_compression();
            }
            response
        });
        let answer_metadata = match &mut answer {
            Ok(response) => response.metadata_mut(),
            Err(status) => status.metadata_mut(),
        };
        put(answer_metadata, REQUEST_ID, &request_id);
        if let Some(traceparent) = traceparent {
            put(answer_metadata, TRACEPARENT, &traceparent);
        }
        answer
    }
}

/// `value` under `key`, when it is valid metadata (the ids and trace contexts written here are).
fn put(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    if let Ok(value) = value.parse::<MetadataValue<Ascii>>() {
        metadata.insert(key, value);
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        let (call, _) = Call::of(request);
        let live = async { Ok(ServerLiveResponse { live: true }) };
        self.observed(&call, "", "", live).await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let (call, _) = Call::of(request);
        let ready = async {
            Ok(ServerReadyResponse {
                ready: self.registry.is_ready(),
            })
        };
        self.observed(&call, "", "", ready).await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let (call, request) = Call::of(request);
        let ready = async {
            let model = oip::find_model(&self.registry, &request.name, Some(&request.version))?;
            Ok(ModelReadyResponse {
                ready: self.registry.is_model_ready(&model),
            })
        };
        self.observed(&call, &request.name, "", ready).await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let (call, _) = Call::of(request);
        let describe = async { message(&oip::server_metadata(&self.registry)) };
        self.observed(&call, "", "", describe).await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let (call, request) = Call::of(request);
        let describe = async {
            let model = oip::find_model(&self.registry, &request.name, Some(&request.version))?;
            message(&oip::model_metadata(&model))
        };
        self.observed(&call, &request.name, "", describe).await
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let (call, request) = Call::of(request);
        let describe = async {
            let model = oip::find_model(&self.registry, &request.name, Some(&request.version))?;
            Ok(ModelConfigResponse {
                config: Some(message(&oip::model_config(&model))?),
            })
        };
        self.observed(&call, &request.name, "", describe).await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (call, request) = Call::of(request);
        let (model, id) = (request.model_name.clone(), request.id.clone());
        let answer = self.within_deadline(self.infer(request));
        self.observed(&call, &model, &id, answer).await
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let (call, request) = Call::of(request);
        let report = async {
            let models = oip::statistics(&self.registry, &request.name, Some(&request.version))?;
            Ok(ModelStatisticsResponse {
                model_stats: models
                    .iter()
                    .map(|model| message(&oip::model_statistics(model)))
                    .collect::<Result<_, _>>()?,
            })
        };
        self.observed(&call, &request.name, "", report).await
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let (call, request) = Call::of(request);
        let index = async {
            Ok(RepositoryIndexResponse {
                models: message(&oip::repository_index(&self.registry, request.ready))?,
            })
        };
        self.observed(&call, "", "", index).await
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let (call, request) = Call::of(request);
        let refused = async { Err(oip::refuse_load("load", &request.model_name)) };
        self.observed(&call, "", "", refused).await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let (call, request) = Call::of(request);
        let refused = async { Err(oip::refuse_load("unload", &request.model_name)) };
        self.observed(&call, "", "", refused).await
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<SystemSharedMemoryStatusResponse>, Status> {
        let (call, request) = Call::of(request);
        let status = async {
            let name = Some(request.name.as_str()).filter(|name| !name.is_empty());
            let regions = self.registry.shared_memory().status(name)?;
            Ok(SystemSharedMemoryStatusResponse {
                regions: regions
                    .into_iter()
                    .map(|region| {
                        let status = system_shared_memory_status_response::RegionStatus {
                            name: region.name.clone(),
                            key: region.key,
                            offset: region.offset,
                            byte_size: region.byte_size,
                        };
                        (region.name, status)
                    })
                    .collect(),
            })
        };
        self.observed(&call, "", "", status).await
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<SystemSharedMemoryRegisterResponse>, Status> {
        let (call, request) = Call::of(request);
        let registered = async {
            self.registry.shared_memory().register(
                &request.name,
                &request.key,
                request.offset,
                request.byte_size,
            )?;
            Ok(SystemSharedMemoryRegisterResponse {})
        };
        self.observed(&call, "", "", registered).await
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<SystemSharedMemoryUnregisterResponse>, Status> {
        let (call, request) = Call::of(request);
        let unregistered = async {
            let name = Some(request.name.as_str()).filter(|name| !name.is_empty());
            self.registry.shared_memory().unregister(name)?;
            Ok(SystemSharedMemoryUnregisterResponse {})
        };
        self.observed(&call, "", "", unregistered).await
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<CudaSharedMemoryStatusResponse>, Status> {
        let (call, request) = Call::of(request);
        let status = async {
            let name = Some(request.name.as_str()).filter(|name| !name.is_empty());
            cuda_shared_memory::status(name)?;
            Ok(CudaSharedMemoryStatusResponse::default())
        };
        self.observed(&call, "", "", status).await
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<CudaSharedMemoryRegisterResponse>, Status> {
        let (call, request) = Call::of(request);
        let refused = async { Err(cuda_shared_memory::refuse_register(&request.name)) };
        self.observed(&call, "", "", refused).await
    }

    /// None is registered: there is nothing to do.
    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<CudaSharedMemoryUnregisterResponse>, Status> {
        let (call, _) = Call::of(request);
        let done = async { Ok(CudaSharedMemoryUnregisterResponse {}) };
        self.observed(&call, "", "", done).await
    }

    type ModelStreamInferStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>,
    >;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (call, mut incoming) = Call::of(request);
        let caller_id = call
            .metadata
            .get(REQUEST_ID)
            .and_then(|id| id.to_str().ok());
        let caller_id = caller_id.map(str::to_string);
        let service = InferenceService {
            registry: self.registry.clone(),
        };
        // One request at a time, in order; the answers wait in a small buffer for the client.
        let (answers, stream) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let request = match incoming.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = answers.send(Err(status)).await;
                        break;
                    }
                };
                let answer = service.stream_message(&call, request).await;
                if answers.send(Ok(answer)).await.is_err() {
                    break; // the client went away
                }
            }
        });
        let mut response = Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            stream,
        )) as Self::ModelStreamInferStream);
        // Each message is observed as a call of its own: the stream's id says the gate need not.
        let request_id = choose_request_id(None, caller_id.as_deref());
        put(response.metadata_mut(), REQUEST_ID, &request_id);
        Ok(response)
    }
}

impl InferenceService {
    /// One message of a stream: admitted, run and observed as a ModelInfer call; an error goes in
    /// the answer's error_message, and the stream goes on.
    async fn stream_message(
        &self,
        call: &Call,
        request: ModelInferRequest,
    ) -> ModelStreamInferResponse {
        let (model, id) = (request.model_name.clone(), request.id.clone());
        let answer = async {
            let Some(_place) = self.registry.admit() else {
                return Err(ServeError::unavailable(
                    self.registry.limits().shed_message(),
                ));
            };
            self.within_deadline(self.infer(request)).await
        };
        match self.observed(call, &model, &id, answer).await {
            Ok(answer) => ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(answer.into_inner()),
            },
            Err(status) => ModelStreamInferResponse {
                error_message: status.message().to_string(),
                infer_response: None,
            },
        }
    }
}

impl InferenceService {
    /// An inference call, abandoned after `request_timeout` as over REST (its place among the
    /// requests in flight was taken by the gate, before decoding).
    async fn within_deadline<T>(
        &self,
        call: impl Future<Output = Result<T, ServeError>>,
    ) -> Result<T, ServeError> {
        let limits = self.registry.limits();
        tokio::time::timeout(limits.request_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(ServeError::new(
                    ErrorKind::DeadlineExceeded,
                    limits.timeout_message(),
                ))
            })
    }

    /// A ModelInfer message as the protocol's request, its tensor data taken out of it.
    pub(crate) fn decode_request(
        request: &mut ModelInferRequest,
    ) -> Result<InferRequest, ServeError> {
        if request.parameters.len() > oip::MAX_PARAMETERS {
            return Err(oip::too_many_parameters("the request"));
        }
        let mut raw = std::mem::take(&mut request.raw_input_contents);
        let given = raw.len();
        // One raw entry per input, in order (empty for one whose data is elsewhere), or, as
        // Triton reads them and tritonclient sends them with shared memory, one per input that
        // has neither typed contents nor shared memory, in order.
        let positional = raw.len() == request.inputs.len();
        let mut next_raw = 0;
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (index, input) in request.inputs.iter_mut().enumerate() {
            let owner = || format!("input '{}'", crate::text::clip(&input.name));
            if input.parameters.len() > oip::MAX_PARAMETERS {
                return Err(oip::too_many_parameters(&owner()));
            }
            // The owner's name is only written for an input with parameters (a message's).
            let shared_memory = match input.parameters.is_empty() {
                true => None,
                false => input.parameters.shared_memory_span(&owner())?,
            };
            let contents = input.contents.take();
            let raw_index = if positional {
                Some(index).filter(|&index| !(shared_memory.is_some() && raw[index].is_empty()))
            } else if contents.is_none() && shared_memory.is_none() {
                next_raw += 1;
                Some(next_raw - 1).filter(|&index| index < raw.len())
            } else {
                None
            };
            let raw = raw_index.map(|index| InputData::Raw(std::mem::take(&mut raw[index]).into()));
            let typed = contents.map(|contents| InputData::Typed(typed(contents)));
            let places = ["contents", "raw_input_contents"];
            let data = InputData::placed(owner, [typed, raw], shared_memory, places)?;
            inputs.push(InputRequest {
                name: std::mem::take(&mut input.name),
                datatype: std::mem::take(&mut input.datatype),
                shape: std::mem::take(&mut input.shape),
                data,
            });
        }
        if !positional && next_raw < given {
            return Err(ServeError::invalid(format!(
                "raw_input_contents has {given} entries for {} inputs; give one per input, in the order of inputs",
                request.inputs.len()
            )));
        }
        let mut outputs = Vec::with_capacity(request.outputs.len());
        for output in &mut request.outputs {
            let owner = format!("output '{}'", crate::text::clip(&output.name));
            let parameters = &output.parameters;
            if parameters.len() > oip::MAX_PARAMETERS {
                return Err(oip::too_many_parameters(&owner));
            }
            outputs.push(oip::RequestedOutput {
                shared_memory: parameters.shared_memory_span(&owner)?,
                classification: parameters.read("classification", &owner, "a class count")?,
                name: std::mem::take(&mut output.name),
                binary: None,
            });
        }
        Ok(InferRequest {
            id: Some(std::mem::take(&mut request.id)),
            inputs,
            outputs,
            binary_default: true,
        })
    }

    async fn infer(
        &self,
        mut request: ModelInferRequest,
    ) -> Result<ModelInferResponse, ServeError> {
        let model = oip::find_model(
            &self.registry,
            &request.model_name,
            Some(&request.model_version),
        )?;
        // Its tensors decoded and checked off the reactor when it is large, as REST's bodies are.
        let (registry, validating) = (self.registry.clone(), model.clone());
        let valid = decode_sized(tensor_bytes(&request), move || {
            let request = Self::decode_request(&mut request)?;
            infer::validate(&registry, validating.bundle(), request)
        })
        .await?;
        let answer = infer::answer(&self.registry, &model, valid).await?;
        let mut outputs = Vec::with_capacity(answer.outputs.len());
        let mut raw_output_contents = Vec::with_capacity(answer.outputs.len());
        for output in answer.outputs {
            let tensor = &output.tensor;
            outputs.push(InferOutputTensor {
                name: output.name.to_string(),
                datatype: tensor.dtype().v2_name().to_string(),
                shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            });
            // An output in shared memory keeps its place with an empty entry, as Triton's does.
            let mut bytes = Vec::new();
            if output.placement != Placement::SharedMemory {
                tensor.data().write_le_bytes(&mut bytes);
            }
            raw_output_contents.push(bytes);
        }
        Ok(ModelInferResponse {
            model_name: answer.model_name.to_string(),
            model_version: answer.model_version.to_string(),
            id: answer.id.unwrap_or_default(),
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        })
    }
}

/// About what decoding `request`'s tensors comes to, in bytes, from its lists' lengths alone (not
/// `encoded_len`, which would walk every value on the reactor): its raw contents, and 8 bytes a
/// typed value.
fn tensor_bytes(request: &ModelInferRequest) -> usize {
    let typed: usize = request
        .inputs
        .iter()
        .filter_map(|input| input.contents.as_ref())
        .map(|contents| {
            contents.bool_contents.len()
                + contents.int_contents.len()
                + contents.int64_contents.len()
                + contents.uint_contents.len()
                + contents.uint64_contents.len()
                + contents.fp32_contents.len()
                + contents.fp64_contents.len()
                + contents.bytes_contents.len()
        })
        .sum();
    let raw: usize = request.raw_input_contents.iter().map(|raw| raw.len()).sum();
    raw + 8 * typed
}

/// The typed contents of a message, moved into the protocol's form.
fn typed(contents: InferTensorContents) -> TypedContents {
    TypedContents {
        bool_contents: contents.bool_contents,
        int_contents: contents.int_contents,
        int64_contents: contents.int64_contents,
        uint_contents: contents.uint_contents,
        uint64_contents: contents.uint64_contents,
        fp32_contents: contents.fp32_contents,
        fp64_contents: contents.fp64_contents,
        bytes_contents: contents.bytes_contents,
    }
}

/// gRPC's parameters: `InferParameter`s.
impl Parameters for std::collections::HashMap<String, InferParameter> {
    fn parameter(&self, key: &str) -> Option<Parameter<'_>> {
        Some(match self.get(key)?.parameter_choice.as_ref()? {
            ParameterChoice::BoolParam(flag) => Parameter::Bool(*flag),
            ParameterChoice::Int64Param(signed) => Parameter::Int(*signed),
            ParameterChoice::Uint64Param(count) => Parameter::Uint(*count),
            ParameterChoice::DoubleParam(number) => Parameter::Double(*number),
            ParameterChoice::StringParam(text) => Parameter::Text(text),
        })
    }
}

/// A description or report as its gRPC message, read from the JSON that REST answers with (the
/// messages that read it are listed in build.rs): one mapping, so that both transports say the
/// same.
fn message<M: serde::de::DeserializeOwned>(
    answer: &impl serde::Serialize,
) -> Result<M, ServeError> {
    serde_json::to_value(answer)
        .and_then(serde_json::from_value)
        .map_err(|error| ServeError::internal(format!("an answer has no gRPC message: {error}")))
}

/// A model configuration's datatype, from its name in the JSON (`TYPE_FP32`).
pub(super) fn data_type<'de, D: serde::Deserializer<'de>>(name: D) -> Result<i32, D::Error> {
    let name: std::borrow::Cow<str> = serde::Deserialize::deserialize(name)?;
    DataType::from_str_name(&name)
        .map(|known| known as i32)
        .ok_or_else(|| serde::de::Error::unknown_variant(&name, &[]))
}

/// An instance group's kind, from its name in the JSON (`KIND_CPU`).
pub(super) fn instance_kind<'de, D: serde::Deserializer<'de>>(name: D) -> Result<i32, D::Error> {
    let name: std::borrow::Cow<str> = serde::Deserialize::deserialize(name)?;
    model_instance_group::Kind::from_str_name(&name)
        .map(|known| known as i32)
        .ok_or_else(|| serde::de::Error::unknown_variant(&name, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_becomes_its_message_with_tritons_enums_and_batching() {
        let tensor = |name, data_type: &str, reshape| oip::ConfigTensor {
            name,
            data_type: data_type.to_string(),
            dims: vec![4],
            reshape,
        };
        let config = oip::ModelConfig {
            name: "m",
            platform: oip::PLATFORM,
            backend: oip::BACKEND,
            max_batch_size: 8,
            input: vec![tensor("x", "TYPE_FP32", None)],
            output: vec![tensor("y", "TYPE_STRING", Some(oip::Reshape { shape: [] }))],
            instance_group: [oip::InstanceGroup {
                name: "m",
                kind: "KIND_CPU",
                count: 2,
            }],
            dynamic_batching: Some(oip::DynamicBatching {
                max_queue_delay_microseconds: 500,
            }),
        };
        let message: ModelConfig = message(&config).unwrap();
        assert_eq!((message.name.as_str(), message.max_batch_size), ("m", 8));
        assert_eq!(message.input[0].data_type, DataType::TypeFp32 as i32);
        assert_eq!(message.input[0].dims, [4]);
        assert_eq!(message.input[0].reshape, None);
        assert_eq!(message.output[0].data_type, DataType::TypeString as i32);
        assert_eq!(
            message.output[0].reshape,
            Some(ModelTensorReshape::default())
        );
        let group = &message.instance_group[0];
        assert_eq!(group.kind, model_instance_group::Kind::Cpu as i32);
        assert_eq!(group.count, 2);
        let Some(model_config::SchedulingChoice::DynamicBatching(batching)) =
            message.scheduling_choice
        else {
            panic!("no dynamic batching in {message:?}");
        };
        assert_eq!(batching.max_queue_delay_microseconds, 500);
        let unbatched = oip::ModelConfig {
            dynamic_batching: None,
            ..config
        };
        let message: ModelConfig = super::message(&unbatched).unwrap();
        assert_eq!(message.scheduling_choice, None);
        let unknown = oip::ModelConfig {
            input: vec![tensor("x", "TYPE_NOTHING", None)],
            ..unbatched
        };
        assert!(super::message::<ModelConfig>(&unknown).is_err());
    }

    #[tokio::test]
    async fn readiness_turns_false_as_soon_as_shutdown_begins() {
        let registry = Registry::without_models();
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
