//! `predictor init`: a starting `predictor.toml` read off an ONNX graph. Its sample input is all
//! zeros and its sample output empty, so `predictor check` refuses it until a person fills them in.

use std::fmt::Write;
use std::path::Path;

use crate::bundle::{IMAGE_INPUT_DTYPES, SCHEMA_VERSION, TOKEN_INPUTS};
use crate::preprocess::image::Layout;
use crate::preprocess::tokens::TextTokenizer;
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
    #[error("{model}: input '{name}' is not a token input ({}), which a tokenizer fills; --tokenizer is for a graph of token inputs only", crate::text::quoted(TOKEN_INPUTS.into_iter()))]
    NotTokenInput { model: String, name: String },
    #[error("{model}: the graph takes no 'input_ids', which a tokenizer fills")]
    NoInputIds { model: String },
    #[error("{0}")]
    Tokenizer(String),
    #[error("{model}: --image is for a graph of one image input (float32, float16, float64 or uint8), [rows, 3, height, width] or [rows, height, width, 3]; this one takes {found}")]
    NotAnImageInput { model: String, found: String },
    #[error("--image and --tokenizer: a bundle takes images or text, not both")]
    ImageAndText,
}

/// A text bundle's tokenizer for [`scaffold`]: the file, and its name in the bundle folder.
pub struct TokenizerFile<'a> {
    pub path: &'a Path,
    pub name: &'a str,
}

/// Rows of a text bundle's requests that `init` bounds its token inputs to.
const TEXT_ROWS: i64 = 64;
/// The tokens `init` bounds a row to when the tokenizer does not truncate (BERT's positions).
const TEXT_TOKENS: usize = 512;
/// The name of the pooled output `init` adds to an encoder whose output is token-level.
const POOLED_OUTPUT: &str = "sentence_embedding";
/// The output `init` adds for a classifier's logits.
const SOFTMAX_OUTPUT: &str = "probabilities";
/// Images of an image bundle's requests that `init` bounds its image input to.
const IMAGE_ROWS: i64 = 64;
/// The height and width `init` gives an image input whose graph leaves them dynamic.
const IMAGE_SIZE: i64 = 224;
/// The sample image `init --image` writes beside the model, for the author to replace.
pub const SAMPLE_IMAGE: &str = "sample.png";

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
    /// An image bundle's sample image ([`SAMPLE_IMAGE`], a PNG), to write beside the model.
    pub sample_image: Option<Vec<u8>>,
}

/// A declared value of the scaffold: name, dtype and shape.
type Declared = (String, DType, Vec<i64>);

/// The text of a `predictor.toml` for `model` (whose file name is written as `model_file`); with
/// `tokenizer`, a text bundle: callers send text, the tokenizer fills the graph's token inputs,
/// and a token-level float output is mean-pooled and normalised into one vector per text.
pub fn scaffold(
    runtime: &OnnxRuntime,
    model: &Path,
    model_file: &str,
    name: &str,
    tokenizer: Option<TokenizerFile>,
    image: bool,
) -> Result<Scaffold, InitError> {
    if image && tokenizer.is_some() {
        return Err(InitError::ImageAndText);
    }
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
    let text = match &tokenizer {
        Some(file) => Some(text_bundle(model, file, &mut inputs, &mut outputs)?),
        None => None,
    };
    let layout = match image {
        true => Some(image_bundle(model, &mut inputs)?),
        false => None,
    };
    let softmax_from = softmax_output(&mut outputs);
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

    let mut written = String::new();
    let out = &mut written;
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
    if let (Some(file), Some(text)) = (&tokenizer, &text) {
        let _ = writeln!(
            out,
            "\n# Callers send text, one string per row; the tokenizer fills the token inputs."
        );
        let _ = writeln!(out, "[text]");
        let _ = writeln!(out, "tokenizer = {}", quote(file.name));
        if let Some(pooled) = &text.pooled_from {
            let _ = writeln!(out, "\n# One vector per text: the mean of its token vectors over the attention mask, L2-normalised.");
            let _ = writeln!(out, "[pooling]");
            let _ = writeln!(out, "output = {}", quote(POOLED_OUTPUT));
            let _ = writeln!(out, "from = {}", quote(pooled));
            let _ = writeln!(out, "method = \"mean\"");
            let _ = writeln!(out, "normalize = true");
        }
    }
    if let Some(layout) = layout {
        // A uint8 graph takes the pixels as they are; a float one, normalized.
        let normalization = match inputs[0].1 {
            DType::Uint8 => "# A uint8 input takes the pixels as they are (0 to 255): nothing is normalized.
divide_by = 1.0",
            _ => "# Each value divided by divide_by (255: [0, 1]), less mean, divided by std, per channel.
divide_by = 255.0
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]",
        };
        let _ = write!(
            out,
            r#"
# Callers send images (JPEG, PNG, WebP), one per row; the server makes '{input}' of them, as
# torchvision's Resize, CenterCrop (to the input's height and width), ToTensor and Normalize do.
# Fill in the numbers the model card states (these are ImageNet's).
[image]
# The shorter side before the crop (Resize(256)), or [height, width] exactly.
resize = 256
{normalization}
# "RGB" (PIL's, torchvision's) or "BGR" (OpenCV's).
channels = "RGB"
layout = "{layout}"
"#,
            input = inputs[0].0,
            layout = layout.name()
        );
    }
    if let Some(logits) = &softmax_from {
        let _ = writeln!(
            out,
            "\n# The class probabilities: the softmax of each row of '{logits}'."
        );
        let _ = writeln!(out, "[softmax]");
        let _ = writeln!(out, "output = {}", quote(SOFTMAX_OUTPUT));
        let _ = writeln!(out, "from = {}", quote(logits));
    }
    for (section, values) in [("inputs", &inputs), ("outputs", &outputs)] {
        for (name, dtype, shape) in values.iter() {
            let _ = writeln!(out, "\n[[{section}]]");
            let _ = writeln!(out, "name = {}", quote(name));
            let _ = writeln!(out, "dtype = \"{dtype}\"");
            let _ = writeln!(out, "shape = {}", ShapeText(shape));
            if let (Some(text), "inputs") = (&text, section) {
                let _ = writeln!(
                    out,
                    "# Texts per request, tokens per text (the tokenizer cuts rows there)."
                );
                let _ = writeln!(out, "max_shape = [{TEXT_ROWS}, {}]", text.max_tokens);
            }
            if let (Some(_), "inputs") = (&layout, section) {
                let _ = writeln!(out, "# Images per request.");
                let bound: Vec<String> = std::iter::once(IMAGE_ROWS)
                    .chain(shape.iter().skip(1).copied())
                    .map(|size| size.to_string())
                    .collect();
                let _ = writeln!(out, "max_shape = [{}]", bound.join(", "));
            }
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
        _ if text.is_some() => "[\"hello world\"]".to_string(),
        _ if layout.is_some() => {
            let _ = writeln!(
                out,
                "# The names of image files in this folder, one per row ({SAMPLE_IMAGE} is a stand-in)."
            );
            format!("[{}]", quote(SAMPLE_IMAGE))
        }
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
    Ok(Scaffold {
        text: written,
        notes,
        sample_image: layout.map(|_| stand_in_image()),
    })
}

/// Checks that the graph takes one image (float32, float16, float64 or uint8), [rows, 3, height,
/// width] or [rows, height, width, 3]; a dynamic height or width becomes [`IMAGE_SIZE`]. Returns
/// its layout.
fn image_bundle(model: &Path, inputs: &mut [Declared]) -> Result<Layout, InitError> {
    let refuse = |found: String| InitError::NotAnImageInput {
        model: model.display().to_string(),
        found,
    };
    let [(_, dtype, shape)] = inputs else {
        return Err(refuse(format!("{} inputs", inputs.len())));
    };
    let found = format!("{dtype} {}", ShapeText(shape));
    if !IMAGE_INPUT_DTYPES.contains(dtype) || shape.len() != 4 {
        return Err(refuse(found));
    }
    let layout = match (shape[1], shape[3]) {
        (3, _) => Layout::Nchw,
        (_, 3) => Layout::Nhwc,
        _ => return Err(refuse(found)),
    };
    let spatial = match layout {
        Layout::Nchw => 2..4,
        Layout::Nhwc => 1..3,
    };
    shape[0] = -1;
    for size in &mut shape[spatial] {
        if *size < 1 {
            *size = IMAGE_SIZE;
        }
    }
    Ok(layout)
}

/// A stand-in sample image: a 256 x 256 PNG of colour gradients, for the author to replace with
/// a real one.
fn stand_in_image() -> Vec<u8> {
    let gradient = image::RgbImage::from_fn(256, 256, |x, y| {
        image::Rgb([x as u8, y as u8, (x as u8).wrapping_add(y as u8) / 2])
    });
    let mut png = Vec::new();
    // Encoding into memory fails only when memory does.
    let _ = gradient.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
    png
}

/// What `init` learnt of a text bundle's tokenizer and graph.
struct TextScaffold {
    /// The tokens a row is cut at: the tokenizer's own truncation, else [`TEXT_TOKENS`].
    max_tokens: usize,
    /// The token-level output pooled into [`POOLED_OUTPUT`], when the graph gives no vector per
    /// row of its own.
    pooled_from: Option<String>,
}

/// Checks that the graph's inputs are token inputs and the tokenizer reads; adds the pooled
/// output to `outputs` for an encoder whose float output is token-level only.
fn text_bundle(
    model: &Path,
    file: &TokenizerFile,
    inputs: &mut [Declared],
    outputs: &mut Vec<Declared>,
) -> Result<TextScaffold, InitError> {
    if let Some((name, _, _)) = inputs
        .iter()
        .find(|(name, _, _)| !TOKEN_INPUTS.contains(&name.as_str()))
    {
        return Err(InitError::NotTokenInput {
            model: model.display().to_string(),
            name: name.clone(),
        });
    }
    if !inputs.iter().any(|(name, _, _)| name == "input_ids") {
        return Err(InitError::NoInputIds {
            model: model.display().to_string(),
        });
    }
    for (_, _, shape) in inputs.iter_mut() {
        *shape = vec![-1, -1];
    }
    let max_tokens = TextTokenizer::read(file.path, TEXT_TOKENS)
        .map_err(InitError::Tokenizer)?
        .max_tokens();
    let vector = |(_, dtype, shape): &Declared| dtype.is_float() && shape.len() == 2;
    let token_level = outputs
        .iter()
        .find(|(_, dtype, shape)| *dtype == DType::Float32 && shape.len() == 3 && shape[2] > 0);
    let pooled_from = match token_level {
        Some((name, _, shape)) if !outputs.iter().any(vector) => {
            let (name, dim) = (name.clone(), shape[2]);
            outputs.push((POOLED_OUTPUT.to_string(), DType::Float32, vec![-1, dim]));
            Some(name)
        }
        _ => None,
    };
    Ok(TextScaffold {
        max_tokens,
        pooled_from,
    })
}

/// A classifier's logits (a float32 output `[-1, classes]` named so, the Hugging Face way) and no
/// probabilities: adds [`SOFTMAX_OUTPUT`], their softmax, and returns the logits' name.
fn softmax_output(outputs: &mut Vec<Declared>) -> Option<String> {
    let has_probabilities = outputs
        .iter()
        .any(|(name, _, _)| name.to_ascii_lowercase().contains("prob"));
    let (name, _, shape) = outputs.iter().find(|(name, dtype, shape)| {
        name.eq_ignore_ascii_case("logits")
            && *dtype == DType::Float32
            && shape.len() == 2
            && shape[0] == -1
            && shape[1] > 0
    })?;
    if has_probabilities {
        return None;
    }
    let (name, shape) = (name.clone(), shape.clone());
    outputs.push((SOFTMAX_OUTPUT.to_string(), DType::Float32, shape));
    Some(name)
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
        DType::String | DType::Bytes => "\"\"",
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
    fn a_token_level_encoder_gets_a_pooled_prediction_and_only_token_inputs_pass() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/all-minilm-l6-v2/tokenizer.json");
        let file = TokenizerFile {
            path: &path,
            name: "tokenizer.json",
        };
        let token = |name: &str| (name.to_string(), DType::Int64, vec![-1, 7]);
        let tokens = |dim| {
            (
                "last_hidden_state".to_string(),
                DType::Float32,
                vec![-1, -1, dim],
            )
        };
        let model = Path::new("model.onnx");
        let mut inputs = vec![token("input_ids"), token("attention_mask")];
        let mut outputs = vec![tokens(384)];
        let text = text_bundle(model, &file, &mut inputs, &mut outputs).unwrap();
        // The tokenizer's own truncation bounds the rows; every token input is [rows, tokens].
        assert_eq!(text.max_tokens, 128);
        assert!(inputs.iter().all(|(_, _, shape)| shape == &[-1, -1]));
        assert_eq!(text.pooled_from.as_deref(), Some("last_hidden_state"));
        let pooled = (POOLED_OUTPUT.to_string(), DType::Float32, vec![-1, 384]);
        assert_eq!(outputs, [tokens(384), pooled.clone()]);
        assert_eq!(likely_prediction(&outputs, None), Some(&pooled));
        // An encoder that pools itself keeps its own vector.
        let own = ("embedding".to_string(), DType::Float32, vec![-1, 384]);
        let mut outputs = vec![tokens(384), own.clone()];
        let text = text_bundle(model, &file, &mut inputs, &mut outputs).unwrap();
        assert_eq!((text.pooled_from, outputs.len()), (None, 2));
        // A graph input a tokenizer does not fill, or no input_ids.
        let mut pixels = vec![token("input_ids"), token("pixels")];
        let error = text_bundle(model, &file, &mut pixels, &mut vec![own.clone()]).err();
        assert!(error
            .unwrap()
            .to_string()
            .contains("input 'pixels' is not a token input"));
        let mut no_ids = vec![token("attention_mask")];
        let error = text_bundle(model, &file, &mut no_ids, &mut vec![own]).err();
        assert!(error.unwrap().to_string().contains("no 'input_ids'"));
    }

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
