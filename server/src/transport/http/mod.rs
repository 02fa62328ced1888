//! The HTTP layer: routes, extractors and the listener. It sees models and tensors, never `ort`.

mod docs;
mod error;
mod gate;
mod observe;
mod openai;
mod openapi;
mod seed;
mod v2;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::routing::{get, on, MethodFilter, MethodRouter};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::decompression::RequestDecompressionLayer;

/// The request decoders, for [`crate::fuzzing`].
#[cfg(feature = "fuzzing")]
pub(crate) use self::v2::decode_infer;
pub use error::ApiError;
pub use observe::RequestId;

use crate::metrics;
use crate::model::Model;
use crate::serving::decoding::decode_sized;
use crate::serving::Registry;
use crate::transport::routes::{self, Route, Verb};
use crate::transport::{Service, COMPRESS_ABOVE_BYTES};

/// Deployment settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_body_bytes: usize,
    /// Origins whose pages may call the API from a browser (CORS); none by default.
    pub cors_origins: Vec<HeaderValue>,
}

pub type AppState = Arc<Registry>;

/// The model a request is for: the `{model}` path segment under `/models/`, or at the root the
/// only model served.
pub struct SelectedModel(pub Arc<Model>);

impl FromRequestParts<AppState> for SelectedModel {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(name) = path_param(&path_params(parts, state).await?, "model") {
            // In the seed API's own words; v2's begins with Triton's (protocol::v2::find_model).
            let model = state
                .find(name)
                .ok_or_else(|| ApiError::not_found(state.unknown_model(name)))?;
            return Ok(SelectedModel(model.clone()));
        }
        match state.models() {
            [only] => Ok(SelectedModel(only.clone())),
            _ => Err(ApiError::not_found(format!(
                "this server has several models ({}); use /models/{{name}}{}",
                state.names(),
                parts.uri.path()
            ))),
        }
    }
}

/// The request's path segments (`{model}`, `{version}`), decoded; a segment that is not UTF-8 is
/// the caller's 400.
async fn path_params(parts: &mut Parts, state: &AppState) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text()))
}

/// The segment `key` of `params`.
fn path_param<'p>(params: &'p RawPathParams, key: &str) -> Option<&'p str> {
    params
        .iter()
        .find_map(|(name, value)| (name == key).then_some(value))
}

/// `axum::Json` whose rejections (malformed JSON, wrong content type, too large) answer in the
/// same `{"error": ...}` shape as every other error. A large body is parsed off the reactor
/// ([`decode_sized`]).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_plain_json(request.headers()) {
            // axum's own extractor: its rejection of the content type (or its parse, for a JSON
            // type such as `application/x+json` that the check here leaves to it).
            let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
            return Ok(ApiJson(value));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        let axum::Json(value) =
            decode_sized(bytes.len(), move || axum::Json::<T>::from_bytes(&bytes)).await?;
        Ok(ApiJson(value))
    }
}

/// Whether the request says its body is `application/json` (parameters aside).
fn is_plain_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Every HTTP route of the server, as the table of calls ([`routes`]) declares them, inside the
/// layers every request passes, outermost first. The layers wrap the router, not each route (as
/// `Router::layer` would): a request then clones no stack of layers, and they find its route in
/// the table themselves ([`routes::find`]).
pub fn router(registry: Arc<Registry>, options: &HttpOptions) -> impl Service + Clone + Sync {
    let routes = routes::http()
        .filter_map(|route| Some((route.path, handler(route)?)))
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(registry.clone());
    ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            registry.clone(),
            observe::observe,
        ))
        // Outside the gate: a browser's preflight carries no token.
        .layer(tower::util::option_layer(cors(&options.cors_origins)))
        .layer(middleware::from_fn_with_state(registry, gate::gate))
        // Only bodies worth it, and fast: a gzip stream costs a few hundred kilobytes of zeroed
        // state to set up, which for a small answer (most predictions) took more CPU than the
        // whole request; level 1, as nginx's default, for the large ones.
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(
                    DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE_BYTES as u16)),
                ),
        )
        // gzip or deflate bodies (tritonclient's request and response compression); the body
        // limit below counts the decompressed bytes, so a small bomb is refused like a big body.
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .service(routes)
}

/// The handler of an HTTP route of the table ([`routes`]), by its operation id (a seed route at
/// the root shares its handler with the same route under `/models/{model}`); None for a call
/// only gRPC makes. A unit test holds every HTTP route to a handler.
fn handler(route: &Route) -> Option<MethodRouter<AppState>> {
    let filter = match route.verb {
        Verb::Get => MethodFilter::GET,
        Verb::Post => MethodFilter::POST,
        Verb::GrpcOnly => return None,
    };
    let id = route.operation_id;
    Some(match id.strip_suffix("OfTheOnlyModel").unwrap_or(id) {
        "health" => on(filter, seed::health),
        "listModels" => on(filter, seed::list_models),
        "modelHealth" => on(filter, seed::model_health),
        "serverMetadata" => on(filter, v2::server_metadata),
        "serverLive" => on(filter, v2::live),
        "serverReady" => on(filter, v2::ready),
        "modelMetadata" => on(filter, v2::model_metadata),
        "modelReady" => on(filter, v2::model_ready),
        "modelInfer" => on(filter, v2::infer),
        "allModelStatistics" => on(filter, v2::all_statistics),
        "modelStatistics" => on(filter, v2::model_statistics),
        "modelStatisticsVersion" => on(filter, v2::model_statistics),
        "repositoryIndex" => on(filter, v2::repository_index),
        "repositoryModelLoad" => on(filter, v2::repository_load),
        "repositoryModelUnload" => on(filter, v2::repository_unload),
        "modelConfig" => on(filter, v2::model_config),
        "modelConfigVersion" => on(filter, v2::model_config),
        "modelMetadataVersion" => on(filter, v2::model_metadata),
        "modelReadyVersion" => on(filter, v2::model_ready),
        "modelInferVersion" => on(filter, v2::infer),
        "systemSharedMemoryStatus" => on(filter, v2::shared_memory_status_all),
        "systemSharedMemoryRegionStatus" => on(filter, v2::shared_memory_status),
        "systemSharedMemoryRegister" => on(filter, v2::shared_memory_register),
        "systemSharedMemoryUnregisterAll" => on(filter, v2::shared_memory_unregister_all),
        "systemSharedMemoryUnregister" => on(filter, v2::shared_memory_unregister),
        "cudaSharedMemoryStatus" => on(filter, v2::cuda_shared_memory_status_all),
        "cudaSharedMemoryRegionStatus" => on(filter, v2::cuda_shared_memory_status),
        "cudaSharedMemoryRegister" => on(filter, v2::cuda_shared_memory_register),
        "cudaSharedMemoryUnregisterAll" | "cudaSharedMemoryUnregister" => {
            on(filter, v2::cuda_shared_memory_unregister)
        }
        "docs" => on(filter, docs::page),
        "docsScript" => on(filter, docs::bundle),
        "docsStyle" => on(filter, docs::style),
        "openapi" => on(filter, openapi::serve),
        "metadata" => on(filter, seed::metadata),
        "predict" => on(filter, seed::predict),
        "predictLabel" => on(filter, seed::predict_label),
        "predictTest" => on(filter, seed::predict_test),
        "predictTestLabel" => on(filter, seed::predict_test_label),
        "labels" => on(filter, seed::labels),
        "createEmbeddings" => on(filter, openai::embeddings),
        _ => return None,
    })
}

/// Cross-origin access for the pages of `origins` (an API page hosted elsewhere); none with no
/// origins, so that browsers keep other origins' pages out.
fn cors(origins: &[HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::CONTENT_ENCODING,
            header::HeaderName::from_static("inference-header-content-length"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("inference-header-content-length"),
            header::HeaderName::from_static("x-request-id"),
        ]);
    Some(layer)
}

/// The metrics listener's one route: `GET /metrics`, the OpenMetrics text of every metric.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    let render = |State(registry): State<AppState>| async move {
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            registry.metrics().render(),
        )
    };
    Router::new()
        .route(crate::defaults::METRICS_PATH, get(render))
        .fallback(not_found)
        .with_state(registry)
}

async fn not_found(uri: Uri) -> ApiError {
    let path = uri.path();
    match crate::protocol::v2::unserved_extension(path) {
        Some(why) => ApiError::not_found(format!("no route for {path}: {why}")),
        None => ApiError::not_found(format!("no route for {path}")),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn every_http_route_of_the_table_has_its_handler() {
        for route in routes::http() {
            assert!(
                handler(route).is_some(),
                "{} has no handler",
                route.operation_id
            );
        }
    }

    #[tokio::test]
    async fn pages_of_the_allowed_origins_only_may_call_the_api() {
        let answer = |origins: Vec<HeaderValue>, method: &str| {
            let app = router(
                Registry::without_models(),
                &HttpOptions {
                    max_body_bytes: 1024,
                    cors_origins: origins,
                },
            );
            let request = Request::builder()
                .method(method)
                .uri("/v2/health/live")
                .header("origin", "https://docs.example.com")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap();
            async move { app.oneshot(request).await.unwrap() }
        };
        let allowed = || vec![HeaderValue::from_static("https://docs.example.com")];
        let preflight = answer(allowed(), "OPTIONS").await;
        assert_eq!(preflight.status(), 200);
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            "https://docs.example.com"
        );
        let call = answer(allowed(), "GET").await;
        assert_eq!(
            call.headers()["access-control-allow-origin"],
            "https://docs.example.com"
        );
        let other = answer(
            vec![HeaderValue::from_static("https://else.example.com")],
            "GET",
        )
        .await;
        assert!(!other.headers().contains_key("access-control-allow-origin"));
        let none = answer(Vec::new(), "GET").await;
        assert!(!none.headers().contains_key("access-control-allow-origin"));
    }

    #[tokio::test]
    async fn readiness_turns_false_as_soon_as_shutdown_begins() {
        let registry = Registry::without_models();
        let app = router(
            registry.clone(),
            &HttpOptions {
                max_body_bytes: 1,
                cors_origins: Vec::new(),
            },
        );
        let status = |path: &'static str| {
            let app = app.clone();
            async move {
                let request = Request::get(path).body(Body::empty()).unwrap();
                app.oneshot(request).await.unwrap().status().as_u16()
            }
        };
        assert_eq!(status("/v2/health/ready").await, 200);
        assert_eq!(status("/health").await, 200);
        registry.begin_shutdown();
        assert_eq!(status("/v2/health/ready").await, 400);
        assert_eq!(status("/health").await, 503);
        assert_eq!(
            status("/v2/health/live").await,
            200,
            "still live while draining"
        );
    }
}
