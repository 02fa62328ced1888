//! Every bundle under models/ must pass `predictor check` and answer its sample over HTTP, so a
//! template change that breaks any predictor fails the tests.

use crate::common;

use base64::Engine;
use common::{all_bundles, assert_close, predictor, sample, Server};
use serde_json::json;

#[test]
fn every_bundle_passes_check() {
    for bundle in all_bundles() {
        let output = predictor(&["check", bundle.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {}{}",
            bundle.display(),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("ok: "), "{stdout}");
    }
}

#[tokio::test]
async fn every_bundle_answers_its_sample_over_http() {
    for bundle in all_bundles() {
        let server = Server::start(&[&bundle]);
        let sample = sample(&bundle);
        let tolerance = sample["tolerance"].as_f64().unwrap();

        let (status, test) = server.get("/predict/test").await;
        assert_eq!(status, 200, "{}: {test}", bundle.display());
        assert_close(&test["prediction"], &sample["output"], tolerance);

        // An image bundle's sample names image files: JSON carries them in base64, and each
        // alone is a body of its own.
        let images = sample_images(&bundle, &sample);
        let data = match &images {
            Some(images) => json!(images
                .iter()
                .map(|image| base64::engine::general_purpose::STANDARD.encode(image))
                .collect::<Vec<_>>()),
            None => sample["input"].clone(),
        };
        let (status, posted) = server.post_json("/predict", &json!({ "data": data })).await;
        assert_eq!(status, 200, "{}: {posted}", bundle.display());
        assert_eq!(
            posted, test,
            "POST /predict of the sample equals GET /predict/test"
        );
        for (row, image) in images.iter().flatten().enumerate() {
            let (status, alone) = server
                .post_raw("/predict", Some("image/jpeg"), image.clone())
                .await;
            assert_eq!(status, 200, "{}: {alone}", bundle.display());
            assert_eq!(alone["prediction"][0], test["prediction"][row]);
        }

        // A bundle with labels answers each row's top class by name; one without (an encoder)
        // has no label routes.
        let (_, metadata) = server.get("/metadata").await;
        let labels = metadata["labels"].as_array().unwrap();
        if labels.is_empty() {
            let (status, _) = server.get("/predict/test/label").await;
            assert_eq!(status, 404, "{}", bundle.display());
            continue;
        }
        let expected: Vec<&serde_json::Value> = sample["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let scores: Vec<f64> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let top =
                    (0..scores.len())
                        .fold(0, |best, i| if scores[i] > scores[best] { i } else { best });
                &labels[top]
            })
            .collect();
        let (status, named) = server.get("/predict/test/label").await;
        assert_eq!(status, 200, "{named}");
        assert_eq!(named["prediction"], json!(expected), "{}", bundle.display());
    }
}

/// The files an image bundle's sample names, read; none for other bundles.
fn sample_images(bundle: &std::path::Path, sample: &serde_json::Value) -> Option<Vec<Vec<u8>>> {
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(bundle.join("predictor.toml")).unwrap()).unwrap();
    config.get("image")?;
    let names = sample["input"].as_array().unwrap();
    Some(
        names
            .iter()
            .map(|name| std::fs::read(bundle.join(name.as_str().unwrap())).unwrap())
            .collect(),
    )
}

/// An image bundle may batch: its rows are checked independent on their pixels (the sample's,
/// then a perturbed copy of them in one run), since its encoded images cannot be perturbed.
#[test]
fn an_image_bundle_batches_once_its_rows_are_found_independent() {
    let image_bundles = [
        common::bundle("document-orientation"),
        common::fixture("image-dtypes/float16"),
        common::fixture("image-dtypes/float64"),
        common::fixture("image-dtypes/uint8"),
    ];
    for bundle in image_bundles {
        let (_folder, batched) = common::edited_copy_of(&bundle, |text| {
            format!("{text}\n[runtime]\nmax_batch_size = 8\n")
        });
        for folder in [&bundle, &batched] {
            let output = predictor(&["check", folder.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{}: {}",
                folder.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A graph that takes uint8 pixels gets an [image] table that normalizes nothing, which check
/// accepts once the sample and the resize are filled in (a normalizing one it would refuse).
#[test]
fn init_image_of_a_uint8_graph_takes_the_pixels_as_they_are() {
    let folder = tempfile::tempdir().unwrap();
    let fixture = common::fixture("image-dtypes/uint8");
    for name in ["model.onnx", "sample.png"] {
        std::fs::copy(fixture.join(name), folder.path().join(name)).unwrap();
    }
    let model = folder.path().join("model.onnx");
    let output = predictor(&["init", model.to_str().unwrap(), "--image"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = folder.path().join("predictor.toml");
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains("divide_by = 1.0"), "{text}");
    assert!(!text.contains("mean ="), "{text}");
    assert!(text.contains("layout = \"NHWC\""), "{text}");
    let real: toml::Table =
        toml::from_str(&std::fs::read_to_string(fixture.join("predictor.toml")).unwrap()).unwrap();
    let mut config: toml::Table = toml::from_str(&text).unwrap();
    config.insert("sample".into(), real["sample"].clone());
    config["image"]
        .as_table_mut()
        .unwrap()
        .insert("resize".into(), real["image"]["resize"].clone());
    std::fs::write(&written, toml::to_string(&config).unwrap()).unwrap();
    let accepted = predictor(&["check", folder.path().to_str().unwrap()]);
    assert!(
        accepted.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&accepted.stderr),
        toml::to_string(&config).unwrap()
    );
}

#[test]
fn init_then_filled_sample_passes_check_for_every_bundle() {
    for bundle in all_bundles() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::copy(bundle.join("model.onnx"), folder.path().join("model.onnx")).unwrap();
        let model = folder.path().join("model.onnx");
        let mut init = vec!["init".to_string(), model.to_str().unwrap().to_string()];
        // A text bundle is made from its model and its tokenizer.
        let real: toml::Table =
            toml::from_str(&std::fs::read_to_string(bundle.join("predictor.toml")).unwrap())
                .unwrap();
        if let Some(tokenizer) = real
            .get("text")
            .and_then(|text| text.get("tokenizer"))
            .and_then(toml::Value::as_str)
        {
            let copy = folder.path().join("tokenizer.json");
            std::fs::copy(bundle.join(tokenizer), &copy).unwrap();
            init.extend([
                "--tokenizer".to_string(),
                copy.to_str().unwrap().to_string(),
            ]);
        }
        // An image bundle is made with --image; its preprocessing and sample images are the
        // author's to give, from the model card: copied from the real bundle below.
        let image = real.get("image").cloned();
        if image.is_some() {
            init.push("--image".to_string());
        }
        let output = predictor(&init.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = folder.path().join("predictor.toml");
        let text = std::fs::read_to_string(&written).unwrap();
        // The threads are the server's to share out unless the author pins them.
        assert!(
            !text.lines().any(|line| line.starts_with("threads")),
            "{text}"
        );

        // As written, the sample has no expected output: check must refuse it and say why.
        let refused = predictor(&["check", folder.path().to_str().unwrap()]);
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("sample.output"), "{message}");

        // Filled in with the real bundle's sample, check accepts it.
        let real = sample(&bundle);
        let mut config: toml::Table = toml::from_str(&text).unwrap();
        let mut filled = toml::Table::new();
        for key in ["input", "output", "tolerance"] {
            filled.insert(key.into(), toml::Value::try_from(&real[key]).unwrap());
        }
        config.insert("sample".into(), toml::Value::Table(filled));
        if let Some(image) = image {
            assert!(folder.path().join("sample.png").is_file(), "{text}");
            config.insert("image".into(), image);
            for name in real["input"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                std::fs::copy(bundle.join(name), folder.path().join(name)).unwrap();
            }
        }
        std::fs::write(&written, toml::to_string(&config).unwrap()).unwrap();
        let accepted = predictor(&["check", folder.path().to_str().unwrap()]);
        assert!(
            accepted.status.success(),
            "{}: {}\n{}",
            bundle.display(),
            String::from_utf8_lossy(&accepted.stderr),
            toml::to_string(&config).unwrap()
        );
    }
}

/// Without `runtime.threads`, a model gets as many intra-op threads as the process may use CPUs:
/// its affinity (here `taskset`) bounds them.
/// A bundle whose model is fetched (fetch.toml), copied without it: `check` names the missing
/// file and where it comes from, not only that it is missing.
#[test]
fn a_fetched_model_not_yet_fetched_is_named_with_its_fetch_toml() {
    let bundle = common::bundle("minilm-embeddings");
    let folder = tempfile::tempdir().unwrap();
    for file in ["predictor.toml", "fetch.toml", "tokenizer.json"] {
        std::fs::copy(bundle.join(file), folder.path().join(file)).unwrap();
    }
    let output = predictor(&["check", folder.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(
            "model.onnx does not exist; the bundle's fetch.toml says where it comes from"
        ),
        "{message}"
    );
}

#[test]
fn threads_default_to_the_cpus_the_process_may_use() {
    let (_folder, path) = common::edited_copy(|text| text.replace("threads = 1\n", ""));
    let threads_of = |server: &Server| {
        server
            .log_events()
            .into_iter()
            .find(|event| event["message"] == "model ready")
            .map(|event| event["threads"].as_u64().unwrap())
            .unwrap()
    };
    let available = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(threads_of(&Server::start(&[&path])), available);
    let pinned = Server::start_under(&["taskset", "-c", "0"], &[&path], &[]);
    assert_eq!(threads_of(&pinned), 1);
}

/// `runtime.instances`: several sessions of one model share its queue. The CPUs are divided among
/// every instance served when no threads are set, the model configuration tells Triton's clients
/// how many instances there are, and concurrent callers each get their own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_queue_and_divide_the_cpus() {
    let (_folder, path) =
        common::edited_copy(|text| text.replace("threads = 1\n", "instances = 2\n"));
    let server = std::sync::Arc::new(Server::start(&[&path]));
    let ready = server
        .log_events()
        .into_iter()
        .find(|event| event["message"] == "model ready")
        .unwrap();
    let available = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(ready["instances"], 2, "{ready}");
    assert_eq!(ready["threads"], (available / 2).max(1), "{ready}");
    let (status, config) = server.get("/v2/models/iris-svc/config").await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["instance_group"][0]["count"], 2, "{config}");

    let sample = sample(&path);
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let server = server.clone();
            let request = serde_json::json!({ "data": sample["input"] });
            tokio::spawn(async move { server.post_json("/predict", &request).await })
        })
        .collect();
    for caller in callers {
        let (status, body) = caller.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_close(&body["prediction"], &sample["output"], 1e-4);
    }
}

/// `--instances` overrides the bundles', and with two models of two instances each, the CPUs
/// are divided by four.
#[test]
fn the_instances_flag_overrides_the_bundles() {
    let (_folder, path) = common::edited_copy(|text| text.replace("threads = 1\n", ""));
    let server = Server::start_with(&[&path, &common::bundle("iris-mlp")], &["--instances", "2"]);
    let available = std::thread::available_parallelism().unwrap().get() as u64;
    let ready: Vec<_> = server
        .log_events()
        .into_iter()
        .filter(|event| event["message"] == "model ready")
        .collect();
    assert_eq!(ready.len(), 2);
    let svc = ready
        .iter()
        .find(|event| event["model"] == "iris-svc")
        .unwrap();
    assert_eq!(svc["instances"], 2, "{svc}");
    assert_eq!(svc["threads"], (available / 4).max(1), "{svc}");
    let mlp = ready
        .iter()
        .find(|event| event["model"] == "iris-mlp")
        .unwrap();
    assert_eq!(mlp["instances"], 2, "{mlp}");
    assert_eq!(mlp["threads"], 1, "its bundle sets threads = 1: {mlp}");
}
