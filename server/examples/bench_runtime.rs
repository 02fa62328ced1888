//! The benchmark's R: how many runs per second ONNX Runtime itself does on a bundle's model, with
//! one intra-op thread, in-process, without the server around it. `bench/run` calls it.
//!
//!     cargo run --release --example bench_runtime -- BUNDLE ROWS SECONDS
//!
//! Prints one JSON object: {"runs_per_second": ..., "rows_per_second": ..., "seconds_per_run": ...}.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use predictor::bundle::Bundle;
use predictor::runtime::{Backend, OnnxRuntime};
use predictor::tensor::Tensor;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, rows, seconds] = args.as_slice() else {
        return Err("usage: bench_runtime BUNDLE ROWS SECONDS".into());
    };
    let rows: usize = rows.parse().map_err(|_| "ROWS: a number")?;
    let seconds: f64 = seconds.parse().map_err(|_| "SECONDS: a number")?;
    let library = std::env::var("PREDICTOR_ONNXRUNTIME").unwrap_or("libonnxruntime.so".into());
    let runtime = OnnxRuntime::load(&PathBuf::from(library)).map_err(|e| e.to_string())?;
    let bundle = Bundle::read(&PathBuf::from(bundle)).map_err(|e| e.to_string())?;
    let [_] = bundle.config.inputs.as_slice() else {
        return Err("bench_runtime takes bundles with one input".into());
    };
    let mut backend = runtime
        .open(&bundle.model_path(), 1)
        .map_err(|e| e.to_string())?;
    let sample = serde_json::value::RawValue::from_string(bundle.config.sample.input.to_string())
        .map_err(|e| e.to_string())?;
    let sample = bundle.decode_inputs(&sample, "sample.input")?.remove(0);
    let sample_rows = sample.rows();
    let first_row = sample
        .split_rows(&[1, sample_rows - 1])
        .ok_or("the sample needs at least one row")?
        .remove(0);
    let input = Tensor::concat_rows(vec![first_row; rows]).ok_or("cannot repeat the row")?;
    let outputs: Vec<usize> = (0..backend.signature().outputs.len()).collect();
    let mut run_once = || {
        backend
            .run(vec![input.clone()], &outputs)
            .map(drop)
            .map_err(|e| e.to_string())
    };
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
