//! The benchmark's R: how many runs per second ONNX Runtime itself does on a bundle's model, with
//! one intra-op thread, in-process, without the server around it. `bench/run`, `bench/text` and
//! `bench/image` call it.
//!
//!     cargo run --release --example bench_runtime -- BUNDLE ROWS SECONDS [INPUTS.json]
//!
//! For a text bundle, INPUTS.json (a list of strings) is cut into runs of ROWS sentences in
//! order, each tokenized and padded to its longest as the server does, before the clock starts.
//! For an image bundle, INPUTS.json is a list of image files, read before the clock starts; each
//! run decodes and preprocesses its ROWS images as the server does (on the clock: it is the
//! server's work too), then runs them.
//! Prints one JSON object: {"runs_per_second": ..., "rows_per_second": ..., "seconds_per_run": ...}.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use predictor::bundle::{Bundle, TOKEN_INPUTS};
use predictor::defaults;
use predictor::preprocess::tokens::TextTokenizer;
use predictor::runtime::{Backend, OnnxRuntime};
use predictor::tensor::{Tensor, TensorData};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bundle, rows, seconds, sentences) = match args.as_slice() {
        [bundle, rows, seconds] => (bundle, rows, seconds, None),
        [bundle, rows, seconds, sentences] => (bundle, rows, seconds, Some(sentences)),
        _ => return Err("usage: bench_runtime BUNDLE ROWS SECONDS [INPUTS.json]".into()),
    };
    let rows: usize = rows.parse().map_err(|_| "ROWS: a number")?;
    let seconds: f64 = seconds.parse().map_err(|_| "SECONDS: a number")?;
    let library = std::env::var("PREDICTOR_ONNXRUNTIME").unwrap_or("libonnxruntime.so".into());
    let runtime = OnnxRuntime::load(&PathBuf::from(library)).map_err(|e| e.to_string())?;
    let bundle = Bundle::read(&PathBuf::from(bundle)).map_err(|e| e.to_string())?;
    let mut backend = runtime
        .open(&bundle.model_path(), 1)
        .map_err(|e| e.to_string())?;
    if let (Some(steps), Some(images)) = (
        bundle.image_preprocessing(defaults::MAX_IMAGE_PIXELS),
        sentences,
    ) {
        let files: Vec<PathBuf> =
            serde_json::from_slice(&std::fs::read(images).map_err(|e| format!("{images}: {e}"))?)
                .map_err(|e| format!("{images}: {e}"))?;
        let images = files
            .iter()
            .map(|file| std::fs::read(file).map_err(|e| format!("{}: {e}", file.display())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = images.iter().cycle();
        let outputs: Vec<usize> = (0..backend.signature().outputs.len()).collect();
        return count_runs(rows, seconds, || {
            let mut values = Vec::with_capacity(rows * steps.values_per_image());
            for image in next.by_ref().take(rows) {
                steps
                    .pixels_into(image, &mut values)
                    .map_err(|e| e.to_string())?;
            }
            let pixels = Tensor::new(steps.shape(rows), TensorData::Float32(values))
                .map_err(|e| e.to_string())?;
            backend
                .run(vec![pixels], &outputs)
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
    let runs_inputs = match (&bundle.config.text, sentences) {
        (Some(text), Some(sentences)) => {
            let tokenizer =
                TextTokenizer::read(&bundle.dir().join(&text.tokenizer), bundle.sequence_bound())?;
            let sentences: Vec<String> = serde_json::from_slice(
                &std::fs::read(sentences).map_err(|e| format!("{sentences}: {e}"))?,
            )
            .map_err(|e| format!("{sentences}: {e}"))?;
            let graph_inputs: Vec<String> = backend
                .signature()
                .inputs
                .iter()
                .map(|value| value.name.clone())
                .collect();
            sentences
                .chunks(rows)
                .filter(|chunk| chunk.len() == rows)
                .map(|chunk| {
                    let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let batch = tokenizer.encode(&texts)?;
                    graph_inputs
                        .iter()
                        .map(|name| {
                            let values = match TOKEN_INPUTS.iter().position(|t| t == name) {
                                Some(0) => &batch.input_ids,
                                Some(1) => &batch.attention_mask,
                                Some(2) => &batch.token_type_ids,
                                _ => return Err(format!("graph input '{name}' is no token input")),
                            };
                            Tensor::new(
                                vec![batch.rows, batch.length],
                                TensorData::Int64(values.clone()),
                            )
                            .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
                .collect::<Result<Vec<_>, String>>()?
        }
        (None, None) => {
            let [_] = bundle.config.inputs.as_slice() else {
                return Err("bench_runtime takes bundles with one input, or text bundles".into());
            };
            let sample =
                serde_json::value::RawValue::from_string(bundle.config.sample.input.to_string())
                    .map_err(|e| e.to_string())?;
            let sample = bundle.decode_inputs(&sample, "sample.input")?.remove(0);
            let sample_rows = sample.rows();
            let first_row = sample
                .split_rows(&[1, sample_rows - 1])
                .ok_or("the sample needs at least one row")?
                .remove(0);
            let input =
                Tensor::concat_rows(vec![first_row; rows]).ok_or("cannot repeat the row")?;
            vec![vec![input]]
        }
        _ => return Err("SENTENCES.json goes with a text bundle, and only with one".into()),
    };
    if runs_inputs.is_empty() {
        return Err(format!("fewer than {rows} sentences"));
    }
    let outputs: Vec<usize> = (0..backend.signature().outputs.len()).collect();
    let mut next = runs_inputs.iter().cycle();
    count_runs(rows, seconds, || {
        let inputs = next.next().cloned().unwrap_or_default();
        backend
            .run(inputs, &outputs)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Runs `run_once` 20 times to warm up, then as often as it can for `seconds`, and prints the
/// rate, each run of `rows` rows.
fn count_runs(
    rows: usize,
    seconds: f64,
    mut run_once: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    // Warm up, then count runs for the given time.
    for _ in 0..20 {
        run_once()?;
    }
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        run_once()?;
        runs += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "runs_per_second": runs as f64 / elapsed,
            "rows_per_second": (runs as usize * rows) as f64 / elapsed,
            "seconds_per_run": elapsed / runs as f64,
        })
    );
    Ok(())
}
