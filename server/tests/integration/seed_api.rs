//! The seed's REST API against the real binary: every endpoint, several models, and a clear 4xx
//! for every kind of bad input.

use crate::common;

use common::{bundle, edited_copy, Server};
use serde_json::{json, Value};

const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
const VIRGINICA: [f64; 4] = [6.3, 3.3, 6.0, 2.5];

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

#[tokio::test]
async fn one_model_answers_at_the_seeds_root_paths() {
    let server = Server::start(&[&bundle("iris-svc")]);

    assert_eq!(server.get("/health").await, (200, json!({"status": "ok"})));
    let (status, metadata) = server.get("/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(metadata["name"], "iris-svc");
    assert_eq!(metadata["version"], "1.0.0");
    assert_eq!(metadata["prediction"], "probabilities");
    assert_eq!(
        metadata["inputs"],
        json!([{"name": "input", "dtype": "float32", "shape": [-1, 4]}])
    );
    assert_eq!(
        server.get("/label").await,
        (
            200,
            json!({"labels": ["setosa", "versicolor", "virginica"]})
        )
    );

    let (status, body) = server
        .post_json("/predict", &json!({"data": [SETOSA, VIRGINICA]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["prediction"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0][0].as_f64().unwrap() > 0.9, "setosa row: {body}");
    assert!(rows[1][2].as_f64().unwrap() > 0.9, "virginica row: {body}");

    assert_eq!(
        server
            .post_json("/predict/label", &json!({"data": [SETOSA, VIRGINICA]}))
            .await,
        (200, json!({"prediction": ["setosa", "virginica"]}))
    );
    assert_eq!(
        server.get("/predict/test/label").await,
        (
            200,
            json!({"prediction": ["setosa", "versicolor", "virginica"]})
        )
    );
    // The same routes answer under the model's own prefix.
    assert_eq!(
        server
            .post_json("/models/iris-svc/predict/label", &json!({"data": [SETOSA]}))
            .await,
        (200, json!({"prediction": ["setosa"]}))
    );
    assert_eq!(server.get("/models/iris-svc/health").await.0, 200);
}

#[tokio::test]
async fn several_models_each_answer_under_their_prefix() {
    let server = Server::start(&[
        &bundle("iris-svc"),
        &bundle("iris-mlp"),
        &bundle("digits-logreg"),
    ]);

    let (status, list) = server.get("/models").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["iris-svc", "iris-mlp", "digits-logreg"]);

    for name in ["iris-svc", "iris-mlp"] {
        assert_eq!(
            server
                .post_json(
                    &format!("/models/{name}/predict/label"),
                    &json!({"data": [SETOSA, VIRGINICA]})
                )
                .await,
            (200, json!({"prediction": ["setosa", "virginica"]})),
            "{name}"
        );
    }
    let (status, digits) = server.get("/models/digits-logreg/predict/test/label").await;
    assert_eq!((status, digits), (200, json!({"prediction": ["0", "7"]})));

    // The same iris rows do not fit the digits model, and it says so.
    let (status, body) = server
        .post_json("/models/digits-logreg/predict", &json!({"data": [SETOSA]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(&body),
        "data: input 'input' expects shape [-1, 64], received shape [1, 4]"
    );

    // At the root, with several models, the answer names them and the way to reach them.
    let (status, body) = server
        .post_json("/predict", &json!({"data": [SETOSA]}))
        .await;
    assert_eq!(status, 404);
    assert!(
        error_of(&body).contains("'iris-svc', 'iris-mlp', 'digits-logreg'"),
        "{body}"
    );
    assert!(error_of(&body).contains("/models/{name}/predict"), "{body}");
    assert_eq!(server.get("/health").await, (200, json!({"status": "ok"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_rows() {
    let server = Server::start(&[&bundle("iris-svc")]);
    let flowers = [SETOSA, [6.4, 3.2, 4.5, 1.5], VIRGINICA];
    let names = ["setosa", "versicolor", "virginica"];
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..60 {
        // Caller i sends 1 to 3 rows, starting at a different flower, and must get exactly those back.
        let rows: Vec<[f64; 4]> = (0..=caller % 3)
            .map(|k| flowers[(caller + k) % 3])
            .collect();
        let expected: Vec<&str> = (0..=caller % 3).map(|k| names[(caller + k) % 3]).collect();
        let (client, url) = (server.client.clone(), server.url("/predict/label"));
        callers.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"data": rows}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.json::<Value>().await.unwrap(),
                json!({"prediction": expected})
            );
        });
    }
    while let Some(finished) = callers.join_next().await {
        finished.unwrap();
    }
}

/// A ragged body of 500 bytes whose first elements claim 20^8 values (100 GB of float32):
/// refused without reserving them.
fn huge_claim() -> Vec<u8> {
    let zeros = ", 0".repeat(19);
    let mut nested = "0".to_string();
    for _ in 0..8 {
        nested = format!("[{nested}{zeros}]");
    }
    format!("{{\"data\": {nested}}}").into_bytes()
}

/// A case name, the content type, the body, the expected status and a part of the message.
type BadRequest = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_500() {
    let server = Server::start_with(&[&bundle("iris-svc")], &["--max-body-bytes", "4096"]);
    let json_type = Some("application/json");
    let cases: Vec<BadRequest> = vec![
        (
            "malformed JSON",
            json_type,
            b"{\"data\": [[1, 2, 3, 4]]".to_vec(),
            400,
            "Failed to parse the request body as JSON",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            br#"{"data": [[1, 2, 3, 4]]}"#.to_vec(),
            415,
            "Content-Type: application/json",
        ),
        (
            "no content type",
            None,
            br#"{"data": [[1, 2, 3, 4]]}"#.to_vec(),
            415,
            "Content-Type: application/json",
        ),
        (
            "missing data",
            json_type,
            br#"{}"#.to_vec(),
            400,
            "missing field `data`",
        ),
        (
            "unknown field",
            json_type,
            br#"{"data": [[1, 2, 3, 4]], "rows": 1}"#.to_vec(),
            400,
            "unknown field `rows`",
        ),
        (
            "wrong shape",
            json_type,
            br#"{"data": [[1, 2, 3]]}"#.to_vec(),
            400,
            "data: input 'input' expects shape [-1, 4], received shape [1, 3]",
        ),
        (
            "flat row",
            json_type,
            br#"{"data": [1, 2, 3, 4]}"#.to_vec(),
            400,
            "expects shape [-1, 4], received shape [4]",
        ),
        (
            "ragged rows",
            json_type,
            br#"{"data": [[1, 2, 3, 4], [1, 2]]}"#.to_vec(),
            400,
            "ragged array: expected 4 values at [1] like the first one, received 2",
        ),
        (
            "wrong dtype",
            json_type,
            br#"{"data": [[1, 2, "3", 4]]}"#.to_vec(),
            400,
            "expected float32 at [0][2], received a string",
        ),
        (
            "null value",
            json_type,
            br#"{"data": [[1, 2, null, 4]]}"#.to_vec(),
            400,
            "expected float32 at [0][2], received null",
        ),
        (
            "empty data",
            json_type,
            br#"{"data": []}"#.to_vec(),
            400,
            "expected a non-empty array, received an empty array",
        ),
        (
            "empty row",
            json_type,
            br#"{"data": [[]]}"#.to_vec(),
            400,
            "received an empty array at [0]",
        ),
        (
            "scalar data",
            json_type,
            br#"{"data": 5}"#.to_vec(),
            400,
            "expected a nested array of float32 values, received a number",
        ),
        (
            "object data",
            json_type,
            br#"{"data": {"input": [[1, 2, 3, 4]]}}"#.to_vec(),
            400,
            "expected rows for input 'input'",
        ),
        (
            "NaN literal",
            json_type,
            br#"{"data": [[NaN, 2, 3, 4]]}"#.to_vec(),
            400,
            "Failed to parse the request body as JSON",
        ),
        (
            "infinite after float32",
            json_type,
            br#"{"data": [[1e39, 2, 3, 4]]}"#.to_vec(),
            400,
            "out of range for float32",
        ),
        (
            "beyond f64",
            json_type,
            br#"{"data": [[1e400, 2, 3, 4]]}"#.to_vec(),
            400,
            "data: number out of range",
        ),
        (
            "one level too deep",
            json_type,
            br#"{"data": [[[1, 2, 3, 4]]]}"#.to_vec(),
            400,
            "expects shape [-1, 4], received shape [1, 1, 4]",
        ),
        (
            "nested past the parser's limit",
            json_type,
            format!("{{\"data\": {}1{}}}", "[".repeat(200), "]".repeat(200)).into_bytes(),
            400,
            "recursion limit exceeded",
        ),
        (
            "claims a huge shape",
            json_type,
            huge_claim(),
            400,
            "ragged array",
        ),
        (
            "oversized body",
            json_type,
            format!("{{\"data\": [[{}1]]}}", "1, ".repeat(2000)).into_bytes(),
            413,
            "larger than this server accepts",
        ),
    ];
    for (case, content_type, body, status, message) in cases {
        let (got_status, got_body) = server.post_raw("/predict", content_type, body).await;
        assert_eq!(got_status, status, "{case}: {got_body}");
        assert!(
            error_of(&got_body).contains(message),
            "{case}: {got_body} should contain {message:?}"
        );
    }

    let (status, body) = server.get("/models/nope/predict/test").await;
    assert_eq!(status, 404);
    assert_eq!(
        error_of(&body),
        "unknown model 'nope'; this server has 'iris-svc'"
    );
    let (status, body) = server.get("/nowhere").await;
    assert_eq!((status, error_of(&body)), (404, "no route for /nowhere"));
    let (status, body) = server.get("/predict").await;
    assert_eq!(
        (status, error_of(&body)),
        (405, "/predict does not accept GET")
    );

    // After all that, the server still answers.
    assert_eq!(server.get("/predict/test/label").await.0, 200);
}

#[tokio::test]
async fn a_model_without_labels_says_so_on_its_label_routes() {
    let (_keep, unlabelled) =
        edited_copy(|t| t.replace("labels = [\"setosa\", \"versicolor\", \"virginica\"]\n", ""));
    let server = Server::start(&[&unlabelled]);
    assert_eq!(server.get("/label").await, (200, json!({"labels": []})));
    let (status, body) = server
        .post_json("/predict/label", &json!({"data": [SETOSA]}))
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (404, "model 'iris-svc' has no labels: it declares no labels")
    );
    assert_eq!(server.get("/predict/test/label").await.0, 404);
    assert_eq!(
        server
            .post_json("/predict", &json!({"data": [SETOSA]}))
            .await
            .0,
        200
    );
}

/// A table that names an input twice is refused, as the Open Inference Protocol refuses it; serde
/// alone would keep the last and drop the other silently.
#[tokio::test]
async fn an_input_given_twice_in_a_table_is_refused() {
    let server = Server::start(&[&common::fixture("batch-edges")]);
    let body = br#"{"data": {"x": [[1, 2]], "y": [[10, 20]], "x": [[3, 4]]}}"#.to_vec();
    let (status, answer) = server
        .post_raw("/predict", Some("application/json"), body)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).contains("input 'x' is given twice"),
        "{answer}"
    );
}

/// iris-svc predicting class indices, with labels for two of its three classes and a sample of
/// those two.
fn two_labels_for_three_classes(text: String) -> String {
    text.replace(
        r#"labels = ["setosa", "versicolor", "virginica"]"#,
        r#"labels = ["setosa", "versicolor"]"#,
    )
    .replace(r#"prediction = "probabilities""#, r#"prediction = "label""#)
    .replace(
        "input = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]",
        "input = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5]]",
    )
    .replace(
        "output = [[0.9775, 0.014353, 0.008147], [0.007911, 0.936617, 0.055473], [0.006161, 0.00065, 0.993189]]",
        "output = [0, 1]",
    )
}

/// Labels that do not cover the classes the model scores are refused by `check`; and where the
/// bundle declares no class count, a class index past the labels gives that row no label, never
/// a 500 to the caller.
#[tokio::test]
async fn labels_must_cover_the_classes_and_a_caller_never_gets_a_500_for_them() {
    let (_folder, path) = edited_copy(two_labels_for_three_classes);
    let output = common::predictor(&["check", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("labels: 2 labels, but output 'probabilities' scores 3 classes"),
        "{stderr}"
    );
    let probabilities =
        "[[outputs]]\nname = \"probabilities\"\ndtype = \"float32\"\nshape = [-1, 3]\n\n";
    let (_folder, path) = edited_copy(|text| {
        assert!(text.contains(probabilities));
        two_labels_for_three_classes(text).replace(probabilities, "")
    });
    let server = Server::start(&[&path]);
    let virginica = json!({"data": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]});
    let (status, body) = server.post_json("/predict/label", &virginica).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prediction"], json!(["setosa", null]));
}

/// Bodies past the size decoded off the reactor (`serving::decoding`) answer as small ones do:
/// the same predictions on both APIs, and the same clear 400 for a bad one.
#[tokio::test]
async fn large_bodies_answer_as_small_ones() {
    let server = Server::start(&[&bundle("iris-svc")]);
    // 4096 rows (the default row limit), about 200 KB of JSON.
    let precise = [5.100000001, 3.500000001, 1.400000001, 0.200000001];
    let rows: Vec<[f64; 4]> = (0..4096).map(|_| precise).collect();
    let body = serde_json::to_vec(&json!({ "data": rows })).unwrap();
    assert!(body.len() > 128 * 1024, "{} bytes", body.len());
    let (status, small) = server
        .post_json("/predict", &json!({ "data": [precise] }))
        .await;
    assert_eq!(status, 200, "{small}");
    let (status, large) = server
        .post_raw("/predict", Some("application/json"), body)
        .await;
    assert_eq!(status, 200);
    let prediction = large["prediction"].as_array().unwrap();
    assert_eq!(prediction.len(), 4096);
    assert!(prediction.iter().all(|row| *row == small["prediction"][0]));

    let v2 = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4096, 4], "data": rows}]});
    let (status, answer) = server.post_json("/v2/models/iris-svc/infer", &v2).await;
    assert_eq!(status, 200, "{answer}");
    let probabilities = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|output| output["name"] == "probabilities")
        .unwrap();
    assert_eq!(probabilities["shape"], json!([4096, 3]));

    let mut broken = serde_json::to_vec(&v2).unwrap();
    broken.truncate(broken.len() - 3);
    let (status, error) = server
        .post_raw(
            "/v2/models/iris-svc/infer",
            Some("application/json"),
            broken,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error_of(&error).contains("not an inference request"),
        "{error}"
    );
    let (status, error) = server
        .post_raw(
            "/predict",
            Some("application/json"),
            format!(
                "{{\"data\": {}, \"extra\": 1}}",
                serde_json::to_string(&rows).unwrap()
            )
            .into_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error_of(&error).contains("unknown field"), "{error}");
}
