//! Every call the server answers, over HTTP and gRPC, declared once: its path and method (or gRPC
//! method), which API it belongs to, whether it is about one model, open without a token, and an
//! inference (admitted, with a deadline), and what it takes and answers. A REST route and the gRPC
//! method that make the same call are one entry. The HTTP router, both transports' gates, the
//! metric labels and the OpenAPI document are all derived from this table; nothing keeps a second
//! list.

use std::sync::LazyLock;

use axum::http::Method;

use crate::defaults::{LIVE_PATH, READY_PATH};

/// The API a route belongs to (its OpenAPI tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Seed,
    V2,
    OpenAi,
    Server,
}

impl Api {
    pub fn tag(self) -> &'static str {
        match self {
            Api::Seed => "Seed API",
            Api::V2 => "Open Inference Protocol v2",
            Api::OpenAi => "OpenAI embeddings API",
            Api::Server => "Server",
        }
    }
}

/// The HTTP methods the API uses; none for a call only gRPC serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    GrpcOnly,
}

impl Verb {
    pub fn method(self) -> Option<Method> {
        match self {
            Verb::Get => Some(Method::GET),
            Verb::Post => Some(Method::POST),
            Verb::GrpcOnly => None,
        }
    }

    /// As OpenAPI names it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::GrpcOnly => "",
        }
    }
}

/// A gRPC method: its service's full name and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcMethod {
    pub service: &'static str,
    pub name: &'static str,
}

/// The Open Inference Protocol's gRPC service.
pub const INFERENCE: &str = "inference.GRPCInferenceService";
const HEALTH: &str = "grpc.health.v1.Health";

/// What a successful answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A JSON body of the named schema (in openapi-components.json).
    Json(&'static str),
    /// The Open Inference Protocol's readiness: 200 yes, 400 no, with a body of the named schema.
    YesOrNo(&'static str),
    /// The protocol's liveness: 200, with a body of the named schema.
    Yes(&'static str),
    /// This server's OpenAPI document.
    Document,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub verb: Verb,
    pub api: Api,
    /// About one model: the `{model}` path segment, or at the seed API's root the only model
    /// served. Such a request's metrics carry the model's name.
    pub model_scoped: bool,
    /// Open without a bearer token: the probes of load balancers and orchestrators, and the API
    /// description.
    pub open: bool,
    /// Runs a model: admitted among `--max-concurrent-requests` and abandoned at
    /// `--request-timeout-seconds`.
    pub inference: bool,
    /// A stream of inferences (ModelStreamInfer): each message is read as an inference's body is
    /// ([`crate::transport::body::messages`]) and admitted on its own.
    pub inference_stream: bool,
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// The JSON schema of the request body, if it takes one.
    pub takes: Option<&'static str>,
    pub answers: Answer,
    /// The 503 of the seed's health routes, with its Health body, besides the Error default.
    pub unready_503: bool,
    /// In the OpenAPI document (the API page and its files are not).
    pub documented: bool,
    /// The gRPC method that makes the same call, if one does.
    pub grpc: Option<GrpcMethod>,
}

impl Route {
    const fn get(path: &'static str, operation_id: &'static str, summary: &'static str) -> Route {
        Route {
            path,
            verb: Verb::Get,
            api: Api::Seed,
            model_scoped: false,
            open: false,
            inference: false,
            inference_stream: false,
            operation_id,
            summary,
            takes: None,
            answers: Answer::YesOrNo("ServerReady"),
            unready_503: false,
            documented: true,
            grpc: None,
        }
    }

    const fn post(path: &'static str, operation_id: &'static str, summary: &'static str) -> Route {
        Route {
            verb: Verb::Post,
            ..Route::get(path, operation_id, summary)
        }
    }

    const fn v2_get(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
    ) -> Route {
        Route::get(path, operation_id, summary).api(Api::V2)
    }

    const fn v2_post(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
    ) -> Route {
        Route::post(path, operation_id, summary).api(Api::V2)
    }

    /// A call only gRPC serves: labelled in metrics by its method, as every gRPC call is.
    const fn grpc_only(service: &'static str, name: &'static str) -> Route {
        Route {
            verb: Verb::GrpcOnly,
            documented: false,
            grpc: Some(GrpcMethod { service, name }),
            ..Route::get("", name, "")
        }
    }

    /// The same call over gRPC, by the Open Inference Protocol's method `name`.
    const fn grpc(self, name: &'static str) -> Route {
        Route {
            grpc: Some(GrpcMethod {
                service: INFERENCE,
                name,
            }),
            ..self
        }
    }

    const fn api(self, api: Api) -> Route {
        Route { api, ..self }
    }

    const fn model(self) -> Route {
        Route {
            model_scoped: true,
            ..self
        }
    }

    const fn open(self) -> Route {
        Route { open: true, ..self }
    }

    const fn inference(self) -> Route {
        Route {
            inference: true,
            ..self
        }
    }

    const fn inference_stream(self) -> Route {
        Route {
            inference_stream: true,
            ..self
        }
    }

    const fn takes(self, schema: &'static str) -> Route {
        Route {
            takes: Some(schema),
            ..self
        }
    }

    const fn answers(self, schema: &'static str) -> Route {
        Route {
            answers: Answer::Json(schema),
            ..self
        }
    }

    const fn ready_body(self, schema: &'static str) -> Route {
        Route {
            answers: Answer::YesOrNo(schema),
            ..self
        }
    }

    const fn undocumented(self) -> Route {
        Route {
            documented: false,
            ..self
        }
    }

    const fn unready_503(self) -> Route {
        Route {
            unready_503: true,
            ..self
        }
    }

    /// Whether the handler picks the request id itself (the v2 request's own `id` goes first).
    pub fn handler_chooses_request_id(&self) -> bool {
        self.api == Api::V2 && self.inference
    }
}

/// The seed's per-model routes, once under `/models/{model}` and once at the root for the only
/// model served.
macro_rules! seed_routes {
    ($($path:literal, $id:literal, $summary:literal, $method:ident, |$r:ident| $more:expr;)*) => {
        [
            $({
                let $r = Route::$method(concat!("/models/{model}", $path), $id, $summary).model();
                $more
            },)*
            $({
                let $r = Route::$method(
                    $path,
                    concat!($id, "OfTheOnlyModel"),
                    concat!($summary, " (the only model served; 404 when there are several)"),
                )
                .model();
                $more
            },)*
        ]
    };
}

static SEED_MODEL_ROUTES: [Route; 12] = seed_routes! {
    "/metadata", "metadata", "The model's bundle: inputs, outputs, prediction output, labels",
        get, |r| r.answers("Metadata");
    "/label", "labels", "The model's class labels", get, |r| r.answers("Labels");
    "/predict", "predict", "Run the model on rows; answers the prediction output",
        post, |r| r.inference().takes("PredictRequest").answers("Prediction");
    "/predict/label", "predictLabel", "Run the model on rows; answers each row's label",
        post, |r| r.inference().takes("PredictRequest").answers("LabelPrediction");
    "/predict/test", "predictTest", "Run the model on its bundle's sample",
        get, |r| r.inference().answers("Prediction");
    "/predict/test/label", "predictTestLabel", "Run the model on its bundle's sample; each row's label",
        get, |r| r.inference().answers("LabelPrediction");
};

const INFER_SUMMARY: &str =
    "Run the model (JSON; Triton's binary tensor data extension is also accepted, see docs/api.md)";

static OTHER_ROUTES: [Route; 35] = [
    Route::get("/health", "health", "Whether the server is ready (every model loaded and checked)")
        .open().answers("Health").unready_503(),
    Route::get("/models", "listModels", "The models this server serves")
        .answers("ModelList"),
    Route::get("/models/{model}/health", "modelHealth", "Whether the server is ready for this model")
        .model().open().answers("Health").unready_503(),
    Route::v2_get("/v2", "serverMetadata", "Server metadata")
        .grpc("ServerMetadata").answers("ServerMetadata"),
    Route {
        answers: Answer::Yes("ServerLive"),
        ..Route::v2_get(LIVE_PATH, "serverLive", "Whether the server is live").grpc("ServerLive").open()
    },
    Route::v2_get(READY_PATH, "serverReady", "Whether the server is ready")
        .grpc("ServerReady").open(),
    Route::v2_get("/v2/models/{model}", "modelMetadata", "Model metadata")
        .grpc("ModelMetadata").model().answers("ModelMetadata"),
    Route::v2_get("/v2/models/{model}/ready", "modelReady", "Whether the model is ready")
        .grpc("ModelReady").model().open().ready_body("ModelReady"),
    Route::v2_post("/v2/models/{model}/infer", "modelInfer", INFER_SUMMARY)
        .grpc("ModelInfer").model().inference().takes("InferRequest").answers("InferResponse"),
    Route::v2_get("/v2/models/stats", "allModelStatistics", "Triton's statistics of every model (the statistics extension)")
        .answers("ModelStatistics"),
    Route::v2_get("/v2/models/{model}/stats", "modelStatistics", "Triton's statistics of the model (the statistics extension)")
        .grpc("ModelStatistics").model().answers("ModelStatistics"),
    Route::v2_get("/v2/models/{model}/versions/{version}/stats", "modelStatisticsVersion", "Triton's statistics of the model (the statistics extension)")
        .model().answers("ModelStatistics"),
    Route::v2_post("/v2/repository/index", "repositoryIndex", "The served models and their state (the model repository extension)")
        .grpc("RepositoryIndex").answers("RepositoryIndex"),
    Route::v2_post("/v2/repository/models/{model}/load", "repositoryModelLoad", "Refused: a predictor's models are fixed by its image or unit")
        .grpc("RepositoryModelLoad").answers("Error"),
    Route::v2_post("/v2/repository/models/{model}/unload", "repositoryModelUnload", "Refused: a predictor's models are fixed by its image or unit")
        .grpc("RepositoryModelUnload").answers("Error"),
    Route::v2_get("/v2/models/{model}/config", "modelConfig", "Triton's model configuration of the model (the model configuration extension)")
        .grpc("ModelConfig").model().answers("ModelConfig"),
    Route::v2_get("/v2/models/{model}/versions/{version}/config", "modelConfigVersion", "Triton's model configuration of the model (the model configuration extension)")
        .model().answers("ModelConfig"),
    Route::v2_get("/v2/models/{model}/versions/{version}", "modelMetadataVersion", "Model metadata")
        .model().answers("ModelMetadata"),
    Route::v2_get("/v2/models/{model}/versions/{version}/ready", "modelReadyVersion", "Whether the model is ready")
        .model().open().ready_body("ModelReady"),
    Route::v2_post("/v2/models/{model}/versions/{version}/infer", "modelInferVersion", INFER_SUMMARY)
        .model().inference().takes("InferRequest").answers("InferResponse"),
    Route::v2_get("/v2/systemsharedmemory/status", "systemSharedMemoryStatus", "The registered system shared memory regions (with --allow-shared-memory)")
        .grpc("SystemSharedMemoryStatus").answers("SharedMemoryStatus"),
    Route::v2_get("/v2/systemsharedmemory/region/{region}/status", "systemSharedMemoryRegionStatus", "One registered system shared memory region (with --allow-shared-memory)")
        .answers("SharedMemoryStatus"),
    Route::v2_post("/v2/systemsharedmemory/region/{region}/register", "systemSharedMemoryRegister", "Register a region of a POSIX shared memory object for inputs and outputs (with --allow-shared-memory)")
        .grpc("SystemSharedMemoryRegister").takes("SharedMemoryRegister").answers("Empty"),
    Route::v2_post("/v2/systemsharedmemory/unregister", "systemSharedMemoryUnregisterAll", "Unregister every system shared memory region (with --allow-shared-memory)")
        .grpc("SystemSharedMemoryUnregister").answers("Empty"),
    Route::v2_post("/v2/systemsharedmemory/region/{region}/unregister", "systemSharedMemoryUnregister", "Unregister a system shared memory region (with --allow-shared-memory)")
        .answers("Empty"),
    // Triton's CUDA shared memory, as Triton without GPUs answers it: none registered, none
    // registrable (its clients begin by unregistering them all).
    Route::v2_get("/v2/cudasharedmemory/status", "cudaSharedMemoryStatus", "The registered CUDA shared memory regions: none, on this server's CPU")
        .grpc("CudaSharedMemoryStatus").answers("CudaSharedMemoryStatus"),
    Route::v2_get("/v2/cudasharedmemory/region/{region}/status", "cudaSharedMemoryRegionStatus", "One registered CUDA shared memory region: none is")
        .answers("CudaSharedMemoryStatus"),
    Route::v2_post("/v2/cudasharedmemory/region/{region}/register", "cudaSharedMemoryRegister", "Refused: this server runs its models on the CPU (system shared memory takes inputs and outputs in place)")
        .grpc("CudaSharedMemoryRegister").answers("Error"),
    Route::v2_post("/v2/cudasharedmemory/unregister", "cudaSharedMemoryUnregisterAll", "Unregister every CUDA shared memory region: there is none, and nothing to do")
        .grpc("CudaSharedMemoryUnregister").answers("Empty"),
    Route::v2_post("/v2/cudasharedmemory/region/{region}/unregister", "cudaSharedMemoryUnregister", "Unregister a CUDA shared memory region: none is registered, and nothing to do")
        .answers("Empty"),
    Route::post("/v1/embeddings", "createEmbeddings", "OpenAI's embeddings: a text bundle's vector for each text (the model named in the body)")
        .api(Api::OpenAi).inference().takes("EmbeddingsRequest").answers("Embeddings"),
    Route::get("/docs", "docs", "The API page (Swagger UI)")
        .api(Api::Server).open().undocumented(),
    Route::get("/docs/swagger-ui-bundle.js", "docsScript", "The API page's script")
        .api(Api::Server).open().undocumented(),
    Route::get("/docs/swagger-ui.css", "docsStyle", "The API page's style")
        .api(Api::Server).open().undocumented(),
    Route {
        answers: Answer::Document,
        ..Route::get("/openapi.json", "openapi", "This document").api(Api::Server).open()
    },

];

/// The calls only gRPC serves.
static GRPC_ONLY_ROUTES: [Route; 5] = [
    // Each message of the stream is admitted on its own, by the handler: the stream is not read
    // whole first.
    Route::grpc_only(INFERENCE, "ModelStreamInfer").inference_stream(),
    // The probes of Kubernetes and grpc_health_probe, open as REST's health routes are.
    Route::grpc_only(HEALTH, "Check").open(),
    Route::grpc_only(HEALTH, "Watch").open(),
    // The API description, open as REST's /openapi.json is.
    Route::grpc_only(
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    )
    .open(),
    Route::grpc_only(
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    )
    .open(),
];

/// Every call, over either transport.
pub fn all() -> impl Iterator<Item = &'static Route> {
    OTHER_ROUTES
        .iter()
        .chain(SEED_MODEL_ROUTES.iter())
        .chain(GRPC_ONLY_ROUTES.iter())
}

/// Every route of the HTTP listener.
pub fn http() -> impl Iterator<Item = &'static Route> {
    all().filter(|route| route.verb != Verb::GrpcOnly)
}

/// A request's path as the table knows it, matched as the router matches it (matchit, which axum
/// routes with): the endpoint label comes from here, not from the router, so that the layers
/// around the router need not run inside it.
pub struct Matched<'p> {
    /// The route's path pattern, as metrics and logs name the endpoint.
    pub endpoint: &'static str,
    /// The route of the request's method; None for a method the path does not take (405).
    pub route: Option<&'static Route>,
    /// The `{model}` segment as sent (percent-encoded); [`Matched::model`] decodes it.
    model: Option<&'p str>,
}

impl Matched<'_> {
    /// The `{model}` segment, percent-decoded as axum decodes it; None without one, or when it
    /// does not decode to UTF-8 (which the handler refuses).
    pub fn model(&self) -> Option<String> {
        let raw = self.model?;
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        Some(decoded.into_owned())
    }
}

/// The route of `path` and `method`; None for a path the table does not have (404).
pub fn find<'p>(path: &'p str, method: &Method) -> Option<Matched<'p>> {
    static PATHS: LazyLock<matchit::Router<Vec<&'static Route>>> = LazyLock::new(|| {
        let mut by_path: Vec<(&str, Vec<&'static Route>)> = Vec::new();
        for route in http() {
            match by_path.iter_mut().find(|(path, _)| *path == route.path) {
                Some((_, routes)) => routes.push(route),
                None => by_path.push((route.path, vec![route])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, routes) in by_path {
            // A pattern matchit refuses, the router would refuse too; a unit test finds every
            // route of the table here.
            let _ = paths.insert(path, routes);
        }
        paths
    });
    let found = PATHS.at(path).ok()?;
    let routes = found.value;
    Some(Matched {
        endpoint: routes[0].path,
        route: routes
            .iter()
            .copied()
            .find(|route| route.verb.method().as_ref() == Some(method)),
        model: found.params.get("model"),
    })
}

/// The route of a gRPC call, by its path (`/inference.GRPCInferenceService/ModelInfer`); None
/// for a method the server does not have.
pub fn grpc(path: &str) -> Option<&'static Route> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    all().find(|route| {
        route
            .grpc
            .is_some_and(|method| method.service == service && method.name == name)
    })
}

/// The Open Inference Protocol's gRPC methods, in the table's order.
pub fn inference_methods() -> impl Iterator<Item = &'static str> {
    all()
        .filter_map(|route| route.grpc)
        .filter(|method| method.service == INFERENCE)
        .map(|method| method.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table names exactly the inference service's methods, as the generated code routes
    /// them, each once.
    #[test]
    fn the_grpc_methods_of_the_table_are_the_services() {
        let proto = include_str!("../../proto/inference.proto");
        let mut declared: Vec<&str> = proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect();
        let mut tabled: Vec<&str> = inference_methods().collect();
        declared.sort_unstable();
        tabled.sort_unstable();
        assert_eq!(tabled, declared);
        let twice = tabled.windows(2).find(|pair| pair[0] == pair[1]);
        assert_eq!(twice, None, "a method has two entries");
    }

    #[test]
    fn a_grpc_call_takes_the_policy_of_its_rest_twin() {
        let infer = grpc("/inference.GRPCInferenceService/ModelInfer").unwrap();
        assert_eq!(infer.path, "/v2/models/{model}/infer");
        assert!(infer.inference && !infer.open);
        let ready = grpc("/inference.GRPCInferenceService/ServerReady").unwrap();
        assert_eq!(ready.path, READY_PATH);
        assert!(ready.open);
        let stream = grpc("/inference.GRPCInferenceService/ModelStreamInfer").unwrap();
        assert!(!stream.inference && stream.inference_stream && !stream.open);
        assert!(grpc("/grpc.health.v1.Health/Check").unwrap().open);
        assert!(grpc("/inference.GRPCInferenceService/CudaSharedMemoryStatus").is_some());
        assert!(grpc("/inference.GRPCInferenceService/TraceSetting").is_none());
        assert!(grpc("/nonsense").is_none() && grpc("").is_none());
    }

    #[test]
    fn a_request_finds_its_route_its_endpoint_and_its_model() {
        for route in http() {
            let found = find(route.path, &route.verb.method().unwrap()).unwrap();
            assert_eq!(found.endpoint, route.path);
            assert!(found.route.is_some_and(|found| std::ptr::eq(found, route)));
        }
        let infer = find("/v2/models/iris%2Dsvc%20v2/infer", &Method::POST).unwrap();
        assert_eq!(infer.endpoint, "/v2/models/{model}/infer");
        assert!(infer.route.unwrap().inference);
        assert_eq!(infer.model().as_deref(), Some("iris-svc v2"));
        let wrong_method = find("/v2/models/iris-svc/infer", &Method::GET).unwrap();
        assert_eq!(wrong_method.endpoint, "/v2/models/{model}/infer");
        assert!(wrong_method.route.is_none());
        assert_eq!(
            find("/models/%FF/predict", &Method::POST).unwrap().model(),
            None
        );
        assert_eq!(find("/predict", &Method::POST).unwrap().model(), None);
        assert!(find("/v2/models/iris-svc/nothing", &Method::GET).is_none());
        assert!(find("*", &Method::OPTIONS).is_none());
    }
}
