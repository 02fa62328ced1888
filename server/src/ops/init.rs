//! `predictor init`: a starting `predictor.toml` read off an ONNX graph. Its sample input is all
//! zeros and its sample output empty, so `predictor check` refuses it until a person fills them in.

use std::fmt::Write;
use std::path::Path;

use crate::bundle::SCHEMA_VERSION;
use crate::runtime::{Backend, GraphValue, GraphValueKind, OnnxRuntime, RuntimeError};
use crate::tensor::DType;
use crate::text::ShapeText;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{model}: input '{name}' is {type_name}, which predictor cannot serve")]
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

/// The text of a `predictor.toml` for `model` (whose file name is written as `model_file`).
pub fn scaffold(
    runtime: &OnnxRuntime,
    model: &Path,
    model_file: &str,
    name: &str,
) -> Result<String, InitError> {
    let backend = runtime.open(model, 1)?;
    let signature = backend.signature();
    let tensors = |values: &[GraphValue]| -> Vec<(String, DType, Vec<i64>)> {
        values
            .iter()
            .filter_map(|v| match &v.kind {
                GraphValueKind::Tensor { dtype, shape } => {
                    Some((v.name.clone(), *dtype, shape.clone()))
                }
                GraphValueKind::Unsupported(_) => None,
            })
            .collect()
    };
    if let Some((name, type_name)) = signature.inputs.iter().find_map(|v| match &v.kind {
        GraphValueKind::Unsupported(type_name) => Some((&v.name, type_name)),
        GraphValueKind::Tensor { .. } => None,
    }) {
        return Err(InitError::UnsupportedInput {
            model: model.display().to_string(),
            name: name.clone(),
            type_name: type_name.clone(),
        });
    }
    let inputs = tensors(&signature.inputs);
    let outputs = tensors(&signature.outputs);
    let skipped: Vec<&GraphValue> = signature
        .outputs
        .iter()
        .filter(|v| matches!(v.kind, GraphValueKind::Unsupported(_)))
        .collect();
    // Class scores are the usual prediction; fall back to the first float, then the first output.
    let prediction = outputs
        .iter()
        .find(|(n, d, _)| d.is_float() && n.to_ascii_lowercase().contains("prob"))
        .or_else(|| outputs.iter().find(|(_, d, _)| d.is_float()))
        .or_else(|| outputs.first())
        .ok_or_else(|| InitError::NoOutput(model.display().to_string()))?;

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
    let _ = writeln!(
        out,
        "# Class names, in class order, for /predict/label; leave empty if there are none."
    );
    let _ = writeln!(out, "labels = []");
    let _ = writeln!(out, "# The output that /predict returns.");
    let _ = writeln!(out, "prediction = {}", quote(&prediction.0));
    for (section, values) in [("inputs", &inputs), ("outputs", &outputs)] {
        for (name, dtype, shape) in values.iter() {
            let _ = writeln!(out, "\n[[{section}]]");
            let _ = writeln!(out, "name = {}", quote(name));
            let _ = writeln!(out, "dtype = \"{dtype}\"");
            let _ = writeln!(out, "shape = {}", ShapeText(shape));
        }
    }
    for value in skipped {
        let _ = writeln!(
            out,
            "\n# Output '{}' is left out: predictor serves tensors only.",
            value.name
        );
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
    let _ = writeln!(out, "threads = 1");
    Ok(text)
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A nested array of zeros with one row for every dynamic dimension.
fn zeros(dtype: DType, shape: &[i64]) -> String {
    let zero = match dtype {
        DType::Bool => "false",
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
    fn names_become_valid_bundle_names() {
        assert_eq!(bundle_name_from("My Model_v2"), "my-model_v2");
        assert_eq!(bundle_name_from("--"), "model");
    }
}
