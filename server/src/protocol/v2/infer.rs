//! One v2 inference, whatever wire it came on. REST (JSON, and Triton's binary data after it)
//! and gRPC each decode their message into an [`InferRequest`] and encode the [`Answer`]; in
//! between, the stages run in this order, each named here:
//!
//! 1. [`validate`]: the inputs against the bundle's declarations (name, datatype, shape, data;
//!    symbolic dimensions and bounds are the model's, checked as it is queued), the outputs asked
//!    for; inputs in shared memory are read. A [`ValidRequest`] holds the model's tensors.
//! 2. preprocess: none yet. Text and images, from the bundle's own data, go here.
//! 3. [`answer`]: queue for the model, batched with other requests' rows, and run
//!    ([`Model::infer`]); then
//! 4. postprocess: each output as asked (classification, [`answer_tensor`]), written to shared
//!    memory when asked.
//! 5. encode: the wire's own, from the [`Answer`].
//!
//! The place among the requests in flight is taken before the body is read and decoded, by the
//! transports' gates; a decode that may take long runs off the reactor
//! ([`crate::serving::decoding`]).

use bytes::Bytes;
use serde_json::value::RawValue;

use super::contents::TypedContents;
use super::inputs::RequestInputs;
use super::invalid;
use super::outputs::{answer_tensor, choose_outputs, OutputChoice, RequestedOutput};
use super::shared_memory::SharedMemorySpan;
use crate::bundle::Bundle;
use crate::model::Model;
use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::tensor::{Tensor, TensorData};
use crate::text::clip;

/// An inference request as its wire gave it, before any check against the model.
#[derive(Debug)]
pub struct InferRequest {
    /// The request's own `id`, answered back.
    pub id: Option<String>,
    pub inputs: Vec<InputRequest>,
    /// The outputs asked for, in the order asked; none asks for every output.
    pub outputs: Vec<RequestedOutput>,
    /// Whether an output goes back as binary data when it does not say (REST's
    /// `binary_data_output`; gRPC's outputs are always raw bytes).
    pub binary_default: bool,
}

/// One input tensor of a request, as sent.
#[derive(Debug)]
pub struct InputRequest {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: InputData,
}

/// Where an input's values are, in the form the wire carried them; decoded once its datatype and
/// shape are checked, straight into the tensor.
#[derive(Debug)]
pub enum InputData {
    /// JSON values, nested or flat: REST's `data`.
    Json(Box<RawValue>),
    /// REST's `data` of BYTES elements each in base64 (the input's `content_type` parameter
    /// says "base64"): how JSON carries bytes that are not text, such as an image.
    Base64Json(Box<RawValue>),
    /// Little-endian bytes (BYTES: each element its 4-byte length, then its bytes): REST's
    /// binary data, gRPC's `raw_input_contents`.
    Raw(Bytes),
    /// gRPC's typed `contents`.
    Typed(TypedContents),
    /// The system shared memory extension: a span of a registered region.
    SharedMemory(SharedMemorySpan),
}

impl InputData {
    /// An input's data from the places its wire may put it: in the message itself (`inline`),
    /// in bytes beside it (`raw`), or in shared memory; exactly one. `places` names the first two
    /// as the wire calls them, and `owner` the input, for messages.
    pub fn placed(
        owner: impl Fn() -> String,
        [inline, raw]: [Option<InputData>; 2],
        shared_memory: Option<SharedMemorySpan>,
        [inline_place, raw_place]: [&str; 2],
    ) -> Result<InputData, ServeError> {
        match (inline, raw, shared_memory) {
            (Some(data), None, None) | (None, Some(data), None) => Ok(data),
            (None, None, Some(span)) => Ok(InputData::SharedMemory(span)),
            (None, None, None) => Err(invalid(format!(
                "{} has no data: give {inline_place}, or {raw_place}, or a shared memory region",
                owner()
            ))),
            (Some(_), Some(_), _) => Err(invalid(format!(
                "{} has both {inline_place} and {raw_place}; send one",
                owner()
            ))),
            (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => Err(invalid(format!(
                "{} has its data in the request and in shared memory; send one",
                owner()
            ))),
        }
    }
}

/// A request checked against the model: one tensor per declared input, in declaration order,
/// and the outputs to answer.
#[derive(Debug)]
pub struct ValidRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<OutputChoice>,
}

/// Stage 1: checks `request` against `bundle`'s declarations and decodes its inputs. A request's
/// inputs in shared memory together hold at most `--max-body-bytes`, as its body does.
pub fn validate(
    registry: &Registry,
    bundle: &Bundle,
    request: InferRequest,
) -> Result<ValidRequest, ServeError> {
    let mut inputs = RequestInputs::new(bundle);
    let mut shared_memory_budget = registry.limits().max_body_bytes;
    for input in request.inputs {
        let slot = inputs.slot(&input.name, &input.datatype, &input.shape)?;
        let owner = || format!("input '{}'", clip(&input.name));
        let data = match input.data {
            InputData::Json(values) => {
                TensorData::from_json_leaves(values.get(), slot.dtype, slot.count)
                    .map_err(|error| invalid(format!("{}: {error}", owner())))?
            }
            InputData::Base64Json(values) => {
                TensorData::from_json_leaves(values.get(), slot.dtype, slot.count)
                    .map_err(|error| error.to_string())
                    .and_then(TensorData::from_base64)
                    .map_err(|problem| invalid(format!("{}: {problem}", owner())))?
            }
            InputData::Raw(bytes) => inputs.decode_raw(&slot, &bytes)?,
            InputData::Typed(contents) => contents
                .into_data(slot.dtype)
                .map_err(|problem| invalid(format!("{}: {problem}", owner())))?,
            InputData::SharedMemory(span) => {
                let bytes = span.read(registry, &owner(), &mut shared_memory_budget)?;
                inputs.decode_raw(&slot, &bytes)?
            }
        };
        inputs.fill(slot, data)?;
    }
    for output in &request.outputs {
        if let Some(span) = &output.shared_memory {
            span.check_writable(registry, &format!("output '{}'", clip(&output.name)))?;
        }
    }
    let outputs = choose_outputs(bundle, request.outputs, request.binary_default)?;
    Ok(ValidRequest {
        id: request.id,
        inputs: inputs.finish()?,
        outputs,
    })
}

/// What the wire encodes: each output asked for, in the order asked.
#[derive(Debug)]
pub struct Answer<'m> {
    pub model_name: &'m str,
    pub model_version: &'m str,
    pub id: Option<String>,
    pub outputs: Vec<AnswerOutput<'m>>,
}

#[derive(Debug)]
pub struct AnswerOutput<'m> {
    pub name: &'m str,
    pub tensor: Tensor,
    pub placement: Placement,
}

/// Where an output's values go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the answer, in the wire's own form (REST: JSON `data`; gRPC: raw bytes).
    InAnswer,
    /// As binary data after the JSON (REST's binary extension; gRPC: raw bytes as well).
    Binary,
    /// Already written to shared memory: the answer carries its name, datatype and shape only.
    SharedMemory,
}

/// Stages 3 and 4: queues `request` for `model` (batched and run by its worker), then makes each
/// output what was asked of it.
pub async fn answer<'m>(
    registry: &Registry,
    model: &'m Model,
    request: ValidRequest,
) -> Result<Answer<'m>, ServeError> {
    let tensors = model.infer(request.inputs).await?;
    postprocess(registry, model, request.id, &request.outputs, tensors)
}

/// Stage 4: each output asked for, in the order asked: classified when asked, and written to its
/// shared memory when asked.
fn postprocess<'m>(
    registry: &Registry,
    model: &'m Model,
    id: Option<String>,
    chosen: &[OutputChoice],
    tensors: Vec<Tensor>,
) -> Result<Answer<'m>, ServeError> {
    let bundle = model.bundle();
    let specs = &bundle.config.outputs;
    // Each output is asked for at most once (choose_outputs refuses a second time): taken, not
    // copied.
    let mut tensors: Vec<Option<Tensor>> = tensors.into_iter().map(Some).collect();
    let mut outputs = Vec::with_capacity(chosen.len());
    for choice in chosen {
        let name = specs[choice.index].name.as_str();
        let tensor = tensors
            .get_mut(choice.index)
            .and_then(Option::take)
            .ok_or_else(|| {
                ServeError::internal(format!("the model gave no tensor for output '{name}'"))
            })?;
        let tensor = answer_tensor(bundle, model.batching().is_some(), choice, tensor)?;
        let placement = match &choice.shared_memory {
            Some(span) => {
                span.write(registry, &format!("output '{name}'"), &tensor)?;
                Placement::SharedMemory
            }
            None if choice.binary => Placement::Binary,
            None => Placement::InAnswer,
        };
        outputs.push(AnswerOutput {
            name,
            tensor,
            placement,
        });
    }
    Ok(Answer {
        model_name: model.name(),
        model_version: &bundle.config.version,
        id,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::{echo, iris};
    use crate::serving::error::ErrorKind;

    const ROW: [f32; 4] = [5.1, 3.5, 1.4, 0.2];

    fn input(data: InputData) -> InputRequest {
        InputRequest {
            name: "input".to_string(),
            datatype: "FP32".to_string(),
            shape: vec![1, 4],
            data,
        }
    }

    fn request(inputs: Vec<InputRequest>, outputs: Vec<RequestedOutput>) -> InferRequest {
        InferRequest {
            id: Some("42".to_string()),
            inputs,
            outputs,
            binary_default: false,
        }
    }

    fn output(name: &str) -> RequestedOutput {
        RequestedOutput {
            name: name.to_string(),
            binary: None,
            classification: None,
            shared_memory: None,
        }
    }

    fn json(text: &str) -> InputData {
        InputData::Json(RawValue::from_string(text.to_string()).unwrap())
    }

    fn little_endian(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }

    #[test]
    fn every_wire_form_of_the_same_values_validates_to_the_same_tensor() {
        let registry = Registry::without_models();
        let forms = [
            json("[[5.1, 3.5, 1.4, 0.2]]"),
            json("[5.1, 3.5, 1.4, 0.2]"),
            InputData::Raw(little_endian(&ROW).into()),
            InputData::Typed(TypedContents {
                fp32_contents: ROW.to_vec(),
                ..TypedContents::default()
            }),
        ];
        for data in forms {
            let valid = validate(&registry, &iris(), request(vec![input(data)], vec![])).unwrap();
            assert_eq!(valid.id.as_deref(), Some("42"));
            assert_eq!(valid.inputs.len(), 1);
            assert_eq!(valid.inputs[0].shape(), [1, 4]);
            assert_eq!(*valid.inputs[0].data(), TensorData::Float32(ROW.to_vec()));
        }
    }

    #[test]
    fn no_output_named_asks_for_every_output_in_declaration_order() {
        let registry = Registry::without_models();
        let all = validate(
            &registry,
            &iris(),
            request(vec![input(json("[5.1, 3.5, 1.4, 0.2]"))], vec![]),
        )
        .unwrap();
        let indices: Vec<usize> = all.outputs.iter().map(|choice| choice.index).collect();
        assert_eq!(indices, [0, 1]);
        let one = request(
            vec![input(json("[5.1, 3.5, 1.4, 0.2]"))],
            vec![output("probabilities")],
        );
        let one = validate(&registry, &iris(), one).unwrap();
        assert_eq!(one.outputs.len(), 1);
        assert_eq!(one.outputs[0].index, 1);
    }

    #[test]
    fn the_datatype_and_shape_are_checked_before_the_data_is_read() {
        let registry = Registry::without_models();
        let wrong_type = InputRequest {
            datatype: "FP64".to_string(),
            ..input(json(r#"["not", "numbers"]"#))
        };
        let error = validate(&registry, &iris(), request(vec![wrong_type], vec![])).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            error.public_message(),
            "input 'input' expects datatype FP32, received FP64"
        );
        let short = InputData::Raw(little_endian(&ROW[..3]).into());
        let error = validate(&registry, &iris(), request(vec![input(short)], vec![])).unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'input' has shape [1, 4] of FP32, which takes 16 bytes, but 12 bytes were sent"
        );
        let error = validate(&registry, &iris(), request(vec![], vec![])).unwrap_err();
        assert_eq!(
            error.public_message(),
            "missing input 'input'; model 'iris' needs 'input'"
        );
    }

    #[test]
    fn typed_contents_in_the_field_of_another_datatype_are_refused() {
        let registry = Registry::without_models();
        let misplaced = InputData::Typed(TypedContents {
            fp64_contents: vec![5.1, 3.5, 1.4, 0.2],
            ..TypedContents::default()
        });
        let error =
            validate(&registry, &iris(), request(vec![input(misplaced)], vec![])).unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'input': FP32 values go in contents.fp32_contents, but contents.fp64_contents has values"
        );
    }

    #[test]
    fn shared_memory_is_refused_while_the_extension_is_off() {
        let registry = Registry::without_models();
        let span = SharedMemorySpan {
            region: "r".to_string(),
            offset: 0,
            byte_size: 16,
        };
        let error = validate(
            &registry,
            &iris(),
            request(vec![input(InputData::SharedMemory(span))], vec![]),
        )
        .unwrap_err();
        assert!(
            error.public_message().contains("--allow-shared-memory"),
            "{}",
            error.public_message()
        );
    }

    #[tokio::test]
    async fn answer_runs_the_model_then_gives_each_output_as_asked() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("object"), [0u8; 32]).unwrap();
        let registry = echo(Some(folder.path()));
        registry
            .shared_memory()
            .register("out", "object", 0, 32)
            .unwrap();
        let model = registry.models()[0].clone();
        let rows = [0.1f32, 0.7, 0.2, 0.5, 0.4, 0.1];
        let x = |data| InputRequest {
            name: "x".to_string(),
            datatype: "FP32".to_string(),
            shape: vec![2, 3],
            data,
        };
        let classified = RequestedOutput {
            classification: Some(2),
            ..output("y")
        };
        let valid = validate(
            &registry,
            model.bundle(),
            request(
                vec![x(InputData::Raw(little_endian(&rows).into()))],
                vec![classified],
            ),
        )
        .unwrap();
        let answered = super::answer(&registry, &model, valid).await.unwrap();
        assert_eq!(
            (answered.model_name, answered.model_version),
            ("echo", "2.1.0")
        );
        assert_eq!(answered.id.as_deref(), Some("42"));
        assert_eq!(answered.outputs.len(), 1);
        let classes = &answered.outputs[0];
        assert_eq!(
            (classes.name, classes.placement),
            ("y", Placement::InAnswer)
        );
        assert_eq!(classes.tensor.shape(), [2, 2]);
        assert_eq!(
            *classes.tensor.data(),
            TensorData::String(
                [
                    "0.700000:1:b",
                    "0.200000:2:c",
                    "0.500000:0:a",
                    "0.400000:1:b"
                ]
                .map(str::to_string)
                .to_vec()
            )
        );

        let in_shared_memory = RequestedOutput {
            shared_memory: Some(SharedMemorySpan {
                region: "out".to_string(),
                offset: 8,
                byte_size: 24,
            }),
            ..output("y")
        };
        let valid = validate(
            &registry,
            model.bundle(),
            request(
                vec![x(InputData::Raw(little_endian(&rows).into()))],
                vec![in_shared_memory],
            ),
        )
        .unwrap();
        let answered = super::answer(&registry, &model, valid).await.unwrap();
        assert_eq!(answered.outputs[0].placement, Placement::SharedMemory);
        let written = std::fs::read(folder.path().join("object")).unwrap();
        assert_eq!(&written[..8], [0; 8]);
        assert_eq!(&written[8..], little_endian(&rows));
    }
}
