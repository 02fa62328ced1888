//! The outputs a request asks for, and what each answers with (the classification extension).

use crate::bundle::Bundle;
use crate::serving::error::ServeError;
use crate::tensor::{DType, Tensor, TensorData};
use crate::text::quoted;

use super::shared_memory::SharedMemorySpan;
use super::{invalid, triton_words};

/// An output a request asked for: its index among the declared outputs, whether it goes back
/// as binary data (REST's binary extension), how many of its best classes to return instead
/// of its values (the classification extension), and the shared memory to write it to (the
/// system shared memory extension).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputChoice {
    pub index: usize,
    pub binary: bool,
    pub classification: Option<usize>,
    pub shared_memory: Option<SharedMemorySpan>,
}

/// An output named in a request, with what it asked of it.
#[derive(Debug)]
pub struct RequestedOutput {
    pub name: String,
    /// The binary choice; the request's default when None.
    pub binary: Option<bool>,
    /// The `classification` parameter: return the k best classes (0, as in Triton: the values).
    pub classification: Option<u64>,
    pub shared_memory: Option<SharedMemorySpan>,
}

/// The outputs named in a request, in the order asked; every declared output, in declaration
/// order, when the request names none.
pub fn choose_outputs(
    bundle: &Bundle,
    requested: impl IntoIterator<Item = RequestedOutput>,
    binary_default: bool,
) -> Result<Vec<OutputChoice>, ServeError> {
    let specs = &bundle.config.outputs;
    let mut chosen: Vec<OutputChoice> = Vec::new();
    for output in requested {
        let name = output.name.as_str();
        let index = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| {
                invalid(format!(
                    "{}; its outputs are {}",
                    triton_words::unknown_output(name, bundle.name()),
                    quoted(specs.iter().map(|s| s.name.as_str()))
                ))
            })?;
        if chosen.iter().any(|choice| choice.index == index) {
            return Err(invalid(format!("output '{name}' is requested twice")));
        }
        let classification = match output.classification {
            None | Some(0) => None,
            Some(k) => {
                let dtype = specs[index].dtype;
                if matches!(dtype, DType::Bool | DType::Float16) || dtype.size().is_none() {
                    return Err(invalid(format!(
                        "output '{name}': classification needs numeric scores, but the output is {}",
                        dtype.v2_name()
                    )));
                }
                Some(usize::try_from(k).unwrap_or(usize::MAX))
            }
        };
        if output.shared_memory.is_some()
            && (classification.is_some() || output.binary == Some(true))
        {
            return Err(invalid(format!(
                "output '{name}' asks for shared memory and for {}; ask for one",
                if classification.is_some() {
                    "classification"
                } else {
                    "binary data"
                }
            )));
        }
        chosen.push(OutputChoice {
            index,
            binary: output.binary.unwrap_or(binary_default) && output.shared_memory.is_none(),
            classification,
            shared_memory: output.shared_memory,
        });
    }
    if chosen.is_empty() {
        chosen = (0..specs.len())
            .map(|index| OutputChoice {
                index,
                binary: binary_default,
                classification: None,
                shared_memory: None,
            })
            .collect();
    }
    Ok(chosen)
}

/// The tensor an output choice answers with: the output itself, or, with classification, its
/// `k` best classes as BYTES `"score:index:label"` (`"score:index"` without a label), best
/// first, the score printed as Triton's `std::to_string` prints it. As Triton: a model that
/// batches has each row (the first dimension) ranked on its own, giving `[rows, k]`; one that
/// does not has its whole output ranked as one, giving `[k]`. Labels are the bundle's, for its
/// prediction output only (Triton's per-output label file).
pub fn answer_tensor(
    bundle: &Bundle,
    batched: bool,
    choice: &OutputChoice,
    tensor: Tensor,
) -> Result<Tensor, ServeError> {
    let Some(k) = choice.classification else {
        return Ok(tensor);
    };
    let labels: &[String] = if choice.index == bundle.prediction {
        &bundle.config.labels
    } else {
        &[]
    };
    let data = tensor.data();
    let (rows, classes) = match tensor.shape() {
        [rows, rest @ ..] if batched => (*rows, rest.iter().product()),
        _ => (1, data.len()),
    };
    let count = k.min(classes);
    let mut ranked = Vec::with_capacity(rows.saturating_mul(count));
    for row in 0..rows {
        let score = |class: usize| data.value_f64(row * classes + class);
        let mut order: Vec<usize> = (0..classes).collect();
        // Best first, ties in class order (a stable sort), NaN last.
        order.sort_by(|&a, &b| {
            let (a, b) = (score(a), score(b));
            match (a.is_nan(), b.is_nan()) {
                (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
                (nan_a, nan_b) => nan_a.cmp(&nan_b),
            }
        });
        ranked.extend(order.into_iter().take(count).map(|class| {
            let text = format!("{}:{class}", score_text(data, row * classes + class));
            match labels.get(class) {
                Some(label) => format!("{text}:{label}"),
                None => text,
            }
        }));
    }
    let shape = if batched && !tensor.shape().is_empty() {
        vec![rows, count]
    } else {
        vec![count]
    };
    Tensor::new(shape, TensorData::String(ranked))
        .map_err(|error| ServeError::internal(format!("classification: {error}")))
}

fn c_float(value: f64) -> String {
    match value {
        v if v.is_nan() => "nan".to_string(),
        v if v.is_infinite() && v > 0.0 => "inf".to_string(),
        v if v.is_infinite() => "-inf".to_string(),
        v => format!("{v:.6}"),
    }
}

/// An element as C's `%f` prints it (six decimals), as Triton's `std::to_string` does.
fn score_text(data: &TensorData, index: usize) -> String {
    match data {
        // NaN and infinity as C prints them.
        TensorData::Float32(values) => c_float(f64::from(values[index])),
        TensorData::Float64(values) => c_float(values[index]),
        // Integers print as themselves (`std::to_string` of an integer).
        other => other.value_text(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::iris;

    fn asked(name: &str) -> RequestedOutput {
        RequestedOutput {
            name: name.to_string(),
            binary: None,
            classification: None,
            shared_memory: None,
        }
    }

    fn refusal(requested: Vec<RequestedOutput>) -> String {
        choose_outputs(&iris(), requested, false)
            .unwrap_err()
            .public_message()
            .to_string()
    }

    #[test]
    fn outputs_come_in_the_order_asked_each_with_its_own_binary_choice() {
        let binary = RequestedOutput {
            binary: Some(false),
            ..asked("label")
        };
        let chosen = choose_outputs(&iris(), [asked("probabilities"), binary], true).unwrap();
        let summary: Vec<(usize, bool)> = chosen.iter().map(|c| (c.index, c.binary)).collect();
        assert_eq!(summary, [(1, true), (0, false)]);
    }

    #[test]
    fn an_unknown_a_repeated_or_a_contradictory_output_is_refused_by_name() {
        assert_eq!(
            refusal(vec![asked("scores")]),
            "unexpected inference output 'scores' for model 'iris'; its outputs are 'label', 'probabilities'"
        );
        assert_eq!(
            refusal(vec![asked("label"), asked("label")]),
            "output 'label' is requested twice"
        );
        let both = RequestedOutput {
            classification: Some(1),
            shared_memory: Some(SharedMemorySpan {
                region: "r".to_string(),
                offset: 0,
                byte_size: 8,
            }),
            ..asked("probabilities")
        };
        assert_eq!(
            refusal(vec![both]),
            "output 'probabilities' asks for shared memory and for classification; ask for one"
        );
    }

    #[test]
    fn classification_ranks_each_row_best_first_with_the_bundles_labels() {
        let choice = |classification| OutputChoice {
            index: 1,
            binary: false,
            classification,
            shared_memory: None,
        };
        let scores = || {
            let values = vec![0.2, 0.5, 0.3, f32::NAN, 0.1, 0.1];
            Tensor::new(vec![2, 3], TensorData::Float32(values)).unwrap()
        };
        let unchanged = answer_tensor(&iris(), true, &choice(None), scores()).unwrap();
        // Compared as printed: NaN equals nothing.
        assert_eq!(format!("{unchanged:?}"), format!("{:?}", scores()));
        let ranked = answer_tensor(&iris(), true, &choice(Some(2)), scores()).unwrap();
        assert_eq!(ranked.shape(), [2, 2]);
        let expected = [
            "0.500000:1:versicolor",
            "0.300000:2:virginica",
            "0.100000:1:versicolor",
            "0.100000:2:virginica",
        ];
        assert_eq!(
            *ranked.data(),
            TensorData::String(expected.map(str::to_string).to_vec())
        );
        // Unbatched, the whole output is ranked as one, and k beyond the classes gives them all.
        let whole = answer_tensor(&iris(), false, &choice(Some(9)), scores()).unwrap();
        assert_eq!(whole.shape(), [6]);
        let TensorData::String(texts) = whole.data() else {
            panic!("classes are BYTES")
        };
        assert_eq!(texts[0], "0.500000:1:versicolor");
        assert_eq!(texts[5], "nan:3", "NaN last; no label past the third class");
    }
}
