//! The fuzz targets' corpora (fuzz/corpus/<target>/) replayed on stable Rust through the same
//! functions the fuzzers call (`predictor::fuzzing`), so that every input a fuzzer kept, and every
//! crash it found once, stays a test. A file named `ok-*` must be accepted by some declaration,
//! one named `bad-*` refused by all (fuzz/make_corpus.py writes them); any other must only pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use predictor::bundle::Bundle;
use predictor::fuzzing::{self, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs every file of `target`'s corpus; returns one line per failure.
fn replay(name: &str, target: Target) -> Vec<String> {
    let folder = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", folder.display());
    let mut failures = Vec::new();
    for file in &files {
        let input = std::fs::read(file).expect("a corpus file");
        let shown = file.file_name().unwrap_or_default().to_string_lossy();
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Err(_) => failures.push(format!("{name}/{shown}: panicked (message above)")),
            Ok(false) if shown.starts_with("ok-") => {
                failures.push(format!("{name}/{shown}: refused, but named ok-"))
            }
            Ok(true) if shown.starts_with("bad-") => {
                failures.push(format!("{name}/{shown}: accepted, but named bad-"))
            }
            Ok(_) => {}
        }
    }
    failures
}

#[test]
fn every_corpus_replays_without_a_failure() {
    let failures: Vec<String> = fuzzing::TARGETS
        .iter()
        .flat_map(|&(name, target)| replay(name, target))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_target_has_its_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no binary {name}"
        );
    }
}

/// The fuzzers decode against a copy of iris-svc's declarations: it must not drift.
#[test]
fn the_fuzzing_declarations_are_the_bundles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| Bundle::read(&root.join(path)).unwrap().config;
    let declared = |name: &str| {
        let bundle = fuzzing::bundles()
            .iter()
            .find(|bundle| bundle.name() == name)
            .unwrap();
        bundle.config.clone()
    };
    for (name, path) in [
        ("iris-svc", "models/iris-svc"),
        ("every-dtype", "server/tests/fixtures/every-dtype"),
    ] {
        let (file, copy) = (read(path), declared(name));
        assert_eq!(file.inputs, copy.inputs, "{name}");
        assert_eq!(file.outputs, copy.outputs, "{name}");
        assert_eq!(file.labels, copy.labels, "{name}");
        assert_eq!(file.prediction, copy.prediction, "{name}");
    }
}
