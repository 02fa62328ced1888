//! The graph's symbolic dimensions that inputs share (`batch`, `sequence`): the graph itself says
//! which sizes must agree, so a request whose inputs disagree on one (token ids of 4, a mask of 5)
//! is the caller's mistake, refused before it is queued and named, not a run that ONNX Runtime
//! fails inside the graph.

use crate::bundle::TensorSpec;
use crate::tensor::Tensor;

/// A symbolic dimension the graph gives to two or more places, each `(input, axis)` with `input`
/// the index of the input's declaration in predictor.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDimension {
    pub name: String,
    pub places: Vec<(usize, usize)>,
}

/// The dimensions named at two or more places; `names[input]` are the names of the axes of the
/// declared input `input` ("" for an axis left unnamed; a name without a letter or digit is none).
pub fn shared(names: &[Vec<String>]) -> Vec<SharedDimension> {
    let mut found: Vec<SharedDimension> = Vec::new();
    for (input, axes) in names.iter().enumerate() {
        for (axis, name) in axes.iter().enumerate().filter(|(_, name)| is_name(name)) {
            match found.iter_mut().find(|dimension| &dimension.name == name) {
                Some(dimension) => dimension.places.push((input, axis)),
                None => found.push(SharedDimension {
                    name: name.clone(),
                    places: vec![(input, axis)],
                }),
            }
        }
    }
    found.retain(|dimension| dimension.places.len() > 1);
    found
}

/// The names of one input's dimensions: the graph's, and where the graph has none, those the
/// bundle declares (`dimension_names`); a declared name that contradicts the graph's is refused,
/// naming both.
pub fn names_of(graph: &[String], declared: Option<&[String]>) -> Result<Vec<String>, String> {
    let Some(declared) = declared else {
        return Ok(graph.to_vec());
    };
    declared
        .iter()
        .enumerate()
        .map(|(axis, name)| match graph.get(axis).filter(|graph| is_name(graph)) {
            Some(graph) if !name.is_empty() && name != graph => Err(format!(
                "dimension_names[{axis}]: the model names that dimension '{graph}', predictor.toml '{name}'"
            )),
            Some(graph) => Ok(graph.clone()),
            None => Ok(name.clone()),
        })
        .collect()
}

/// Whether the graph's word for a dimension is a name: Paddle2ONNX writes `?` for every dimension
/// it does not know (an image's height and width both), which says nothing of their sizes.
fn is_name(name: &str) -> bool {
    name.chars().any(char::is_alphanumeric)
}

/// Refuses `inputs` (in declaration order, their ranks already checked against `specs`) that
/// disagree on the size of a shared dimension, naming both inputs, their axes and the dimension.
pub fn check(
    shared: &[SharedDimension],
    specs: &[TensorSpec],
    inputs: &[Tensor],
) -> Result<(), String> {
    for dimension in shared {
        let sizes = dimension.places.iter().filter_map(|&(input, axis)| {
            let size = *inputs.get(input)?.shape().get(axis)?;
            Some((input, axis, size))
        });
        let mut first = None;
        for (input, axis, size) in sizes {
            let Some((first_input, first_axis, agreed)) = first else {
                first = Some((input, axis, size));
                continue;
            };
            if size != agreed {
                let (a, b) = (&specs[first_input].name, &specs[input].name);
                return Err(format!(
                    "inputs '{a}' and '{b}' disagree on the dimension the model names '{}': '{a}' has {agreed} (axis {first_axis}), '{b}' has {size} (axis {axis}); they must be equal",
                    dimension.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DType, TensorData};

    fn names(axes: &[&[&str]]) -> Vec<Vec<String>> {
        axes.iter()
            .map(|input| input.iter().map(|name| name.to_string()).collect())
            .collect()
    }

    fn spec(name: &str) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: DType::Int64,
            shape: vec![-1, -1],
            max_shape: None,
            dimension_names: None,
        }
    }

    fn tokens(shape: [usize; 2]) -> Tensor {
        Tensor::new(
            shape.to_vec(),
            TensorData::Int64(vec![0; shape[0] * shape[1]]),
        )
        .unwrap()
    }

    #[test]
    fn only_names_given_to_two_places_or_more_are_shared() {
        let found = shared(&names(&[
            &["batch", "sequence"],
            &["batch", "sequence"],
            &["", "features"],
        ]));
        assert_eq!(
            found,
            vec![
                SharedDimension {
                    name: "batch".into(),
                    places: vec![(0, 0), (1, 0)]
                },
                SharedDimension {
                    name: "sequence".into(),
                    places: vec![(0, 1), (1, 1)]
                },
            ]
        );
    }

    #[test]
    fn predictor_toml_names_what_the_graph_leaves_unnamed_and_never_contradicts_it() {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let graph = owned(&["batch", "", "?"]);
        assert_eq!(names_of(&graph, None).unwrap(), graph);
        assert_eq!(
            names_of(&graph, Some(&owned(&["", "sequence", "width"]))).unwrap(),
            owned(&["batch", "sequence", "width"])
        );
        assert_eq!(
            names_of(&graph, Some(&owned(&["rows", "", ""]))).unwrap_err(),
            "dimension_names[0]: the model names that dimension 'batch', predictor.toml 'rows'"
        );
    }

    #[test]
    fn a_placeholder_is_no_name() {
        // PaddleOCR's classifier, exported by Paddle2ONNX: x [-1, 3, ?, ?].
        assert_eq!(shared(&names(&[&["", "", "?", "?"]])), vec![]);
    }

    #[test]
    fn a_name_may_be_shared_across_axes() {
        // A recurrent state [2, batch, 64] beside an input [batch, samples].
        let found = shared(&names(&[&["batch", "samples"], &["", "batch", ""]]));
        assert_eq!(found[0].places, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn inputs_that_disagree_are_refused_naming_both_and_the_dimension() {
        let dimensions = shared(&names(&[&["batch", "sequence"], &["batch", "sequence"]]));
        let specs = [spec("input_ids"), spec("attention_mask")];
        assert_eq!(
            check(&dimensions, &specs, &[tokens([1, 4]), tokens([1, 4])]),
            Ok(())
        );
        assert_eq!(
            check(&dimensions, &specs, &[tokens([1, 4]), tokens([1, 5])]).unwrap_err(),
            "inputs 'input_ids' and 'attention_mask' disagree on the dimension the model names 'sequence': 'input_ids' has 4 (axis 1), 'attention_mask' has 5 (axis 1); they must be equal"
        );
    }
}
