//! The Open Inference Protocol v2 over REST (KServe v2), with Triton's binary tensor data
//! extension: inputs and outputs may travel as raw bytes after the JSON header of the body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{observe, path_param, path_params, ApiError, AppState, RequestId};
use crate::bundle::Bundle;
use crate::model::Model;
use crate::protocol::v2::infer::{
    self, Answer, InferRequest, InputData, InputRequest, Placement, ValidRequest,
};
use crate::protocol::v2::{self as oip, cuda_shared_memory, Parameter, Parameters};
use crate::request_context::choose_request_id;
use crate::serving::decoding::decode_sized;
use crate::serving::Registry;
use crate::tensor::Flat;

/// The header giving the length of the JSON part of a body that carries binary tensors.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The model named by the `{model}` (and optional `{version}`) path segments.
pub(super) struct V2Model(Arc<Model>);

impl FromRequestParts<AppState> for V2Model {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let name = path_param(&params, "model").unwrap_or("");
        let version = path_param(&params, "version");
        Ok(V2Model(oip::find_model(state, name, version)?))
    }
}

/// Health answers say it twice: the status (200 true, 400 false, as the protocol says; tritonclient
/// reads only that) and a JSON body (`{"live": true}`, `{"ready": false}`, which KServe's SDK
/// parses).
fn health(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(body)).into_response()
}

pub(super) async fn live() -> Response {
    health(true, serde_json::json!({"live": true}))
}

pub(super) async fn ready(State(registry): State<AppState>) -> Response {
    let ready = registry.is_ready();
    health(ready, serde_json::json!({"ready": ready}))
}

pub(super) async fn model_ready(
    State(registry): State<AppState>,
    V2Model(model): V2Model,
) -> Response {
    let ready = registry.is_model_ready(&model);
    health(
        ready,
        serde_json::json!({"name": model.name(), "ready": ready}),
    )
}

pub(super) async fn server_metadata(State(registry): State<AppState>) -> Json<oip::ServerMetadata> {
    Json(oip::server_metadata(&registry))
}

/// `GET /v2/models/stats`: every model's statistics.
pub(super) async fn all_statistics(State(registry): State<AppState>) -> Response {
    let models = registry.models();
    let model_stats: Vec<_> = models.iter().map(|m| oip::model_statistics(m)).collect();
    Json(serde_json::json!({ "model_stats": model_stats })).into_response()
}

pub(super) async fn model_statistics(V2Model(model): V2Model) -> Response {
    Json(serde_json::json!({ "model_stats": [oip::model_statistics(&model)] })).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// `POST /v2/repository/index` (the body, `{"ready": true}`, is optional).
pub(super) async fn repository_index(State(registry): State<AppState>, body: Bytes) -> Response {
    let request: IndexRequest = serde_json::from_slice(&body).unwrap_or_default();
    Json(oip::repository_index(&registry, request.ready)).into_response()
}

pub(super) async fn repository_load(
    axum::extract::Path(name): axum::extract::Path<String>,
) -> ApiError {
    oip::refuse_load("load", &name).into()
}

pub(super) async fn repository_unload(
    axum::extract::Path(name): axum::extract::Path<String>,
) -> ApiError {
    oip::refuse_load("unload", &name).into()
}

/// The body of `POST /v2/systemsharedmemory/region/{region}/register`, as Triton reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRegion {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

type RegionName = axum::extract::Path<String>;

pub(super) async fn shared_memory_status_all(State(registry): State<AppState>) -> Response {
    match registry.shared_memory().status(None) {
        Ok(status) => Json(status).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub(super) async fn shared_memory_status(
    State(registry): State<AppState>,
    axum::extract::Path(region): RegionName,
) -> Response {
    match registry.shared_memory().status(Some(&region)) {
        Ok(status) => Json(status).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub(super) async fn shared_memory_register(
    State(registry): State<AppState>,
    axum::extract::Path(region): RegionName,
    body: Bytes,
) -> Response {
    let request: RegisterRegion = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return bad_request(format!(
                "the body is not a shared memory registration ({{\"key\": ..., \"offset\": ..., \"byte_size\": ...}}): {}",
                crate::text::clip_message(&error.to_string())
            ))
            .into_response()
        }
    };
    let registered =
        registry
            .shared_memory()
            .register(&region, &request.key, request.offset, request.byte_size);
    done(registered)
}

pub(super) async fn shared_memory_unregister_all(State(registry): State<AppState>) -> Response {
    done(registry.shared_memory().unregister(None))
}

pub(super) async fn shared_memory_unregister(
    State(registry): State<AppState>,
    axum::extract::Path(region): RegionName,
) -> Response {
    done(registry.shared_memory().unregister(Some(&region)))
}

/// `GET /v2/cudasharedmemory/status`: no CUDA region is ever registered.
pub(super) async fn cuda_shared_memory_status_all() -> Response {
    Json(serde_json::json!([])).into_response()
}

pub(super) async fn cuda_shared_memory_status(axum::extract::Path(region): RegionName) -> Response {
    match cuda_shared_memory::status(Some(&region)) {
        Ok(()) => Json(serde_json::json!([])).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub(super) async fn cuda_shared_memory_register(
    axum::extract::Path(region): RegionName,
) -> ApiError {
    cuda_shared_memory::refuse_register(&region).into()
}

/// Unregistering one CUDA region, or all: none is registered, so there is nothing to do.
pub(super) async fn cuda_shared_memory_unregister() -> Response {
    done(Ok(()))
}

/// 200 with an empty JSON object, or the error.
fn done(result: Result<(), crate::serving::error::ServeError>) -> Response {
    match result {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub(super) async fn model_config(V2Model(model): V2Model) -> Response {
    Json(oip::model_config(&model)).into_response()
}

pub(super) async fn model_metadata(V2Model(model): V2Model) -> Response {
    Json(oip::model_metadata(&model)).into_response()
}

/// The JSON of an inference request, as REST sends it. Its lists are capped while they are read
/// ([`Capped`]), as are its parameter maps ([`JsonParameters`]): beside its tensors' data (kept
/// as text, decoded once), a body decodes to at most its own texts and a structure of a few MiB,
/// however many empty entries it holds.
#[derive(Deserialize)]
struct WireRequest {
    id: Option<String>,
    parameters: Option<JsonParameters>,
    inputs: Capped<RequestInput, Tensors>,
    outputs: Option<Capped<RequestOutput, Tensors>>,
}

#[derive(Deserialize)]
struct RequestInput {
    name: String,
    shape: Capped<i64, Dimensions>,
    datatype: String,
    parameters: Option<JsonParameters>,
    /// Kept as text and decoded straight into the tensor once its datatype and shape are known.
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RequestOutput {
    name: String,
    parameters: Option<JsonParameters>,
}

/// A JSON list of at most `C::MAX` entries, refused at the next one while it is read.
struct Capped<T, C>(Vec<T>, std::marker::PhantomData<C>);

/// A cap on a list: its length, and what its entries are.
trait Cap {
    const MAX: usize;
    const WHAT: &'static str;
}

/// A request's inputs or outputs.
struct Tensors;

impl Cap for Tensors {
    const MAX: usize = oip::MAX_TENSORS;
    const WHAT: &'static str = "inputs or outputs in one request";
}

/// A shape's dimensions.
struct Dimensions;

impl Cap for Dimensions {
    const MAX: usize = oip::MAX_RANK;
    const WHAT: &'static str = "dimensions in a shape";
}

impl<'de, T: Deserialize<'de>, C: Cap> Deserialize<'de> for Capped<T, C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T, C>(std::marker::PhantomData<(T, C)>);
        impl<'de, T: Deserialize<'de>, C: Cap> serde::de::Visitor<'de> for Entries<T, C> {
            type Value = Capped<T, C>;
            fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(out, "a list of at most {} {}", C::MAX, C::WHAT)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut entries: A,
            ) -> Result<Capped<T, C>, A::Error> {
                use serde::de::Error;
                let mut list = Vec::new();
                while let Some(entry) = entries.next_element()? {
                    if list.len() == C::MAX {
                        return Err(A::Error::custom(format_args!(
                            "more than {} {}",
                            C::MAX,
                            C::WHAT
                        )));
                    }
                    list.push(entry);
                }
                Ok(Capped(list, std::marker::PhantomData))
            }
        }
        deserializer.deserialize_seq(Entries(std::marker::PhantomData))
    }
}

/// A JSON parameter map as the protocol has it: at most [`oip::MAX_PARAMETERS`] entries, each a
/// boolean, a number, a string (or null), as Triton takes them; refused while it is read, so that
/// a body of a hundred thousand tiny entries, or of nested arrays, is not decoded into a map many
/// times its size.
struct JsonParameters(Map<String, Value>);

impl<'de> Deserialize<'de> for JsonParameters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonParameters;
            fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
                out.write_str("an object of parameters")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut entries: A,
            ) -> Result<JsonParameters, A::Error> {
                use serde::de::Error;
                let mut map = Map::new();
                while let Some(key) = entries.next_key::<String>()? {
                    if map.len() == oip::MAX_PARAMETERS {
                        return Err(A::Error::custom(format_args!(
                            "more than {} parameters in one object; the protocol's are a handful",
                            oip::MAX_PARAMETERS
                        )));
                    }
                    let value = entries.next_value::<Scalar>()?.0;
                    map.insert(key, value);
                }
                Ok(JsonParameters(map))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// A parameter's value: anything but an array or an object.
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
                out.write_str("a parameter: a boolean, a number or a string")
            }
            fn visit_bool<E>(self, flag: bool) -> Result<Scalar, E> {
                Ok(Scalar(Value::Bool(flag)))
            }
            fn visit_i64<E>(self, number: i64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(number)))
            }
            fn visit_u64<E>(self, number: u64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(number)))
            }
            fn visit_f64<E>(self, number: f64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(number)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar(Value::String(text.to_string())))
            }
            fn visit_string<E>(self, text: String) -> Result<Scalar, E> {
                Ok(Scalar(Value::String(text)))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(Value::Null))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// REST's parameters: JSON values.
impl oip::Parameters for Option<JsonParameters> {
    fn parameter(&self, key: &str) -> Option<Parameter<'_>> {
        Some(match self.as_ref()?.0.get(key)? {
            Value::Bool(flag) => Parameter::Bool(*flag),
            Value::String(text) => Parameter::Text(text),
            Value::Number(number) => match (number.as_u64(), number.as_i64()) {
                (Some(count), _) => Parameter::Uint(count),
                (None, Some(signed)) => Parameter::Int(signed),
                (None, None) => Parameter::Double(number.as_f64().unwrap_or(f64::NAN)),
            },
            other => Parameter::Other(other.to_string()),
        })
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The request id ([`choose_request_id`]) is recorded as soon as it is known, so that every log
/// line of the request carries it.
pub(super) async fn infer(
    State(registry): State<AppState>,
    V2Model(model): V2Model,
    request: Request,
) -> Response {
    let caller_id = observe::header(request.headers(), &observe::REQUEST_ID_HEADER);
    let caller_id = caller_id.map(str::to_string);
    let header_length = request.headers().get(HEADER_LENGTH).cloned();
    let body = Bytes::from_request(request, &registry).await;
    let mut request_id = None;
    let result = answer(&registry, &model, header_length, body, |own_id| {
        let id = choose_request_id(own_id.as_deref(), caller_id.as_deref());
        tracing::Span::current().record("request_id", id.as_str());
        request_id = Some(id);
    })
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let id = request_id.unwrap_or_else(|| {
        // The body did not parse: the caller's id, else a new one.
        let id = choose_request_id(None, caller_id.as_deref());
        tracing::Span::current().record("request_id", id.as_str());
        id
    });
    response.extensions_mut().insert(RequestId(id));
    response
}

async fn answer(
    registry: &AppState,
    model: &Arc<Model>,
    header_length: Option<HeaderValue>,
    body: Result<Bytes, BytesRejection>,
    mut identified: impl FnMut(Option<String>),
) -> Result<Response, ApiError> {
    let body = body?;
    let (decoding_registry, decoding_model) = (registry.clone(), model.clone());
    let (own_id, decoded) = decode_sized(body.len(), move || {
        let mut own_id = None;
        let decoded = decode_infer(
            &decoding_registry,
            decoding_model.bundle(),
            header_length.as_ref(),
            body,
            |id| own_id = Some(id),
        );
        (own_id, decoded)
    })
    .await;
    if let Some(id) = own_id {
        identified(id);
    }
    let answer = infer::answer(registry, model, decoded?).await?;
    encode(answer)
}

/// Decodes an inference body (JSON, then the binary data when `header_length`, the
/// Inference-Header-Content-Length header, says where the JSON ends) and validates it against
/// `bundle`'s declarations; `identified` learns the request's own id as soon as the JSON is read.
/// Consumes the body, so that it is freed before the request waits for the model.
pub(crate) fn decode_infer(
    registry: &Registry,
    bundle: &Bundle,
    header_length: Option<&HeaderValue>,
    body: Bytes,
    mut identified: impl FnMut(Option<String>),
) -> Result<ValidRequest, ApiError> {
    let request = decode_request(header_length, body, &mut identified)?;
    Ok(infer::validate(registry, bundle, request)?)
}

/// The body as the protocol's request: where each input's data is, and what each output asks.
fn decode_request(
    header_length: Option<&HeaderValue>,
    body: Bytes,
    identified: &mut impl FnMut(Option<String>),
) -> Result<InferRequest, ApiError> {
    let json_length = match header_length {
        None => body.len(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .filter(|&length| length <= body.len())
            .ok_or_else(|| {
                bad_request(format!(
                    "the Inference-Header-Content-Length header must be the length of the JSON part of the body, at most {} bytes; received {}",
                    body.len(),
                    crate::text::clip(&format!("{value:?}"))
                ))
            })?,
    };
    let request: WireRequest = serde_json::from_slice(&body[..json_length]).map_err(|error| {
        bad_request(format!(
            "the body is not an inference request of the protocol: {}",
            crate::text::clip_message(&error.to_string())
        ))
    })?;
    identified(request.id.clone());
    let mut binary = body.slice(json_length..);
    let mut inputs = Vec::with_capacity(request.inputs.0.len());
    for input in request.inputs.0 {
        let owner = || format!("input '{}'", crate::text::clip(&input.name));
        let (size, shared_memory, content_type) = match &input.parameters {
            None => (None, None, None),
            parameters => (
                parameters.read::<u64>("binary_data_size", &owner(), "a byte count")?,
                parameters.shared_memory_span(&owner())?,
                parameters.read::<String>("content_type", &owner(), "\"str\" or \"base64\"")?,
            ),
        };
        let base64 = match content_type.as_deref() {
            None | Some("str") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(bad_request(format!(
                    "{}: parameter 'content_type' must be \"str\" or \"base64\" (BYTES data in base64, such as images), received \"{}\"",
                    owner(),
                    crate::text::clip(other)
                )))
            }
        };
        // An input that also has data elsewhere is refused for that first, by `placed`.
        let alone = input.data.is_none() && shared_memory.is_none();
        let raw = match size.map(|size| usize::try_from(size).unwrap_or(usize::MAX)) {
            Some(size) if size > binary.len() && alone => {
                return Err(bad_request(format!(
                    "{} announces {size} bytes of binary data, but only {} bytes follow the JSON header (is the Inference-Header-Content-Length header set?)",
                    owner(),
                    binary.len()
                )))
            }
            Some(size) => Some(InputData::Raw(binary.split_to(size.min(binary.len())))),
            None => None,
        };
        let inline = input.data.map(match base64 {
            true => InputData::Base64Json,
            false => InputData::Json,
        });
        let places = ["'data'", "the 'binary_data_size' parameter"];
        let data = InputData::placed(owner, [inline, raw], shared_memory, places)?;
        inputs.push(InputRequest {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape.0,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(bad_request(format!(
            "{} bytes follow the inputs' binary data; the 'binary_data_size' parameters must add up to the bytes after the JSON header",
            binary.len()
        )));
    }
    let binary_default =
        request
            .parameters
            .read("binary_data_output", "the request", "true or false")?;
    let mut outputs = Vec::new();
    for output in request.outputs.into_iter().flat_map(|outputs| outputs.0) {
        let owner = format!("output '{}'", crate::text::clip(&output.name));
        let parameters = &output.parameters;
        outputs.push(oip::RequestedOutput {
            binary: parameters.read("binary_data", &owner, "true or false")?,
            classification: parameters.read("classification", &owner, "a class count")?,
            shared_memory: parameters.shared_memory_span(&owner)?,
            name: output.name,
        });
    }
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        binary_default: binary_default.unwrap_or(false),
    })
}

/// The JSON response, followed by the binary outputs when any was asked for as binary data;
/// an output written to shared memory is answered without data, as Triton does. Written by hand:
/// serde's derived structs escape each key again for every answer, a third of a small one's cost.
fn encode(answer: Answer<'_>) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(256);
    let mut binary = Vec::new();
    body.extend_from_slice(b"{\"model_name\":");
    push_json(&mut body, &answer.model_name)?;
    body.extend_from_slice(b",\"model_version\":");
    push_json(&mut body, &answer.model_version)?;
    if let Some(id) = answer.id.as_deref() {
        body.extend_from_slice(b",\"id\":");
        push_json(&mut body, &id)?;
    }
    body.extend_from_slice(b",\"outputs\":[");
    for (index, output) in answer.outputs.iter().enumerate() {
        let tensor = &output.tensor;
        body.extend_from_slice(if index == 0 {
            b"{\"name\":"
        } else {
            b",{\"name\":"
        });
        push_json(&mut body, &output.name)?;
        body.extend_from_slice(b",\"datatype\":\"");
        body.extend_from_slice(tensor.dtype().v2_name().as_bytes());
        body.extend_from_slice(b"\",\"shape\":");
        push_json(&mut body, &tensor.shape())?;
        match output.placement {
            Placement::SharedMemory => {}
            Placement::Binary => {
                let start = binary.len();
                tensor.data().write_le_bytes(&mut binary);
                let size = binary.len() - start;
                body.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
                body.extend_from_slice(size.to_string().as_bytes());
                body.push(b'}');
            }
            Placement::InAnswer => {
                body.extend_from_slice(b",\"data\":");
                push_json(&mut body, &Flat(tensor.data()))?;
            }
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    let any_binary = answer
        .outputs
        .iter()
        .any(|output| output.placement == Placement::Binary);
    if !any_binary {
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let json_length = body.len();
    body.extend_from_slice(&binary);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_length),
            ),
        ],
        body,
    )
        .into_response())
}

/// `value` as JSON at the end of `body`.
fn push_json(body: &mut Vec<u8>, value: &impl Serialize) -> Result<(), ApiError> {
    serde_json::to_writer(body, value)
        .map_err(|error| ApiError::internal(format!("cannot encode the answer: {error}")))
}
