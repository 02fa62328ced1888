//! `predictor probe` against the real server: what the container health check and the Nix smoke
//! checks run. It passes on a healthy server answering its samples, and fails with a message
//! naming the problem otherwise.

use crate::common;

use common::{all_bundles, bundle, edited_copy, predictor, Server};

fn probe(url: &str, bundles: &[&str]) -> std::process::Output {
    let mut args = vec!["probe", "--url", url, "--timeout-seconds", "10"];
    args.extend_from_slice(bundles);
    predictor(&args)
}

#[test]
fn passes_on_every_bundle_served_together() {
    let bundles = all_bundles();
    let paths: Vec<&std::path::Path> = bundles.iter().map(|b| b.as_path()).collect();
    let server = Server::start(&paths);
    let names: Vec<&str> = bundles.iter().map(|b| b.to_str().unwrap()).collect();
    let output = probe(&server.url(""), &names);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("is healthy"), "{stdout}");
    for name in ["iris-svc", "iris-mlp", "digits-logreg"] {
        assert!(
            stdout.contains(&format!("ok: {name} ")),
            "{name} missing: {stdout}"
        );
    }
}

#[test]
fn health_alone_needs_no_bundle() {
    let server = Server::start(&[&bundle("iris-mlp")]);
    let output = probe(&server.url(""), &[]);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn fails_when_the_served_answer_deviates_from_the_sample() {
    let server = Server::start(&[&bundle("iris-svc")]);
    // The same bundle with another expected output: the server still answers the real one.
    let (_keep, changed) =
        edited_copy(|text| text.replace("output = [[0.9775,", "output = [[0.5,"));
    let output = probe(&server.url(""), &[changed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr.contains("iris-svc: POST /models/iris-svc/predict: output 'probabilities' deviates at [0][0]: expected 0.5"),
        "{stderr}"
    );
}

#[test]
fn fails_without_a_server() {
    // Port 9 (discard) on localhost: nothing listens there in a test environment.
    let output = probe("http://127.0.0.1:9", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr.contains("GET http://127.0.0.1:9/health"), "{stderr}");
}
