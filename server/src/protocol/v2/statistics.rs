//! Triton's statistics extension: what each model has run, in Triton's field names.

use std::sync::Arc;

use serde::Serialize;

use super::models::{find_model, triton_version};
use crate::model::Model;
use crate::serving::error::ServeError;
use crate::serving::Registry;

/// Triton's statistics of a model (the statistics extension), in its JSON field names.
#[derive(Serialize)]
pub struct ModelStatisticsReport<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    pub batch_stats: Vec<BatchStatistics>,
}

#[derive(Serialize, Default, Clone, Copy)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

#[derive(Serialize)]
pub struct InferStatistics {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

#[derive(Serialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

fn duration(measured: &crate::metrics::StatisticDuration) -> Duration {
    let (count, ns) = measured.get();
    Duration { count, ns }
}

pub fn model_statistics(model: &Model) -> ModelStatisticsReport<'_> {
    use std::sync::atomic::Ordering::Relaxed;
    let statistics = model.statistics();
    let none = Duration::default();
    let compute_infer = duration(&statistics.compute_infer);
    // Inputs are made ready and outputs checked as part of a run: their counts are the runs',
    // their time is inside compute_infer (perf_analyzer requires the three counts to agree).
    let within_infer = Duration {
        count: compute_infer.count,
        ns: 0,
    };
    ModelStatisticsReport {
        name: model.name(),
        version: triton_version(&model.bundle().config.version),
        last_inference: statistics.last_inference_ms.load(Relaxed),
        inference_count: statistics.inference_count.load(Relaxed),
        execution_count: statistics.execution_count.load(Relaxed),
        inference_stats: InferStatistics {
            success: duration(&statistics.success),
            fail: duration(&statistics.fail),
            queue: duration(&statistics.queue),
            compute_input: within_infer,
            compute_infer,
            compute_output: within_infer,
            cache_hit: none,
            cache_miss: none,
        },
        batch_stats: statistics
            .batches()
            .into_iter()
            .map(|(batch_size, count, ns)| BatchStatistics {
                batch_size,
                compute_input: Duration { count, ns: 0 },
                compute_infer: Duration { count, ns },
                compute_output: Duration { count, ns: 0 },
            })
            .collect(),
    }
}

/// The statistics of the model named (in `version` when given), or of every model when `name`
/// is empty.
pub fn statistics(
    registry: &Registry,
    name: &str,
    version: Option<&str>,
) -> Result<Vec<Arc<Model>>, ServeError> {
    if name.is_empty() {
        return Ok(registry.models().to_vec());
    }
    Ok(vec![find_model(registry, name, version)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::echo;

    #[tokio::test]
    async fn a_run_counts_its_rows_and_one_execution_and_an_empty_name_means_every_model() {
        let registry = echo(None);
        let model = registry.models()[0].clone();
        let rows = crate::tensor::Tensor::new(
            vec![2, 3],
            crate::tensor::TensorData::Float32(vec![0.0; 6]),
        )
        .unwrap();
        model.infer(vec![rows]).await.unwrap();
        let report = model_statistics(&model);
        assert_eq!((report.name, report.version), ("echo", "2"));
        assert_eq!((report.inference_count, report.execution_count), (2, 1));
        assert_eq!(report.inference_stats.success.count, 1);
        assert_eq!(report.inference_stats.compute_input.count, 1);
        assert_eq!(report.batch_stats.len(), 1);
        assert_eq!(statistics(&registry, "", None).unwrap().len(), 1);
        let Err(unknown) = statistics(&registry, "nope", None) else {
            panic!("an unknown model has statistics")
        };
        assert_eq!(unknown.kind(), crate::serving::error::ErrorKind::NotFound);
    }
}
