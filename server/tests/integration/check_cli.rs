//! `predictor check` refuses broken bundles with a message naming the file, the field and the
//! mismatch; `predictor serve` refuses them too, before listening.

use crate::common;

use std::path::Path;

use common::{bundle, edited_copy as broken_copy, edited_copy_of, fixture, predictor};

fn refused(args: &[&str]) -> String {
    let output = predictor(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{args:?} should fail: {output:?}"
    );
    String::from_utf8(output.stderr).unwrap()
}

fn check_refuses(bundle: &Path, expected: &[&str]) {
    let message = refused(&["check", bundle.to_str().unwrap()]);
    assert!(
        message.contains(&format!("{}: ", bundle.join("predictor.toml").display())),
        "names the file: {message}"
    );
    for part in expected {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[test]
fn wrong_dtype_is_named() {
    let (_keep, path) =
        broken_copy(|t| t.replacen("dtype = \"float32\"", "dtype = \"float64\"", 1));
    check_refuses(
        &path,
        &["inputs[0].dtype: the model's 'input' is float32, predictor.toml says float64"],
    );
}

#[test]
fn wrong_shape_is_named() {
    let (_keep, path) = broken_copy(|t| t.replace("shape = [-1, 4]", "shape = [-1, 5]"));
    check_refuses(
        &path,
        &["inputs[0].shape[1]: the model's 'input' has size 4 there, predictor.toml declares 5"],
    );
    let (_keep, path) = broken_copy(|t| t.replace("shape = [-1]\n", "shape = [-1, 1]\n"));
    check_refuses(&path, &["outputs[0].shape: the model's 'label' has 1 dimensions [-1], predictor.toml declares 2 [-1, 1]"]);
}

#[test]
fn wrong_names_are_named() {
    let (_keep, path) = broken_copy(|t| t.replace("name = \"input\"", "name = \"features\""));
    check_refuses(
        &path,
        &[
            "inputs[0].name: the model has no input 'features'; it has 'input'",
            "inputs: the model's input 'input' (float32 [-1, 4]) is not declared",
        ],
    );
}

#[test]
fn wrong_sample_is_named() {
    let (_keep, path) = broken_copy(|t| t.replace("[[0.9775, 0.014353", "[[0.5, 0.014353"));
    check_refuses(
        &path,
        &[
            "sample.output: output 'probabilities' deviates at [0][0]: expected 0.5, got 0.9774",
            "tolerance 0.0001",
        ],
    );
    let (_keep, path) = broken_copy(|t| t.replace("input = [[5.1, 3.5, 1.4, 0.2], ", "input = ["));
    check_refuses(&path, &["sample.output: expected shape [3, 3] for output 'probabilities', but the model returned shape [2, 3]"]);
    let (_keep, path) =
        broken_copy(|t| t.replace("input = [[5.1, 3.5, 1.4, 0.2]", "input = [[5.1, 3.5, 1.4]"));
    check_refuses(
        &path,
        &["sample.input: ragged array: expected 3 values at [1] like the first one, received 4"],
    );
}

#[test]
fn unknown_keys_and_missing_files_are_named() {
    let (_keep, path) = broken_copy(|t| {
        t.replace(
            "[runtime]\nthreads = 1",
            "[runtime]\nthreads = 1\nbatch = 8",
        )
    });
    check_refuses(&path, &["unknown field `batch`"]);
    let (_keep, path) =
        broken_copy(|t| t.replace("model = \"model.onnx\"", "model = \"missing.onnx\""));
    check_refuses(&path, &["model: file", "missing.onnx does not exist"]);
    let message = refused(&["check", "/nonexistent/bundle"]);
    assert!(
        message.contains("/nonexistent/bundle: cannot read"),
        "{message}"
    );
}

#[test]
fn a_model_file_that_is_not_onnx_is_refused() {
    let (_keep, path) =
        broken_copy(|t| t.replace("model = \"model.onnx\"", "model = \"predictor.toml\""));
    check_refuses(&path, &["model: cannot load the ONNX model"]);
}

#[test]
fn serve_refuses_a_broken_bundle_before_listening() {
    let (_keep, path) = broken_copy(|t| t.replace("[[0.9775, 0.014353", "[[0.5, 0.014353"));
    let message = refused(&["serve", "--port", "0", path.to_str().unwrap()]);
    assert!(message.contains("sample.output"), "{message}");
}

#[test]
fn check_reports_every_broken_bundle_not_just_the_first() {
    let (_a, first) = broken_copy(|t| t.replace("shape = [-1, 4]", "shape = [-1, 5]"));
    let (_b, second) = broken_copy(|t| t.replacen("dtype = \"float32\"", "dtype = \"int32\"", 1));
    let message = refused(&["check", first.to_str().unwrap(), second.to_str().unwrap()]);
    assert!(
        message.contains("declares 5") && message.contains("predictor.toml says int32"),
        "{message}"
    );
}

#[test]
fn two_bundles_with_one_name_are_refused() {
    let iris = bundle("iris-svc");
    let (_keep, copy) = broken_copy(|t| t.replace("threads = 1", "threads = 2"));
    let message = refused(&["check", iris.to_str().unwrap(), copy.to_str().unwrap()]);
    assert!(
        message.contains("another bundle is also named 'iris-svc'"),
        "{message}"
    );
}

#[test]
fn outputs_may_be_declared_in_any_order_and_only_in_part() {
    // The prediction is then the first declared output but the second of the graph.
    let (_keep, path) = broken_copy(|t| {
        let label = "[[outputs]]\nname = \"label\"\ndtype = \"int64\"\nshape = [-1]\n\n";
        let probabilities =
            "[[outputs]]\nname = \"probabilities\"\ndtype = \"float32\"\nshape = [-1, 3]\n\n";
        t.replace(
            &format!("{label}{probabilities}"),
            &format!("{probabilities}{label}"),
        )
    });
    let output = predictor(&["check", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (_keep, path) = broken_copy(|t| {
        t.replace(
            "[[outputs]]\nname = \"label\"\ndtype = \"int64\"\nshape = [-1]\n\n",
            "",
        )
    });
    let output = predictor(&["check", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // With the class indices as the prediction, the sample must be compared against them.
    let (_keep, path) =
        broken_copy(|t| t.replace("prediction = \"probabilities\"", "prediction = \"label\""));
    check_refuses(&path, &["sample.output: expected int64 at [0][0], received 0.9775 (expected the value of output 'label' for sample.input)"]);
}

#[test]
fn zero_queue_or_threads_are_refused_by_the_command_line() {
    let iris = bundle("iris-svc");
    for flag in ["--threads", "--max-queued-requests"] {
        let output = predictor(&["check", flag, "0", iris.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag} 0 must be a usage error"
        );
    }
}

/// iris-svc's model with its bytes changed by `damage`.
fn damaged_model(damage: impl Fn(&mut Vec<u8>)) -> (tempfile::TempDir, std::path::PathBuf) {
    let (keep, path) = broken_copy(|t| format!("# its model damaged by the test\n{t}"));
    let mut bytes = std::fs::read(path.join("model.onnx")).unwrap();
    damage(&mut bytes);
    std::fs::write(path.join("model.onnx"), bytes).unwrap();
    (keep, path)
}

#[test]
fn a_truncated_or_corrupt_model_is_refused() {
    let (_a, truncated) = damaged_model(|bytes| bytes.truncate(bytes.len() / 2));
    check_refuses(&truncated, &["model: cannot load the ONNX model"]);
    // Overwrite the middle of the graph: protobuf framing no longer adds up.
    let (_b, corrupt) = damaged_model(|bytes| {
        let middle = bytes.len() / 2;
        bytes[middle..middle + 64].fill(0xff);
    });
    check_refuses(&corrupt, &["model: cannot load the ONNX model"]);
    let (_c, empty) = damaged_model(Vec::clear);
    check_refuses(&empty, &["model:"]);
}

#[test]
fn a_model_file_may_be_a_link_to_a_regular_file_but_not_to_nothing() {
    // As a model cache keeps its files (a link to a blob), and as a test links a model fetched
    // once: the model's sha256 names what is served, wherever the file is.
    let (_keep, path) =
        broken_copy(|t| t.replace("model = \"model.onnx\"", "model = \"linked.onnx\""));
    std::os::unix::fs::symlink(
        bundle("iris-svc").join("model.onnx"),
        path.join("linked.onnx"),
    )
    .unwrap();
    let output = predictor(&["check", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_file(path.join("linked.onnx")).unwrap();
    std::os::unix::fs::symlink(path.join("nothing.onnx"), path.join("linked.onnx")).unwrap();
    check_refuses(&path, &["model: file", "does not exist"]);
}

#[test]
fn check_measures_the_largest_request_and_names_the_bounds_it_took_by_default() {
    let output = predictor(&["check", fixture("token-pair").to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The rows at --max-rows-per-request, the sequence at the default bound.
    assert!(
        stdout.contains("memory: token-pair: the largest request the bounds allow ('input_ids' [4096, 1024], 'attention_mask' [4096, 1024]) peaked at "),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: token-pair: no max_shape bounds input 'input_ids' axis 1, input 'attention_mask' axis 1: the default bound, 1024, applies"),
        "{stdout}"
    );
}

#[test]
fn declared_dimension_names_may_add_to_the_graphs_but_not_contradict_them() {
    let (_keep, contradicting) = edited_copy_of(&fixture("token-pair"), |text| {
        text.replacen(
            "shape = [-1, -1]\n",
            "shape = [-1, -1]\ndimension_names = [\"\", \"tokens\"]\n",
            1,
        )
    });
    check_refuses(
        &contradicting,
        &["inputs[0].dimension_names[1]: the model names that dimension 'sequence', predictor.toml 'tokens'"],
    );
    let (_keep, agreeing) = edited_copy_of(&fixture("token-pair"), |text| {
        text.replacen(
            "shape = [-1, -1]\n",
            "shape = [-1, -1]\ndimension_names = [\"batch\", \"\"]\n",
            1,
        )
    });
    let output = predictor(&["check", agreeing.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    check_refuses(
        &edited_copy_of(&fixture("token-pair"), |text| {
            text.replacen(
                "shape = [-1, -1]\n",
                "shape = [-1, -1]\ndimension_names = [\"batch\"]\n",
                1,
            )
        })
        .1,
        &["inputs[0].dimension_names: 1 names for a shape of 2 dimensions [-1, -1]"],
    );
}

#[test]
fn serve_with_one_bad_bundle_among_good_ones_serves_none() {
    let (_keep, truncated) = damaged_model(|bytes| bytes.truncate(bytes.len() / 2));
    let message = refused(&[
        "serve",
        "--port",
        "0",
        bundle("digits-logreg").to_str().unwrap(),
        truncated.to_str().unwrap(),
    ]);
    assert!(
        message.contains(&format!(
            "{}: model:",
            truncated.join("predictor.toml").display()
        )),
        "{message}"
    );
}
