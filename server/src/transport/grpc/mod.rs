//! The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService` (`inference.rs`),
//! on its own port, running the same models as the REST routes, beside the standard health
//! service (`health.rs`) and server reflection; all behind one gate, the gRPC side of
//! [`crate::transport::gate`], which also observes the calls the services never see.

use std::future::Future;
use std::sync::Arc;

use axum::http::HeaderValue;
use tonic::{Code, Status};

use crate::metrics::RouteLabels;
use crate::protocol::v2 as oip;
use crate::request_context::{choose_request_id, REQUEST_ID};
use crate::serving::decoding::OFF_REACTOR_BYTES;
use crate::serving::error::{ErrorKind, ServeError};
use crate::serving::Registry;
use crate::transport::gate::{self, Refusal};
use crate::transport::observe::Observation;
use crate::transport::routes;
use crate::transport::timed_answer::{timed, TimerSlot, TIMER};

mod health;
mod inference;
mod wire;

#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

#[allow(clippy::all, missing_docs)]
mod health_proto {
    tonic::include_proto!("grpc.health.v1");
}

use health::Health;
use inference::CalledMethod;
pub(crate) use inference::InferenceService;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The services' codec: prost's, but a message that does not decode is refused with
/// INVALID_ARGUMENT, the caller's mistake, where prost's codec says INTERNAL (gRPC's 500).
pub struct CallersCodec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for CallersCodec<T, U> {
    fn default() -> Self {
        CallersCodec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for CallersCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = CallersDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CallersDecoder(self.0.decoder())
    }
}

pub struct CallersDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: prost::Message + Default + 'static> tonic::codec::Decoder for CallersDecoder<U> {
    type Item = U;
    type Error = Status;

    /// Refuses a message whose structure would outgrow its wire size (`wire.rs`) before
    /// decoding it (the buffer holds the whole message, contiguous). A large one is decoded with
    /// its worker thread handed over to blocking work, so that the reactor's other tasks move on
    /// (the codec is synchronous: `serving::decoding`'s hand-off cannot be used here).
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf;
        if let Some(why) = wire::refusal::<U>(buf.chunk()) {
            buf.advance(buf.remaining());
            return Err(Status::invalid_argument(why));
        }
        let many_threads = tokio::runtime::Handle::try_current().is_ok_and(|reactor| {
            reactor.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        let decoded = if many_threads && buf.remaining() >= OFF_REACTOR_BYTES {
            tokio::task::block_in_place(|| self.0.decode(buf))
        } else {
            self.0.decode(buf)
        };
        decoded.map_err(|status| Status::invalid_argument(status.message()))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

/// The descriptors of the inference and health services, for server reflection.
const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("inference_descriptor");

/// The gRPC services behind their gate, for the listeners: the inference
/// service (messages as large as `max_message_bytes`, the REST body limit; gzip and deflate both
/// ways), `grpc.health.v1.Health` (the server as "" and each model by name; NOT_SERVING from the
/// moment either is not ready), and server reflection (v1 and v1alpha).
pub fn service(
    registry: Arc<Registry>,
    max_message_bytes: usize,
) -> impl crate::transport::Service + Clone {
    use tonic::codec::CompressionEncoding::{Deflate, Gzip};
    let inference = GrpcInferenceServiceServer::new(InferenceService {
        registry: registry.clone(),
    })
    .max_decoding_message_size(max_message_bytes)
    .max_encoding_message_size(usize::MAX)
    .accept_compressed(Gzip)
    .accept_compressed(Deflate)
    .send_compressed(Gzip)
    .send_compressed(Deflate);
    let health = health_proto::health_server::HealthServer::new(Health {
        registry: registry.clone(),
    });
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
    };
    let mut routes = tonic::service::Routes::new(inference).add_service(health);
    // Built from the descriptors compiled with the service: failing only on a build defect.
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "gRPC server reflection is not served")
        }
    }
    Gate {
        inner: routes.prepare().into_axum_router(),
        registry,
    }
}

/// What a call passes before its message is decoded, as over REST ([`gate::pass`]): a valid
/// bearer token when the server has tokens (else UNAUTHENTICATED; the health methods stay open),
/// and for ModelInfer a place among the requests in flight (else UNAVAILABLE at once), held until
/// it is answered. These refusals, and the calls the gRPC library answers before the service sees
/// them (a message that does not decode, one over the size limit, an unknown method), each get a
/// request id, and are logged and counted like the others (without a model).
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S> tower::Service<axum::extract::Request> for Gate<S>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let caller_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        // Only the services' own methods become label values; any other path is "unknown".
        let route = routes::grpc(request.uri().path());
        let endpoint = route
            .and_then(|route| route.grpc)
            .map_or("unknown", |method| method.name);
        let unserved = request.uri().path()[1..]
            .split_once('/')
            .filter(|(service, _)| *service == routes::INFERENCE)
            .and_then(|(_, called)| oip::unserved_extension(called));
        let registry = self.registry.clone();
        // The inner service is a router, always ready: a clone serves this call.
        let mut inner = self.inner.clone();
        let answer: Self::Future = Box::pin({
            let registry = registry.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(CalledMethod(endpoint));
                // The message's 5-byte frame header comes on top of the message limit.
                let limit = registry.limits().max_body_bytes.saturating_add(5);
                let passed = match gate::pass(&registry, route, &parts.headers, body, limit).await {
                    Ok(passed) => passed,
                    Err(Refusal::Unauthenticated { .. }) => {
                        let refusal = Status::unauthenticated(
                            "this server needs a bearer token: send `authorization: Bearer <token>` metadata",
                        );
                        return Ok(refusal.into_http());
                    }
                    Err(Refusal::Refused(error)) => return Ok(status(&error).into_http()),
                };
                let body = match route.is_some_and(|route| route.inference_stream) {
                    true => stream_body(passed.body),
                    false => passed.body,
                };
                let request = axum::extract::Request::from_parts(parts, body);
                let answer = inner.call(request).await;
                Ok(match (answer, passed.place) {
                    (Ok(response), Some(place)) => gate::held_until_sent(response, place),
                    (answer, _) => answer?,
                })
            }
        });
        let timer_slot = TimerSlot::default();
        let answer = TIMER.scope(timer_slot.clone(), answer);
        Box::pin(async move {
            let mut response = answer.await?;
            let mut timer = timer_slot.take();
            let headers = response.headers_mut();
            // A call that fails at once is answered trailers-only, its status in the headers; any
            // other answer is under way: a unary call's succeeded, a stream's end is not awaited.
            let status = headers.get("grpc-status");
            let code = status.map_or(Some(0), |code| code.to_str().ok()?.parse().ok());
            let code = code.map_or(Code::Unknown, Code::from);
            // tonic answers a method it does not have with an empty message: name what is served.
            if code == Code::Unimplemented && !headers.contains_key("grpc-message") {
                let _ = Status::unimplemented(unimplemented_message(unserved)).add_header(headers);
            }
            // The service's answers carry their request id; one without it never reached it.
            if !headers.contains_key(REQUEST_ID) {
                let request_id = choose_request_id(None, caller_id.as_deref());
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    headers.insert(REQUEST_ID, value);
                }
                let labels = RouteLabels {
                    model: String::new(),
                    protocol: "grpc",
                    endpoint: endpoint.to_string(),
                };
                let observation = Observation::start(
                    &registry,
                    "gRPC",
                    labels,
                    Some(&request_id),
                    None,
                    "CANCELLED",
                );
                timer = Some(observation.answered(code_name(code)));
            }
            Ok(match timer {
                Some(timer) => response.map(|body| timed(body, timer)),
                None => response,
            })
        })
    }
}

/// The message of UNIMPLEMENTED: the extension it belongs to when it is one of Triton's, and
/// the service's methods.
fn unimplemented_message(unserved: Option<&str>) -> String {
    let methods = routes::inference_methods().collect::<Vec<_>>().join(", ");
    let served = format!("this server serves inference.GRPCInferenceService: {methods}");
    match unserved {
        Some(why) => format!("{why}; {served}"),
        None => served,
    }
}

/// A stream's body whose refusals ([`crate::transport::body::messages`]) reach the gRPC library
/// as their status, which it ends the stream with (any other error it reads as UNKNOWN).
fn stream_body(body: axum::body::Body) -> axum::body::Body {
    use http_body_util::BodyExt;
    axum::body::Body::new(
        body.map_err(|error| match error.into_inner().downcast::<ServeError>() {
            Ok(refusal) => status(&refusal),
            Err(other) => Status::from_error(other),
        }),
    )
}

/// The one place gRPC codes come from the serving layer's error kinds.
fn status(error: &ServeError) -> Status {
    let code = match error.kind() {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::TooLarge => Code::OutOfRange,
        ErrorKind::TooSlow => Code::DeadlineExceeded,
    };
    Status::new(code, error.public_message())
}

/// The canonical name of a gRPC status code, as in the gRPC documentation (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
