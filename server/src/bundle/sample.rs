//! A bundle's sample: the known input and expected output checked at every load, and the helpers
//! that check it (also `predictor probe`'s comparison of a served answer).

use serde_json::value::RawValue;
use serde_json::Value;

use crate::tensor::Tensor;
use crate::text::ShapeText;

/// Another request of the sample's shape and types: each number moved by one towards zero or
/// past it (so that unsigned values stay in range), each boolean flipped, each string's words
/// reversed and one added.
pub fn perturbed(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(perturbed).collect()),
        Value::Object(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), perturbed(value)))
                .collect(),
        ),
        Value::Bool(flag) => Value::Bool(!flag),
        Value::Number(number) => match (number.as_u64(), number.as_i64(), number.as_f64()) {
            (Some(0), _, _) => Value::from(1),
            (Some(n), _, _) => Value::from(n - 1),
            (None, Some(n), _) => Value::from(n + 1),
            (None, None, Some(x)) => serde_json::Number::from_f64(x * 0.5 + 1.0)
                .map_or_else(|| value.clone(), Value::Number),
            _ => value.clone(),
        },
        // Other text: the words in reverse order, then one more.
        Value::String(text) => {
            let mut words: Vec<&str> = text.split_whitespace().rev().collect();
            words.push("other");
            Value::String(words.join(" "))
        }
        other => other.clone(),
    }
}

/// A value as the JSON text a request would carry (a sample, or its perturbed copy).
pub fn raw_json(value: &Value) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value).map_err(|error| error.to_string())
}

/// A tensor as JSON for a message, cut after 400 characters (`MESSAGE_JSON_CHARACTERS`) with what was
/// left out: a transformer's token-level output of [1, 5, 384] took a line of 17,620 characters.
pub fn abridged_json(tensor: &Tensor) -> String {
    let text = serde_json::to_string(tensor).unwrap_or_default();
    if text.len() <= MESSAGE_JSON_CHARACTERS {
        return text;
    }
    let mut cut = MESSAGE_JSON_CHARACTERS;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}... ({} characters more; {} values of shape {} in all)",
        &text[..cut],
        text.len() - cut,
        tensor.data().len(),
        ShapeText(tensor.shape())
    )
}

/// The most of a tensor's JSON that a message shows.
const MESSAGE_JSON_CHARACTERS: usize = 400;

/// Compares element by element; the message names the first element beyond `tolerance`.
/// `predictor check` uses it on the sample at load, `predictor probe` on a served answer.
pub fn compare(
    expected: &Tensor,
    actual: &Tensor,
    tolerance: f64,
    output: &str,
) -> Result<(), String> {
    if expected.shape() != actual.shape() {
        return Err(format!(
            "expected shape {} for output '{output}', but the model returned shape {}",
            ShapeText(expected.shape()),
            ShapeText(actual.shape())
        ));
    }
    for index in 0..expected.data().len() {
        let (want, got) = (
            expected.data().value_f64(index),
            actual.data().value_f64(index),
        );
        // NaN compares false either way: it must fail, so test for being within tolerance.
        // Strings (whose numbers are NaN) must be equal.
        let within = if expected.dtype().size().is_none() {
            expected.data().value_text(index) == actual.data().value_text(index)
        } else {
            (want - got).abs() <= tolerance
        };
        if !within {
            let mut position = String::new();
            let mut rest = index;
            for &dim in expected.shape().iter().rev() {
                position.insert_str(0, &format!("[{}]", rest % dim));
                rest /= dim;
            }
            return Err(format!(
                "output '{output}' deviates at {position}: expected {}, got {} (tolerance {tolerance})",
                expected.data().value_text(index),
                actual.data().value_text(index)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compare;
    use crate::tensor::{Tensor, TensorData};

    fn floats(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        Tensor::new(shape, TensorData::Float32(values)).unwrap()
    }

    #[test]
    fn compare_allows_the_tolerance_and_names_the_first_deviation() {
        let expected = floats(vec![1, 3], vec![0.5, 0.25, 0.25]);
        assert!(compare(
            &expected,
            &floats(vec![1, 3], vec![0.5001, 0.25, 0.2499]),
            1e-3,
            "p"
        )
        .is_ok());
        let error = compare(
            &expected,
            &floats(vec![1, 3], vec![0.5, 0.35, 0.15]),
            1e-3,
            "p",
        )
        .unwrap_err();
        assert_eq!(
            error,
            "output 'p' deviates at [0][1]: expected 0.25, got 0.35 (tolerance 0.001)"
        );
    }

    #[test]
    fn a_long_tensor_is_abridged_in_messages() {
        let short = floats(vec![1, 3], vec![0.5, 0.25, 0.25]);
        assert_eq!(super::abridged_json(&short), "[[0.5,0.25,0.25]]");
        let tokens = floats(vec![1, 5, 384], vec![0.123_456_78; 5 * 384]);
        let text = super::abridged_json(&tokens);
        assert!(text.len() < 500, "{} characters", text.len());
        assert!(
            text.ends_with("characters more; 1920 values of shape [1, 5, 384] in all)"),
            "{text}"
        );
    }

    #[test]
    fn compare_refuses_nan_and_other_shapes() {
        let expected = floats(vec![1, 2], vec![0.5, 0.5]);
        assert!(compare(
            &expected,
            &floats(vec![1, 2], vec![f32::NAN, 0.5]),
            1.0,
            "p"
        )
        .is_err());
        let error = compare(&expected, &floats(vec![2, 1], vec![0.5, 0.5]), 1.0, "p").unwrap_err();
        assert_eq!(
            error,
            "expected shape [1, 2] for output 'p', but the model returned shape [2, 1]"
        );
    }
}
