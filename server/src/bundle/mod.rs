//! The model bundle: a folder with `predictor.toml` (schema version 1) and the ONNX file it names.
//! This module parses the file strictly and checks it on its own; `model` checks it against the graph.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::postprocess::pooling::Pooling;
use crate::preprocess::image::{ChannelOrder, Layout, Preprocessing, ResizeRule};
use crate::tensor::{DType, Tensor, TensorData};
use crate::text::ShapeText;

mod labels;
pub mod sample;

pub const FILE_NAME: &str = "predictor.toml";
pub const SCHEMA_VERSION: u32 = 1;

/// `predictor.toml`, field for field. Unknown keys are errors at every level.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// Always 1 for this format.
    pub schema_version: u32,
    /// Lowercase, URL- and image-name-safe: `[a-z0-9][a-z0-9._-]*`.
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The ONNX file, relative to the bundle folder and inside it.
    pub model: PathBuf,
    /// Class names: `/predict/label` maps the prediction output to them.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The output that `/predict` returns; may be left out when the model has one output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub sample: Sample,
    #[serde(default)]
    pub runtime: RuntimeHints,
    /// Text in: a tokenizer fills the graph's token inputs (`inputs`) from one string per row,
    /// and callers send the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// Images in: callers send encoded images, and the server makes the graph's one image input
    /// from them, as torchvision's transforms do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageConfig>,
    /// An output made from a token-level one (a sentence embedding from token vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<PoolingConfig>,
    /// An output made from a graph output of class scores: their softmax (a classifier's logits
    /// as probabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softmax: Option<SoftmaxConfig>,
}

/// A text bundle's tokenizer and public input.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// A Hugging Face `tokenizer.json`, relative to the bundle folder and inside it.
    pub tokenizer: PathBuf,
    /// The name callers give the text (default "text"): a string per row, shape [-1].
    #[serde(default = "default_text_input")]
    pub input: String,
}

fn default_text_input() -> String {
    "text".to_string()
}

/// An image bundle's preprocessing, the steps a model card states (torchvision's `Resize`,
/// `CenterCrop`, `ToTensor`, `Normalize`): each image decoded to RGB, resized, cropped to the
/// graph input's height and width (its declared shape says them), each value divided by
/// `divide_by`, less `mean`, divided by `std`, per channel, in `channels` order, laid out as
/// `layout` says.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// The name callers give the images (default "image"): one encoded image (JPEG, PNG, WebP)
    /// per row, BYTES of shape [-1].
    #[serde(default = "default_image_input")]
    pub input: String,
    /// Before the crop: the shorter side to this many pixels (`Resize(256)`), or exactly
    /// [height, width] (`Resize((224, 224))`). Without it, only an image smaller than the crop is
    /// resized, up, its shorter side to the crop's longer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeRule>,
    /// What each 8-bit value is divided by first (default 255: `ToTensor`'s [0, 1]).
    #[serde(default = "default_divide_by")]
    pub divide_by: f32,
    /// Per channel, in `channels` order, subtracted after the division (default 0).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per channel, in `channels` order, divided by last (default 1).
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// The channel order the graph takes: "RGB" (default) or "BGR" (OpenCV's, Paddle's).
    #[serde(default)]
    pub channels: ChannelOrder,
    /// "NCHW" (default, PyTorch's: [rows, 3, height, width]) or "NHWC" (TensorFlow's).
    #[serde(default)]
    pub layout: Layout,
    /// Whether each image is first turned as its EXIF orientation says (a phone's photograph
    /// taken upright but stored sideways), as Pillow's `ImageOps.exif_transpose`; default false,
    /// as `Image.open` and torchvision leave it.
    #[serde(default)]
    pub apply_exif_orientation: bool,
}

fn default_image_input() -> String {
    "image".to_string()
}

fn default_divide_by() -> f32 {
    255.0
}

fn default_std() -> [f32; 3] {
    [1.0; 3]
}

/// The graph inputs a tokenizer fills, by their names in the graph: a text bundle's `inputs` are
/// some of these, `input_ids` among them.
pub const TOKEN_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// A declared output that is not the graph's: the graph's token-level output `from` ([rows,
/// tokens, dim]) pooled to one vector per row ([rows, dim]) over the attention mask.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolingConfig {
    /// The declared output it makes, float32 [-1, dim].
    pub output: String,
    /// The declared graph output it pools, float32 [-1, -1, dim].
    pub from: String,
    /// "mean" (over the attention mask), "first" (the first token) or "max".
    pub method: Pooling,
    /// Whether each vector is divided by its length (L2), as sentence encoders' cosine
    /// similarity expects.
    #[serde(default)]
    pub normalize: bool,
}

/// A declared output that is not the graph's: the softmax of each row of the graph's output
/// `from` ([rows, classes]), so that each row sums to 1.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {
    /// The declared output it makes, float32 [-1, classes].
    pub output: String,
    /// The declared graph output it reads, float32 [-1, classes].
    pub from: String,
}

impl BundleConfig {
    /// The names of the declared outputs the server makes after the run, which the graph does
    /// not have.
    pub fn made_outputs(&self) -> impl Iterator<Item = &str> {
        let pooled = self.pooling.as_ref().map(|pooling| pooling.output.as_str());
        let softmax = self.softmax.as_ref().map(|softmax| softmax.output.as_str());
        pooled.into_iter().chain(softmax)
    }
}

/// One input or output: its graph name, element type and shape (-1 for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// For an input, the largest size of each dynamic dimension (the fixed sizes repeated): what
    /// the bundle promises to take, and so the memory it may need. Optional; see [`TensorSpec::bound`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shape: Option<Vec<i64>>,
    /// For an input, a name for each dimension ("" for none), as the graph's symbolic names are:
    /// inputs that share a name must agree on its size. Optional: the graph's own names apply, and
    /// these add names where the graph has none (they may not contradict it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension_names: Option<Vec<String>>,
}

impl TensorSpec {
    /// The largest size a request may give `axis`: none for a fixed size (the shape says it) or
    /// for undeclared rows (`--max-rows-per-request` bounds those); `max_shape`'s where declared;
    /// otherwise [`crate::defaults::MAX_DYNAMIC_SIZE`].
    pub fn bound(&self, axis: usize) -> Option<Bound> {
        if self.shape.get(axis) != Some(&-1) {
            return None;
        }
        match &self.max_shape {
            Some(max) => usize::try_from(*max.get(axis)?).ok().map(Bound::Declared),
            None if axis == 0 => None,
            None => Some(Bound::Default(crate::defaults::MAX_DYNAMIC_SIZE)),
        }
    }
}

/// The largest size of a dynamic dimension, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Declared(usize),
    Default(usize),
}

impl Bound {
    pub fn size(self) -> usize {
        match self {
            Bound::Declared(size) | Bound::Default(size) => size,
        }
    }
}

/// A known input and the prediction the model must give for it, checked at every load.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Rows for the single input, or a table of rows by input name when there are several.
    pub input: Value,
    /// The expected value of the prediction output.
    pub output: Value,
    /// Largest absolute difference allowed between `output` and what the model returns.
    pub tolerance: f64,
}

/// Hints for running the model; flags of `predictor serve` override them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHints {
    /// ONNX Runtime intra-op threads of each instance (default: the CPUs the process may use,
    /// divided among the instances of every model served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Instances of the model (default 1): each its own ONNX Runtime session and worker thread,
    /// sharing the model's queue, as Triton's instance groups. Each holds its own copy of the
    /// weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Dynamic batching: the most rows one run takes from queued requests together (absent:
    /// every request runs alone). Needs a dynamic first dimension on every input and output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    /// How long a queued request may wait for others to join its batch, in milliseconds
    /// (default 0: it takes only what is queued already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_ms: Option<u64>,
    /// A text bundle's token budget of one batch: rows × the longest row's tokens (default: none,
    /// `max_batch_size` alone bounds a batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<usize>,
    /// Memory for one server of this bundle, in MiB: the requests and limits of the Kubernetes
    /// manifests (`predictor manifests`); without it they take 128 MiB plus 4 times the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// How `/predict/label` turns the prediction output into labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelRule {
    /// No labels declared.
    None,
    /// Scores per class on the last axis: the label of the highest score.
    ArgmaxLastAxis,
    /// Integer class indices: the label at each index.
    ClassIndex,
    /// Class names given by the model itself (a string output of shape `[rows]`).
    Text,
}

/// A bundle read from disk and checked on its own (not yet against its ONNX graph).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The `predictor.toml` it was read from, as given (for messages).
    pub file: PathBuf,
    pub config: BundleConfig,
    /// Index into `config.outputs` of the output `/predict` returns.
    pub prediction: usize,
    pub label_rule: LabelRule,
    /// `[sample] input` as a request's JSON text (`/predict/test` sends it).
    pub sample_input: Box<RawValue>,
    /// What callers send: `config.inputs` (the graph's), or a text bundle's one text input.
    pub public_inputs: Vec<TensorSpec>,
}

/// A problem with a bundle, always naming its file; `problems` name the field.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl BundleError {
    pub fn new(file: &Path, problem: impl Into<String>) -> Self {
        BundleError {
            file: file.to_path_buf(),
            problems: vec![problem.into()],
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{}: {one}", self.file.display()),
            many => {
                write!(f, "{}: {} problems:", self.file.display(), many.len())?;
                many.iter().try_for_each(|p| write!(f, "\n  - {p}"))
            }
        }
    }
}

impl std::error::Error for BundleError {}

impl Bundle {
    /// Reads a bundle from its folder or from its `predictor.toml`.
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        let file = if path.is_dir() {
            path.join(FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|error| BundleError::new(&file, format!("cannot read: {error}")))?;
        Bundle::parse(&file, &text)
    }

    /// Parses and checks the text of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Bundle, BundleError> {
        let config: BundleConfig = toml::from_str(text)
            .map_err(|error| BundleError::new(file, error.to_string().trim_end().to_string()))?;
        let mut problems = Vec::new();
        let (prediction, label_rule) = check_config(&config, &mut problems);
        if !problems.is_empty() {
            return Err(BundleError {
                file: file.to_path_buf(),
                problems,
            });
        }
        let sample_input = sample::raw_json(&config.sample.input)
            .map_err(|error| BundleError::new(file, format!("sample.input: {error}")))?;
        let public_inputs = match (&config.text, &config.image) {
            (Some(text), _) => vec![row_input(&text.input, DType::String, &config.inputs)],
            (None, Some(image)) => vec![row_input(&image.input, DType::Bytes, &config.inputs)],
            (None, None) => config.inputs.clone(),
        };
        Ok(Bundle {
            file: file.to_path_buf(),
            config,
            prediction,
            label_rule,
            sample_input,
            public_inputs,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The folder holding `predictor.toml`.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir().join(&self.config.model)
    }

    pub fn prediction_spec(&self) -> &TensorSpec {
        &self.config.outputs[self.prediction]
    }

    pub fn error(&self, problem: impl Into<String>) -> BundleError {
        BundleError::new(&self.file, problem)
    }

    /// A text bundle's bound on the tokens of a row: the least bound of its token inputs'
    /// second dimension (their `max_shape`, else the default for a dynamic size). The tokenizer
    /// cuts rows at the smaller of this and its own truncation.
    pub fn sequence_bound(&self) -> usize {
        self.config
            .inputs
            .iter()
            .filter_map(|spec| spec.bound(1))
            .map(Bound::size)
            .min()
            .unwrap_or(crate::defaults::MAX_DYNAMIC_SIZE)
    }

    /// The rows of a request: the first dimension of the inputs declared with a dynamic one,
    /// which must agree (ONNX Runtime would broadcast one row against many, or fail inside the
    /// graph). `inputs` are in declaration order, their shapes checked against the declarations.
    pub fn request_rows(&self, inputs: &[Tensor]) -> Result<usize, String> {
        let mut first: Option<(&str, usize)> = None;
        for (spec, tensor) in self.public_inputs.iter().zip(inputs) {
            if spec.shape.first() != Some(&-1) {
                continue;
            }
            let rows = tensor.rows();
            match first {
                None => first = Some((&spec.name, rows)),
                Some((name, agreed)) if agreed != rows => {
                    return Err(format!(
                        "inputs '{name}' and '{}' disagree on their rows (first dimension): '{name}' has {agreed}, '{}' has {rows}; every input of a request takes the same number of rows",
                        spec.name, spec.name
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(first.map_or_else(
            || inputs.iter().map(Tensor::rows).max().unwrap_or(0),
            |(_, rows)| rows,
        ))
    }

    /// Refuses inputs (in declaration order, their shapes checked against the declarations) with
    /// a dynamic dimension past its bound, naming the input, the axis and where the bound comes
    /// from.
    pub fn check_bounds(&self, inputs: &[Tensor]) -> Result<(), String> {
        for (spec, tensor) in self.public_inputs.iter().zip(inputs) {
            for (axis, &size) in tensor.shape().iter().enumerate() {
                let Some(bound) = spec.bound(axis).filter(|bound| size > bound.size()) else {
                    continue;
                };
                let origin = match bound {
                    Bound::Declared(_) => "its max_shape in predictor.toml".to_string(),
                    Bound::Default(_) => "the default for a dynamic dimension; the bundle can declare another in max_shape".to_string(),
                };
                return Err(format!(
                    "input '{}' has {size} at axis {axis}, past its bound of {} ({origin}): send less at once",
                    spec.name,
                    bound.size()
                ));
            }
        }
        Ok(())
    }

    /// The dynamic dimensions of the inputs bounded by the default, not by the bundle: what
    /// `predictor check` tells the author, as "input 'x' axis 2".
    pub fn default_bounds(&self) -> Vec<String> {
        self.config
            .inputs
            .iter()
            .flat_map(|spec| {
                (0..spec.shape.len())
                    .filter(|&axis| matches!(spec.bound(axis), Some(Bound::Default(_))))
                    .map(|axis| format!("input '{}' axis {axis}", spec.name))
            })
            .collect()
    }

    /// Decodes a request's inputs (the seed API's `data`, or `[sample] input`) into one tensor per
    /// declared input, in declaration order: rows for a single input, a table by name for several.
    /// `field` names the value in messages.
    pub fn decode_inputs(&self, data: &RawValue, field: &str) -> Result<Vec<Tensor>, String> {
        let text = data.get();
        let is_table = text.trim_start().starts_with('{');
        match (self.public_inputs.as_slice(), is_table) {
            ([only], true) => Err(format!(
                "{field}: expected rows for input '{}' with shape {}, received an object",
                only.name,
                ShapeText(&only.shape)
            )),
            ([only], false) => Ok(vec![decode_one(only, text, field)?]),
            (specs, true) => {
                let UniqueKeys(by_name) = serde_json::from_str(text)
                    .map_err(|error| format!("{field}: {error}"))?;
                if let Some(unknown) = by_name
                    .keys()
                    .find(|k| !specs.iter().any(|s| &s.name == *k))
                {
                    return Err(format!(
                        "{field}: unknown input '{}'; the inputs are {}",
                        crate::text::clip(unknown),
                        names(specs)
                    ));
                }
                specs
                    .iter()
                    .map(|spec| match by_name.get(&spec.name) {
                        Some(value) => {
                            decode_one(spec, value.get(), &format!("{field}.{}", spec.name))
                        }
                        None => Err(format!("{field}: missing input '{}'", spec.name)),
                    })
                    .collect()
            }
            (specs, false) => Err(format!(
                "{field}: this model has several inputs; expected a table of rows by input name ({})",
                names(specs)
            )),
        }
    }
}

impl Bundle {
    /// An image bundle's steps from encoded images to its graph's input (none for others), each
    /// image bounded to `max_pixels`.
    pub fn image_preprocessing(&self, max_pixels: u64) -> Option<Preprocessing> {
        let image = self.config.image.as_ref()?;
        let spec = self.config.inputs.first()?;
        Some(Preprocessing {
            resize: image.resize,
            size: image_size(image.layout, &spec.shape)?,
            divide_by: image.divide_by,
            mean: image.mean,
            std: image.std,
            channels: image.channels,
            layout: image.layout,
            max_pixels,
            apply_exif_orientation: image.apply_exif_orientation,
        })
    }

    /// `[sample] input` as the tensors a request of it would give: an image bundle's sample names
    /// image files inside the bundle folder, whose bytes are the rows.
    pub fn sample_inputs(&self) -> Result<Vec<Tensor>, String> {
        let inputs = self.decode_inputs(&self.sample_input, "sample.input")?;
        if self.config.image.is_none() {
            return Ok(inputs);
        }
        inputs
            .into_iter()
            .map(|tensor| {
                let (shape, data) = tensor.into_parts();
                let TensorData::Bytes(names) = data else {
                    return Err("sample.input: expected the names of image files".to_string());
                };
                let images = names
                    .iter()
                    .map(|name| self.read_sample_image(&String::from_utf8_lossy(name)))
                    .collect::<Result<Vec<_>, _>>()?;
                Tensor::new(shape, TensorData::Bytes(images)).map_err(|error| error.to_string())
            })
            .collect()
    }

    fn read_sample_image(&self, name: &str) -> Result<Vec<u8>, String> {
        let path = Path::new(name);
        let inside = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if name.is_empty() || !inside {
            return Err(format!(
                "sample.input: expected the name of an image file inside the bundle folder, found '{name}'"
            ));
        }
        std::fs::read(self.dir().join(path))
            .map_err(|error| format!("sample.input: cannot read image '{name}': {error}"))
    }
}

/// A JSON object whose keys are unique: a key given twice is refused (serde would keep the last
/// and drop the other silently), as the Open Inference Protocol refuses an input given twice.
struct UniqueKeys(BTreeMap<String, Box<RawValue>>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of rows by input name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut by_name = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    if by_name.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "input '{}' is given twice",
                            crate::text::clip(&key)
                        )));
                    }
                    by_name.insert(key, value);
                }
                Ok(UniqueKeys(by_name))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn decode_one(spec: &TensorSpec, text: &str, field: &str) -> Result<Tensor, String> {
    // A scalar input (shape []) takes a bare value, every other input nested arrays.
    let decoded = if spec.shape.is_empty() {
        Tensor::from_json_scalar(text, spec.dtype)
    } else {
        Tensor::from_json_text(text, spec.dtype)
    };
    let tensor = decoded.map_err(|error| format!("{field}: {error}"))?;
    if !crate::tensor::shape_fits(&spec.shape, tensor.shape()) {
        return Err(format!(
            "{field}: input '{}' expects shape {}, received shape {}",
            spec.name,
            ShapeText(&spec.shape),
            ShapeText(tensor.shape())
        ));
    }
    Ok(tensor)
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("'{}'", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// The one public input of a text or image bundle, `name`: a string (text) or bytes (an encoded
/// image) per row, as many rows as the graph inputs it fills take.
fn row_input(name: &str, dtype: DType, graph_inputs: &[TensorSpec]) -> TensorSpec {
    let rows = graph_inputs
        .iter()
        .filter_map(|spec| spec.max_shape.as_ref()?.first().copied())
        .min();
    TensorSpec {
        name: name.to_string(),
        dtype,
        shape: vec![-1],
        max_shape: rows.map(|rows| vec![rows]),
        dimension_names: None,
    }
}

/// An image bundle's declarations: one graph input, float32 of [rows, 3, height, width] (or
/// [rows, height, width, 3] for NHWC), the public input a name of its own, sane numbers.
/// The element types an image bundle's graph input may have (see [`PixelValue`]).
///
/// [`PixelValue`]: crate::preprocess::image::PixelValue
pub const IMAGE_INPUT_DTYPES: [DType; 4] =
    [DType::Float32, DType::Float16, DType::Float64, DType::Uint8];

fn check_image(config: &BundleConfig, problems: &mut Vec<String>) {
    let Some(image) = &config.image else {
        return;
    };
    if config.text.is_some() {
        problems
            .push("image: a bundle takes text ([text]) or images ([image]), not both".to_string());
    }
    if image.input.is_empty() {
        problems.push("image.input: expected a name, found ''".to_string());
    }
    match config.inputs.as_slice() {
        [spec] => {
            if spec.name == image.input {
                problems.push(format!(
                    "image.input: '{}' is the graph input's name; callers' images need a name of their own",
                    image.input
                ));
            }
            if image_size(image.layout, &spec.shape).is_none()
                || !IMAGE_INPUT_DTYPES.contains(&spec.dtype)
            {
                let expected = match image.layout {
                    Layout::Nchw => "[-1, 3, height, width]",
                    Layout::Nhwc => "[-1, height, width, 3]",
                };
                problems.push(format!(
                    "inputs[0]: an image bundle's graph input ({}) must be float32, float16, float64 or uint8 of shape {expected} with a fixed height and width; found {} {}",
                    image.layout.name(),
                    spec.dtype,
                    ShapeText(&spec.shape)
                ));
            }
            let normalizes =
                image.divide_by != 1.0 || image.mean != [0.0; 3] || image.std != [1.0; 3];
            if spec.dtype == DType::Uint8 && normalizes {
                problems.push(format!(
                    "image: a uint8 graph input takes the pixels as they are (0 to 255), so divide_by = 1, mean = [0, 0, 0] and std = [1, 1, 1]; found divide_by = {}, mean = {:?}, std = {:?}",
                    image.divide_by, image.mean, image.std
                ));
            }
            if let (Some(ResizeRule::Exact(size)), Some(crop)) =
                (image.resize, image_size(image.layout, &spec.shape))
            {
                if size[0] < crop[0] || size[1] < crop[1] {
                    problems.push(format!(
                        "image.resize: [{}, {}] is smaller than the graph's [{}, {}] (height, width), which the image is cropped to",
                        size[0], size[1], crop[0], crop[1]
                    ));
                }
            }
        }
        specs => problems.push(format!(
            "inputs: an image bundle's graph takes one input, the image; found {}",
            specs.len()
        )),
    }
    match image.resize {
        Some(ResizeRule::ShorterSide(0)) => {
            problems.push("image.resize: expected a size > 0, found 0".to_string());
        }
        Some(ResizeRule::Exact(size)) if size.contains(&0) => problems.push(format!(
            "image.resize: expected [height, width], each > 0; found [{}, {}]",
            size[0], size[1]
        )),
        _ => {}
    }
    if !(image.divide_by.is_finite() && image.divide_by > 0.0) {
        problems.push(format!(
            "image.divide_by: expected a number > 0, found {}",
            image.divide_by
        ));
    }
    if image.mean.iter().any(|mean| !mean.is_finite()) {
        problems.push(format!(
            "image.mean: expected finite numbers, found {:?}",
            image.mean
        ));
    }
    if image.std.iter().any(|std| !(std.is_finite() && *std > 0.0)) {
        problems.push(format!(
            "image.std: expected numbers > 0, found {:?}",
            image.std
        ));
    }
}

/// The [height, width] of an image graph input's `shape` in `layout`: fixed sizes, three channels,
/// a dynamic first dimension; none for any other shape.
fn image_size(layout: Layout, shape: &[i64]) -> Option<[usize; 2]> {
    let (channels, height, width) = match (layout, shape) {
        (Layout::Nchw, &[-1, channels, height, width]) => (channels, height, width),
        (Layout::Nhwc, &[-1, height, width, channels]) => (channels, height, width),
        _ => return None,
    };
    let height = usize::try_from(height).ok().filter(|&size| size > 0)?;
    let width = usize::try_from(width).ok().filter(|&size| size > 0)?;
    (channels == 3).then_some([height, width])
}

/// A text bundle's declarations: its inputs are token inputs the tokenizer fills, of shape
/// [rows, tokens], and its public input takes no graph input's name.
fn check_text(config: &BundleConfig, problems: &mut Vec<String>) {
    let Some(text) = &config.text else {
        return;
    };
    let escapes = text
        .tokenizer
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if text.tokenizer.as_os_str().is_empty() || escapes {
        problems.push(format!(
            "text.tokenizer: expected a path inside the bundle folder, found '{}'",
            text.tokenizer.display()
        ));
    }
    if text.input.is_empty() {
        problems.push("text.input: expected a name, found ''".to_string());
    }
    for (index, spec) in config.inputs.iter().enumerate() {
        if !TOKEN_INPUTS.contains(&spec.name.as_str()) {
            problems.push(format!(
                "inputs[{index}].name: a text bundle's inputs are the token inputs its tokenizer fills ({}); '{}' is not one",
                crate::text::quoted(TOKEN_INPUTS.into_iter()),
                spec.name
            ));
        }
        if !matches!(spec.dtype, DType::Int64 | DType::Int32) || spec.shape != [-1, -1] {
            problems.push(format!(
                "inputs[{index}]: token input '{}' must be int64 or int32 of shape [-1, -1] (rows, tokens); found {} {}",
                spec.name,
                spec.dtype,
                ShapeText(&spec.shape)
            ));
        }
    }
    if !config.inputs.iter().any(|spec| spec.name == "input_ids") {
        problems.push("inputs: a text bundle's graph takes 'input_ids'; declare it".to_string());
    }
    if config.inputs.iter().any(|spec| spec.name == text.input) {
        problems.push(format!(
            "text.input: '{}' is a graph input's name; callers' text needs a name of its own",
            text.input
        ));
    }
}

/// The declarations of a made output (`section`'s `output`) and of the output it reads (`from`):
/// both declared, and not the same one; none when either is missing.
fn made_output_pair<'a>(
    section: &str,
    output: &str,
    from: &str,
    config: &'a BundleConfig,
    problems: &mut Vec<String>,
) -> Option<(&'a TensorSpec, &'a TensorSpec)> {
    let find = |name: &str| config.outputs.iter().find(|spec| spec.name == name);
    let (Some(output_spec), Some(from_spec)) = (find(output), find(from)) else {
        problems.push(format!(
            "{section}: output '{output}' and from '{from}' must both be declared in outputs ({})",
            names(&config.outputs)
        ));
        return None;
    };
    if output == from {
        problems.push(format!("{section}: output and from name the same output"));
    }
    Some((output_spec, from_spec))
}

/// A pooled output's declarations: it makes a declared output of [rows, dim] from a declared
/// token-level output of [rows, tokens, dim], both float32, over a text bundle's attention mask.
fn check_pooling(config: &BundleConfig, problems: &mut Vec<String>) {
    let Some(pooling) = &config.pooling else {
        return;
    };
    let Some((output, from)) =
        made_output_pair("pooling", &pooling.output, &pooling.from, config, problems)
    else {
        return;
    };
    let dims_agree = output.shape.len() == 2
        && from.shape.len() == 3
        && output.shape[0] == -1
        && from.shape[0] == -1
        && output.shape[1] == from.shape[2]
        && output.shape[1] > 0;
    if output.dtype != DType::Float32 || from.dtype != DType::Float32 || !dims_agree {
        problems.push(format!(
            "pooling: '{}' (float32 [-1, dim]) is pooled from '{}' (float32 [-1, -1, dim]); found {} {} from {} {}",
            output.name,
            from.name,
            output.dtype,
            ShapeText(&output.shape),
            from.dtype,
            ShapeText(&from.shape)
        ));
    }
    if pooling.method != Pooling::First
        && !config
            .inputs
            .iter()
            .any(|spec| spec.name == "attention_mask")
    {
        problems.push(format!(
            "pooling.method: '{}' pooling reads the attention mask; the graph takes no 'attention_mask' (use 'first')",
            pooling.method.name()
        ));
    }
    if config.text.is_none() {
        problems.push(
            "pooling: pools over the tokens of a text bundle's tokenizer; add [text]".to_string(),
        );
    }
}

/// A softmax output's declarations: both float32 [-1, classes] with the same classes, read from a
/// graph output (not from another made one).
fn check_softmax(config: &BundleConfig, problems: &mut Vec<String>) {
    let Some(softmax) = &config.softmax else {
        return;
    };
    let Some((output, from)) =
        made_output_pair("softmax", &softmax.output, &softmax.from, config, problems)
    else {
        return;
    };
    let pooled = config.pooling.as_ref().map(|pooling| &pooling.output);
    if let Some(pooled) = pooled.filter(|pooled| [&softmax.output, &softmax.from].contains(pooled))
    {
        problems.push(format!(
            "softmax: reads a graph output of class scores and makes its own; '{pooled}' is pooling's output"
        ));
    }
    let classes_agree = output.shape.len() == 2
        && output.shape == from.shape
        && output.shape[0] == -1
        && output.shape[1] > 0;
    if output.dtype != DType::Float32 || from.dtype != DType::Float32 || !classes_agree {
        problems.push(format!(
            "softmax: '{}' (float32 [-1, classes]) is the softmax of '{}' (float32 [-1, classes], the same classes); found {} {} from {} {}",
            output.name,
            from.name,
            output.dtype,
            ShapeText(&output.shape),
            from.dtype,
            ShapeText(&from.shape)
        ));
    }
}

/// Checks what can be checked without the graph; returns the prediction index and label rule.
fn check_config(config: &BundleConfig, problems: &mut Vec<String>) -> (usize, LabelRule) {
    if config.schema_version != SCHEMA_VERSION {
        problems.push(format!(
            "schema_version: expected {SCHEMA_VERSION}, found {}",
            config.schema_version
        ));
    }
    if !is_safe_name(&config.name) {
        problems.push(format!(
            "name: expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit; found '{}'",
            config.name
        ));
    }
    if config.version.is_empty()
        || !config
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        problems.push(format!(
            "version: expected letters, digits, '.', '_', '+' or '-'; found '{}'",
            config.version
        ));
    }
    let escapes = config
        .model
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if config.model.as_os_str().is_empty() || escapes {
        problems.push(format!(
            "model: expected a path inside the bundle folder, found '{}'",
            config.model.display()
        ));
    }
    check_specs("inputs", &config.inputs, problems);
    check_specs("outputs", &config.outputs, problems);
    check_text(config, problems);
    check_image(config, problems);
    check_pooling(config, problems);
    check_softmax(config, problems);
    if !(config.sample.tolerance.is_finite() && config.sample.tolerance >= 0.0) {
        problems.push(format!(
            "sample.tolerance: expected a number >= 0, found {}",
            config.sample.tolerance
        ));
    }
    if config.runtime.threads == Some(0) {
        problems.push("runtime.threads: expected at least 1, found 0".to_string());
    }
    if config.runtime.instances == Some(0) {
        problems.push("runtime.instances: expected at least 1, found 0".to_string());
    }
    if config.runtime.memory_mib == Some(0) {
        problems.push("runtime.memory_mib: expected at least 1, found 0".to_string());
    }
    if config.runtime.max_batch_size == Some(0) {
        problems.push("runtime.max_batch_size: expected at least 1, found 0".to_string());
    }
    if config.runtime.max_queue_delay_ms.is_some() && config.runtime.max_batch_size.is_none() {
        problems.push(
            "runtime.max_queue_delay_ms: only means something with runtime.max_batch_size"
                .to_string(),
        );
    }
    if config.runtime.max_batch_tokens.is_some()
        && (config.runtime.max_batch_size.is_none() || config.text.is_none())
    {
        problems.push(
            "runtime.max_batch_tokens: only means something for a text bundle ([text]) with runtime.max_batch_size"
                .to_string(),
        );
    }
    if config.runtime.max_batch_tokens == Some(0) {
        problems.push("runtime.max_batch_tokens: expected at least 1, found 0".to_string());
    }
    if config.runtime.max_queue_delay_ms > Some(10_000) {
        problems.push(format!(
            "runtime.max_queue_delay_ms: expected at most 10000 (10 s), found {}",
            config.runtime.max_queue_delay_ms.unwrap_or_default()
        ));
    }

    let prediction = match (&config.prediction, config.outputs.as_slice()) {
        (None, [_]) => Some(0),
        (None, []) => None,
        (None, outputs) => {
            problems.push(format!(
                "prediction: required when the model has several outputs; name one of {}",
                names(outputs)
            ));
            None
        }
        (Some(name), outputs) => {
            let found = outputs.iter().position(|o| &o.name == name);
            if found.is_none() {
                problems.push(format!(
                    "prediction: '{name}' is not one of the outputs ({})",
                    names(outputs)
                ));
            }
            found
        }
    };
    let Some(prediction) = prediction else {
        return (0, LabelRule::None);
    };
    let spec = &config.outputs[prediction];
    // One label per row: scores are [rows, classes], class indices [rows].
    let label_rule = if spec.dtype == DType::String {
        if !config.labels.is_empty() {
            problems.push(format!(
                "labels: the prediction output '{}' gives the class names itself; leave labels empty",
                spec.name
            ));
        }
        // Class names, one per row, are the seed API's labels; strings of another shape are
        // served as they are, without the label routes (`Bundle::why_no_labels`).
        if spec.shape.len() == 1 {
            LabelRule::Text
        } else {
            LabelRule::None
        }
    } else if config.labels.is_empty() {
        LabelRule::None
    } else if spec.dtype.is_float() {
        let classes = spec.shape.last().copied();
        if classes != i64::try_from(config.labels.len()).ok() || spec.shape.len() != 2 {
            problems.push(format!(
                "labels: {} labels, but the prediction output '{}' (shape {}) is not [rows, {}] class scores",
                config.labels.len(),
                spec.name,
                ShapeText(&spec.shape),
                config.labels.len()
            ));
        }
        LabelRule::ArgmaxLastAxis
    } else if spec.dtype == DType::Bool {
        problems.push(format!(
            "labels: the prediction output '{}' is bool; labels need class scores or class indices",
            spec.name
        ));
        LabelRule::None
    } else {
        if spec.shape.len() != 1 {
            problems.push(format!(
                "labels: the prediction output '{}' holds integers, so it must be class indices of shape [rows], not {}",
                spec.name,
                ShapeText(&spec.shape)
            ));
        }
        // The class scores beside the indices, when declared, say how many classes there are.
        let classes = config
            .outputs
            .iter()
            .filter(|o| o.dtype.is_float() && o.shape.len() == 2)
            .find_map(|o| Some((o, usize::try_from(o.shape[1]).ok()?)));
        if let Some((scores, classes)) = classes.filter(|&(_, c)| c != config.labels.len()) {
            problems.push(format!(
                "labels: {} labels, but output '{}' scores {classes} classes (shape {}): give one label per class",
                config.labels.len(),
                scores.name,
                ShapeText(&scores.shape)
            ));
        }
        LabelRule::ClassIndex
    };
    (prediction, label_rule)
}

fn check_specs(field: &str, specs: &[TensorSpec], problems: &mut Vec<String>) {
    if specs.is_empty() {
        problems.push(format!("{field}: expected at least one entry"));
    }
    let mut seen = HashSet::new();
    for (index, spec) in specs.iter().enumerate() {
        if !seen.insert(spec.name.as_str()) {
            problems.push(format!(
                "{field}[{index}].name: '{}' is declared twice",
                spec.name
            ));
        }
        if spec.dtype == DType::Bytes {
            problems.push(format!(
                "{field}[{index}].dtype: bytes are an image bundle's encoded images, which the server decodes ([image]); a graph's text is \"string\""
            ));
        }
        for (axis, &dim) in spec.shape.iter().enumerate() {
            if dim != -1 && dim <= 0 {
                problems.push(format!(
                    "{field}[{index}].shape[{axis}]: expected -1 (dynamic) or a size > 0, found {dim}"
                ));
            }
        }
        if let Some(names) = &spec.dimension_names {
            if field != "inputs" {
                problems.push(format!(
                    "{field}[{index}].dimension_names: only inputs' dimensions are checked against each other"
                ));
            } else if names.len() != spec.shape.len() {
                problems.push(format!(
                    "{field}[{index}].dimension_names: {} names for a shape of {} dimensions {}",
                    names.len(),
                    spec.shape.len(),
                    ShapeText(&spec.shape)
                ));
            }
        }
        if let Some(max) = &spec.max_shape {
            if field != "inputs" {
                problems.push(format!(
                    "{field}[{index}].max_shape: only inputs take bounds; an output's sizes follow from them"
                ));
            } else if max.len() != spec.shape.len() {
                problems.push(format!(
                    "{field}[{index}].max_shape: {} sizes for a shape of {} dimensions {}",
                    max.len(),
                    spec.shape.len(),
                    ShapeText(&spec.shape)
                ));
            } else {
                for (axis, (&bound, &dim)) in max.iter().zip(&spec.shape).enumerate() {
                    if (dim == -1 && bound <= 0) || (dim != -1 && bound != dim) {
                        problems.push(format!(
                            "{field}[{index}].max_shape[{axis}]: expected {}, found {bound}",
                            if dim == -1 {
                                "a size > 0 for a dynamic dimension".to_string()
                            } else {
                                format!("the fixed size {dim}")
                            }
                        ));
                    }
                }
            }
        }
    }
}

/// iris's declarations (one float input of 4 features; a label and 3 probabilities out), for
/// the unit tests of this layer and of the layers above.
#[cfg(test)]
pub(crate) const IRIS_FOR_TESTS: &str = r#"
schema_version = 1
name = "iris"
version = "1.0.0"
model = "model.onnx"
labels = ["setosa", "versicolor", "virginica"]
prediction = "probabilities"

[[inputs]]
name = "input"
dtype = "float32"
shape = [-1, 4]

[[outputs]]
name = "label"
dtype = "int64"
shape = [-1]

[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 3]

[sample]
input = [[5.1, 3.5, 1.4, 0.2]]
output = [[0.97, 0.02, 0.01]]
tolerance = 1e-4
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(value: Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
    }

    const IRIS: &str = super::IRIS_FOR_TESTS;

    fn parse(text: &str) -> Result<Bundle, BundleError> {
        Bundle::parse(Path::new("models/iris/predictor.toml"), text)
    }

    fn problems(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_a_complete_bundle() {
        let bundle = parse(IRIS).unwrap();
        assert_eq!(bundle.prediction_spec().name, "probabilities");
        assert_eq!(bundle.label_rule, LabelRule::ArgmaxLastAxis);
        assert_eq!(bundle.model_path(), Path::new("models/iris/model.onnx"));
    }

    /// A sentence encoder's bundle: text in, token inputs for the graph, a pooled output.
    const TEXT: &str = r#"
schema_version = 1
name = "encoder"
version = "1"
model = "model.onnx"
prediction = "embedding"

[text]
tokenizer = "tokenizer.json"

[[inputs]]
name = "input_ids"
dtype = "int64"
shape = [-1, -1]
max_shape = [16, 128]

[[inputs]]
name = "attention_mask"
dtype = "int64"
shape = [-1, -1]

[[outputs]]
name = "tokens"
dtype = "float32"
shape = [-1, -1, 8]

[[outputs]]
name = "embedding"
dtype = "float32"
shape = [-1, 8]

[pooling]
output = "embedding"
from = "tokens"
method = "mean"
normalize = true

[sample]
input = ["hello world"]
output = [[0, 0, 0, 0, 0, 0, 0, 1]]
tolerance = 1e-3
"#;

    const IMAGE: &str = r#"
schema_version = 1
name = "pages"
version = "1"
model = "model.onnx"
labels = ["0", "90", "180", "270"]

[image]
resize = 256
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
channels = "BGR"

[[inputs]]
name = "x"
dtype = "float32"
shape = [-1, 3, 224, 224]
max_shape = [8, 3, 224, 224]

[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 4]

[sample]
input = ["page.png"]
output = [[1.0, 0.0, 0.0, 0.0]]
tolerance = 0.01
"#;

    #[test]
    fn an_image_bundle_shows_callers_one_input_of_encoded_images() {
        let bundle = parse(IMAGE).unwrap();
        let [image] = bundle.public_inputs.as_slice() else {
            panic!("{:?}", bundle.public_inputs)
        };
        assert_eq!(
            (image.name.as_str(), image.dtype, image.shape.as_slice()),
            ("image", DType::Bytes, &[-1][..])
        );
        assert_eq!(image.max_shape, Some(vec![8]));
        let config = bundle.config.image.as_ref().unwrap();
        assert_eq!(
            (config.resize, config.divide_by, config.layout),
            (Some(ResizeRule::ShorterSide(256)), 255.0, Layout::Nchw)
        );
        assert_eq!(config.channels, ChannelOrder::Bgr);
        assert_eq!(
            image_size(Layout::Nchw, &[-1, 3, 224, 200]),
            Some([224, 200])
        );
        assert_eq!(
            image_size(Layout::Nhwc, &[-1, 224, 200, 3]),
            Some([224, 200])
        );
        assert_eq!(image_size(Layout::Nhwc, &[-1, 3, 224, 224]), None);
        assert_eq!(image_size(Layout::Nchw, &[-1, 3, -1, 224]), None);
        // The sample names files in the bundle folder, which must be there.
        let message = bundle.sample_inputs().unwrap_err();
        assert!(
            message.contains("cannot read image 'page.png'"),
            "{message}"
        );
        let escaping = parse(&IMAGE.replace("[\"page.png\"]", "[\"../page.png\"]")).unwrap();
        let message = escaping.sample_inputs().unwrap_err();
        assert!(message.contains("inside the bundle folder"), "{message}");
    }

    #[test]
    fn an_image_bundles_declarations_are_checked() {
        for (change, expected) in [
            (
                ("shape = [-1, 3, 224, 224]", "shape = [-1, 224, 224, 3]"),
                "must be float32, float16, float64 or uint8 of shape [-1, 3, height, width]",
            ),
            (
                ("channels = \"BGR\"", "layout = \"NHWC\""),
                "must be float32, float16, float64 or uint8 of shape [-1, height, width, 3]",
            ),
            (
                (
                    "dtype = \"float32\"\nshape = [-1, 3",
                    "dtype = \"int32\"\nshape = [-1, 3",
                ),
                "found int32 [-1, 3, 224, 224]",
            ),
            (
                (
                    "dtype = \"float32\"\nshape = [-1, 3",
                    "dtype = \"uint8\"\nshape = [-1, 3",
                ),
                "a uint8 graph input takes the pixels as they are",
            ),
            (
                ("shape = [-1, 3, 224, 224]", "shape = [-1, 3, -1, -1]"),
                "with a fixed height and width",
            ),
            (("resize = 256", "resize = 0"), "expected a size > 0"),
            (
                ("resize = 256", "resize = [200, 300]"),
                "[200, 300] is smaller than the graph's [224, 224]",
            ),
            (("resize = 256", "divide_by = 0.0"), "image.divide_by"),
            (
                ("std = [0.229, 0.224, 0.225]", "std = [0.229, 0.0, 0.225]"),
                "image.std: expected numbers > 0",
            ),
            (
                ("[image]", "[image]\ninput = \"x\""),
                "is the graph input's name",
            ),
            (
                ("channels = \"BGR\"", "channels = \"RGBA\""),
                "unknown variant `RGBA`",
            ),
            (
                ("[image]", "[text]\ntokenizer = \"t.json\"\n\n[image]"),
                "takes text ([text]) or images ([image]), not both",
            ),
        ] {
            let message = problems(&IMAGE.replace(change.0, change.1));
            assert!(message.contains(expected), "{change:?}: {message}");
        }
        let two_inputs = IMAGE.replace(
            "[[outputs]]",
            "[[inputs]]\nname = \"y\"\ndtype = \"float32\"\nshape = [-1, 1]\n\n[[outputs]]",
        );
        assert!(problems(&two_inputs).contains("takes one input, the image; found 2"));
        // The graph's other image element types; uint8 with the pixels as they are.
        for dtype in ["float16", "float64"] {
            let other = IMAGE.replace(
                "dtype = \"float32\"\nshape = [-1, 3",
                &format!("dtype = \"{dtype}\"\nshape = [-1, 3"),
            );
            assert!(parse(&other).is_ok(), "{dtype}");
        }
        let raw_pixels = IMAGE
            .replace(
                "dtype = \"float32\"\nshape = [-1, 3",
                "dtype = \"uint8\"\nshape = [-1, 3",
            )
            .replace("mean = [0.485, 0.456, 0.406]", "divide_by = 1")
            .replace("std = [0.229, 0.224, 0.225]", "");
        parse(&raw_pixels).unwrap();
        // Bytes are the server's own: no graph input or output is declared so.
        let bytes = IRIS.replacen("dtype = \"float32\"", "dtype = \"bytes\"", 1);
        assert!(problems(&bytes).contains("bytes are an image bundle's encoded images"));
    }

    #[test]
    fn a_text_bundle_shows_callers_one_text_input_bounded_by_its_token_inputs_rows() {
        let bundle = parse(TEXT).unwrap();
        let [text] = bundle.public_inputs.as_slice() else {
            panic!("{:?}", bundle.public_inputs)
        };
        assert_eq!(
            (text.name.as_str(), text.dtype, text.shape.as_slice()),
            ("text", DType::String, &[-1][..])
        );
        assert_eq!(text.max_shape, Some(vec![16]));
        let inputs = bundle.decode_inputs(&bundle.sample_input, "sample.input");
        assert_eq!(inputs.unwrap()[0].shape(), [1]);
        let rows = raw(json!(vec!["a"; 17]));
        let too_many = bundle.decode_inputs(&rows, "data").unwrap();
        let message = bundle.check_bounds(&too_many).unwrap_err();
        assert!(
            message.contains("input 'text' has 17 at axis 0"),
            "{message}"
        );
    }

    #[test]
    fn a_text_bundles_declarations_are_checked() {
        for (change, expected) in [
            (
                ("name = \"attention_mask\"", "name = \"pixels\""),
                "'pixels' is not one",
            ),
            (
                ("name = \"input_ids\"", "name = \"token_type_ids\""),
                "takes 'input_ids'",
            ),
            (
                ("dtype = \"int64\"", "dtype = \"float32\""),
                "must be int64 or int32 of shape [-1, -1]",
            ),
            (
                (
                    "tokenizer = \"tokenizer.json\"",
                    "tokenizer = \"../tokenizer.json\"",
                ),
                "text.tokenizer: expected a path inside",
            ),
            (
                (
                    "tokenizer = \"tokenizer.json\"",
                    "tokenizer = \"t.json\"\ninput = \"input_ids\"",
                ),
                "is a graph input's name",
            ),
            (
                ("from = \"tokens\"", "from = \"nothing\""),
                "must both be declared",
            ),
            (
                ("shape = [-1, 8]", "shape = [-1, 9]"),
                "is pooled from 'tokens'",
            ),
            (
                ("method = \"mean\"", "method = \"median\""),
                "unknown variant `median`",
            ),
        ] {
            let message = problems(&TEXT.replacen(change.0, change.1, 1));
            assert!(message.contains(expected), "{change:?}: {message}");
        }
        let without_mask = TEXT.replace("name = \"attention_mask\"", "name = \"token_type_ids\"");
        let message = problems(&without_mask.replace("method = \"mean\"", "method = \"max\""));
        assert!(
            message.contains("'max' pooling reads the attention mask"),
            "{message}"
        );
        let message = problems(&TEXT.replace("[text]\ntokenizer = \"tokenizer.json\"\n", ""));
        assert!(message.contains("add [text]"), "{message}");
        let message = problems(&format!(
            "{IRIS}\n[runtime]\nmax_batch_size = 8\nmax_batch_tokens = 64\n"
        ));
        assert!(
            message.contains("runtime.max_batch_tokens: only means something for a text bundle"),
            "{message}"
        );
        let message = problems(&format!(
            "{TEXT}\n[runtime]\nmax_batch_size = 8\nmax_batch_tokens = 0\n"
        ));
        assert!(
            message.contains("expected at least 1, found 0"),
            "{message}"
        );
        assert!(parse(&format!(
            "{TEXT}\n[runtime]\nmax_batch_size = 8\nmax_batch_tokens = 64\n"
        ))
        .is_ok());
    }

    /// A classifier whose graph answers logits: the softmax output is the prediction.
    const LOGITS: &str = r#"
schema_version = 1
name = "tickets"
version = "1"
model = "model.onnx"
labels = ["a", "b", "c"]
prediction = "probabilities"

[[inputs]]
name = "features"
dtype = "float32"
shape = [-1, 4]

[[outputs]]
name = "logits"
dtype = "float32"
shape = [-1, 3]

[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 3]

[softmax]
output = "probabilities"
from = "logits"

[sample]
input = [[1, 2, 3, 4]]
output = [[0.2, 0.3, 0.5]]
tolerance = 1e-4
"#;

    #[test]
    fn a_softmax_output_is_declared_beside_the_class_scores_it_reads() {
        let bundle = parse(LOGITS).unwrap();
        assert_eq!(bundle.prediction_spec().name, "probabilities");
        assert_eq!(
            bundle.config.made_outputs().collect::<Vec<_>>(),
            ["probabilities"]
        );
        for (change, expected) in [
            (
                ("from = \"logits\"", "from = \"scores\""),
                "must both be declared",
            ),
            (
                ("from = \"logits\"", "from = \"probabilities\""),
                "output and from name the same output",
            ),
            (
                (
                    "shape = [-1, 3]\n\n[softmax]",
                    "shape = [-1, 4]\n\n[softmax]",
                ),
                "the same classes",
            ),
            (
                ("[softmax]", "[softmax]\nnormalize = true"),
                "unknown field `normalize`",
            ),
        ] {
            let message = problems(&LOGITS.replacen(change.0, change.1, 1));
            assert!(message.contains(expected), "{change:?}: {message}");
        }
        let text_and_softmax =
            format!("{TEXT}\n[softmax]\noutput = \"embedding\"\nfrom = \"tokens\"\n");
        let message = problems(&text_and_softmax);
        assert!(
            message.contains("'embedding' is pooling's output"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_and_key() {
        let message = problems(&IRIS.replace("[sample]", "[sample]\ntolerence = 1"));
        assert!(
            message.starts_with("models/iris/predictor.toml: "),
            "{message}"
        );
        assert!(message.contains("unknown field `tolerence`"), "{message}");
        let message = problems(&IRIS.replace("dtype = \"int64\"", "dtype = \"int64\"\nsize = 3"));
        assert!(message.contains("unknown field `size`"), "{message}");
    }

    #[test]
    fn an_unknown_dtype_is_named() {
        let message = problems(&IRIS.replace("\"int64\"", "\"long\""));
        assert!(message.contains("unknown variant `long`"), "{message}");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let text = IRIS
            .replace("schema_version = 1", "schema_version = 2")
            .replace("name = \"iris\"", "name = \"Iris SVC\"")
            .replace("model = \"model.onnx\"", "model = \"../other/model.onnx\"")
            .replace("shape = [-1, 4]", "shape = [-1, 0]")
            .replace("prediction = \"probabilities\"", "prediction = \"scores\"")
            .replace("tolerance = 1e-4", "tolerance = -1.0");
        let message = problems(&text);
        for expected in [
            "schema_version: expected 1, found 2",
            "name: expected lowercase letters",
            "model: expected a path inside the bundle folder, found '../other/model.onnx'",
            "inputs[0].shape[1]: expected -1 (dynamic) or a size > 0, found 0",
            "prediction: 'scores' is not one of the outputs ('label', 'probabilities')",
            "sample.tolerance: expected a number >= 0, found -1",
        ] {
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
    }

    #[test]
    fn labels_must_match_the_classes() {
        let message = problems(&IRIS.replace("\"virginica\"]", "\"virginica\", \"other\"]"));
        assert!(message.contains("labels: 4 labels"), "{message}");
        let by_index =
            parse(&IRIS.replace("prediction = \"probabilities\"", "prediction = \"label\""))
                .unwrap();
        assert_eq!(by_index.label_rule, LabelRule::ClassIndex);
    }

    #[test]
    fn reads_the_runtime_hints() {
        let bundle = parse(&format!(
            "{IRIS}\n[runtime]\nthreads = 2\ninstances = 3\nmemory_mib = 256\n"
        ))
        .unwrap();
        assert_eq!(bundle.config.runtime.threads, Some(2));
        assert_eq!(bundle.config.runtime.instances, Some(3));
        let message = problems(&format!("{IRIS}\n[runtime]\ninstances = 0\n"));
        assert!(
            message.contains("runtime.instances: expected at least 1, found 0"),
            "{message}"
        );
        assert_eq!(bundle.config.runtime.memory_mib, Some(256));
        assert_eq!(parse(IRIS).unwrap().config.runtime.memory_mib, None);
        let message = problems(&format!("{IRIS}\n[runtime]\nmemory_mib = 0\n"));
        assert!(
            message.contains("runtime.memory_mib: expected at least 1, found 0"),
            "{message}"
        );
        let message = problems(&format!("{IRIS}\n[runtime]\nmemory = 1\n"));
        assert!(message.contains("unknown field `memory`"), "{message}");
    }

    #[test]
    fn prediction_is_required_only_with_several_outputs() {
        let message = problems(&IRIS.replace("prediction = \"probabilities\"\n", ""));
        assert!(message.contains("prediction: required"), "{message}");
    }

    #[test]
    fn decodes_inputs_and_names_the_field_on_error() {
        let bundle = parse(IRIS).unwrap();
        let inputs = bundle
            .decode_inputs(&raw(json!([[1, 2, 3, 4], [5, 6, 7, 8]])), "data")
            .unwrap();
        assert_eq!(inputs[0].shape(), &[2, 4]);
        let error = bundle
            .decode_inputs(&raw(json!([[1, 2, 3]])), "data")
            .unwrap_err();
        assert_eq!(
            error,
            "data: input 'input' expects shape [-1, 4], received shape [1, 3]"
        );
    }

    #[test]
    fn several_inputs_take_a_table_by_name() {
        let text = IRIS.replace(
            "[[outputs]]\nname = \"label\"",
            "[[inputs]]\nname = \"mask\"\ndtype = \"bool\"\nshape = [-1]\n\n[[outputs]]\nname = \"label\"",
        );
        let bundle = parse(&text).unwrap();
        let inputs = bundle
            .decode_inputs(
                &raw(json!({"mask": [true], "input": [[1, 2, 3, 4]]})),
                "data",
            )
            .unwrap();
        assert_eq!(
            (inputs[0].shape(), inputs[1].shape()),
            (&[1, 4][..], &[1][..])
        );
        let error = |value| bundle.decode_inputs(&raw(value), "data").unwrap_err();
        assert_eq!(
            error(json!({"input": [[1, 2, 3, 4]]})),
            "data: missing input 'mask'"
        );
        assert_eq!(
            error(json!({"input": [[1, 2, 3, 4]], "mask": [true], "extra": [1]})),
            "data: unknown input 'extra'; the inputs are 'input', 'mask'"
        );
        assert!(error(json!([[1, 2, 3, 4]]))
            .contains("expected a table of rows by input name ('input', 'mask')"));
        assert_eq!(
            error(json!({"input": [[1, 2, 3, 4]], "mask": [1]})),
            "data.mask: expected bool at [0], received a number"
        );
    }

    #[test]
    fn a_scalar_input_takes_a_bare_value() {
        // A voice activity model's sample rate: a rank-0 int64 beside the rows.
        let text = IRIS.replace(
            "[[outputs]]\nname = \"label\"",
            "[[inputs]]\nname = \"sr\"\ndtype = \"int64\"\nshape = []\n\n[[outputs]]\nname = \"label\"",
        );
        let bundle = parse(&text).unwrap();
        let inputs = bundle
            .decode_inputs(&raw(json!({"sr": 16000, "input": [[1, 2, 3, 4]]})), "data")
            .unwrap();
        assert_eq!(inputs[1].shape(), &[] as &[usize]);
        assert_eq!(inputs[1].data().value_f64(0), 16000.0);
        let error = |value| bundle.decode_inputs(&raw(value), "data").unwrap_err();
        assert_eq!(
            error(json!({"input": [[1, 2, 3, 4]], "sr": [16000]})),
            "data.sr: expected one int64 value (a scalar, shape []), received an array"
        );
        assert_eq!(
            error(json!({"input": [[1, 2, 3, 4]], "sr": 1.5})),
            "data.sr: expected int64 at the top level, received 1.5"
        );
        // Only a declared scalar takes a bare value.
        assert!(error(json!({"input": 4, "sr": 16000}))
            .contains("data.input: expected a nested array of float32 values, received a number"));
    }

    #[test]
    fn dynamic_dimensions_are_bounded_by_max_shape_or_the_default() {
        // Token ids: rows and a sequence, both dynamic.
        let tokens = IRIS.replace("shape = [-1, 4]", "shape = [-1, -1]");
        let undeclared = parse(&tokens).unwrap();
        assert_eq!(undeclared.default_bounds(), vec!["input 'input' axis 1"]);
        let tensor = |rows: usize, sequence: usize| {
            Tensor::new(
                vec![rows, sequence],
                crate::tensor::TensorData::Float32(vec![0.0; rows * sequence]),
            )
            .unwrap()
        };
        // Rows are --max-rows-per-request's to bound; the sequence takes the default.
        assert_eq!(undeclared.check_bounds(&[tensor(5000, 1024)]), Ok(()));
        assert_eq!(
            undeclared.check_bounds(&[tensor(1, 1025)]).unwrap_err(),
            "input 'input' has 1025 at axis 1, past its bound of 1024 (the default for a dynamic dimension; the bundle can declare another in max_shape): send less at once"
        );
        let declared = parse(&tokens.replace(
            "shape = [-1, -1]\n",
            "shape = [-1, -1]\nmax_shape = [64, 256]\n",
        ))
        .unwrap();
        assert!(declared.default_bounds().is_empty());
        assert_eq!(declared.check_bounds(&[tensor(64, 256)]), Ok(()));
        assert_eq!(
            declared.check_bounds(&[tensor(65, 1)]).unwrap_err(),
            "input 'input' has 65 at axis 0, past its bound of 64 (its max_shape in predictor.toml): send less at once"
        );
        assert!(declared
            .check_bounds(&[tensor(1, 257)])
            .unwrap_err()
            .starts_with("input 'input' has 257 at axis 1, past its bound of 256"));
    }

    #[test]
    fn max_shape_must_fit_the_shape() {
        let with = |max: &str| {
            problems(&IRIS.replace(
                "shape = [-1, 4]\n",
                &format!("shape = [-1, 4]\nmax_shape = {max}\n"),
            ))
        };
        assert!(with("[8]")
            .contains("inputs[0].max_shape: 1 sizes for a shape of 2 dimensions [-1, 4]"));
        assert!(
            with("[8, 5]").contains("inputs[0].max_shape[1]: expected the fixed size 4, found 5")
        );
        assert!(with("[0, 4]").contains(
            "inputs[0].max_shape[0]: expected a size > 0 for a dynamic dimension, found 0"
        ));
        assert!(problems(
            &IRIS.replace("shape = [-1, 3]\n", "shape = [-1, 3]\nmax_shape = [8, 3]\n")
        )
        .contains("outputs[1].max_shape: only inputs take bounds"));
    }

    #[test]
    fn labels_need_one_value_per_row() {
        let message = problems(&IRIS.replace("shape = [-1, 3]", "shape = [-1, 2, 3]"));
        assert!(
            message.contains("is not [rows, 3] class scores"),
            "{message}"
        );
        let text = IRIS
            .replace("prediction = \"probabilities\"", "prediction = \"label\"")
            .replace("shape = [-1]\n", "shape = [-1, 1]\n");
        assert!(problems(&text).contains("must be class indices of shape [rows], not [-1, 1]"));
    }
}
