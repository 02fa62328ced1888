//! What the server says of itself (name, version) and which of Triton's extensions it serves,
//! or refuses by name.

use serde::Serialize;

use crate::serving::Registry;

pub const SERVER_NAME: &str = "predictor";
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The extensions served: Triton's binary tensor data (REST; over gRPC raw contents are part of
/// the protocol), classification, system shared memory (when `--allow-shared-memory` turns it
/// on; its calls say so otherwise), model configuration, statistics and model repository (its
/// index; load and unload are refused).
const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "system_shared_memory",
    "model_configuration",
    "statistics",
    "model_repository",
];

/// Triton's extensions this server does not serve: the REST path prefix and gRPC method prefix
/// of each, and what to say to a caller who tries one.
const UNSERVED: &[(&str, &str, &str)] = &[
    (
        "/v2/trace",
        "Trace",
        "Triton's trace extension is not served: request spans go to OpenTelemetry instead (a server built with the feature otlp, --otlp-endpoint)",
    ),
    (
        "/v2/logging",
        "Log",
        "Triton's logging extension is not served: set the log with --log and --log-format when the server starts",
    ),
];

const GENERATE_UNSERVED: &str = "Triton's generate extension is not served: it is for text generation; send the same inputs as tensors to the model's infer route, /v2/models/<name>/infer";

/// What to tell a caller of a REST path (`/v2/trace/setting`) or gRPC method (`TraceSetting`)
/// of an extension this server does not serve.
pub fn unserved_extension(path_or_method: &str) -> Option<&'static str> {
    // Triton's generate extension sits under each model (`/v2/models/{m}[/versions/{v}]/generate`)
    // and has no gRPC method.
    if let ["", "v2", "models", _, last] | ["", "v2", "models", _, "versions", _, last] =
        path_or_method.split('/').collect::<Vec<_>>().as_slice()
    {
        if matches!(*last, "generate" | "generate_stream") {
            return Some(GENERATE_UNSERVED);
        }
    }
    UNSERVED
        .iter()
        .find(|(path, method, _)| {
            path_or_method.starts_with(path) || path_or_method.starts_with(method)
        })
        .map(|(_, _, message)| *message)
}

/// The extensions this server serves, for `GET /v2` and gRPC `ServerMetadata`.
/// What the server says of itself (`GET /v2`, gRPC's ServerMetadata).
#[derive(Serialize)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: Vec<&'static str>,
}

pub fn server_metadata(registry: &Registry) -> ServerMetadata {
    ServerMetadata {
        name: SERVER_NAME,
        version: SERVER_VERSION,
        extensions: extensions(registry),
    }
}

fn extensions(registry: &Registry) -> Vec<&'static str> {
    EXTENSIONS
        .iter()
        .copied()
        .filter(|&extension| {
            extension != "system_shared_memory" || registry.shared_memory().is_enabled()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tritons_unserved_extensions_are_named_by_path_and_by_method() {
        let trace = unserved_extension("/v2/trace/setting").unwrap();
        assert!(trace.starts_with("Triton's trace extension is not served"));
        assert_eq!(unserved_extension("TraceSetting"), Some(trace));
        assert_eq!(unserved_extension("/v2/cudasharedmemory/status"), None);
        assert!(unserved_extension("TraceSetting")
            .unwrap()
            .contains("OpenTelemetry"));
        let generate = unserved_extension("/v2/models/m/versions/1/generate_stream").unwrap();
        assert!(generate.contains("/v2/models/<name>/infer"));
        assert_eq!(unserved_extension("/v2/models/m/infer"), None);
        assert_eq!(unserved_extension("ModelInfer"), None);
    }

    #[test]
    fn system_shared_memory_is_listed_only_when_it_is_on() {
        let off = extensions(&Registry::without_models());
        assert!(!off.contains(&"system_shared_memory"));
        assert!(off.contains(&"binary_tensor_data") && off.contains(&"statistics"));
        let folder = tempfile::tempdir().unwrap();
        let on = extensions(&crate::protocol::v2::testing::echo(Some(folder.path())));
        assert!(on.contains(&"system_shared_memory"));
    }
}
