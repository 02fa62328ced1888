//! A bundle's preprocessing and postprocessing around a run, as its `predictor.toml` declares
//! them: a text bundle's tokenizer makes the graph's token inputs from the callers' text, and a
//! pooled output is made from a token-level one over the attention mask.

use crate::bundle::{Bundle, BundleError, TOKEN_INPUTS};
use crate::postprocess::pooling::{self, Pooling};
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

/// A declared output pooled from a token-level one.
pub(super) struct PooledOutput {
    /// Its index among the declared outputs.
    pub(super) output: usize,
    /// The index of the output it pools, among the declared outputs.
    from: usize,
    method: Pooling,
    normalize: bool,
    /// The index of the attention mask among the declared inputs.
    mask_input: Option<usize>,
}

impl PooledOutput {
    pub(super) fn of(bundle: &Bundle) -> Option<PooledOutput> {
        let pooling = bundle.config.pooling.as_ref()?;
        let index = |name: &str| {
            bundle
                .config
                .outputs
                .iter()
                .position(|spec| spec.name == name)
        };
        Some(PooledOutput {
            output: index(&pooling.output)?,
            from: index(&pooling.from)?,
            method: pooling.method,
            normalize: pooling.normalize,
            mask_input: bundle
                .config
                .inputs
                .iter()
                .position(|spec| spec.name == "attention_mask"),
        })
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

    /// Every declared output, from the graph's (the declared ones but this, in order): the pooled
    /// one made and put in its place.
    pub(super) fn add(
        &self,
        mut outputs: Vec<Tensor>,
        mask: Option<&[i64]>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let from = if self.from > self.output {
            self.from - 1
        } else {
            self.from
        };
        let tokens = outputs.get(from).ok_or_else(|| {
            RuntimeError::Inference("the model returned no token-level output".to_string())
        })?;
        let (TensorData::Float32(values), &[rows, length, dim]) = (tokens.data(), tokens.shape())
        else {
            return Err(RuntimeError::Inference(format!(
                "the token-level output came back as {} of shape {:?}, not float32 [rows, tokens, dim]",
                tokens.dtype(),
                tokens.shape()
            )));
        };
        let everything = vec![1; rows * length];
        let mask = match (self.method, mask) {
            (Pooling::First, _) | (_, None) => &everything[..],
            (_, Some(mask)) => mask,
        };
        if mask.len() != rows * length {
            return Err(RuntimeError::Inference(format!(
                "the token-level output has {rows} x {length} tokens for an attention mask of {}",
                mask.len()
            )));
        }
        let mut pooled = pooling::pool(self.method, values, mask, rows, length, dim);
        if self.normalize {
            pooling::normalize_l2(&mut pooled, dim);
        }
        let pooled = Tensor::new(vec![rows, dim], TensorData::Float32(pooled))
            .map_err(|error| RuntimeError::Inference(error.to_string()))?;
        outputs.insert(self.output.min(outputs.len()), pooled);
        Ok(outputs)
    }
}
