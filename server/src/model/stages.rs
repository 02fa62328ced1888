//! A bundle's preprocessing and postprocessing around a run, as its `predictor.toml` declares
//! them: a text bundle's tokenizer makes the graph's token inputs from the callers' text, and a
//! pooled output is made from a token-level one over the attention mask; an image bundle's
//! preprocessing makes the graph's pixels from the callers' encoded images.

use crate::bundle::{Bundle, BundleError, TOKEN_INPUTS};
use crate::postprocess::pooling::{self, Pooling};
use crate::preprocess::image::{ImageError, PixelValue, Preprocessing};
use crate::preprocess::tokens::TextTokenizer;
use crate::runtime::RuntimeError;
use crate::tensor::{DType, Tensor, TensorData};

/// A text bundle's tokenizer and the graph inputs it fills.
pub(super) struct TextStage {
    tokenizer: TextTokenizer,
    /// For each declared input, in declaration order: which of [`TOKEN_INPUTS`] it takes, and its
    /// element type.
    fills: Vec<(usize, DType)>,
}

impl TextStage {
    /// The stage of a text bundle (none for others): its tokenizer, truncating at the least
    /// bound of the token inputs' sequence axis.
    pub(super) fn of(bundle: &Bundle) -> Result<Option<TextStage>, BundleError> {
        let Some(text) = &bundle.config.text else {
            return Ok(None);
        };
        let inputs = &bundle.config.inputs;
        let tokenizer =
            TextTokenizer::read(&bundle.dir().join(&text.tokenizer), bundle.sequence_bound())
                .map_err(|problem| bundle.error(format!("text.tokenizer: {problem}")))?;
        let fills = inputs
            .iter()
            .map(|spec| {
                let field = TOKEN_INPUTS
                    .iter()
                    .position(|name| *name == spec.name)
                    .ok_or_else(|| {
                        bundle.error(format!("inputs: '{}' is no token input", spec.name))
                    })?;
                Ok((field, spec.dtype))
            })
            .collect::<Result<_, BundleError>>()?;
        Ok(Some(TextStage { tokenizer, fills }))
    }

    /// The most tokens of one row.
    pub(super) fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// For each declared input, in declaration order, the value that pads its rows to the
    /// longest of a batch: the padding token's id, a zero mask, the padding type.
    pub(super) fn pad_values(&self) -> Vec<i64> {
        let (pad_id, pad_type_id) = self.tokenizer.pad_ids();
        self.fills
            .iter()
            .map(|&(field, _)| match field {
                0 => pad_id,
                1 => 0,
                _ => pad_type_id,
            })
            .collect()
    }

    /// The tokens of a request's rows, padding left out: the attention mask's ones where the
    /// graph takes the mask, else every row at the request's length.
    pub(super) fn tokens_of(&self, declared_inputs: &[Tensor]) -> usize {
        let mask = self.fills.iter().position(|&(field, _)| field == 1);
        match mask
            .and_then(|index| declared_inputs.get(index))
            .map(Tensor::data)
        {
            Some(TensorData::Int64(mask)) => mask.iter().filter(|&&one| one != 0).count(),
            Some(TensorData::Int32(mask)) => mask.iter().filter(|&&one| one != 0).count(),
            _ => declared_inputs
                .first()
                .map_or(0, |ids| ids.shape().iter().product()),
        }
    }

    /// The declared (token) inputs, in declaration order, for the public text input's rows.
    pub(super) fn token_inputs(&self, public: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let texts = match public.first().map(Tensor::data) {
            Some(TensorData::String(texts)) if public.len() == 1 => texts,
            _ => return Err("expected one input of text, a string per row".to_string()),
        };
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut batch = self.tokenizer.encode(&texts)?;
        let shape = vec![batch.rows, batch.length];
        self.fills
            .iter()
            .map(|&(field, dtype)| {
                // Each field fills one input (the bundle declares an input once): moved, not
                // copied.
                let values = std::mem::take(match field {
                    0 => &mut batch.input_ids,
                    1 => &mut batch.attention_mask,
                    _ => &mut batch.token_type_ids,
                });
                let data = match dtype {
                    DType::Int32 => TensorData::Int32(
                        values
                            .iter()
                            .map(|&value| i32::try_from(value).unwrap_or(i32::MAX))
                            .collect(),
                    ),
                    _ => TensorData::Int64(values),
                };
                Tensor::new(shape.clone(), data).map_err(|error| error.to_string())
            })
            .collect()
    }
}

/// An image bundle's preprocessing: the callers' encoded images to the graph's one input.
pub(super) struct ImageStage {
    /// The name callers give the images, for messages.
    input: String,
    preprocessing: Preprocessing,
    /// The graph's image input's element type (float32, float16, float64 or uint8: the bundle's
    /// checks see to it).
    dtype: DType,
}

impl ImageStage {
    /// The stage of an image bundle (none for others), each image bounded to `max_pixels`.
    pub(super) fn of(bundle: &Bundle, max_pixels: u64) -> Option<ImageStage> {
        Some(ImageStage {
            input: bundle.config.image.as_ref()?.input.clone(),
            preprocessing: bundle.image_preprocessing(max_pixels)?,
            dtype: bundle.config.inputs.first()?.dtype,
        })
    }

    /// Pixels an image may have.
    pub(super) fn max_pixels(&self) -> u64 {
        self.preprocessing.max_pixels
    }

    /// The graph's image input ([rows, 3, height, width] or [rows, height, width, 3]) for the
    /// public input's rows, one encoded image each: decoded, resized, cropped and normalized one
    /// after another, so that one decoded image is held at a time.
    pub(super) fn pixel_inputs(&self, public: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let images = match public.first().map(Tensor::data) {
            Some(TensorData::Bytes(images)) if public.len() == 1 => images,
            _ => return Err("expected one input of images, encoded bytes per row".to_string()),
        };
        let data = match self.dtype {
            DType::Float16 => TensorData::Float16(self.values(images)?),
            DType::Float64 => TensorData::Float64(self.values(images)?),
            DType::Uint8 => TensorData::Uint8(self.values(images)?),
            _ => TensorData::Float32(self.values(images)?),
        };
        let tensor = Tensor::new(self.preprocessing.shape(images.len()), data)
            .map_err(|error| error.to_string())?;
        Ok(vec![tensor])
    }

    /// The values of every image, one after another.
    fn values<T: PixelValue>(&self, images: &[Vec<u8>]) -> Result<Vec<T>, String> {
        let steps = &self.preprocessing;
        let mut values = Vec::with_capacity(images.len() * steps.values_per_image());
        for (row, image) in images.iter().enumerate() {
            steps.pixels_into(image, &mut values).map_err(|error| {
                let hint = match error {
                    // Most likely an image sent as JSON text.
                    ImageError::NotAnImage => "; JSON carries an image in base64 (the seed API's rows; over v2, with the input's parameter \"content_type\": \"base64\")",
                    _ => "",
                };
                format!("input '{}' row {row}: {error}{hint}", self.input)
            })?;
        }
        Ok(values)
    }
}

/// How the declared outputs come from the graph's: most are the graph's own, in declaration
/// order; a pooled or softmax output is made after the run from a declared graph output.
pub(super) struct OutputStage {
    /// For each declared output, how the server makes it (none: the graph gives it).
    made: Vec<Option<MadeOutput>>,
    /// The index of the attention mask among the declared inputs, which pooling reads.
    mask_input: Option<usize>,
}

enum MadeOutput {
    /// A token-level output ([rows, tokens, dim]) pooled to [rows, dim].
    Pooled {
        from: usize,
        method: Pooling,
        normalize: bool,
    },
    /// The softmax of each row of class scores ([rows, classes]).
    Softmax { from: usize },
}

impl OutputStage {
    pub(super) fn of(bundle: &Bundle) -> OutputStage {
        let config = &bundle.config;
        let index = |name: &str| config.outputs.iter().position(|spec| spec.name == name);
        let mut made: Vec<Option<MadeOutput>> = config.outputs.iter().map(|_| None).collect();
        // The bundle's checks made sure both names are declared outputs.
        if let Some(pooling) = &config.pooling {
            if let (Some(output), Some(from)) = (index(&pooling.output), index(&pooling.from)) {
                made[output] = Some(MadeOutput::Pooled {
                    from,
                    method: pooling.method,
                    normalize: pooling.normalize,
                });
            }
        }
        if let Some(softmax) = &config.softmax {
            if let (Some(output), Some(from)) = (index(&softmax.output), index(&softmax.from)) {
                made[output] = Some(MadeOutput::Softmax { from });
            }
        }
        let pools = made
            .iter()
            .any(|made| matches!(made, Some(MadeOutput::Pooled { .. })));
        OutputStage {
            made,
            mask_input: config
                .inputs
                .iter()
                .position(|spec| spec.name == "attention_mask")
                .filter(|_| pools),
        }
    }

    /// Whether the server makes the declared output `declared` (the graph does not give it).
    pub(super) fn is_made(&self, declared: usize) -> bool {
        matches!(self.made.get(declared), Some(Some(_)))
    }

    /// The index of the declared output `declared` among the graph outputs a run returns; none
    /// for a made one.
    pub(super) fn graph_index(&self, declared: usize) -> Option<usize> {
        if self.is_made(declared) {
            return None;
        }
        Some(
            (0..declared)
                .filter(|&before| !self.is_made(before))
                .count(),
        )
    }

    /// The attention mask among a request's declared inputs, kept for pooling after the run.
    pub(super) fn mask_of(&self, declared_inputs: &[Tensor]) -> Option<Vec<i64>> {
        let mask = declared_inputs.get(self.mask_input?)?;
        match mask.data() {
            TensorData::Int64(values) => Some(values.clone()),
            TensorData::Int32(values) => Some(values.iter().map(|&v| i64::from(v)).collect()),
            _ => None,
        }
    }

    /// Every declared output, from the graph's (the declared ones but the made ones, in order):
    /// each made one put in its place.
    pub(super) fn complete(
        &self,
        graph_outputs: Vec<Tensor>,
        mask: Option<&[i64]>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let mut graph_outputs = graph_outputs.into_iter();
        let mut declared: Vec<Option<Tensor>> = self
            .made
            .iter()
            .map(|made| match made {
                None => graph_outputs.next(),
                Some(_) => None,
            })
            .collect();
        for (index, made) in self.made.iter().enumerate() {
            let Some(made) = made else {
                continue;
            };
            let (MadeOutput::Pooled { from, .. } | MadeOutput::Softmax { from }) = made;
            let source = declared
                .get(*from)
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    RuntimeError::Inference("the model returned too few outputs".to_string())
                })?;
            declared[index] = Some(match made {
                MadeOutput::Pooled {
                    method, normalize, ..
                } => pooled(source, *method, *normalize, mask)?,
                MadeOutput::Softmax { .. } => softmax(source)?,
            });
        }
        declared
            .into_iter()
            .map(|output| {
                output.ok_or_else(|| {
                    RuntimeError::Inference("the model returned too few outputs".to_string())
                })
            })
            .collect()
    }
}

/// `tokens` ([rows, tokens, dim]) pooled to one vector per row over the attention mask.
fn pooled(
    tokens: &Tensor,
    method: Pooling,
    normalize: bool,
    mask: Option<&[i64]>,
) -> Result<Tensor, RuntimeError> {
    let (TensorData::Float32(values), &[rows, length, dim]) = (tokens.data(), tokens.shape())
    else {
        return Err(RuntimeError::Inference(format!(
            "the token-level output came back as {} of shape {:?}, not float32 [rows, tokens, dim]",
            tokens.dtype(),
            tokens.shape()
        )));
    };
    let everything = vec![1; rows * length];
    let mask = match (method, mask) {
        (Pooling::First, _) | (_, None) => &everything[..],
        (_, Some(mask)) => mask,
    };
    if mask.len() != rows * length {
        return Err(RuntimeError::Inference(format!(
            "the token-level output has {rows} x {length} tokens for an attention mask of {}",
            mask.len()
        )));
    }
    let mut pooled = pooling::pool(method, values, mask, rows, length, dim);
    if normalize {
        pooling::normalize_l2(&mut pooled, dim);
    }
    Tensor::new(vec![rows, dim], TensorData::Float32(pooled))
        .map_err(|error| RuntimeError::Inference(error.to_string()))
}

/// The softmax of each row of `scores` ([rows, classes]).
fn softmax(scores: &Tensor) -> Result<Tensor, RuntimeError> {
    let (TensorData::Float32(values), &[rows, classes]) = (scores.data(), scores.shape()) else {
        return Err(RuntimeError::Inference(format!(
            "the class scores came back as {} of shape {:?}, not float32 [rows, classes]",
            scores.dtype(),
            scores.shape()
        )));
    };
    let mut probabilities = values.clone();
    pooling::softmax(&mut probabilities, classes);
    Tensor::new(vec![rows, classes], TensorData::Float32(probabilities))
        .map_err(|error| RuntimeError::Inference(error.to_string()))
}
