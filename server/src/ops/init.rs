//! `predictor init`: a starting `predictor.toml` read off an ONNX graph. Its sample input is all
//! zeros and its sample output empty, so `predictor check` refuses it until a person fills them in.

use std::fmt::Write;
use std::path::Path;

use crate::bundle::SCHEMA_VERSION;
use crate::runtime::{
    class_maps_text, Backend, GraphValue, GraphValueKind, OnnxRuntime, RuntimeError,
};
use crate::tensor::{DType, Tensor};
use crate::text::ShapeText;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{model}: input '{name}' is {type_name}, which predictor cannot serve; export the model with tensor inputs")]
    UnsupportedInput {
        model: String,
        name: String,
        type_name: String,
    },
    #[error("{0}: the model has no tensor output that predictor can serve")]
    NoOutput(String),
}

/// Turns any file or folder name into a valid bundle name.
pub fn bundle_name_from(raw: &str) -> String {
    let name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches(['.', '_', '-']);
    if name.is_empty() {
        "model".to_string()
    } else {
        name.to_string()
    }
}

/// A starting `predictor.toml`, and what a person must know about it (said on the terminal).
pub struct Scaffold {
    pub text: String,
    /// Outputs left out, and why; each says what to do.
    pub notes: Vec<String>,
}

/// A declared value of the scaffold: name, dtype and shape.
type Declared = (String, DType, Vec<i64>);

/// The text of a `predictor.toml` for `model` (whose file name is written as `model_file`).
pub fn scaffold(
    runtime: &OnnxRuntime,
    model: &Path,
    model_file: &str,
    name: &str,
) -> Result<Scaffold, InitError> {
    let mut backend = runtime.open(model, 1)?;
    let signature = backend.signature().clone();
    let mut inputs: Vec<Declared> = Vec::new();
    for value in &signature.inputs {
        match &value.kind {
            GraphValueKind::Tensor { dtype, shape } => {
                inputs.push((value.name.clone(), *dtype, shape.clone()))
            }
            GraphValueKind::ClassScores { key } => {
                return Err(unsupported_input(model, value, &class_maps_text(*key)))
            }
            GraphValueKind::Unsupported(type_name) => {
                return Err(unsupported_input(model, value, type_name))
            }
        }
    }
    // Sequences of class maps (ZipMap) are served as class scores; their class count, and their
    // names when the classes are text, come from one run on zeros.
    let class_maps: Vec<usize> = signature
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.kind, GraphValueKind::ClassScores { .. }))
        .map(|(index, _)| index)
        .collect();
    let mut notes = Vec::new();
    let mut classes: Vec<Option<Vec<String>>> = vec![None; signature.outputs.len()];
    if !class_maps.is_empty() {
        match backend.run(zero_inputs(&inputs), &class_maps) {
            Ok(_) => {
                for &index in &class_maps {
                    classes[index] = backend.class_keys(index).map(<[String]>::to_vec);
                }
            }
            Err(error) => notes.push(format!(
                "could not run the model on zeros to count the classes of its class maps ({error}); fill in their shape [-1, <classes>]"
            )),
        }
    }
    let mut outputs: Vec<Declared> = Vec::new();
    // The classes named by text, for labels.
    let mut class_names: Option<Vec<String>> = None;
    for (index, value) in signature.outputs.iter().enumerate() {
        match &value.kind {
            GraphValueKind::Tensor { dtype, shape } => {
                outputs.push((value.name.clone(), *dtype, shape.clone()))
            }
            GraphValueKind::ClassScores { key } => {
                let count = classes[index].as_ref().map_or(-1, |keys| keys.len() as i64);
                if *key == DType::String && class_names.is_none() {
                    class_names = classes[index].clone();
                }
                outputs.push((value.name.clone(), DType::Float32, vec![-1, count]));
            }
            GraphValueKind::Unsupported(type_name) => notes.push(format!(
                "output '{}' is left out: it is {type_name}, which predictor cannot serve; to serve it, export it as a tensor (skl2onnx: options={{id(model): {{\"zipmap\": False}}}} makes the probabilities one) or as a sequence of maps from class to FP32 (scikit-learn's ZipMap)",
                value.name
            )),
        }
    }
    let class_scores = class_maps
        .first()
        .map(|&index| signature.outputs[index].name.as_str());
    let prediction = likely_prediction(&outputs, class_scores)
        .ok_or_else(|| InitError::NoOutput(model.display().to_string()))?;
    // Text classes are labels only when the prediction is the class scores they name.
    let labels = class_names.filter(|_| {
        class_maps.iter().any(|&index| {
            signature.outputs[index].name == prediction.0
                && matches!(
                    signature.outputs[index].kind,
                    GraphValueKind::ClassScores { key: DType::String }
                )
        })
    });

    let mut text = String::new();
    let out = &mut text;
    let _ = writeln!(
        out,
        "# Written by `predictor init` from {model_file}; edit it, then run `predictor check`."
    );
    let _ = writeln!(out, "schema_version = {SCHEMA_VERSION}");
    let _ = writeln!(out, "name = {}", quote(name));
    let _ = writeln!(out, "version = \"0.1.0\"");
    let _ = writeln!(out, "description = \"\"");
    let _ = writeln!(out, "model = {}", quote(model_file));
    match &labels {
        Some(labels) => {
            let _ = writeln!(
                out,
                "# Class names for /predict/label: the model's own classes, in its order."
            );
            let quoted: Vec<String> = labels.iter().map(|l| quote(l)).collect();
            let _ = writeln!(out, "labels = [{}]", quoted.join(", "));
        }
        None => {
            let _ = writeln!(
                out,
                "# Class names, in class order, for /predict/label; leave empty if there are none."
            );
            let _ = writeln!(out, "labels = []");
        }
    }
    let _ = writeln!(out, "# The output that /predict returns.");
    let _ = writeln!(out, "prediction = {}", quote(&prediction.0));
    for (section, values) in [("inputs", &inputs), ("outputs", &outputs)] {
        for (name, dtype, shape) in values.iter() {
            let _ = writeln!(out, "\n[[{section}]]");
            let _ = writeln!(out, "name = {}", quote(name));
            let _ = writeln!(out, "dtype = \"{dtype}\"");
            let _ = writeln!(out, "shape = {}", ShapeText(shape));
            let class_maps = signature.outputs.iter().find_map(|v| match v.kind {
                GraphValueKind::ClassScores { key } if v.name == *name => Some(key),
                _ => None,
            });
            if let Some(key) = class_maps {
                let _ = writeln!(
                    out,
                    "# The model gives {}: served as class scores [rows, classes], in class order.",
                    class_maps_text(key)
                );
            }
        }
    }
    for note in &notes {
        let _ = writeln!(out, "\n# {note}");
    }
    let _ = writeln!(out, "\n[sample]");
    let _ = writeln!(
        out,
        "# Replace with a real input and the '{}' your training code computes for it.",
        prediction.0
    );
    let sample = match inputs.as_slice() {
        [(_, dtype, shape)] => zeros(*dtype, shape),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(|(name, dtype, shape)| format!("{} = {}", quote(name), zeros(*dtype, shape)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _ = writeln!(out, "input = {sample}");
    let _ = writeln!(out, "output = []");
    let _ = writeln!(out, "tolerance = 1e-4");
    let _ = writeln!(out, "\n[runtime]");
    let _ = writeln!(
        out,
        "# Optional hints, which serve's flags override. Without `threads`, each instance of the"
    );
    let _ = writeln!(
        out,
        "# model gets a share of the CPUs the server may use; `max_batch_size` batches requests."
    );
    let _ = writeln!(out, "# threads = 1");
    let _ = writeln!(out, "# max_batch_size = 32");
    Ok(Scaffold { text, notes })
}

/// The output a caller most likely wants from `/predict`: the class scores (`class_scores`, a
/// class map's name) first, then floats named as probabilities, then one float row per request
/// (a sentence encoder's pooled `[rows, 384]` rather than its token-level `[rows, tokens, 384]`),
/// then any float, then the first output.
fn likely_prediction<'a>(
    outputs: &'a [Declared],
    class_scores: Option<&str>,
) -> Option<&'a Declared> {
    let float = |(_, dtype, _): &&Declared| dtype.is_float();
    class_scores
        .and_then(|wanted| outputs.iter().find(|(name, _, _)| name == wanted))
        .or_else(|| {
            outputs
                .iter()
                .filter(float)
                .find(|(name, _, _)| name.to_ascii_lowercase().contains("prob"))
        })
        .or_else(|| {
            outputs
                .iter()
                .filter(float)
                .find(|(_, _, shape)| shape.len() == 2)
        })
        .or_else(|| outputs.iter().find(float))
        .or_else(|| outputs.first())
}

fn unsupported_input(model: &Path, value: &GraphValue, type_name: &str) -> InitError {
    InitError::UnsupportedInput {
        model: model.display().to_string(),
        name: value.name.clone(),
        type_name: type_name.to_string(),
    }
}

/// One input per declared input, of zeros (empty strings), one row for each dynamic dimension.
fn zero_inputs(inputs: &[Declared]) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|(_, dtype, shape)| {
            let dims = shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1).max(1))
                .collect();
            Tensor::zeros(*dtype, dims)
        })
        .collect()
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A nested array of zeros with one row for every dynamic dimension.
fn zeros(dtype: DType, shape: &[i64]) -> String {
    let zero = match dtype {
        DType::Bool => "false",
        DType::String => "\"\"",
        d if d.is_float() => "0.0",
        _ => "0",
    };
    shape.iter().rev().fold(zero.to_string(), |inner, &dim| {
        let count = usize::try_from(dim).unwrap_or(1).max(1);
        format!("[{}]", vec![inner; count].join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_follow_the_shape_with_one_row() {
        assert_eq!(zeros(DType::Float32, &[-1, 3]), "[[0.0, 0.0, 0.0]]");
        assert_eq!(zeros(DType::Int64, &[2, -1]), "[[0], [0]]");
    }

    #[test]
    fn a_pooled_output_is_the_prediction_before_a_token_level_one() {
        let declared = |name: &str, dtype, shape: &[i64]| (name.to_string(), dtype, shape.to_vec());
        let encoder = [
            declared("token_embeddings", DType::Float32, &[-1, -1, 384]),
            declared("sentence_embedding", DType::Float32, &[-1, 384]),
        ];
        assert_eq!(
            likely_prediction(&encoder, None).unwrap().0,
            "sentence_embedding"
        );
        let classifier = [
            declared("label", DType::Int64, &[-1]),
            declared("logits", DType::Float32, &[-1, 3]),
            declared("probabilities", DType::Float32, &[-1, 3]),
        ];
        assert_eq!(
            likely_prediction(&classifier, None).unwrap().0,
            "probabilities"
        );
        assert_eq!(
            likely_prediction(&classifier, Some("label")).unwrap().0,
            "label"
        );
        let tokens_only = [declared(
            "last_hidden_state",
            DType::Float32,
            &[-1, -1, 384],
        )];
        assert_eq!(
            likely_prediction(&tokens_only, None).unwrap().0,
            "last_hidden_state"
        );
    }

    #[test]
    fn names_become_valid_bundle_names() {
        assert_eq!(bundle_name_from("My Model_v2"), "my-model_v2");
        assert_eq!(bundle_name_from("--"), "model");
    }
}
