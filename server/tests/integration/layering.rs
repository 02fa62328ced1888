//! The server's modules depend one way (the README's Layout): each layer uses only those listed
//! before it, and only `runtime::ort` touches ONNX Runtime's crate. Read off the sources, so that
//! an import against the grain fails here, in review's place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom to top. `main.rs` and `lib.rs` sit above them all; `fuzzing` (a feature for the fuzz
/// targets) may reach any layer.
const LAYERS: &[&str] = &[
    "allocator",
    "text",
    "defaults",
    "metrics",
    "telemetry",
    "logging",
    "request_context",
    "tensor",
    "preprocess",
    "postprocess",
    "prediction_log",
    "bundle",
    "runtime",
    "ops",
    "model",
    "serving",
    "protocol",
    "transport",
    "server",
];

fn sources(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without its comments and its unit tests (which may use any layer's fakes).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn used_layers(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut against = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if ["main", "lib", "fuzzing"].contains(&top) {
            continue;
        }
        let position = LAYERS
            .iter()
            .position(|layer| *layer == top)
            .unwrap_or_else(|| {
                panic!(
                    "{}: a module of no layer; add it to LAYERS",
                    relative.display()
                )
            });
        for used in used_layers(&code(file)) {
            let used_position = LAYERS.iter().position(|layer| *layer == used);
            if used != top && used_position.is_none_or(|p| p > position) {
                against.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against the layering: {against:#?}"
    );
}

#[test]
fn only_runtime_ort_imports_onnx_runtime() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let users: Vec<String> = files
        .iter()
        .filter(|file| {
            let code = code(file);
            code.match_indices("ort::").any(|(at, _)| {
                let before = code[..at].chars().next_back();
                !before.is_some_and(|c| c == ':' || c == '_' || c.is_ascii_alphanumeric())
            })
        })
        .map(|file| file.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert_eq!(users, vec!["runtime/ort.rs".to_string()]);
}
