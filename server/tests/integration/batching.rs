//! Dynamic batching (`runtime.max_batch_size`, `runtime.max_queue_delay_ms`): concurrent requests
//! share runs, and each caller gets exactly its own rows, as it would alone.

use crate::common;

use serde_json::{json, Value};

use common::{assert_close, bundle, edited_copy_of, fixture, predictor, Server};

fn with_batching(text: String) -> String {
    text.replace(
        "[runtime]\nthreads = 1",
        "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = 50",
    )
}

/// Distinct rows for caller `i`: 1 to 3 rows, each flower a little different.
fn rows_of(i: usize) -> Value {
    let rows: Vec<Value> = (0..=i % 3)
        .map(|r| {
            let x = (i * 3 + r) as f64 / 10.0;
            json!([4.5 + x % 3.0, 2.5 + x % 1.5, 1.0 + x % 5.5, 0.1 + x % 2.4])
        })
        .collect();
    Value::Array(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_runs_and_get_their_own_rows() {
    for name in ["iris-mlp", "iris-svc"] {
        let (_folder, batched_bundle) = edited_copy_of(&bundle(name), with_batching);
        let batched = std::sync::Arc::new(Server::start(&[&batched_bundle]));
        let alone = Server::start(&[&bundle(name)]);
        let callers = 48;
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let batched = batched.clone();
                tokio::spawn(async move {
                    batched
                        .post_json("/predict", &json!({"data": rows_of(i)}))
                        .await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, 200, "{name} caller {i}: {body}");
            let (_, expected) = alone
                .post_json("/predict", &json!({"data": rows_of(i)}))
                .await;
            assert_eq!(
                body["prediction"].as_array().unwrap().len(),
                i % 3 + 1,
                "{name} caller {i} got another caller's rows"
            );
            // Row by row the same as alone (float sums may round differently in a batch).
            assert_close(&body["prediction"], &expected["prediction"], 1e-6);
        }
        let metrics = batched.metrics().await;
        let value = |series: &str| -> f64 {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
                .unwrap()
                .parse()
                .unwrap()
        };
        let runs = value(&format!("predictor_batch_rows_count{{model=\"{name}\"}}"));
        let rows = value(&format!("predictor_batch_rows_sum{{model=\"{name}\"}}"));
        let sent: usize = (0..callers).map(|i| i % 3 + 1).sum();
        assert_eq!(rows, sent as f64, "{name}: every row ran once");
        assert!(
            runs < callers as f64 / 2.0,
            "{name}: {callers} callers took {runs} runs; batching should join them"
        );
    }
}

#[test]
fn batching_needs_a_dynamic_first_dimension() {
    // The sample has 3 rows, so a fixed [3, 4] input passes every other check.
    let (_folder, path) = edited_copy_of(&bundle("iris-svc"), |text| {
        with_batching(text).replacen("shape = [-1, 4]", "shape = [3, 4]", 1)
    });
    let output = predictor(&["check", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("runtime.max_batch_size: batching joins requests along the first dimension")
            && stderr.contains("input 'input' has shape [3, 4]"),
        "{stderr}"
    );
}

#[test]
fn batching_settings_are_checked() {
    for (edit, problem) in [
        (
            "max_batch_size = 0",
            "runtime.max_batch_size: expected at least 1, found 0",
        ),
        (
            "max_queue_delay_ms = 5",
            "runtime.max_queue_delay_ms: only means something with runtime.max_batch_size",
        ),
        (
            "max_batch_size = 8\nmax_queue_delay_ms = 60000",
            "runtime.max_queue_delay_ms: expected at most 10000",
        ),
    ] {
        let (_folder, path) = edited_copy_of(&bundle("iris-svc"), |text| {
            text.replace(
                "[runtime]\nthreads = 1",
                &format!("[runtime]\nthreads = 1\n{edit}"),
            )
        });
        let output = predictor(&["check", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(problem), "{edit}: {stderr}");
    }
}

/// A v2 request for batch-edges with `x` and `y` rows of their own.
fn edges_request(x: usize, y: usize, seed: usize) -> Value {
    let rows = |n: usize, offset: usize| -> Vec<Value> {
        (0..n)
            .map(|r| {
                json!([
                    (seed * 10 + r + offset) as f32,
                    (seed * 10 + r + offset + 5) as f32
                ])
            })
            .collect()
    };
    json!({"inputs": [
        {"name": "x", "shape": [x, 2], "datatype": "FP32", "data": rows(x, 0)},
        {"name": "y", "shape": [y, 2], "datatype": "FP32", "data": rows(y, 1000)},
    ]})
}

/// batch-edges declaring only its `sum` output: `stacked` (twice the rows) would keep it from
/// batching at all.
fn sum_only(text: String) -> String {
    let stacked = "[[outputs]]\nname = \"stacked\"\ndtype = \"float32\"\nshape = [-1, 2]\n\n";
    assert!(text.contains(stacked));
    text.replace(stacked, "")
}

fn batched_sum_only(text: String) -> String {
    with_batching(sum_only(text))
}

/// Concurrent requests of every mix of row counts: those whose inputs disagree are refused with
/// the same 400 as alone, the others answered as alone: no caller gets another's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_row_counts_still_answer_each_caller_as_alone() {
    let (_folder, batched_bundle) = edited_copy_of(&fixture("batch-edges"), batched_sum_only);
    let (_folder, alone_bundle) = edited_copy_of(&fixture("batch-edges"), sum_only);
    let batched = std::sync::Arc::new(Server::start(&[&batched_bundle]));
    let alone = Server::start(&[&alone_bundle]);
    let shapes = [(2, 1), (1, 2), (1, 1), (3, 3), (2, 2), (1, 3)];
    let callers: Vec<(usize, usize, usize)> = (0..36)
        .map(|i| (shapes[i % 6].0, shapes[i % 6].1, i))
        .collect();
    let tasks: Vec<_> = callers
        .iter()
        .map(|&(x, y, seed)| {
            let batched = batched.clone();
            tokio::spawn(async move {
                batched
                    .post_json("/v2/models/batch-edges/infer", &edges_request(x, y, seed))
                    .await
            })
        })
        .collect();
    for (task, &(x, y, seed)) in tasks.into_iter().zip(&callers) {
        let (status, body) = task.await.unwrap();
        let (expected_status, expected) = alone
            .post_json("/v2/models/batch-edges/infer", &edges_request(x, y, seed))
            .await;
        assert_eq!(status, expected_status, "caller {seed} ({x}, {y}): {body}");
        assert_eq!(
            body["outputs"], expected["outputs"],
            "caller {seed} ({x}, {y})"
        );
    }
}

/// Two inputs with different rows are the caller's mistake, said before the run: not a 500 with
/// ONNX Runtime's text, and not 3 rows silently broadcast against 1.
#[tokio::test]
async fn inputs_whose_rows_disagree_are_refused_naming_both() {
    let server = Server::start(&[&fixture("batch-edges")]);
    let expected =
        "inputs 'x' and 'y' disagree on their rows (first dimension): 'x' has 3, 'y' has 1";
    let (status, body) = server
        .post_json("/v2/models/batch-edges/infer", &edges_request(3, 1, 0))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    let seed = json!({"data": {"x": [[1, 2], [3, 4], [5, 6]], "y": [[10, 20]]}});
    let (status, body) = server.post_json("/predict", &seed).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    // Rows that agree still run.
    let (status, body) = server
        .post_json("/v2/models/batch-edges/infer", &edges_request(2, 2, 0))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A model that keeps its row count but mixes rows (x minus the mean of the run's rows) would hand
/// callers answers computed with other callers' data: batching is refused at load, naming it.
#[test]
fn a_model_that_mixes_rows_is_refused_batching() {
    let (_folder, path) = edited_copy_of(&fixture("row-mixing"), with_batching);
    let output = predictor(&["check", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("runtime.max_batch_size: bundle 'row-mixing' cannot be batched")
            && stderr.contains("the sample's answer changes")
            && stderr.contains("output 'centred' deviates"),
        "{stderr}"
    );
    let alone = predictor(&["check", fixture("row-mixing").to_str().unwrap()]);
    assert!(alone.status.success(), "{alone:?}");
    // An output whose rows are not the request's (stacked: twice the rows) is refused too.
    let (_folder, path) = edited_copy_of(&fixture("batch-edges"), with_batching);
    let output = predictor(&["check", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bundle 'batch-edges' cannot be batched: output 'stacked' has 4 rows for a joint run of 2 rows"),
        "{stderr}"
    );
    // Without it, the same model batches.
    let (_folder, path) = edited_copy_of(&fixture("batch-edges"), batched_sum_only);
    let output = predictor(&["check", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
}
