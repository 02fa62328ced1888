//! A model as the protocol describes it: its metadata, and Triton's model configuration.

use serde::Serialize;

use crate::bundle::TensorSpec;
use crate::model::Model;

/// What Triton and KServe call a model run by ONNX Runtime.
pub const PLATFORM: &str = "onnxruntime_onnx";

#[derive(Serialize)]
pub struct TensorMetadata<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    /// -1 for a dimension of any size.
    pub shape: &'a [i64],
}

#[derive(Serialize)]
pub struct ModelMetadata<'a> {
    pub name: &'a str,
    pub versions: [&'a str; 1],
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata<'a>>,
    pub outputs: Vec<TensorMetadata<'a>>,
}

fn describe(specs: &[TensorSpec]) -> Vec<TensorMetadata<'_>> {
    specs
        .iter()
        .map(|spec| TensorMetadata {
            name: &spec.name,
            datatype: spec.dtype.v2_name(),
            shape: &spec.shape,
        })
        .collect()
}

pub fn model_metadata(model: &Model) -> ModelMetadata<'_> {
    let config = &model.bundle().config;
    ModelMetadata {
        name: model.name(),
        versions: [&config.version],
        platform: PLATFORM,
        inputs: describe(&model.bundle().public_inputs),
        outputs: describe(&config.outputs),
    }
}

/// Triton's model configuration of a bundle (the model configuration extension), as Triton
/// would write it for the same ONNX model: with dynamic batching, `max_batch_size` is the
/// bundle's and the dims leave out the batch dimension; without, 0 and the whole shape.
#[derive(Serialize)]
pub struct ModelConfig<'a> {
    pub name: &'a str,
    pub platform: &'static str,
    pub backend: &'static str,
    /// Triton's int32, as the gRPC message has it.
    pub max_batch_size: i32,
    pub input: Vec<ConfigTensor<'a>>,
    pub output: Vec<ConfigTensor<'a>>,
    pub instance_group: [InstanceGroup; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
}

#[derive(Serialize)]
pub struct ConfigTensor<'a> {
    pub name: &'a str,
    /// Triton's name, `TYPE_FP32`.
    pub data_type: String,
    pub dims: Vec<i64>,
    /// As Triton configures a batched tensor of the batch dimension alone: dims `[1]` reshaped
    /// to `[]` (Triton refuses empty dims).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshape: Option<Reshape>,
}

#[derive(Serialize)]
pub struct Reshape {
    pub shape: [i64; 0],
}

#[derive(Serialize)]
pub struct InstanceGroup {
    pub name: &'static str,
    pub kind: &'static str,
    pub count: i32,
}

#[derive(Serialize)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
}

fn saturating_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// What Triton calls the backend of an ONNX model.
pub const BACKEND: &str = "onnxruntime";

/// Triton's name of a datatype in a model configuration: `TYPE_` and the protocol's name, but
/// BYTES, which Triton's configuration calls `TYPE_STRING`.
pub fn config_type_name(datatype: &str) -> String {
    match datatype {
        "BYTES" => "TYPE_STRING".to_string(),
        other => format!("TYPE_{other}"),
    }
}

pub fn model_config<'a>(model: &'a Model) -> ModelConfig<'a> {
    let config = &model.bundle().config;
    let batching = model.batching();
    let tensors = |specs: &'a [TensorSpec]| -> Vec<ConfigTensor<'a>> {
        specs
            .iter()
            .map(|spec| {
                let dims = match batching {
                    Some(_) => spec.shape.get(1..).unwrap_or_default().to_vec(),
                    None => spec.shape.clone(),
                };
                let batch_alone = batching.is_some() && dims.is_empty();
                ConfigTensor {
                    name: &spec.name,
                    data_type: config_type_name(spec.dtype.v2_name()),
                    dims: if batch_alone { vec![1] } else { dims },
                    reshape: batch_alone.then_some(Reshape { shape: [] }),
                }
            })
            .collect()
    };
    ModelConfig {
        name: model.name(),
        platform: PLATFORM,
        backend: BACKEND,
        max_batch_size: batching.map_or(0, |batching| saturating_i32(batching.max_rows)),
        input: tensors(&model.bundle().public_inputs),
        output: tensors(&config.outputs),
        instance_group: [InstanceGroup {
            name: "cpu",
            kind: "KIND_CPU",
            count: saturating_i32(model.instances()),
        }],
        dynamic_batching: batching.map(|batching| DynamicBatching {
            max_queue_delay_microseconds: batching.max_delay.as_micros() as u64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::echo;

    #[test]
    fn the_configuration_of_a_batched_model_leaves_out_the_batch_dimension() {
        let registry = echo(None);
        let model = &registry.models()[0];
        let config = model_config(model);
        assert_eq!(config.max_batch_size, 8);
        assert_eq!(config.input[0].dims, [3]);
        assert_eq!(config.input[0].data_type, "TYPE_FP32");
        assert!(config.dynamic_batching.is_some());
        let metadata = model_metadata(model);
        assert_eq!(metadata.inputs[0].shape, [-1, 3]);
        assert_eq!(metadata.versions, ["2.1.0"]);
        assert_eq!(config_type_name("BYTES"), "TYPE_STRING");
        assert_eq!(config_type_name("INT64"), "TYPE_INT64");
    }
}
