//! The Open Inference Protocol v2 (KServe v2) apart from its transports, one concern per file.
//! The REST routes (`http::v2`) and the gRPC service ([`crate::transport::grpc`]) only translate
//! between their wire and these types, so both answer the same request with the same result or
//! the same error. An inference goes through the stages of [`infer`], in the order named there.

mod contents;
pub mod cuda_shared_memory;
mod extensions;
pub mod infer;
mod inputs;
mod metadata;
mod models;
mod outputs;
mod parameters;
mod shared_memory;
mod statistics;
pub mod triton_words;

pub use contents::TypedContents;
pub use extensions::{server_metadata, unserved_extension, ServerMetadata, SERVER_VERSION};
pub use infer::{Answer, AnswerOutput, InferRequest, InputData, InputRequest, ValidRequest};
pub use inputs::{InputSlot, RequestInputs};
pub use metadata::{
    config_type_name, model_config, model_metadata, ConfigTensor, DynamicBatching, InstanceGroup,
    ModelConfig, Reshape, TensorMetadata, BACKEND, PLATFORM,
};
pub use models::{find_model, refuse_load, repository_index, triton_version};
pub use outputs::{answer_tensor, choose_outputs, OutputChoice, RequestedOutput};
pub use parameters::{
    too_many_parameters, Parameter, Parameters, MAX_PARAMETERS, MAX_RANK, MAX_TENSORS,
};
pub use shared_memory::SharedMemorySpan;
pub use statistics::{model_statistics, statistics, Duration, ModelStatisticsReport};

use crate::serving::error::ServeError;

fn invalid(message: String) -> ServeError {
    ServeError::invalid(message)
}

/// What the unit tests of this protocol's stages serve.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Instant;

    use crate::bundle::Bundle;
    use crate::metrics::Metrics;
    use crate::model::{LoadOptions, Model};
    use crate::runtime::fake::FakeBackend;
    use crate::serving::shared_memory::SharedMemory;
    use crate::serving::{Limits, Registry};

    /// The fake backend's model: `y` = `x`, three values per row, batched, labelled.
    const ECHO: &str = r#"
schema_version = 1
name = "echo"
version = "2.1.0"
model = "model.onnx"
labels = ["a", "b", "c"]
[[inputs]]
name = "x"
dtype = "float32"
shape = [-1, 3]
[[outputs]]
name = "y"
dtype = "float32"
shape = [-1, 3]
[runtime]
max_batch_size = 8
[sample]
input = [[1, 2, 3]]
output = [[1, 2, 3]]
tolerance = 0
"#;

    pub fn iris() -> Bundle {
        Bundle::parse(
            Path::new("models/iris/predictor.toml"),
            crate::bundle::IRIS_FOR_TESTS,
        )
        .unwrap()
    }

    /// A registry serving the fake backend's echo model, with the system shared memory
    /// extension on for the objects under `shared_memory` when given.
    pub fn echo(shared_memory: Option<&Path>) -> Arc<Registry> {
        let bundle = Bundle::parse(Path::new("echo/predictor.toml"), ECHO).unwrap();
        let metrics = Metrics::new();
        let model = Model::start(
            bundle,
            vec![FakeBackend::echo()],
            String::new(),
            1,
            Instant::now(),
            &LoadOptions::default(),
            &metrics,
        )
        .unwrap();
        let registry = Registry::new(vec![model], Arc::new(metrics), Limits::default(), None);
        Arc::new(match shared_memory {
            Some(folder) => registry.with_shared_memory(SharedMemory::enabled(folder.into())),
            None => registry,
        })
    }
}
