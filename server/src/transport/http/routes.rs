//! Every HTTP route, declared once: its path and method, which API it belongs to, whether it is
//! about one model, open without a token, and an inference (admitted, with a deadline), and what
//! it takes and answers. The router, the token gate, the admission gate, the metric labels and
//! the OpenAPI document are all derived from [`ROUTES`]; nothing keeps a second list.

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};

use super::{docs, openapi, seed, v2, AppState};
use crate::defaults::{LIVE_PATH, READY_PATH};

/// The API a route belongs to (its OpenAPI tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Seed,
    V2,
    Server,
}

impl Api {
    pub fn tag(self) -> &'static str {
        match self {
            Api::Seed => "Seed API",
            Api::V2 => "Open Inference Protocol v2",
            Api::Server => "Server",
        }
    }
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
        }
    }

    /// As OpenAPI names it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
        }
    }
}

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
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// The JSON schema of the request body, if it takes one.
    pub takes: Option<&'static str>,
    pub answers: Answer,
    /// The 503 of the seed's health routes, with its Health body, besides the Error default.
    pub unready_503: bool,
    /// In the OpenAPI document (the API page and its files are not).
    pub documented: bool,
    handler: fn() -> MethodRouter<AppState>,
}

impl Route {
    const fn get(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: fn() -> MethodRouter<AppState>,
    ) -> Route {
        Route {
            path,
            verb: Verb::Get,
            api: Api::Seed,
            model_scoped: false,
            open: false,
            inference: false,
            operation_id,
            summary,
            takes: None,
            answers: Answer::YesOrNo("ServerReady"),
            unready_503: false,
            documented: true,
            handler,
        }
    }

    const fn post(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: fn() -> MethodRouter<AppState>,
    ) -> Route {
        Route {
            verb: Verb::Post,
            ..Route::get(path, operation_id, summary, handler)
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

    /// The handler, as the router mounts it.
    pub fn handler(&self) -> MethodRouter<AppState> {
        (self.handler)()
    }

    /// Whether the handler picks the request id itself (the v2 request's own `id` goes first).
    pub fn handler_chooses_request_id(&self) -> bool {
        self.api == Api::V2 && self.inference
    }
}

/// The seed's per-model routes, once under `/models/{model}` and once at the root for the only
/// model served.
macro_rules! seed_routes {
    ($($path:literal, $id:literal, $summary:literal, $method:ident($handler:path), |$r:ident| $more:expr;)*) => {
        [
            $({
                let $r = Route::$method(concat!("/models/{model}", $path), $id, $summary, || $method($handler)).model();
                $more
            },)*
            $({
                let $r = Route::$method(
                    $path,
                    concat!($id, "OfTheOnlyModel"),
                    concat!($summary, " (the only model served; 404 when there are several)"),
                    || $method($handler),
                )
                .model();
                $more
            },)*
        ]
    };
}

static SEED_MODEL_ROUTES: [Route; 12] = seed_routes! {
    "/metadata", "metadata", "The model's bundle: inputs, outputs, prediction output, labels",
        get(seed::metadata), |r| r.answers("Metadata");
    "/label", "labels", "The model's class labels", get(seed::labels), |r| r.answers("Labels");
    "/predict", "predict", "Run the model on rows; answers the prediction output",
        post(seed::predict), |r| r.inference().takes("PredictRequest").answers("Prediction");
    "/predict/label", "predictLabel", "Run the model on rows; answers each row's label",
        post(seed::predict_label), |r| r.inference().takes("PredictRequest").answers("LabelPrediction");
    "/predict/test", "predictTest", "Run the model on its bundle's sample",
        get(seed::predict_test), |r| r.inference().answers("Prediction");
    "/predict/test/label", "predictTestLabel", "Run the model on its bundle's sample; each row's label",
        get(seed::predict_test_label), |r| r.inference().answers("LabelPrediction");
};

const INFER_SUMMARY: &str =
    "Run the model (JSON; Triton's binary tensor data extension is also accepted, see docs/api.md)";

static OTHER_ROUTES: [Route; 29] = [
    Route::get(
        "/health",
        "health",
        "Whether the server is ready (every model loaded and checked)",
        || get(seed::health),
    )
    .open()
    .answers("Health")
    .unready_503(),
    Route::get(
        "/models",
        "listModels",
        "The models this server serves",
        || get(seed::list_models),
    )
    .answers("ModelList"),
    Route::get(
        "/models/{model}/health",
        "modelHealth",
        "Whether the server is ready for this model",
        || get(seed::model_health),
    )
    .model()
    .open()
    .answers("Health")
    .unready_503(),
    Route::get("/v2", "serverMetadata", "Server metadata", || {
        get(v2::server_metadata)
    })
    .api(Api::V2)
    .answers("ServerMetadata"),
    Route {
        answers: Answer::Yes("ServerLive"),
        ..Route::get(
            LIVE_PATH,
            "serverLive",
            "Whether the server is live",
            || get(v2::live),
        )
        .api(Api::V2)
        .open()
    },
    Route::get(
        READY_PATH,
        "serverReady",
        "Whether the server is ready",
        || get(v2::ready),
    )
    .api(Api::V2)
    .open(),
    Route::get(
        "/v2/models/{model}",
        "modelMetadata",
        "Model metadata",
        || get(v2::model_metadata),
    )
    .api(Api::V2)
    .model()
    .answers("ModelMetadata"),
    Route::get(
        "/v2/models/{model}/ready",
        "modelReady",
        "Whether the model is ready",
        || get(v2::model_ready),
    )
    .api(Api::V2)
    .model()
    .open()
    .ready_body("ModelReady"),
    Route::post(
        "/v2/models/{model}/infer",
        "modelInfer",
        INFER_SUMMARY,
        || post(v2::infer),
    )
    .api(Api::V2)
    .model()
    .inference()
    .takes("InferRequest")
    .answers("InferResponse"),
    Route::get(
        "/v2/models/stats",
        "allModelStatistics",
        "Triton's statistics of every model (the statistics extension)",
        || get(v2::all_statistics),
    )
    .api(Api::V2)
    .answers("ModelStatistics"),
    Route::get(
        "/v2/models/{model}/stats",
        "modelStatistics",
        "Triton's statistics of the model (the statistics extension)",
        || get(v2::model_statistics),
    )
    .api(Api::V2)
    .model()
    .answers("ModelStatistics"),
    Route::get(
        "/v2/models/{model}/versions/{version}/stats",
        "modelStatisticsVersion",
        "Triton's statistics of the model (the statistics extension)",
        || get(v2::model_statistics),
    )
    .api(Api::V2)
    .model()
    .answers("ModelStatistics"),
    Route::post(
        "/v2/repository/index",
        "repositoryIndex",
        "The served models and their state (the model repository extension)",
        || post(v2::repository_index),
    )
    .api(Api::V2)
    .answers("RepositoryIndex"),
    Route::post(
        "/v2/repository/models/{model}/load",
        "repositoryModelLoad",
        "Refused: a predictor's models are fixed by its image or unit",
        || post(v2::repository_load),
    )
    .api(Api::V2)
    .answers("Error"),
    Route::post(
        "/v2/repository/models/{model}/unload",
        "repositoryModelUnload",
        "Refused: a predictor's models are fixed by its image or unit",
        || post(v2::repository_unload),
    )
    .api(Api::V2)
    .answers("Error"),
    Route::get(
        "/v2/models/{model}/config",
        "modelConfig",
        "Triton's model configuration of the model (the model configuration extension)",
        || get(v2::model_config),
    )
    .api(Api::V2)
    .model()
    .answers("ModelConfig"),
    Route::get(
        "/v2/models/{model}/versions/{version}/config",
        "modelConfigVersion",
        "Triton's model configuration of the model (the model configuration extension)",
        || get(v2::model_config),
    )
    .api(Api::V2)
    .model()
    .answers("ModelConfig"),
    Route::get(
        "/v2/models/{model}/versions/{version}",
        "modelMetadataVersion",
        "Model metadata",
        || get(v2::model_metadata),
    )
    .api(Api::V2)
    .model()
    .answers("ModelMetadata"),
    Route::get(
        "/v2/models/{model}/versions/{version}/ready",
        "modelReadyVersion",
        "Whether the model is ready",
        || get(v2::model_ready),
    )
    .api(Api::V2)
    .model()
    .open()
    .ready_body("ModelReady"),
    Route::post(
        "/v2/models/{model}/versions/{version}/infer",
        "modelInferVersion",
        INFER_SUMMARY,
        || post(v2::infer),
    )
    .api(Api::V2)
    .model()
    .inference()
    .takes("InferRequest")
    .answers("InferResponse"),
    Route::get(
        "/v2/systemsharedmemory/status",
        "systemSharedMemoryStatus",
        "The registered system shared memory regions (with --allow-shared-memory)",
        || get(v2::shared_memory_status_all),
    )
    .api(Api::V2)
    .answers("SharedMemoryStatus"),
    Route::get(
        "/v2/systemsharedmemory/region/{region}/status",
        "systemSharedMemoryRegionStatus",
        "One registered system shared memory region (with --allow-shared-memory)",
        || get(v2::shared_memory_status),
    )
    .api(Api::V2)
    .answers("SharedMemoryStatus"),
    Route::post(
        "/v2/systemsharedmemory/region/{region}/register",
        "systemSharedMemoryRegister",
        "Register a region of a POSIX shared memory object for inputs and outputs (with --allow-shared-memory)",
        || post(v2::shared_memory_register),
    )
    .api(Api::V2)
    .takes("SharedMemoryRegister")
    .answers("Empty"),
    Route::post(
        "/v2/systemsharedmemory/unregister",
        "systemSharedMemoryUnregisterAll",
        "Unregister every system shared memory region (with --allow-shared-memory)",
        || post(v2::shared_memory_unregister_all),
    )
    .api(Api::V2)
    .answers("Empty"),
    Route::post(
        "/v2/systemsharedmemory/region/{region}/unregister",
        "systemSharedMemoryUnregister",
        "Unregister a system shared memory region (with --allow-shared-memory)",
        || post(v2::shared_memory_unregister),
    )
    .api(Api::V2)
    .answers("Empty"),
    Route::get("/docs", "docs", "The API page (Swagger UI)", || {
        get(docs::page)
    })
    .api(Api::Server)
    .open()
    .undocumented(),
    Route::get(
        "/docs/swagger-ui-bundle.js",
        "docsScript",
        "The API page's script",
        || get(docs::bundle),
    )
    .api(Api::Server)
    .open()
    .undocumented(),
    Route::get(
        "/docs/swagger-ui.css",
        "docsStyle",
        "The API page's style",
        || get(docs::style),
    )
    .api(Api::Server)
    .open()
    .undocumented(),
    Route {
        answers: Answer::Document,
        ..Route::get("/openapi.json", "openapi", "This document", || {
            get(openapi::serve)
        })
        .api(Api::Server)
        .open()
    },
];

/// Every route of the HTTP listener.
pub fn all() -> impl Iterator<Item = &'static Route> {
    OTHER_ROUTES.iter().chain(SEED_MODEL_ROUTES.iter())
}

/// The route a request matched (axum's `MatchedPath`) with its method; None for a request that
/// matched none (answered 404 or 405).
pub fn find(path: &str, method: &Method) -> Option<&'static Route> {
    all().find(|route| route.path == path && route.verb.method() == method)
}
