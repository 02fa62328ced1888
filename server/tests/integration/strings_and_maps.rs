//! Models of the kinds scikit-learn and skl2onnx make by default: text in and out (BYTES), class
//! probabilities as a sequence of maps (ZipMap), and Triton's classification extension on them,
//! against the real binary, the real ONNX Runtime and the bundles under models/.

use crate::common;

use common::{bundle, predictor, sample, Server};
use serde_json::{json, Value};

const TEXT: &str = "support-tickets-tfidf";
const ZIPMAP: &str = "iris-svc-zipmap";

/// A v2 binary request: the JSON header, then `binary` (Triton's binary tensor data extension).
async fn post_binary(
    server: &Server,
    model: &str,
    header: &Value,
    binary: &[u8],
) -> (u16, Vec<u8>, Option<usize>) {
    let header = serde_json::to_vec(header).unwrap();
    let length = header.len();
    let response = reqwest::Client::new()
        .post(server.url(&format!("/v2/models/{model}/infer")))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", length.to_string())
        .body([header, binary.to_vec()].concat())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json_length = response
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        status,
        response.bytes().await.unwrap().to_vec(),
        json_length,
    )
}

/// BYTES elements in the binary encoding: each a 4-byte little-endian length, then its bytes.
fn length_prefixed(texts: &[&str]) -> Vec<u8> {
    texts
        .iter()
        .flat_map(|text| {
            let mut bytes = (text.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(text.as_bytes());
            bytes
        })
        .collect()
}

fn texts_of(bytes: &[u8]) -> Vec<String> {
    let mut texts = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        texts.push(String::from_utf8(rest[4..4 + length].to_vec()).unwrap());
        rest = &rest[4 + length..];
    }
    texts
}

fn tickets() -> Vec<String> {
    sample(&bundle(TEXT))["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn text_goes_in_and_class_names_come_out_over_every_encoding() {
    let server = Server::start(&[&bundle(TEXT)]);
    let texts = tickets();
    let expected = sample(&bundle(TEXT));
    let names = json!(["billing", "delivery", "technical"]);

    // The seed API: rows of strings, the probabilities, and the labels of the ZipMap's keys.
    let rows: Vec<Value> = texts.iter().map(|t| json!([t])).collect();
    let (status, body) = server.post_json("/predict", &json!({ "data": rows })).await;
    assert_eq!(status, 200, "{body}");
    common::assert_close(&body["prediction"], &expected["output"], 1e-4);
    let (status, body) = server
        .post_json("/predict/label", &json!({ "data": rows }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prediction"], names);

    // v2 JSON: BYTES as JSON strings, the string output as strings.
    let request =
        json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3, 1], "data": texts}]});
    let (status, body) = server
        .post_json(&format!("/v2/models/{TEXT}/infer"), &request)
        .await;
    assert_eq!(status, 200, "{body}");
    let label = &body["outputs"][0];
    assert_eq!(label["name"], "output_label");
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["shape"], json!([3]));
    assert_eq!(label["data"], names);
    assert_eq!(body["outputs"][1]["datatype"], "FP32");
    assert_eq!(body["outputs"][1]["shape"], json!([3, 3]));

    // v2 binary: length-prefixed in, length-prefixed out.
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let binary = length_prefixed(&refs);
    let header = json!({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3, 1],
                    "parameters": {"binary_data_size": binary.len()}}],
        "outputs": [{"name": "output_label", "parameters": {"binary_data": true}}],
    });
    let (status, body, json_length) = post_binary(&server, TEXT, &header, &binary).await;
    let json_length = json_length.expect("a binary answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body[..json_length]).unwrap();
    let size = answer["outputs"][0]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(size, body.len() - json_length);
    assert_eq!(json!(texts_of(&body[json_length..])), names);
}

#[tokio::test]
async fn broken_strings_are_the_callers_mistake() {
    let server = Server::start(&[&bundle(TEXT)]);
    let refused = |body: &Value, part: &str| {
        assert!(body["error"].as_str().unwrap().contains(part), "{body}");
    };
    // A length prefix past the data.
    let mut binary = length_prefixed(&["refund please"]);
    binary[0] = 200;
    let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1],
                                    "parameters": {"binary_data_size": binary.len()}}]});
    let (status, body, _) = post_binary(&server, TEXT, &header, &binary).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    refused(&body, "claims 200 bytes, but only 13 bytes of data follow");

    // Fewer strings than the shape holds.
    let binary = length_prefixed(&["one"]);
    let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1],
                                    "parameters": {"binary_data_size": binary.len()}}]});
    let (status, body, _) = post_binary(&server, TEXT, &header, &binary).await;
    assert_eq!(status, 400);
    refused(
        &serde_json::from_slice(&body).unwrap(),
        "holds 2 values, but 1 were sent",
    );

    // Not UTF-8.
    let bytes = vec![1, 0, 0, 0, 0xff];
    let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1],
                                    "parameters": {"binary_data_size": bytes.len()}}]});
    let (status, body, _) = post_binary(&server, TEXT, &header, &bytes).await;
    assert_eq!(status, 400);
    refused(&serde_json::from_slice(&body).unwrap(), "not UTF-8");
    // A NUL is text like any other: the model reads the whole string, in binary and in JSON.
    let bytes = vec![3, 0, 0, 0, b'a', 0, b'b'];
    let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1],
                                    "parameters": {"binary_data_size": bytes.len()}}]});
    let (status, _, _) = post_binary(&server, TEXT, &header, &bytes).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post_raw(
            "/predict",
            Some("application/json"),
            br#"{"data": [["a\u0000b"]]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);

    // More strings than one request may hold: refused from the shape, before any is decoded.
    let (status, body) = server
        .post_json(
            &format!("/v2/models/{TEXT}/infer"),
            &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [70000, 1], "data": ["x"]}]}),
        )
        .await;
    assert_eq!(status, 400);
    refused(&body, "more than this server takes in one request (65536)");

    // Numbers for text, and text for numbers, named in the protocol's words.
    let (status, body) = server
        .post_json(
            &format!("/v2/models/{TEXT}/infer"),
            &json!({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}),
        )
        .await;
    assert_eq!(status, 400);
    refused(&body, "expects datatype BYTES, received FP32");
    let (status, body) = server.post_json("/predict", &json!({"data": [[1]]})).await;
    assert_eq!(status, 400);
    refused(&body, "expected string at [0][0], received a number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_of_text_from_many_callers_are_batched_and_each_gets_its_own_answer() {
    // Batches of 8 that wait for their rows (up to 10 s): the 24 callers join into a few runs.
    let (_folder, batching) = common::edited_copy_of(&bundle(TEXT), |text| {
        assert!(text.contains("max_batch_size = 16\n"), "{text}");
        text.replace(
            "max_batch_size = 16\n",
            "max_batch_size = 8\nmax_queue_delay_ms = 10000\n",
        )
    });
    let server = std::sync::Arc::new(Server::start(&[&batching]));
    let texts = tickets();
    let names = ["billing", "delivery", "technical"];
    let callers = 24;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let server = server.clone();
            let text = texts[i % 3].clone();
            tokio::spawn(async move {
                server
                    .post_json("/predict/label", &json!({ "data": [[text]] }))
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "caller {i}: {body}");
        assert_eq!(body["prediction"], json!([names[i % 3]]), "caller {i}");
    }
    let metrics = server.metrics().await;
    let value = |series: &str| common::metric_value(&metrics, series).unwrap();
    let runs = value(&format!("predictor_batch_rows_count{{model=\"{TEXT}\"}}"));
    let rows = value(&format!("predictor_batch_rows_sum{{model=\"{TEXT}\"}}"));
    // Every row ran once, and rows of strings from different callers joined.
    assert_eq!(rows, callers as f64, "every row ran once");
    assert!(runs < callers as f64, "{runs} runs: no rows joined");
}

#[tokio::test]
async fn the_zipmap_export_serves_the_probabilities_as_class_scores() {
    let server = Server::start(&[&bundle(ZIPMAP)]);
    let expected = sample(&bundle(ZIPMAP));
    let (status, body) = server.get("/predict/test").await;
    assert_eq!(status, 200, "{body}");
    // scikit-learn's own predict_proba, which make_model.py printed into the sample.
    common::assert_close(&body["prediction"], &expected["output"], 1e-4);
    let (_, body) = server.get("/predict/test/label").await;
    assert_eq!(
        body["prediction"],
        json!(["setosa", "versicolor", "virginica"])
    );
    let (_, metadata) = server.get(&format!("/v2/models/{ZIPMAP}")).await;
    assert_eq!(
        metadata["outputs"][1],
        json!({"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]})
    );
}

/// The k best classes of a row, as Triton's classification extension writes them.
fn top_k(scores: &[f64], k: usize, labels: &[&str]) -> Vec<String> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap());
    order
        .into_iter()
        .take(k)
        .map(|class| format!("{:.6}:{class}:{}", scores[class] as f32, labels[class]))
        .collect()
}

#[tokio::test]
async fn classification_returns_the_best_classes_as_sorting_the_probabilities_would() {
    let server = Server::start(&[&bundle(ZIPMAP), &bundle("iris-svc"), &bundle(TEXT)]);
    let labels = ["setosa", "versicolor", "virginica"];
    let rows = sample(&bundle(ZIPMAP))["input"].as_array().unwrap().clone();
    // Models that do not batch: as Triton, the whole output is ranked as one (one row here).
    for (model, output) in [
        (ZIPMAP, "output_probability"),
        ("iris-svc", "probabilities"),
    ] {
        let path = format!("/v2/models/{model}/infer");
        for row in &rows {
            let input =
                json!([{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row}]);
            let (status, plain) = server
                .post_json(
                    &path,
                    &json!({"inputs": input, "outputs": [{"name": output}]}),
                )
                .await;
            assert_eq!(status, 200, "{plain}");
            let scores: Vec<f64> = plain["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for k in [1, 2, 5] {
                let request = json!({"inputs": input, "outputs": [{"name": output, "parameters": {"classification": k}}]});
                let (status, body) = server.post_json(&path, &request).await;
                assert_eq!(status, 200, "{body}");
                let answer = &body["outputs"][0];
                let kept = (k as usize).min(3);
                assert_eq!(answer["datatype"], "BYTES", "{model}");
                assert_eq!(answer["shape"], json!([kept]), "{model}");
                assert_eq!(
                    answer["data"],
                    json!(top_k(&scores, kept, &labels)),
                    "{model} k={k}"
                );
            }
        }
    }
    // A model that batches: each row ranked on its own, [rows, k], named by its class labels.
    let texts: Vec<Value> = tickets().into_iter().map(Value::from).collect();
    let inputs = json!([{"name": "text", "datatype": "BYTES", "shape": [3, 1], "data": texts}]);
    let path = format!("/v2/models/{TEXT}/infer");
    let (_, plain) = server
        .post_json(
            &path,
            &json!({"inputs": inputs, "outputs": [{"name": "output_probability"}]}),
        )
        .await;
    let scores: Vec<f64> = plain["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let request = json!({"inputs": inputs, "outputs": [{"name": "output_probability", "parameters": {"classification": 2}}]});
    let (status, body) = server.post_json(&path, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([3, 2]));
    let names = ["billing", "delivery", "technical"];
    let expected: Vec<String> = scores
        .chunks(3)
        .flat_map(|row| top_k(row, 2, &names))
        .collect();
    assert_eq!(body["outputs"][0]["data"], json!(expected));
    // Text has no scores to rank.
    let (status, body) = server
        .post_json(
            &path,
            &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["hi"]}],
                    "outputs": [{"name": "output_label", "parameters": {"classification": 2}}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("classification needs numeric scores"),
        "{body}"
    );
}

#[test]
fn init_declares_the_zipmap_and_names_the_text_classes() {
    for (name, labels) in [
        (ZIPMAP, "labels = []"),
        (TEXT, r#"labels = ["billing", "delivery", "technical"]"#),
    ] {
        let folder = tempfile::tempdir().unwrap();
        let model = folder.path().join("model.onnx");
        std::fs::copy(bundle(name).join("model.onnx"), &model).unwrap();
        let output = predictor(&["init", model.to_str().unwrap(), "--output", "-"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains(labels), "{text}");
        assert!(
            text.contains("prediction = \"output_probability\""),
            "{text}"
        );
        assert!(
            text.contains("name = \"output_probability\"\ndtype = \"float32\"\nshape = [-1, 3]"),
            "{text}"
        );
        assert!(text.contains("a sequence of maps from"), "{text}");
    }
}

/// An output no protocol here carries (a sequence of tensors): `init` leaves it out and says so
/// on the terminal with what to do; the file it writes passes `check` once its sample is filled
/// in, and declaring the output by hand is refused, again with what to do.
#[test]
fn what_init_cannot_serve_it_says_on_the_terminal_with_what_to_do() {
    let folder = tempfile::tempdir().unwrap();
    let model = folder.path().join("model.onnx");
    let fixture = common::fixture("sequence-output").join("model.onnx");
    std::fs::write(&model, std::fs::read(fixture).unwrap()).unwrap();
    let output = predictor(&["init", model.to_str().unwrap()]);
    let notes = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{notes}");
    assert!(
        notes.contains("note: output 'parts' is left out: it is a sequence of FP32 tensors"),
        "{notes}"
    );
    assert!(notes.contains("zipmap"), "what to do: {notes}");
    let written = folder.path().join("predictor.toml");
    let mut config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&written).unwrap()).unwrap();
    let outputs = config["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{config}");
    assert_eq!(outputs[0]["name"].as_str(), Some("copy"));

    let rows = toml::Value::try_from(vec![vec![5.1, 3.5, 1.4, 0.2]]).unwrap();
    let mut sample = toml::Table::new();
    sample.insert("input".into(), rows.clone());
    sample.insert("output".into(), rows);
    sample.insert("tolerance".into(), toml::Value::Float(1e-6));
    config.insert("sample".into(), toml::Value::Table(sample));
    std::fs::write(&written, toml::to_string(&config).unwrap()).unwrap();
    let accepted = predictor(&["check", folder.path().to_str().unwrap()]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );

    let mut parts = toml::Table::new();
    parts.insert("name".into(), "parts".into());
    parts.insert("dtype".into(), "float32".into());
    parts.insert("shape".into(), toml::Value::try_from(vec![-1, 4]).unwrap());
    if let Some(toml::Value::Array(outputs)) = config.get_mut("outputs") {
        outputs.push(toml::Value::Table(parts));
    }
    std::fs::write(&written, toml::to_string(&config).unwrap()).unwrap();
    let refused = predictor(&["check", folder.path().to_str().unwrap()]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(
            "the model's 'parts' is a sequence of FP32 tensors, which predictor cannot serve"
        ),
        "{message}"
    );
    assert!(message.contains("leave it out"), "what to do: {message}");
}

#[test]
fn a_zipmap_declared_otherwise_is_refused_in_the_protocols_words() {
    let (_folder, copy) = common::edited_copy_of(&bundle(ZIPMAP), |text| {
        text.replace(
            "name = \"output_probability\"\ndtype = \"float32\"",
            "name = \"output_probability\"\ndtype = \"float64\"",
        )
    });
    let output = predictor(&["check", copy.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("is a sequence of maps from INT64 to FP32, served as class scores: declare dtype = \"float32\""),
        "{message}"
    );
    assert!(!message.contains("Sequence<"), "{message}");
}

#[test]
fn a_model_asking_for_a_missing_locale_is_refused_with_what_to_do() {
    let model = common::fixture("missing-locale").join("model.onnx");
    let output = predictor(&["init", model.to_str().unwrap(), "--output", "-"]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("Failed to construct locale"), "{message}");
    assert!(
        message.contains(r#"skl2onnx options={id(vectorizer): {"locale": "C"}}"#),
        "{message}"
    );
}
