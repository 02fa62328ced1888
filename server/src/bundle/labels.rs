//! The labels of `/predict/label`: how a bundle's prediction output becomes one label per row.

use super::{Bundle, LabelRule};
use crate::tensor::{DType, Tensor};
use crate::text::ShapeText;

impl Bundle {
    /// Why the seed API's label routes (`/predict/label`, `/predict/test/label`) do not serve this
    /// bundle; None when they do.
    pub fn why_no_labels(&self) -> Option<String> {
        if self.label_rule != LabelRule::None {
            return None;
        }
        let spec = self.prediction_spec();
        Some(if spec.dtype == DType::String {
            format!(
                "its prediction output '{}' holds strings of shape {}, not one class name per row (shape [rows])",
                spec.name,
                ShapeText(&spec.shape)
            )
        } else {
            "it declares no labels".to_string()
        })
    }

    /// Each row's label; None for a class index past the declared labels.
    pub fn labels_of(&self, prediction: &Tensor) -> Result<Vec<Option<String>>, String> {
        let labels = &self.config.labels;
        let data = prediction.data();
        let indices: Vec<f64> = match self.label_rule {
            LabelRule::None => return Err(format!("bundle '{}' declares no labels", self.name())),
            LabelRule::Text => {
                return Ok((0..data.len()).map(|i| Some(data.value_text(i))).collect())
            }
            LabelRule::ClassIndex => (0..data.len()).map(|i| data.value_f64(i)).collect(),
            LabelRule::ArgmaxLastAxis => {
                let classes = labels.len();
                let mut indices = Vec::with_capacity(data.len() / classes);
                for row in 0..data.len() / classes {
                    let score = |class: usize| data.value_f64(row * classes + class);
                    if let Some(class) = (0..classes).find(|&class| score(class).is_nan()) {
                        return Err(format!("the model scored class {class} of row {row} NaN"));
                    }
                    let best = (0..classes).fold(0, |best, class| {
                        if score(class) > score(best) {
                            class
                        } else {
                            best
                        }
                    });
                    indices.push(best as f64);
                }
                indices
            }
        };
        let found: Vec<Option<String>> = indices
            .iter()
            .map(|&index| {
                labels
                    .get(index as usize)
                    .filter(|_| index >= 0.0 && index.fract() == 0.0)
                    .cloned()
            })
            .collect();
        if let Some(index) = indices
            .iter()
            .zip(&found)
            .find_map(|(i, l)| l.is_none().then_some(i))
        {
            // `check` refuses labels that do not cover a declared class count; a model that still
            // returns another index is the bundle's fault, not the caller's: the row has no label.
            tracing::warn!(
                model = self.name(),
                index,
                labels = labels.len(),
                "the model returned a class index past the declared labels; that row's label is null"
            );
        }
        Ok(found)
    }
}
